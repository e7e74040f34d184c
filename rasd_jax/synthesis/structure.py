"""Random label maps: multi-scale noise logits, one random warp per label, argmax.

Reference algorithm (METHOD.md section 1): K logit fields (noise grids of 8 and 4 points
upsampled linearly), K flows (grids of 16, 8 and 4 points, sigma up to size/16 voxels),
logit k resampled at x + flow_k(x) with zero padding, label = argmax_k. With
`warp_stride=1` and the same noise grids, the label maps equal the reference's wherever the
nodes of the logit table fall on voxels (size - 1 a multiple of 21: 64, 106, 127, ...;
checked against the PyTorch code and in tests); elsewhere the reference interpolates the
voxel-sampled logits, which differs from the exact field within a voxel of a node (0.2% of
the voxels of a 3D 128^3 map change).

How it is made fast:
- Nothing is upsampled to full resolution before it is needed. The logit noise grids are
  piecewise linear, and their sum is exactly piecewise linear on the union of their nodes
  (22 points per axis for grids 8 and 4), so one small table per label gives the logit
  field at any point with 2^nd gathers; no K x size^nd logit volume is ever built.
- The warped logits are smooth on the scale of the finest flow-grid cell (size/15 voxels),
  so they are evaluated every `warp_stride` voxels and interpolated linearly, fused with
  the argmax. `warp_stride=1` is the exact computation.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rasd_jax.synthesis import ops


def _noise_grids(key, lead_shape, grids, max_std, ndim):
  """One N(0, sigma^2) grid per grid size, sigma ~ U(0, max_std) shared by all channels."""
  out = []
  for g, k in zip(grids, jax.random.split(key, len(grids))):
    k_std, k_val = jax.random.split(k)
    sigma = jax.random.uniform(k_std, (), maxval=max_std)
    out.append(sigma * ops.normal(k_val, lead_shape + (g,) * ndim))
  return out


def table_points(grids, size):
  """Nodes per axis of a grid holding the sum of `grids` exactly (all their nodes), or
  `size` (the reference's own full-resolution field) if that would be larger."""
  return min(math.lcm(*(g - 1 for g in grids)) + 1, size)


def _eval_grid(grid, positions, size):
  """Linear interpolation of per-label coarse grids at arbitrary voxel positions.

  grid: (K, g, ..., g), corners aligned to [0, size-1]; positions: (ndim, K, *pts),
  clamped to the volume (the caller applies the zero-padding weight).
  """
  num_labels, g, ndim = grid.shape[0], grid.shape[1], grid.ndim - 1
  table = grid.reshape(-1)
  scale = (g - 1) / (size - 1)
  base, frac = [], []
  for a in range(ndim):
    u = jnp.clip(positions[a], 0.0, size - 1.0) * scale
    i0 = jnp.clip(jnp.floor(u), 0, g - 2)
    base.append(i0.astype(jnp.int32))
    frac.append(u - i0)
  label_offset = (jnp.arange(num_labels, dtype=jnp.int32) * g**ndim).reshape(
      (num_labels,) + (1,) * (positions.ndim - 2))
  out = 0.0
  for corner in itertools.product((0, 1), repeat=ndim):
    index, weight = label_offset, 1.0
    for a, c in enumerate(corner):
      index = index + (base[a] + c) * g ** (ndim - 1 - a)
      weight = weight * (frac[a] if c else 1.0 - frac[a])
    out = out + weight * table[index]
  return out


def reference_sampling_positions(points, size):
  """Where the reference's grid_sample reads the field for target points x + flow(x).

  The reference normalises voxel coordinates as if align_corners=True but calls
  grid_sample with align_corners=False, so it reads at (x + flow) * size/(size-1) - 0.5:
  about half a voxel off, with the border voxels half-faded into the zero padding. We
  reproduce it because it is not harmless: it adds boundaries and small fragments near the borders
  (one 3D 64^3 map: boundary fraction 0.406 -> 0.416, fragments per label 212 -> 229).
  """
  return points * (size / (size - 1)) - 0.5


def _zero_padding_weight(positions, size):
  """Weight of linear interpolation against zeros outside [0, size-1], as grid_sample."""
  w = 1.0
  for a in range(positions.shape[0]):
    outside = jnp.maximum(jnp.maximum(-positions[a], positions[a] - (size - 1)), 0.0)
    w = w * jnp.maximum(1.0 - outside, 0.0)
  return w


def _upsample_stride(values, stride, size):
  """Linear upsampling of (*pts, K) samples taken every `stride` voxels, cropped to size."""
  for a in range(values.ndim - 1):
    n = values.shape[a]
    lo = jax.lax.slice_in_dim(values, 0, n - 1, axis=a)
    hi = jax.lax.slice_in_dim(values, 1, n, axis=a)
    t = (jnp.arange(stride, dtype=values.dtype) / stride).reshape(
        [stride if i == a + 1 else 1 for i in range(values.ndim + 1)])
    fine = jnp.expand_dims(lo, a + 1) * (1 - t) + jnp.expand_dims(hi, a + 1) * t
    shape = list(values.shape)
    shape[a] = (n - 1) * stride
    values = jax.lax.slice_in_dim(fine.reshape(shape), 0, size, axis=a)
  return values


def labels_last(x):
  """(K, *pts) -> (*pts, K) as a matrix product with the identity.

  The product does the transposition inside the GEMM, and, because XLA always
  materialises the operands of a matrix product, it also keeps XLA from fusing the warp's
  gathers into the upsampling loop that follows, which would recompute them for every
  voxel (measured 10x slower on CPU, where an optimization barrier does not survive until
  fusion).
  """
  eye = jnp.eye(x.shape[0], dtype=x.dtype)
  return jnp.tensordot(x, eye, axes=[[0], [0]], precision=jax.lax.Precision.HIGHEST)


def _upsampled_sum(grids, ndim, points, size):
  """sum over grids (lead..., g, ..., g), corner-aligned over [0, size-1], interpolated
  linearly at voxel coordinates `points` along each of the last `ndim` axes.

  The last axis of all grids goes through one matrix product, which writes the
  full-size sum directly: no per-grid full-size intermediates and no transposes.
  """
  partial, mats = [], []
  for grid in grids:
    m = ops.linear_interp_matrix(ops.grid_nodes(grid.shape[-1], size), points)
    partial.append(ops.apply_separable(grid, [jnp.asarray(m)] * (ndim - 1),
                                       first_axis=grid.ndim - ndim))
    mats.append(m)
  return ops.apply_axis(jnp.concatenate(partial, axis=-1),
                        jnp.asarray(np.concatenate(mats, axis=1)), -1)


def warped_logits(spec, key):
  """The K warped logit fields sampled every `warp_stride` voxels: (K, *pts)."""
  size, ndim, k = spec.size, spec.ndim, spec.num_labels
  key_logits, key_flows = jax.random.split(key)
  logit_grids = _noise_grids(key_logits, (k,), spec.label_grids, spec.label_max_std, ndim)
  flow_grids = _noise_grids(key_flows, (k, ndim), spec.flow_grids, spec.flow_max_std, ndim)

  points = -(-(size - 1) // spec.warp_stride) + 1  # Covers [0, size-1]; may go beyond.
  coords = np.arange(points) * spec.warp_stride
  flows = _upsampled_sum(flow_grids, ndim, coords, size)  # (K, ndim, *pts)
  mesh = np.stack(np.meshgrid(*[coords.astype(np.float32)] * ndim, indexing="ij"))
  positions = reference_sampling_positions(
      jnp.moveaxis(flows, 1, 0) + mesh[:, None], size)  # (ndim, K, *pts)
  # The table comes out of a matrix product, so XLA materialises it instead of fusing the
  # random-number generation into every gather (measured: 6x slower on CPU).
  table = _upsampled_sum(logit_grids, ndim,
                         ops.grid_nodes(table_points(spec.label_grids, size), size), size)
  return _eval_grid(table, positions, size) * _zero_padding_weight(positions, size)


def label_map(spec, key):
  """A random label map of shape spec.shape with values 0..K-1 (int32)."""
  logits = warped_logits(spec, key)
  axis = 0
  if spec.warp_stride > 1:
    logits, axis = _upsample_stride(labels_last(logits), spec.warp_stride, spec.size), -1
  # Ties (all labels warped outside the volume) go to the lowest label, as torch.argmax.
  return jnp.argmax(logits, axis=axis).astype(jnp.int32)
