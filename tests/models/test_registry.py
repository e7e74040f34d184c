"""Every registered network, 2D and 3D: output shape of the forward pass (traced only)."""

from flax import nnx
import jax
import jax.numpy as jnp
import pytest

from rasd_jax import models


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("name", sorted(models.MODELS))
def test_forward_shape_of_every_model(name, ndim):
  spatial = (128, 256) if ndim == 2 else (32, 64, 32)
  model = nnx.eval_shape(lambda: models.create(name, ndim, 2, 7, rngs=models.init_rngs(0)))
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((3, *spatial, 2), jnp.float32))
  assert out.shape == (3, *spatial, 7) and out.dtype == jnp.float32


@pytest.mark.parametrize("short, full", [("tiny", "swinunetr_tiny"), ("huge", "swinunetr_huge"),
                                         ("unet_paper", "unet_paper")])
def test_short_names(short, full):
  assert models.resolve(short) == full


def test_misspelt_name_suggests_the_closest():
  with pytest.raises(ValueError, match="unknown model 'unet_smal'.*Did you mean 'unet_small'"):
    models.resolve("unet_smal")
