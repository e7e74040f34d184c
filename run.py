"""Entry point: python run.py --config=experiments/<job>.py[:args] --workdir=DIR."""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rasd_jax import jobs
from rasd_jax.training import mesh

_CONFIG = config_flags.DEFINE_config_file("config", None, "Job config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; a rerun resumes it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  mesh.initialize_distributed()
  config = _CONFIG.value
  try:
    jobs.get(config.job)(config, _WORKDIR.value)
  # Bad config or input (a missing file), or a diverged run: the message says what and where.
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
