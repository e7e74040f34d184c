"""What every job does with its --workdir: own it, lock it, record the config, write JSON
results; log on process 0.

Every path may be local or anything `etils.epath` opens (`gs://bucket/run`, through gcsfs):
the readers and writers of the package go through `as_path`, `write_file` and `append_lines`
here. A local file is written to FILE.tmp and renamed over FILE; an object store's write is
already atomic (the object appears whole or not at all), so it is written in place.
"""

import contextlib
import json
import math
import os
import posixpath
import socket
import sys
import threading
import time
import uuid

from etils import epath
import jax
import ml_collections
import numpy as np

CONFIG = "config.json"  # the resolved config of the workdir's run
LOCK = "lock.json"  # the run that holds the workdir (Lock)
SPEC = "model.json"  # the network of a run's weights (training.weights)

# Seconds the first look at a cloud storage workdir may take before it is an error (a bucket
# that does not answer); RASD_STORAGE_TIMEOUT overrides.
STORAGE_TIMEOUT_S = 60


def is_remote(path):
  """Whether `path` names cloud storage (`scheme://...`) rather than the local disk."""
  return "://" in os.fspath(path)


def absolute(p):
  """`p` as a string: a local path made absolute, a cloud storage one as it is."""
  p = os.fspath(p)
  return p if is_remote(p) else os.path.abspath(p)


def as_path(p):
  """`p` as an epath.Path; a local one made absolute (where Orbax needs it)."""
  return epath.Path(absolute(p))


def join(base, relative):
  """`relative` under the folder `base`, normalised ('a/../b' is 'b'), as a string: as
  os.path.normpath(os.path.join(...)) locally, keeping `scheme://` intact remotely."""
  base = os.fspath(base)
  if not is_remote(base):
    return os.path.normpath(os.path.join(base, relative))
  scheme, _, rest = base.partition("://")
  return f"{scheme}://{posixpath.normpath(posixpath.join(rest, relative))}"


@contextlib.contextmanager
def naming(p):
  """An OSError inside names `p` (a failed write or close names no file: a full disk)."""
  try:
    yield
  except OSError as e:
    if e.filename is not None or e.errno is None:
      raise
    raise OSError(e.errno, e.strerror, os.fspath(p)) from None


def write_file(p, data):
  """Writes `data` (str or bytes) to `p` atomically (the module docstring)."""
  p = epath.Path(p)
  mode = "wb" if isinstance(data, bytes) else "w"
  target = p if is_remote(p) else p.with_name(p.name + ".tmp")
  with naming(p):
    with target.open(mode) as f:
      f.write(data)
    if target != p:
      target.replace(p)


def append_lines(p, lines):
  """Appends text `lines` to the file `p`. Objects cannot be appended to: a remote file is
  read and written again whole, which is fine for the small logs this is for."""
  p = epath.Path(p)
  if not is_remote(p):
    with naming(p), p.open("a") as f:
      f.writelines(lines)
    return
  write_file(p, (p.read_text() if p.exists() else "") + "".join(lines))


def read_jsonl(p):
  """The records (one JSON object per line) of the file `p`; [] where it does not exist."""
  p = epath.Path(p)
  if not p.exists():
    return []
  return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _bounded(what, fn, timeout):
  """fn() on a daemon thread; a one-line ValueError naming `what` when it fails or takes
  more than `timeout` seconds (gcsfs retries an unreachable host for about a minute and
  waits forever on one that accepts but never answers)."""
  outcome = {}

  def target():
    try:
      outcome["value"] = fn()
    except Exception as e:  # noqa: BLE001 - reported below, in one line
      outcome["error"] = e

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(timeout)
  if thread.is_alive():
    raise ValueError(f"{what}: no answer within {timeout} s (RASD_STORAGE_TIMEOUT)")
  if "error" in outcome:
    e = outcome["error"]
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise ValueError(f"{what}: {type(e).__name__}: {first}") from None
  return outcome["value"]


def check_storage(p):
  """Raises a one-line ValueError when the bucket of a cloud storage path `p` cannot be
  reached or does not exist, within RASD_STORAGE_TIMEOUT seconds (default 60); local paths
  pass. Called before anything is written (creating `p` in a missing bucket would create
  the bucket)."""
  if not is_remote(p):
    return
  value = os.environ.get("RASD_STORAGE_TIMEOUT")
  try:
    timeout = float(value) if value else STORAGE_TIMEOUT_S
  except ValueError:
    raise ValueError(f"RASD_STORAGE_TIMEOUT={value!r}: a number of seconds") from None
  scheme, _, rest = os.fspath(p).partition("://")
  bucket = f"{scheme}://{rest.split('/')[0]}"
  if not _bounded(f"cannot reach {bucket} (for {p})", epath.Path(bucket).exists, timeout):
    raise ValueError(f"{bucket} (for {p}) does not exist or is not accessible")


def makedirs(p):
  """Creates the folder `p` locally; object stores have no folders (a file's name makes
  its folder), so a remote `p` is left as it is."""
  if not is_remote(p):
    os.makedirs(p, exist_ok=True)


def _create(workdir):
  """Creates the folder `workdir` (makedirs); a ValueError where it cannot be written."""
  check_storage(workdir)
  try:
    makedirs(workdir)
  except OSError as e:
    raise ValueError(f"cannot create workdir {workdir!r}: {e.strerror}") from None
  if not is_remote(workdir) and not os.access(workdir, os.W_OK):
    raise ValueError(f"workdir {workdir!r} is not writable")


def _json_object(path):
  """The JSON object in the file `path`; None where it is missing or holds anything else."""
  try:
    value = json.loads(epath.Path(path).read_text())
  except (FileNotFoundError, ValueError, UnicodeDecodeError):
    return None
  return value if isinstance(value, dict) else None


def foreign(workdir):
  """The names in `workdir` that no run of ours wrote: [] where it does not exist, is empty,
  or holds a run (a run's lock, its config.json: an object with a 'job', or its model.json:
  a network spec); else all of them."""
  path = epath.Path(workdir)
  names = sorted(p.name for p in path.iterdir()) if path.is_dir() else []
  if not names or any(name.startswith(LOCK) for name in names):
    return []
  if "job" in (_json_object(path / CONFIG) or {}):
    return []
  if {"network", "checkpoints"} <= set(_json_object(path / SPEC) or {}):
    return []
  return names


def _host_process_running(pid):
  """Whether the process `pid` of this host exists (another user's included)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return pid != os.getpid()  # a lock of a killed run whose pid this process reuses


class Lock:
  """One run per workdir: W/lock.json names the run that holds it (host, pid, command, start)
  and carries a heartbeat its holder rewrites every HEARTBEAT_S seconds. The lock of a run
  that is gone is taken over: on the same host when its process no longer exists, from
  another host when its heartbeat is older than STALE_S. A local lock appears whole and at
  most once (a hard link of a complete file); on cloud storage, which has no such operation,
  it is written and read back, so two runs started within the same second may both start."""

  HEARTBEAT_S = 15
  STALE_S = 120

  def __init__(self, workdir):
    self.workdir = absolute(workdir)
    self.path = epath.Path(self.workdir) / LOCK
    self.id = uuid.uuid4().hex
    self._stop = threading.Event()
    self._thread = None
    self._created = False

  def _record(self):
    return json.dumps({"id": self.id, "host": socket.gethostname(), "pid": os.getpid(),
                       "command": " ".join(sys.argv), "started": self._started,
                       "heartbeat": time.time()})

  def _read(self):
    """The lock's record, {} where the file is unreadable, None where there is none."""
    try:
      record = json.loads(self.path.read_text())
    except FileNotFoundError:
      return None
    except (ValueError, UnicodeDecodeError):
      return {}
    return record if isinstance(record, dict) else {}

  def _stale(self, held):
    if held.get("host") == socket.gethostname() and isinstance(held.get("pid"), int):
      return not _host_process_running(held["pid"])
    heartbeat = held.get("heartbeat")
    return not isinstance(heartbeat, (int, float)) or time.time() - heartbeat > self.STALE_S

  def _create(self):
    """Writes the lock where there is none; whether this run now holds it."""
    if is_remote(self.workdir):
      write_file(self.path, self._record())
      time.sleep(1.0)  # a run that wrote at the same time: the later write is the lock
      return (self._read() or {}).get("id") == self.id
    mine = self.path.with_name(f"{LOCK}.{self.id}")
    mine.write_text(self._record())
    try:
      os.link(mine, self.path)
      return True
    except FileExistsError:
      return False
    finally:
      mine.unlink()

  def _remove(self, held):
    """Removes the stale lock `held` unless another run replaced it meanwhile."""
    if is_remote(self.workdir):
      if self._read() == held:
        self.path.unlink(missing_ok=True)
      return
    aside = self.path.with_name(f"{LOCK}.stale.{self.id}")
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    if json.loads(aside.read_text() or "{}") != held:  # a new holder's: put it back
      try:
        os.link(aside, self.path)
      except FileExistsError:
        pass
    aside.unlink()

  def acquire(self, allow_foreign=False):
    """Creates the workdir and takes its lock; a ValueError naming the holder where another
    run holds it, or naming the files where the folder holds what no run of ours wrote
    (`allow_foreign`: written into all the same)."""
    self._created = not is_remote(self.workdir) and not os.path.isdir(self.workdir)
    _create(self.workdir)  # a new folder is empty: nothing foreign below
    found = foreign(self.workdir)
    if found and not allow_foreign:
      shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
      raise ValueError(f"workdir {self.workdir!r} holds files that no run of this project "
                       f"wrote ({shown}); nothing was written. Use a new or empty --workdir")
    self._started = time.time()
    for _ in range(3):
      held = self._read()
      if held is None:
        if self._create():
          break
        continue
      if not self._stale(held):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("started", 0)))
        later = ("" if held.get("host") == socket.gethostname() else
                 f" (a lock whose heartbeat stops is taken over after {self.STALE_S} s)")
        raise ValueError(
            f"workdir {self.workdir!r} is in use by another run (host {held.get('host')}, "
            f"pid {held.get('pid')}, since {since}: {held.get('command')}); wait for it to end "
            f"or stop it{later}")
      log(f"taking over the lock of a run that ended without releasing it (host "
          f"{held.get('host')}, pid {held.get('pid')})")
      self._remove(held)
    else:
      raise ValueError(f"workdir {self.workdir!r}: another run is taking {self.path} at the "
                       "same time; try again")
    self._thread = threading.Thread(target=self._beat, daemon=True)
    self._thread.start()
    return self

  def _beat(self):
    while not self._stop.wait(self.HEARTBEAT_S):
      try:
        if (self._read() or {}).get("id") != self.id:
          print(f"warning: {self.path} was taken over by another run", file=sys.stderr)
          return
        write_file(self.path, self._record())
      except OSError:
        pass  # a full disk: the run itself reports it

  def release(self):
    """Removes the lock, and the workdir where this run created it and left it empty."""
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    try:
      if (self._read() or {}).get("id") == self.id:
        self.path.unlink()
      if self._created and not os.listdir(self.workdir):
        os.rmdir(self.workdir)
    except OSError:
      pass  # nothing to undo that matters: a stale lock of this host is taken over


def _flatten(d, prefix=""):
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def read_config(workdir):
  """The config (a dict) a run recorded in W/config.json; None where there is none. A file
  that is not a JSON object is an error naming it."""
  path = epath.Path(workdir) / CONFIG
  if not path.exists():
    return None
  try:
    config = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise ValueError(f"{path} is not valid JSON ({e}): it is damaged, or no run of ours "
                     "wrote it; use a new --workdir") from None
  if not isinstance(config, dict) or "job" not in config:
    raise ValueError(f"{path} holds a {type(config).__name__}, not the config of a run (an "
                     "object with a 'job' key): no run of ours wrote it; use a new --workdir")
  return config


def prepare(workdir, config, may_change=(), replace=False):
  """Creates `workdir`, refuses one holding a run of another config, writes config.json.

  Keys in `may_change` (e.g. the number of samples or steps) may differ on a restart; any
  other difference would mix two runs in one folder and is an error naming the keys.
  `replace`: the config.json found, whatever it holds, is replaced.
  """
  _create(workdir)
  resolved = json.loads(config.to_json_best_effort())
  config_path = epath.Path(workdir) / CONFIG
  previous = None if replace else read_config(workdir)
  if previous is not None:
    previous = _flatten(previous)
    current = _flatten(resolved)
    changed = sorted(k for k in set(previous) | set(current)
                     if k not in may_change and previous.get(k) != current.get(k))
    if changed:
      raise ValueError(
          f"workdir {workdir!r} holds a run with another config (differs in {changed}); "
          "use a new --workdir, or the same config to resume")
  if jax.process_index() == 0:
    write_file(config_path, json.dumps(resolved, indent=2, sort_keys=True))


def non_finite(config, prefix=""):
  """The keys of `config` (a ConfigDict or dict, nested) whose value is a float NaN or Inf."""
  out = []
  for key, value in config.items():
    if isinstance(value, (dict, ml_collections.ConfigDict)):
      out += non_finite(value, f"{prefix}{key}.")
    elif isinstance(value, float) and not math.isfinite(value):
      out.append(f"{prefix}{key} = {value}")
  return out


def log(*args):
  """print, on process 0 only."""
  if jax.process_index() == 0:
    print(*args, flush=True)


def json_ready(value):
  """`value` for strict JSON: NumPy scalars to Python, tuples to lists, NaN/Inf to None."""
  if isinstance(value, dict):
    return {str(k): json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def write_json(path, data):
  """Writes json_ready(data) to `path` atomically, on process 0."""
  if jax.process_index() == 0:
    write_file(path, json.dumps(json_ready(data), indent=2, allow_nan=False))
