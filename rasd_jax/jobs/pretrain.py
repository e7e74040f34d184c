"""Pre-train a dense network on synthetic data with the prototype loss (README: "The generator",
"The disentanglement loss", "Networks").

The job is rasd_jax.training.pretrain.train; experiments/pretrain{2d,3d}.py document its
config.
"""

from rasd_jax.training import pretrain


def run(config, workdir):
  pretrain.train(config, workdir)
