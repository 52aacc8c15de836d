"""Paper defaults (Isola et al. 2017; the PyTorch reference's pix2pix options) on synthetic rain.

Use: `python main.py --workdir=W --config=configs/default.py[:VARIANT] --config.KEY=VALUE`.
Variants override the default:
  (none)  256x256 crops from 286x286, unet_256 + 70x70 PatchGAN, batch 1, paper schedule.
  tiny    32x32, ngf/ndf 8, 5-level U-Net: a step in well under a second on CPU (the tests use it).
  cpu     64x64 crops, a 6-level U-Net of half width, batch 4, 12k steps (`make train` on a CPU).

Every key is set once below with its default and its help text (`Keys.add`); the help goes
into `HELP`, keyed by the dotted name, and `python -m configs.config_docs` writes the table of
docs/configuration.md from both.
"""

import ml_collections

# Dotted key (e.g. "data.load_size") -> what it means; filled by get_config() (called once at
# import, at the end of this file). Markdown: it becomes the docs table's "meaning" column.
HELP: dict[str, str] = {}


class Keys:
  """Adds keys to one ConfigDict, recording each one's help text in HELP."""

  def __init__(self, config: ml_collections.ConfigDict, prefix: str = ""):
    self.config, self.prefix = config, prefix

  def add(self, key: str, default, help_text: str) -> None:
    self.config[key] = default
    HELP[self.prefix + key] = help_text

  def section(self, name: str) -> "Keys":
    """A nested ConfigDict `name`, and the Keys that fill it."""
    self.config[name] = ml_collections.ConfigDict()
    return Keys(self.config[name], f"{self.prefix}{name}.")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the default config, with `variant`'s overrides applied."""
  config = ml_collections.ConfigDict()
  top = Keys(config)

  # Schedule (in steps; the reference's n_epochs / n_epochs_decay expressed as steps).
  top.add("num_train_steps", 200_000,
          "total steps (the reference's `n_epochs + n_epochs_decay`, in steps)")
  top.add("decay_steps", 100_000,
          "the last `decay_steps` decay the LR linearly to 0 (the reference's "
          "`n_epochs_decay`, in steps)")
  top.add("batch_size", 1,
          "global batch over all devices and processes; must divide by the device count")
  top.add("seed", 0, "fixes init, data order, augmentation and dropout")
  top.add("log_every_steps", 100, "console / JSONL / TensorBoard interval")
  top.add("checkpoint_every_steps", 5_000,
          "checkpoint interval (one is always written at the end)")
  top.add("checkpoint_keep", 3, "how many of the latest checkpoints are kept")
  top.add("num_image_summaries", 4,
          "test images in the TensorBoard grid (input, output, target)")
  top.add("eval_every_steps", 5_000,
          "in-training validation interval (0 = off): `val_*` metrics in the logs; the best "
          "generator by Y-PSNR goes to `W/best` (`--checkpoint=best`)")
  top.add("eval_examples", 16, "test pairs scored by in-training validation (the first ones)")

  data = top.section("data")
  data.add("source", "synthetic_rain",
           "the dataset: `synthetic_rain`, `paired_folder`, `raindrop`, `rain100` (see *Your "
           "own data*)")
  data.add("path", "",
           "`synthetic_rain`: a folder of your own clean photos to render rain on (`\"\"` = "
           "scikit-image's photos); the other sources: the dataset's folder")
  data.add("cache_dir", "~/.cache/pix2pix_jax", "where built datasets live (never in the workdir)")
  data.add("load_size", 286,
           "images are resized to this (`scale_width*`: their width to this) ...")
  data.add("crop_size", 256,
           "... then randomly cropped to this (and flipped), as the paper's jitter")
  data.add("flip", True,
           "random horizontal flips in training, the same for input and target (the "
           "reference's `--no_flip`, inverted)")
  data.add("direction", "AtoB", "`AtoB`: A (rainy) is the input; `BtoA` swaps")
  data.add("preprocess", "resize_and_crop",
           "`resize_and_crop` (to `load_size`, then a random `crop_size` crop), `crop` (a "
           "random `crop_size` crop, no resize), `scale_width` or `scale_width_and_crop` "
           "(width to `load_size` keeping the aspect, then a random `crop_size` crop) or "
           "`none` (as stored: images must be `crop_size` square); see *Your own data*")
  data.add("max_dataset_size", 0, "> 0: train on the first N training pairs only (0 = all)")
  data.add("layout", "auto",
           "`paired_folder`: `auto` (`folders` when `data.input_dir` and `data.target_dir` "
           "exist, else `aligned`), `aligned` (A and B side by side) or `folders` (two "
           "folders matched by file name)")
  data.add("input_dir", "A", "`folders` layout: the input folder's name")
  data.add("target_dir", "B", "`folders` layout: the target folder's name")
  data.add("input_pattern", "{}",
           "`folders` layout: how an input file's stem holds the pair's key: `rain-{}` pairs "
           "with a `target_pattern` of `norain-{}`")
  data.add("target_pattern", "{}", "`folders` layout: the same for the target files")
  data.add("test_split", "test_a", "`raindrop`: which of `test_a` / `test_b` is the test split")
  data.add("test_fraction", 0.1,
           "held out for test (at least one pair, chosen by a hash of the names) where a "
           "dataset has no test split")
  data.add("on_bad_file", "error",
           "`error`: stop before training, listing every bad file; `skip`: leave them out and "
           "list them")
  data.add("allow_size_mismatch", False,
           "True: resize a pair's target to its input's size (with a warning) instead of "
           "rejecting the pair")
  data.add("num_workers", 0, "grain worker processes (0 = read in the main process)")
  data.add("prefetch", 2, "batches read ahead of the step")
  synthetic = data.section("synthetic")
  synthetic.add("image_size", 286,
                "`synthetic_rain`: side of the stored square training crops")
  synthetic.add("test_size", 96,
                "`synthetic_rain`: side of the stored square test crops (scored at this size)")
  synthetic.add("num_train", 2000, "`synthetic_rain`: training pairs rendered")
  synthetic.add("num_test", 100, "`synthetic_rain`: test pairs rendered")
  synthetic.add("rain", "mixed",
                "`light`, `heavy` or `mixed` (streaks and raindrops, light and heavy)")
  synthetic.add("veil", False, "True: streaks add a haze veil (a global de-hazing task)")
  synthetic.add("tint", False, "True: streaks take a cool sky's colour instead of white")
  synthetic.add("split", "auto",
                "`auto` (`regions` below 10 photos, else `photos`), `regions` (the right "
                "quarter of every photo is test pixels) or `photos` (~10% of the photos held "
                "out whole)")

  model = top.section("model")
  model.add("generator", "unet",
            "`unet` (depth `model.num_downs`), `resnet_6blocks` or `resnet_9blocks` (the "
            "reference's ResNets; the crop must divide by 4)")
  model.add("num_downs", 8,
            "U-Net depth: 8 = unet_256, 7 = unet_128 (the crop must divide by "
            "`2**num_downs`)")
  model.add("ngf", 64, "generator width (the reference's `--ngf`)")
  model.add("ndf", 64, "discriminator width (the reference's `--ndf`)")
  model.add("norm", "batch", "`batch`, `instance` or `none`")
  model.add("d_layers", 3,
            "PatchGAN depth: 0 = 1x1 (PixelGAN), 1 = 16x16, 3 = 70x70, 5 = 286x286")
  model.add("skip_connections", True, "False = the paper's encoder-decoder ablation")
  model.add("dropout", True,
            "50% dropout in the decoder (the reference's `--no_dropout`, inverted)")
  model.add("dropout_placement", "pytorch",
            "`pytorch` (decoder blocks 2-4 of unet_256, the reference's) or `lua` (blocks "
            "1-3, the original Lua code's); see *Choices where the references differ*")
  model.add("upsample", "transpose",
            "the generators' x2 upsampling: `transpose` (transposed convolutions: the paper "
            "and the reference) or `nearest` / `bilinear` (resize, then a 3x3 stride-1 "
            "convolution: no checkerboard, Odena et al. 2016). Generator parameters: "
            "unet_256 54,413,955 (transpose) / 39,157,763 (resize); resnet_9blocks "
            "11,383,427 either way (its up-convolutions are 3x3 already); the cpu variant's "
            "U-Net 7,314,755 / 5,335,043 (tests/test_models.py checks these). An "
            "architecture key; the PyTorch import needs `transpose`")
  model.add("input_channels", 3, "input image channels, 1 or 3 (the reference's `--input_nc`)")
  model.add("output_channels", 3,
            "output image channels, 1 or 3 (the reference's `--output_nc`)")
  model.add("conv_impl", "auto",
            "how each conv pass is computed: `auto` = `tuned` on CPU, `xla` (plain) elsewhere; "
            "`gemm`; same parameters and results (see *Performance*)")
  model.add("dtype", "float32",
            "compute dtype; `bfloat16` for GPU/TPU (params and Adam states stay float32)")
  model.add("init_type", "normal",
            "conv init: `normal` N(0, gain), `xavier`, `kaiming` or `orthogonal`, as the "
            "reference's `init_weights`")
  model.add("init_gain", 0.02,
            "std of `normal`, gain of `xavier` / `orthogonal`; batch-norm scales are N(1, gain)")

  loss = top.section("loss")
  loss.add("gan", "vanilla",
           "`vanilla` (BCE on logits, non-saturating G), `lsgan`, `wgangp` (Wasserstein + "
           "gradient penalty), `none` (L1 only)")
  loss.add("l1_weight", 100.0, "λ, the weight of the L1 term")
  loss.add("conditional", True, "True: D sees (input, output) (cGAN); False: output only")

  optim = top.section("optim")
  optim.add("lr", 2e-4, "Adam's learning rate")
  optim.add("beta1", 0.5, "Adam's β1")
  optim.add("beta2", 0.999, "Adam's β2")
  optim.add("lr_policy", "linear",
            "`linear` (constant, then to 0 over `decay_steps`), `step` (x0.1 every "
            "`optim.lr_decay_steps`), `plateau` (x0.2 when the mean G loss over "
            "`optim.plateau_steps` stalls) or `cosine` (to 0 at the end); see *Coming from the "
            "PyTorch reference*")
  optim.add("lr_decay_steps", 50_000,
            "`step`: the LR is multiplied by 0.1 every this many steps (the reference's "
            "`lr_decay_iters`)")
  optim.add("plateau_steps", 1_000,
            "`plateau`: the period over which the generator loss is averaged (the reference's "
            "epoch)")

  inference = top.section("inference")
  inference.add("norm_mode", "auto",
                "`paper` (batch statistics + dropout: the paper's and the reference's test "
                "time), `running` (running averages, no dropout), or `auto` (`paper` after "
                "batch-1 training, else `running`); see *Test-time normalisation*")
  inference.add("ensemble", False,
                "eval, predict, the Translator and export: each output is the mean over the 8 "
                "flips and 90-degree rotations of the image (of each tile when tiled; in "
                "`paper` mode each its own batch); 8x the time. In-training validation "
                "never uses it")
  inference.add("ensemble_transforms", "dihedral",
                "what `inference.ensemble` averages: `dihedral` (the 8 flips and rotations) or "
                "`hflip` (the image and its mirror: the flip training augments with; rain "
                "streaks keep their direction)")

  evaluation = top.section("eval")
  evaluation.add("protocol", "raindrop",
                 "how eval and validation score Y: `raindrop` (Qian et al.: crop to a "
                 "multiple of 4, OpenCV's full-range Y) or `rain13k` (MPRNet / Restormer's "
                 "MATLAB script for Rain100H/L, Test100/1200/2800: no crop, MATLAB's studio-range "
                 "`rgb2ycbcr` Y rounded to uint8); see pix2pix_jax/metrics.py")
  evaluation.add("sets", "",
                 "eval: `\"\"` scores the config's test split; `all` every test set folder in "
                 "`eval.sets_dir`, or `Rain100H,Rain100L` those named: one table, a row per "
                 "set and their average (the mean of the set means), a gallery per set")
  evaluation.add("sets_dir", "",
                 "the folder of the test sets (each `<set>/input/` and `<set>/target/`, or "
                 "the source's own layout); `\"\"` = `data.path/test`, as Rain13K's")

  predict = top.section("predict")
  predict.add("tile_size", 1024,
              "eval / predict / Translator: larger images are translated in overlapping "
              "tiles (running mode only); a multiple of `2**model.num_downs`")
  predict.add("overlap", 64, "pixels over which neighbouring tiles cross-fade")

  compilation_cache = top.section("compilation_cache")
  compilation_cache.add("dir", "",
                        "JAX's persistent compilation cache (a second run skips compiling "
                        "the step): `\"\"` = `data.cache_dir/jax_compilation_cache`, `off` = "
                        "none")
  compilation_cache.add("max_mb", 2048,
                        "its size bound in MB (least recently used entries go first; 0 = "
                        "unbounded)")

  if variant:
    _apply_variant(config, variant)
  return config


def _apply_variant(config, variant):
  if variant == "tiny":
    config.num_train_steps = 200
    config.decay_steps = 100
    config.batch_size = 8
    config.log_every_steps = 5
    config.checkpoint_every_steps = 100
    config.num_image_summaries = 2
    config.eval_every_steps = 100
    config.eval_examples = 4
    config.data.load_size = 36
    config.data.crop_size = 32
    config.data.synthetic.image_size = 36
    config.data.synthetic.test_size = 36
    config.data.synthetic.num_train = 32
    config.data.synthetic.num_test = 4
    config.model.num_downs = 5
    config.model.ngf = 8
    config.model.ndf = 8
    # A 10x learning rate, so that the L1 loss visibly falls within 20 steps.
    config.optim.lr = 2e-3
    # With 5 levels the reference's placement has no dropout block; use the Lua one so the
    # tiny model still exercises dropout.
    config.model.dropout_placement = "lua"
  elif variant == "cpu":
    # Sized for a 2-core CPU (`make train` picks it when JAX finds no GPU or TPU; ~20 minutes
    # on an idle one): 64x64 crops of 96x96 stored crops (no resize, so training sees the
    # test images' scale), a 6-level U-Net of half the paper's width, batch 4, 12k steps,
    # test-time normalisation by the running averages (`auto` at batch 4). Two departures
    # from the paper's objective and optimiser, each measured (docs/results/cpu.md): with
    # lambda = 100 the GAN term paints texture over the background for the first thousands
    # of steps (5k steps: -6.5 dB against the identity; lambda = 1000: above it), and the
    # L1 term converges faster at LR 5e-4 than at 2e-4.
    config.num_train_steps = 12_000
    config.decay_steps = 4_000
    config.batch_size = 4
    config.log_every_steps = 100
    config.checkpoint_every_steps = 2_000
    config.checkpoint_keep = 2
    config.eval_every_steps = 1_000
    config.eval_examples = 100
    config.data.synthetic.image_size = 96
    config.data.synthetic.test_size = 96
    config.data.preprocess = "crop"
    config.data.load_size = 96
    config.data.crop_size = 64
    config.model.num_downs = 6
    config.model.ngf = 32
    config.model.ndf = 32
    config.loss.l1_weight = 1_000.0
    config.optim.lr = 5e-4
  else:
    raise ValueError(
        f"Unknown config variant {variant!r} for configs/default.py; known: 'tiny', 'cpu'.")


get_config()  # fills HELP.
