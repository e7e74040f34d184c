"""Entry point: python run.py --config=experiments/<job>.py[:args] --workdir=DIR."""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from rasd_jax import jobs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Job config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder; a rerun resumes it.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    jobs.get(config.job)(config, _WORKDIR.value)
  except ValueError as e:  # Bad config or input: the message says what and where.
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  app.run(main)
