"""Readers for downstream data, in the layouts medical imaging users already have.

Segmentation: a Decathlon-style dataset.json (MONAI `load_decathlon_datalist`). Classification:
a CSV (image,label) or one folder per class. (The registry tasks' downloads are listed by their
recipes, rasd_jax.data.downloads.) Files: NIfTI (nibabel), a DICOM series folder or a
single-frame DICOM file (pydicom: compressed transfer syntaxes decoded, Modality LUT applied,
MONOCHROME1 inverted, the VOI LUT not applied, see `_dicom_pixels`), .npy, PNG/JPEG/TIFF/BMP/GIF
(Pillow).

Arrays are host NumPy arrays, channel-first as in transforms.py: image float32 (C, *spatial),
label int32 (*spatial), affine (4, 4) for NIfTI and DICOM, in RAS+ world millimetres (NIfTI's
convention; DICOM's LPS is converted), and the identity of size ndim + 1 for .npy, Pillow and
single-frame DICOM files. Bad input raises ValueError (FileNotFoundError for a missing file)
naming the file.

Every path may be local or on cloud storage (gs://..., through etils.epath): folders are listed
and lists read through epath, and a cloud file (or DICOM folder) is copied to a temporary
folder for the library that reads it.
"""

import collections
import contextlib
import csv
import io
import json
import math
import os
import tempfile

from etils import epath
import nibabel as nib
import numpy as np
import pydicom
import pydicom.pixels
from PIL import Image

from rasd_jax import workdir as workdir_lib

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
DICOM_SUFFIXES = (".dcm", ".dicom")
READABLE_SUFFIXES = PILLOW_SUFFIXES + DICOM_SUFFIXES + (".nii", ".nii.gz", ".npy")
_LISTED = 5  # how many offending paths an error message shows
_JSON_TYPES = {list: "list", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}

ClassificationData = collections.namedtuple("ClassificationData",
                                            ["entries", "classes", "class_to_index"])
ClassificationData.__doc__ = """entries: [{"image": path, "label": int or [0/1, ...]}];
classes: the sorted class list; class_to_index: class -> label index."""


def listdir(folder):
  """The sorted names in `folder`, local or on cloud storage, hidden ones (".x") left out;
  FileNotFoundError naming it when it is not a folder."""
  path = epath.Path(folder)
  if not path.is_dir():
    raise FileNotFoundError(f"folder {folder} does not exist")
  return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))


def few(paths):
  """The first few of `paths` (or names), "and N more" for the rest: what an error shows."""
  shown = ", ".join(str(p) for p in paths[:_LISTED])
  return shown + (f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else "")


def _check_exist(paths, source):
  missing = [p for p in paths if not epath.Path(p).exists()]
  if missing:
    raise FileNotFoundError(f"{len(missing)} file(s) listed in {source} do not exist: "
                            f"{few(missing)}")


def _as_list(paths):
  return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _entry_paths(entry):
  return _as_list(entry["image"]) + ([entry["label"]] if entry.get("label") is not None else [])


def read_json_object(path, what, expected="an object {...}"):
  """The JSON object (a dict) in the user's file `path`, local or on cloud storage, called
  `what` in errors: FileNotFoundError when it does not exist, ValueError naming it when it is
  not JSON or holds another value than `expected` (a list, a string, ...)."""
  try:
    data = json.loads(epath.Path(path).read_text(encoding="utf-8"))
  except FileNotFoundError:
    raise FileNotFoundError(f"{what} {path} does not exist") from None
  except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    raise ValueError(f"cannot parse {what} {path}: {e}") from e
  if not isinstance(data, dict):
    kind = _JSON_TYPES.get(type(data), type(data).__name__)
    raise ValueError(f"{what} {path} holds a JSON {kind}, expected {expected}")
  return data


# --- Segmentation lists -------------------------------------------------------------------------


def load_decathlon(json_path, section="training", base_dir=None, check_files=True):
  """Entries of `section` in a Decathlon-style dataset.json, as MONAI load_decathlon_datalist.

  Each entry is {"image": path or [paths] (modalities, stacked as channels), "label": path, ...};
  a plain string entry (the MSD "test" list) becomes {"image": path}. Relative paths are joined
  to `base_dir`, by default the json's folder; "image" and "label" come back absolute, other keys
  unchanged. With `check_files`, every listed file must exist.
  """
  json_path = workdir_lib.absolute(json_path)
  data = read_json_object(json_path, "dataset json", "an object with lists such as 'training'")
  if not isinstance(data.get(section), list):
    sections = sorted(k for k, v in data.items() if isinstance(v, list))
    raise ValueError(f"dataset json {json_path} has no list {section!r}; its lists are {sections}")
  base_dir = os.path.dirname(json_path) if base_dir is None else workdir_lib.absolute(base_dir)
  entries = []
  for i, item in enumerate(data[section]):
    entry = {"image": item} if isinstance(item, str) else item
    if not isinstance(entry, dict) or "image" not in entry:
      raise ValueError(f"{json_path}: {section}[{i}] should be a path or an object with an "
                       f"'image' key, got {item!r}")
    entry = dict(entry)
    for key in ("image", "label"):
      value = entry.get(key)
      if value is None:
        continue
      if not all(isinstance(p, str) for p in _as_list(value)):
        raise ValueError(f"{json_path}: {section}[{i}].{key} should be a path or a list of "
                         f"paths, got {value!r}")
      joined = [workdir_lib.join(base_dir, p) for p in _as_list(value)]
      entry[key] = joined[0] if isinstance(value, str) else joined
    entries.append(entry)
  if check_files:
    _check_exist([p for e in entries for p in _entry_paths(e)], json_path)
  return entries


# --- Files --------------------------------------------------------------------------------------


@contextlib.contextmanager
def reading(path, shape=None, dtype=None):
  """Any exception of the library reading `path` becomes a ValueError naming it; running out
  of memory says how much the array needs (NumPy's message, or the `shape` of `dtype` that
  the file's header declares)."""
  try:
    yield
  except MemoryError as e:
    need = str(e) or "its array does not fit"  # NumPy's says the shape and size
    if shape is not None:
      size = math.prod(shape) * np.dtype(dtype).itemsize
      need = f"its header declares a {shape} array of {np.dtype(dtype)}, {size / 2**30:,.1f} GiB"
    raise ValueError(f"not enough memory to read {path}: {need}") from None
  except Exception as e:
    raise ValueError(f"cannot read {path} (unreadable or corrupt): {type(e).__name__}: {e}") from e


def _load_nifti(path):
  with reading(path):
    image = nib.load(path)  # the header: the voxels are read below
    affine = image.affine
  with reading(path, image.shape, image.get_data_dtype()):
    data = np.asanyarray(image.dataobj)  # applies scl_slope / scl_inter
  if data.ndim not in (2, 3, 4):
    raise ValueError(f"{path} has {data.ndim} dimensions, expected 2, 3 or 4")
  # A 4D NIfTI (MSD BraTS) stores the modalities on its last axis.
  return (np.moveaxis(data, -1, 0) if data.ndim == 4 else data[None]), affine


def _load_npy(path):
  with reading(path):
    data = np.load(path, allow_pickle=False)
  if data.ndim not in (2, 3, 4):
    raise ValueError(f"{path} has {data.ndim} dimensions, expected 2 or 3 (one channel) or 4 "
                     "(channel-first 3D)")
  data = data if data.ndim == 4 else data[None]
  return data, np.eye(data.ndim)


def _load_pillow(path, as_label):
  with reading(path):
    with Image.open(path) as image:
      image.load()
      if image.mode in ("L", "I", "I;16", "F") or (as_label and image.mode in ("P", "1")):
        data = np.asarray(image)  # a palette mask's indices are its classes
      elif image.mode == "1":
        data = np.asarray(image.convert("L"))
      else:  # P, LA, RGBA, CMYK, ...: RGB, any alpha dropped
        data = np.asarray(image.convert("RGB"))
  if as_label:
    if data.ndim == 3:
      if not (data == data[..., :1]).all():
        raise ValueError(f"mask {path} is a colour image with differing channels; save the class "
                         "indices as a grayscale or palette image")
      data = data[..., 0]
    # A binary mask saved as 0/255 means classes 0/1.
    if data.max(initial=0) == 255 and np.isin(data, (0, 255)).all():
      data = data // 255
  data = np.moveaxis(data, -1, 0) if data.ndim == 3 else data[None]
  return data, np.eye(3)


def _dicom_pixels(ds, path):
  """The pixels of dataset `ds` (read from `path`) as float32: decoded (compressed transfer
  syntaxes through the pylibjpeg plugins), the Modality LUT applied (RescaleSlope /
  RescaleIntercept, or a Modality LUT Sequence), and MONOCHROME1 inverted within the range the
  stored bits can hold, so that bright means dense as in MONOCHROME2. The VOI LUT (window
  centre / width, VOI LUT Sequence) is a display choice and is not applied: a window clips
  the values outside it (a mammogram's skin line and dense tissue), and the tasks normalise
  intensity themselves (per-image min-max for X-ray)."""
  with reading(path):
    pixels = ds.pixel_array
    values = pydicom.pixels.apply_modality_lut(pixels, ds).astype(np.float32)
  if ds.get("PhotometricInterpretation", "MONOCHROME2") == "MONOCHROME1":
    bits = int(ds.get("BitsStored", pixels.dtype.itemsize * 8))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    bounds = pydicom.pixels.apply_modality_lut(np.array([low, high]), ds)
    values = np.float32(bounds.min() + bounds.max()) - values
  return values


def _load_dicom_file(path):
  """A single-frame DICOM image (a mammogram, a radiograph) as (1, rows, columns), values as
  `_dicom_pixels` makes them, like a Pillow image."""
  with reading(path):
    ds = pydicom.dcmread(path)
  pixels = _dicom_pixels(ds, path)
  if pixels.ndim != 2:
    raise ValueError(f"DICOM file {path}: expected a single-frame grayscale image, got pixels "
                     f"of shape {pixels.shape}")
  return pixels[None], np.eye(3)


def load_dicom_series(folder):
  """A DICOM series folder as (1, columns, rows, slices), the voxel axes of its NIfTI conversion
  (dcm2niix, nibabel): slices sorted along the slice normal, values as `_dicom_pixels` makes
  them, the affine from position, orientation and spacing, converted from LPS to RAS."""
  names = listdir(folder)
  if not names:
    raise ValueError(f"DICOM series folder {folder} is empty")
  slices = []
  for name in names:
    path = os.path.join(folder, name)
    with reading(path):
      ds = pydicom.dcmread(path)
    pixels = _dicom_pixels(ds, path)
    missing = [k for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")
               if k not in ds]
    if missing or pixels.ndim != 2:
      raise ValueError(f"DICOM file {path}: expected a single-frame grayscale slice with "
                       f"position, orientation and spacing (missing {missing}, pixels "
                       f"{pixels.shape})")
    slices.append((path, ds, pixels))
  first_path, first, first_pixels = slices[0]
  orientation = np.asarray(first.ImageOrientationPatient, float)
  for path, ds, pixels in slices[1:]:
    if (pixels.shape != first_pixels.shape or
        not np.allclose(np.asarray(ds.ImageOrientationPatient, float), orientation, atol=1e-4)):
      raise ValueError(f"DICOM file {path} differs from {first_path} in size or orientation: "
                       "not one series")
  row_cosine, column_cosine = orientation[:3], orientation[3:]
  normal = np.cross(row_cosine, column_cosine)
  positions = np.array([np.asarray(ds.ImagePositionPatient, float) for _, ds, _ in slices])
  order = np.argsort(positions @ normal, kind="stable")
  positions = positions[order]
  if len(slices) > 1:
    steps = np.diff(positions @ normal)
    if steps.min() < 1e-3 or np.ptp(steps) > 0.01 * steps.mean() + 1e-3:
      raise ValueError(f"DICOM series {folder} has duplicate or unevenly spaced slices "
                       f"(gaps {np.round(steps, 3).tolist()} mm along the normal)")
    slice_vector = (positions[-1] - positions[0]) / (len(slices) - 1)
  else:
    slice_vector = normal * float(first.get("SliceThickness", 1.0))
  row_spacing, column_spacing = (float(s) for s in first.PixelSpacing)
  lps = np.eye(4)
  lps[:3, 0] = row_cosine * column_spacing  # voxel axis 0: along a row (the column index)
  lps[:3, 1] = column_cosine * row_spacing  # voxel axis 1: down a column (the row index)
  lps[:3, 2] = slice_vector
  lps[:3, 3] = positions[0]
  volume = np.stack([slices[i][2].T for i in order], axis=-1)
  return volume[None], np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _load_remote(path, as_label):
  """_load of a file or DICOM folder on cloud storage, copied to a temporary folder first
  (nibabel and pydicom series read local files); errors name `path`."""
  with tempfile.TemporaryDirectory() as folder:
    local = os.path.join(folder, path.rstrip("/").rsplit("/", 1)[-1])
    source = epath.Path(path)
    if not source.exists():
      raise FileNotFoundError(f"{path} does not exist")
    if source.is_dir():
      os.makedirs(local)
      for item in source.iterdir():
        if item.is_file():
          epath.Path(local, item.name).write_bytes(item.read_bytes())
    else:
      epath.Path(local).write_bytes(source.read_bytes())
    try:
      return _load(local, as_label)
    except ValueError as e:
      raise ValueError(str(e).replace(local, path)) from e


def _load(path, as_label):
  """(channel-first array in the file's dtype, affine) of an image file or DICOM folder."""
  path = os.fspath(path)
  if workdir_lib.is_remote(path):
    return _load_remote(path, as_label)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist")
  lower = path.lower()
  if os.path.isdir(path):
    return load_dicom_series(path)
  if lower.endswith((".nii", ".nii.gz")):
    return _load_nifti(path)
  if lower.endswith(".npy"):
    return _load_npy(path)
  if lower.endswith(DICOM_SUFFIXES):
    return _load_dicom_file(path)
  if lower.endswith(PILLOW_SUFFIXES):
    return _load_pillow(path, as_label)
  raise ValueError(f"{path}: unknown format; readable are a DICOM series folder and "
                   f"{', '.join(READABLE_SUFFIXES)}")


def read_label(path, num_classes=None):
  """(int32 label map (*S), affine) of a mask file, checked as read_case checks it."""
  data, affine = _load(path, as_label=True)
  if data.shape[0] != 1:
    raise ValueError(f"label {path} has {data.shape[0]} channels, expected one")
  data = data[0]
  if not (np.issubdtype(data.dtype, np.integer) or data.dtype == bool):
    if not np.isfinite(data).all() or not np.array_equal(data, np.round(data)):
      raise ValueError(f"label {path} holds non-integer or NaN/Inf values")
  with reading(path):  # NumPy's MemoryError names no file
    label = data.astype(np.int32)
  if num_classes is not None:
    bad = np.unique(label[(label < 0) | (label >= num_classes)])
    if bad.size:
      raise ValueError(f"label {path} has values {bad[:10].tolist()} outside "
                       f"[0, {num_classes}) (num_classes {num_classes})")
  return label, affine


def _format(path):
  """(name, placed) of the readable file or folder `path`, as `_load` tells them apart: a
  DICOM series folder and a NIfTI file are placed in the world by their affine, the other
  formats are grids of pixels."""
  lower = os.fspath(path).lower()
  if epath.Path(path).is_dir():
    return "DICOM series", True
  if lower.endswith((".nii", ".nii.gz")):
    return "NIfTI", True
  return ("DICOM" if lower.endswith(DICOM_SUFFIXES) else lower.rsplit(".", 1)[1].upper()), False


def _check_same_grid(reference, what, path, shape, affine, affine_atol):
  """The file `path` (the `what`: image or label) lies on the grid of the image `reference`
  (path, spatial shape, affine): same kind of file, shape and affine."""
  ref_path, ref_shape, ref_affine = reference
  (name, placed), (ref_name, ref_placed) = _format(path), _format(ref_path)
  if placed != ref_placed:
    raise ValueError(f"image {ref_path} ({ref_name}) and {what} {path} ({name}) are different "
                     "formats: a case's image and label files must be the same kind, all placed "
                     "in the world by an affine (NIfTI, DICOM series) or all pixel grids (PNG, "
                     "JPEG, TIFF, BMP, GIF, .npy, a DICOM file)")
  if shape != ref_shape:
    raise ValueError(f"{path} has spatial shape {shape} but {ref_path} has {ref_shape}")
  if affine.shape != ref_affine.shape or not np.allclose(affine, ref_affine, rtol=0,
                                                         atol=affine_atol):
    raise ValueError(f"{path} and {ref_path} differ in affine beyond atol {affine_atol}: "
                     f"{np.round(affine, 4).tolist()} vs {np.round(ref_affine, 4).tolist()}")


def read_case(entry, num_classes=None, affine_atol=1e-3):
  """(image, label, affine) of one entry {"image": path or [paths], "label": path} (or a path).

  image: float32 (C, *spatial), the image files' channels stacked in order; label: int32
  (*spatial), None when the entry has none; affine: of the first image file. Checks, each a
  ValueError naming the file: unreadable or corrupt files, NaN/Inf image voxels, files differing
  in spatial shape or in affine by more than `affine_atol`, non-integer labels, and labels
  outside [0, num_classes) when `num_classes` is given. A 0/255 PNG/JPEG/TIFF mask reads as 0/1.
  """
  if isinstance(entry, (str, os.PathLike)):
    entry = {"image": entry}
  arrays, reference = [], None
  for path in _as_list(entry["image"]):
    data, affine = _load(path, as_label=False)
    with reading(path):  # NumPy's MemoryError names no file
      data = data.astype(np.float32, copy=False)
    bad = np.size(data) - np.count_nonzero(np.isfinite(data))
    if bad:
      raise ValueError(f"image {path} has {bad} NaN/Inf voxels")
    if reference is None:
      reference = (path, data.shape[1:], affine)
    else:
      _check_same_grid(reference, "image", path, data.shape[1:], affine, affine_atol)
    arrays.append(data)
  image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
  label = None
  if entry.get("label") is not None:
    label, affine = read_label(entry["label"], num_classes)
    _check_same_grid(reference, "label", entry["label"], label.shape, affine, affine_atol)
  return image, label, reference[2]


# --- Classification lists -----------------------------------------------------------------------


def load_classification_csv(csv_path, image_column="image", label_column="label"):
  """ClassificationData from a CSV with a header row: `image_column` holds image paths,
  relative to the CSV's folder. Labels: all integers -> kept as given, classes = 0..max;
  otherwise names -> classes sorted, label = index. A list of `label_column`s makes a
  multi-label set: each column 0/1, label = [0/1 per column], classes = the columns. Every
  listed file must exist.
  """
  csv_path = workdir_lib.absolute(csv_path)
  label_columns = [label_column] if isinstance(label_column, str) else list(label_column)
  if not epath.Path(csv_path).exists():
    raise FileNotFoundError(f"CSV {csv_path} does not exist")
  with reading(csv_path):
    with io.StringIO(epath.Path(csv_path).read_bytes().decode(), newline="") as f:
      reader = csv.DictReader(f, skipinitialspace=True)
      rows = list(reader)
      columns = reader.fieldnames or []
  missing = [c for c in dict.fromkeys([image_column] + label_columns) if c not in columns]
  if missing:
    raise ValueError(f"CSV {csv_path} lacks column(s) {missing}; its columns are {columns}")
  if not rows:
    raise ValueError(f"CSV {csv_path} has no rows")
  rows = list(enumerate(rows, 2))  # (line, row): line 1 is the header
  cells = {c: [(row[c] or "").strip() for _, row in rows]
           for c in dict.fromkeys([image_column] + label_columns)}
  for column, values in cells.items():
    if "" in values:
      raise ValueError(f"CSV {csv_path} line {rows[values.index('')][0]}: empty {column!r}")

  def ints(column):
    try:
      return [int(v) for v in cells[column]]
    except ValueError:
      return None

  if len(label_columns) == 1:
    values = ints(label_columns[0])
    if values is not None and min(values) >= 0:
      classes = list(range(max(values) + 1))
      class_to_index = {c: c for c in classes}
      labels = values
    else:
      classes = sorted(set(cells[label_columns[0]]))
      class_to_index = {c: i for i, c in enumerate(classes)}
      labels = [class_to_index[v] for v in cells[label_columns[0]]]
  else:
    columns_values = []
    for column in label_columns:
      values = ints(column)
      if values is None or not set(values) <= {0, 1}:
        raise ValueError(f"CSV {csv_path}: multi-label column {column!r} must hold 0 or 1")
      columns_values.append(values)
    classes = label_columns
    class_to_index = {c: i for i, c in enumerate(classes)}
    labels = [list(v) for v in zip(*columns_values)]
  base_dir = os.path.dirname(csv_path)
  entries = [{"image": workdir_lib.join(base_dir, path), "label": label}
             for path, label in zip(cells[image_column], labels)]
  _check_exist([e["image"] for e in entries], csv_path)
  return ClassificationData(entries, classes, class_to_index)


def load_class_folders(root):
  """ClassificationData from one folder per class, each holding readable files
  (READABLE_SUFFIXES); the class is the folder name, classes sorted; an empty class folder is
  an error."""
  root = workdir_lib.absolute(root)
  classes = [d for d in listdir(root) if epath.Path(workdir_lib.join(root, d)).is_dir()]
  if not classes:
    raise ValueError(f"{root} holds no class folders")
  entries = []
  for index, name in enumerate(classes):
    folder = workdir_lib.join(root, name)
    files = [f for f in listdir(folder) if f.lower().endswith(READABLE_SUFFIXES)]
    if not files:
      raise ValueError(f"class folder {folder} holds no readable file "
                       f"({', '.join(READABLE_SUFFIXES)})")
    entries += [{"image": workdir_lib.join(folder, f), "label": index} for f in files]
  return ClassificationData(entries, classes, {c: i for i, c in enumerate(classes)})
