"""The downstream task registry: the 56 tasks of the RaSD protocol as plain data.

schema: what a task is (`Task` and its typed protocol: `Optimizer`, `Schedule`, `Sampling`,
`Inference`), checked when built. registry: the 56 entries and `get(name)`. Where a task's
files lie in its download is its recipe's (rasd_jax.data.downloads); the prepare job makes a
data folder from the download, which `rasd_jax.data.prepared.load_splits` reads; how the lists
become train / val / test: `rasd_jax.data.splits.make_splits`.
"""

from rasd_jax.data.tasks.registry import TASKS, get
from rasd_jax.data.tasks.schema import (ALGORITHMS, KINDS, LR_SCHEDULES, METRICS,
                                        MODALITY_GROUPS, OUTPUTS, SEGMENTATION_METRICS, SPLITS,
                                        Inference, Optimizer, Sampling, Schedule, Task)

__all__ = ["TASKS", "get", "ALGORITHMS", "KINDS", "LR_SCHEDULES", "METRICS", "MODALITY_GROUPS",
           "OUTPUTS", "SEGMENTATION_METRICS", "SPLITS", "Inference", "Optimizer", "Sampling",
           "Schedule", "Task"]
