"""Export synthetic samples.

python run.py --config=experiments/synthesize.py:ndim=3,size=128,num=16 --workdir=W
Arguments: ndim (2|3), size, num (samples), runlocal (small, fast: size 64 / 256).
Any field can be overridden: --config.seed=1 --config.synthesis.gamma_range="(0.7,1.3)".
"""

import ml_collections

from rasd_jax import synthesis
from rasd_jax.config import parse_arg


def get_config(arg=None):
  arg = parse_arg(arg, ndim=3, size=0, num=16, runlocal=False)
  size = arg.size or ((64 if arg.ndim == 3 else 256) if arg.runlocal else
                      (128 if arg.ndim == 3 else 512))
  config = ml_collections.ConfigDict()
  config.job = "synthesize"
  config.seed = 0
  config.num = arg.num
  config.batch_size = 4
  config.montage_samples = 4
  config.synthesis = synthesis.get_config(arg.ndim, size)
  return config
