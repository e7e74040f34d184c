"""The pretrain job end to end, as users run it: `python run.py ...` in subprocesses.

A tiny 2D U-Net on 32x32 samples keeps each run to seconds on a 2-core CPU; the
compilation cache (conftest) is shared by the subprocesses.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, device_flags, tensorboard_events

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
  for event in tensorboard_events(workdir):
    for value in event.summary.value:
      scalars.setdefault(value.tag, {})[event.step] = value.simple_value
  return scalars


def test_runs_logs_checkpoints_and_continues(tmp_path):
  w = tmp_path / "w"
  out = run(w, "--config.total_steps=6", "--config.checkpoint_every=3")
  assert "compiled the train step" in out.stdout
  from rasd_jax import models
  assert f"model unet_tiny (2D): {models.count_params('unet_tiny', 2):,} parameters" in out.stdout
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
    env = dict(os.environ, XLA_FLAGS=device_flags(devices))
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


def tiny_config(**fields):
  """The TINY run's config, for the job called in this process."""
  from experiments import pretrain2d
  config = pretrain2d.get_config("runlocal")
  config.update(dict(model="unet_tiny", batch_size=2, log_every=1, **fields))
  config.synthesis.update(dict(size=32, num_labels=4))
  return config


def states(*paths):
  """The variables of each workdir's network (rasd_jax.load_model), by name."""
  from flax import nnx
  from rasd_jax import load_model
  from rasd_jax.training import transfer
  return [transfer.named(nnx.state(load_model(str(p)))) for p in paths]


def test_init_continues_from_the_weights_and_a_resume_never_reads_them(tmp_path, capsys):
  from rasd_jax.jobs import pretrain as pretrain_job
  w, v = tmp_path / "w", tmp_path / "v"
  run(w, "--config.total_steps=20", "--config.checkpoint_every=20")
  out = run(v, "--config.total_steps=4", "--config.checkpoint_every=4", f"--config.init={w}")
  assert f"initialising from {w} (step 20, backbone unet_tiny)" in out.stdout
  assert sorted(os.listdir(v / "checkpoints"), key=int) == ["0", "4"]
  assert json.load(open(v / "config.json"))["init"] == str(w)
  # Step 0 is W's network exactly: weights and batch statistics.
  start, source = states(v / "checkpoints" / "0", w)
  assert start.keys() == source.keys() and any(k.endswith("/mean") for k in start)
  for name in source:
    np.testing.assert_array_equal(start[name], source[name], err_msg=name)
  assert metrics(v)[0]["lr"] == 0.0  # a fresh step count: the schedule's warm-up from 0

  # Step s is the same batch (seed, s) in both runs: a fresh network's loss on it against W's
  # trained one, which is near the loss W ended with.
  fresh, trained = [r["loss"] for r in metrics(w)], [r["loss"] for r in metrics(v)]
  assert np.mean(trained) < 0.5 * np.mean(fresh[:4])
  assert abs(np.mean(trained) - np.mean(fresh[-4:])) < abs(np.mean(trained) - np.mean(fresh[:4]))

  # Another network is refused in one line, before the workdir is written.
  out = run(tmp_path / "x", "--config.model=unet_small", f"--config.init={w}", check=False)
  assert out.returncode and out.stderr.strip().splitlines() == [
      f"error: init {str(w)!r} holds unet_tiny (2D, 1 -> 32 channels); this run trains "
      "unet_small (2D, 1 -> 32 channels): continued pre-training needs the same network (set "
      "--config.model, synthesis.ndim, synthesis.channels or out_channels to match, or "
      "fine-tune it instead)"], out.stderr
  assert not os.path.exists(tmp_path / "x")

  # A resume loads its own checkpoint: W is not read (here it is gone). In this process: the
  # job as run.py calls it, without a second interpreter's start-up.
  os.rename(w, tmp_path / "w_moved")
  capsys.readouterr()
  pretrain_job.run(tiny_config(init=str(w), total_steps=6, checkpoint_every=4), str(v))
  out = capsys.readouterr().out
  assert "resuming from the checkpoint of step 4" in out and "initialising" not in out
  assert [r["step"] for r in metrics(v)] == list(range(1, 7))
  # Another init on a resume is refused: config.json keeps where the run started.
  with pytest.raises(ValueError, match=r"differs in \['init'\]"):
    pretrain_job.run(tiny_config(init=str(tmp_path / "w_moved"), total_steps=6,
                                 checkpoint_every=4), str(v))


def test_init_takes_a_fine_tuned_backbone_and_refuses_what_it_cannot_start_from(tmp_path):
  from flax import nnx
  from rasd_jax.training import checkpoint
  from rasd_jax.jobs import pretrain as pretrain_job
  from rasd_jax.training import transfer
  from rasd_jax.training import weights
  # A fine-tuning workdir's weights (W/best/STEP): the pre-trained backbone and a head.
  f = tmp_path / "finetuned"
  spec = weights.downstream_spec("unet_tiny", 2, 1, 32, 3)
  network = weights.build(spec, seed=1)
  _, params, rest = nnx.split(network, nnx.Param, ...)
  checkpointer = checkpoint.Checkpointer(f / spec["checkpoints"])
  checkpointer.save(7, {"params": params, "rest": rest})
  checkpointer.close()
  weights.write_spec(f, spec)
  loaded = pretrain_job.pretrained_network(tiny_config(init=str(f)), str(tmp_path / "new"))
  expected = transfer.named(nnx.state(network.backbone))
  assert transfer.named(nnx.state(loaded)).keys() == expected.keys()
  for name, value in transfer.named(nnx.state(loaded)).items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)

  # Each refused before the workdir is created.
  w = tmp_path / "w"
  (tmp_path / "empty").mkdir()
  for init, message in [
      (f, f"init {str(f)!r} holds the backbone of a fine-tuned network, unet_tiny (2D, 1 -> 32 "
          "channels); this run trains unet_tiny (3D, 1 -> 32 channels)"),
      (tmp_path / "nowhere", f"init {str(tmp_path / 'nowhere')!r} does not exist"),
      (tmp_path / "empty", "is not a workdir with trained weights")]:
    config = tiny_config(init=str(init))
    config.synthesis.ndim = 3
    with pytest.raises(ValueError, match=re.escape(message)):
      pretrain_job.run(config, str(w))
    assert not os.path.exists(w)
