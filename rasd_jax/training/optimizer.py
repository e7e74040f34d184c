"""AdamW with a learning-rate schedule and optional gradient clipping, from `config.optim`.

Defaults are the reference's (README, "pretrain"): lr 1e-5, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01 on every parameter, constant rate, no clipping. `algorithm` picks the update
as torch names it (the downstream reference uses all three): "adamw" (decoupled weight decay),
"adamw_amsgrad" (the same with AMSGrad's running maximum of the second moment; optax takes it
over the bias-corrected moments, torch over the raw ones, so early steps differ) and "adam"
(weight decay as an L2 term added to the gradient, torch.optim.Adam's weight_decay).
"""

import math

import ml_collections
import optax


ALGORITHMS = ("adamw", "adamw_amsgrad", "adam")
# What may change when a run resumes (the advice of the NaN stop): the rate and its
# schedule, and clipping, which leaves the optimiser's state as it is (`make`).
MAY_CHANGE = ("optim.lr", "optim.schedule", "optim.warmup_steps", "optim.warmup_epochs",
              "optim.final_lr_fraction", "optim.clip_norm")


def get_config(lr=1e-5, weight_decay=0.01, schedule="constant", warmup_steps=0,
               clip_norm=0.0, algorithm="adamw"):
  return ml_collections.ConfigDict(dict(
      algorithm=algorithm,      # one of ALGORITHMS
      lr=lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay,
      schedule=schedule,        # one of SCHEDULES
      warmup_steps=warmup_steps,  # linear from 0, then the schedule
      final_lr_fraction=0.0,    # cosine: the rate at the last step, as a fraction of lr
      clip_norm=clip_norm,      # > 0: clip the global gradient norm
  ))


def _constant(optim, total_steps):
  return optax.constant_schedule(optim.lr)


def _cosine(optim, total_steps):
  return optax.cosine_decay_schedule(optim.lr, max(total_steps - optim.warmup_steps, 1),
                                     alpha=optim.final_lr_fraction)


SCHEDULES = {"constant": _constant, "cosine": _cosine}


def learning_rate(optim, total_steps):
  """The schedule: step -> learning rate."""
  if optim.schedule not in SCHEDULES:
    raise ValueError(f"optim.schedule = {optim.schedule!r}; available: {sorted(SCHEDULES)}")
  if not (math.isfinite(optim.lr) and optim.lr > 0 and optim.warmup_steps >= 0
          and optim.clip_norm >= 0):
    raise ValueError(f"optim: lr must be > 0, warmup_steps and clip_norm >= 0; got lr="
                     f"{optim.lr}, warmup_steps={optim.warmup_steps}, "
                     f"clip_norm={optim.clip_norm}")
  after = SCHEDULES[optim.schedule](optim, total_steps)
  if not optim.warmup_steps:
    return after
  warmup = optax.linear_schedule(0.0, optim.lr, optim.warmup_steps)
  return optax.join_schedules([warmup, after], [optim.warmup_steps])


def make(optim, total_steps):
  """(optax transformation, schedule)."""
  schedule = learning_rate(optim, total_steps)
  if optim.algorithm not in ALGORITHMS:
    raise ValueError(f"optim.algorithm = {optim.algorithm!r}; available: {list(ALGORITHMS)}")
  decay = optax.add_decayed_weights(optim.weight_decay)
  lr = optax.scale_by_learning_rate(schedule)
  if optim.algorithm == "adam":
    tx = optax.chain(decay, optax.scale_by_adam(optim.b1, optim.b2, optim.eps), lr)
  elif optim.algorithm == "adamw_amsgrad":
    tx = optax.chain(optax.scale_by_amsgrad(optim.b1, optim.b2, optim.eps), decay, lr)
  else:
    tx = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                     weight_decay=optim.weight_decay)
  if optim.clip_norm:
    tx = _clipped(tx, optim.clip_norm)
  return tx, schedule


def _clipped(tx, max_norm):
  """`tx` applied to the gradients clipped to the global norm `max_norm`, with `tx`'s own
  state (optax.chain would add one), so that a run may set or change clip_norm when it
  resumes."""
  clip = optax.clip_by_global_norm(max_norm)

  def update(grads, state, params=None):
    grads, _ = clip.update(grads, clip.init(grads))
    return tx.update(grads, state, params)

  return optax.GradientTransformation(tx.init, update)
