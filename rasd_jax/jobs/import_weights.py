"""Import a PyTorch checkpoint (MONAI SwinUNETR or UNet) into a workdir that load_model and
`--config.init` read: W/model.json (network "backbone"), W/checkpoints/0 ({'params',
'rest'}, Orbax) and W/import.txt (the file, what it holds, what loaded, what did not).

The file is read (interop.files: no PyTorch, nothing in it is run) and matched against the
network before the workdir is touched: a bad file, weights holding NaN or Inf, or a checkpoint
of another network, dimensionality or size, is one line and W stays as it was. The file and W
may be on cloud storage (gs://...; the file is read through etils.epath).
"""

import os

import jax
import numpy as np

from rasd_jax import models
from rasd_jax.data import readers
from rasd_jax.interop import files
from rasd_jax.interop import monai
from rasd_jax.training import checkpoint
from rasd_jax.training import transfer
from rasd_jax.training import weights
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

REPORT = "import.txt"


def _check(config):
  if not config.path:
    raise ValueError("--config.path=FILE: the checkpoint to import (.pth, .pt or .safetensors)")
  if not config.model:
    raise ValueError("--config.model=NAME: the network the weights are for, e.g. "
                     "swinunetr_base or unet_paper (rasd_jax.models)")
  if config.ndim not in (2, 3):
    raise ValueError(f"--config.ndim={config.ndim}: the network's dimensionality, 2 or 3")
  models.resolve(config.model)


def _check_finite(path, arrays):
  """Weights that hold NaN or Inf (saved by a run that diverged) would make fine-tuning
  diverge: a ValueError naming the first arrays that hold them."""
  bad = []
  for key, array in arrays.items():
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
      counts = ((np.isnan(array).sum(), "NaN"), (np.isinf(array).sum(), "Inf"))
      bad.append(f"{key}: " + " and ".join(f"{n} {what}" for n, what in counts if n))
  if bad:
    raise ValueError(f"{path}: {len(bad)} of its {len(arrays)} arrays hold NaN or Inf "
                     f"({readers.few(bad)}): broken weights (saved by a run that diverged?), "
                     "not imported")


def run(config, workdir):
  _check(config)
  arrays, info = files.read_state_dict(config.path)
  _check_finite(config.path, arrays)
  try:
    state, report = monai.to_rasd(arrays, config.model, config.ndim,
                                  config.in_channels or None, config.out_channels or None,
                                  seed=config.seed)
  except ValueError as e:
    raise ValueError(f"{config.path}: {e}") from None
  spec = dict(network="backbone", checkpoints="checkpoints",
              model=models.resolve(config.model), ndim=config.ndim,
              in_channels=report["in_channels"], out_channels=report["out_channels"])
  wrapper = f", the state dict under {info['wrapper']!r}" if info["wrapper"] else ""
  if info["ignored"]:
    wrapper += f", beside it (not read): {info['ignored']}"
  text = (f"{config.path} ({info['format']}{wrapper}): {report['source']}\n"
          f"into {spec['model']} ({spec['ndim']}D, {spec['in_channels']} -> "
          f"{spec['out_channels']} channels)\n{transfer.summary(report)}\n")

  workdir_lib.prepare(workdir, config)
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, spec["checkpoints"]))
  try:
    if checkpointer.latest_step() is None:  # A rerun finds the import done.
      checkpointer.save(0, state)
  finally:
    checkpointer.close()
  if jax.process_index() == 0:
    workdir_lib.write_file(os.path.join(workdir, REPORT), text)
  weights.write_spec(workdir, spec)  # Last: a workdir with model.json is complete.
  log(text.rstrip())
