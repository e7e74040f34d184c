"""Building blocks of the generator: fast white noise and separable linear operators.

Most of the pipeline is linear along each axis (interpolation of noise grids, Gaussian
blurs, resolution loss, k-space truncation and ghosting), so it is written as "apply an
(out, in) matrix along axis a" or, for short kernels at full resolution, as a few shifted
adds. Both fuse well under XLA on CPU, GPU and TPU.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

# --------------------------------------------------------------------------------------
# White noise.
#
# threefry costs about 20 ns per 32-bit word with XLA on our 2-core CPU, more than the
# whole per-voxel budget of the generator, and each jax.random.normal call adds about a
# second of XLA compile time there. Normal noise therefore comes from a counter-based
# integer hash (two rounds of a 32-bit multiply-xorshift mixer, keyed by two threefry
# words of the sample's key): about 1 ns per value, vectorised on every backend, and a
# pure function of the key. Keys and small uniform draws use jax.random.


def _mix32(x):
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def hash_bits(key, shape):
  """uint32 bits of `shape`, a pure function of `key`."""
  k0, k1 = jax.random.bits(key, (2,), jnp.uint32)
  count = math.prod(shape)
  counter = jax.lax.iota(jnp.uint32, count).reshape(shape)
  return _mix32(_mix32(counter ^ k0) + k1 * jnp.uint32(0x9E3779B9))


def normal(key, shape):
  """Standard normal values; exact tails out to |z| = 5.4 (24-bit uniforms)."""
  m = (hash_bits(key, shape) >> 8).astype(jnp.int32)
  # v = (2m + 1) / 2^24 - 1 is exact in float32 and never reaches +-1.
  v = (2 * m + 1 - (1 << 24)).astype(jnp.float32) * (1.0 / (1 << 24))
  return jnp.sqrt(2.0).astype(jnp.float32) * jax.lax.erf_inv(v)


def max_of_normals(key, count):
  """A draw of max(z_1..z_count) for iid standard normals, without drawing them.

  P(max <= x) = Phi(x)^count, so max = Phi^-1(U^(1/count)).
  """
  u = jax.random.uniform(key, (), minval=1e-12, maxval=1.0)
  return -ndtri(-jnp.expm1(jnp.log(u) / count))


def uniform(key, shape, bounds):
  lo, hi = bounds
  return jax.random.uniform(key, shape, minval=lo, maxval=hi)


def unfused(fn, anchor):
  """fn(), computed into memory before its consumers run.

  XLA on CPU fuses a producer into each of its consumers and recomputes it per use and per
  tap (gathers, erf_inv), and an optimization barrier is gone before fusion; a
  conditional's result, however, is always materialised. Both branches are `fn`, so the
  predicate (read from `anchor`, any traced array) never changes the value. Measured on
  our 2-core CPU: a 3D sample's blur 31 -> 11 ms, its label map's argmax 11 ms saved.
  Elsewhere fn() as it is: XLA on GPU fuses otherwise, and a conditional there costs a
  round trip to the host.
  """
  if jax.default_backend() != "cpu":
    return fn()
  return jax.lax.cond(jnp.ravel(anchor)[0] > 0, fn, fn)


# --------------------------------------------------------------------------------------
# Separable linear operators.


def apply_axis(x, matrix, axis):
  """y[..., i, ...] = sum_j matrix[i, j] x[..., j, ...] along `axis`."""
  axis = axis % x.ndim
  if axis == x.ndim - 1:  # Lands in place: no transpose (the largest, final stage).
    return jnp.tensordot(x, matrix, axes=[[axis], [1]], precision=jax.lax.Precision.HIGHEST)
  y = jnp.tensordot(matrix, x, axes=[[1], [axis]], precision=jax.lax.Precision.HIGHEST)
  return jnp.moveaxis(y, 0, axis)


def apply_separable(x, matrices, first_axis=0):
  for a, m in enumerate(matrices):
    x = apply_axis(x, m, first_axis + a)
  return x


def linear_interp_matrix(src_positions, dst_positions):
  """(dst, src) matrix of linear interpolation between sorted 1-D sample positions.

  Destinations beyond the first or last source position take its value (clamped).
  Static (NumPy): used for the fixed noise grids and resampling.
  """
  src = np.asarray(src_positions, np.float64)
  dst = np.clip(np.asarray(dst_positions, np.float64), src[0], src[-1])
  hi = np.clip(np.searchsorted(src, dst, side="right"), 1, len(src) - 1)
  lo = hi - 1
  t = (dst - src[lo]) / (src[hi] - src[lo])
  m = np.zeros((len(dst), len(src)), np.float32)
  m[np.arange(len(dst)), lo] += 1 - t
  m[np.arange(len(dst)), hi] += t
  return m


def grid_nodes(points, size):
  """Voxel coordinates of a `points`-node grid spanning [0, size-1] (corners aligned)."""
  return np.linspace(0.0, size - 1.0, points)


def gaussian_taps(sigma, radius):
  """Normalised Gaussian taps at offsets -radius..radius; sigma may be traced."""
  offsets = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
  sigma = jnp.maximum(sigma, 1e-6)
  taps = jnp.exp(-0.5 * (offsets / sigma) ** 2)
  return taps / jnp.sum(taps)


def convolve_axis(x, taps, axis):
  """Correlation with `taps` along `axis`, zero padding, same size (short kernels)."""
  radius = (taps.shape[0] - 1) // 2
  n = x.shape[axis]
  pad = [(0, 0)] * x.ndim
  pad[axis] = (radius, radius)
  xp = jnp.pad(x, pad)
  out = 0.0
  for t in range(2 * radius + 1):
    out = out + taps[t] * jax.lax.slice_in_dim(xp, t, t + n, axis=axis)
  return out


def convolution_matrix(taps, n):
  """(n, n) matrix of `convolve_axis` (zero padding), for long kernels on small grids."""
  radius = (taps.shape[0] - 1) // 2
  offset = np.arange(n)[None, :] - np.arange(n)[:, None]
  inside = np.abs(offset) <= radius
  return jnp.where(inside, taps[np.clip(offset + radius, 0, 2 * radius)], 0.0)


def resolution_matrix(n, factor):
  """(n, n) operator of acquiring at voxel size `factor` (box average) and interpolating
  back linearly: low-resolution and thick-slice simulation. `factor` may be traced."""
  factor = jnp.maximum(factor, 1.0)
  x = jnp.arange(n, dtype=jnp.float32)
  coarse = jnp.ceil(n / factor)
  u = jnp.clip((x + 0.5) / factor - 0.5, 0.0, coarse - 1)
  m0 = jnp.clip(jnp.floor(u), 0, jnp.maximum(coarse - 2, 0))
  t = u - m0

  def box_rows(m):  # Rows of the box average centred on coarse sample m, per fine voxel.
    centre = (m + 0.5) * factor - 0.5
    lo = jnp.maximum(x[None, :] - 0.5, (centre - factor / 2)[:, None])
    hi = jnp.minimum(x[None, :] + 0.5, (centre + factor / 2)[:, None])
    w = jnp.clip(hi - lo, 0.0, None)
    return w / jnp.maximum(w.sum(axis=1, keepdims=True), 1e-6)

  return (1 - t)[:, None] * box_rows(m0) + t[:, None] * box_rows(jnp.minimum(m0 + 1, coarse - 1))


def kspace_truncation_matrix(n, keep):
  """(n, n) real operator keeping the central `keep` fraction of k-space: Gibbs ringing.

  Sum over |k| <= m of cos(2 pi k d / n) / n, in closed form (Dirichlet kernel).
  """
  m = jnp.floor(jnp.clip(keep, 0.0, 1.0) * ((n - 1) // 2))
  d = (np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float32)
  s = np.sin(np.pi * d / n)
  safe = np.where(np.abs(s) < 1e-9, 1.0, s)
  kernel = jnp.where(np.abs(s) < 1e-9, 2 * m + 1, jnp.sin((2 * m + 1) * np.pi * d / n) / safe)
  return kernel / n


def ghosting_matrix(n, period, intensity):
  """(n, n) complex operator scaling every `period`-th k-space line (not the centre one)
  by `intensity`: ghosts shifted by multiples of n / period along the axis."""
  k = np.arange(n)
  dft = np.exp(-2j * np.pi * np.outer(k, k) / n).astype(np.complex64)
  disturbed = (jnp.mod(k, jnp.maximum(jnp.round(period), 1)) == 0) & (k != 0)
  scale = jnp.where(disturbed, intensity, 1.0)
  return (np.conj(dft).T / n) @ (scale[:, None].astype(jnp.complex64) * dft)
