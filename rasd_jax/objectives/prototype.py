"""The RaSD disentanglement loss: region prototypes (docs/method.md).

features f: (B, *spatial, C) dense network output; labels y: (B, *spatial) ints in [0, K).
Per sample, prototype p_k = mean of f over the voxels of label k (0 for an absent label: the
reference divides by zero there). Region term: P = softmax_k(<p_k, f_v> / t),
L_seg = -mean_{b,k,v} y log(P + 1e-6). Prototype term: Q = softmax_j(<p_i, p_j> / t),
L_proto = -mean_{b,i,j} I_ij log(Q_ij + 1e-6). Gradients flow through the prototypes.

Options (off by default, as the reference): `exclude_absent` removes labels absent from a
sample from both softmaxes; `cosine` L2-normalises features and prototypes; `two_view_loss`
segments one appearance with the prototypes of the other.
"""

import jax
import jax.numpy as jnp

_EPS = 1e-6


def _normalise(x):
  # Not x / norm(x): the norm's gradient is NaN at the zero prototype of an absent label.
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-24))


def prototypes(f, y):
  """(B, K, C) masked averages; (B, K) presence."""
  counts = y.sum(axis=1)
  p = jnp.einsum("bvk,bvc->bkc", y, f) / jnp.maximum(counts, 1.0)[..., None]
  return p, counts > 0


def _segment(p, f, y, present, temperature, exclude_absent):
  """Region term of prototypes p on features f; also the voxel accuracy of its argmax."""
  logits = jnp.einsum("bkc,bvc->bvk", p, f) / temperature
  if exclude_absent:
    logits = jnp.where(present[:, None, :], logits, -jnp.inf)
  prob = jax.nn.softmax(logits, axis=-1)
  loss = -jnp.mean(y * jnp.log(prob + _EPS))
  accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(y, -1))
  return loss, accuracy


def _separate(p, present, temperature, exclude_absent):
  num_labels = p.shape[1]
  logits = jnp.einsum("bic,bjc->bij", p, p) / temperature
  eye = jnp.eye(num_labels)
  if exclude_absent:
    logits = jnp.where(present[:, None, :], logits, -jnp.inf)
    eye = eye * present[:, :, None]
  return -jnp.mean(eye * jnp.log(jax.nn.softmax(logits, axis=-1) + _EPS))


def _view(features, y, cosine):
  """Flattened features of one view with their prototypes and label presence."""
  f = features.reshape(features.shape[0], -1, features.shape[-1]).astype(jnp.float32)
  if cosine:
    f = _normalise(f)
  p, present = prototypes(f, y)
  return f, (_normalise(p) if cosine else p), present


def _one_hot(labels, num_labels):
  return jax.nn.one_hot(labels.reshape(labels.shape[0], -1), num_labels, dtype=jnp.float32)


def prototype_loss(features, labels, num_labels, temperature=0.07, exclude_absent=False,
                   cosine=False):
  """{'loss', 'loss_seg', 'loss_proto', 'proto_acc'} for one view."""
  y = _one_hot(labels, num_labels)
  f, p, present = _view(features, y, cosine)
  loss_seg, accuracy = _segment(p, f, y, present, temperature, exclude_absent)
  loss_proto = _separate(p, present, temperature, exclude_absent)
  return {"loss": loss_seg + loss_proto, "loss_seg": loss_seg, "loss_proto": loss_proto,
          "proto_acc": accuracy}


def two_view_loss(features_a, features_b, labels, num_labels, temperature=0.07,
                  exclude_absent=False, cosine=False):
  """Two appearances of one label map. Adds 'loss_cross' (each view's prototypes segment
  the other view: the structure-vs-appearance term) to the mean of the single-view terms."""
  y = _one_hot(labels, num_labels)
  (fa, pa, present), (fb, pb, _) = (_view(f, y, cosine) for f in (features_a, features_b))
  seg_a, acc_a = _segment(pa, fa, y, present, temperature, exclude_absent)
  seg_b, acc_b = _segment(pb, fb, y, present, temperature, exclude_absent)
  proto = 0.5 * (_separate(pa, present, temperature, exclude_absent)
                 + _separate(pb, present, temperature, exclude_absent))
  cross = 0.5 * (_segment(pa, fb, y, present, temperature, exclude_absent)[0]
                 + _segment(pb, fa, y, present, temperature, exclude_absent)[0])
  seg = 0.5 * (seg_a + seg_b)
  return {"loss": seg + proto + cross, "loss_seg": seg, "loss_proto": proto,
          "loss_cross": cross, "proto_acc": 0.5 * (acc_a + acc_b)}
