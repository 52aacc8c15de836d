"""The objective (the paper's Table 1): L1, GAN, cGAN, L1+GAN, L1+cGAN.

All with the U-Net and the 70x70 PatchGAN. GAN variants use an unconditional discriminator
(it sees only the output); cGAN ones see (input, output). λ = 100 wherever L1 is used.

  python main.py --workdir=W --config=configs/experiments/losses.py:l1_gan,cpu
"""

from configs.experiments import scales

TITLE = "Losses (the paper's Table 1)"
VARIANTS = (
    scales.Variant("l1", "L1", {"loss.gan": "none"}),
    scales.Variant("gan", "GAN", {"loss.l1_weight": 0.0, "loss.conditional": False}),
    scales.Variant("cgan", "cGAN", {"loss.l1_weight": 0.0}),
    scales.Variant("l1_gan", "L1+GAN", {"loss.conditional": False}),
    scales.Variant("l1_cgan", "L1+cGAN", {}),
)


def get_config(arg: str = "l1_cgan"):
  """'VARIANT[,SCALE]', e.g. 'cgan,cpu' (scales: cpu, small, paper, tiny)."""
  return scales.get_config_for(VARIANTS, arg)
