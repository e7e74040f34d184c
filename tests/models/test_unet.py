import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rasd_jax import models
from rasd_jax import synthesis
from rasd_jax.objectives import prototype
from rasd_jax.training.mesh import make_mesh


def create(*args, **kwargs):
  """Built under one jit: eager initialisation would compile every initializer separately."""
  return nnx.jit(lambda: models.create(*args, rngs=models.init_rngs(0), **kwargs))()


def test_paper_unet_has_monais_parameter_count():
  # MONAI 1.6 UNet(2D, 1 -> 32, channels 64..1024, strides 2, 4 residual units, batch
  # norm): 51.18M parameters.
  assert models.count_params("unet_paper", 2) == 51_177_536


@pytest.mark.parametrize("ndim", [2, 3])
def test_forward_shapes(ndim):
  model = create("unet_tiny", ndim, in_channels=2, out_channels=5)
  forward = nnx.jit(lambda model, x: model(x))  # one compile, not one per op
  out = forward(model, jnp.ones((2,) + (16,) * ndim + (2,)))
  assert out.shape == (2,) + (16,) * ndim + (5,)
  model.eval()  # running statistics: deterministic
  x = jax.random.normal(jax.random.key(0), (1,) + (16,) * ndim + (2,))
  np.testing.assert_array_equal(forward(model, x), forward(model, x))


def test_unknown_model_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown model 'unet_huge'; available"):
    models.create("unet_huge", 2, rngs=nnx.Rngs(0))


def test_prototype_loss_gradients_reach_every_parameter_on_a_synthetic_batch():
  spec = synthesis.make_spec(synthesis.get_config(2, 32))
  batch = synthesis.make_generator(spec, make_mesh(), 2)(0, 0)
  model = create("unet_tiny", 2)

  def loss_fn(model):
    return prototype.prototype_loss(model(batch["image"]), batch["label"],
                                    spec.num_labels)["loss"]

  loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(model)
  leaves = jax.tree_util.tree_leaves(nnx.state(grads, nnx.Param))
  assert np.isfinite(float(loss))
  assert all(np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0
             for g in leaves)
