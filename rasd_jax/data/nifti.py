"""NIfTI files through nibabel."""

import os

import nibabel as nib
import numpy as np


def save(path, array, affine=None):
  """Writes `array` to `path` (.nii or .nii.gz) atomically: a reader, or a job killed
  mid-write, never sees a partial file under the final name."""
  affine = np.eye(4) if affine is None else affine
  tmp = path.replace(".nii", ".partial.nii")
  nib.save(nib.Nifti1Image(np.asarray(array), affine), tmp)
  os.replace(tmp, path)
