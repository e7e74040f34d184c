"""Dice + cross-entropy for downstream segmentation, as MONAI's
`DiceCELoss(include_background=False, to_onehot_y=True, softmax=True)` (docs/protocol.md).

logits: (B, *spatial, C) channels-last; labels: (B, *spatial) ints in [0, C). With P the softmax
and Y the one-hot labels, per sample b and class c (sums over the spatial axes, and over the
batch too when `batch`):
  dice[b, c] = 1 - (2 sum(P Y) + smooth_nr) / (sum(P) + sum(Y) + smooth_dr),
averaged over classes and samples; class 0 (background) is left out unless `include_background`.
A class absent from a sample scores dice ~ 1 - smooth_nr / (sum(P) + smooth_dr), as in MONAI.
The CE part is the mean voxel cross-entropy over all classes: MONAI's CE never drops background.

`sigmoid_dice_ce_loss` is the binary one-channel form, MONAI's `DiceCELoss(sigmoid=True)`
without one-hot (the reference fundus tasks): P = sigmoid(logits[..., 0]) against the 0/1
labels, the same Dice on that channel, and the mean binary cross-entropy with logits.
"""

import jax
import jax.numpy as jnp
import optax


def dice_ce_loss(logits, labels, num_classes, include_background=False, smooth_nr=1e-5,
                 smooth_dr=1e-5, batch=False, lambda_dice=1.0, lambda_ce=1.0):
  """{'loss': lambda_dice * dice_loss + lambda_ce * ce, 'dice_loss', 'ce'}."""
  if logits.shape[-1] != num_classes:
    raise ValueError(f"logits have {logits.shape[-1]} channels, expected {num_classes}")
  log_prob = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  y = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  ce = -jnp.mean(jnp.sum(y * log_prob, axis=-1))

  first = 0 if include_background else 1
  dice = _dice_loss(jnp.exp(log_prob)[..., first:], y[..., first:], smooth_nr, smooth_dr, batch)
  return {"loss": lambda_dice * dice + lambda_ce * ce, "dice_loss": dice, "ce": ce}


def sigmoid_dice_ce_loss(logits, labels, smooth_nr=1e-5, smooth_dr=1e-5, batch=False,
                         lambda_dice=1.0, lambda_ce=1.0):
  """logits (B, *spatial, 1), labels (B, *spatial) in {0, 1}: {'loss', 'dice_loss', 'ce'}."""
  if logits.shape[-1] != 1:
    raise ValueError(f"sigmoid Dice+CE takes one output channel, got {logits.shape[-1]}")
  logits = logits.astype(jnp.float32)
  y = labels.astype(jnp.float32)[..., None]
  ce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y))
  dice = _dice_loss(jax.nn.sigmoid(logits), y, smooth_nr, smooth_dr, batch)
  return {"loss": lambda_dice * dice + lambda_ce * ce, "dice_loss": dice, "ce": ce}


def _dice_loss(p, y, smooth_nr, smooth_dr, batch):
  """Mean over samples and channels of 1 - soft Dice; p, y (B, *spatial, C)."""
  axes = tuple(range(0 if batch else 1, p.ndim - 1))
  intersection = jnp.sum(p * y, axis=axes)
  denominator = jnp.sum(p, axis=axes) + jnp.sum(y, axis=axes)
  return jnp.mean(1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr))
