"""The train state: a pytree {'step', 'params', 'rest', 'opt_state'}, created already sharded.

`params` are the model's nnx.Param variables, `rest` its other variables (batch-norm
statistics), `opt_state` the optax state. The model's structure (its nnx GraphDef) stays
outside the state: `train_model` rebuilds the model inside a step.

Mixed precision (`compute_dtype`, the pretrain and finetune configs): the state stays float32;
a step casts the master weights to the compute dtype inside the differentiated function, so
the gradients and the update are float32. Dropout draws its masks from a key the step makes
from (seed, step): no RNG state is kept in the state or its checkpoints.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P


COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(name):
  """The dtype a config's `compute_dtype` names; a clear error for any other name."""
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"compute_dtype = {name!r}; available: {sorted(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def train_model(graphdef, params, rest, dtype, dropout_key=None):
  """The model inside a step, its parameters cast to `dtype` (the caller casts the input
  alike and the output back to float32); its dropout layers draw their masks from
  `dropout_key`, one stream in call order. `copy`: fresh variables of this trace, which the
  model may update (batch statistics)."""
  params = jax.tree.map(lambda p: p.astype(dtype), params)
  model = nnx.merge(graphdef, params, rest, copy=True)
  if dropout_key is not None:
    stream = nnx.Rngs(dropout=dropout_key).dropout
    for _, module in nnx.iter_modules(model):
      if isinstance(module, nnx.Dropout):
        module.rngs = stream
  return model


def updated_rest(model):
  """The state's `rest` after a forward pass of a `train_model` (its dropout stream left
  out)."""
  return nnx.state(model, nnx.Not(nnx.Any(nnx.Param, nnx.RngState)))


def _state(params, rest, tx):
  """The fresh train state of a network's variables."""
  return {"step": jnp.zeros((), jnp.int32), "params": params, "rest": rest,
          "opt_state": tx.init(params)}


def _init(make_model, tx):
  _, params, rest = nnx.split(make_model(), nnx.Param, ...)
  return _state(params, rest, tx)


def abstract(make_model, tx, mesh):
  """(graphdef, abstract state with shardings). No array is allocated; the network is
  built once (under eval_shape).

  Pure data parallelism: every array is replicated over the mesh."""
  graphdef, params, rest = nnx.split(nnx.eval_shape(make_model), nnx.Param, ...)
  replicated = NamedSharding(mesh, P())
  shapes = jax.eval_shape(lambda p, r: _state(p, r, tx), params, rest)
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
