"""A trained network out of any workdir: `load_model(path)` (exported as rasd_jax.load_model).

Every job that leaves weights behind writes W/model.json, the spec of the network:
- "network": "backbone" (pre-training: `models.create(model, ndim, in_channels,
  out_channels)`) or "downstream" (fine-tuning: `models.create_downstream(...)` with
  num_outputs, head, pooled, features, dropout (0 where a spec lacks it); plus output and
  classes, for the user);
- "checkpoints": the folder under W whose Orbax checkpoints hold the weights (pre-training:
  checkpoints/, the latest step; fine-tuning: best/, the best validation step).

Only the weights and batch statistics ({'params', 'rest'} of the train state) are read: a
partial restore, so a finished run's optimiser moments are never loaded.
The arrays are replicated over every device of every process the caller has.
"""

import json
import os

from etils import epath
from flax import nnx
import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rasd_jax import models
from rasd_jax.training import checkpoint
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import selection
from rasd_jax import workdir as workdir_lib

SPEC_FILE = workdir_lib.SPEC
NETWORKS = ("backbone", "downstream")


def write_spec(workdir, spec):
  """W/model.json (process 0); `spec` as the module docstring says."""
  if spec["network"] not in NETWORKS:
    raise ValueError(f"network {spec['network']!r}: one of {NETWORKS}")
  if jax.process_index() == 0:
    workdir_lib.write_file(epath.Path(workdir) / SPEC_FILE, json.dumps(spec, indent=2))


def split_path(path):
  """(workdir, step or None): `path` is a workdir or one of its checkpoint folders
  (W/checkpoints/STEP), local or on cloud storage."""
  parent, name = os.path.split(workdir_lib.join(path, "."))
  if name.isdigit() and os.path.basename(parent) == "checkpoints":
    return os.path.dirname(parent), int(name)
  return path, None


def read_spec(path):
  """W/model.json of the workdir `path` names, with "step": the checkpoint load_model
  reads (the one `path` names, else the latest of the spec's folder)."""
  workdir, step = split_path(path)
  workdir_lib.check_storage(workdir)
  spec_path = epath.Path(workdir) / SPEC_FILE
  if not spec_path.exists():
    raise ValueError(f"{path!r} is not a workdir with trained weights: no {SPEC_FILE} in "
                     f"{workdir!r}")
  spec = json.loads(spec_path.read_text())
  if not (epath.Path(workdir) / spec["checkpoints"]).is_dir():
    raise ValueError(f"{workdir!r} holds no weights yet (no {spec['checkpoints']}/)")
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, spec["checkpoints"]))
  try:
    latest = checkpointer.latest_step()
  finally:
    checkpointer.close()
  if latest is None:
    raise ValueError(f"{workdir!r} holds no weights yet ({spec['checkpoints']}/ is empty)")
  return dict(spec, step=latest if step is None else step)


def downstream_spec(model, ndim, in_channels, out_channels, num_outputs, *, head="add",
                    pooled=False, dropout=0.0, output="softmax", classes=None):
  """The spec of a fine-tuned network (its weights in W/best, the best validation step)."""
  return dict(network="downstream", checkpoints=selection.BEST_DIR, model=model, ndim=ndim,
              in_channels=in_channels, out_channels=out_channels, num_outputs=num_outputs,
              head=head, pooled=pooled, dropout=dropout, output=output, classes=classes)


def build(spec, seed=0):
  """The network of a spec, initialised with `seed` (a fresh start, or the shape to load)."""
  rngs = models.init_rngs(seed)
  if spec["network"] == "backbone":
    return models.create(spec["model"], spec["ndim"], spec["in_channels"],
                         spec["out_channels"], rngs=rngs)
  return models.create_downstream(
      spec["model"], spec["ndim"], spec["in_channels"], spec["num_outputs"],
      head=spec["head"], pooled=spec["pooled"], features=spec["out_channels"],
      dropout=spec.get("dropout", 0.0), rngs=rngs)


def load_model(path):
  """The trained network of a workdir (or of W/checkpoints/STEP), in eval mode."""
  spec = read_spec(path)
  graphdef, params, rest = nnx.split(nnx.eval_shape(lambda: build(spec)), nnx.Param, ...)
  replicated = NamedSharding(mesh_lib.make_mesh(), P())
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
      {"params": params, "rest": rest})
  workdir, _ = split_path(path)
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, spec["checkpoints"]))
  try:
    weights = checkpointer.restore_subset(abstract, spec["step"])
  finally:
    checkpointer.close()
  model = nnx.merge(graphdef, weights["params"], weights["rest"])
  model.eval()
  return model
