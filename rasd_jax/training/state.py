"""The train state: a pytree {'step', 'params', 'rest', 'opt_state'}, created already sharded.

`params` are the model's nnx.Param variables, `rest` its other variables (batch-norm
statistics), `opt_state` the optax state. The model's structure (its nnx GraphDef) stays
outside the state: `nnx.merge(graphdef, params, rest)` rebuilds the model inside a step.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


def _init(make_model, tx):
  _, params, rest = nnx.split(make_model(), nnx.Param, ...)
  return {"step": jnp.zeros((), jnp.int32), "params": params, "rest": rest,
          "opt_state": tx.init(params)}


def abstract(make_model, tx, mesh):
  """(graphdef, abstract state with shardings). No array is allocated.

  Pure data parallelism: every array is replicated over the mesh."""
  graphdef = nnx.split(nnx.eval_shape(make_model), nnx.Param, ...)[0]
  replicated = NamedSharding(mesh, P())
  shapes = jax.eval_shape(lambda: _init(make_model, tx))
  return graphdef, jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated), shapes)


def create(make_model, tx, abstract_state):
  """A fresh state, each array created directly with its sharding."""
  shardings = jax.tree.map(lambda s: s.sharding, abstract_state)
  return jax.jit(lambda: _init(make_model, tx), out_shardings=shardings)()


def initializer(build, tx, abstract_state):
  """`seed -> fresh state`, jitted once: `build(seed)` makes the network (the seed may be
  traced), each array is created directly with its sharding."""
  shardings = jax.tree.map(lambda s: s.sharding, abstract_state)
  return jax.jit(lambda seed: _init(lambda: build(seed), tx), out_shardings=shardings)


def apply_gradients(state, grads, rest, tx):
  """The next state: the optimiser's update of `params`, the model's updated `rest`."""
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  return {"step": state["step"] + 1,
          "params": optax.apply_updates(state["params"], updates),
          # bf16 compute may hand back bf16 statistics; the state keeps its dtypes.
          "rest": jax.tree.map(lambda new, old: new.astype(old.dtype), rest, state["rest"]),
          "opt_state": opt_state}
