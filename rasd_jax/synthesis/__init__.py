"""The RaSD generator: random label maps and their random appearances, in pure JAX."""

from rasd_jax.synthesis.config import FIELDS, Spec, get_config, make_spec
from rasd_jax.synthesis.pipeline import (make_generator, sample, sample_key,
                                        sharded_batch)

__all__ = ["FIELDS", "Spec", "get_config", "make_spec", "make_generator", "sample",
           "sample_key", "sharded_batch"]
