"""AdamW, schedules and clipping from config.optim."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rasd_jax.training import optimizer


def test_reference_default_is_constant_adamw():
  optim = optimizer.get_config()
  tx, schedule = optimizer.make(optim, total_steps=100)
  assert [float(schedule(s)) for s in (0, 50, 99)] == pytest.approx([1e-5] * 3)
  # One AdamW step from zero moments moves every weight by lr * (sign(g) + wd * w).
  params = {"w": jnp.array([1.0, -2.0])}
  grads = {"w": jnp.array([0.5, 3.0])}
  updates, _ = tx.update(grads, tx.init(params), params)
  expected = -1e-5 * (np.sign([0.5, 3.0]) + 0.01 * np.array([1.0, -2.0]))
  np.testing.assert_allclose(updates["w"], expected, rtol=1e-4)


def test_warmup_then_cosine():
  optim = optimizer.get_config(lr=1e-3, schedule="cosine", warmup_steps=10)
  _, schedule = optimizer.make(optim, total_steps=110)
  assert float(schedule(0)) == 0.0
  assert float(schedule(5)) == pytest.approx(5e-4)
  assert float(schedule(10)) == pytest.approx(1e-3)
  assert float(schedule(60)) == pytest.approx(5e-4, rel=1e-3)  # half-way down the cosine
  assert float(schedule(110)) == pytest.approx(0.0, abs=1e-9)


def test_clipping_bounds_the_update_direction():
  optim = optimizer.get_config(lr=1.0, weight_decay=0.0, clip_norm=1.0)
  tx, _ = optimizer.make(optim, total_steps=10)
  params = {"w": jnp.zeros(2)}
  state = tx.init(params)
  # Adam normalises the step, so compare the clipped gradient Adam saw: its first moment.
  _, state = tx.update({"w": jnp.array([30.0, 40.0])}, state, params)
  mu = state[1][0].mu["w"]
  np.testing.assert_allclose(optax.tree.norm(mu) / (1 - 0.9), 1.0, rtol=1e-5)


@pytest.mark.parametrize("change, message", [
    (dict(schedule="linear"), "optim.schedule"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(clip_norm=-1.0), "clip_norm"),
])
def test_bad_settings_are_clear_errors(change, message):
  optim = optimizer.get_config()
  optim.update(change)
  with pytest.raises(ValueError, match=message):
    optimizer.make(optim, total_steps=10)
