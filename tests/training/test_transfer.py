"""Name-and-shape weight transfer between real networks."""

from flax import nnx
import jax
import numpy as np

from rasd_jax import models
from rasd_jax.training import transfer


def build(out_channels, in_channels=1, seed=0):
  return nnx.jit(lambda: models.create("unet_tiny", 2, in_channels, out_channels,
                                       rngs=models.init_rngs(seed)))()


def leaves(model):
  return transfer.named(nnx.state(model))


def test_everything_but_a_head_of_another_width_transfers():
  source, target = build(32, seed=1), build(3, seed=2)
  report = transfer.copy_matching(target, source)
  before, after = leaves(source), leaves(target)
  mismatched = {name for name, _, _ in report["shape_mismatch"]}
  # The top decoder level (MONAI's model.2: transposed conv to the outputs, last unit).
  assert mismatched and all(n.startswith("model/2/") for n in mismatched)
  assert not report["missing"] and not report["unused"]
  assert len(report["loaded"]) + len(mismatched) == len(after)
  for name in report["loaded"]:
    np.testing.assert_array_equal(after[name], before[name])
  # Batch-norm statistics travel with the weights.
  assert any(name.endswith("/mean") for name in report["loaded"])
  text = transfer.summary(report)
  assert f"loaded {len(report['loaded'])} arrays" in text and "(32,) in the source" in text


def test_another_input_width_keeps_the_first_layer():
  source, target = build(32, in_channels=1, seed=1), build(32, in_channels=4, seed=2)
  untouched = leaves(target)
  report = transfer.copy_matching(target, source)
  after = leaves(target)
  for name, source_shape, target_shape in report["shape_mismatch"]:
    assert source_shape[-2] == 1 and target_shape[-2] == 4  # conv kernels: (..., in, out)
    np.testing.assert_array_equal(after[name], untouched[name])
  assert report["shape_mismatch"]


def test_another_architecture_reports_missing_and_unused():
  source = nnx.jit(lambda: models.create("unet_small", 2, 1, 32, rngs=models.init_rngs(0)))()
  target = build(32)
  report = transfer.copy_matching(target, source)
  assert report["missing"] and report["unused"] and report["shape_mismatch"]
  # unet_tiny ends in a residual unit where unet_small has one more level.
  assert "model/1/submodule/1/submodule/conv/unit0/conv/kernel" in report["missing"]
  assert len(jax.tree.leaves(nnx.state(target))) == (
      len(report["loaded"]) + len(report["shape_mismatch"]) + len(report["missing"]))


def test_copy_into_state_makes_new_buffers_with_the_states_shardings():
  from jax.sharding import NamedSharding
  from jax.sharding import PartitionSpec as P
  from rasd_jax.training import mesh as mesh_lib
  source, target = build(32, seed=1), build(32, seed=2)
  graphdef, params, rest = nnx.split(target, nnx.Param, ...)
  replicated = NamedSharding(mesh_lib.make_mesh(), P())
  state = {"step": 0, "params": jax.device_put(params, replicated),
           "rest": jax.device_put(rest, replicated)}
  state, report = transfer.copy_into_state(graphdef, state, source)
  assert not report["missing"] and not report["shape_mismatch"] and not report["unused"]
  before = leaves(source)
  copied = transfer.named({"params": state["params"], "rest": state["rest"]})
  assert len(copied) == len(before)
  for name, value in copied.items():
    np.testing.assert_array_equal(value, before[name.split("/", 1)[1]])
    assert value.sharding == replicated  # the state's, not the source's
  jax.jit(lambda s: s, donate_argnums=0)(state)  # the step donates its state, not the source's
  assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(nnx.state(source)))
