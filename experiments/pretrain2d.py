"""2D pre-training, the paper's settings: 512^2 samples, K=16, the 2D residual U-Net,
batch 16, AdamW lr 1e-5, weight decay 0.01 (9.6M sample-slots = 600k steps).

python run.py --config=experiments/pretrain2d.py --workdir=W
Arguments: runlocal (a small U-Net at 64^2, K=8, 500 steps, ~5 min on a 2-core CPU),
model=NAME (e.g. swinunetr_base for the 2D SwinUNETR v2).
"""

from experiments import common
from rasd_jax.config import parse_arg
from rasd_jax.training import optimizer


def get_config(arg=None):
  arg = parse_arg(arg, runlocal=False, model="")
  if arg.runlocal:
    config = common.pretrain(ndim=2, size=64, num_labels=8, model="unet_small",
                             batch_size=8, total_steps=500, checkpoint_every=100, log_every=1,
                             optim=common.runlocal_optim())
  else:
    config = common.pretrain(ndim=2, size=512, num_labels=16, model="unet_paper",
                             batch_size=16, total_steps=600_000, optim=optimizer.get_config())
  config.model = arg.model or config.model
  return config
