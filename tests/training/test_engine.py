"""The fine-tuning engine's initial state: a fresh network of the seed, the pre-trained
weights copied in (compared parameter by parameter)."""

from flax import nnx
import jax
import numpy as np
import pytest

from rasd_jax.data import pipeline
from rasd_jax.training import engine
from rasd_jax.training import optimizer
from rasd_jax.training import transfer
from rasd_jax.training import weights

SPEC = dict(network="downstream", checkpoints="best", model="unet_tiny", ndim=2,
            in_channels=1, out_channels=8, num_outputs=3, head="add", pooled=False,
            output="softmax", classes=None)


@pytest.fixture(scope="module")
def trainer():
  task = pipeline.custom_task("segmentation", 2, 1, 3, (16, 16))
  return engine.make_trainer(SPEC, task, optimizer.get_config(lr=1e-3), 4, batch_size=2)


def test_starts_from_the_pretrained_weights(trainer):
  """Every backbone array (batch-norm statistics too) is the pre-trained network's; the new
  head is the seed's initialisation, as in a run from scratch; the optimiser starts at 0."""
  backbone = dict(SPEC, network="backbone")
  pretrained = weights.build(backbone, seed=7)
  scratch, report = engine.initial_state(trainer, seed=1)
  assert report is None
  state, report = engine.initial_state(trainer, seed=1, pretrained=pretrained)
  assert not report["missing"] and not report["shape_mismatch"] and report["loaded"]
  source = transfer.named(nnx.state(pretrained))
  for part in ("params", "rest"):
    got, fresh = transfer.named(state[part]), transfer.named(scratch[part])
    for name, value in got.items():
      if name.startswith("backbone/"):
        np.testing.assert_array_equal(value, source[name[len("backbone/"):]], err_msg=name)
        if name.endswith("kernel"):
          assert not np.array_equal(value, fresh[name]), name  # the seed's would differ
      else:
        np.testing.assert_array_equal(value, fresh[name], err_msg=name)
  assert int(state["step"]) == 0
  assert all(np.all(x == 0) for x in jax.tree.leaves(state["opt_state"])
             if np.asarray(x).dtype.kind == "f")


def test_same_seed_same_start_and_a_network_that_shares_nothing_is_an_error(trainer):
  a, _ = engine.initial_state(trainer, seed=3)
  b, _ = engine.initial_state(trainer, seed=3)
  c, _ = engine.initial_state(trainer, seed=4)
  for name, value in transfer.named(a["params"]).items():
    np.testing.assert_array_equal(value, transfer.named(b["params"])[name])
  assert any(not np.array_equal(v, transfer.named(c["params"])[k])
             for k, v in transfer.named(a["params"]).items())
  with pytest.raises(ValueError, match="shares no variable"):
    engine.initial_state(trainer, seed=0, pretrained=nnx.Linear(3, 3, rngs=nnx.Rngs(0)))
