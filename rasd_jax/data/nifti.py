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
  array's."""
  array = np.asarray(array)
  if header is not None:
    header = header.copy()
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(None, None)
  image = nib.Nifti1Image(array, np.eye(4) if affine is None else affine, header=header)
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
