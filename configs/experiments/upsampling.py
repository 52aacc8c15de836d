"""The generator's upsampling (not in the paper): transposed convolutions (the paper's, the
default) against resize-then-convolve (nearest or bilinear x2, then a 3x3 convolution; Odena
et al. 2016), with the U-Net and L1+cGAN. Transposed convolutions leave the checkerboard
artifacts most reported against the reference; the figure shows whether they do here.

  python main.py --workdir=W --config=configs/experiments/upsampling.py:nearest,cpu
"""

from configs.experiments import scales

TITLE = "Upsampling: transposed convolution vs resize-convolution"
VARIANTS = (
    scales.Variant("transpose", "transposed conv", {}),
    scales.Variant("nearest", "nearest + 3x3 conv", {"model.upsample": "nearest"}),
    scales.Variant("bilinear", "bilinear + 3x3 conv", {"model.upsample": "bilinear"}),
)


def get_config(arg: str = "transpose"):
  """'VARIANT[,SCALE]', e.g. 'nearest,cpu' (scales: cpu, small, paper, tiny)."""
  return scales.get_config_for(VARIANTS, arg)
