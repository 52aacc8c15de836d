"""The two convolutions of pix2pix, each pass computed by the fastest exact formulation.

`conv2d` (PyTorch's Conv2d: symmetric zero padding) and `conv_transpose2d` (PyTorch's
ConvTranspose2d) take kernels in the standard (kh, kw, in, out) layout whatever `impl` is, so
parameters, checkpoints and imported weights never depend on it. Three formulations of each:

- 'xla': `lax.conv_general_dilated` (a transposed conv as a conv of the stride-dilated input).
- 'gemm': the kh*kw strided tap windows and ONE matrix product (for the transposed conv: the
  product first, then each tap's result added at its strided place, the adjoint of the gather).
- 'phase' (used by 'tuned' only): a strided conv as one stride-1 conv over the input's
  stride x stride phases (space-to-depth), a transposed conv as its adjoint; no operand is
  stride-dilated.

All compute the same sums in another order (equal within float32 rounding; the tests check
forward and gradients). A pass's gradient is the derivative of whichever formulation the plan
names for it, so forward, input gradient and kernel gradient can each use the fastest one.

- `impl='xla'` / `'gemm'`: that formulation for every pass.
- `impl='tuned'`: per layer and pass, what measured fastest on XLA:CPU (`cpu_plan`). XLA:CPU
  lowers the weight gradients of strided and transposed convolutions to a slow generic loop
  ("convolution-base-dilated", ~1.5 GFLOP/s: 95% of a plain unet_256 train step); as matrix
  products they run near the machine's matmul speed.
- `impl='auto'`: 'tuned' on CPU, 'xla' elsewhere (cuDNN and TPU convolutions are fast).
"""

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from jax import lax

CONV_IMPLS = ("auto", "xla", "gemm", "tuned")
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
SMALL_PRODUCT_PIXELS = 64  # up to this many (output or input) pixels, 'gemm' multiplies tap by tap.


def resolve_impl(impl: str) -> str:
  """'auto' -> the implementation that is fastest on the default backend."""
  if impl not in CONV_IMPLS:
    raise ValueError(f"model.conv_impl={impl!r} is not one of {CONV_IMPLS}.")
  if impl == "auto":
    return "tuned" if jax.default_backend() == "cpu" else "xla"
  return impl


def _static(*shapes) -> bool:
  """True when every dimension is a known int (not a jax.export symbolic dimension)."""
  return all(isinstance(d, int) for shape in shapes for d in shape)


def _conv_xla(x, kernel, stride: int, padding: int):
  return lax.conv_general_dilated(
      x, kernel, window_strides=(stride, stride), padding=((padding, padding),) * 2,
      dimension_numbers=_DIMENSIONS)


def _conv_transpose_xla(x, kernel, stride: int, padding: int):
  pad = kernel.shape[0] - 1 - padding
  return lax.conv_general_dilated(
      x, kernel, window_strides=(1, 1), padding=((pad, pad),) * 2,
      lhs_dilation=(stride, stride), dimension_numbers=_DIMENSIONS)


def _taps(padded: jax.Array, kernel_shape: Sequence[int], offsets, stride: int,
          out_hw: tuple[int, int]) -> jax.Array:
  """Stack of strided windows: result[..., t, c] = padded[n, off_i + s*a, off_j + s*b, c].

  Shape (N, out_h, out_w, kh*kw, C), taps in row-major (i, j) order; `offsets(i)` gives the
  window's start for kernel row/column i.
  """
  kh, kw = kernel_shape[:2]
  out_h, out_w = out_hw
  windows = []
  for i in range(kh):
    for j in range(kw):
      oi, oj = offsets(i), offsets(j)
      windows.append(lax.slice(
          padded, (0, oi, oj, 0),
          (padded.shape[0], oi + stride * (out_h - 1) + 1, oj + stride * (out_w - 1) + 1,
           padded.shape[3]),
          (1, stride, stride, 1)))
  return jnp.stack(windows, axis=3)


def _conv_gemm(x, kernel, stride: int, padding: int):
  """`_conv_xla` as matrix products of the tap windows with the kernel (autodiff'd).

  Few output pixels (the U-Net's inner levels): one product per tap, batched over the taps,
  which reads the kernel in its stored layout. Many: one product over all taps at once.
  """
  kh, kw, cin, cout = kernel.shape
  x_pad = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  out_h = (x_pad.shape[1] - kh) // stride + 1
  out_w = (x_pad.shape[2] - kw) // stride + 1
  windows = _taps(x_pad, kernel.shape, lambda i: i, stride, (out_h, out_w))
  taps_kernel = kernel.reshape(kh * kw, cin, cout)
  if _static(x.shape) and x.shape[0] * out_h * out_w <= SMALL_PRODUCT_PIXELS:
    per_tap = jnp.einsum("tnabc,tco->tnabo", jnp.moveaxis(windows, 3, 0), taps_kernel)
    return jnp.sum(per_tap, axis=0)
  return jnp.einsum("nabtc,tco->nabo", windows, taps_kernel)


def _conv_transpose_gemm(x, kernel, stride: int, padding: int):
  """`_conv_transpose_xla` as matrix products (input x kernel taps) and the adjoint of the
  tap gather (each tap's product added at its strided place).

  Few input pixels (the U-Net's inner levels, where the kernel is the big operand): one product
  per tap, batched over the taps, so that the products and both their gradients read the
  kernel in its stored (tap, in, out) layout; one product over all taps would contract the
  kernel's middle axis and XLA would copy the whole kernel into another layout each pass.
  """
  kh, kw, cin, cout = kernel.shape
  p = kh - 1 - padding
  n, h, w, _ = x.shape
  out_h, out_w = stride * (h - 1) + kh - 2 * padding, stride * (w - 1) + kw - 2 * padding
  taps_kernel = kernel.reshape(kh * kw, cin, cout)
  if _static(x.shape) and n * h * w <= SMALL_PRODUCT_PIXELS:
    per_tap_input = jnp.broadcast_to(x.reshape(1, n * h * w, cin), (kh * kw, n * h * w, cin))
    per_tap = jnp.einsum("tmc,tco->tmo", per_tap_input, taps_kernel)
    products = jnp.moveaxis(per_tap.reshape(kh * kw, n, h, w, cout), 0, 3)
  else:
    products = jnp.einsum("nabc,tco->nabto", x, taps_kernel)
  taps = lambda g_pad: _taps(g_pad, kernel.shape, lambda i: 2 * p - i, stride, (h, w))
  padded_shape = jax.ShapeDtypeStruct((n, out_h + 2 * p, out_w + 2 * p, cout), x.dtype)
  (y_pad,) = jax.linear_transpose(taps, padded_shape)(products)
  return y_pad[:, p:p + out_h, p:p + out_w]


def _conv_phase(x, kernel, stride: int, padding: int):
  """`_conv_xla` as ONE stride-1 convolution over the input's stride x stride phases.

  With t = stride * m + r, y[a] = sum_t x_pad[stride * a + t] w[t] = sum_{m, r} X_r[a + m]
  w[stride * m + r], where X_r[i] = x_pad[stride * i + r]: the phases stacked as channels
  (space-to-depth) convolved with the kernel regrouped the same way (zero taps pad it to a
  multiple of the stride). Its input gradient is then a stride-1 transposed convolution
  and a depth-to-space, with no stride-dilated operand (XLA:CPU's slow generic path).
  """
  s = stride
  kh, kw, cin, cout = kernel.shape
  mh, mw = -(-kh // s), -(-kw // s)
  kernel = jnp.pad(kernel, ((0, mh * s - kh), (0, mw * s - kw), (0, 0), (0, 0)))
  n, h, w, _ = x.shape
  out_h = (h + 2 * padding - kh) // s + 1
  out_w = (w + 2 * padding - kw) // s + 1
  rows, cols = s * (out_h + mh - 1), s * (out_w + mw - 1)  # the padded input they read
  x_pad = jnp.pad(x, ((0, 0), (padding, max(0, rows - h - padding)),
                      (padding, max(0, cols - w - padding)), (0, 0)))[:, :rows, :cols]
  phases = x_pad.reshape(n, rows // s, s, cols // s, s, cin).transpose(0, 1, 3, 2, 4, 5)
  phases = phases.reshape(n, rows // s, cols // s, s * s * cin)
  grouped = kernel.reshape(mh, s, mw, s, cin, cout).transpose(0, 2, 1, 3, 4, 5)
  return lax.conv_general_dilated(phases, grouped.reshape(mh, mw, s * s * cin, cout), (1, 1),
                                  "VALID", dimension_numbers=_DIMENSIONS)


def _conv_transpose_phase(x, kernel, stride: int, padding: int):
  """`_conv_transpose_xla` as the adjoint of `_conv_phase` (PyTorch's ConvTranspose2d is
  the adjoint of Conv2d with the same weight; ours holds it flipped, in (kh, kw, in, out)):
  stride-1 convolutions per output phase and a depth-to-space, instead of a convolution of
  the stride-dilated input, three quarters zeros at stride 2."""
  kh, kw, _, cout = kernel.shape
  n, h, w, _ = x.shape
  out_h, out_w = stride * (h - 1) + kh - 2 * padding, stride * (w - 1) + kw - 2 * padding
  conv_kernel = kernel[::-1, ::-1].swapaxes(2, 3)
  output = jax.ShapeDtypeStruct((n, out_h, out_w, cout), x.dtype)
  (y,) = jax.linear_transpose(
      lambda z: _conv_phase(z, conv_kernel, stride, padding), output)(x)
  return y


FORMULATIONS = {
    "conv": {"xla": _conv_xla, "gemm": _conv_gemm, "phase": _conv_phase},
    "transpose": {"xla": _conv_transpose_xla, "gemm": _conv_transpose_gemm,
                  "phase": _conv_transpose_phase},
}
MAX_IMAGES_ONE_BY_ONE = 8  # A plan names 'xla/image' only for batches of up to this many.


def one_image_at_a_time(formulation):
  """`formulation` applied to each image of the batch alone, the results concatenated.

  The same sums (a kernel gradient through it is the sum of the images' kernel gradients).
  XLA:CPU's kernel gradients of the large strided convs are slower on a batch than on its
  images one by one (docs/performance.md: at batch 4, e.g. G.down_0 50 -> 15 ms)."""
  def per_image(x, kernel, stride, padding):
    return jnp.concatenate([formulation(x[i:i + 1], kernel, stride, padding)
                            for i in range(x.shape[0])])
  return per_image


def formulation(kind: str, name: str):
  """The function of a plan's entry: 'xla', 'gemm', 'phase', or one of them + '/image'."""
  base, _, per_image = name.partition("/")
  if per_image not in ("", "image") or base not in FORMULATIONS[kind]:
    raise ValueError(f"No {kind} formulation {name!r}.")
  function = FORMULATIONS[kind][base]
  return one_image_at_a_time(function) if per_image else function


class Plan(NamedTuple):
  """Which formulation computes each pass: the forward, the input and the kernel gradient."""
  forward: str
  input_grad: str
  kernel_grad: str


def cpu_plan(kind: str, x_shape, output_shape, stride: int, kernel_size: int = 4) -> Plan:
  """The fastest formulation of each pass on XLA:CPU, as measured layer by layer.

  (`python -m benchmarks.layers`, at batch 1 and 4, docs/performance.md.) XLA:CPU's own
  convolutions are fast where there are many pixels, but its weight gradients of strided and
  transposed convolutions, its convolutions of few pixels with many channels (the U-Net's
  inner levels) and its convolutions of stride-dilated operands (a strided conv's input
  gradient, a transposed conv's forward) fall off the fast path; there the matrix products
  ('gemm') or the phase decomposition ('phase') win; the kernel gradients of the large
  strided convs run faster image by image ('xla/image') in a batch of a few. Sizes are pixels
  in the whole batch, N * H * W, of the pass's input (`x_shape`) or output (`output_shape`),
  both NHWC; `kernel_size` is the kernel's height and width (4 in the U-Net and PatchGAN).
  """
  in_pixels = x_shape[0] * x_shape[1] * x_shape[2]
  out_pixels = output_shape[0] * output_shape[1] * output_shape[2]
  if stride == 1:
    # The PatchGAN's last two (4x4, stride 1): XLA:CPU's kernel gradient of a conv with its
    # padding inside is slow there (unet_256's D.conv_3 at batch 4: 330-590 ms against
    # 171-231 as products; D.conv_4, one output channel: 25-43 against 12-22 with the
    # padding outside, as 'phase' computes it at stride 1). Other stride-1 convs (the ResNet
    # generator's 3x3 and 7x7) are unmeasured and stay plain.
    if kernel_size != 4 or kind != "conv" or out_pixels > 4096:
      return Plan("xla", "xla", "xla")
    return Plan("xla", "xla", "phase" if output_shape[3] <= 8 else "gemm")
  if kind == "conv":
    # A stride-2 conv's input gradient convolves the stride-dilated output gradient. Its
    # kernel gradient over many pixels is faster image by image than on a batch of a few.
    few_images = 1 < x_shape[0] <= MAX_IMAGES_ONE_BY_ONE
    return Plan("gemm" if in_pixels <= 256 else ("phase" if x_shape[3] <= 8 else "xla"),
                "gemm" if in_pixels <= 1024 else "phase",
                "gemm" if out_pixels <= 256 else "xla/image" if few_images else "xla")
  # XLA:CPU's transposed conv of a few input pixels with many channels is pathological
  # once the batch has more than one image (unet_256's G.up_6, 2x2x1024 at batch 4: 132 ms
  # against 2 ms as products; the cpu variant's G.up_4: 24 ms against 0.8). The outermost
  # up-conv (3 output channels) is fastest plain.
  forward = ("gemm" if in_pixels <= 64 else
             "xla" if output_shape[3] <= 8 or in_pixels < 1024 else "phase")
  return Plan(forward, "gemm" if in_pixels <= 1024 else "xla", "gemm")


def plan_for(kind: str, impl: str, x_shape, stride: int, output_shape,
             kernel_size: int = 4) -> Plan:
  """The Plan that `impl` means for this layer."""
  impl = resolve_impl(impl)
  if impl == "tuned":
    if not _static(x_shape, output_shape):  # symbolic (jax.export) shapes: the plain path.
      return Plan("xla", "xla", "xla")
    return cpu_plan(kind, x_shape, output_shape, stride, kernel_size)
  return Plan(impl, impl, impl)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def _planned(x, kernel, kind, plan, stride, padding):
  return formulation(kind, plan.forward)(x, kernel, stride, padding)


def _planned_fwd(x, kernel, kind, plan, stride, padding):
  return _planned(x, kernel, kind, plan, stride, padding), (x, kernel)


def _planned_bwd(kind, plan, stride, padding, residuals, g):
  """Each gradient as the derivative of its own (exact) formulation of the same function."""
  x, kernel = residuals
  input_form = formulation(kind, plan.input_grad)
  kernel_form = formulation(kind, plan.kernel_grad)
  (dx,) = jax.vjp(lambda x_: input_form(x_, kernel, stride, padding), x)[1](g)
  (dk,) = jax.vjp(lambda k_: kernel_form(x, k_, stride, padding), kernel)[1](g)
  return dx, dk


_planned.defvjp(_planned_fwd, _planned_bwd)


def _apply(kind, x, kernel, stride, padding, impl, output_shape):
  plan = plan_for(kind, impl, x.shape, stride, output_shape, kernel.shape[0])
  if plan.forward == plan.input_grad == plan.kernel_grad:
    return formulation(kind, plan.forward)(x, kernel, stride, padding)
  return _planned(x, kernel, kind, plan, stride, padding)


def conv2d(x, kernel, *, stride: int, padding: int, impl: str = "auto"):
  """PyTorch's Conv2d (no bias): NHWC input, (kh, kw, in, out) kernel."""
  out_h, out_w = ((side + 2 * padding - k) // stride + 1
                  for side, k in zip(x.shape[1:3], kernel.shape[:2]))
  return _apply("conv", x, kernel, stride, padding, impl,
                (x.shape[0], out_h, out_w, kernel.shape[3]))


def conv_transpose2d(x, kernel, *, stride: int, padding: int, impl: str = "auto",
                     output_padding: int = 0):
  """PyTorch's ConvTranspose2d (no bias): NHWC input, kernel (kh, kw, in, out) applied
  unflipped to the stride-dilated input, padded by kh - 1 - padding.

  `output_padding` rows and columns are added at the bottom and right, as PyTorch's: the
  full (padding 0) transposed convolution cropped by `padding` at the top and left and by
  `padding - output_padding` at the bottom and right (so output_padding <= padding).
  """
  if output_padding:
    if not 0 < output_padding <= padding:
      raise ValueError(f"output_padding={output_padding} must be in [0, padding={padding}].")
    full = conv_transpose2d(x, kernel, stride=stride, padding=0, impl=impl)
    end = padding - output_padding
    return full[:, padding:full.shape[1] - end, padding:full.shape[2] - end]
  out_h, out_w = (stride * (side - 1) + k - 2 * padding
                  for side, k in zip(x.shape[1:3], kernel.shape[:2]))
  return _apply("transpose", x, kernel, stride, padding, impl,
                (x.shape[0], out_h, out_w, kernel.shape[3]))
