"""Sliding-window inference over whole volumes, as MONAI's `sliding_window_inference`
(the reference's validation inferer), channels-last.

Per spatial axis of size S and window (roi) R: an image smaller than R is padded to R (half the
difference before, the rest after, value `pad_value`); windows start every
I = max(int(R * (1 - overlap)), 1) voxels (I = R when R == S) until one reaches the end, and that
last one is moved back to end at S. Each window's prediction is weighted by an importance map
(`importance_map`), summed, divided by the summed weights, and the padding is cropped.

`predict` is called once per batch of `batch_size` windows, always with the same shape, and
the window bookkeeping (cutting the windows out, adding their weighted predictions up) runs in
small jitted programs of their own: with a jitted `predict` the network compiles once for
every image shape, which is what a test set of volumes of many sizes needs (traced as one
program per image shape, the network was compiled again for each). `predict` must be a pure
function of the window batch: for an NNX model in eval mode, `nnx.jit(lambda x: model(x))`
will do. The function also traces under `jax.jit` (the loop over window batches unrolls).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np


def window_starts(size, roi, overlap):
  """Start indices of the windows along one axis of (padded) size >= roi, as MONAI's
  `_get_scan_interval` and `dense_patch_slices`."""
  interval = roi if roi == size else max(int(roi * (1 - overlap)), 1)
  count = -(-(size - roi) // interval) + 1  # the first window reaching the end is the last
  return [min(i * interval, size - roi) for i in range(count)]


def importance_map(roi, mode="gaussian", sigma_scale=0.125):
  """(*roi) float32 weights. Gaussian: the product over axes of exp(-x^2 / (2 sigma^2)), x the
  offset from the window centre (R - 1) / 2 and sigma = sigma_scale * R, as MONAI's
  `compute_importance_map`; clipped below at 1e-3 so that no voxel has zero weight."""
  if mode == "constant":
    return np.ones(roi, np.float32)
  if mode != "gaussian":
    raise ValueError(f"mode must be 'constant' or 'gaussian', not {mode!r}")
  weights = np.ones((), np.float64)
  for r in roi:
    x = np.arange(r) - (r - 1) / 2.0
    weights = np.multiply.outer(weights, np.exp(-x ** 2 / (2 * (sigma_scale * r) ** 2)))
  return np.maximum(weights, 1e-3).astype(np.float32)


def sliding_window_inference(image, roi, predict, overlap=0.5, mode="gaussian",
                             sigma_scale=0.125, batch_size=4, pad_value=0.0):
  """image (B, *spatial, C) -> (B, *spatial, K); `predict` maps (n, *roi, C) -> (n, *roi, K)
  with n = batch_size; roi: one int per spatial axis, or one for all. Windows of all images are
  batched together, as MONAI does."""
  if not 0 <= overlap < 1:
    raise ValueError(f"overlap must be in [0, 1), not {overlap}")
  spatial = image.shape[1:-1]
  roi = (roi,) * len(spatial) if isinstance(roi, int) else tuple(roi)
  if len(roi) != len(spatial):
    raise ValueError(f"roi {roi} does not match the spatial shape {spatial}")
  short = [max(r - s, 0) for r, s in zip(roi, spatial)]
  pads = [(d // 2, d - d // 2) for d in short]
  x = jnp.pad(image, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
  padded = x.shape[1:-1]

  starts = [(b, *s, 0) for b in range(image.shape[0]) for s in itertools.product(
      *(window_starts(p, r, overlap) for p, r in zip(padded, roi)))]
  # A last batch of full size keeps one shape for `predict`: filler windows get weight 0.
  filler = -len(starts) % batch_size
  valid = np.array([1.0] * len(starts) + [0.0] * filler, np.float32).reshape(-1, batch_size)
  starts = np.array(starts + starts[:1] * filler, np.int32).reshape(-1, batch_size, len(roi) + 2)
  weights = jnp.asarray(importance_map(roi, mode, sigma_scale))[..., None]
  window_shape = (1, *roi, x.shape[-1])
  total = norm = None
  for chunk_starts, chunk_valid in zip(starts, valid):
    out = predict(_windows(x, chunk_starts, window_shape))
    if total is None:
      total = jnp.zeros((x.shape[0], *padded, out.shape[-1]), jnp.float32)
      norm = jnp.zeros((x.shape[0], *padded, 1), jnp.float32)
    total, norm = _accumulate(total, norm, out, weights, chunk_starts, chunk_valid)
  crop = tuple(slice(before, before + s) for (before, _), s in zip(pads, spatial))
  return (total / norm)[(slice(None), *crop)]


@functools.partial(jax.jit, static_argnums=2)
def _windows(x, starts, window_shape):
  """The windows of x (B, *S, C) at `starts` (n, 1 + ndim + 1): (n, *roi, C)."""
  return jax.vmap(lambda s: jax.lax.dynamic_slice(x, s, window_shape)[0])(starts)


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _accumulate(total, norm, out, weights, starts, valid):
  """total and norm with the windows' weighted predictions `out` (n, *roi, K) and weights
  added at `starts`, window after window (the order fixes the float sums)."""
  out = out.astype(jnp.float32)
  for i in range(out.shape[0]):
    w = weights * valid[i]
    total = _add_at(total, starts[i], (w * out[i])[None])
    norm = _add_at(norm, starts[i], w[None])
  return total, norm


def _add_at(array, start, update):
  """array[start : start + update.shape] += update, for a traced start."""
  return jax.lax.dynamic_update_slice(
      array, jax.lax.dynamic_slice(array, start, update.shape) + update, start)
