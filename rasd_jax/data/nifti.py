"""NIfTI files through nibabel."""

import os
import tempfile

from etils import epath
import nibabel as nib
import numpy as np

from rasd_jax import workdir as workdir_lib


def save(path, array, affine=None, header=None):
  """Writes `array` to `path` (.nii or .nii.gz; local or cloud storage, gs://...) atomically:
  a reader, or a job killed mid-write, never sees a partial file under the final name.
  nibabel writes local files only, so a cloud file is written to a temporary folder first
  and then uploaded whole (workdir.write_file). `header`: another file's, whose fields
  (orientation codes, units, description) the file keeps; the shape and data type are the
  array's. `affine`: 4x4, or a 2D image's 3x3 (e.g. a single-frame DICOM file's pixel grid),
  placed on the first two axes."""
  array = np.asarray(array)
  if header is not None:
    header = header.copy()
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(None, None)
  if affine is None:
    affine = np.eye(4)
  elif np.shape(affine) == (3, 3):
    affine = np.insert(np.insert(np.asarray(affine, float), 2, 0.0, axis=0), 2, 0.0, axis=1)
    affine[2, 2] = 1.0
  image = nib.Nifti1Image(array, affine, header=header)
  path = os.fspath(path)
  if workdir_lib.is_remote(path):
    with tempfile.TemporaryDirectory() as folder:
      local = os.path.join(folder, os.path.basename(path))
      nib.save(image, local)
      workdir_lib.write_file(path, epath.Path(local).read_bytes())
    return
  tmp = path.replace(".nii", ".partial.nii")
  nib.save(image, tmp)
  os.replace(tmp, path)
