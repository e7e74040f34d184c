"""What every job does with its --workdir: check it, record the config, write JSON results;
log on process 0.

Every path may be local or anything `etils.epath` opens (`gs://bucket/run`, through gcsfs):
the readers and writers of the package go through `as_path`, `write_file` and `append_lines`
here. A local file is written to FILE.tmp and renamed over FILE; an object store's write is
already atomic (the object appears whole or not at all), so it is written in place.
"""

import json
import math
import os
import posixpath
import threading

from etils import epath
import jax
import numpy as np

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


def write_file(p, data):
  """Writes `data` (str or bytes) to `p` atomically (the module docstring)."""
  p = epath.Path(p)
  mode = "wb" if isinstance(data, bytes) else "w"
  target = p if is_remote(p) else p.with_name(p.name + ".tmp")
  with target.open(mode) as f:
    f.write(data)
  if target != p:
    target.replace(p)


def append_lines(p, lines):
  """Appends text `lines` to the file `p`. Objects cannot be appended to: a remote file is
  read and written again whole, which is fine for the small logs this is for."""
  p = epath.Path(p)
  if not is_remote(p):
    with p.open("a") as f:
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


def _flatten(d, prefix=""):
  out = {}
  for key, value in d.items():
    if isinstance(value, dict):
      out.update(_flatten(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = value
  return out


def prepare(workdir, config, may_change=()):
  """Creates `workdir`, refuses one holding a run of another config, writes config.json.

  Keys in `may_change` (e.g. the number of samples or steps) may differ on a restart; any
  other difference would mix two runs in one folder and is an error naming the keys.
  """
  check_storage(workdir)
  try:
    makedirs(workdir)
  except OSError as e:
    raise ValueError(f"cannot create workdir {workdir!r}: {e.strerror}") from None
  if not is_remote(workdir) and not os.access(workdir, os.W_OK):
    raise ValueError(f"workdir {workdir!r} is not writable")
  resolved = json.loads(config.to_json_best_effort())
  config_path = epath.Path(workdir) / "config.json"
  if config_path.exists():
    previous = _flatten(json.loads(config_path.read_text()))
    current = _flatten(resolved)
    changed = sorted(k for k in set(previous) | set(current)
                     if k not in may_change and previous.get(k) != current.get(k))
    if changed:
      raise ValueError(
          f"workdir {workdir!r} holds a run with another config (differs in {changed}); "
          "use a new --workdir, or the same config to resume")
  if jax.process_index() == 0:
    write_file(config_path, json.dumps(resolved, indent=2, sort_keys=True))


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
