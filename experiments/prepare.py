"""Prepare a downstream task's data folder from the dataset as its publisher distributes it.

python run.py --config=experiments/prepare.py:task=btcv --config.source=~/Downloads/BTCV \
    --workdir=data/btcv
python run.py --config=experiments/finetune.py:task=btcv --config.data.dir=data/btcv ...

Arguments: task=NAME (one of the 56 registry tasks, rasd_jax.data.tasks). `source`: the
folder the official archive(s) were unpacked into, or a folder above it.
"""

import ml_collections

from rasd_jax.config import parse_arg
from rasd_jax.data import tasks


def get_config(arg=None):
  arg = parse_arg(arg, task="")
  if not arg.task:
    raise ValueError("prepare.py needs task=NAME (a registry task of rasd_jax.data.tasks, e.g. "
                     "prepare.py:task=btcv)")
  tasks.get(arg.task)
  config = ml_collections.ConfigDict()
  config.job = "prepare"
  config.task = arg.task
  config.source = ""   # the unpacked download (or a folder above it)
  config.threads = 4   # cases read and checked at once
  config.allow_missing = False  # True: prepare the cases present when the download lacks some
  return config
