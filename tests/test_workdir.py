"""Workdir safety through run.py (real processes, real files): a folder holding a user's
files is never written, one run per workdir (the lock, its take-over), checks before any
write, a damaged checkpoint set aside, the NaN stop's advice, signals' exit status, a full
disk."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from monai.networks.nets import UNet as MonaiUNet

from conftest import REPO_ROOT, run_job
from gcs import gcs  # noqa: F401 - the fixture
from rasd_jax import workdir as workdir_lib

# The settings of the other pretrain tests: their compiled programs are in the shared cache.
PRETRAIN = ["--config.model=unet_tiny", "--config.synthesis.size=32",
            "--config.synthesis.num_labels=4", "--config.batch_size=2", "--config.log_every=1",
            "--config.checkpoint_every=2"]
PRETRAIN_CONFIG = "experiments/pretrain2d.py:runlocal"


def pretrain(workdir, *overrides, check=True):
  return run_job(PRETRAIN_CONFIG, workdir, *PRETRAIN, *overrides, check=check)


def start_pretrain(workdir, *overrides):
  return subprocess.Popen(
      [sys.executable, "run.py", f"--config={PRETRAIN_CONFIG}", f"--workdir={workdir}",
       *PRETRAIN, *overrides], cwd=REPO_ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def steps_logged(workdir):
  return [r["step"] for r in workdir_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))]


def error_line(result):
  """The one `error:` line a failed run ends with (asserting there is no traceback)."""
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("error: "), result.stderr[-3000:]
  return last


def snapshot(folder):
  """{relative path: bytes} of every file under `folder`."""
  out = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(parent, name)
      out[os.path.relpath(path, folder)] = open(path, "rb").read()
  return out


@pytest.mark.slow(40)
def test_export_never_replaces_a_users_files_unless_told(tmp_path):
  """export_weights into a model repository's clone (README.md, model.safetensors,
  card.json, config.json): refused, every file as it was; with overwrite=True the export's
  files replace theirs and the rest is untouched. Then an export of ours, rewritten."""
  torch.manual_seed(0)
  from rasd_jax import models
  net = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, act="relu", norm="batch",
                  **models.MODELS["unet_tiny"][1])
  torch.save(net.state_dict(), tmp_path / "unet.pth")
  source = tmp_path / "imported"
  run_job("experiments/import_weights.py", source, f"--config.path={tmp_path / 'unet.pth'}",
          "--config.model=unet_tiny", "--config.ndim=2")
  clone = tmp_path / "clone"
  os.makedirs(clone / ".git")
  for name, text in [("README.md", "# my model\n"), ("model.safetensors", "mine"),
                     ("card.json", '{"mine": 1}'), ("config.json", '{"hidden_size": 8}'),
                     (".git/HEAD", "ref: refs/heads/main\n")]:
    (clone / name).write_text(text)
  before = snapshot(clone)
  export = ["experiments/export_weights.py:format=monai", clone, f"--config.source={source}"]
  line = error_line(run_job(*export, check=False))
  assert (f"workdir '{clone}' holds files that no run of this project wrote (.git, README.md, "
          "card.json, config.json, model.safetensors); nothing was written") in line
  assert snapshot(clone) == before
  run_job(*export, "--config.overwrite=true")
  after = snapshot(clone)
  assert after[".git/HEAD"] == before[".git/HEAD"]
  assert json.loads(after["card.json"])["network"] == "monai.networks.nets.UNet"
  assert after["model.safetensors"] != before["model.safetensors"]
  assert "lock.json" not in after
  run_job(*export)  # now an export of ours, of the same config: written again
  again = snapshot(clone)
  assert json.loads(again.pop("config.json"))["overwrite"] is False
  assert again == {k: v for k, v in after.items() if k != "config.json"}


def test_two_runs_at_once_one_refused_naming_the_other(tmp_path):
  """Two pretrains started together on one workdir: one trains, the other stops at once with
  one line naming the holder's host and pid; each step is logged once, and the lock goes
  with the run."""
  w = tmp_path / "w"
  runs = [start_pretrain(w, "--config.total_steps=8") for _ in range(2)]
  outs = [(p.wait(), *p.communicate()) for p in runs]
  codes = sorted(code for code, _, _ in outs)
  assert codes == [0, 1], [err[-2000:] for _, _, err in outs]
  winner = runs[[code for code, _, _ in outs].index(0)]
  loser = outs[[code for code, _, _ in outs].index(1)]
  line = loser[2].strip().splitlines()[-1]
  assert line.startswith(f"error: workdir '{w}' is in use by another run (host "
                         f"{socket.gethostname()}, pid {winner.pid}, since "), line
  assert steps_logged(w) == list(range(1, 9))
  assert "lock.json" not in os.listdir(w)


def test_lock_of_a_gone_run_is_taken_over(tmp_path):
  """A lock whose process is gone (same host) or whose heartbeat stopped (another host) is
  taken over; a live one is refused, one of another host with a fresh heartbeat too."""
  w = tmp_path / "w"
  os.makedirs(w)
  dead = subprocess.Popen(["true"])
  dead.wait()
  now = time.time()
  held = {"id": "x", "host": socket.gethostname(), "pid": os.getppid(), "command": "python a",
          "started": now, "heartbeat": now}
  cases = [(dict(held, pid=dead.pid), True), (held, False),
           (dict(held, host="elsewhere", heartbeat=now - 1000), True),
           (dict(held, host="elsewhere", pid=dead.pid), False)]
  for record, taken in cases:
    (w / "lock.json").write_text(json.dumps(record))
    lock = workdir_lib.Lock(w)
    if taken:
      lock.acquire()
      assert json.loads((w / "lock.json").read_text())["id"] == lock.id
      lock.release()
      assert not (w / "lock.json").exists()
    else:
      with pytest.raises(ValueError, match=rf"in use by another run \(host {record['host']}, "
                         rf"pid {record['pid']}, since .*: python a\)"):
        lock.acquire()
      assert json.loads((w / "lock.json").read_text()) == record


def test_lock_on_cloud_storage(gcs):
  """gs://: a second run (another process) is refused; released, the lock is gone."""
  from etils import epath
  w = f"gs://{gcs.bucket}/locked"
  first = workdir_lib.Lock(w).acquire()
  second = subprocess.run(
      [sys.executable, "-c", f"from rasd_jax import workdir; workdir.Lock({w!r}).acquire()"],
      env=gcs.env, cwd=REPO_ROOT, capture_output=True, text=True)
  assert second.returncode == 1 and (
      f"ValueError: workdir '{w}' is in use by another run (host {socket.gethostname()}, "
      f"pid {os.getpid()}, since ") in second.stderr, second.stderr[-2000:]
  first.release()
  assert not epath.Path(f"{w}/lock.json").exists()
  workdir_lib.Lock(w).acquire().release()


def test_failed_checks_leave_the_workdir_as_it_was(tmp_path):
  """A config value refused (lr -1, lr NaN): a new workdir is not created, an empty one stays
  empty. A workdir whose config.json is no run's (a list) is refused naming it."""
  empty = tmp_path / "empty"
  os.makedirs(empty)
  for w, value, message in [
      (tmp_path / "new", "-1", "optim: lr must be > 0"),
      (empty, "nan", "config values must be finite numbers: optim.lr = nan")]:
    line = error_line(pretrain(w, f"--config.optim.lr={value}", check=False))
    assert message in line, line
  assert not (tmp_path / "new").exists() and os.listdir(empty) == []
  listed = tmp_path / "listed"
  os.makedirs(listed)
  (listed / "config.json").write_text("[1, 2]")
  line = error_line(pretrain(listed, check=False))
  assert "holds files that no run of this project wrote (config.json)" in line
  with pytest.raises(ValueError, match=f"{listed / 'config.json'} holds a list, not the config"):
    workdir_lib.read_config(listed)


@pytest.mark.slow(60)
def test_sigterm_exits_143_and_a_damaged_checkpoint_is_set_aside(tmp_path):
  """SIGTERM mid-run: the step's checkpoint saved, exit status 128 + 15. Then the latest
  checkpoint truncated: the resume names it, keeps it as <step>.damaged and resumes from the
  one before, logging the same losses as the first run did. (None that restores:
  tests/training/test_checkpoint.py.)"""
  w = tmp_path / "w"
  process = start_pretrain(w, "--config.total_steps=100000", "--config.keep_checkpoints=3")
  while not os.path.exists(w / "checkpoints" / "4"):
    assert process.poll() is None, process.communicate()[1][-3000:]
    time.sleep(0.2)
  process.send_signal(signal.SIGTERM)
  out, err = process.communicate(timeout=120)
  assert process.returncode == 128 + signal.SIGTERM, err[-3000:]
  last = int(out.split("stopped by signal 15 at step ")[1].split(";")[0])
  first = workdir_lib.read_jsonl(w / "metrics.jsonl")
  assert [r["step"] for r in first] == list(range(1, last + 1))
  steps = sorted(int(n) for n in os.listdir(w / "checkpoints"))
  assert steps[-1] == last and len(steps) == 3

  latest = w / "checkpoints" / str(last)
  data = max((os.path.join(p, n) for p, _, names in os.walk(latest) for n in names),
             key=os.path.getsize)
  os.truncate(data, 100)
  damaged = snapshot(latest)
  out = pretrain(w, f"--config.total_steps={last + 2}", "--config.keep_checkpoints=3")
  aside = w / "checkpoints" / f"{last}.damaged"
  assert (f"warning: the checkpoint of step {last} cannot be read" in out.stdout
          and f"it is kept as {aside} (delete it once you no longer need it: rm -r {aside})"
          in out.stdout), out.stdout
  assert f"resuming from the checkpoint of step {steps[-2]}" in out.stdout
  assert snapshot(aside) == damaged  # kept byte for byte
  again = workdir_lib.read_jsonl(w / "metrics.jsonl")
  assert [r["step"] for r in again] == list(range(1, last + 3))
  for before, after in zip(first[steps[-2]:], again[steps[-2]:last]):  # the same steps again
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-5), (before, after)


def test_nan_stop_advice_can_be_followed(tmp_path):
  """A learning rate that diverges before the first checkpoint: the NaN stop says there is
  none, and its advice, a lower lr and clipping on the same workdir, is accepted and trains
  from step 0. The error line starts a line of its own after the progress bar. (The message
  naming a kept checkpoint: tests/training/test_loop.py.)"""
  w = tmp_path / "w"
  settings = ["--config.total_steps=6", "--config.checkpoint_every=100"]
  out = pretrain(w, *settings, "--config.optim.lr=1e30", check=False)
  line = error_line(out)
  assert "the loss or gradient became NaN or Inf" in line and "--config.optim.lr" in line
  assert "no checkpoint was saved before it, so the run starts again from step 0" in line
  assert "\nerror: " in out.stderr and os.listdir(w / "checkpoints") == []
  out = pretrain(w, *settings, "--config.optim.lr=1e-4", "--config.optim.clip_norm=1.0")
  assert "resuming" not in out.stdout and steps_logged(w) == list(range(1, 7))
  assert np.isfinite([r["loss"] for r in workdir_lib.read_jsonl(w / "metrics.jsonl")]).all()


@pytest.mark.slow(30)
def test_full_disk_is_one_error_line(tmp_path):
  """A workdir on a 1 MiB filesystem (tmpfs, where this test may mount one): the save that
  fills it stops the run with one line naming the folder, and no traceback."""
  disk = tmp_path / "disk"
  os.makedirs(disk)
  mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                           capture_output=True)
  if mounted.returncode:
    pytest.skip(f"cannot mount a small filesystem here: {mounted.stderr.decode().strip()}")
  try:
    w = disk / "w"
    out = pretrain(w, "--config.total_steps=200", "--config.checkpoint_every=10", check=False)
    line = error_line(out)
    assert line.startswith("error: No space left on device: ") and str(w) in line, line
    assert len([l for l in out.stderr.splitlines()
                if l.strip() and "pretrain:" not in l]) == 1, out.stderr
  finally:
    subprocess.run(["umount", str(disk)], check=True)
