"""Multi-process detection and the data mesh."""

import jax
import pytest

from rasd_jax.training import distributed
from rasd_jax.training import mesh


@pytest.mark.parametrize("env, expected", [
    ({}, False),
    ({"SLURM_NTASKS": "1"}, False),
    ({"SLURM_NTASKS": "16"}, True),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0"}, False),
    ({"TPU_WORKER_HOSTNAMES": "t1k-0,t1k-1,t1k-2,t1k-3"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    ({"RASD_DISTRIBUTED": "1"}, True),
])
def test_multi_process_launch(monkeypatch, env, expected):
  for name in ("SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "JAX_COORDINATOR_ADDRESS",
               "RASD_DISTRIBUTED"):
    monkeypatch.delenv(name, raising=False)
  for name, value in env.items():
    monkeypatch.setenv(name, value)
  assert distributed.multi_process_launch() is expected


def test_mesh_spans_every_device():
  m = mesh.make_mesh()
  assert m.axis_names == ("replica", "data") and dict(m.shape) == {
      "replica": 1, "data": len(jax.devices())}
