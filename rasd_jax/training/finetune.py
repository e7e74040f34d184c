"""The fine-tuning step for segmentation: Dice + CE (objectives.segmentation), AdamW update.

`step(state, batch) -> (state, metrics)` is pure and jitted with the state donated; the batch
{'image': (B, *roi, C) float32, 'label': (B, *roi) int32} comes from the host, sharded over
the mesh axis 'data'. `make_predict` gives the evaluation function: sliding-window inference
(Gaussian weights) with the model in eval mode (batch-norm running statistics), then argmax.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rasd_jax.evaluation import sliding_window
from rasd_jax.objectives import segmentation
from rasd_jax.training import state as state_lib


def batch_sharding(mesh):
  """The batch's sharding: the leading (batch) axis split over 'data'."""
  return NamedSharding(mesh, P("data"))


def make_step(graphdef, abstract_state, mesh, *, tx, schedule, num_classes):
  def step(state, batch):
    def loss_fn(params):
      # copy: fresh variables of this trace, which the model updates (batch statistics).
      model = nnx.merge(graphdef, params, state["rest"], copy=True)
      logits = model(batch["image"])
      out = segmentation.dice_ce_loss(logits, batch["label"], num_classes)
      return out["loss"], (out, nnx.state(model, nnx.Not(nnx.Param)))

    (_, (out, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    new_state = state_lib.apply_gradients(state, grads, rest, tx)
    metrics = dict(out, lr=schedule(state["step"]), grad_norm=optax.tree.norm(grads))
    return new_state, metrics

  shardings = jax.tree.map(lambda s: s.sharding, abstract_state)
  data = batch_sharding(mesh)
  return jax.jit(step, in_shardings=(shardings, {"image": data, "label": data}),
                 out_shardings=(shardings, NamedSharding(mesh, P())), donate_argnums=0)


def make_predict(graphdef, roi, overlap, batch_size=4):
  """`(params, rest, image (1, *spatial, C)) -> int32 label map (*spatial)`, jitted."""

  @jax.jit
  def predict(params, rest, image):
    model = nnx.merge(graphdef, params, rest, copy=True)
    model.eval()
    logits = sliding_window.sliding_window_inference(
        image, tuple(roi), model, overlap=overlap, mode="gaussian", batch_size=batch_size)
    return jnp.argmax(logits[0], axis=-1).astype(jnp.int32)

  return predict
