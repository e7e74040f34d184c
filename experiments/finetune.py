"""Fine-tune on a downstream task, from scratch or from a pre-training workdir.

python run.py --config=experiments/finetune.py:task=btcv --config.data.dir=PATH \
    --config.init=PRETRAIN_WORKDIR --workdir=W
python run.py --config=experiments/finetune.py:task=custom,runlocal \
    --config.data.json=PATH/dataset.json --workdir=W
Arguments: task=NAME (one of the 56 registry tasks, rasd_jax.data.tasks; data.dir: its data
folder, made by experiments/prepare.py) or task=custom (the user's data: data.json, data.csv,
data.folders, or data.dir prepared from one of those), runlocal (small patches, a CPU-sized
network and 200 steps: minutes on a CPU), model=NAME.

A registry task takes its patch size, batch (the reference's batch times its patches per
volume), optimiser, learning rate, weight decay, warm-up, epochs and validation cadence from
the registry, as epochs (total_epochs, eval_every_epochs, optim.warmup_epochs); the job turns
them into steps with the number of training cases. Each duration is given in exactly one
unit, steps or epochs, the other being 0 (0 in both: none, for the warm-up only): to
override one, zero its other unit, e.g. `--config.total_epochs=0 --config.total_steps=500`. W/results.json: the test metrics of
the step with the best validation score.
"""

import ml_collections
from ml_collections import config_dict

from rasd_jax.config import parse_arg
from rasd_jax.data import tasks
from rasd_jax.training import optimizer

RUNLOCAL_ROI = {2: 64, 3: 32}
PAPER_MODELS = {2: "unet_paper", 3: "swinunetr_base"}  # the paper's downstream networks


def _optim(lr, weight_decay, schedule="cosine", algorithm="adamw", warmup_steps=0,
           warmup_epochs=0):
  """The optimiser config with its warm-up in steps or in epochs."""
  optim = optimizer.get_config(lr=lr, weight_decay=weight_decay, schedule=schedule,
                               algorithm=algorithm, warmup_steps=warmup_steps)
  optim.warmup_epochs = warmup_epochs
  return optim


def _durations(config, total, eval_every, unit="steps"):
  """Sets total_{unit} and eval_every_{unit}, and zeroes the other unit's pair."""
  for name, value in (("total", total), ("eval_every", eval_every)):
    config[f"{name}_steps"] = value if unit == "steps" else 0
    config[f"{name}_epochs"] = value if unit == "epochs" else 0


def _runlocal(config, ndim):
  config.roi = (RUNLOCAL_ROI[ndim] if ndim else 32,)
  config.batch_size = 2 if ndim == 3 else 4
  _durations(config, 200, 50)
  config.checkpoint_every = 50
  config.log_every = 10
  # The task's update rule, at a learning rate that moves in 200 steps.
  config.optim = _optim(1e-3, config.optim.weight_decay, algorithm=config.optim.algorithm,
                        warmup_steps=20)


def _registry(config, task):
  config.roi = task.roi
  config.patches_per_case = task.sampling.patches_per_case
  config.batch_size = task.sampling.batch * task.sampling.patches_per_case
  _durations(config, task.schedule.epochs, task.schedule.eval_every_epochs, unit="epochs")
  config.overlap = task.inference.overlap
  config.output = task.inference.output
  config.optim = _optim(task.optimizer.lr, task.optimizer.weight_decay,
                        task.optimizer.schedule, task.optimizer.algorithm,
                        warmup_epochs=task.schedule.warmup_epochs)


def get_config(arg=None):
  arg = parse_arg(arg, task="", runlocal=False, model="")
  if not arg.task:
    raise ValueError("finetune.py needs task=NAME (a registry task of rasd_jax.data.tasks, "
                     "e.g. finetune.py:task=btcv) or task=custom")
  config = ml_collections.ConfigDict()
  config.job = "finetune"
  config.task = arg.task
  config.data = ml_collections.ConfigDict(dict(
      dir="",              # the folder the prepare job made (registry task, or custom data)
      fold=0,              # registry tasks with official folds (BraTS 2021, COVID-19-20, CC-CCII)
      json="",             # custom segmentation: a Decathlon dataset.json
      csv="",              # custom classification: a CSV ...
      image_column="image",
      label_column="label",  # ... several comma-separated columns: multi-label
      folders="",          # custom classification: one folder per class
      skip_bad=False,      # skip (with a warning) cases that cannot be read
      threads=4,           # grain threads reading cases and making batches ahead
      source="files",      # "files": read and prepare the cases above; "tfds": read them
                           # prepared by `tfds build rasd_tasks` (rasd_jax.data.tfds_source)
      tfds_dir="",         # source=tfds: the --data_dir of that build (a local folder)
  ))
  config.init = "scratch"      # or a pre-training workdir
  config.model = arg.model     # "" = the init workdir's model, or scratch_model
  config.scratch_model = ""    # init=scratch without `model`: "" = unet_small in 2D,
                               # swinunetr_tiny in 3D; registry tasks: the paper's network
  config.head = "add"          # "add": a new linear layer on the 32 features; "replace"
  config.probe = False         # True: train the head only (linear probe)
  config.output = "softmax"    # segmentation: "softmax"; "sigmoid" (binary, 1 channel)
  config.compute_dtype = "float32"  # "bfloat16": bf16 compute on float32 weights, the loss in
                               # float32 (the reference's mixed precision; a GPU/TPU gain)
  config.dropout = config_dict.placeholder(float)  # unset: the reference's, 0.15 in a 2D
                               # U-Net (MONAI's, after each batch norm), 0 in other networks
  config.evaluation = "heldout"  # or "paper" (see rasd_jax.training.engine)
  config.seed = 0              # model init, train subset, and batches: step s uses (seed, s)
  config.train_fraction = 1.0  # first ceil(F * n) training cases after a seeded shuffle
  config.num_classes = 0       # task=custom: 0 = from the labels
  config.keep_checkpoints = 2
  config.overlap = 0.5         # sliding-window overlap in evaluation
  config.patches_per_case = 1  # an epoch = n_train * patches_per_case samples
  config.checkpoint_every = 1000
  config.log_every = 50
  # task=custom full size (a registry task replaces these with its own).
  config.roi = (96,)           # one size for every spatial axis, or one per axis
  config.batch_size = 4
  _durations(config, 25_000, 500)  # durations: steps or epochs, the other unit 0
  config.optim = _optim(3e-4, 1e-5, warmup_steps=500)
  ndim = None
  if arg.task != "custom":
    task = tasks.get(arg.task)
    _registry(config, task)
    ndim = task.ndim
    config.scratch_model = PAPER_MODELS[ndim]
  if arg.runlocal:
    config.scratch_model = ""
    _runlocal(config, ndim)
  return config
