"""Pieces shared by the experiment configs.

Pre-training from 1 GPU to a pod: batch_size is the global batch, split over every device of
every process. Any batch runs on any device count: it is split gcd(batch, devices) ways and
each part is computed by devices / gcd devices at once (the job says so in one line), so the
paper's batch gives the same run on 1 GPU, an 8-GPU node or a pod slice, the extra devices
adding no speed. To use D devices fully, give a batch that is a multiple of D and scale the
rest yourself (nothing is scaled for you): the learning rate by sqrt(new batch / paper's
batch) (the square-root rule, a starting point for AdamW), and total_steps by paper's batch /
new batch to see as many samples. Each pretrain config gives its numbers for a pod.
"""

import ml_collections

from rasd_jax import synthesis
from rasd_jax.config import parse_arg
from rasd_jax.training import optimizer


def pretrain(*, ndim, size, num_labels, model, batch_size, total_steps, optim, seed=0,
             checkpoint_every=1000, log_every=10):
  """A pre-training config; `--config.KEY=VALUE` overrides any field."""
  config = ml_collections.ConfigDict()
  config.job = "pretrain"
  config.seed = seed              # model init and data: sample i of step s is (seed, s, i)
  config.model = model            # a rasd_jax.models name
  config.init = "scratch"         # or a workdir of the same network's weights to continue from
  config.out_channels = 32        # dense feature channels (README, "Networks")
  config.batch_size = batch_size  # global, over all devices
  config.total_steps = total_steps
  config.checkpoint_every = checkpoint_every
  config.keep_checkpoints = 3
  config.log_every = log_every
  config.compute_dtype = "float32"  # or "bfloat16" (float32 master weights)
  # How SwinUNETR computes, not its weights (README: pretrain, Benchmarks):
  config.remat = False              # recompute each Swin block in the backward pass
  config.attention = "einsum"       # or "xla" / "cudnn": jax.nn.dot_product_attention
  config.optim = optim
  config.loss = ml_collections.ConfigDict(dict(exclude_absent=False, cosine=False,
                                               two_view=False))
  config.synthesis = synthesis.get_config(ndim, size)
  config.synthesis.num_labels = num_labels
  return config


def pretrain_from_arg(arg, *, full, runlocal):
  """Parses the config-string arguments `runlocal` and `model=NAME`: the `full` (paper)
  settings with the reference optimiser, or the `runlocal` ones: a laptop run of a few
  hundred steps, logged every step, with a higher rate, warm-up and cosine decay
  (measured at laptop scale: lr 1e-3 beat 1e-4 in short runs)."""
  arg = parse_arg(arg, runlocal=False, model="")
  if arg.runlocal:
    config = pretrain(**runlocal, log_every=1, optim=optimizer.get_config(
        lr=1e-3, schedule="cosine", warmup_steps=20))
  else:
    config = pretrain(**full, optim=optimizer.get_config())
  config.model = arg.model or config.model
  return config
