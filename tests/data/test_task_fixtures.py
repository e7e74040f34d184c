"""Every registry task lists its cases from a tiny data set written in its layout (`task.files`)."""

import collections
import csv
import json
import os
import string

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from experiments import finetune as finetune_experiment
from rasd_jax.data import pipeline, readers, splits, tasks
from rasd_jax.training import engine

AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
CASES = 4  # cases per split, per list file or per folder pair
# Case n's name where the task's group pattern reads the patient from it (the folder id, or the
# CSV's image columns), in the dataset's naming; two cases in a row share a patient.
CASE_NAMES = {
    "cocahis": lambda n: f"{n // 2}_{n}",
    "janowczyk_epithelium": lambda n: f"{n // 2}_500_f{n:05d}",
    "cdd_cesm": lambda n: f"P{n // 2}_{'LR'[n % 2]}_DM_CC",
    "cbis_ddsm": lambda n: f"Mass-Training_P_{n // 2:05d}_LEFT_CC_{n}/1.3.6/000000",
    "midog21": lambda n: f"patches/{n // 2:03d}_{n}",
    "nucls": lambda n: f"crops/TCGA-A1-A{n // 2:03d}-DX1_{n}",
    "wsss4luad": lambda n: f"{n // 2}-{n}-48057-[1, 0, 0]",
}
# What the * of a folder task's file name stands for (INbreast: the patient id and view).
STARS = {"inbreast": lambda n: f"{n // 2:016x}_MG_R_CC_ANON"}


def _write_dicom(path, pixels):
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
  ds.PixelData = pixels.astype("<u2").tobytes()
  ds.save_as(path, enforce_file_format=True)


def _write_file(task, path, mask=False):
  """A tiny image (or mask: 8 x 8 blocks of classes, 0/255 if binary) at `path`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  lower = path.lower()
  values = [0, *(sorted(task.label_map) if task.label_map else range(1, task.num_classes))]
  if lower.endswith(".nii.gz"):
    data = np.arange(8 * 8 * 6).reshape(8, 8, 6)
    data = np.take(values, data % len(values)).astype(np.int16) if mask else data / 100.0
    nib.save(nib.Nifti1Image(data.astype(np.int16 if mask else np.float32), AFFINE), path)
  elif lower.endswith(".npy"):
    np.save(path, np.random.default_rng(0).integers(0, 256, (4, 16, 16), np.uint8))
  elif lower.endswith(readers.DICOM_SUFFIXES):
    _write_dicom(path, np.arange(256, dtype=np.uint16).reshape(16, 16) * 16)
  elif mask:
    blocks = np.arange(4).reshape(2, 2) % len(values)
    data = np.kron(np.take(values, blocks), np.ones((8, 8), int))
    data = data * 255 if len(values) == 2 else data  # a binary mask saved as 0/255
    Image.fromarray(data.astype(np.uint8)).save(path)
  else:
    shape = (16, 16, 3) if task.in_channels == 3 or task.preprocessing.get("green_channel") \
        else (16, 16)
    Image.fromarray(np.random.default_rng(1).integers(0, 256, shape, np.uint8)).save(path)
  return path


def _ext(task):
  return ".npy" if task.ndim == 3 else ".dcm" if task.name == "cbis_ddsm" else ".png"


def _write_json_layout(task, root):
  files, counts, data = task.files, {}, {}
  sizes = {"train": CASES, "val": 2, "test": 2}
  if "val_tail" in files:
    sizes["train"] = files["val_tail"] + 2
  for split in tasks.SPLITS:
    if split not in files:
      continue
    entries = []
    for i in range(sizes[split]):
      n = 10 * tasks.SPLITS.index(split) + i + 1
      names = {key: [t.format(n=n) for t in files[key]] if isinstance(files[key], list)
               else files[key].format(n=n) for key in ("image", "label")}
      for path in readers._as_list(names["image"]):
        _write_file(task, os.path.join(root, path))
      _write_file(task, os.path.join(root, names["label"]), mask=True)
      if "fold_key" in files:
        names[files["fold_key"]] = i % 2  # folds 0, 1, 0: fold 0 is val
      entries.append(names)
    data[files[split]] = entries
    counts[split] = len(entries)
  if "fold_key" in files:
    counts["val"] = (counts["train"] + 1) // 2
    counts["train"] -= counts["val"]
  if "val_tail" in files:
    counts["train"], counts["val"] = 2, files["val_tail"]
  os.makedirs(os.path.dirname(os.path.join(root, files["json"])), exist_ok=True)
  with open(os.path.join(root, files["json"]), "w") as f:
    json.dump({"name": task.name, **data}, f)
  return counts


def _write_folder_layout(task, root):
  counts, lists, n = collections.Counter(), collections.defaultdict(dict), 0
  for split in tasks.SPLITS:
    if split not in task.files:
      continue
    for spec in tasks.split_specs(task.files, split):
      pairs = [(spec["images"], spec["masks"])]
      if spec["images"].endswith("/*"):
        pairs = [(spec["images"][:-1] + p, spec["masks"][:-1] + p)
                 for p in (f"{split}_p1", f"{split}_p2")]  # patients differ between splits
      ids = []
      for images, masks in pairs:
        for _ in range(CASES):
          n += 1
          case = CASE_NAMES.get(task.name, spec.get("ids", {}).get("format", "{:02d}").format)(n)
          star = STARS[task.name](n) if task.name in STARS else "x"
          image, mask = (t.replace("{id}", case).replace("*", star) for t in spec["pattern"])
          _write_file(task, os.path.join(root, images, image))
          _write_file(task, os.path.join(root, masks, mask), mask=True)
          ids.append(n if "format" in spec.get("ids", {}) else case)
      counts[split] += len(ids)
      if "ids" in spec:
        lists[spec["ids"]["file"]][spec["ids"].get("key")] = ids
  for name, keyed in lists.items():
    with open(os.path.join(root, name), "w") as f:
      if name.endswith(".json"):
        json.dump(keyed, f)
      else:
        f.write("\n".join(map(str, keyed[None])) + "\n")
  return dict(counts)


def _label_text(task, spec, index):
  names = spec.get("label_names")
  if names == "classes":
    return task.classes[index]
  if isinstance(names, dict):
    return next(k for k, v in names.items() if v == task.classes[index])
  return str(index)


def _write_csv_layout(task, root):
  counts, tables, n = collections.Counter(), collections.defaultdict(list), 0
  for split in tasks.SPLITS:
    if split not in task.files:
      continue
    for spec in tasks.split_specs(task.files, split):
      for i in range(CASES):
        n += 1
        row = dict(spec.get("where", {}))
        for template in readers._as_list(spec["image"]):
          fields = [f for _, f, _, _ in string.Formatter().parse(template) if f]
          if not fields:  # a column holding the path
            fields, template = [template], "{" + template + "}"
          name = CASE_NAMES[task.name](n) if task.name in CASE_NAMES else f"{n:04d}"
          row.update({f: name for f in fields})
          if template.endswith("}"):  # the cell holds the file name with its suffix
            row[fields[-1]] += _ext(task)
          _write_file(task, os.path.join(root, template.format_map(row)))
        if task.kind == "regression":
          row[spec["label"]] = str(100 + n)
        elif task.kind == "multilabel":
          row.update({c: str((i + k) % 2) for k, c in enumerate(spec["label"])})
        else:
          row[spec["label"]] = _label_text(task, spec, i % task.num_classes)
        tables[(spec["csv"].format(fold=0), spec.get("fieldnames"), spec.get("delimiter", ","))
               ].append(row)
      counts[split] += CASES
  for (name, fieldnames, delimiter), rows in tables.items():
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames or list(rows[0]), delimiter=delimiter)
      if not fieldnames:
        writer.writeheader()
      writer.writerows(rows)
  return dict(counts)


def _write_class_folders(task, root):
  folders = {v: k for k, v in task.files.get("label_names", {}).items()}
  counts = {}
  for split in tasks.SPLITS:
    if split in task.files:
      for name in task.classes:
        folder = os.path.join(root, task.files[split], folders.get(name, name))
        for case in ("case1.png", "case2.png"):
          _write_file(task, os.path.join(folder, case))
      counts[split] = 2 * task.num_classes
  return counts


WRITERS = {"decathlon_json": _write_json_layout, "image_mask_json": _write_json_layout,
           "image_mask_folders": _write_folder_layout, "csv": _write_csv_layout,
           "npy_csv": _write_csv_layout, "class_folders": _write_class_folders}


def _check_label(task, entry):
  label = entry["label"]
  if task.kind == "segmentation":
    assert os.path.isfile(label)
    _, mask, _ = readers.read_case(entry)
    if task.label_map:
      mapped = np.zeros_like(mask)
      for value, index in task.label_map.items():
        mapped[mask == value] = index
      assert set(np.unique(mask)) <= {0, *task.label_map}
      mask = mapped
    assert 0 <= mask.min() and mask.max() < task.num_classes and mask.max() > 0
  elif task.kind == "classification":
    assert isinstance(label, int) and 0 <= label < task.num_classes
  elif task.kind == "multilabel":
    assert len(label) == task.num_classes and set(label) <= {0, 1}
  else:
    assert isinstance(label, float)


def test_every_task_is_covered():
  assert len(tasks.TASKS) == 56


@pytest.mark.parametrize("task", list(tasks.TASKS.values()), ids=lambda t: t.name)
def test_task_reads_its_layout(task, tmp_path):
  counts = WRITERS[task.layout](task, str(tmp_path))
  splits = tasks.load_splits(task, tmp_path)
  assert {s: len(e) for s, e in splits.items() if e is not None} == counts
  assert all(splits[s] is None for s in tasks.SPLITS if s not in counts)
  for entries in filter(None, splits.values()):
    for entry in entries:
      assert set(entry) - {"group"} == {"image", "label", "id"} and entry["id"]
      for path in readers._as_list(entry["image"]):
        assert os.path.isabs(path) and os.path.exists(path)
        readers.read_case(path)
      _check_label(task, entry)
  # The job's config and data path: every case prepared, the splits completed by holding
  # training cases out, one training batch of the registry's roi (runlocal: CPU-sized).
  full = finetune_experiment.get_config(f"task={task.name}")
  assert full.roi == task.roi and full.optim.lr == task.optimizer.lr
  assert full.optim.algorithm == task.optimizer.algorithm
  assert full.total_steps == 0 and full.total_epochs == task.schedule.epochs
  assert full.eval_every_epochs == task.schedule.eval_every_epochs
  assert full.optim.warmup_epochs == task.schedule.warmup_epochs
  assert full.batch_size == task.sampling.batch * task.sampling.patches_per_case
  assert full.scratch_model == finetune_experiment.PAPER_MODELS[task.ndim]
  config = finetune_experiment.get_config(f"task={task.name},runlocal")
  config.data.dir = str(tmp_path)
  job_task, split = engine._cases(config)
  data = engine._data(config, job_task, split)
  assert len(data["train"]) >= 1 and len(data["val"]) >= 1 and len(data["test"]) >= 1
  for sample in data["train"] + data["val"] + data["test"]:
    assert sample["image"].dtype == np.float32 and sample["image"].ndim == task.ndim + 1
    assert sample["image"].shape[0] == task.in_channels
  batch = pipeline.make_batch(job_task, data["train"], job_task.roi, 2, 0, 0)
  roi = (finetune_experiment.RUNLOCAL_ROI[task.ndim],) * task.ndim
  assert batch["image"].shape == (2, *roi, task.in_channels)
  if task.kind == "segmentation":
    assert batch["label"].shape == (2, *roi) and batch["label"].max() < task.num_classes


def _knows_patient(task, split):
  """Whether the layout names the patient of `split`'s cases (a group pattern, or one
  subfolder per patient)."""
  specs = [task.files] if task.layout.endswith("json") or task.layout == "class_folders" \
      else tasks.split_specs(task.files, split)
  return any("group" in spec or spec.get("images", "").endswith("/*") for spec in specs)


def _patient(entry):
  return entry.get("group", json.dumps(entry["image"]))


@pytest.mark.parametrize("task", list(tasks.TASKS.values()), ids=lambda t: t.name)
def test_task_splits_keep_each_patient_in_one_split(task, tmp_path):
  """Through load_splits and make_splits: the patient where the layout knows it, official
  lists kept, no patient in two splits, the same validation and test cases for every seed and
  training fraction, cross-validated tasks tested on their fold."""
  WRITERS[task.layout](task, str(tmp_path))
  lists = tasks.load_splits(task, tmp_path)
  for split, entries in lists.items():
    assert all(("group" in e) == _knows_patient(task, split) for e in entries or ())
  first = None
  for seed, fraction in ((0, 1.0), (1, 1.0), (2, 0.5)):
    out = splits.make_splits(lists, source=task.name, folds=task.cv_folds, seed=seed,
                             train_fraction=fraction)
    for split in ("val", "test"):
      if lists[split] is not None:
        assert out[split] == lists[split]
    patients = {split: {_patient(e) for e in entries} for split, entries in out.items()}
    assert all(patients.values())
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"] or lists["test"] is not None
    first = first or out
    assert (out["val"], out["test"]) == (first["val"], first["test"])
    if fraction == 1.0:
      assert sorted(map(_patient, out["train"])) == sorted(map(_patient, first["train"]))
    else:
      assert len(out["train"]) == -(-len(first["train"]) // 2)
      assert {_patient(e) for e in out["train"]} <= {_patient(e) for e in first["train"]}


def _fixture(name, root):
  task = tasks.get(name)
  WRITERS[task.layout](task, str(root))
  return task


def test_a_listed_file_that_is_missing_is_named_with_its_list(tmp_path):
  task = _fixture("drive", tmp_path)
  os.remove(tmp_path / "train/images/02_training.png")
  with pytest.raises(FileNotFoundError, match=r"listed in .*DRIVE.json .*02_training.png"):
    tasks.load_splits(task, tmp_path)
  task = _fixture("cc_ccii", tmp_path / "ccii")
  os.remove(tmp_path / "ccii/p0001-s0001.npy")
  with pytest.raises(FileNotFoundError, match=r"CC_CCII_fold0_train.csv .*p0001-s0001.npy"):
    tasks.load_splits(task, tmp_path / "ccii")


def test_a_label_that_is_not_a_class_is_named_with_its_file(tmp_path):
  task = _fixture("cdd_cesm", tmp_path)
  path = tmp_path / "Radiology manual annotations.csv"
  path.write_text(path.read_text().replace("Benign", "Borderline"))
  with pytest.raises(ValueError, match=r"annotations.csv line 3: .* 'Borderline' is not a class"):
    tasks.load_splits(task, tmp_path)
  task = _fixture("bfmr", tmp_path / "bfmr")
  (tmp_path / "bfmr/val/dislocated").mkdir()
  with pytest.raises(ValueError, match=r"val/dislocated: 'dislocated' is not a class"):
    tasks.load_splits(task, tmp_path / "bfmr")


def test_a_missing_list_file_or_data_dir_names_the_path_and_the_layout(tmp_path):
  task = tasks.get("msd09")
  with pytest.raises(FileNotFoundError, match=r"spleen.json does not exist; .*msd09.* "
                                              r"decathlon_json layout: imagesTr"):
    tasks.load_splits(task, tmp_path)
  with pytest.raises(FileNotFoundError, match=r"data dir .*nowhere does not exist; .*imagesTr"):
    tasks.load_splits(task, tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match=r"MoNuSAC_images_and_annotations does not exist"):
    tasks.load_splits("monusac", tmp_path)
  with pytest.raises(ValueError, match=r"fold 5 of task 'brats21': it has 5 folds \(0-4\)"):
    tasks.load_splits("brats21", tmp_path, fold=5)
  with pytest.raises(ValueError, match=r"fold 1 of task 'btcv': it has no folds \(only 0\)"):
    tasks.load_splits("btcv", tmp_path, fold=1)


def test_entries_listed_twice_count_once(tmp_path):
  """HVDROPDB-OD lists each validation image twice: scored once."""
  task = tasks.get("hvdropdb_od")
  WRITERS[task.layout](task, str(tmp_path))
  path = tmp_path / task.files["json"]
  data = json.loads(path.read_text())
  data["validation"] = data["validation"] * 2
  path.write_text(json.dumps(data))
  splits = tasks.load_splits(task, tmp_path)
  assert len(splits["val"]) == len(data["validation"]) // 2
