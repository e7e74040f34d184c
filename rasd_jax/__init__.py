"""rasd_jax: RaSD synthetic pre-training of medical image foundation models in JAX."""

from rasd_jax.training.weights import load_model

__all__ = ["load_model"]
