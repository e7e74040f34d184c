"""Where a fine-tuning run's cases come from: the user's own lists (a Decathlon dataset.json,
a CSV, class folders), the task they make, and every case prepared on grain threads.

Registry tasks list their cases with tasks.load_splits; both kinds then go through
splits.make_splits and `prepare_cases`.
"""

import warnings

from etils import epath
import grain

from rasd_jax.data import pipeline
from rasd_jax.data import readers
from rasd_jax import workdir as workdir_lib

CUSTOM_SOURCES = ("json", "csv", "folders")


def check_custom_source(data):
  """The user's list that a finetune config's `data` names (the one of data.json, data.csv,
  data.folders given) exists: a ValueError naming it otherwise."""
  key = next(k for k in CUSTOM_SOURCES if data[k])
  path = data[key]
  workdir_lib.check_storage(path)
  found = epath.Path(path)
  if not (found.is_dir() if key == "folders" else found.is_file()):
    raise ValueError(f"data.{key} {path!r} does not exist")


def read_options(threads):
  """grain options: `threads` workers, as many elements made ahead."""
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(1, threads))


# What Decathlon dataset.json files write in "modality" -> a tasks.MODALITY_GROUPS key.
_MODALITY_NAMES = {
    "ct": "CT", "cta": "CT", "mr": "MRI", "mri": "MRI", "t1": "MRI", "t1w": "MRI", "t1ce": "MRI",
    "t1gd": "MRI", "t2": "MRI", "t2w": "MRI", "flair": "MRI", "adc": "MRI", "dwi": "MRI",
    "cinemri": "MRI", "pd": "MRI", "x-ray": "X-ray", "xray": "X-ray", "cxr": "X-ray",
    "cr": "X-ray", "dx": "X-ray", "mg": "mammography", "mammography": "mammography",
    "us": "ultrasound", "ultrasound": "ultrasound", "fundus": "fundus", "octa": "OCTA",
    "pathology": "pathology", "histology": "pathology", "h&e": "pathology",
}


def declared_modality(listed):
  """The modality a Decathlon dataset.json declares ({"0": "MRI", ...}, or a string): the
  group all its channels share, else "unknown"."""
  declared = listed.get("modality")
  names = list(declared.values()) if isinstance(declared, dict) else [declared]
  found = {_MODALITY_NAMES.get(str(n).strip().lower()) for n in names}
  return found.pop() if len(found) == 1 and None not in found else "unknown"


def custom_lists(*, json_path="", csv_path="", folders="", image_column="image",
                 label_column="label"):
  """(kind, {'train', 'val', 'test'} entries (None where not listed), class names, source,
  modality) of the user's data: exactly one of json_path (segmentation), csv_path
  (classification; several comma-separated label columns: multi-label) or folders (one per
  class). modality: what a dataset.json declares (`declared_modality`), else "unknown"."""
  if json_path:
    lists = {"train": readers.load_decathlon(json_path, "training")}
    listed = readers.read_json_object(json_path, "dataset json")
    for key, name in (("val", "validation"), ("test", "test")):
      has = isinstance(listed.get(name), list)
      lists[key] = readers.load_decathlon(json_path, name) if has else None
    names = listed.get("labels") if isinstance(listed.get("labels"), dict) else {}
    return "segmentation", lists, names, json_path, declared_modality(listed)
  if csv_path:
    columns = [c.strip() for c in label_column.split(",")]
    loaded = readers.load_classification_csv(csv_path, image_column,
                                              columns[0] if len(columns) == 1 else columns)
    kind = "classification" if len(columns) == 1 else "multilabel"
    source = csv_path
  else:
    loaded = readers.load_class_folders(folders)
    kind, source = "classification", folders
  return (kind, {"train": loaded.entries, "val": None, "test": None}, loaded.classes, source,
          "unknown")


def task_of_cases(kind, train, names, num_classes, roi, modality="unknown"):
  """The task of the user's data: spatial dims and channels from the first training case;
  segmentation classes from `num_classes`, else the json's label names, else the largest
  training label; `roi` one size per axis or one for all."""
  image, _, _ = readers.read_case(train[0]["image"])
  ndim, in_channels = image.ndim - 1, image.shape[0]
  if kind == "segmentation":
    count = num_classes or len(names) or max(2, 1 + max(
        int(readers.read_case(e)[1].max()) for e in train))
    classes = ("background",) + tuple(names.get(str(c), str(c)) for c in range(1, count))
  else:
    classes = tuple(str(c) for c in names)
  return pipeline.custom_task(kind, ndim, in_channels, classes, expand_roi(roi, ndim),
                              modality=modality)


def expand_roi(roi, ndim):
  """`roi` as one size per spatial axis (None keeps that axis whole)."""
  roi = tuple(None if r is None else int(r) for r in roi)
  if len(roi) == 1:
    roi = roi * ndim
  if len(roi) != ndim or any(r is not None and r < 1 for r in roi):
    raise ValueError(f"roi {roi}: give one size, or one per spatial axis ({ndim})")
  return roi


def prepare_cases(task, entries, threads, skip_bad=False, training=False):
  """pipeline.prepare of every entry, on `threads` grain threads, in order. `skip_bad`:
  a case that cannot be read is skipped with a warning instead of stopping; `training`:
  training cases (with the margin a random crop offset needs)."""
  def one(entry):
    try:
      return pipeline.prepare(task, entry, training=training)
    except (ValueError, OSError) as e:
      if not skip_bad:
        raise
      warnings.warn(f"skipping case {entry.get('id', entry['image'])}: {e}", stacklevel=2)
      return None

  dataset = grain.MapDataset.source(list(entries)).map(one)
  samples = [s for s in dataset.to_iter_dataset(read_options(threads), allow_nones=True)
             if s is not None]
  if entries and not samples:
    raise ValueError(f"none of the {len(entries)} cases could be read")
  return samples
