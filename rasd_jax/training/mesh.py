"""Processes and devices: multi-process start-up and the `data` mesh over all devices."""

import os

import jax
import numpy as np
from jax.sharding import Mesh


def multi_process_launch():
  """Whether this process is one of several (SLURM, a multi-host TPU slice, or explicit
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID)."""
  return (int(os.environ.get("SLURM_NTASKS", "1")) > 1
          or "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
          or "JAX_COORDINATOR_ADDRESS" in os.environ)


def initialize_distributed():
  """`jax.distributed.initialize()` on a multi-process launch; must precede any JAX work.
  JAX reads the cluster (process count and id, coordinator) from the environment."""
  if multi_process_launch():
    jax.distributed.initialize()


def make_mesh():
  """One `data` axis over every device of every process."""
  return Mesh(np.asarray(jax.devices()), ("data",))
