"""Prepare a downstream task's data folder from the dataset as its publisher distributes it.

python run.py --config=experiments/prepare.py:task=btcv --config.source=/data/downloads/BTCV \
    --workdir=data/btcv
python run.py --config=experiments/finetune.py:task=btcv --config.data.dir=data/btcv ...
python run.py --config=experiments/prepare.py:task=custom --config.source=/data/ds/dataset.json \
    --workdir=data/mine

Arguments: task=NAME (one of the 56 registry tasks, rasd_jax.data.tasks) or task=custom.
`source`: the folder the official archive(s) were unpacked into, or a folder above it; for
task=custom, a Decathlon dataset.json, a CSV (image_column, label_column) or a folder of class
folders.
"""

import ml_collections

from rasd_jax.config import parse_arg
from rasd_jax.data import tasks


def get_config(arg=None):
  arg = parse_arg(arg, task="")
  if not arg.task:
    raise ValueError("prepare.py needs task=NAME (a registry task of rasd_jax.data.tasks, e.g. "
                     "prepare.py:task=btcv) or task=custom")
  if arg.task != "custom":
    tasks.get(arg.task)
  config = ml_collections.ConfigDict()
  config.job = "prepare"
  config.task = arg.task
  config.source = ""   # the unpacked download (or a folder above it); custom: see above
  config.threads = 4   # cases read and checked at once
  config.allow_missing = False  # True: prepare the cases present when the download lacks some
  config.image_column = "image"  # task=custom with a CSV ...
  config.label_column = "label"  # ... several comma-separated columns: multi-label
  config.num_classes = 0         # task=custom segmentation: 0 = from the labels
  return config
