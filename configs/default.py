"""Paper defaults (Isola et al. 2017; the PyTorch reference's pix2pix options) on synthetic rain.

Use: `python main.py --workdir=W --config=configs/default.py[:VARIANT] --config.KEY=VALUE`.
Variants override the default:
  (none)  256x256 crops from 286x286, unet_256 + 70x70 PatchGAN, batch 1, paper schedule.
  tiny    32x32, ngf/ndf 8, 5-level U-Net: a step in well under a second on CPU (the tests use it).
"""

import ml_collections


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  """Returns the default config, with `variant`'s overrides applied."""
  config = ml_collections.ConfigDict()

  # Schedule (in steps; the reference's n_epochs / n_epochs_decay expressed as steps).
  config.num_train_steps = 200_000
  config.decay_steps = 100_000  # constant LR, then linear to 0 over the last decay_steps.
  config.batch_size = 1  # global batch, over all devices and processes.
  config.seed = 0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 5_000
  config.checkpoint_keep = 3
  config.num_image_summaries = 4  # test images in the TensorBoard grid.
  # Validation on the first eval_examples test pairs every eval_every_steps (0 = off): val_*
  # metrics in the logs, the best generator by Y-PSNR kept in W/best (--checkpoint=best).
  config.eval_every_steps = 5_000
  config.eval_examples = 16

  config.data = data = ml_collections.ConfigDict()
  # synthetic_rain | paired_folder | raindrop | rain100 (README "Your own data").
  data.source = "synthetic_rain"
  # synthetic_rain: a folder of clean photos ("" = scikit-image's photos); the other
  # sources: the dataset's folder.
  data.path = ""
  data.cache_dir = "~/.cache/pix2pix_jax"  # built datasets live here, never in the workdir.
  data.load_size = 286  # resize to this, then random-crop crop_size (the paper's jitter).
  data.crop_size = 256
  data.flip = True
  data.direction = "AtoB"  # A (rainy) is the input, B (clean) the target.
  # resize_and_crop (load_size, then a random crop_size crop) | crop (random crop_size
  # crop, no resize) | scale_width, scale_width_and_crop (width to load_size keeping the
  # aspect, then a random crop_size crop) | none (as stored: images must be crop_size square).
  data.preprocess = "resize_and_crop"
  data.max_dataset_size = 0  # > 0: train on the first N training pairs only.
  # paired_folder: auto | aligned (A|B side by side) | folders (input_dir/, target_dir/).
  data.layout = "auto"
  data.input_dir = "A"  # layout folders: the input and target folders' names ...
  data.target_dir = "B"
  data.input_pattern = "{}"  # ... and file stems: "rain-{}" pairs with "norain-{}".
  data.target_pattern = "{}"
  data.test_split = "test_a"  # raindrop: test_a | test_b.
  data.test_fraction = 0.1  # held out for test where a dataset has no test split.
  data.on_bad_file = "error"  # error (stop, listing every bad file) | skip (log, report).
  data.allow_size_mismatch = False  # True: resize a pair's target to its input's size.
  data.num_workers = 0  # grain worker processes (0 = read in the main process).
  data.prefetch = 2  # batches read ahead of the step.
  data.synthetic = synthetic = ml_collections.ConfigDict()
  synthetic.image_size = 286  # side of the stored square training crops.
  synthetic.test_size = 96  # side of the stored square test crops (scored at this size).
  synthetic.num_train = 2000
  synthetic.num_test = 100
  synthetic.rain = "mixed"  # light | heavy | mixed (streaks and raindrops, light and heavy).
  synthetic.veil = False  # True: streaks add a haze veil (a global de-hazing task).
  synthetic.tint = False  # True: streaks take a cool sky's colour instead of white.
  # auto (regions below 10 photos, else photos) | regions (the right quarter of every
  # photo is test pixels) | photos (~10% of the photos held out whole).
  synthetic.split = "auto"

  config.model = model = ml_collections.ConfigDict()
  model.generator = "unet"  # unet (depth: num_downs) | resnet_6blocks | resnet_9blocks
  model.num_downs = 8  # 8 = unet_256, 7 = unet_128.
  model.ngf = 64
  model.ndf = 64
  model.norm = "batch"  # batch | instance | none
  model.d_layers = 3  # 0 = PixelGAN (1x1), 1 = 16x16, 3 = 70x70, 5 = 286x286.
  model.skip_connections = True  # False = the paper's encoder-decoder ablation.
  model.dropout = True  # the reference's --no_dropout, inverted.
  model.dropout_placement = "pytorch"  # pytorch (decoder blocks 2-4) | lua (blocks 1-3).
  model.input_channels = 3
  model.output_channels = 3
  # How conv weight gradients are computed; parameters and results are the same (conv_ops).
  model.conv_impl = "auto"  # auto (tuned on CPU, xla elsewhere) | tuned | gemm | xla
  model.dtype = "float32"  # float32 | bfloat16 (compute; params and optimizer stay float32)
  model.init_type = "normal"  # normal | xavier | kaiming | orthogonal (the reference's init)
  model.init_gain = 0.02  # std of normal, gain of xavier / orthogonal, std of BN scales

  config.loss = loss = ml_collections.ConfigDict()
  loss.gan = "vanilla"  # vanilla | lsgan | wgangp (with the gradient penalty) | none
  loss.l1_weight = 100.0
  loss.conditional = True  # True: D sees (input, output); False: output only.

  config.optim = optim = ml_collections.ConfigDict()
  optim.lr = 2e-4
  optim.beta1 = 0.5
  optim.beta2 = 0.999
  # linear (constant, then to 0 over decay_steps) | step (x0.1 every lr_decay_steps) |
  # plateau (x0.2 when the mean G loss over plateau_steps stalls) | cosine (to 0 at the end).
  optim.lr_policy = "linear"
  optim.lr_decay_steps = 50_000  # step: the reference's lr_decay_iters, in steps.
  optim.plateau_steps = 1_000  # plateau: steps per period (the reference's epoch).

  config.inference = inference = ml_collections.ConfigDict()
  # paper (batch statistics + dropout: the paper's and the reference's test time) | running
  # (running averages, no dropout) | auto (paper after training at batch 1, else running).
  inference.norm_mode = "auto"

  # Any-size inference (predict, eval, the Translator): images larger than tile_size on a side
  # are translated in overlapping tiles (running mode only), blended over `overlap` pixels.
  config.predict = predict = ml_collections.ConfigDict()
  predict.tile_size = 1024  # a multiple of 2**model.num_downs.
  predict.overlap = 64

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
