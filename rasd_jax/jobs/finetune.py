"""Fine-tune a network on a downstream task: a registry task (data.tasks) or the user's data.

The job is the engine's `finetune` (rasd_jax.training.engine: tasks, splits, model,
training, selection, evaluation); experiments/finetune.py documents its config.
"""

from rasd_jax.training import engine


def run(config, workdir):
  engine.finetune(config, workdir)
