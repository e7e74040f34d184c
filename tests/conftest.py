"""Shared test set-up.

XLA compiles of the generator take seconds on a 2-core CPU; a persistent compilation
cache shared by this process and the subprocesses the tests start (same environment)
compiles each program once per test run.
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO_ROOT, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, REPO_ROOT)


def spec_of(ndim=3, size=128, **fields):
  """A validated synthesis Spec: the defaults of (ndim, size) with `fields` changed."""
  from rasd_jax import synthesis
  config = synthesis.get_config(ndim, size)
  config.update(fields)
  return synthesis.make_spec(config)


def run_job(config, workdir, *overrides, check=True):
  """`python run.py --config=CONFIG --workdir=WORKDIR OVERRIDES...` from the repository root,
  as a user runs a job; raises with its stderr when it fails and `check` is set."""
  import subprocess
  result = subprocess.run(
      [sys.executable, "run.py", f"--config={config}", f"--workdir={workdir}", *overrides],
      cwd=REPO_ROOT, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result
