"""rasd_jax.load_model: the weights of any workdir, without its optimiser state."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rasd_jax
from rasd_jax.training import checkpoint
from rasd_jax.training import weights

SPEC = dict(network="backbone", checkpoints="checkpoints", model="unet_tiny", ndim=2,
            in_channels=1, out_channels=8)


def _save(workdir, step, model, opt_state):
  _, params, rest = nnx.split(model, nnx.Param, ...)
  saver = checkpoint.Checkpointer(workdir / "checkpoints")
  try:
    saver.save(step, {"step": jnp.int32(step), "params": params, "rest": rest,
                      "opt_state": opt_state})
  finally:
    saver.close()


def test_load_model_reads_weights_only(tmp_path):
  """A checkpoint whose optimiser state no optimiser of ours would make (so a full restore
  could not even be described) loads: only params and batch statistics are read. The
  network computes what the saved one does; W/checkpoints/STEP picks that step."""
  trained = weights.build(SPEC, seed=3)
  weights.write_spec(tmp_path, SPEC)
  _save(tmp_path, 4, weights.build(SPEC, seed=1), {"mystery": jnp.ones((7, 5))})
  _save(tmp_path, 9, trained, {"other": jnp.zeros(3)})
  assert weights.read_spec(tmp_path)["step"] == 9
  image = np.random.default_rng(0).random((2, 16, 16, 1), np.float32)
  trained.eval()
  np.testing.assert_array_equal(rasd_jax.load_model(tmp_path)(image), trained(image))
  loaded = rasd_jax.load_model(tmp_path / "checkpoints" / "4")
  assert weights.read_spec(tmp_path / "checkpoints" / "4")["step"] == 4
  assert not np.array_equal(loaded(image), trained(image))
  for leaf in jax.tree.leaves(nnx.state(loaded)):
    assert leaf.sharding.is_fully_replicated


def test_load_model_errors(tmp_path):
  with pytest.raises(ValueError, match="no model.json"):
    rasd_jax.load_model(tmp_path)
  weights.write_spec(tmp_path, SPEC)
  with pytest.raises(ValueError, match="holds no weights yet"):
    rasd_jax.load_model(tmp_path)
  _save(tmp_path, 2, weights.build(dict(SPEC, out_channels=4)), {})
  with pytest.raises(ValueError, match="holds another model or shape"):
    rasd_jax.load_model(tmp_path)
  with pytest.raises(ValueError, match="network 'encoder'"):
    weights.write_spec(tmp_path, dict(SPEC, network="encoder"))
