"""The multi-process start-up: `initialize()` before any JAX work, as run.py does.

A launch is explicit (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID, or run.py's
flags that set them) or detected by JAX (SLURM, a multi-host TPU slice, RASD_DISTRIBUTED=1 for
any other cluster JAX knows). Before JAX's own start, an explicit launch checks in with
process 0 over a socket (`_check_in`), so that a missing coordinator, a process count the
processes disagree on or one that never arrives is one error line after a timeout, not a hang
or XLA's abort.
"""

import os
import socket
import sys
import threading
import time

import jax


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


def initialize():
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
