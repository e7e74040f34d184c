"""Export synthetic samples: NIfTI image/label pairs, a montage and the config.

Sample n is sample n of step 0 (pure function of seed and n), so a restarted job skips
the samples already on disk and writes exactly what an uninterrupted one would. The workdir
may be on cloud storage (gs://...): files are written and listed through etils.epath.
"""

import io
import os
import time

from etils import epath
import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from rasd_jax.data import nifti
from rasd_jax import synthesis
from rasd_jax.synthesis import montage
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import metrics as metrics_lib
from rasd_jax import workdir as workdir_lib


def _to_nifti_layout(image, ndim):
  """(*spatial, C) -> NIfTI axes: 2D images get a singleton z before the channels."""
  if image.shape[-1] == 1:
    return image[..., 0]
  return image[:, :, None] if ndim == 2 else image


def _paths(folder, n, names):
  return {name: os.path.join(folder, f"{n:04d}_{name}.nii.gz") for name in names}


def run(config, workdir):
  spec = synthesis.make_spec(config.synthesis)
  if config.num < 1:
    raise ValueError(f"num = {config.num}: the number of samples must be >= 1")
  workdir_lib.prepare(workdir, config, may_change=("num",))
  folder = os.path.join(workdir, "samples")
  workdir_lib.makedirs(folder)
  names = ["image", "label"] + (["image2"] if spec.paired_views else [])

  mesh = mesh_lib.make_mesh()
  devices = mesh.shape["data"]
  batch = -(-config.batch_size // devices) * devices  # A multiple of the device count.
  generate = synthesis.make_generator(spec, mesh, batch)
  metrics = metrics_lib.MetricsWriter(workdir)
  write = jax.process_index() == 0

  first_batch = None
  samples = epath.Path(folder)
  done = {p.name for p in samples.iterdir()} if samples.exists() else set()  # one listing
  missing = np.asarray([not all(os.path.basename(p) in done
                                 for n in range(b * batch, min((b + 1) * batch, config.num))
                                 for p in _paths(folder, n, names).values())
                         for b in range(-(-config.num // batch))])
  # Process 0's view: the others may list the folder after it has begun writing, and every
  # process must generate the same batches.
  todo = np.flatnonzero(multihost_utils.broadcast_one_to_all(missing)).tolist()
  for b in tqdm.tqdm(todo, desc="synthesize", unit="batch", disable=not write):
    start = time.perf_counter()
    # Every process generates its shards; process 0 gathers and writes them.
    out = multihost_utils.process_allgather(generate(config.seed, 0, b * batch), tiled=True)
    seconds = time.perf_counter() - start
    if b == 0:
      first_batch = out
    for i in range(batch):
      n = b * batch + i
      if n >= config.num or not write:
        continue
      paths = _paths(folder, n, names)
      for name in names:
        array = out[name][i]
        array = array.astype(np.uint8) if name == "label" else _to_nifti_layout(array, spec.ndim)
        nifti.save(paths[name], array)
    metrics.write(b, samples=min(batch, config.num - b * batch), generate_s=round(seconds, 4),
                  samples_per_s=round(batch / seconds, 3))

  if first_batch is None:  # Everything was on disk already; the montage may be missing.
    first_batch = multihost_utils.process_allgather(generate(config.seed, 0, 0), tiled=True)
  if write:
    shown = min(config.num, batch, config.montage_samples)
    png = io.BytesIO()
    montage.montage(first_batch["image"][:shown, ..., 0], first_batch["label"][:shown],
                    spec.num_labels).save(png, format="PNG")
    workdir_lib.write_file(os.path.join(workdir, "montage.png"), png.getvalue())
