"""Fine-tune on a real segmentation dataset, from scratch or from a pre-training workdir.

python run.py --config=experiments/finetune.py:task=custom \
    --config.data.json=PATH/dataset.json --config.init=PRETRAIN_WORKDIR --workdir=W
Arguments: task=custom (a Decathlon dataset.json; the registry tasks are not wired yet),
runlocal (a few hundred steps on 32-voxel crops, lr 1e-3: minutes on a CPU), model=NAME.
With init=scratch the model is `model` (default unet_small); with a workdir init it is the
workdir's model unless `model` is set. W/results.json: the test metrics of the step with
the best validation Dice.
"""

import ml_collections

from rasd_jax.config import parse_arg
from rasd_jax.training import optimizer


def get_config(arg=None):
  arg = parse_arg(arg, task="", runlocal=False, model="")
  config = ml_collections.ConfigDict()
  config.job = "finetune"
  config.task = arg.task
  config.data = ml_collections.ConfigDict(dict(json=""))  # the dataset.json (task=custom)
  config.init = "scratch"      # or a pre-training workdir
  config.model = arg.model     # "" = the init workdir's model (scratch: unet_small)
  config.seed = 0              # model init, train subset, and batches: step s uses (seed, s)
  config.train_fraction = 1.0  # first ceil(F * n) training cases after a seeded shuffle
  config.num_classes = 0       # 0 = max training label + 1
  config.keep_checkpoints = 2
  if arg.runlocal:
    config.total_steps = 200
    config.batch_size = 4
    config.roi = (32,)         # one size for every spatial axis, or one per axis
    config.eval_every = 50
    config.checkpoint_every = 50
    config.log_every = 10
    config.optim = optimizer.get_config(lr=1e-3, weight_decay=1e-5, schedule="cosine",
                                        warmup_steps=20)
  else:
    config.total_steps = 25_000
    config.batch_size = 4
    config.roi = (96,)
    config.eval_every = 500
    config.checkpoint_every = 1000
    config.log_every = 50
    config.optim = optimizer.get_config(lr=3e-4, weight_decay=1e-5, schedule="cosine",
                                        warmup_steps=500)
  config.overlap = 0.5         # sliding-window overlap in evaluation
  return config
