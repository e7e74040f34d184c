"""The pre-training step's options: bf16 compute, the two-view loss, data per step."""

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import spec_of
from rasd_jax import models
from rasd_jax import synthesis
from rasd_jax.objectives import prototype
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import optimizer
from rasd_jax.training import pretrain
from rasd_jax.training import state as state_lib


def make_model():
  return models.create("unet_tiny", 2, 1, 32, rngs=models.init_rngs(0))


def setup(compute_dtype="float32", two_view=False, **fields):
  spec = spec_of(2, 32, num_labels=4, **fields)
  mesh = mesh_lib.make_mesh()
  tx, schedule = optimizer.make(optimizer.get_config(lr=1e-3), total_steps=10)
  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  loss = ml_collections.ConfigDict(dict(exclude_absent=False, cosine=False,
                                        two_view=two_view))
  step = pretrain.make_step(graphdef, abstract, spec, mesh, seed=3, batch_size=2, tx=tx,
                            schedule=schedule, loss=loss, compute_dtype=compute_dtype)
  return step, state_lib.create(make_model, tx, abstract), spec, mesh


def test_bf16_compute_keeps_float32_state_and_tracks_float32():
  losses = {}
  for dtype in ("float32", "bfloat16"):
    step, state, _, _ = setup(dtype)
    dtypes = jax.tree.map(lambda a: a.dtype, state)
    for _ in range(2):
      state, metrics = step(state)
      losses.setdefault(dtype, []).append(float(metrics["loss"]))
    assert jax.tree.map(lambda a: a.dtype, state) == dtypes
    assert int(state["step"]) == 2
  # Same data, same weights: bf16 rounding moves the loss by well under 5%.
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.05)
  assert losses["bfloat16"] != losses["float32"]


def test_two_view_loss_needs_paired_views():
  with pytest.raises(ValueError, match="paired_views"):
    setup(two_view=True)
  step, state, _, _ = setup(two_view=True, paired_views=True)
  _, metrics = step(state)
  assert {"loss_cross", "loss_seg", "loss_proto", "proto_acc"} <= set(metrics)
  assert np.isfinite(float(metrics["loss"]))


def test_each_step_trains_on_the_generators_batch_of_that_step():
  """The step's loss equals the loss of the same weights on synthesis batch (seed, step)."""
  step, state, spec, mesh = setup()
  graphdef = nnx.split(nnx.eval_shape(make_model), nnx.Param, ...)[0]
  state, _ = step(state)  # now at step 1
  params = jax.tree.map(jnp.copy, state["params"])
  rest = jax.tree.map(jnp.copy, state["rest"])
  _, metrics = step(state)
  batch = synthesis.make_generator(spec, mesh, 2)(3, 1)
  model = nnx.merge(graphdef, params, rest)
  expected = prototype.prototype_loss(model(batch["image"]), batch["label"], 4)["loss"]
  np.testing.assert_allclose(float(metrics["loss"]), float(expected), rtol=1e-5)
