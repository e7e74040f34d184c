import functools

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


def test_dropout_sits_where_monais_does():
  """MONAI's UNet(dropout=r) puts an elementwise Dropout in the ADN of every conv unit (norm,
  dropout, ReLU): not in the residual convolutions nor the bare last one. Ours: the same
  paths."""
  from monai.networks.nets import UNet as MonaiUNet
  import torch

  net = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, act="relu", norm="batch",
                  dropout=0.15, **models.MODELS["unet_tiny"][1])
  theirs = {name for name, m in net.named_modules() if isinstance(m, torch.nn.Dropout)}
  model = nnx.eval_shape(lambda: models.create("unet_tiny", 2, 1, 2, dropout=0.15,
                                               rngs=nnx.Rngs(0)))
  ours = {".".join(map(str, path)): m for path, m in nnx.iter_modules(model)
          if isinstance(m, nnx.Dropout)}
  assert set(ours) == theirs and len(theirs) == 9
  assert {(m.rate, m.broadcast_dims) for m in ours.values()} == {(0.15, ())}
  # No weights: the variables are those of the network without dropout.
  plain = nnx.eval_shape(lambda: models.create("unet_tiny", 2, 1, 2, rngs=nnx.Rngs(0)))
  assert (jax.tree_util.tree_structure(nnx.state(model))
          == jax.tree_util.tree_structure(nnx.state(plain)))


def test_dropout_in_eval_mode_gives_monais_outputs():
  """MONAI's UNet(dropout=0.15) in eval mode, random weights and statistics: ours with the
  same rate, in eval mode, gives its outputs, and the same ones twice."""
  from monai.networks.nets import UNet as MonaiUNet
  import torch

  from rasd_jax.interop import monai

  torch.manual_seed(0)
  net = MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, act="relu", norm="batch",
                  dropout=0.15, **models.MODELS["unet_tiny"][1]).eval()
  with torch.no_grad():
    for key, p in net.state_dict().items():
      if key.endswith("running_var"):
        p.copy_(torch.rand_like(p) + 0.5)
      elif p.is_floating_point():
        p.copy_(torch.randn_like(p) / 3)
  weights, _ = monai.to_rasd({k: v.numpy() for k, v in net.state_dict().items()},
                             "unet_tiny", 2, 1, 2)
  graphdef = nnx.split(nnx.eval_shape(lambda: models.create(
      "unet_tiny", 2, 1, 2, dropout=0.15, rngs=nnx.Rngs(0))), nnx.Param, ...)[0]
  model = nnx.merge(graphdef, weights["params"], weights["rest"])
  model.eval()
  x = np.random.default_rng(0).standard_normal((2, 1, 16, 16)).astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x)).numpy()
  forward = nnx.jit(lambda model, x: model(x))
  ours = np.moveaxis(np.asarray(forward(model, np.moveaxis(x, 1, -1))), -1, 1)
  np.testing.assert_allclose(ours, expected, atol=1e-5 * np.abs(expected).max())
  np.testing.assert_array_equal(forward(model, np.moveaxis(x, 1, -1)),
                                np.moveaxis(ours, 1, -1))


def test_dropout_in_train_mode_drops_after_the_norm_and_rescales():
  """One ADN in train mode: a fraction r of the normalised activations is zeroed, the others
  scaled by 1 / (1 - r); the batch norm sees the convolution's output undropped (its
  statistics, hence the kept values, are those of the same unit without dropout)."""
  from rasd_jax.models import unet
  from rasd_jax.training import state as state_lib

  rate, key = 0.15, jax.random.key(0)
  x = np.random.default_rng(1).normal(1, 3, (4, 16, 16, 16)).astype(np.float32)

  @functools.partial(jax.jit, static_argnums=0)
  def run(dropout):
    graphdef, params, rest = nnx.split(unet.Norm(16, dropout, rngs=nnx.Rngs(0)), nnx.Param,
                                       ...)
    return state_lib.train_model(graphdef, params, rest, jnp.float32, key)(x)

  dropped, plain = np.asarray(run(rate)), np.asarray(run(0.0))
  active = plain > 0
  zeroed = (dropped == 0) & active
  assert abs(zeroed.sum() / active.sum() - rate) < 0.02
  kept = active & ~zeroed
  np.testing.assert_allclose(dropped[kept], plain[kept] / (1 - rate), rtol=1e-5)
  assert (dropped[~active] == 0).all()
  np.testing.assert_array_equal(run(rate), dropped)  # a pure function of the key


def test_reference_dropout_is_the_2d_unets():
  assert models.reference_dropout("unet_paper", 2) == 0.15
  assert models.reference_dropout("unet_small", 2) == 0.15
  assert models.reference_dropout("unet_paper", 3) == 0.0
  assert models.reference_dropout("tiny", 2) == 0.0
  with pytest.raises(ValueError, match="dropout is for"):
    models.create("tiny", 2, dropout=0.1, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match=r"dropout = 1.0; a rate in \[0, 1\)"):
    models.create("unet_tiny", 2, dropout=1.0, rngs=nnx.Rngs(0))
