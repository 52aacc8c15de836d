"""The paper's ablations (Isola et al. 2017, Tables 1-3) as overrides of configs/default.py.

One module per suite: `losses`, `generators`, `patch_sizes`. Each holds `TITLE`, `VARIANTS`
(name, label, overrides of the default) and `get_config("VARIANT[,SCALE]")`, so that one
variant trains with main.py as any config does:

  python main.py --workdir=W --config=configs/experiments/losses.py:cgan,cpu

`scales` holds the sizes the suites run at (`cpu` and `small` for a CPU, `paper` for a GPU, `tiny` for
tests). `python -m pix2pix_jax.experiments --suite=SUITE --workdir=W --scale=SCALE` trains
and evaluates a whole suite and writes its table and figure.
"""

SUITES = ("losses", "generators", "patch_sizes", "upsampling")
