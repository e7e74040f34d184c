"""AdamW with a learning-rate schedule and optional gradient clipping, from `config.optim`.

Defaults are the reference's (METHOD.md section 5): lr 1e-5, betas (0.9, 0.999), eps 1e-8,
weight decay 0.01 on every parameter, constant rate, no clipping.
"""

import ml_collections
import optax


def get_config(lr=1e-5, weight_decay=0.01, schedule="constant", warmup_steps=0,
               clip_norm=0.0):
  return ml_collections.ConfigDict(dict(
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
  if optim.lr <= 0 or optim.warmup_steps < 0 or optim.clip_norm < 0:
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
  tx = optax.adamw(schedule, b1=optim.b1, b2=optim.b2, eps=optim.eps,
                   weight_decay=optim.weight_decay)
  if optim.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(optim.clip_norm), tx)
  return tx, schedule
