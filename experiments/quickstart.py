"""The laptop demo: pre-train, fine-tune beside from-scratch twins, and report.

Pre-trains a small 2D U-Net on synthetic data, then fine-tunes it and a from-scratch twin on
the two offline demo tasks (rasd_jax.data.demo), and writes a report.

python run.py --config=experiments/quickstart.py --workdir=W
About 15 minutes on a 2-core CPU (sized by laptop-scale measurements): W/pretrain (the pretrain
job's workdir), W/runs.jsonl, W/report.md, W/report.png. Arguments: tiny (a seconds-scale
version, for the tests). Amounts of labels are counts of 64x64 training tiles: of axial
slices of the brain template, of the nuclei image.
"""

import ml_collections

from experiments import pretrain2d
from rasd_jax.config import parse_arg
from rasd_jax.training import optimizer


def get_config(arg=None):
  arg = parse_arg(arg, tiny=False)
  config = ml_collections.ConfigDict()
  config.job = "quickstart"
  # The pretrain job's config, run into W/pretrain: unet_small at 64^2, K=8, batch 8.
  config.pretrain = pretrain2d.get_config("runlocal")
  config.pretrain.total_steps = 1200  # ~7 min at 0.33-0.4 s/step
  config.pretrain.checkpoint_every = 200
  config.pretrain.log_every = 10
  config.seeds = (0, 1, 2)       # head init, scratch backbone, label subset and batches
  # 200 steps: the runs converge (100 left 17 of 18 brain runs selecting their last step).
  config.steps = 200             # fine-tuning steps per run
  config.batch_size = 4
  config.roi = 64                # square training crops and sliding-window tiles
  config.overlap = 0.25          # sliding-window overlap in evaluation
  config.eval_every = 40         # validation Dice every N steps: the learning curve
  # Fine-tuning as measured best at laptop scale: the whole network plus a new 1x1 head, Dice+CE.
  config.optim = optimizer.get_config(lr=1e-3, weight_decay=1e-5, schedule="cosine",
                                      warmup_steps=10)
  # The linear probe trains the head alone on frozen features: lr 1e-2 underfit in 100 steps.
  config.probe_optim = optimizer.get_config(lr=1e-1, weight_decay=1e-5, schedule="cosine",
                                            warmup_steps=10)
  config.brain = ml_collections.ConfigDict(dict(
      train_images=(1, 4, 16),   # labelled tiles of training-slab slices, one setting per run
      probe_images=(4,),         # settings with a linear probe too
      tile=64,                   # tile side
      tile_brain=0.5,            # tiles used are at least this fraction brain
      val_slices=4,              # evenly spaced whole slices of the validation slab
      test_slices=8,             # and of the test slab
      min_brain=0.1,             # slices used hold at least this fraction of brain pixels
  ))
  config.nuclei = ml_collections.ConfigDict(dict(
      train_images=(1, 4, 16),   # labelled tiles of the training band
      probe_images=(4,),
      tile=64,                   # tile side; tiles without a nucleus are not used
  ))
  if arg.tiny:
    config.pretrain = pretrain2d.get_config("runlocal,model=unet_tiny")
    config.pretrain.update(total_steps=3, checkpoint_every=3, batch_size=2)
    config.pretrain.synthesis.size = 32
    config.pretrain.synthesis.num_labels = 4
    config.update(seeds=(0,), steps=4, batch_size=2, roi=32, eval_every=2)
    config.brain.update(train_images=(1, 2), probe_images=(1,), val_slices=1, test_slices=1,
                        tile=32)
    config.nuclei.update(train_images=(1, 2), probe_images=(1,), tile=32)
  return config
