"""Jobs: each module has run(config, workdir). `config.job` picks one by name."""

import importlib

JOBS = ("export_weights", "finetune", "import_weights", "prepare", "pretrain", "quickstart",
        "suite", "synthesize")


def get(name):
  if name not in JOBS:
    raise ValueError(f"unknown job {name!r}; available: {list(JOBS)}")
  return importlib.import_module(f"rasd_jax.jobs.{name}").run
