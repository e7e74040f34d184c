"""The appearance model: the reference's ranges, measured (README, "The
generator"), and every option."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax.synthesis import appearance

import conftest

SIZE = 64


def spec_of(ndim=2, size=SIZE, **fields):
  return conftest.spec_of(ndim, size, num_labels=4, **fields)


def halves(ndim=2, size=SIZE):
  """A fixed label map: four quadrant-like blocks, labels 0..3."""
  idx = np.indices((size,) * ndim)
  return jnp.asarray((idx[0] >= size // 2) * 2 + (idx[1] >= size // 2), jnp.int32)


@functools.lru_cache(maxsize=None)
def renderer(spec):
  return jax.jit(jax.vmap(lambda k: appearance.render(spec, k, halves(spec.ndim, spec.size))))


def render(spec, count=8, seed=0):
  return np.asarray(renderer(spec)(jax.random.split(jax.random.key(seed), count)))


def test_images_are_finite_and_min_max_normalised():
  images = render(spec_of(), 16)
  assert np.isfinite(images).all()
  np.testing.assert_allclose(images.min((1, 2)), 0, atol=1e-6)
  np.testing.assert_allclose(images.max((1, 2)), 1, atol=1e-5)


def test_measured_gamma_spans_its_range():
  """Same key, gamma fixed to 1 vs drawn: the exponent relating them is the drawn gamma."""
  spec = spec_of()
  linear = render(spec_of(gamma_range=(1.0, 1.0)), 64)
  curved = render(spec, 64)
  mask = (linear > 0.05) & (linear < 0.95)
  gammas = np.array([np.median(np.log(c[m]) / np.log(l[m]))
                     for c, l, m in zip(curved, linear, mask)])
  assert gammas.min() >= 0.5 - 1e-3 and gammas.max() <= 1.5 + 1e-3
  assert gammas.min() < 0.6 and gammas.max() > 1.4  # the whole range is used


def test_measured_bias_multiplier_and_smoothness():
  spec = spec_of(3, 64)
  fields = np.asarray(jax.jit(jax.vmap(lambda k: appearance.bias_field(spec, k)))(
      jax.random.split(jax.random.key(0), 24)))
  multiplier = np.exp(fields)
  # Reference: max of the field = max of the white noise, s * ~4.5 with s in [0.01, 0.1].
  maxima = fields.max((1, 2, 3))
  assert 0.01 * 3.5 < maxima.min() and maxima.max() < 0.1 * 6
  # The maximum is pinned; the minimum is not (a smooth field with few blobs can dip
  # further than it rises), as in the reference.
  assert multiplier.max() < 1.9 and 0.25 < multiplier.min() < 0.9
  assert maxima.max() > 0.3  # strong fields occur
  # FWHM >= 16 voxels: neighbouring voxels are nearly equal.
  step = np.abs(np.diff(fields, axis=1)).mean() / fields.std()
  assert step < 0.15


def test_measured_noise_fraction_spans_its_range():
  spec = spec_of()
  image = jnp.asarray(np.random.default_rng(0).uniform(0.2, 1.0, (SIZE, SIZE)), jnp.float32)
  noisy = np.asarray(jax.vmap(lambda k: appearance.add_noise(spec, k, image))(
      jax.random.split(jax.random.key(0), 200)))
  fraction = (noisy - np.asarray(image)).std((1, 2)) / np.abs(np.asarray(image)).max()
  assert 0.045 < fraction.min() < 0.07 and 0.37 < fraction.max() < 0.42


def gradient(images):
  return np.mean([np.abs(np.diff(images, axis=a)).mean() for a in (1, 2)])


def test_per_label_std_adds_within_region_variation():
  base = spec_of(noise_std_range=(0.0, 0.0), bias_std_range=(0.0, 0.0),
                 blur_sigma_range=(0.0, 0.0))
  flat = render(base)
  gmm = render(spec_of(noise_std_range=(0.0, 0.0), bias_std_range=(0.0, 0.0),
                       blur_sigma_range=(0.0, 0.0), std_range=(0.05, 0.1)))
  label = np.asarray(halves())
  within = lambda x: np.mean([x[:, label == k].std(1).mean() for k in range(4)])
  assert within(flat) < 1e-5 < 0.01 < within(gmm)


def test_zero_background_makes_label_zero_constant():
  images = render(spec_of(zero_background_prob=1.0, blur_sigma_range=(0.0, 0.0)))
  label = np.asarray(halves())
  assert images[:, label == 0].std(1).max() < 1e-5
  assert images[:, label == 1].std(1).min() > 1e-3


@pytest.mark.parametrize("fields", [
    dict(lowres_prob=1.0, lowres_factor_range=(3.0, 3.0)),
    dict(gibbs_prob=1.0, gibbs_keep_range=(0.3, 0.3)),
])
def test_resolution_loss_removes_fine_detail(fields):
  assert gradient(render(spec_of(**fields))) < 0.7 * gradient(render(spec_of()))


def test_thick_slices_blur_one_axis_only():
  spec = spec_of(3, 32, thick_slice_prob=1.0, thick_slice_range=(6.0, 6.0))
  images = render(spec, 6)
  base = render(spec_of(3, 32), 6)
  ratios = np.array([[np.abs(np.diff(x, axis=a)).mean() / np.abs(np.diff(b, axis=a)).mean()
                      for a in range(3)] for x, b in zip(images, base)])
  # One axis per sample loses much more detail than the other two.
  ordered = np.sort(ratios, 1)
  assert (ordered[:, 0] < 0.7 * ordered[:, 1]).all()


def residual(changed, plain):
  """What `changed` holds beyond an affine function of `plain` (min-max and the like)."""
  design = np.stack([plain.ravel(), np.ones(plain.size)], 1)
  coef = np.linalg.lstsq(design, changed.ravel(), rcond=None)[0]
  return changed - (design @ coef).reshape(plain.shape)


def test_spike_adds_a_single_frequency():
  """Same keys with and without the spike: what the spike adds is one plane wave."""
  fixed = dict(gamma_range=(1.0, 1.0), mean_range=(0.5, 1.0))
  spiked = render(spec_of(spike_prob=1.0, spike_intensity_range=(0.1, 0.1), **fixed))
  plain = render(spec_of(**fixed))
  shares = []
  for s_img, p_img in zip(spiked, plain):
    power = np.abs(np.fft.fft2(residual(s_img, p_img))) ** 2
    shares.append(np.sort(power.ravel())[-2:].sum() / power.sum())  # +-f pair
  assert np.median(shares) > 0.5


def test_ghosting_adds_a_copy_shifted_by_the_period():
  """Period 2 on one axis: a ghost of the image shifted by half the field of view."""
  fixed = dict(gamma_range=(1.0, 1.0), mean_range=(0.5, 1.0), blur_sigma_range=(0.0, 0.0))
  ghosted = render(spec_of(ghosting_prob=1.0, ghosting_period_range=(2.0, 2.0),
                           ghosting_intensity_range=(0.5, 0.5), **fixed))
  plain = render(spec_of(**fixed))
  corr = [max(abs(np.corrcoef(residual(g, p).ravel(),
                              np.roll(p, SIZE // 2, axis=a).ravel())[0, 1]) for a in (0, 1))
          for g, p in zip(ghosted, plain)]
  assert np.median(corr) > 0.5
