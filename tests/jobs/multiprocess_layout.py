"""Run by test_multiprocess.py in each process of a multi-process launch: how a batch of each
size is laid out over the processes' devices and assembled from each process's block, which
cases each process reads, and gathering. Writes what it saw as JSON to argv[1]."""

import json
import sys

from rasd_jax.training import distributed
from rasd_jax.training import mesh as mesh_lib

distributed.initialize()

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from rasd_jax.training import engine  # noqa: E402

seen = {"process": jax.process_index(), "batches": {}}
cases = list(range(7))
for batch in (1, 2, 4, 6, 8, 16):
  mesh = mesh_lib.make_mesh(batch)
  block, blocks = mesh_lib.data_share(mesh)
  rows = batch // blocks
  # The block's rows hold their global row numbers: the assembled batch must be 0..batch-1.
  local = {"x": np.arange(block * rows, (block + 1) * rows, dtype=np.float32)[:, None]
           * np.ones((1, 3), np.float32)}
  assembled = mesh_lib.process_batch(mesh, local, batch)["x"]
  total = jax.jit(lambda x: x.sum(0), out_shardings=jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec()))(assembled)
  seen["batches"][batch] = {
      "mesh": dict(mesh.shape), "block": block, "blocks": blocks,
      "global": multihost_utils.process_allgather(assembled, tiled=True).tolist(),
      "sum": np.asarray(total.addressable_data(0)).tolist(),
      "train": engine.share(mesh, "train", cases), "val": engine.share(mesh, "val", cases),
      "describe": mesh_lib.layout_text(mesh, batch)}
seen["gathered"] = mesh_lib.gather([f"p{jax.process_index()}c{k}" for k in
                                    engine.share(mesh, "test", cases)])
with open(sys.argv[1], "w") as f:
  json.dump(seen, f)
