"""What every job does with its --workdir: check it, record the config, write JSON results;
log on process 0."""

import json
import math
import os

import jax
import numpy as np


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
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise ValueError(f"cannot create workdir {workdir!r}: {e.strerror}") from None
  if not os.access(workdir, os.W_OK):
    raise ValueError(f"workdir {workdir!r} is not writable")
  resolved = json.loads(config.to_json_best_effort())
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path):
    with open(path) as f:
      previous = _flatten(json.load(f))
    current = _flatten(resolved)
    changed = sorted(k for k in set(previous) | set(current)
                     if k not in may_change and previous.get(k) != current.get(k))
    if changed:
      raise ValueError(
          f"workdir {workdir!r} holds a run with another config (differs in {changed}); "
          "use a new --workdir, or the same config to resume")
  if jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      json.dump(resolved, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


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
    with open(path + ".tmp", "w") as f:
      json.dump(json_ready(data), f, indent=2, allow_nan=False)
    os.replace(path + ".tmp", path)
