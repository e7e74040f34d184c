"""A prepared data folder: what the prepare job writes from a download, and what every
fine-tuning path (finetune, suite, the TFDS builder) reads through `load_splits`.

DATA/prepare.json   the summary, written last: {"task", "source", "layout", "cases": {"train",
                    "val", "test"} (the split sizes of fold 0, 0 where the protocol has no such
                    list), "folds", "missing": [ids left out with allow_missing], "converted"
                    (how many cases), "empty_labels": [ids], "notes"}
DATA/cases.json     the manifest: {"task", "cases": {id: entry}, "folds": [{"train": [ids],
                    "val": [ids] or None, "test": [ids] or None}]}; entries hold absolute paths
                    into the download (read in place) or into DATA/converted
DATA/converted/     the files prepare made (downloads.Convert)
DATA/checked.jsonl  the cases already converted, read and checked, by their listing and the
                    size and time of their files: a rerun converts and checks only what
                    changed

Prepare never writes into the download: a workdir inside it is refused.
"""

import concurrent.futures
import dataclasses
import json
import math
import os
import tempfile

from etils import epath
import numpy as np
import tqdm

from rasd_jax.data import downloads
from rasd_jax.data import pipeline
from rasd_jax.data import readers
from rasd_jax.data import sources
from rasd_jax.data import tasks
from rasd_jax import workdir as workdir_lib

SUMMARY = "prepare.json"
MANIFEST = "cases.json"
CONVERTED = "converted"
CHECKED = "checked.jsonl"
_RECORDS_A_WRITE = 100  # checked cases appended to checked.jsonl at once


class PrepareError(ValueError):
  """The download cannot be used as it is: `problems`, one line each, name the file and what
  is wrong."""

  def __init__(self, task, source, problems):
    self.problems = list(problems)
    super().__init__(f"prepare {task}: {len(self.problems)} problem(s) in {source}; nothing "
                     "usable was written (each problem is on its own line above)")


def files_of(case):
  """The source files (or DICOM folders) a listed case reads."""
  return _files(case["image"]) + _files(case.get("label"))


def _files(value):
  """The source files an image or label value reads."""
  if isinstance(value, downloads.Convert):
    return list(value.inputs)
  if isinstance(value, str):
    return [value]
  if isinstance(value, (list, tuple)) and value and all(
      isinstance(v, (str, downloads.Convert)) for v in value):
    return [f for v in value for f in _files(v)]
  return []


def _values(case):
  """The image and label values of a case, lists of images flattened."""
  image = case["image"]
  return [*(image if isinstance(image, (list, tuple)) else [image]), case.get("label")]


def _stamp(path):
  """(size, mtime) of a file, or of a folder's files (a DICOM series)."""
  p = epath.Path(path)
  if p.is_dir():
    return sorted((q.name, _stamp(q)) for q in p.iterdir())
  info = p.stat()
  return [info.length, info.mtime]


def _key(case):
  return json.dumps([case, [_stamp(f) for f in files_of(case)]], default=lambda c: c.name,
                    sort_keys=True)


def _check_listing(task, listing):
  """The recipe's listing is consistent (a recipe bug otherwise: ValueError)."""
  if not listing.folds:
    raise ValueError(f"task {task.name!r}: the download recipe listed no folds")
  official = len(listing.folds)
  if official > 1 and official != task.folds:
    raise ValueError(f"task {task.name!r} has {task.folds} folds; its recipe listed {official}")
  for fold in listing.folds:
    for split, ids in fold.items():
      unknown = [i for i in ids or () if i not in listing.cases]
      if split not in tasks.SPLITS or unknown:
        raise ValueError(f"task {task.name!r}: split {split!r} of the recipe names unknown "
                         f"cases {readers.few(unknown)}")


def _label_problem(task, case_id, label):
  """What is wrong with an image-level label, or None."""
  if task.kind == "classification":
    ok = isinstance(label, (int, np.integer)) and 0 <= label < task.num_classes
    want = f"a class index in [0, {task.num_classes})"
  elif task.kind == "multilabel":
    ok = isinstance(label, (list, tuple)) and len(label) == task.num_classes and all(
        v in (0, 1) for v in label)
    want = f"{task.num_classes} values 0/1"
  else:
    ok = isinstance(label, (int, float)) and math.isfinite(label)
    want = "a finite number"
  return None if ok else f"case {case_id}: label {label!r} is not {want}"


def check_case(task, entry):
  """Reads one case as fine-tuning will and checks it; returns whether its label is empty
  (segmentation without foreground). ValueError / OSError naming the file otherwise."""
  if task.kind != "segmentation":
    pipeline.prepare(task, entry)
    return False
  path = entry["image"] if isinstance(entry["image"], str) else entry["image"][0]
  image, label, _ = readers.read_case(entry)
  if image.ndim - 1 != task.ndim:
    raise ValueError(f"{path}: image of spatial shape {image.shape[1:]} is not {task.ndim}D as "
                     f"task {task.name!r} needs")
  pipeline.input_channels(task, image, path)
  return not pipeline.map_label(task, label, entry["label"]).any()


class _Converter:
  def __init__(self, out):
    self.root = epath.Path(out) / CONVERTED

  def __call__(self, value):
    """`value` with every Convert replaced by the path of its output, made anew (a case is
    converted only when it is not known checked as it is now)."""
    if isinstance(value, (list, tuple)):
      return [self(v) for v in value]
    if not isinstance(value, downloads.Convert):
      return value
    target = self.root / value.name
    if workdir_lib.is_remote(target):  # the libraries that write it take local paths
      with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, target.name)
        _make(value, local)
        epath.Path(local).copy(target, overwrite=True)
      return os.fspath(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial" + "".join(target.suffixes))
    _make(value, os.fspath(partial))
    partial.replace(target)
    return os.fspath(target)


def _copy(source, target):
  """A file or a folder (a DICOM series), from cloud storage to the local `target`."""
  source = epath.Path(source)
  if source.is_dir():
    os.makedirs(target, exist_ok=True)
    for child in source.iterdir():
      _copy(child, os.path.join(target, child.name))
  else:
    source.copy(epath.Path(target))


def _make(convert, output):
  """convert.make, any failure a ValueError naming the input files. Inputs on cloud storage
  are copied to a local folder first, under their own names, side by side where the names
  differ (the libraries that read them take local paths; a MetaImage header finds its data
  file beside it)."""
  if any(workdir_lib.is_remote(f) for f in convert.inputs):
    with tempfile.TemporaryDirectory() as folder:
      local = []
      for f in convert.inputs:
        name, k = os.path.basename(os.fspath(f).rstrip("/")), 0
        while os.path.exists(os.path.join(folder, str(k), name)):
          k += 1  # another input of that name (a left and a right mask): a folder of its own
        os.makedirs(os.path.join(folder, str(k)), exist_ok=True)
        local.append(os.path.join(folder, str(k), name))
        _copy(f, local[-1])
      _make(dataclasses.replace(convert, inputs=tuple(local)), output)
    return
  try:
    convert.make(tuple(convert.inputs), output)
  except (ValueError, OSError):
    raise  # ours and the readers': they name the file
  except Exception as e:  # a library's own (zipfile, xml, struct, h5py, ...): name the input
    raise ValueError(f"cannot convert {', '.join(map(str, convert.inputs))} to {convert.name}: "
                     f"{type(e).__name__}: {e}") from e


def check_workdir(source, out):
  """Refuses a workdir `out` inside the download `source`: prepare never writes there."""
  if workdir_lib.is_remote(out) or workdir_lib.is_remote(source):
    return
  inside, folder = (os.path.realpath(workdir_lib.absolute(p)) for p in (out, source))
  if os.path.commonpath([inside, folder]) == folder:
    raise ValueError(f"workdir {out} lies inside the download {source}: prepare never writes "
                     "into a download; give a workdir outside it")


def _custom(source, image_column, label_column, num_classes):
  """(task, listing, what) of the user's own data: `source` a Decathlon dataset.json
  (segmentation), a CSV (image and label columns) or a folder of class folders."""
  source = workdir_lib.absolute(source)
  if epath.Path(source).is_dir():
    given, what = {"folders": source}, "class folders"
  elif source.lower().endswith(".json"):
    given, what = {"json_path": source}, "Decathlon dataset.json"
  elif source.lower().endswith(".csv"):
    given, what = {"csv_path": source}, "CSV"
  else:
    raise FileNotFoundError(f"source {source}: task=custom takes a Decathlon dataset.json, a "
                            ".csv or a folder of class folders")
  kind, lists, names, _, modality = sources.custom_lists(
      **given, image_column=image_column, label_column=label_column)
  task = sources.task_of_cases(kind, lists["train"], names, num_classes, (None,), modality)
  base = source if what == "class folders" else os.path.dirname(source)
  cases, fold = {}, {}
  for split, entries in lists.items():
    if entries is None or not entries or any(e.get("label") is None for e in entries):
      fold[split] = None  # no such list, or an unlabelled one (the MSD "test" lists)
      continue
    fold[split] = []
    for entry in entries:
      first = entry["image"] if isinstance(entry["image"], str) else entry["image"][0]
      case_id = first if workdir_lib.is_remote(first) else os.path.relpath(first, base)
      cases[case_id] = {"image": entry["image"], "label": entry["label"]}
      fold[split].append(case_id)
  return task, downloads.Listing(cases, [fold]), what


def task_of_folder(data_dir, roi):
  """The tasks.Task of the user's data prepared in `data_dir` (task=custom), with `roi`."""
  read_summary(data_dir)  # a folder that was not prepared: the error says how to prepare it
  made = _read_manifest(data_dir)
  if "custom" not in made:
    raise ValueError(f"{data_dir} was prepared for task {made['task']!r}, not task=custom")
  return pipeline.from_task_record(dict(made["custom"], name="custom",
                                       roi=sources.expand_roi(roi, made["custom"]["ndim"])))


def prepare(task, source, out, *, image_column="image", label_column="label", num_classes=0,
            threads=2, allow_missing=False, progress=True, log=print):
  """Prepares registry task `task` (a name or tasks.Task) from its download in `source` into
  the folder `out`; returns the summary written to out/prepare.json. Raises PrepareError
  (every problem a line, also passed to `log` as `error: ...`) when the download is not
  usable, FileNotFoundError when no download of the task is found in `source`.
  `allow_missing`: cases the lists name that the download lacks are left out (a `warning:`
  line, and "missing" in the summary) instead of being a problem.
  task "custom": the user's own data, `source` a Decathlon dataset.json, a CSV
  (`image_column`, `label_column`: several comma-separated, multi-label) or a folder of class
  folders, checked alike (segmentation classes: `num_classes`, else the json's labels, else the
  largest training label)."""
  check_workdir(source, out)
  if task == "custom":
    task, listing, what = _custom(source, image_column, label_column, num_classes)
    root, layout_name, notes = workdir_lib.absolute(source), what, ""
  else:
    task = tasks.get(task) if isinstance(task, str) else task
    recipe = downloads.get(task.name)
    layout, root = downloads.find_root(recipe, source)
    listing = layout.cases(root)
    layout_name, notes = layout.name, recipe.notes
  _check_listing(task, listing)
  out = epath.Path(workdir_lib.absolute(out))
  out.mkdir(parents=True, exist_ok=True)
  for name in (SUMMARY, MANIFEST):  # a failed rerun leaves no stale manifest behind
    if (out / name).exists():
      (out / name).unlink()
  problems = []
  missing = {}
  for case_id, case in listing.cases.items():
    absent = [f for f in files_of(case) if not epath.Path(f).exists()]
    if absent:
      missing[case_id] = absent[0]
  if missing:
    first = [f"{i} ({os.path.relpath(f, root) if not workdir_lib.is_remote(f) else f})"
             for i, f in missing.items()]
    line = (f"{len(missing)} of {len(listing.cases)} cases of {task.name} are missing from "
            f"{root} (an incomplete download?): {readers.few(first)}")
    if allow_missing:
      log(f"warning: {line}; prepared without them (allow_missing)")
    else:
      problems.append(line + "; to prepare the cases present, set allow_missing")

  checked_path = out / CHECKED
  checked = {r["id"]: r for r in workdir_lib.read_jsonl(os.fspath(checked_path))}
  convert = _Converter(out)
  todo = [i for i in listing.cases if i not in missing]

  def one(case_id):
    case = listing.cases[case_id]
    key = _key(case)
    known = checked.get(case_id, {})
    if known.get("key") == key and all(epath.Path(f).exists()
                                       for f in files_of(known["entry"])):
      return case_id, known, None
    try:
      entry = {"image": convert(case["image"]), "label": convert(case.get("label")),
               "id": case_id}
      if task.kind != "segmentation":
        if isinstance(case["label"], downloads.Convert):  # a label read from the pixels
          entry["label"] = json.loads(epath.Path(entry["label"]).read_text())
        problem = _label_problem(task, case_id, entry["label"])
        if problem:
          return case_id, None, problem
      empty = check_case(task, entry)
    except (ValueError, OSError) as e:
      return case_id, None, " ".join(str(e).split())
    return case_id, {"id": case_id, "key": key, "entry": entry, "empty": empty}, None

  results, new = {}, []
  with concurrent.futures.ThreadPoolExecutor(max(1, threads)) as pool:
    for case_id, record, problem in tqdm.tqdm(pool.map(one, todo), total=len(todo),
                                              desc=f"prepare {task.name}", unit="case",
                                              disable=not progress):
      if problem:
        problems.append(problem)
        continue
      results[case_id] = record
      if checked.get(case_id) is not record:
        new.append(json.dumps(record) + "\n")
      if len(new) == _RECORDS_A_WRITE:  # a killed run keeps what it checked
        workdir_lib.append_lines(os.fspath(checked_path), new)
        new = []
  workdir_lib.append_lines(os.fspath(checked_path), new)
  problems += _empty_splits(task, listing, results)
  if problems:
    for line in problems:
      log(f"error: {line}")
    raise PrepareError(task.name, root, problems)

  folds = [{split: None if ids is None else [i for i in dict.fromkeys(ids) if i in results]
            for split, ids in fold.items()} for fold in listing.folds]
  manifest = {"task": task.name,
              "cases": {i: {**r["entry"], **({"group": listing.cases[i]["group"]}
                                             if "group" in listing.cases[i] else {})}
                        for i, r in results.items()},
              "folds": folds}
  if task.name == "custom":  # what the finetune job rebuilds the task from
    manifest["custom"] = {"kind": task.kind, "ndim": task.ndim, "in_channels": task.in_channels,
                          "classes": task.classes, "modality": task.modality}
  first = folds[0]
  summary = {"task": task.name, "source": os.fspath(root), "layout": layout_name,
             "cases": {s: len(first.get(s) or ()) for s in tasks.SPLITS},
             "folds": len(folds), "missing": sorted(missing),
             "converted": sum(1 for i in results if any(
                 isinstance(v, downloads.Convert) for v in _values(listing.cases[i]))),
             "empty_labels": sorted(i for i, r in results.items() if r["empty"]),
             "notes": notes}
  workdir_lib.write_json(os.fspath(out / MANIFEST), manifest)
  workdir_lib.write_json(os.fspath(out / SUMMARY), summary)
  return summary


def _empty_splits(task, listing, results):
  """A segmentation split whose every case is empty cannot be trained or scored."""
  if task.kind != "segmentation":
    return []
  problems = []
  for split, ids in listing.folds[0].items():
    ids = [i for i in ids or () if i in results]
    if ids and all(results[i]["empty"] for i in ids):
      problems.append(f"every {split} case of {task.name} has an empty label (no foreground): "
                      f"{readers.few(ids)}")
  return problems


def read_summary(data_dir):
  """DATA/prepare.json, or FileNotFoundError saying how to make it."""
  path = epath.Path(workdir_lib.absolute(data_dir)) / SUMMARY
  if not path.exists():
    raise FileNotFoundError(
        f"{data_dir} is not a prepared data folder (no {SUMMARY}): prepare the download "
        "first with python run.py --config=experiments/prepare.py:task=NAME "
        f"--config.source=DOWNLOAD --workdir={data_dir}")
  return readers.read_json_object(path, "the summary of the prepared data")


def _read_manifest(data_dir):
  """DATA/cases.json of the prepared folder `data_dir`."""
  return readers.read_json_object(epath.Path(workdir_lib.absolute(data_dir)) / MANIFEST,
                                  "the manifest of the prepared data")


def load_splits(task, data_dir, fold=0):
  """{"train": entries, "val": entries or None, "test": entries or None} of the prepared
  folder `data_dir` (None: the protocol has no such labelled list; splits.make_splits holds
  cases out). Entries: {"image", "label", "id", and "group" where the download names the
  patient}. `fold` picks an official fold; a cross-validated task's lists do not depend on it.
  """
  task = tasks.get(task) if isinstance(task, str) else task
  summary = read_summary(data_dir)
  if summary["task"] != task.name:
    raise ValueError(f"{data_dir} was prepared for task {summary['task']!r}, not {task.name!r}")
  if not 0 <= fold < task.folds:
    has = f"{task.folds} folds (0-{task.folds - 1})" if task.folds > 1 else "no folds (only 0)"
    raise ValueError(f"fold {fold} of task {task.name!r}: it has {has}")
  manifest = _read_manifest(data_dir)
  lists = splits_of(manifest["cases"], manifest["folds"], fold)
  gone = [f for entries in lists.values() for e in entries or ()
          for f in files_of(e) if not epath.Path(f).exists()]
  if gone:
    raise FileNotFoundError(f"{len(gone)} file(s) of the data folder {data_dir} do not exist "
                            f"(moved or deleted since it was prepared? prepare it again): "
                            f"{readers.few(gone)}")
  return lists


def splits_of(cases, folds, fold=0):
  """{"train", "val", "test"}: the entries ({**case, "id"}) of fold `fold`'s lists (the only
  fold where there is one), None where a list is None."""
  chosen = folds[fold if len(folds) > 1 else 0]
  return {split: None if chosen.get(split) is None else
          [{**cases[i], "id": i} for i in chosen[split]] for split in tasks.SPLITS}
