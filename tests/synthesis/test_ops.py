import jax
import numpy as np
import pytest
from scipy import ndimage
from scipy import stats

from rasd_jax.synthesis import ops


def test_hash_normal_is_standard_normal_and_independent():
  z = np.asarray(ops.normal(jax.random.key(0), (400_000,)), np.float64)
  assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
  assert abs(stats.kurtosis(z)) < 0.05 and abs(stats.skew(z)) < 0.02
  assert stats.kstest(z[:20000], "norm").pvalue > 1e-3
  assert np.isfinite(z).all() and 4.0 < np.abs(z).max() < 5.6  # real tails, never inf
  assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01  # neighbours
  other = np.asarray(ops.normal(jax.random.key(1), (400_000,)))
  assert abs(np.corrcoef(z, other)[0, 1]) < 0.01  # keys
  again = np.asarray(ops.normal(jax.random.key(0), (400_000,)))
  np.testing.assert_array_equal(z, again)


def test_max_of_normals_matches_the_empirical_maximum():
  draws = np.asarray(jax.vmap(lambda k: ops.max_of_normals(k, 1000))(
      jax.random.split(jax.random.key(0), 2000)))
  empirical = np.random.default_rng(0).standard_normal((2000, 1000)).max(1)
  assert stats.ks_2samp(draws, empirical).pvalue > 1e-3


def test_linear_interp_matrix_reproduces_linear_functions_and_clamps():
  src = ops.grid_nodes(5, 33)
  m = ops.linear_interp_matrix(src, np.arange(-3, 36))
  values = m @ (2 * src + 1)
  expected = 2 * np.clip(np.arange(-3, 36), 0, 32) + 1
  np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_convolution_matrix_equals_convolve_axis_with_zero_padding():
  x = jax.random.normal(jax.random.key(0), (9, 20))
  taps = ops.gaussian_taps(1.3, 4)
  direct = ops.convolve_axis(x, taps, 1)
  matrix = ops.apply_axis(x, ops.convolution_matrix(taps, 20), 1)
  np.testing.assert_allclose(direct, matrix, atol=1e-5)
  scipy = ndimage.correlate1d(np.asarray(x), np.asarray(taps), axis=1, mode="constant")
  np.testing.assert_allclose(direct, scipy, atol=1e-5)


@pytest.mark.parametrize("factor", [1.0, 2.5, 4.0])
def test_resolution_matrix_preserves_constants_and_removes_detail(factor):
  m = np.asarray(ops.resolution_matrix(64, factor))
  np.testing.assert_allclose(m.sum(1), 1, atol=1e-5)
  if factor == 1.0:
    np.testing.assert_allclose(m, np.eye(64), atol=1e-6)
  else:
    x = (np.arange(64) % 2).astype(np.float32)  # Finest detail there is.
    assert np.abs(np.diff(m @ x)).mean() < 0.5 * np.abs(np.diff(x)).mean()


def test_kspace_truncation_is_a_lowpass_projection():
  n = 32
  full = np.asarray(ops.kspace_truncation_matrix(n, 1.0))
  x = np.random.default_rng(0).standard_normal(n)
  kept = np.fft.fft(x)
  kept[n // 2] = 0  # The Nyquist line has no symmetric partner and is dropped.
  np.testing.assert_allclose(full @ x, np.fft.ifft(kept).real, atol=1e-4)
  low = np.asarray(ops.kspace_truncation_matrix(n, 0.25))
  spectrum = np.abs(np.fft.fft(low @ x))
  assert spectrum[4:n - 3].max() < 1e-3 and spectrum[:4].min() > 1e-3  # |k| <= 3 kept
  np.testing.assert_allclose(low @ low, low, atol=1e-4)  # projection


def test_ghosting_matrix_makes_shifted_copies():
  n = 32
  assert np.allclose(ops.ghosting_matrix(n, 4.0, 1.0), np.eye(n), atol=1e-4)
  x = np.zeros(n)
  x[3] = 1.0
  ghosted = np.asarray(ops.ghosting_matrix(n, 4.0, 0.0)) @ x
  # Zeroing the 7 lines k = 4, 8, ..., 28 (the centre line is kept) subtracts 7/32 of the
  # impulse at shifts of n/4 and keeps 1 - 7/32 in place.
  np.testing.assert_allclose(ghosted[[3 + 8, 3 + 16, 3 + 24]].real, -7 / 32, atol=1e-4)
  np.testing.assert_allclose(ghosted[3].real, 1 - 7 / 32, atol=1e-4)


@pytest.mark.parametrize("anchor", [1.0, 0.0, -3.0, float("nan")])
def test_unfused_is_fn_whatever_the_anchor(anchor):
  x = jax.random.normal(jax.random.key(0), (64, 33))
  fn = lambda: jax.numpy.exp(x) * 2 + ops.normal(jax.random.key(1), x.shape)
  got = jax.jit(lambda a: ops.unfused(fn, a))(jax.numpy.full((2, 3), anchor))
  np.testing.assert_array_equal(np.asarray(got), np.asarray(jax.jit(fn)()))
