"""The downstream task registry: the 56 tasks of the RaSD protocol as plain data.

schema: what a task is (`Task` and its typed protocol: `Optimizer`, `Schedule`, `Sampling`,
`Inference`), checked when built. registry: the 56 entries and `get(name)`. Where a task's
files lie in its download is its recipe's (rasd_jax.data.downloads); the prepare job makes a
data folder from the download, which `rasd_jax.data.prepared.load_splits` reads; how the lists
become train / val / test: `rasd_jax.data.splits.make_splits`.
"""

from rasd_jax.data.tasks.registry import TASKS, get
from rasd_jax.data.tasks.schema import (EVALUATIONS, KINDS, METRICS, MODALITY_GROUPS,
                                        SEGMENTATION_METRICS, SEGMENTATION_OUTPUTS, SPLITS,
                                        Inference, Optimizer, Sampling, Schedule, Task)

__all__ = ["TASKS", "get", "EVALUATIONS", "KINDS", "METRICS", "MODALITY_GROUPS",
           "SEGMENTATION_METRICS", "SEGMENTATION_OUTPUTS", "SPLITS", "Inference", "Optimizer",
           "Sampling", "Schedule", "Task"]
