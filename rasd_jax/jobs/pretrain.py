"""Pre-train a dense network on synthetic data with the prototype loss (METHOD.md 3-5).

Writes workdir/checkpoints/<step> (Orbax; the last `keep_checkpoints`), metrics.jsonl,
tensorboard/. Started again on the same workdir it resumes from the last checkpoint; the
batch of step s depends only on (seed, s), so the resumed run sees the same data.
"""

import json
import os
import time

from flax import nnx
import jax
import ml_collections

from rasd_jax import models
from rasd_jax import synthesis
from rasd_jax.jobs import workdir as workdir_lib
from rasd_jax.jobs.workdir import log
from rasd_jax.training import checkpoint
from rasd_jax.training import loop
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import metrics as metrics_lib
from rasd_jax.training import optimizer
from rasd_jax.training import pretrain
from rasd_jax.training import state as state_lib

# What may change when a run is resumed (e.g. to train longer); anything else is refused.
MAY_CHANGE = ("total_steps", "checkpoint_every", "keep_checkpoints", "log_every")


def _check(config):
  synthesis.make_spec(config.synthesis)
  for key in ("total_steps", "batch_size", "checkpoint_every", "log_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  models.resolve(config.model)


def model_factory(config):
  """`() -> network` with the initial weights of `config.seed`: what training starts from."""
  ndim, channels = config.synthesis.ndim, config.synthesis.channels
  return lambda: models.create(config.model, ndim, channels, config.out_channels,
                               rngs=models.init_rngs(config.seed))


def _setup(config, mesh):
  """(spec, graphdef, abstract state, model factory, optax tx, schedule) of a config."""
  spec = synthesis.make_spec(config.synthesis)
  tx, schedule = optimizer.make(config.optim, config.total_steps)
  make_model = model_factory(config)
  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  return spec, graphdef, abstract, make_model, tx, schedule


def load_model(path):
  """(model, config, step): the network of a pre-training workdir's latest checkpoint, or of
  one checkpoint given as its folder, W/checkpoints/STEP."""
  step = None
  parent, name = os.path.split(os.path.normpath(path))
  if name.isdigit() and os.path.basename(parent) == "checkpoints":
    workdir, step = os.path.dirname(parent), int(name)
  else:
    workdir = path
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{workdir!r} is not a pre-training workdir: no config.json")
  with open(path) as f:
    saved = json.load(f)
  config = ml_collections.ConfigDict(saved)
  # JSON stored the synthesis ranges (tuples) as lists.
  config.synthesis = ml_collections.ConfigDict(
      {k: tuple(v) if isinstance(v, list) else v for k, v in saved["synthesis"].items()})
  _, graphdef, abstract, _, _, _ = _setup(config, mesh_lib.make_mesh())
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
  try:
    latest = checkpointer.latest_step()
    if latest is None:
      raise ValueError(f"{workdir!r} holds no checkpoint yet")
    step = latest if step is None else step
    state = checkpointer.restore(abstract, step)
  finally:
    checkpointer.close()
  return nnx.merge(graphdef, state["params"], state["rest"]), config, step


def run(config, workdir):
  _check(config)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  mesh = mesh_lib.make_mesh()
  spec, graphdef, abstract, make_model, tx, schedule = _setup(config, mesh)
  log(f"model {config.model} ({spec.ndim}D): "
      f"{models.count_params(config.model, spec.ndim, spec.channels, config.out_channels):,}"
      f" parameters; {mesh.shape['data']} devices, {jax.process_count()} processes")

  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                         keep=config.keep_checkpoints)
  try:
    first_step, state = checkpointer.start(
        abstract, lambda: state_lib.create(make_model, tx, abstract))
    if first_step >= config.total_steps:
      log(f"nothing to do: step {first_step} >= total_steps {config.total_steps}")
      return
    step = pretrain.make_step(graphdef, abstract, spec, mesh, seed=config.seed,
                              batch_size=config.batch_size, tx=tx, schedule=schedule,
                              loss=config.loss, compute_dtype=config.compute_dtype)
    start = time.perf_counter()
    compiled = step.lower(abstract).compile()
    memory = compiled.memory_analysis()
    temp = f", {memory.temp_size_in_bytes / 2**20:.0f} MiB temporaries" if memory else ""
    log(f"compiled the train step in {time.perf_counter() - start:.1f} s{temp}")

    writer = metrics_lib.MetricsWriter(workdir, tensorboard=True,
                                       resume_step=first_step)
    try:
      loop.run(compiled, state, first_step=first_step, total_steps=config.total_steps,
               batch_size=config.batch_size, checkpointer=checkpointer, writer=writer,
               log_every=config.log_every, checkpoint_every=config.checkpoint_every,
               desc="pretrain")
    finally:
      writer.close()
  finally:
    checkpointer.close()
