"""The generator (the paper's Table 2): encoder-decoder vs U-Net, with L1 and with L1+cGAN.

The encoder-decoder is the U-Net with its skip connections severed, as in the paper.
The discriminator is the 70x70 PatchGAN.

  python main.py --workdir=W --config=configs/experiments/generators.py:encoder_decoder_l1,cpu
"""

from configs.experiments import scales

TITLE = "Generators (the paper's Table 2)"
VARIANTS = (
    scales.Variant("encoder_decoder_l1", "Encoder-decoder (L1)",
                   {"model.skip_connections": False, "loss.gan": "none"}),
    scales.Variant("encoder_decoder_l1_cgan", "Encoder-decoder (L1+cGAN)",
                   {"model.skip_connections": False}),
    scales.Variant("unet_l1", "U-Net (L1)", {"loss.gan": "none"}),
    scales.Variant("unet_l1_cgan", "U-Net (L1+cGAN)", {}),
)


def get_config(arg: str = "unet_l1_cgan"):
  """'VARIANT[,SCALE]', e.g. 'encoder_decoder_l1,cpu' (scales: cpu, small, paper, tiny)."""
  return scales.get_config_for(VARIANTS, arg)
