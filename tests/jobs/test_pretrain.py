"""The pretrain job end to end, as users run it: `python run.py ...` in subprocesses.

A tiny 2D U-Net on 32x32 samples keeps each run to seconds on a 2-core CPU; the
compilation cache (conftest) is shared by the subprocesses.
"""

import glob
import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from conftest import REPO_ROOT

TINY = ["--config.model=unet_tiny", "--config.synthesis.size=32",
        "--config.synthesis.num_labels=4", "--config.batch_size=2", "--config.log_every=1"]


def command(workdir, *overrides, config="experiments/pretrain2d.py:runlocal"):
  return [sys.executable, "run.py", f"--config={config}", f"--workdir={workdir}", *TINY,
          *overrides]


def run(workdir, *overrides, check=True, env=None, **kwargs):
  result = subprocess.run(command(workdir, *overrides, **kwargs), cwd=REPO_ROOT,
                          capture_output=True, text=True, env=env)
  if check and result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result


def metrics(workdir):
  return [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]


def tensorboard_scalars(workdir):
  """{tag: {step: value}} read back from the TFRecord event files."""
  scalars = {}
  for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
    data = open(path, "rb").read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack("<Q", data[offset:offset + 8])
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_runs_logs_checkpoints_and_continues(tmp_path):
  w = tmp_path / "w"
  out = run(w, "--config.total_steps=6", "--config.checkpoint_every=3")
  assert "parameters" in out.stdout and "compiled the train step" in out.stdout
  records = metrics(w)
  assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
  keys = {"step", "loss", "loss_seg", "loss_proto", "proto_acc", "lr", "grad_norm",
          "samples_per_s", "step_s"}
  assert all(set(r) == keys for r in records)
  for r in records:
    assert r["loss"] == pytest.approx(r["loss_seg"] + r["loss_proto"], rel=1e-5)
    assert 0 <= r["proto_acc"] <= 1 and r["grad_norm"] > 0
  assert [r["lr"] for r in records[:2]] == [0.0, pytest.approx(5e-5)]  # warm-up from 0
  assert sorted(os.listdir(w / "checkpoints"), key=int) == ["3", "6"]
  scalars = tensorboard_scalars(w)
  assert scalars["loss"] == pytest.approx({r["step"]: r["loss"] for r in records})

  # Asking for more steps continues from the last checkpoint.
  out = run(w, "--config.total_steps=8", "--config.checkpoint_every=3")
  assert "resuming from the checkpoint of step 6" in out.stdout
  assert [r["step"] for r in metrics(w)] == list(range(1, 9))
  assert "nothing to do" in run(w, "--config.total_steps=8").stdout


def test_sigkill_then_resume_continues_exactly(tmp_path):
  """Killed mid-run and restarted, the job repeats nothing and its losses (hence its data
  and weights) equal those of an uninterrupted run, step for step."""
  steps = ["--config.total_steps=40", "--config.checkpoint_every=5"]
  run(tmp_path / "reference", *steps)
  reference = {r["step"]: r["loss"] for r in metrics(tmp_path / "reference")}

  w = tmp_path / "killed"
  process = subprocess.Popen(command(w, *steps), cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    done = [r["step"] for r in metrics(w)] if os.path.exists(w / "metrics.jsonl") else []
    if done and done[-1] >= 12:  # past the checkpoint saves of steps 5 and 10
      break
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = metrics(w)[-1]["step"]
  assert killed_at < 40

  out = run(w, *steps)
  resumed_from = int(out.stdout.split("resuming from the checkpoint of step ")[1].split()[0])
  # The save of step 10 may still have been in flight (asynchronous) when the kill came.
  assert resumed_from in (5, 10) and resumed_from < killed_at
  records = metrics(w)
  assert [r["step"] for r in records] == list(range(1, 41))  # each step once
  np.testing.assert_allclose([r["loss"] for r in records],
                             [reference[s] for s in range(1, 41)], rtol=1e-6)


def test_same_losses_on_1_and_8_devices(tmp_path):
  losses = {}
  for devices in (1, 8):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = run(tmp_path / str(devices), "--config.total_steps=4", "--config.batch_size=8",
              env=env)
    assert f"{devices} devices" in out.stdout
    losses[devices] = [r["loss"] for r in metrics(tmp_path / str(devices))]
  np.testing.assert_allclose(losses[8], losses[1], rtol=1e-4)


def test_bad_input_gives_clear_errors_and_keeps_checkpoints(tmp_path):
  out = run(tmp_path / "a", "--config.model=swinunetr_tiyn", check=False)
  assert out.returncode and "error: unknown model 'swinunetr_tiyn'" in out.stderr
  assert "Did you mean 'swinunetr_tiny'?" in out.stderr
  assert not os.path.exists(tmp_path / "a")  # refused before anything was written
  # A sample size the network cannot take (unet_tiny: multiples of 4): one line, no workdir.
  out = run(tmp_path / "b", "--config.synthesis.size=34", check=False)
  assert out.returncode and out.stderr.strip().splitlines() == [
      "error: UNet: input size (34, 34) is not a multiple of 4 (the product of its strides) "
      "on every axis"], out.stderr
  assert not os.path.exists(tmp_path / "b")

  not_a_folder = tmp_path / "file"
  not_a_folder.write_text("")
  out = run(not_a_folder / "w", "--config.total_steps=1", check=False)
  assert out.returncode and "error: cannot create workdir" in out.stderr

  w = tmp_path / "w"
  run(w, "--config.total_steps=2", "--config.checkpoint_every=2")
  saved = sorted(os.walk(w / "checkpoints"))
  out = run(w, "--config.total_steps=2", "--config.synthesis.size=64", check=False)
  assert out.returncode and "holds a run with another config" in out.stderr
  assert "synthesis.size" in out.stderr
  # Without its config.json the checkpoint itself is checked: another model is refused.
  os.remove(w / "config.json")
  out = run(w, "--config.total_steps=4", "--config.model=unet_small", check=False)
  assert out.returncode and "holds another model or shape" in out.stderr
  assert sorted(os.walk(w / "checkpoints")) == saved
