"""Processes and devices: multi-process start-up and the `data` mesh over all devices."""

import os

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


def initialize_distributed():
  """`jax.distributed.initialize()` on a multi-process launch; must precede any JAX work.
  JAX reads the cluster (process count and id, coordinator) from the environment."""
  if multi_process_launch():
    jax.distributed.initialize()


def make_mesh():
  """One `data` axis over every device of every process."""
  return Mesh(np.asarray(jax.devices()), ("data",))
