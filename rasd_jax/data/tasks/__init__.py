"""The downstream task registry: the 56 tasks of the RaSD protocol as plain data.

schema: what a task is (`Task` and its typed protocol: `Optimizer`, `Schedule`, `Sampling`,
`Inference`), checked when built. registry: the 56 entries and `get(name)`. layouts:
`load_splits`, a task's cases listed from its dataset folder as `task.files` describes it.
How the lists become train / val / test: `rasd_jax.data.splits.make_splits`.
"""

from rasd_jax.data.tasks.layouts import load_splits
from rasd_jax.data.tasks.registry import TASKS, get
from rasd_jax.data.tasks.schema import (ALGORITHMS, KINDS, LAYOUTS, LR_SCHEDULES, METRICS,
                                        MODALITY_GROUPS, OUTPUTS, SEGMENTATION_METRICS, SPLITS,
                                        Inference, Optimizer, Sampling, Schedule, Task,
                                        split_specs)

__all__ = ["load_splits", "TASKS", "get", "ALGORITHMS", "KINDS", "LAYOUTS", "LR_SCHEDULES",
           "METRICS", "MODALITY_GROUPS", "OUTPUTS", "SEGMENTATION_METRICS", "SPLITS", "Inference",
           "Optimizer", "Sampling", "Schedule", "Task", "split_specs"]
