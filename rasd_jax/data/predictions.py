"""A network's segmentation of a prepared sample, written back on its image file's grid.

What the predict job writes for each input, and the finetune job for each test case
(W/predictions/): `paths(folder, name, image_path, probabilities)` names the files,
`write(paths, task, geometry, labels, probs)` writes the label map (and probabilities),
mapped to the file's grid by pipeline.to_native, whole (a reader never sees a partial
file; the label map last, so it marks a case done):
- NIfTI for NIfTI and DICOM inputs (a NIfTI input's header fields kept, the affine the
  file's), PNG for Pillow images (a binary mask as 0/255), .npy for .npy;
- class indices, or the label file's own values where the task's label_map is one to one
  (pipeline.label_values);
- probabilities: NIfTI with the channels last, else a (C, *S) float32 .npy.
"""

import io
import os

import nibabel as nib
import numpy as np
from PIL import Image

from rasd_jax.data import nifti
from rasd_jax.data import pipeline
from rasd_jax.data import readers
from rasd_jax import workdir as workdir_lib

_NIFTI = (".nii.gz", ".nii")


def name_of(path):
  """The output name of an input: its file (or DICOM folder) name without the format's
  suffix."""
  base = os.path.basename(os.fspath(path).rstrip("/"))
  for suffix in _NIFTI + readers.READABLE_SUFFIXES:
    if base.lower().endswith(suffix):
      return base[:-len(suffix)]
  return base


def paths(folder, name, image_path, probabilities=False):
  """[label file] or [label file, probabilities file] of one input, in `folder`."""
  lower = os.fspath(image_path).lower()
  suffix = ".png" if lower.endswith(readers.PILLOW_SUFFIXES) else (
      ".npy" if lower.endswith(".npy") else ".nii.gz")
  base = os.path.join(folder, name)
  if not probabilities:
    return [base + suffix]
  return [base + suffix, base + ("_probabilities.nii.gz" if suffix == ".nii.gz"
                                 else "_probabilities.npy")]


def _npy(path, array):
  data = io.BytesIO()
  np.save(data, array)
  workdir_lib.write_file(path, data.getvalue())


def write(files, task, geometry, labels, probs=None):
  """Writes `labels` (*S) and, with a second path in `files`, `probs` (C, *S), both on the
  grid of the image file (pipeline.to_native), to `files`; `geometry`: the prepared
  sample's."""
  if len(files) > 1:
    if files[1].endswith(".nii.gz"):
      nifti.save(files[1], np.moveaxis(probs, 0, -1).astype(np.float32), geometry["affine"])
    else:
      _npy(files[1], probs.astype(np.float32))
  labels = pipeline.label_values(task)[labels]
  path = files[0]
  if path.endswith(".png"):
    labels = labels * 255 if task.num_classes == 2 else labels
    png = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8 if labels.max() < 256 else np.uint16)).save(
        png, format="PNG")
    workdir_lib.write_file(path, png.getvalue())
  elif path.endswith(".npy"):
    _npy(path, labels.astype(np.int32))
  else:
    source = geometry["path"]
    header = (nib.load(source).header if source.lower().endswith(_NIFTI)
              and not workdir_lib.is_remote(source) else None)
    nifti.save(path, labels.astype(np.uint8 if labels.max() < 256 else np.int16),
               geometry["affine"], header=header)
