"""Processes and devices: multi-process start-up, the mesh a batch is split over, and what
each process feeds it."""

import math
import os
import pickle
import socket
import sys
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


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
# XLA's own start-up deadline comes this much later than ours (`_stop_after`), which stops
# first with one line where XLA would abort with a stack dump.
_XLA_GRACE_S = 30


def _env_int(name):
  value = os.environ.get(name)
  if value is None:
    return None
  try:
    return int(value)
  except ValueError:
    raise ValueError(f"{name}={value!r}: an integer") from None


def _check_in(address, count, index, timeout):
  """The start-up check of an explicit launch, before XLA's (which aborts every process,
  with nothing Python can catch, when the processes do not agree). Process 0 listens on the
  coordinator's port + 1; every other process sends it its id and count. A count that
  differs, an id given twice, or processes that have not all arrived within `timeout`
  seconds: a one-line ValueError in each process that got that far."""
  host, _, port = address.rpartition(":")
  where = (host.strip("[]"), int(port) + 1)
  who = f"process {index} of {count}"
  deadline = time.monotonic() + timeout
  if index:
    while True:
      try:
        connection = socket.create_connection(where, timeout=5)
        break
      except OSError as e:
        if time.monotonic() >= deadline:
          raise ValueError(f"the multi-process start failed ({who}): no coordinator answers "
                           f"at {address} after {timeout} s ({e})") from None
        time.sleep(0.5)
    with connection:
      try:
        connection.sendall(f"{index} {count}\n".encode())
        connection.settimeout(timeout + 10)  # process 0 answers within its own timeout
        verdict = connection.makefile().readline().strip()
      except OSError:
        verdict = ""
    if verdict != "ok":
      raise ValueError(f"the multi-process start failed ({who}): "
                       f"{verdict or 'process 0 stopped'}")
    return
  try:
    server = socket.create_server(("", where[1]))
  except OSError as e:
    raise ValueError(f"the multi-process start failed ({who}): cannot listen on port "
                     f"{where[1]} (the coordinator's + 1) for the start-up check: {e}") from None
  arrived, connections, problem = set(), [], None
  with server:
    while len(arrived) < count - 1 and problem is None:
      server.settimeout(max(0.0, deadline - time.monotonic()))
      try:
        connection, _ = server.accept()
      except OSError:  # the deadline
        break
      connections.append(connection)
      connection.settimeout(10)
      try:
        their_index, their_count = (int(v) for v in connection.makefile().readline().split())
      except (OSError, ValueError):
        continue
      if their_count != count:
        problem = (f"process {their_index} says JAX_NUM_PROCESSES={their_count}, process 0 "
                   f"says {count}")
      elif their_index in arrived:
        problem = f"two processes say JAX_PROCESS_ID={their_index}"
      arrived.add(their_index)
    if problem is None and len(arrived) < count - 1:
      problem = (f"{len(arrived) + 1} of {count} processes arrived within {timeout} s (ids "
                 f"{sorted([0, *arrived])})")
    for connection in connections:
      with connection:
        try:
          connection.sendall(f"{problem or 'ok'}\n".encode())
        except OSError:
          pass
  if problem is not None:
    raise ValueError(f"the multi-process start failed ({who}): {problem}")


def _stop_after(seconds, message):
  """A started timer that ends this process after `seconds` with `message` as run.py's one
  `error:` line (exit status 1). For the wait inside jax.distributed.initialize: the main
  thread waits in XLA, which nothing in Python interrupts, so the timer's thread ends the
  process itself."""
  def stop():
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    os._exit(1)

  timer = threading.Timer(seconds, stop)
  timer.daemon = True
  timer.start()
  return timer


def initialize_distributed():
  """`jax.distributed.initialize` on a multi-process launch; must precede any JAX work.

  JAX detects SLURM and Cloud TPU slices itself; an explicit launch gives
  JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID,
  read here (JAX reads only the address), and checked in with process 0 first (`_check_in`).
  A coordinator that does not answer within RASD_DISTRIBUTED_TIMEOUT seconds (default 300),
  processes that do not all arrive in that time or disagree on their count, or settings JAX
  refuses, are a ValueError saying which; a process that stalls or dies after the check-in
  stops the others after that time too, each with one `error:` line (`_stop_after`)."""
  if not multi_process_launch():
    return
  timeout = _env_int("RASD_DISTRIBUTED_TIMEOUT") or TIMEOUT_S
  count, index = _env_int("JAX_NUM_PROCESSES"), _env_int("JAX_PROCESS_ID")
  if count is not None and index is not None and not 0 <= index < count:
    raise ValueError(f"JAX_PROCESS_ID={index} with JAX_NUM_PROCESSES={count}: the id must be "
                     f"0 to {count - 1}")
  address = os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address and count is not None and index is not None:
    _check_in(address, count, index, timeout)
  where = f"coordinator {address or 'the address JAX detected'}, process {index} of {count}"
  # Every process waits there for all the others: one that stalled or died after the check-in
  # (or a coordinator that did) keeps the rest waiting.
  timer = _stop_after(timeout, f"the multi-process start failed ({where}): not every process "
                               f"joined JAX's start within {timeout} s (did one stall or die? "
                               "see the other processes' output)")
  try:
    jax.distributed.initialize(num_processes=count, process_id=index,
                               initialization_timeout=timeout + _XLA_GRACE_S)
  except (ValueError, TypeError, RuntimeError, jax.errors.JaxRuntimeError) as e:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ValueError(f"the multi-process start failed ({where}, timeout {timeout} s): "
                     f"{first}") from None
  finally:
    timer.cancel()


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


def describe(mesh, batch_size):
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
