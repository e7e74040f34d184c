"""Classification and regression losses against NumPy transcriptions of the torch losses."""

import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax.objectives import classification


def log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy(smoothing):
  rng = np.random.default_rng(0)
  logits, labels = rng.standard_normal((6, 3)) * 3, rng.integers(0, 3, 6)
  target = (1 - smoothing) * np.eye(3)[labels] + smoothing / 3
  expected = -np.mean((target * log_softmax(logits)).sum(-1))
  np.testing.assert_allclose(
      classification.cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing),
      expected, rtol=1e-5)


def test_binary_cross_entropy_is_stable():
  logits = np.array([[-100.0, -2.0, 0.0], [0.5, 3.0, 100.0]])
  targets = np.array([[0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
  # log(1 + e^-|z|) + max(z, 0) - z t: torch's stable form, exact for large |z|
  expected = np.mean(np.log1p(np.exp(-np.abs(logits))) + np.maximum(logits, 0) - logits * targets)
  out = classification.binary_cross_entropy(jnp.asarray(logits), jnp.asarray(targets))
  np.testing.assert_allclose(out, expected, rtol=1e-5)
  assert np.isfinite(out)


def test_l1():
  rng = np.random.default_rng(1)
  pred, target = rng.standard_normal((4, 1)), rng.standard_normal((4, 1))
  np.testing.assert_allclose(classification.l1(jnp.asarray(pred), jnp.asarray(target)),
                             np.mean(np.abs(pred - target)), rtol=1e-6)
