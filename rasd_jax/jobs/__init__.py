"""Jobs: each module has run(config, workdir). `config.job` picks one by name; `run` runs it
holding its workdir."""

import contextlib
import importlib

import jax

from rasd_jax.training import mesh
from rasd_jax import workdir as workdir_lib

JOBS = ("export_weights", "finetune", "import_weights", "predict", "prepare", "pretrain",
        "quickstart", "suite", "synthesize")


def get(name):
  if name not in JOBS:
    raise ValueError(f"unknown job {name!r}; available: {list(JOBS)}")
  return importlib.import_module(f"rasd_jax.jobs.{name}").run


@contextlib.contextmanager
def _holding(workdir, allow_foreign):
  """Process 0 takes the workdir's lock (workdir.Lock) for the block; every process raises
  its error where it cannot."""
  lock, error = None, None
  if jax.process_index() == 0:
    try:
      lock = workdir_lib.Lock(workdir).acquire(allow_foreign)
    except ValueError as e:
      error = str(e)
  error = mesh.gather([error])[0]  # process 0's verdict, in every process
  if error:
    raise ValueError(error)
  try:
    yield
  finally:
    if lock is not None:
      lock.release()


def run(config, workdir):
  """The job `config.job` in `workdir`: a config with a NaN or Inf value is refused, and the
  workdir must be new, empty or one of ours (export_weights with overwrite=True: any folder),
  and not in use by another run."""
  job = get(config.job)
  bad = workdir_lib.non_finite(config)
  if bad:
    raise ValueError(f"config values must be finite numbers: {', '.join(bad)}")
  with _holding(workdir, allow_foreign=config.get("overwrite", False)):
    return job(config, workdir)
