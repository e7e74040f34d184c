"""Multi-process runs on this machine: 2 processes x 4 fake CPU devices on 127.0.0.1 (gloo
collectives), started the ways the README documents (explicit coordinator variables, SLURM),
against 1 process x 8 devices; and the start-up's bad input."""

import os
import random
import socket
import subprocess
import time

import numpy as np

from conftest import REPO_ROOT
from test_pretrain import command, metrics, run

STEPS = ["--config.total_steps=4", "--config.batch_size=8"]
# Variables of the caller's own cluster would change what the processes detect.
CLUSTER = ("SLURM_", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID",
           "TPU_WORKER_HOSTNAMES", "RASD_DISTRIBUTED")


def _env(devices, **variables):
  env = {k: v for k, v in os.environ.items() if not k.startswith(CLUSTER)}
  env.update(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **variables)
  return env


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(workdir, envs, timeout=600):
  """Starts one process of the pretrain job per environment in `envs` on the same workdir;
  returns their (exit status, stdout, stderr) once all have ended."""
  processes = [subprocess.Popen(command(workdir, *STEPS), cwd=REPO_ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for env in envs]
  results = []
  for process in processes:
    out, err = process.communicate(timeout=timeout)
    results.append((process.returncode, out, err))
  return results


def test_two_processes_of_four_devices_equal_one_of_eight(tmp_path):
  reference = tmp_path / "one_process"
  run(reference, *STEPS, env=_env(8))
  expected = [r["loss"] for r in metrics(reference)]
  assert len(expected) == 4

  port = _free_port()
  explicit = [_env(4, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i)) for i in range(2)]
  # JAX derives SLURM's coordinator port from the job id.
  job = str(random.randrange(10**6))
  slurm = [_env(4, SLURM_NTASKS="2", SLURM_PROCID=str(i), SLURM_LOCALID=str(i),
                SLURM_JOB_ID=job, SLURM_STEP_NODELIST="localhost") for i in range(2)]
  for name, envs in (("coordinator", explicit), ("slurm", slurm)):
    results = _launch(tmp_path / name, envs)
    for status, _, err in results:
      assert status == 0, f"{name}: {err[-3000:]}"
    assert "8 devices, 2 processes" in results[0][1], results[0][1]
    np.testing.assert_allclose([r["loss"] for r in metrics(tmp_path / name)], expected,
                               rtol=1e-4, err_msg=name)


def test_a_start_that_cannot_complete_is_one_line_in_bounded_time(tmp_path):
  port = _free_port()  # nobody listens there
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
