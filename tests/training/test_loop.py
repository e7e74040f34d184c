"""The outer loop: one-step-late metrics, checkpoint cadence, NaN stop, signals."""

import json
import os
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO_ROOT, tensorboard_events

from rasd_jax.training import checkpoint
from rasd_jax.training import loop
from rasd_jax.training import metrics as metrics_lib


def make_step(nan_at=None, signal_at=None):
  """A real jitted step on a real state: gradient descent on w^2."""

  @jax.jit
  def step(state):
    w = state["w"] - 0.1 * 2 * state["w"]
    loss = jnp.sum(state["w"] ** 2)
    if nan_at is not None:
      loss = jnp.where(state["step"] + 1 == nan_at, jnp.nan, loss)
    return {"step": state["step"] + 1, "w": w}, {"loss": loss, "grad_norm": jnp.abs(w).sum()}

  def host_step(state):
    out = step(state)
    if signal_at is not None and int(state["step"]) + 1 == signal_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return out

  return host_step


def run(tmp_path, step_fn, first_step=0, total_steps=10):
  saver = checkpoint.Checkpointer(tmp_path / "ck")
  writer = metrics_lib.MetricsWriter(tmp_path)
  state = {"step": jnp.int32(first_step), "w": jnp.ones(3)}
  try:
    return loop.run(step_fn, state, first_step=first_step, total_steps=total_steps,
                    batch_size=2, checkpointer=saver, writer=writer, log_every=2,
                    checkpoint_every=4)
  finally:
    saver.close()


def logged(tmp_path):
  return [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_logs_every_n_and_checkpoints(tmp_path):
  state, last = run(tmp_path, make_step())
  assert int(state["step"]) == 10
  records = logged(tmp_path)
  assert [r["step"] for r in records] == [2, 4, 6, 8, 10]
  assert records[0]["loss"] == pytest.approx(3 * 0.8 ** 2)  # loss at step 2 is of w after 1 step
  assert all(r["samples_per_s"] > 0 and r["step_s"] > 0 for r in records)
  assert last["loss"] == records[-1]["loss"]
  assert sorted(os.listdir(tmp_path / "ck"), key=int) == ["4", "8", "10"]


def test_nan_stops_with_the_last_good_checkpoint_kept(tmp_path):
  with pytest.raises(loop.NonFiniteError, match=r"NaN or Inf in steps 7-8.*checkpoint, of step "
                     r"4, is kept.*--config.optim.lr.*may change on a resume"):
    run(tmp_path, make_step(nan_at=7))
  assert sorted(os.listdir(tmp_path / "ck"), key=int) == ["4"]


def test_nan_before_any_checkpoint_says_there_is_none(tmp_path):
  with pytest.raises(loop.NonFiniteError, match="in steps 1-2.*no checkpoint was saved before "
                     "it, so the run starts again from step 0"):
    run(tmp_path, make_step(nan_at=1))
  assert os.listdir(tmp_path / "ck") == []


def test_nan_at_a_checkpoint_step_is_never_saved(tmp_path):
  with pytest.raises(loop.NonFiniteError, match="in steps 7-8"):
    run(tmp_path, make_step(nan_at=8))
  assert sorted(os.listdir(tmp_path / "ck"), key=int) == ["4"]


def test_sigterm_saves_and_raises_stopped(tmp_path):
  previous = signal.getsignal(signal.SIGTERM)
  with pytest.raises(loop.Stopped) as stopped:
    run(tmp_path, make_step(signal_at=6))
  assert (stopped.value.signum, stopped.value.step) == (signal.SIGTERM, 6)
  assert sorted(os.listdir(tmp_path / "ck"), key=int) == ["4", "6"]
  assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_tensorboard_events_are_written_without_importing_pytorch(tmp_path):
  """Where PyTorch is installed, writing TensorBoard scalars leaves it unimported (tensorboardX
  would import it: seconds of every job's start), the events read back, and PyTorch still
  imports afterwards."""
  pytest.importorskip("torch")
  script = f"""
import sys
from rasd_jax.training import metrics
writer = metrics.MetricsWriter({str(tmp_path)!r}, tensorboard=True, resume_step=3)
writer.write(4, loss=0.5)
writer.close()
assert "torch" not in sys.modules, "PyTorch was imported"
import torch
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       cwd=REPO_ROOT)
  assert out.returncode == 0, out.stderr[-2000:]
  events = tensorboard_events(tmp_path)
  assert [(e.step, e.session_log.status, [(v.tag, v.simple_value) for v in e.summary.value])
          for e in events[1:]] == [(3, 1, []), (4, 0, [("loss", 0.5)])]
