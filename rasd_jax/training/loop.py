"""The outer training loop: the stateful shell around a pure, jitted step.

The loop owns the cadence (big_vision's train loop): a step is `step(state, batch)` with the
next element of `batches` (or `step(state)` when the step makes its own batch, as
pre-training does on the device), and `evaluators` run every `evaluator.every` steps and at
the last step, as `evaluator(state, step)`, before that step's checkpoint.

Metrics are fetched one step late (the device runs step s+1 while the host logs step s).
A checkpoint is written only after its step's metrics are checked finite, so the last
checkpoint is always a good one. SIGTERM and Ctrl-C finish the current step, save, and
raise `Stopped` (run.py exits with 128 + the signal's number); a rerun resumes from there.
"""

import contextlib
import signal
import threading
import time

import jax
import jax.numpy as jnp
import tqdm


class NonFiniteError(FloatingPointError):
  pass


class Stopped(Exception):
  """A signal (`signum`) stopped the run after the checkpoint of its last step."""

  def __init__(self, signum, step):
    super().__init__(f"stopped by signal {signum} at step {step}")
    self.signum, self.step = signum, step


@contextlib.contextmanager
def _stop_on_signals():
  """Yields a callable that returns the first of SIGTERM or SIGINT that arrived, or None."""
  received = []
  if threading.current_thread() is not threading.main_thread():
    yield lambda: None  # Signal handlers can only be set from the main thread.
    return
  previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
  for s in previous:
    signal.signal(s, lambda signum, frame: received.append(signum))
  try:
    yield lambda: received[0] if received else None
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)


@jax.jit
def _still_finite(finite, metrics):
  return finite & jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])


def run(step_fn, state, batches=None, *, first_step, total_steps, batch_size, checkpointer,
        writer, log_every, checkpoint_every, evaluators=(), desc="train"):
  """Runs steps first_step .. total_steps - 1. Returns (state, last logged metrics). Raises
  NonFiniteError on a NaN/Inf loss or gradient, Stopped (after saving) on a signal."""
  show = jax.process_index() == 0
  bar = tqdm.tqdm(total=total_steps, initial=first_step, desc=desc, unit="step",
                  disable=not show, dynamic_ncols=True)
  last = {"time": time.perf_counter(), "step": first_step, "metrics": None}

  def log(step, metrics, finite, since):
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not bool(finite):
      kept = checkpointer.latest_step()
      where = (f"the last good checkpoint, of step {kept}, is kept in "
               f"{checkpointer.directory}, and the run resumes from it" if kept is not None
               else "no checkpoint was saved before it, so the run starts again from step 0")
      raise NonFiniteError(
          f"the loss or gradient became NaN or Inf in steps {since}-{step} (at step {step}: "
          f"loss {values.get('loss')}, grad_norm {values.get('grad_norm')}); stopped: "
          f"{where}. Run the same command with a lower --config.optim.lr, or with "
          "--config.optim.clip_norm or --config.optim.warmup_steps set (keys that may change "
          "on a resume).")
    now = time.perf_counter()
    step_s = (now - last["time"]) / (step - last["step"])
    values.update(step_s=round(step_s, 6), samples_per_s=round(batch_size / step_s, 3))
    last.update(time=now, step=step, metrics=values)
    writer.write(step, **values)
    bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)

  pending = None
  stopped = None
  # Every step's loss and gradient norm are checked on the device, logged or not; the
  # host reads the verdict of the steps since the last log when it logs.
  finite, since = True, first_step + 1
  with _stop_on_signals() as stop_requested, bar:  # the bar ends before any error line
    for step in range(first_step, total_steps):
      state, metrics = step_fn(state) if batches is None else step_fn(state, next(batches))
      done = step + 1
      for evaluator in evaluators:
        if done % evaluator.every == 0 or done == total_steps:
          evaluator(state, done)
      finite = _still_finite(finite, metrics)
      if pending is not None:
        log(*pending)
        pending = None
      stopped = stop_requested()
      if done % checkpoint_every == 0 or done == total_steps or stopped:
        log(done, metrics, finite, since)  # Synchronous: only a checked state is saved.
        checkpointer.save(done, state)
        finite, since = True, done + 1
      elif done % log_every == 0:
        pending = (done, metrics, finite, since)
        finite, since = True, done + 1
      bar.update(1)
      if stopped:
        break
  if stopped:
    if show:
      print(f"stopped by signal {stopped} at step {done}; checkpoint saved in "
            f"{checkpointer.directory}. Run the same command again to resume.", flush=True)
    raise Stopped(stopped, done)
  return state, last["metrics"]

