"""rasd_jax: RaSD synthetic pre-training of medical image foundation models in JAX."""
