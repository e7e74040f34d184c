"""Sliding-window inference: MONAI's window rule, its Gaussian map, and the blended output."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax.evaluation import sliding_window as sw


def pointwise(x):
  return jnp.concatenate([x, 2 * x], axis=-1)


@pytest.mark.parametrize("size, roi, overlap, expected", [
    (10, 4, 0.5, [0, 2, 4, 6]),
    (11, 4, 0.5, [0, 2, 4, 6, 7]),  # the last window is moved back to end at the image end
    (10, 4, 0.25, [0, 3, 6]),  # interval int(4 * 0.75) = 3
    (6, 4, 0.9, [0, 1, 2]),  # int(0.4) = 0 becomes 1
    (4, 4, 0.5, [0]),
    (96, 96, 0.75, [0]),
    (200, 96, 0.75, [0, 24, 48, 72, 96, 104]),
])
def test_window_starts_follow_monai(size, roi, overlap, expected):
  assert sw.window_starts(size, roi, overlap) == expected


def test_gaussian_map_is_symmetric_with_its_peak_at_the_centre():
  w = sw.importance_map((5, 8), sigma_scale=0.125)
  assert w.shape == (5, 8) and w.dtype == np.float32
  np.testing.assert_array_equal(w, w[::-1, ::-1])
  assert w.max() == w[2, 3] == w[2, 4] <= 1.0 and w.min() == np.float32(1e-3)
  # exp(-x^2 / (2 sigma^2)) with sigma = R / 8, x from the centre (R - 1) / 2
  np.testing.assert_allclose(w[2, 4], np.exp(-0.5 ** 2 / (2 * 1.0 ** 2)), rtol=1e-6)
  np.testing.assert_allclose(sw.importance_map((9,))[[3, 4]], [np.exp(-1 / (2 * 1.125 ** 2)), 1],
                             rtol=1e-6)
  np.testing.assert_array_equal(sw.importance_map((3, 2), "constant"), np.ones((3, 2)))


@pytest.mark.parametrize("shape, roi, overlap, mode", [
    ((2, 10, 7, 3), (4, 4), 0.5, "gaussian"),
    ((1, 9, 3, 2), (4, 5), 0.25, "constant"),  # smaller than the window along axis 2
    ((1, 5, 6, 4, 1), (3, 8, 2), 0.75, "gaussian"),
])
def test_a_pointwise_predict_is_reproduced(shape, roi, overlap, mode):
  image = jnp.asarray(np.random.default_rng(0).standard_normal(shape), jnp.float32)
  out = sw.sliding_window_inference(image, roi, pointwise, overlap, mode, batch_size=3)
  assert out.shape == (*shape[:-1], 2 * shape[-1])
  np.testing.assert_allclose(out, pointwise(image), rtol=1e-6, atol=1e-6)


def window_mean(x):
  """A per-window constant: each window's mean value."""
  return jnp.broadcast_to(jnp.mean(x, axis=(1, 2), keepdims=True), x.shape)


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
def test_windows_are_blended_with_the_importance_map(mode):
  image = jnp.arange(10.0).reshape(1, 10, 1, 1)  # 1-D-like; windows start at 0, 2, 4, 6
  out = sw.sliding_window_inference(image, (4, 1), window_mean, 0.5, mode, batch_size=2)
  w = sw.importance_map((4,), mode)
  num, den = np.zeros(10), np.zeros(10)
  for s in (0, 2, 4, 6):
    num[s:s + 4] += w * (s + 1.5)
    den[s:s + 4] += w
  if mode == "constant":
    np.testing.assert_allclose(num / den, [1.5, 1.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5, 7.5, 7.5])
  np.testing.assert_allclose(out[0, :, 0, 0], num / den, rtol=1e-6)


def test_padding_value_reaches_the_windows():
  image = jnp.ones((1, 2, 1))  # padded to roi 4: one zero before, one after
  out = sw.sliding_window_inference(image, 4, window_mean, mode="constant", pad_value=-1.0)
  np.testing.assert_allclose(out[0, :, 0], [0.0, 0.0])


def test_traces_once_under_jit():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(x):
    return sw.sliding_window_inference(x, (4, 4), pointwise, overlap=0.5, batch_size=2)

  image = jnp.ones((1, 9, 6, 1))
  np.testing.assert_allclose(run(image), pointwise(image), rtol=1e-6)
  run(image + 1)


def test_bad_overlap_is_an_error():
  with pytest.raises(ValueError, match="overlap"):
    sw.sliding_window_inference(jnp.ones((1, 4, 1)), (2,), pointwise, 1.0)
