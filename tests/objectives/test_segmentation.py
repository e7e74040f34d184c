"""Dice + CE against a direct NumPy transcription of MONAI's DiceCELoss (softmax, one-hot)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax.objectives import segmentation


def numpy_dice_ce(logits, labels, k, include_background=False, batch=False, smooth=1e-5):
  """Channels-first as MONAI: logits (B, C, V) float64, labels (B, V)."""
  e = np.exp(logits - logits.max(1, keepdims=True))
  p = e / e.sum(1, keepdims=True)
  y = np.eye(k)[labels].transpose(0, 2, 1)  # (B, C, V)
  ce = -np.mean(np.log(np.take_along_axis(p, labels[:, None], 1)))
  if not include_background:
    p, y = p[:, 1:], y[:, 1:]
  b, c, _ = p.shape
  if batch:
    f = [1 - (2 * (p[:, j] * y[:, j]).sum() + smooth) / (p[:, j].sum() + y[:, j].sum() + smooth)
         for j in range(c)]
  else:
    f = [1 - (2 * (p[i, j] * y[i, j]).sum() + smooth) / (p[i, j].sum() + y[i, j].sum() + smooth)
         for i in range(b) for j in range(c)]
  return np.mean(f), ce


def inputs(seed=0, b=2, shape=(5, 4, 3), k=4):
  rng = np.random.default_rng(seed)
  logits = rng.standard_normal((b, *shape, k)) * 2.0
  labels = rng.integers(0, k, (b, *shape))
  labels[0][labels[0] == 2] = 0  # class 2 absent from sample 0
  return logits, labels, k


@pytest.mark.parametrize("include_background", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_matches_monai_transcription(include_background, batch):
  logits, labels, k = inputs()
  out = segmentation.dice_ce_loss(jnp.asarray(logits, jnp.float32), jnp.asarray(labels), k,
                                  include_background=include_background, batch=batch)
  b = logits.shape[0]
  dice, ce = numpy_dice_ce(np.moveaxis(logits, -1, 1).reshape(b, k, -1), labels.reshape(b, -1),
                           k, include_background, batch)
  np.testing.assert_allclose(out["dice_loss"], dice, rtol=1e-5)
  np.testing.assert_allclose(out["ce"], ce, rtol=1e-5)
  np.testing.assert_allclose(out["loss"], dice + ce, rtol=1e-5)


def test_lambdas_weight_the_terms():
  logits, labels, k = inputs(1)
  out = segmentation.dice_ce_loss(jnp.asarray(logits), jnp.asarray(labels), k, lambda_dice=0.3,
                                  lambda_ce=2.0)
  np.testing.assert_allclose(out["loss"], 0.3 * out["dice_loss"] + 2.0 * out["ce"], rtol=1e-6)


def test_perfect_prediction_gives_a_small_loss():
  _, labels, k = inputs(2)
  out = segmentation.dice_ce_loss(jnp.asarray(np.eye(k)[labels] * 30.0), jnp.asarray(labels), k)
  # An absent class predicted absent scores ~0 too: smooth_nr / smooth_dr ~ 1.
  assert out["ce"] < 1e-6 and out["dice_loss"] < 1e-4


def test_gradients_are_finite():
  logits, labels, k = inputs(3)
  grad = jax.grad(lambda x: segmentation.dice_ce_loss(x, jnp.asarray(labels), k)["loss"])(
      jnp.asarray(logits, jnp.float32))
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).sum() > 0


def test_wrong_channel_count_is_an_error():
  logits, labels, k = inputs()
  with pytest.raises(ValueError, match="channels"):
    segmentation.dice_ce_loss(jnp.asarray(logits), jnp.asarray(labels), k + 1)


def test_sigmoid_form_by_hand():
  """One sample of 4 voxels: p = sigmoid(logits), labels 1 1 0 0."""
  logits = np.array([2.0, -1.0, 0.5, -3.0])
  labels = np.array([1, 1, 0, 0])
  p = 1 / (1 + np.exp(-logits))
  dice = 1 - (2 * (p[0] + p[1]) + 1e-5) / (p.sum() + 2 + 1e-5)
  bce = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
  out = segmentation.sigmoid_dice_ce_loss(jnp.asarray(logits)[None, :, None],
                                          jnp.asarray(labels)[None])
  np.testing.assert_allclose(out["dice_loss"], dice, rtol=1e-5)
  np.testing.assert_allclose(out["ce"], bce, rtol=1e-5)
  np.testing.assert_allclose(out["loss"], dice + bce, rtol=1e-5)
  with pytest.raises(ValueError, match="one output channel"):
    segmentation.sigmoid_dice_ce_loss(jnp.zeros((1, 4, 2)), jnp.zeros((1, 4), int))
