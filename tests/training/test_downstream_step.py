"""The fine-tuning step on a real tiny network: every output kind trains, a linear probe
changes the head only, and the heads have the documented shapes and transfer."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rasd_jax import models
from rasd_jax.training import downstream
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import optimizer
from rasd_jax.training import state as state_lib
from rasd_jax.training import transfer
from rasd_jax.training import weights

SIZE = 16


def setup(output, num_outputs, probe=False, head="add", dropout=0.0, **options):
  pooled = output in ("classification", "multilabel", "regression")

  def make_model():
    return models.create_downstream("unet_tiny", 2, 1, num_outputs, head=head, pooled=pooled,
                                    dropout=dropout, rngs=models.init_rngs(0))

  mesh = mesh_lib.make_mesh()
  tx, schedule = optimizer.make(optimizer.get_config(lr=1e-2, weight_decay=0.1), 10)
  if probe:
    tx = downstream.probe_tx(tx)
  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  state = state_lib.create(make_model, tx, abstract)
  step = downstream.make_step(graphdef, abstract, mesh, tx=tx, schedule=schedule, output=output,
                            probe=probe, **options)
  return graphdef, state, step


def batch(output, rng):
  image = rng.random((4, SIZE, SIZE, 1), dtype=np.float32)
  label = {"softmax": (image[..., 0] > 0.5).astype(np.int32) * 2,
           "sigmoid": (image[..., 0] > 0.5).astype(np.int32),
           "classification": np.array([0, 1, 2, 1], np.int32),
           "multilabel": np.array([[0, 1], [1, 1], [0, 0], [1, 0]], np.float32),
           "regression": np.array([10.0, 20.0, 5.0, 1.0], np.float32)}[output]
  return {"image": image, "label": label}


@pytest.mark.parametrize("output,num_outputs", [
    ("softmax", 3), ("sigmoid", 1), ("classification", 3), ("multilabel", 2),
    ("regression", 1)])
def test_each_output_lowers_its_loss(output, num_outputs):
  _, state, step = setup(output, num_outputs)
  data = batch(output, np.random.default_rng(0))
  losses = []
  for _ in range(8):
    state, metrics = step(state, data)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses


def test_probe_trains_the_head_only():
  graphdef, state, step = setup("softmax", 3, probe=True)
  before = jax.device_get((state["params"], state["rest"]))
  data = batch("softmax", np.random.default_rng(1))
  for _ in range(3):
    state, _ = step(state, data)
  params, rest = jax.device_get((state["params"], state["rest"]))
  changed = {name for name, leaf in transfer.named(params).items()
             if not np.array_equal(leaf, transfer.named(before[0])[name])}
  assert changed == {"head/kernel", "head/bias"}
  # The backbone ran in eval mode: its batch-norm statistics did not move.
  for name, leaf in transfer.named(rest).items():
    np.testing.assert_array_equal(leaf, transfer.named(before[1])[name], err_msg=name)


def test_heads_shapes_and_transfer():
  rngs = models.init_rngs(0)
  x = np.zeros((2, SIZE, SIZE, 1), np.float32)
  dense = models.create_downstream("unet_tiny", 2, 1, 4, rngs=rngs)
  pooled = models.create_downstream("unet_tiny", 2, 1, 5, pooled=True, rngs=rngs)
  replaced = models.create_downstream("unet_tiny", 2, 1, 4, head="replace", rngs=rngs)
  assert dense(x).shape == (2, SIZE, SIZE, 4) and replaced(x).shape == (2, SIZE, SIZE, 4)
  assert pooled(x).shape == (2, 5)
  pretrained = models.create("unet_tiny", 2, 1, 32, rngs=models.init_rngs(1))
  report = transfer.copy_matching(dense.backbone, pretrained)
  assert not report["shape_mismatch"] and not report["missing"]
  report = transfer.copy_matching(replaced.backbone, pretrained)
  assert report["shape_mismatch"]  # the last layer: 32 channels there, 4 here
  with pytest.raises(ValueError, match="pooled outputs"):
    models.create_downstream("unet_tiny", 2, 1, 3, head="replace", pooled=True, rngs=rngs)
  with pytest.raises(ValueError, match="head 'top'"):
    models.create_downstream("unet_tiny", 2, 1, 3, head="top", rngs=rngs)


def test_score_and_segment_outputs():
  graphdef, state, _ = setup("classification", 3)
  score = downstream.make_score(graphdef, "classification")
  weights = {"params": state["params"], "rest": state["rest"]}
  probs = np.asarray(score(weights, batch("softmax", np.random.default_rng(2))["image"]))
  assert probs.shape == (4, 3)
  np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
  graphdef, state, _ = setup("sigmoid", 1)
  segment = downstream.make_segment(graphdef, (SIZE, SIZE), 0.5, "sigmoid")
  labels, prob = segment({"params": state["params"], "rest": state["rest"]},
                         np.random.default_rng(3).random((1, 24, 20, 1), np.float32))
  labels, prob = np.asarray(labels), np.asarray(prob)
  assert labels.shape == prob.shape == (24, 20) and set(np.unique(labels)) <= {0, 1}
  # Thresholded on the probability (the reference thresholds logits at 0.5: README, "finetune").
  assert 0 <= prob.min() and prob.max() <= 1
  np.testing.assert_array_equal(labels, (prob > 0.5).astype(np.int32))


def test_segment_compiles_the_network_once_for_every_image_shape(monkeypatch):
  """Images of three shapes: the network is traced once (the window bookkeeping, per shape, is
  not the network); an image of the window's size gets the network's own output."""
  graphdef, state, _ = setup("softmax", 3)
  weights = {"params": state["params"], "rest": state["rest"]}
  traced = []
  eval_model = downstream._eval_model
  monkeypatch.setattr(downstream, "_eval_model", lambda *a: traced.append(1) or eval_model(*a))
  segment = downstream.make_segment(graphdef, (SIZE, SIZE), 0.5, "softmax",
                                    probabilities=True)
  rng = np.random.default_rng(5)
  for shape in ((SIZE, SIZE), (24, 20), (40, 17)):
    image = rng.random((1, *shape, 1), np.float32)
    labels, probs = (np.asarray(x) for x in segment(weights, image))
    assert labels.shape == shape and probs.shape == (*shape, 3)
    if shape == (SIZE, SIZE):
      expected = jax.nn.softmax(eval_model(graphdef, weights)(image)[0], axis=-1)
      np.testing.assert_allclose(probs, expected, rtol=1e-5, atol=1e-6)
      np.testing.assert_array_equal(labels, np.argmax(expected, axis=-1))
  assert len(traced) == 1


@pytest.fixture(scope="module")
def dropout_steps():
  """{compute_dtype: step} of one network with dropout 0.5, its fresh state on the host, a
  batch."""
  steps = {dtype: setup("softmax", 3, dropout=0.5, compute_dtype=dtype)[2]
           for dtype in ("float32", "bfloat16")}
  host = jax.device_get(setup("softmax", 3, dropout=0.5)[1])
  return steps, host, batch("softmax", np.random.default_rng(4))


def test_bf16_step_tracks_the_float32_step_on_float32_state(dropout_steps):
  """compute_dtype bfloat16: every convolution of the step (forward and backward) runs in
  bf16; the state (weights, optimiser moments, statistics) stays float32; the loss (float32)
  and gradient norm are the float32 step's to bf16 precision (the same dropout masks)."""
  steps, host, data = dropout_steps
  dtypes = jax.tree.map(lambda a: a.dtype, host)
  assert set(jax.tree.leaves(dtypes)) == {np.dtype(np.float32), np.dtype(np.int32)}
  results = {}
  for compute_dtype, step in steps.items():
    convolutions = [line for line in step.lower(host, data).as_text().splitlines()
                    if "stablehlo.convolution" in line]
    assert convolutions and all(
        ("xbf16>" in line) == (compute_dtype == "bfloat16") for line in convolutions)
    state, metrics = step(host, data)
    assert jax.tree.map(lambda a: a.dtype, jax.device_get(state)) == dtypes
    assert metrics["loss"].dtype == jnp.float32
    results[compute_dtype] = {k: float(metrics[k]) for k in ("loss", "grad_norm")}
  for key, value in results["float32"].items():
    np.testing.assert_allclose(results["bfloat16"][key], value, rtol=0.02, err_msg=key)
  assert results["bfloat16"] != results["float32"]


def test_an_unknown_compute_dtype_is_one_clear_error():
  with pytest.raises(ValueError, match=r"compute_dtype = 'float16'; available: "
                                       r"\['bfloat16', 'float32'\]"):
    setup("softmax", 3, compute_dtype="float16")


def test_dropout_masks_are_a_function_of_the_step(dropout_steps):
  """Beyond the weights and the batch, the step's loss depends on its dropout masks alone:
  the same state gives the same loss (a resumed run, whose state is the checkpoint's, draws
  the uninterrupted run's masks), another step number another loss. The masks' key is
  (seed, step): no RNG state enters the train state."""
  steps, host, data = dropout_steps
  assert (jax.tree_util.tree_structure(host)
          == jax.tree_util.tree_structure(jax.device_get(setup("softmax", 3)[1])))

  def loss(state):
    return float(steps["float32"](state, data)[1]["loss"])

  first = loss(host)
  assert loss(host) == first
  assert loss(dict(host, step=np.int32(7))) != first


def test_the_spec_carries_the_dropout_rate():
  spec = weights.downstream_spec("unet_tiny", 2, 1, 32, 3, dropout=0.15)
  rates = {m.rate for _, m in nnx.iter_modules(nnx.eval_shape(lambda: weights.build(spec)))
           if isinstance(m, nnx.Dropout)}
  assert rates == {0.15}
  del spec["dropout"]  # a model.json written before dropout was modelled
  rates = {m.rate for _, m in nnx.iter_modules(nnx.eval_shape(lambda: weights.build(spec)))
           if isinstance(m, nnx.Dropout)}
  assert rates == {0.0}
