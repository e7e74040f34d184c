"""Processes and devices: multi-process start-up and the `data` mesh over all devices."""

import os
import socket
import time

import jax
import numpy as np
from jax.sharding import Mesh


def multi_process_launch():
  """Whether this process is one of several: SLURM with several tasks, a multi-host TPU
  slice, JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES, JAX_PROCESS_ID) set, or
  RASD_DISTRIBUTED=1 (any other cluster JAX detects, e.g. Open MPI)."""
  return (int(os.environ.get("SLURM_NTASKS", "1")) > 1
          or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
          or "JAX_COORDINATOR_ADDRESS" in os.environ
          or os.environ.get("RASD_DISTRIBUTED") == "1")


# Seconds a process waits for the others (and the coordinator) at start-up before it stops
# with an error; RASD_DISTRIBUTED_TIMEOUT overrides.
TIMEOUT_S = 300


def _env_int(name):
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r}: an integer") from None


def _wait_for(address, timeout, who):
  """Returns once something listens at `address` (host:port); a ValueError after `timeout`
  seconds of trying."""
  host, _, port = address.rpartition(":")
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
        return
    except OSError as e:
      if time.monotonic() >= deadline:
        raise ValueError(f"the multi-process start failed ({who}): no coordinator answers at "
                         f"{address} after {timeout} s ({e})") from None
      time.sleep(0.5)


def initialize_distributed():
  """`jax.distributed.initialize` on a multi-process launch; must precede any JAX work.

  JAX detects SLURM and Cloud TPU slices itself; an explicit launch gives
  JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID,
  read here (JAX reads only the address). A coordinator that does not answer within
  RASD_DISTRIBUTED_TIMEOUT seconds (default 300), or settings JAX refuses, is a ValueError
  saying which; processes that do not all arrive in that time stop with XLA's own
  message."""
  if not multi_process_launch():
    return
  timeout = _env_int("RASD_DISTRIBUTED_TIMEOUT") or TIMEOUT_S
  count, index = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
  if count is not None and index is not None and not 0 <= index < count:
    raise ValueError(f"JAX_PROCESS_ID={index} with JAX_NUM_PROCESSES={count}: the id must be "
                     f"0 to {count - 1}")
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address and index:
    # XLA's client aborts the process when the coordinator never answers: wait for it here.
    _wait_for(address, timeout, f"process {index} of {count}")
  try:
    jax.distributed.initialize(num_processes=count, process_id=index,
                               initialization_timeout=timeout)
  except (ValueError, TypeError, RuntimeError, jax.errors.JaxRuntimeError) as e:
    where = address or "the address JAX detected"
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"the multi-process start failed (coordinator {where}, process "
                     f"{index} of {count}, timeout {timeout} s): {first}") from None


def make_mesh():
  """One `data` axis over every device of every process."""
  return Mesh(np.asarray(jax.devices()), ("data",))
