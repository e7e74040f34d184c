"""The prototype loss against a direct NumPy transcription of the loss
(docs/method.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax.objectives import prototype


def softmax(x, axis):
  x = x - np.max(np.where(np.isfinite(x), x, -np.inf), axis=axis, keepdims=True)
  e = np.where(np.isfinite(x), np.exp(x), 0.0)
  return e / e.sum(axis=axis, keepdims=True)


def numpy_loss(f, labels, k, t=0.07, exclude_absent=False, cosine=False, protos_from=None):
  """f: (B, V, C) float64; labels (B, V). Loops written out, as in the formulas."""
  b, v, c = f.shape
  norm = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  f = norm(f) if cosine else f
  src = f if protos_from is None else (norm(protos_from) if cosine else protos_from)
  y = np.eye(k)[labels]  # (B, V, K)
  p = np.zeros((b, k, c))
  for i in range(b):
    for j in range(k):
      if y[i, :, j].sum() > 0:
        p[i, j] = (src[i] * y[i, :, j:j + 1]).sum(0) / y[i, :, j].sum()
  p = norm(p) if cosine else p
  present = y.sum(1) > 0
  s = np.einsum("bkc,bvc->bvk", p, f) / t
  g = np.einsum("bic,bjc->bij", p, p) / t
  eye = np.broadcast_to(np.eye(k), (b, k, k)).copy()
  if exclude_absent:
    s = np.where(present[:, None, :], s, -np.inf)
    g = np.where(present[:, None, :], g, -np.inf)
    eye = eye * present[:, :, None]
  seg = -np.mean(y * np.log(softmax(s, -1) + 1e-6))
  proto = -np.mean(eye * np.log(softmax(g, -1) + 1e-6))
  acc = np.mean(np.argmax(s, -1) == labels)
  return seg, proto, acc


def inputs(seed=0, b=2, shape=(6, 5), c=8, k=5, absent=3):
  rng = np.random.default_rng(seed)
  f = rng.standard_normal((b, *shape, c)) * 0.5
  labels = rng.integers(0, k, (b, *shape))
  labels[labels == absent] = 0  # label `absent` is missing from every sample
  return f, labels, k


@pytest.mark.parametrize("options", [{}, {"exclude_absent": True}, {"cosine": True},
                                     {"exclude_absent": True, "cosine": True}])
def test_matches_the_formulas(options):
  f, labels, k = inputs()
  ours = prototype.prototype_loss(jnp.asarray(f, jnp.float32), jnp.asarray(labels), k,
                                  **options)
  seg, proto, acc = numpy_loss(f.reshape(2, -1, 8), labels.reshape(2, -1), k, **options)
  np.testing.assert_allclose(ours["loss_seg"], seg, rtol=2e-4)
  np.testing.assert_allclose(ours["loss_proto"], proto, rtol=2e-4, atol=1e-7)
  np.testing.assert_allclose(ours["loss"], seg + proto, rtol=2e-4)
  np.testing.assert_allclose(ours["proto_acc"], acc)


def test_two_view_cross_term_matches_the_formulas():
  f, labels, k = inputs()
  g = f + np.random.default_rng(1).standard_normal(f.shape) * 0.3
  out = prototype.two_view_loss(jnp.asarray(f, jnp.float32), jnp.asarray(g, jnp.float32),
                                jnp.asarray(labels), k)
  fa, fb, y = f.reshape(2, -1, 8), g.reshape(2, -1, 8), labels.reshape(2, -1)
  cross = 0.5 * (numpy_loss(fb, y, k, protos_from=fa)[0] + numpy_loss(fa, y, k, protos_from=fb)[0])
  np.testing.assert_allclose(out["loss_cross"], cross, rtol=2e-4)
  single = [numpy_loss(x, y, k) for x in (fa, fb)]
  np.testing.assert_allclose(out["loss_seg"], 0.5 * (single[0][0] + single[1][0]), rtol=2e-4)
  np.testing.assert_allclose(out["loss"], out["loss_seg"] + out["loss_proto"] + cross,
                             rtol=1e-5)


@pytest.mark.parametrize("options", [{}, {"exclude_absent": True}, {"cosine": True}])
def test_gradients_are_finite_with_an_absent_label(options):
  f, labels, k = inputs()
  grad = jax.grad(lambda x: prototype.prototype_loss(x, jnp.asarray(labels), k,
                                                     **options)["loss"])(
      jnp.asarray(f, jnp.float32))
  assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).sum() > 0


def test_separated_prototypes_give_a_low_loss_and_full_accuracy():
  labels = np.repeat(np.arange(4), 8).reshape(1, 32)
  f = np.eye(4)[labels] * 3.0  # each region its own direction
  out = prototype.prototype_loss(jnp.asarray(f, jnp.float32), jnp.asarray(labels), 4)
  mixed = prototype.prototype_loss(jnp.ones((1, 32, 4)), jnp.asarray(labels), 4)
  assert out["proto_acc"] == 1.0 and out["loss"] < 0.1 * mixed["loss"]
