"""Fine-tune many tasks from scratch and from a pre-training init, and summarise the pairs.

python run.py --config=experiments/suite.py:tasks=btcv+drive --config.data_root=DATA \
    --config.init=PRETRAIN_WORKDIR --workdir=S
Arguments: tasks=NAME+NAME+... (registry tasks of rasd_jax.data.tasks, or custom tasks as
NAME=PATH: a Decathlon dataset.json, a .csv of image and label columns, or a folder of one
folder per class); `all` (the default) is every registry task, e.g. tasks=all+mine=PATH.
runlocal: each task's CPU-sized fine-tuning (experiments/finetune.py:runlocal). tiny:
seconds per run, for the tests (a tiny U-Net in 2D and 3D without dropout, 16-voxel patches, 1
step, 1 seed).

config.tasks.NAME is the finetune config of that task (experiments/finetune.py), so any of
its keys can be changed: --config.tasks.btcv.optim.lr=1e-4. A registry task reads
data_root/NAME unless its data.dir is given. `init`: "scratch" (scratch runs only), a
pre-training workdir, or several separated by commas (a 2D and a 3D one): each task uses the
one pre-trained in its dimensionality. S/summary.md, .csv and .png: see rasd_jax.jobs.suite.
"""

import os

import ml_collections

from experiments import finetune
from rasd_jax.config import parse_arg
from rasd_jax.data import tasks as tasks_lib

# Seconds per run: every task at 16 voxels a side (a U-Net's two strides need a multiple of 4),
# without dropout (its masks add ~1.5 s to a 2D U-Net's step compile on a CPU, a third).
TINY = dict(model="unet_tiny", roi=(16,), batch_size=2, total_steps=1, eval_every_steps=1,
            checkpoint_every=1, log_every=1, dropout=0.0)
CUSTOM_KEYS = {".json": "json", ".csv": "csv", "": "folders"}  # by the path's suffix


def _custom(name, path, runlocal):
  """The finetune config of a custom task; the path's type says which data.* key."""
  config = finetune.get_config("task=custom" + ",runlocal" * runlocal)
  key = CUSTOM_KEYS.get(os.path.splitext(path.rstrip("/"))[1].lower())
  if key is None:
    raise ValueError(f"custom task {name}={path}: give a dataset.json, a .csv or a folder of "
                     "class folders")
  config.data[key] = path
  return config


def task_configs(listed, runlocal=False):
  """{name: finetune config} of the `+`-separated list; `all` (or nothing): every registry task."""
  items = []
  for item in (listed or "all").split("+"):
    items += list(tasks_lib.TASKS) if item.strip() == "all" else [item]
  configs = {}
  for item in items:
    name, _, path = (part.strip() for part in item.partition("="))
    if not name.isidentifier() or name in configs:
      raise ValueError(f"tasks: {name!r} is not a task name, or is listed twice")
    if path:
      if name in tasks_lib.TASKS:
        raise ValueError(f"custom task {name}={path}: {name!r} is a registry task; use "
                         "another name")
      configs[name] = _custom(name, path, runlocal)
    else:
      configs[name] = finetune.get_config(f"task={name}" + ",runlocal" * runlocal)
  return configs


def get_config(arg=None):
  arg = parse_arg(arg, tasks="all", runlocal=False, tiny=False)
  config = ml_collections.ConfigDict()
  config.job = "suite"
  config.data_root = ""     # registry task NAME reads data_root/NAME (unless its data.dir)
  config.tfds_dir = ""      # or: every task reads the dataset built for it there (the
                            # finetune job's data.source=tfds; rasd_jax.data.tfds_source)
  config.init = "scratch"   # or pre-training workdir(s), comma-separated: one per ndim
  config.seeds = 3          # seeds 0 .. seeds-1, each run from scratch and from init
  config.fold = 0           # for the tasks with folds (official or cross-validation)
  configs = task_configs(arg.tasks, runlocal=arg.runlocal or arg.tiny)
  if arg.tiny:
    config.seeds = 1
    for task in configs.values():
      task.update(TINY)
      task.data.threads = 1
  config.tasks = ml_collections.ConfigDict(configs)
  return config
