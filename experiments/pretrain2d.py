"""2D pre-training on synthetic data: the paper's settings, or runlocal on a CPU.

The paper's settings: 512^2 samples, K=16, the 2D residual U-Net, batch 16, AdamW lr 1e-5,
weight decay 0.01 (9.6M sample-slots = 600k steps).

python run.py --config=experiments/pretrain2d.py --workdir=W
Arguments: runlocal (a small U-Net at 64^2, K=8, 500 steps, ~5 min on a 2-core CPU),
model=NAME (e.g. swinunetr_base for the 2D SwinUNETR v2).

Continue pre-training from weights: --config.init=W0, W0 a pretrain, finetune or
import_weights workdir of the same network (README: pretrain).

From 1 GPU to a pod (the rule: experiments/common.py): any device count runs batch 16 as
one device does; on 256 devices, --config.batch_size=256 --config.optim.lr=4e-5
--config.total_steps=37500 sees as many samples.
"""

from experiments import common


def get_config(arg=None):
  return common.pretrain_from_arg(
      arg,
      full=dict(ndim=2, size=512, num_labels=16, model="unet_paper", batch_size=16,
                total_steps=600_000),
      runlocal=dict(ndim=2, size=64, num_labels=8, model="unet_small", batch_size=8,
                    total_steps=500, checkpoint_every=100))
