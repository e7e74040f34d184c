"""The pre-training step: synthesise a batch on the devices, prototype loss, AdamW update.

One pure function `step(state) -> (state, metrics)`, jitted with the state donated. The
batch of step s is the synthesis engine's batch (seed, s), generated inside the same
program (a `shard_map` over 'data'), so no data crosses the host and a resumed run sees
exactly the samples an uninterrupted one would.

The pretrain job (rasd_jax.jobs.pretrain) trains with it.
"""

import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rasd_jax.objectives import prototype
from rasd_jax import synthesis
from rasd_jax.training import state as state_lib


def make_step(graphdef, abstract_state, spec, mesh, *, seed, batch_size, tx, schedule,
              loss, compute_dtype="float32"):
  """`loss`: {'exclude_absent', 'cosine', 'two_view'} (the prototype loss's options, README:
  "The disentanglement loss")."""
  dtype = state_lib.compute_dtype(compute_dtype)
  if loss.two_view and not spec.paired_views:
    raise ValueError("loss.two_view needs two appearances per label map: set "
                     "synthesis.paired_views = True")
  make_batch = synthesis.sharded_batch(spec, mesh, batch_size)
  options = dict(num_labels=spec.num_labels, exclude_absent=loss.exclude_absent,
                 cosine=loss.cosine)

  def forward(params, rest, image):
    model = state_lib.train_model(graphdef, params, rest, dtype)
    features = model(image.astype(dtype)).astype(jnp.float32)
    return features, state_lib.updated_rest(model)

  def step(state):
    batch = make_batch(jnp.int32(seed), state["step"], jnp.int32(0))

    def loss_fn(params):
      features, rest = forward(params, state["rest"], batch["image"])
      if loss.two_view:
        features2, rest = forward(params, rest, batch["image2"])
        out = prototype.two_view_loss(features, features2, batch["label"], **options)
      else:
        out = prototype.prototype_loss(features, batch["label"], **options)
      return out["loss"], (out, rest)

    (_, (out, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
    new_state = state_lib.apply_gradients(state, grads, rest, tx)
    metrics = dict(out, lr=schedule(state["step"]), grad_norm=optax.tree.norm(grads))
    return new_state, metrics

  shardings = jax.tree.map(lambda s: s.sharding, abstract_state)
  return jax.jit(step, in_shardings=(shardings,),
                 out_shardings=(shardings, NamedSharding(mesh, P())), donate_argnums=0)
