"""AdamW, schedules and clipping from config.optim."""

import jax
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
  mu = state[0].mu["w"]
  np.testing.assert_allclose(optax.tree.norm(mu) / (1 - 0.9), 1.0, rtol=1e-5)


@pytest.mark.parametrize("algorithm", optimizer.ALGORITHMS)
def test_clipping_keeps_the_state_so_a_resume_may_change_it(algorithm):
  params = {"w": jnp.zeros(2)}
  states = [optimizer.make(optimizer.get_config(clip_norm=c, algorithm=algorithm), 10)[0]
            .init(params) for c in (0.0, 1.0)]
  assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])


@pytest.mark.parametrize("change, message", [
    (dict(schedule="linear"), "optim.schedule"),
    (dict(lr=0.0), "lr must be > 0"),
    (dict(lr=float("nan")), "lr must be > 0"),
    (dict(clip_norm=-1.0), "clip_norm"),
])
def test_bad_settings_are_clear_errors(change, message):
  optim = optimizer.get_config()
  optim.update(change)
  with pytest.raises(ValueError, match=message):
    optimizer.make(optim, total_steps=10)


def test_torch_algorithms_first_and_second_steps():
  """Two steps by hand. adam: wd as L2 in the gradient; adamw_amsgrad: decoupled wd, and the
  second-moment maximum (of the bias-corrected moments, optax's form) keeps step 2 smaller
  when the gradient shrinks."""
  lr, wd, b1, b2, eps = 0.1, 0.5, 0.9, 0.999, 1e-8
  w0, g1, g2 = 1.0, 2.0, 0.5
  params = {"w": jnp.array([w0])}

  def run(algorithm):
    tx, _ = optimizer.make(optimizer.get_config(lr=lr, weight_decay=wd, algorithm=algorithm), 10)
    state, w, out = tx.init(params), params, []
    for g in (g1, g2):
      updates, state = tx.update({"w": jnp.array([g])}, state, w)
      w = optax.apply_updates(w, updates)
      out.append(float(w["w"][0]))
    return out

  def adam_like(l2, amsgrad):
    w, m, v, vmax, out = w0, 0.0, 0.0, 0.0, []
    for t, g in enumerate((g1, g2), 1):
      g = g + (wd * w if l2 else 0.0)
      m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
      vmax = max(vmax, v / (1 - b2 ** t)) if amsgrad else v / (1 - b2 ** t)
      step = (m / (1 - b1 ** t)) / (np.sqrt(vmax) + eps)
      w = w - lr * (step + (0.0 if l2 else wd * w))
      out.append(w)
    return out

  np.testing.assert_allclose(run("adam"), adam_like(l2=True, amsgrad=False), rtol=1e-5)
  np.testing.assert_allclose(run("adamw_amsgrad"), adam_like(l2=False, amsgrad=True), rtol=1e-5)
  np.testing.assert_allclose(run("adamw"), adam_like(l2=False, amsgrad=False), rtol=1e-5)
  with pytest.raises(ValueError, match="optim.algorithm = 'sgd'"):
    optimizer.make(optimizer.get_config(algorithm="sgd"), 10)
