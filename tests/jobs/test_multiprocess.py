"""Multi-process runs on this machine: 2 processes x 4 fake CPU devices on 127.0.0.1 (gloo
collectives), started the ways the README documents (explicit coordinator variables, SLURM),
against 1 process x 8 devices; and the start-up's bad input."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO_ROOT, device_flags
from gcs import free_port
from test_pretrain import command, metrics, run

STEPS = ["--config.total_steps=4", "--config.batch_size=8"]
# Variables of the caller's own cluster would change what the processes detect.
CLUSTER = ("SLURM_", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
           "TPU_WORKER_HOSTNAMES", "RASD_DISTRIBUTED")


def _env(devices, **variables):
  env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER)}
  env.update(XLA_FLAGS=device_flags(devices), **variables)
  return env


def _coordinator(processes=2, devices=4):
  """The environments of an explicit launch of `processes` x `devices`."""
  port = free_port()
  return [_env(devices, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
               JAX_NUM_PROCESSES=str(processes), JAX_PROCESS_ID=str(i))
          for i in range(processes)]


def _slurm(processes=2, devices=4):
  """A SLURM step's environments (JAX derives the coordinator's port from the job id)."""
  job = str(random.randrange(10**6))
  return [_env(devices, SLURM_NTASKS=str(processes), SLURM_PROCID=str(i),
               SLURM_LOCALID=str(i), SLURM_JOB_ID=job, SLURM_STEP_NODELIST="localhost")
          for i in range(processes)]


def _start(cmd, envs):
  return [subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) for env in envs]


def _launch(cmd, envs, timeout=600):
  """Runs `cmd` once per environment in `envs` (the processes of one launch); returns their
  stdouts once all have ended, each successfully (else the exit status and the end of the
  stderr of each: one process's failure is often told by another's)."""
  processes = _start(cmd, envs)
  ended = [p.communicate(timeout=timeout) for p in processes]
  assert not any(p.returncode for p in processes), "\n".join(
      f"process {i} (exit {p.returncode}): {err[-2000:]}"
      for i, (p, (_, err)) in enumerate(zip(processes, ended)))
  return [out for out, _ in ended]


def _job(config, workdir, *overrides):
  return [sys.executable, "run.py", f"--config={config}", f"--workdir={workdir}", *overrides]


@pytest.mark.parametrize("processes, devices", [(2, 4), (4, 2)])
def test_batch_layout_over_processes(tmp_path, processes, devices):
  """Batches of 1 to 16 over 8 devices in 2 or 4 processes: the mesh splits each the most
  ways the device count allows; a process feeds one block of rows (processes holding the
  same block feed the same rows) and the global batch assembled from the blocks is the
  batch; training cases are dealt out over the blocks, evaluation cases over the processes,
  and gathering puts each process's items back in the order of the cases."""
  outputs = [tmp_path / f"p{i}.json" for i in range(processes)]
  script = [sys.executable, os.path.join(REPO_ROOT, "tests", "jobs", "multiprocess_layout.py")]
  envs = _coordinator(processes, devices)
  procs = [subprocess.Popen(script + [str(out)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for env, out in zip(envs, outputs)]
  for p in procs:
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
  seen = [json.loads(out.read_text()) for out in outputs]
  cases = list(range(7))
  for batch in (1, 2, 4, 6, 8, 16):
    data = np.gcd(batch, 8)
    blocks = min(data, processes)  # 'data' runs across the processes in their order
    for p, s in enumerate(seen):
      got = s["batches"][str(batch)]
      assert got["mesh"] == {"replica": 8 // data, "data": data}
      assert got["global"] == [[r] * 3 for r in range(batch)]
      assert got["sum"] == [batch * (batch - 1) / 2] * 3
      assert (got["block"], got["blocks"]) == (p * blocks // processes, blocks)
      assert got["train"] == cases[got["block"]::blocks]
      assert got["val"] == cases[p::processes]
      assert f"batch {batch} " in got["describe"] and f"{processes} processes" in got["describe"]
      assert ("computed by" in got["describe"]) == (data < 8)
  for s in seen:
    assert s["gathered"] == [f"p{k % processes}c{k}" for k in cases]


def test_synthesize_two_processes_writes_the_files_of_one(tmp_path):
  """The synthesize job in 2 processes x 4 devices writes, once, the very files (byte for
  byte) 1 process x 8 devices writes: samples, montage, config."""
  cmd = lambda w: _job("experiments/synthesize.py:ndim=2,size=32,num=10", w,  # noqa: E731
                       "--config.batch_size=8", "--config.synthesis.num_labels=4")
  _launch(cmd(tmp_path / "one"), [_env(8)])
  _launch(cmd(tmp_path / "two"), _coordinator())
  names = sorted(os.listdir(tmp_path / "one" / "samples"))
  assert len(names) == 20 and sorted(os.listdir(tmp_path / "two" / "samples")) == names
  for name in [f"samples/{n}" for n in names] + ["montage.png", "config.json"]:
    assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


@pytest.mark.slow(200)
def test_pretrain_two_processes_equal_one_and_resume_after_sigkill(tmp_path):
  """2 processes x 4 devices, started as a SLURM step, give the losses of 1 process x 8
  devices; started with coordinator variables, both processes killed (SIGKILL) mid-run and
  started again (the launch given as run.py flags) resume from the last checkpoint and end
  with the uninterrupted run's losses."""
  steps = ["--config.total_steps=20", "--config.batch_size=8", "--config.checkpoint_every=4"]
  run(tmp_path / "one_process", *steps, env=_env(8))
  expected = [r["loss"] for r in metrics(tmp_path / "one_process")]
  assert len(expected) == 20

  slurm = tmp_path / "slurm"
  outputs = _launch(command(slurm, *steps), _slurm())
  assert "8 devices, 2 processes" in outputs[0], outputs[0]
  uninterrupted = [r["loss"] for r in metrics(slurm)]
  # The gradients' sums run in another order across processes (gloo) than within one: the
  # losses agree to float rounding at first, and drift apart slowly over the steps.
  np.testing.assert_allclose(uninterrupted[:12], expected[:12], rtol=1e-4)
  np.testing.assert_allclose(uninterrupted, expected, rtol=2e-3)

  w = tmp_path / "killed"
  processes = _start(command(w, *steps), _coordinator())
  deadline = time.time() + 300
  while time.time() < deadline and all(p.poll() is None for p in processes):
    done = [r["step"] for r in metrics(w)] if os.path.exists(w / "metrics.jsonl") else []
    if done and done[-1] >= 9:  # past the checkpoint saves of steps 4 and 8
      break
    time.sleep(0.05)
  assert all(p.poll() is None for p in processes), "the run ended before it could be killed"
  for p in processes:
    p.send_signal(signal.SIGKILL)
    p.wait()
  killed_at = metrics(w)[-1]["step"]
  assert killed_at < 20
  # Started again with the launch given as flags.
  port = free_port()
  processes = [_start(command(w, *steps, f"--coordinator_address=127.0.0.1:{port}",
                              "--num_processes=2", f"--process_id={i}"), [_env(4)])[0]
               for i in range(2)]
  outputs = []
  for p in processes:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
    outputs.append(out)
  resumed_from = int(outputs[0].split("resuming from the checkpoint of step ")[1].split()[0])
  assert resumed_from in (4, 8) and resumed_from < killed_at
  records = metrics(w)
  assert [r["step"] for r in records] == list(range(1, 21))
  np.testing.assert_allclose([r["loss"] for r in records], uninterrupted, rtol=1e-6)


FINETUNE = ["--config.model=unet_tiny", "--config.total_steps=6", "--config.eval_every_steps=3",
            "--config.checkpoint_every=3", "--config.log_every=1"]


def _losses(workdir):
  return [r["loss"] for r in metrics(workdir)]


def _results(workdir):
  return json.loads((workdir / "results.json").read_text())


@pytest.mark.slow(110)
def test_finetune_batch_1_on_1_device_and_2_processes(tmp_path):
  """A registry task (IDRiD grading, classification with QWK) at batch 1: one device, and 2
  processes x 4 devices (each computes the whole batch; both processes feed it the same case)
  train on the same batches and give the same losses, validation and test results; the job
  says how it laid the batch out."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
  import official
  from rasd_jax.data import tasks
  task = tasks.get("idrid_grading")
  official.write_prepared(task.name, str(tmp_path / "data"))
  cmd = lambda w: _job("experiments/finetune.py:task=idrid_grading,runlocal", w,  # noqa: E731
                       f"--config.data.dir={tmp_path / 'data'}", "--config.roi=(16,)",
                       "--config.batch_size=1", *FINETUNE)
  one = tmp_path / "one_device"
  _launch(cmd(one), [_env(1)])
  two = tmp_path / "two_processes"
  out = _launch(cmd(two), _coordinator())[0]
  assert ("batch 1 on 8 devices, 2 processes: split 1 ways, each part computed by 8 devices"
          in out), out
  np.testing.assert_allclose(_losses(two), _losses(one), rtol=1e-5)
  for part in ("val", "test"):
    for key in task.metrics + task.extra_metrics:
      assert _results(two)[part][key] == pytest.approx(_results(one)[part][key], rel=1e-5,
                                                       abs=1e-6), (part, key)


@pytest.mark.slow(65)
def test_finetune_two_processes_share_the_cases(tmp_path):
  """Custom segmentation data (4 training, 2 validation, 3 test cases), batch 2 on 2
  processes x 4 devices: each process reads and batches its share, the job reports the
  whole data set, and the validation and test scores gathered from the two processes equal
  those one process computes with the same weights."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "jobs"))
  from test_finetune import write_dataset
  data = write_dataset(tmp_path / "data", train=4, val=2, test=3)
  cmd = _job("experiments/finetune.py:task=custom,runlocal", tmp_path / "w",
             f"--config.data.json={data}", "--config.batch_size=2", *FINETUNE)
  out = _launch(cmd, _coordinator())[0]
  assert "cases {'train': 4, 'val': 2, 'test': 3}" in out, out
  assert "batch 2 on 8 devices, 2 processes: split 2 ways" in out, out
  two = _results(tmp_path / "w")
  assert two["split_sizes"] == {"train": 4, "val": 2, "test": 3}
  # Run again in one process on one device: nothing is left to train; it scores the
  # selected weights on the test cases alone.
  out = _launch(cmd, [_env(1)])[0]
  assert "resuming from the checkpoint of step 6" in out, out
  one = _results(tmp_path / "w")
  assert one["test"] == two["test"]
  assert one["val"] == two["val"] and one["selected_step"] == two["selected_step"]


@pytest.mark.slow(230)
def test_quickstart_and_suite_on_two_processes(tmp_path):
  """The quickstart (tiny, one amount of labels, no probe) and the suite (tiny, a registry
  segmentation task and a classification one) in 2 processes x 4 devices: every run done
  once, its record and the reports written once, by process 0."""
  q = tmp_path / "quickstart"
  _launch(_job("experiments/quickstart.py:tiny", q, "--config.brain.train_images=(1,)",
               "--config.nuclei.train_images=(1,)", "--config.brain.probe_images=()",
               "--config.nuclei.probe_images=()"), _coordinator())
  records = [json.loads(line) for line in (q / "runs.jsonl").read_text().splitlines()]
  keys = [(r["task"], r["init"], r["probe"]) for r in records]
  assert sorted(keys) == sorted((task, init, False) for task in ("brain", "nuclei")
                                for init in ("scratch", "pretrained"))
  assert all(0 <= r["test_dice"] <= 1 for r in records)
  assert "## Where there is and is not a difference" in (q / "report.md").read_text()

  sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "jobs"))
  from test_suite import read_csv, write_data
  write_data(tmp_path / "data", ["drive", "bfmr"])
  s = tmp_path / "suite"
  _launch(_job("experiments/suite.py:tiny,tasks=drive+bfmr", s,
               f"--config.data_root={tmp_path / 'data'}"), _coordinator())
  rows = read_csv(s)
  assert set(rows) == {"drive", "bfmr"} and all(r["status"] == "done" for r in rows.values())
  for name in rows:
    results = json.loads((s / name / "scratch" / "seed0" / "results.json").read_text())
    assert results["task"] == name and results["test"] is not None


def test_a_start_that_cannot_complete_is_one_line_in_bounded_time(tmp_path):
  port = free_port()  # nobody listens there
  cases = [
      (dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID="1", RASD_DISTRIBUTED_TIMEOUT="5"),
       f"the multi-process start failed (process 1 of 2): no coordinator answers at "
       f"127.0.0.1:{port} after 5 s"),
      (dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID="2"),
       "JAX_PROCESS_ID=2 with JAX_NUM_PROCESSES=2: the id must be 0 to 1"),
      (dict(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="two"),
       "JAX_NUM_PROCESSES='two': an integer"),
  ]
  for i, (variables, message) in enumerate(cases):
    w = tmp_path / f"w{i}"
    start = time.time()
    out = run(w, *STEPS, env=_env(4, **variables), check=False)
    assert time.time() - start < 60
    lines = out.stderr.strip().splitlines()
    assert out.returncode and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert message in lines[0], lines[0]
    assert not w.exists()


def test_processes_that_disagree_are_one_line_each_in_bounded_time(tmp_path):
  """Two processes of a launch that says three (the third never comes), and two that
  disagree on the count: each stops with one error line (XLA alone would abort them after
  its timeout with a stack dump), within the timeout, writing nothing."""
  for counts, message in (((3, 3), "2 of 3 processes arrived within 5 s (ids [0, 1])"),
                          ((2, 3), "process 1 says JAX_NUM_PROCESSES=3, process 0 says 2")):
    port = free_port()
    w = tmp_path / f"w{counts}"
    envs = [_env(4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES=str(n),
                 JAX_PROCESS_ID=str(i), RASD_DISTRIBUTED_TIMEOUT="5")
            for i, n in enumerate(counts)]
    start = time.time()
    for i, p in enumerate(_start(command(w, *STEPS), envs)):
      _, err = p.communicate(timeout=120)
      lines = err.strip().splitlines()
      assert p.returncode == 1 and len(lines) == 1, err[-3000:]
      assert lines[0] == (f"error: the multi-process start failed (process {i} of "
                          f"{counts[i]}): {message}"), lines[0]
    assert time.time() - start < 60
    assert not w.exists()


def test_a_process_that_stalls_after_the_check_in_is_one_line_in_bounded_time(tmp_path):
  """A process that checks in (distributed._check_in) and then never starts JAX, as process 1
  and as the coordinator, process 0: the other stops with one error line once its timeout has
  passed (XLA alone would abort it later with a stack dump), writing nothing."""
  stall = ("import sys, time; from rasd_jax.training import distributed; "
           "distributed._check_in(sys.argv[1], 2, int(sys.argv[2]), 60); time.sleep(600)")
  for stalled in (1, 0):
    address, index = f"127.0.0.1:{free_port()}", 1 - stalled
    peer = subprocess.Popen([sys.executable, "-c", stall, address, str(stalled)], cwd=REPO_ROOT,
                            env=_env(4))
    try:
      w = tmp_path / f"w{index}"
      start = time.time()
      out = run(w, *STEPS, check=False,
                env=_env(4, JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2",
                         JAX_PROCESS_ID=str(index), RASD_DISTRIBUTED_TIMEOUT="5"))
      assert time.time() - start < 60
      assert out.returncode == 1 and out.stderr.strip().splitlines() == [
          f"error: the multi-process start failed (coordinator {address}, process {index} of "
          "2): not every process joined JAX's start within 5 s (did one stall or die? see the "
          "other processes' output)"], out.stderr[-3000:]
      assert not w.exists()
    finally:
      peer.kill()
      peer.wait()
