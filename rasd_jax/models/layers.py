"""Strided and transposed convolutions as stride-1 convolutions (polyphase form).

XLA lowers the gradients of a strided convolution, and a transposed convolution with its
gradients, to convolutions over a zero-dilated operand (`lhs_dilation`, `rhs_dilation`).
Those are slow on every backend we measured: on a CPU the weight gradient of a kernel-3
stride-2 transposed convolution took 8x PyTorch's time, half of a U-Net step; on a GPU XLA
picks a poor algorithm for them. Here each is one stride-1 convolution between
space-to-depth and depth-to-space reshapes, so that forward and backward passes are plain
convolutions:

- a stride-`s` convolution reads the input's `s^d` phases (`x[s*j + b]`) as channels and
  applies a kernel of about `k/s` taps per axis to them;
- a stride-`s` transposed convolution computes its `s^d` output phases (`y[s*m + a]`) as
  the channels of one convolution of the undilated input, then interleaves them.

The combined kernel is gathered from the layer's own kernel (the same variables, shapes and
initialisation as `nnx.Conv` / `nnx.ConvTranspose`: checkpoints and the PyTorch layout are
unchanged), with zeros where a phase has no tap: the FLOPs are those of a kernel of
`ceil(k/s)^d` taps on `s^d` phases, e.g. 16 for 9 in 2D and 64 for 27 in 3D at kernel 3,
stride 2; kernel == stride has no waste (a matrix product per voxel). The layers give the
same result as the dilated form up to float rounding (tests/models/test_layers.py).
"""

from flax import nnx
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np


def _dimension_numbers(ndim):
  spatial = "DHW"[-ndim:] if ndim <= 3 else "".join(chr(ord("a") + i) for i in range(ndim))
  return (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C")


def conv(x, kernel, padding):
  """The stride-1 convolution `lax.conv_general_dilated(x, kernel, 1, padding)`
  (channels-last, HWIO kernel). On a CPU a 3D one runs as the sum over the depth taps of 2D
  convolutions of the depth slices: XLA's CPU 3D convolution took 4x as long for forward and
  backward (12 channels at 64^3: 811 ms against 204 ms; PyTorch 116 ms)."""
  ndim = x.ndim - 2
  if ndim != 3 or jax.default_backend() != "cpu":
    return lax.conv_general_dilated(x, kernel, (1,) * ndim, padding,
                                    dimension_numbers=_dimension_numbers(ndim))
  (low, high), rest = padding[0], padding[1:]
  depth = x.shape[1] + low + high - kernel.shape[0] + 1
  x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (low, high, 0)] + [(0, 0, 0)] * 3)
  out = 0
  for tap in range(kernel.shape[0]):
    planes = x[:, tap:tap + depth].reshape((-1,) + x.shape[2:])
    out = out + lax.conv_general_dilated(planes, kernel[tap], (1, 1), rest,
                                         dimension_numbers=_dimension_numbers(2))
  return out.reshape((x.shape[0], depth) + out.shape[1:])


def _explicit(layer):
  """The layer's padding as ((low, high),) * ndim: the layers take explicit padding only,
  and no dilation or feature groups."""
  ndim, where, padding = len(layer.kernel_size), type(layer).__name__, layer.padding
  if isinstance(padding, str) or len(padding) != ndim:
    raise ValueError(f"{where}: padding must be {ndim} (low, high) pairs, got {padding!r}")
  for name in ("kernel_dilation", "input_dilation", "feature_group_count"):
    value = getattr(layer, name, None)
    if value not in (None, 1) and set(value) != {1}:
      raise ValueError(f"{where}: {name} = {value!r} is not supported (1 only)")
  return tuple((int(lo), int(hi)) for lo, hi in padding)


def _gather_kernel(kernel, tables):
  """The combined kernel (*taps, *phases, in, out): `kernel[tables[0][u0, p0], ...]` per
  axis, zero where a table holds the kernel size (no tap)."""
  ndim = len(tables)
  padded = jnp.pad(kernel, [(0, 1)] * ndim + [(0, 0), (0, 0)])
  index = []
  for axis, table in enumerate(tables):
    shape = [1] * (2 * ndim)
    shape[axis], shape[ndim + axis] = table.shape
    index.append(table.reshape(shape))
  return padded[tuple(index)]


def _table(kernel_size, stride, low, phase_of_tap, offset_of_tap):
  """(table (taps, stride) of kernel tap indices, the smallest offset): the tap of the
  combined kernel's position u for phase p; `kernel_size` (the zero tap) where none."""
  taps = [(offset_of_tap(t), phase_of_tap(t), t) for t in range(kernel_size)]
  first = min(q for q, _, _ in taps)
  size = max(q for q, _, _ in taps) - first + 1
  table = np.full((size, stride), kernel_size, np.int32)
  for q, p, t in taps:
    table[q - first, p] = t
  return table, first


def strided_conv(x, kernel, strides, padding):
  """`lax.conv_general_dilated(x, kernel, strides, padding)` (channels-last, HWIO kernel)
  as space-to-depth and a stride-1 convolution; each input size a multiple of its stride."""
  ndim = x.ndim - 2
  sizes = x.shape[1:-1]
  batch, channels = x.shape[0], x.shape[-1]
  tables, pads = [], []
  for size, k, s, (lo, hi) in zip(sizes, kernel.shape[:ndim], strides, padding):
    table, first = _table(k, s, lo, lambda t, lo=lo, s=s: (t - lo) % s,
                          lambda t, lo=lo, s=s: (t - lo) // s)
    out = (size + lo + hi - k) // s + 1
    pads.append((-first, out - size // s + first + table.shape[0] - 1))
    tables.append(table)
  # (B, M1, s1, M2, s2, ..., C) -> (B, M1, M2, ..., s1, s2, ..., C): the phases as channels.
  split = [batch] + [d for size, s in zip(sizes, strides) for d in (size // s, s)] + [channels]
  order = [0] + [1 + 2 * i for i in range(ndim)] + [2 + 2 * i for i in range(ndim)]
  z = x.reshape(split).transpose(order + [2 * ndim + 1])
  z = z.reshape((batch,) + tuple(size // s for size, s in zip(sizes, strides)) + (-1,))
  combined = _gather_kernel(kernel, tables)  # (*taps, *phases, C, O)
  combined = combined.reshape(combined.shape[:ndim] + (-1, kernel.shape[-1]))
  return conv(z, combined, pads)


def transposed_conv(x, kernel, strides, padding):
  """`lax.conv_general_dilated(x, kernel, 1, padding, lhs_dilation=strides)` (the
  transposed convolution: `kernel` HWIO as applied to the dilated input) as a stride-1
  convolution to the output's phases and depth-to-space; each output size a multiple of
  its stride."""
  ndim = x.ndim - 2
  sizes = x.shape[1:-1]
  batch = x.shape[0]
  tables, pads, outs = [], [], []
  for size, k, s, (lo, hi) in zip(sizes, kernel.shape[:ndim], strides, padding):
    # y[s*m + a] = sum over taps t with (a + t - lo) % s == 0 of x[m + (a + t - lo) // s].
    table, first = _table(k, s, lo, lambda t, lo=lo, s=s: (lo - t) % s,
                          lambda t, lo=lo, s=s: (((lo - t) % s) + t - lo) // s)
    out = (size - 1) * s + 1 + lo + hi - k + 1
    pads.append((-first, out // s - size + first + table.shape[0] - 1))
    tables.append(table)
    outs.append(out)
  combined = _gather_kernel(kernel, tables)  # (*taps, *phases, C, O)
  order = list(range(ndim)) + [2 * ndim] + list(range(ndim, 2 * ndim)) + [2 * ndim + 1]
  combined = combined.transpose(order)  # (*taps, C, *phases, O)
  combined = combined.reshape(combined.shape[:ndim + 1] + (-1,))
  z = conv(x, combined, pads)
  # (B, N1, N2, ..., s1, s2, ..., O) -> (B, N1, s1, N2, s2, ..., O) -> (B, L1, L2, ..., O).
  z = z.reshape(z.shape[:-1] + tuple(strides) + (kernel.shape[-1],))
  order = [0] + [i for d in range(ndim) for i in (1 + d, 1 + ndim + d)] + [2 * ndim + 1]
  return z.transpose(order).reshape((batch,) + tuple(outs) + (kernel.shape[-1],))


def _add_bias(y, bias):
  return y if bias is None else y + bias.reshape((1,) * (y.ndim - 1) + (-1,))


class Conv(nnx.Conv):
  """`nnx.Conv` (same variables) computed by `conv`, a strided one in polyphase form where
  every input size is a multiple of its stride."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.padding = _explicit(self)

  def __call__(self, x):
    strides = ((self.strides,) * len(self.kernel_size) if isinstance(self.strides, int)
               else tuple(self.strides))
    if (x.ndim != len(strides) + 2
        or any(size % s for size, s in zip(x.shape[1:-1], strides))):
      return super().__call__(x)
    bias = self.bias[...] if self.bias is not None else None
    x, kernel, bias = self.promote_dtype((x, self.kernel[...], bias), dtype=self.dtype)
    if all(s == 1 for s in strides):
      return _add_bias(conv(x, kernel, self.padding), bias)
    return _add_bias(strided_conv(x, kernel, strides, self.padding), bias)


class ConvTranspose(nnx.ConvTranspose):
  """`nnx.ConvTranspose` (same variables) computed in polyphase form where every output size
  is a multiple of its stride."""

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.padding = _explicit(self)

  def __call__(self, x):
    ndim = len(self.kernel_size)
    strides = ((self.strides,) * ndim if isinstance(self.strides, int)
               else tuple(self.strides))
    outs = [(size - 1) * s + lo + hi - k + 2 for size, s, k, (lo, hi)
            in zip(x.shape[1:-1], strides, self.kernel_size, self.padding)]
    if (all(s == 1 for s in strides) or x.ndim != ndim + 2
        or any(out % s for out, s in zip(outs, strides))):
      return super().__call__(x)
    bias = self.bias[...] if self.bias is not None else None
    x, kernel, bias = self.promote_dtype((x, self.kernel[...], bias), dtype=self.dtype)
    if self.transpose_kernel:  # stored (*k, out, in) as the forward convolution's kernel
      kernel = jnp.flip(kernel, range(ndim)).swapaxes(-1, -2)
    return _add_bias(transposed_conv(x, kernel, strides, self.padding), bias)


def conv_transpose_valid_padding(kernel_size, strides):
  """Explicit padding of `padding="VALID"` in `nnx.ConvTranspose` (lax.conv_transpose's):
  (k - 1, s - 1 + max(k - s, 0)) per axis."""
  return [(k - 1, s - 1 + max(k - s, 0)) for k, s in zip(kernel_size, strides)]
