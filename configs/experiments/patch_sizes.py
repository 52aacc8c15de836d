"""The discriminator's receptive field (the paper's Table 3): 1x1 (PixelGAN), 16x16, 70x70,
286x286 (ImageGAN), all with the U-Net and L1+cGAN.

`model.d_layers` sets the PatchGAN's depth, hence the size of the patch each logit judges
(tests/test_models.py checks the fields). A field larger than the crop makes every logit
judge the whole image; the runner's table says what each depth amounts to at the suite's
crop size.

  python main.py --workdir=W --config=configs/experiments/patch_sizes.py:pixel,cpu
"""

from configs.experiments import scales

TITLE = "Discriminator receptive field (the paper's Table 3)"
VARIANTS = (
    scales.Variant("pixel", "1x1 (PixelGAN)", {"model.d_layers": 0}),
    scales.Variant("patch16", "16x16", {"model.d_layers": 1}),
    scales.Variant("patch70", "70x70", {"model.d_layers": 3}),
    scales.Variant("image286", "286x286 (ImageGAN)", {"model.d_layers": 5}),
)
DESCRIBE_DISCRIMINATOR = True  # the table gets a column: the D's output at this crop.


def get_config(arg: str = "patch70"):
  """'VARIANT[,SCALE]', e.g. 'pixel,cpu' (scales: cpu, small, paper, tiny)."""
  return scales.get_config_for(VARIANTS, arg)
