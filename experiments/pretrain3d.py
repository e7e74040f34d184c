"""3D pre-training on synthetic data: the paper's settings, or runlocal on a CPU.

The paper's settings: 128^3 samples, K=8, SwinUNETR v2 base, batch 4, AdamW lr 1e-5, weight
decay 0.01 (about 1.2M sample-slots = 300k steps).

python run.py --config=experiments/pretrain3d.py --workdir=W
Arguments: runlocal (a tiny model at 32^3, a few hundred steps on a 2-core CPU),
model=NAME (any rasd_jax.models name, e.g. swinunetr_large or unet_tiny).

Continue pre-training from weights: --config.init=W0, W0 a pretrain, finetune or
import_weights workdir of the same network (README: pretrain).

From 1 GPU to a pod (the rule: experiments/common.py): any device count runs batch 4 as
one device does; on 64 devices, --config.batch_size=64 --config.optim.lr=4e-5
--config.total_steps=18750 sees as many samples.
"""

from experiments import common


def get_config(arg=None):
  return common.pretrain_from_arg(
      arg,
      full=dict(ndim=3, size=128, num_labels=8, model="swinunetr_base", batch_size=4,
                total_steps=300_000),
      runlocal=dict(ndim=3, size=32, num_labels=8, model="swinunetr_tiny", batch_size=1,
                    total_steps=300, checkpoint_every=50))
