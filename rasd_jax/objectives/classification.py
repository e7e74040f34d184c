"""Losses of the downstream classification and regression tasks (docs/protocol.md), each
the mean over all elements as the torch defaults the reference uses: `CrossEntropyLoss`
(multi-class), `BCEWithLogitsLoss` (binary and multi-label) and `L1Loss` (regression)."""

import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, label_smoothing=0.0):
  """logits (..., K), integer labels (...). Label smoothing as torch: the target becomes
  (1 - label_smoothing) one_hot + label_smoothing / K."""
  logits = logits.astype(jnp.float32)
  if label_smoothing == 0.0:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  targets = optax.smooth_labels(jnp.eye(logits.shape[-1])[labels], label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def binary_cross_entropy(logits, targets):
  """logits and targets in [0, 1] of one shape (e.g. (B, labels)); stable for large |logits|."""
  return jnp.mean(optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets))


def l1(pred, target):
  return jnp.mean(jnp.abs(pred.astype(jnp.float32) - target))
