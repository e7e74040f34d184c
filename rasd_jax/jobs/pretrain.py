"""The pretrain job: pre-train a dense network on synthetic data with the prototype loss
(README: "The generator", "The disentanglement loss", "Networks"); experiments/pretrain2d.py
and pretrain3d.py document its config.

`run(config, workdir)` trains with training.pretrain.make_step: W/checkpoints/<step> (Orbax;
the last `keep_checkpoints`), metrics.jsonl, tensorboard/, and model.json (the network's
spec: rasd_jax.load_model(workdir) gives it back with the latest checkpoint's weights).
Started again on the same workdir it resumes from the last checkpoint.

`init` (a workdir of weights, the default "scratch": the weights of `seed`) continues
pre-training from a network of the same architecture: its weights and batch statistics are
the run's step 0, with a fresh optimiser, saved at once as W/checkpoints/0; a resume loads
its own checkpoints and never reads `init` again.
"""

import os
import time

from etils import epath
import jax

from rasd_jax import models
from rasd_jax import synthesis
from rasd_jax.training import checkpoint
from rasd_jax.training import loop
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import metrics as metrics_lib
from rasd_jax.training import optimizer
from rasd_jax.training import state as state_lib
from rasd_jax.training import transfer
from rasd_jax.training import weights
from rasd_jax.training.pretrain import make_step
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log


# What may change when a run is resumed (e.g. to train longer); anything else is refused.
# Not `init`: config.json says where the run's weights started, and a resume never reads it.
MAY_CHANGE = ("total_steps", "checkpoint_every", "keep_checkpoints", "log_every", "remat",
              "attention") + optimizer.MAY_CHANGE


def _check(config):
  spec = synthesis.make_spec(config.synthesis)
  for key in ("total_steps", "batch_size", "checkpoint_every", "log_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  models.resolve(config.model)
  optimizer.make(config.optim, config.total_steps)
  # The network takes the samples' size (each network: multiples of its downsampling),
  # checked on shapes alone before the workdir is touched.
  sample = jax.ShapeDtypeStruct((1,) + (spec.size,) * spec.ndim + (spec.channels,), "float32")
  jax.eval_shape(lambda x: model_factory(config)()(x), sample)


def network_spec(config):
  """The spec (weights.write_spec) of the network `config` trains."""
  return dict(network="backbone", checkpoints="checkpoints", model=models.resolve(config.model),
              ndim=config.synthesis.ndim, in_channels=config.synthesis.channels,
              out_channels=config.out_channels)


def _network_text(spec):
  return (f"{spec['model']} ({spec['ndim']}D, {spec['in_channels']} -> "
          f"{spec['out_channels']} channels)")


def _resumes(workdir):
  """Whether `workdir` holds a checkpoint to resume from (read, nothing created)."""
  folder = os.path.join(workdir, "checkpoints")
  if not epath.Path(folder).is_dir():
    return False
  checkpointer = checkpoint.Checkpointer(folder)
  try:
    return checkpointer.latest_step() is not None
  finally:
    checkpointer.close()


def pretrained_network(config, workdir):
  """The network `config.init` holds (a fine-tuning workdir's backbone), which must be the
  one `config` trains; None for a run from scratch or one that resumes its own checkpoint
  (which holds the init's weights as its step 0). Read before anything is written."""
  if config.init == "scratch" or _resumes(workdir):
    return None
  workdir_lib.check_storage(config.init)
  if not epath.Path(config.init).is_dir():
    raise ValueError(f"init {config.init!r} does not exist: 'scratch', or a workdir of "
                     "weights (pretrain, finetune or import_weights) or one of its checkpoint "
                     "folders (W/checkpoints/STEP)")
  found, wanted = weights.read_spec(config.init), network_spec(config)
  if any(found[k] != wanted[k] for k in ("model", "ndim", "in_channels", "out_channels")):
    backbone = "the backbone of a fine-tuned network, " * (found["network"] == "downstream")
    raise ValueError(
        f"init {config.init!r} holds {backbone}{_network_text(found)}; this run trains "
        f"{_network_text(wanted)}: continued pre-training needs the same "
        "network (set --config.model, synthesis.ndim, synthesis.channels or out_channels "
        "to match, or fine-tune it instead)")
  network = weights.load_model(config.init)
  log(f"initialising from {config.init} (step {found['step']}, {found['network']} "
      f"{found['model']})")
  return network.backbone if found["network"] == "downstream" else network


def model_factory(config):
  """`() -> network` with the initial weights of `config.seed`: what training starts from."""
  ndim, channels = config.synthesis.ndim, config.synthesis.channels
  return lambda: models.create(config.model, ndim, channels, config.out_channels,
                               rngs=models.init_rngs(config.seed), remat=config.remat,
                               attention=config.attention)


def run(config, workdir):
  """The pretrain job: trains `config` in `workdir`, resuming it."""
  _check(config)
  pretrained = pretrained_network(config, workdir)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  mesh = mesh_lib.make_mesh(config.batch_size)
  spec = synthesis.make_spec(config.synthesis)
  tx, schedule = optimizer.make(config.optim, config.total_steps)
  make_model = model_factory(config)
  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  weights.write_spec(workdir, network_spec(config))
  log(f"model {config.model} ({spec.ndim}D): "
      f"{models.size(abstract['params']):,}"
      f" parameters; {mesh_lib.layout_text(mesh, config.batch_size)}")

  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                         keep=config.keep_checkpoints)
  try:
    first_step, state = checkpointer.start(
        abstract, lambda: state_lib.create(make_model, tx, abstract))
    if pretrained is not None:  # A fresh start (pretrained_network): step 0 is W's weights.
      state, report = transfer.copy_into_state(graphdef, state, pretrained)
      log(transfer.summary(report))
      checkpointer.save(0, state)
    if first_step >= config.total_steps:
      log(f"nothing to do: step {first_step} >= total_steps {config.total_steps}")
      return
    step = make_step(graphdef, abstract, spec, mesh, seed=config.seed,
                     batch_size=config.batch_size, tx=tx, schedule=schedule, loss=config.loss,
                     compute_dtype=config.compute_dtype)
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
