"""Listing a registry task's cases from its dataset folder, as `task.files` describes it.

`task.files` holds paths relative to the data dir. "train", "val", "test" name each split's
list (a split that is absent has no official labelled list: splits.make_splits holds cases
out). Keys about the whole task: "folds": how many official folds `fold` picks from (default 1);
"cv_folds": k, where the protocol is k-fold cross-validation on data without official folds or
test list (make_splits holds fold `fold` out as the test split). Other keys are shared by every
split. Per layout:
- decathlon_json, image_mask_json: "json" the list file; a split is a section name of it.
  "fold_key": the entry key holding its fold (val = the entries of fold `fold`, train = the
  others); "val_tail": n (val = the last n entries of train). "image", "label": the names the
  JSON lists, {n} the case number (documentation and test fixtures; the JSON is what counts).
- image_mask_folders: a split is {"images": folder, "masks": folder, "pattern": (image name,
  mask name) with {id} the case id and * any text, "ids": optional {"file": a .txt (one id a
  line) or .json list file, "key": its JSON key, "format": the id's format}} or a list of
  those; folders ending in /* pair their subfolders of the same name (one per patient: the
  subfolder names the case's group).
- csv, npy_csv: a split is {"csv": file ({fold} the fold), "image": column, template over
  columns such as "p{patient_id}-s{scan_id}.npy", or a list of those (one file per channel or
  plane), "label": column (multilabel: one 0/1 column per class), "label_names": what the
  label column holds ("classes": the class names; {text: class name}; absent: the class index),
  "fieldnames": the columns of a CSV without a header row, "delimiter", "where": {column:
  value} rows kept} or a list of those (concatenated).
- class_folders: a split is the folder holding one folder per class, named by the class names
  or by "label_names" {folder: class name}.
Every layout: "group", a regular expression with one (group), searched in each case's first
image path relative to the data dir (with /): the text it captures is the case's patient, so
that cases of one patient never land in two splits (splits.make_splits). A path it does not
match is an error. Shared, or per split where a split is a dict.

The data dir may be local or on cloud storage (gs://...): folders are listed and list files
read through etils.epath (readers.listdir), and readers copies each cloud file it reads.
"""

import json
import os
import re

from etils import epath

from rasd_jax import workdir as workdir_lib
from rasd_jax.data import readers
from rasd_jax.data.tasks import registry
from rasd_jax.data.tasks.schema import SPLITS, split_specs


def load_splits(task, data_dir, fold=0):
  """{"train": entries, "val": entries or None, "test": entries or None} of `task`'s data in
  `data_dir`, laid out as `task.files` says (None: no official labelled list of that split).

  Each entry is {"image": absolute path, or a list of them (channels, MRI planes), "label":
  segmentation: the mask's absolute path; classification: the class index; multilabel: [0/1 per
  class]; regression: a float, "id": the case id, and "group": the patient, where the layout
  knows it}. `fold` (0 .. task.folds - 1) picks an official fold, where the task has folds; a
  cross-validated task's lists do not depend on it. Errors name the file at fault:
  FileNotFoundError for a missing data dir, list file or listed file (with the layout the task
  expects), ValueError for a label that is not a class or a path without its group.
  """
  task = registry.get(task) if isinstance(task, str) else task
  if task.files is None:
    raise ValueError(f"task {task.name!r} has no files layout to list its cases from")
  data_dir = workdir_lib.absolute(data_dir)
  expects = f"task {task.name!r} expects the {task.layout} layout: {task.layout_notes}"
  if not 0 <= fold < task.folds:
    has = f"{task.folds} folds (0-{task.folds - 1})" if task.folds > 1 else "no folds (only 0)"
    raise ValueError(f"fold {fold} of task {task.name!r}: it has {has}")
  if not epath.Path(data_dir).is_dir():
    raise FileNotFoundError(f"data dir {data_dir} does not exist; {expects}")
  try:
    splits = _LISTERS[task.layout](task, data_dir, fold)
  except FileNotFoundError as e:
    raise FileNotFoundError(f"{e}; {expects}") from e
  return {split: None if entries is None else _unique([_common(entry) for entry in entries])
          for split, entries in splits.items()}


def _unique(entries):
  """Entries listed twice (HVDROPDB-OD's validation list) kept once, in order."""
  seen, kept = set(), []
  for entry in entries:
    key = json.dumps([entry["image"], entry["label"]])
    if key not in seen:
      seen.add(key)
      kept.append(entry)
  return kept


def _common(entry):
  first = _first_image(entry)
  name = os.path.basename(first)
  case = name[:-7] if name.lower().endswith(".nii.gz") else os.path.splitext(name)[0]
  group = {"group": entry["group"]} if "group" in entry else {}
  return {"image": entry["image"], "label": entry["label"], "id": case, **group}


def _first_image(entry):
  return entry["image"] if isinstance(entry["image"], str) else entry["image"][0]


def _grouped(task, data_dir, entries, pattern):
  """`entries` with "group": what `pattern` captures in each one's image path (no pattern:
  the entries as they are)."""
  if pattern is None:
    return entries
  grouped = []
  for entry in entries:
    path = os.path.relpath(_first_image(entry), data_dir).replace(os.sep, "/")
    match = re.search(pattern, path)
    if match is None:
      raise ValueError(f"task {task.name!r}: {path} does not match its group pattern "
                       f"{pattern!r} (the patient of a case); {task.layout_notes}")
    grouped.append({**entry, "group": match.group(1)})
  return grouped


def _json_splits(task, data_dir, fold):
  files = task.files
  path = os.path.join(data_dir, files["json"])
  splits = {split: readers.load_decathlon(path, files[split], base_dir=data_dir)
            if split in files else None for split in SPLITS}
  train = splits["train"]
  if "fold_key" in files:
    key = files["fold_key"]
    if any(key not in entry for entry in train):
      raise ValueError(f"{path}: an entry of {files['train']!r} has no {key!r} (its fold)")
    splits["train"] = [e for e in train if e[key] != fold]
    splits["val"] = [e for e in train if e[key] == fold]
  if "val_tail" in files:
    splits["train"], splits["val"] = train[:-files["val_tail"]], train[-files["val_tail"]:]
  return {split: None if entries is None else
          _grouped(task, data_dir, entries, files.get("group"))
          for split, entries in splits.items()}


def _folder_pairs(data_dir, spec):
  """Entries of one image_mask_folders split spec."""
  images, masks = (os.path.join(data_dir, spec[k]) for k in ("images", "masks"))
  if images.endswith("/*"):  # one subfolder per patient, named alike under both folders
    parent = images[:-2]
    names = [d for d in readers.listdir(parent) if epath.Path(parent, d).is_dir()]
    entries = [{**e, "group": d} for d in names for e in readers.pairs_from_folders(
        os.path.join(parent, d), os.path.join(masks[:-2], d), names=spec["pattern"])]
  else:
    entries = readers.pairs_from_folders(images, masks, names=spec["pattern"])
  if "ids" not in spec:
    return entries
  ids = spec["ids"]
  path = os.path.join(data_dir, ids["file"])
  if not epath.Path(path).exists():
    raise FileNotFoundError(f"case list {path} does not exist")
  text = epath.Path(path).read_text()
  listed = json.loads(text)[ids["key"]] if path.endswith(".json") else text.split()
  listed = [ids.get("format", "{}").format(case) for case in listed]
  by_id = {e["id"]: e for e in entries}
  missing = [case for case in listed if case not in by_id]
  if missing:
    raise FileNotFoundError(f"{len(missing)} case(s) listed in {path} have no image "
                            f"{spec['pattern'][0]} in {images}: {missing[:5]}")
  return [by_id[case] for case in listed]


def _label_names(task, spec, default=None):
  names = spec.get("label_names", default)
  if names == "classes":
    return {c: i for i, c in enumerate(task.classes)}
  return None if names is None else {k: task.classes.index(v) for k, v in names.items()}


def _csv_entries(task, data_dir, spec, fold):
  regression = task.kind == "regression"
  return readers.load_classification_csv(
      os.path.join(data_dir, spec["csv"].format(fold=fold)), spec["image"], spec["label"],
      base_dir=data_dir, classes=None if regression else task.classes,
      label_names=_label_names(task, spec), fieldnames=spec.get("fieldnames"),
      delimiter=spec.get("delimiter", ","), where=spec.get("where"),
      regression=regression).entries


def _spec_splits(task, data_dir, fold):
  def entries(spec):
    if task.layout == "image_mask_folders":
      listed = _folder_pairs(data_dir, spec)
    else:
      listed = _csv_entries(task, data_dir, spec, fold)
    return _grouped(task, data_dir, listed, spec.get("group"))

  return {split: [e for spec in split_specs(task.files, split) for e in entries(spec)]
          if split in task.files else None for split in SPLITS}


def _class_folder_splits(task, data_dir, fold):
  del fold  # class folders have no folds
  names = _label_names(task, task.files, default="classes")

  def entries(folder):
    listed = readers.load_class_folders(os.path.join(data_dir, folder), task.classes, names)
    return _grouped(task, data_dir, listed.entries, task.files.get("group"))

  return {split: entries(task.files[split]) if split in task.files else None
          for split in SPLITS}


_LISTERS = {"decathlon_json": _json_splits, "image_mask_json": _json_splits,
            "image_mask_folders": _spec_splits, "csv": _spec_splits, "npy_csv": _spec_splits,
            "class_folders": _class_folder_splits}
