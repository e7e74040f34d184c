"""The fine-tuning step and the evaluation functions, for every downstream kind.

The model is a `models.Downstream` (a backbone and a head). `step(state, batch) -> (state,
metrics)` is pure and jitted with the state donated; the batch {'image': (B, *S, C) float32,
'label': ...} comes from the host, sharded over the mesh axis 'data'. Losses by output:
- 'softmax' (segmentation): Dice + CE (objectives.segmentation), labels (B, *S) int32;
- 'sigmoid' (binary segmentation, one output channel): sigmoid Dice + BCE, labels 0/1;
- 'classification': cross-entropy, labels (B,) int32;
- 'multilabel': binary cross-entropy, labels (B, L) float32 0/1;
- 'regression': L1, labels (B,) float32 against the single output.
A linear probe (`probe=True`) trains the head alone: the backbone's parameters get no
gradient (and `probe_tx` gives them no update, weight decay included) and it runs in eval
mode, so its batch-norm statistics stay those it came with (and it drops nothing out).
`compute_dtype` "bfloat16": the step computes in bf16 on float32 master weights, the loss in
float32 (state.train_model). The dropout masks of step s are drawn from (seed, s), so a
resumed run draws those of an uninterrupted one.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rasd_jax.data import tasks
from rasd_jax.evaluation import sliding_window
from rasd_jax.objectives import classification
from rasd_jax.objectives import segmentation
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import state as state_lib
from rasd_jax.models import path_name

OUTPUTS = tasks.SEGMENTATION_OUTPUTS + ("classification", "multilabel", "regression")


def loss(output, logits, labels):
  """{'loss', ...} of `output` (one of OUTPUTS)."""
  if output == "softmax":
    return segmentation.dice_ce_loss(logits, labels, logits.shape[-1])
  if output == "sigmoid":
    return segmentation.sigmoid_dice_ce_loss(logits, labels)
  if output == "classification":
    return {"loss": classification.cross_entropy(logits, labels)}
  if output == "multilabel":
    return {"loss": classification.binary_cross_entropy(logits, labels)}
  if output == "regression":
    return {"loss": classification.l1(logits[..., 0], labels)}
  raise ValueError(f"output {output!r}: one of {OUTPUTS}")


def _is_head(path):
  return path_name(path).startswith("head/")


def probe_tx(tx):
  """`tx` for the head's parameters, no update at all for the others."""
  def labels(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if _is_head(path) else "frozen", params)
  return optax.multi_transform({"head": tx, "frozen": optax.set_to_zero()}, labels)


def _eval_model(graphdef, weights):
  model = nnx.merge(graphdef, weights["params"], weights["rest"], copy=True)
  model.eval()
  return model


def make_step(graphdef, abstract_state, mesh, *, tx, schedule, output, probe=False,
              compute_dtype="float32", seed=0):
  dtype = state_lib.compute_dtype(compute_dtype)

  def step(state, batch):
    dropout_key = jax.random.fold_in(jax.random.key(seed), state["step"])

    def loss_fn(params):
      if probe:
        params = jax.tree_util.tree_map_with_path(
            lambda path, x: x if _is_head(path) else jax.lax.stop_gradient(x), params)
      model = state_lib.train_model(graphdef, params, state["rest"], dtype, dropout_key)
      if probe:
        model.backbone.eval()
      logits = model(batch["image"].astype(dtype)).astype(jnp.float32)
      out = loss(output, logits, batch["label"])
      return out["loss"], (out, state_lib.updated_rest(model))

    (_, (out, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    new_state = state_lib.apply_gradients(state, grads, rest, tx)
    metrics = dict(out, lr=schedule(state["step"]), grad_norm=optax.tree.norm(grads))
    return new_state, metrics

  shardings = jax.tree.map(lambda s: s.sharding, abstract_state)
  data = mesh_lib.batch_sharding(mesh)
  return jax.jit(step, in_shardings=(shardings, {"image": data, "label": data}),
                 out_shardings=(shardings, NamedSharding(mesh, P())), donate_argnums=0)


def make_segment(graphdef, roi, overlap, output, window="gaussian", probabilities=False,
                 batch_size=4):
  """`(weights {'params', 'rest'}, image (1, *S, C)) -> (int32 label map (*S), float32
  probabilities)`: sliding-window inference in eval mode, each window's logits weighted by
  `window` ("constant" or "gaussian", sliding_window.importance_map), then argmax ('softmax')
  or p > 0.5 ('sigmoid'). The probabilities: the foreground's (*S) (the sigmoid, or
  1 - p(background) of the softmax); with `probabilities`, each output channel's (*S, C) (the
  softmax, or the sigmoid). The network is jitted on its batch of windows alone: it compiles
  once, whatever the images' shapes."""
  forward = jax.jit(lambda weights, windows: _eval_model(graphdef, weights)(windows))

  @jax.jit
  def finish(logits):
    if output == "sigmoid":
      p = jax.nn.sigmoid(logits)
      return (logits[..., 0] > 0).astype(jnp.int32), p if probabilities else p[..., 0]
    p = jax.nn.softmax(logits, axis=-1)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32), p if probabilities else 1.0 - p[..., 0]

  def segment(weights, image):
    logits = sliding_window.sliding_window_inference(
        image, tuple(roi), lambda windows: forward(weights, windows), overlap=overlap,
        mode=window, batch_size=batch_size)[0]
    return finish(logits)

  return segment


def make_score(graphdef, output):
  """`(weights {'params', 'rest'}, images (B, *S, C)) -> (B, N)`, jitted, in eval mode: class
  probabilities ('classification': softmax; 'multilabel': sigmoid) or the regression
  value (N = 1)."""

  @jax.jit
  def score(weights, images):
    logits = _eval_model(graphdef, weights)(images).astype(jnp.float32)
    if output == "classification":
      return jax.nn.softmax(logits, axis=-1)
    if output == "multilabel":
      return jax.nn.sigmoid(logits)
    return logits

  return score
