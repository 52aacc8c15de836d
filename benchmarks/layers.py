"""Each convolution of the default networks, timed: `python -m benchmarks.layers`.

For every conv / transposed conv of the U-Net generator and the PatchGAN discriminator the
config describes, times the forward pass, the input gradient and the weight gradient with each
`conv_impl`, and prints one JSON line per (layer, impl). Where the time of a train step goes,
layer by layer; `benchmarks.throughput` times the whole step.
"""

import json
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
from ml_collections import config_flags
import numpy as np

from pix2pix_jax import conv_ops
from pix2pix_jax import models

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/default.py", "Model config.",
                                lock_config=True)
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_integer("repeats", 5, "Timed calls per measurement (median).")
flags.DEFINE_list("impls", ["xla", "gemm", "tuned"], "conv_impl values to compare.")
flags.DEFINE_list("formulations", [],
                  "conv_ops.FORMULATIONS to time one by one, every pass by the same one "
                  "(xla, gemm, phase); with '/image' (e.g. xla/image), applied to the "
                  "batch's images one at a time, the results concatenated.")
flags.DEFINE_list("layers", [], "Only these layers (e.g. G.down_0,D.conv_1); default all.")


def network_layers(config):
  """(name, kind, input shape HWC, out features, stride, padding) of every conv."""
  model, size = config.model, config.data.crop_size
  layers = []
  channels = models.unet_channels(model.num_downs, model.ngf, model.output_channels)
  for depth, (outer, inner) in enumerate(channels):
    side = size // 2 ** depth
    in_features = model.input_channels if depth == 0 else outer
    layers.append((f"G.down_{depth}", "conv", (side, side, in_features), inner, 2, 1))
    innermost = depth == len(channels) - 1
    up_in = inner if innermost or not model.skip_connections else 2 * inner
    layers.append((f"G.up_{depth}", "transpose", (side // 2, side // 2, up_in),
                   model.output_channels if depth == 0 else outer, 2, 1))
  side, features = size, model.input_channels + model.output_channels
  for n in range(model.d_layers + 2):
    stride = 2 if n < model.d_layers else 1
    out = 1 if n == model.d_layers + 1 else model.ndf * min(2 ** n, 8)
    layers.append((f"D.conv_{n}", "conv", (side, side, features), out, stride, 1))
    side = (side + 2 - 4) // stride + 1
    features = out
  return layers


def median_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return float(np.median(times)) * 1e3


def formulation_forward(kind, name, stride, padding):
  """forward(x, kernel) of one conv_ops formulation ('gemm', 'xla/image', ...)."""
  formulation = conv_ops.formulation(kind, name)
  return lambda x, kernel: formulation(x, kernel, stride, padding)


def time_layer(kind, input_shape, features, stride, padding, impl, batch_size, repeats,
               formulation=None):
  """Forward, input- and kernel-gradient ms of one layer by `impl` (or `formulation`)."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch_size,) + input_shape), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((4, 4, input_shape[-1], features)) * 0.02,
                       jnp.float32)
  op = conv_ops.conv2d if kind == "conv" else conv_ops.conv_transpose2d

  forward = (formulation_forward(kind, formulation, stride, padding) if formulation else
             lambda x, kernel: op(x, kernel, stride=stride, padding=padding, impl=impl))
  y = jax.jit(forward)(x, kernel)
  g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
  input_grad = jax.jit(lambda x, k, g: jax.vjp(lambda x_: forward(x_, k), x)[1](g)[0])
  kernel_grad = jax.jit(lambda x, k, g: jax.vjp(lambda k_: forward(x, k_), k)[1](g)[0])
  gflop = 2 * np.prod(y.shape) * 16 * input_shape[-1] / 1e9 if kind == "conv" else (
      2 * np.prod(x.shape) * 16 * features / 1e9)
  return {"forward_ms": median_ms(jax.jit(forward), x, kernel, repeats=repeats),
          "input_grad_ms": median_ms(input_grad, x, kernel, g, repeats=repeats),
          "kernel_grad_ms": median_ms(kernel_grad, x, kernel, g, repeats=repeats),
          "gflop": float(gflop)}


def main(argv):
  del argv
  totals = {impl: 0.0 for impl in FLAGS.impls}
  for name, kind, shape, features, stride, padding in network_layers(FLAGS.config):
    if FLAGS.layers and name not in FLAGS.layers:
      continue
    for impl in FLAGS.impls:
      result = time_layer(kind, shape, features, stride, padding, impl, FLAGS.batch_size,
                          FLAGS.repeats)
      totals[impl] += result["forward_ms"] + result["input_grad_ms"] + result["kernel_grad_ms"]
      print(json.dumps({"layer": name, "kind": kind, "input": shape, "features": features,
                        "stride": stride, "impl": impl, "batch_size": FLAGS.batch_size,
                        **result}), flush=True)
    for formulation in FLAGS.formulations:
      result = time_layer(kind, shape, features, stride, padding, None, FLAGS.batch_size,
                          FLAGS.repeats, formulation=formulation)
      print(json.dumps({"layer": name, "kind": kind, "input": shape, "features": features,
                        "stride": stride, "formulation": formulation,
                        "batch_size": FLAGS.batch_size, **result}), flush=True)
  print(json.dumps({"total_ms_fwd_plus_grads": totals, "batch_size": FLAGS.batch_size}))


if __name__ == "__main__":
  sys.exit(app.run(main))
