"""Orbax checkpoints: round trip, keep the last N, refuse another model's checkpoint."""

import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rasd_jax import models
from rasd_jax.training import checkpoint
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import state as state_lib


def make_state(width):
  tx = optax.adamw(1e-3)
  make_model = lambda: nnx.Sequential(nnx.Linear(2, width, rngs=nnx.Rngs(0)),
                                      nnx.BatchNorm(width, rngs=nnx.Rngs(0)))
  _, abstract = state_lib.abstract(make_model, tx, mesh_lib.make_mesh())
  return state_lib.create(make_model, tx, abstract), abstract


def listing(folder):
  return sorted((os.path.relpath(os.path.join(d, f), folder), os.path.getmtime(os.path.join(d, f)))
                for d, _, files in os.walk(folder) for f in files)


def test_round_trip_keeps_last_n_and_shardings(tmp_path):
  state, abstract = make_state(3)
  saver = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
  assert saver.latest_step() is None
  for step in (1, 2, 3):
    state = jax.tree.map(lambda a: a + 1 if a.dtype == jnp.float32 else a, state)
    saver.save(step, state)
  saver.close()
  assert sorted(os.listdir(tmp_path / "ck")) == ["2", "3"]

  restorer = checkpoint.Checkpointer(tmp_path / "ck", keep=2)
  assert restorer.latest_step() == 3
  restored = restorer.restore(abstract)
  restorer.close()
  assert type(restored["params"]) is type(state["params"])
  for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
    np.testing.assert_array_equal(a, b)
    assert a.sharding == b.sharding


def test_checkpoint_of_another_shape_is_refused_and_left_alone(tmp_path):
  state, _ = make_state(3)
  saver = checkpoint.Checkpointer(tmp_path / "ck")
  saver.save(5, state)
  saver.close()
  before = listing(tmp_path / "ck")
  _, other = make_state(4)
  other_run = checkpoint.Checkpointer(tmp_path / "ck")
  with pytest.raises(ValueError, match=r"another model or shape.*params/layers/0/bias: "
                                       r"shape \(3,\) in the checkpoint, \(4,\) here"):
    other_run.restore(other)
  other_run.close()
  assert listing(tmp_path / "ck") == before


def test_path_names_match_between_live_arrays_and_metadata():
  state, _ = make_state(3)
  names = [models.path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
  assert "params/layers/0/kernel" in names and "rest/layers/1/mean" in names
  assert "opt_state/0/mu/layers/0/kernel" in names


def test_damaged_checkpoints_are_set_aside_until_one_restores(tmp_path):
  """A garbled latest checkpoint: renamed <step>.damaged, bytes kept, the one before it
  restored. Every one garbled: an error naming them all, and the next start is from 0."""
  state, abstract = make_state(3)
  saver = checkpoint.Checkpointer(tmp_path / "ck", keep=3)
  for step in (1, 2, 3):
    saver.save(step, jax.tree.map(lambda a: a + step if a.dtype == jnp.float32 else a, state))
  saver.close()
  manifest = lambda step: tmp_path / "ck" / str(step) / "default" / "manifest.ocdbt"  # noqa: E731
  manifest(3).write_text("garbage")
  kept = listing(tmp_path / "ck" / "3")

  saver = checkpoint.Checkpointer(tmp_path / "ck", keep=3)
  step, restored = saver.start(abstract, lambda: pytest.fail("a checkpoint restores"))
  saver.close()
  assert step == 2 and sorted(os.listdir(tmp_path / "ck")) == ["1", "2", "3.damaged"]
  assert listing(tmp_path / "ck" / "3.damaged") == kept
  expected = jax.tree.map(lambda a: a + 2 if a.dtype == jnp.float32 else a, state)
  jax.tree.map(np.testing.assert_array_equal, restored, expected)

  for step in (1, 2):
    manifest(step).write_text("garbage")
  saver = checkpoint.Checkpointer(tmp_path / "ck", keep=3)
  with pytest.raises(ValueError, match=r"no checkpoint in .* restores \(set aside: .*2\.damaged, "
                     r".*1\.damaged\); run the same command again to start from step 0"):
    saver.start(abstract, lambda: pytest.fail("not yet"))
  assert saver.start(abstract, lambda: "fresh") == (0, "fresh")
  saver.close()


def test_checkpointers_of_one_run_synchronise_under_keys_of_their_own(tmp_path):
  """A fine-tuning run saves its checkpoints and its best weights at once: each manager's
  barriers across processes carry its folder (shared keys let two processes' saves of
  different folders meet, and the run hung); the key is the same in every process."""
  first = checkpoint.Checkpointer(tmp_path / "w" / "checkpoints")
  second = checkpoint.Checkpointer(tmp_path / "w" / "best")
  prefixes = [c._manager._multiprocessing_options.barrier_sync_key_prefix
              for c in (first, second)]
  assert prefixes == [str(tmp_path / "w" / "checkpoints"), str(tmp_path / "w" / "best")]
  first.close()
  second.close()
