"""Devices and processes: the mesh a batch is split over, what each process feeds it, and
what processes share (`gather`). The multi-process start-up is training.distributed's."""

import math
import pickle

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def make_mesh(batch_size=None):
  """The mesh ('replica', 'data') over every device of every process, for batches of
  `batch_size`: the batch is split `gcd(batch_size, devices)` ways over 'data', and each
  part is computed by the 'replica' devices of its column (the same numbers on each: a
  batch of 2 on 8 devices runs as on 2, on every device). Without `batch_size`, 'data'
  holds every device. 'data' runs across the processes (in their device order), so each
  process holds one contiguous block of the batch (`data_share`)."""
  devices = np.asarray(jax.devices())
  data = devices.size if batch_size is None else math.gcd(batch_size, devices.size)
  return Mesh(devices.reshape(data, -1).T, ("replica", "data"))


def layout_text(mesh, batch_size):
  """One line: how a batch of `batch_size` is laid out on `mesh`."""
  data, replica = mesh.shape["data"], mesh.shape["replica"]
  count = jax.process_count()
  where = f"{data * replica} devices, {count} process{'es' * (count > 1)}"
  if replica == 1:
    return f"batch {batch_size} split over {where}"
  return (f"batch {batch_size} on {where}: split {data} ways, each part computed by "
          f"{replica} devices at once (a batch that is a multiple of {data * replica} would "
          "use them all)")


def data_share(mesh):
  """(index, count): which of the `count` distinct blocks of the 'data' axis (the batch's
  rows) this process's devices hold. Processes that hold the same block feed it the same
  data; with one process, or a batch split over every device, index = process index."""
  columns = [frozenset(j for j in range(mesh.shape["data"])
                       if any(d.process_index == p for d in mesh.devices[:, j]))
             for p in range(jax.process_count())]
  blocks = sorted(set(columns), key=min)
  if sum(len(b) for b in blocks) != mesh.shape["data"]:
    raise ValueError(f"the processes' devices do not split the mesh {dict(mesh.shape)} into "
                     "blocks of the batch: give every process the same number of devices")
  return blocks.index(columns[jax.process_index()]), len(blocks)


def batch_sharding(mesh):
  """The batch's sharding: the leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P("data"))


def process_batch(mesh, local, batch_size):
  """The global batch (a pytree of arrays, leading axis `batch_size`, split over 'data')
  from this process's block of its rows (`local`, as `data_share` says)."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
      sharding, x, (batch_size,) + x.shape[1:]), local)


def local_copy(tree):
  """The replicated arrays of `tree` as this process's copy on its first device, for work
  each process does alone (jit on them runs on that device only)."""
  return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array) else x, tree)


def gather(items):
  """Every process's list `items` (picklable), in one list: item k of process p at position
  p + k * count, so a list split as `items[p::count]` comes back in its order."""
  count = jax.process_count()
  if count == 1:
    return list(items)
  data = np.frombuffer(pickle.dumps(list(items)), np.uint8)
  sizes = multihost_utils.process_allgather(np.int64(data.size))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  everything = multihost_utils.process_allgather(padded)
  parts = [pickle.loads(everything[p, :sizes[p]].tobytes()) for p in range(count)]
  merged = [None] * sum(len(part) for part in parts)
  for p, part in enumerate(parts):
    merged[p::count] = part
  return merged
