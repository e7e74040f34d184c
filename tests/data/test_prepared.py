"""The prepare machinery (rasd_jax.data.prepared, the prepare job) on real official-layout
fixtures: the job's output and exit codes, one line per problem, nothing written into the
download, reruns that check only what changed, partial downloads."""

import json
import os
import sys

import nibabel as nib
import numpy as np
from PIL import Image
import pytest

from conftest import REPO_ROOT, run_job

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
import official  # noqa: E402  (every task's official-download fixture)

from rasd_jax.data import prepared  # noqa: E402
from rasd_jax.data import readers  # noqa: E402


def _tree(root):
  """{relative path: (size, mtime_ns)} of every file below root."""
  found = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      found[os.path.relpath(path, root)] = (os.path.getsize(path), os.stat(path).st_mtime_ns)
  return found


def _montgomery(tmp_path):
  """Montgomery's download (left and right lung masks, merged by prepare) below tmp_path."""
  source = tmp_path / "downloads"
  masks = official.fixtures_xray.write_montgomery(str(source / "NLM-MontgomeryCXRSet"))
  return source, source / "NLM-MontgomeryCXRSet" / "MontgomerySet", masks


def test_job_prepares_once_then_skips_what_it_checked(tmp_path):
  source, root, masks = _montgomery(tmp_path)
  before = _tree(source)
  data = tmp_path / "data"
  config = "experiments/prepare.py:task=montgomery"
  out = run_job(config, data, f"--config.source={source}")
  assert (f"prepared montgomery from {root} (nlm): 3 train, 0 val, 0 test; "
          "3 case(s) converted") in out.stdout, out.stdout
  summary = json.loads((data / "prepare.json").read_text())
  assert summary["task"] == "montgomery" and summary["cases"] == {"train": 3, "val": 0, "test": 0}
  assert summary["source"] == str(root) and summary["missing"] == []
  assert _tree(source) == before  # nothing written into the download
  entries = prepared.load_splits("montgomery", str(data))["train"]
  for entry in entries:  # the merged mask: left | right, read back from DATA/converted
    assert entry["label"].startswith(str(data / "converted"))
    np.testing.assert_array_equal(readers.read_case(entry)[1], masks[entry["id"]])
  made = _tree(data / "converted")
  checked = (data / "checked.jsonl").read_text()
  again = run_job(config, data, f"--config.source={source}", "--config.threads=1")
  assert "3 train" in again.stdout
  assert _tree(data / "converted") == made and (data / "checked.jsonl").read_text() == checked
  # Another source (the download moved) is checked anew, case by case.
  moved = tmp_path / "moved"
  os.rename(source, moved)
  run_job(config, data, f"--config.source={moved}")
  assert json.loads((data / "prepare.json").read_text())["source"] == str(
      moved / "NLM-MontgomeryCXRSet" / "MontgomerySet")


def test_bad_download_is_one_line_a_problem_and_writes_no_manifest(tmp_path):
  source, root, _ = _montgomery(tmp_path)
  data = tmp_path / "data"
  config = "experiments/prepare.py:task=montgomery"
  run_job(config, data, f"--config.source={source}")
  os.remove(root / "ManualMask" / "rightMask" / "MCUCXR_0002_0.png")
  Image.fromarray(np.zeros((7, 9), np.uint8)).save(
      root / "ManualMask" / "leftMask" / "MCUCXR_0104_1.png")
  before = _tree(source)
  out = run_job(config, data, f"--config.source={source}", check=False)
  lines = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert len(lines) == 3, lines
  assert lines[0].startswith("error: 1 of 3 cases of montgomery are missing from ")
  assert "MCUCXR_0002_0 (ManualMask/rightMask/MCUCXR_0002_0.png)" in lines[0]
  assert "MCUCXR_0104_1.png" in lines[1] and "(7, 9)" in lines[1]
  assert lines[2].startswith("error: prepare montgomery: 2 problem(s) in ")
  assert not (data / "prepare.json").exists() and not (data / "cases.json").exists()
  assert _tree(source) == before
  with pytest.raises(FileNotFoundError, match="is not a prepared data folder"):
    prepared.load_splits("montgomery", str(data))


def test_a_changed_case_is_checked_and_converted_again(tmp_path, monkeypatch):
  source, root, masks = _montgomery(tmp_path)
  data = str(tmp_path / "data")
  prepared.prepare("montgomery", source, data, progress=False)
  seen = []
  check = prepared.check_case
  monkeypatch.setattr(prepared, "check_case",
                      lambda task, entry: seen.append(entry["id"]) or check(task, entry))
  prepared.prepare("montgomery", source, data, progress=False)
  assert seen == []
  wider = np.zeros_like(masks["MCUCXR_0001_0"])
  wider[2:30, 1:12] = 1
  Image.fromarray(wider.astype(np.uint8) * 255).save(
      root / "ManualMask" / "leftMask" / "MCUCXR_0001_0.png")
  prepared.prepare("montgomery", source, data, progress=False)
  assert seen == ["MCUCXR_0001_0"]
  entry, = [e for e in prepared.load_splits("montgomery", data)["train"]
            if e["id"] == "MCUCXR_0001_0"]
  right = np.asarray(Image.open(root / "ManualMask" / "rightMask" / "MCUCXR_0001_0.png")) > 0
  np.testing.assert_array_equal(readers.read_case(entry)[1], wider | right)


def test_a_partial_download_with_allow_missing(tmp_path):
  """DRIVE's shipped list names 20 training images: one gone is a problem, or, with
  allow_missing, a warning and a data folder without it."""
  source = tmp_path / "download"
  official.WRITERS["drive"](str(source))
  image, = [p for p in source.rglob("25_training.tif")]
  os.remove(image)
  with pytest.raises(prepared.PrepareError) as error:
    prepared.prepare("drive", source, tmp_path / "data", progress=False, log=lambda line: None)
  assert len(error.value.problems) == 1 and "allow_missing" in error.value.problems[0]
  assert "1 of 20 cases of drive are missing" in error.value.problems[0]
  logged = []
  summary = prepared.prepare("drive", source, tmp_path / "data", allow_missing=True,
                             progress=False, log=logged.append)
  assert summary["missing"] == ["25"] and summary["cases"] == {"train": 13, "val": 6, "test": 0}
  assert logged == [f"warning: {error.value.problems[0].split('; to prepare')[0]}; prepared "
                    "without them (allow_missing)"]
  ids = [e["id"] for e in prepared.load_splits("drive", str(tmp_path / "data"))["train"]]
  assert "25" not in ids and len(ids) == 13


def test_refusals_name_what_is_wrong(tmp_path):
  source, _, _ = _montgomery(tmp_path)
  inside = source / "prepared"
  out = run_job("experiments/prepare.py:task=montgomery", inside, f"--config.source={source}",
                check=False)
  assert out.returncode == 1 and out.stderr.strip().splitlines()[-1] == (
      f"error: workdir {inside} lies inside the download {source}: prepare never writes into "
      "a download; give a workdir outside it")
  assert not inside.exists()
  os.makedirs(tmp_path / "empty")
  with pytest.raises(FileNotFoundError, match=r"no drive download found in .*empty \(searched 4 "
                     r"folder levels down for training/images/\*_training.tif.*drive.grand"):
    prepared.prepare("drive", tmp_path / "empty", tmp_path / "d", progress=False)
  out = run_job("experiments/prepare.py:task=montgomry", tmp_path / "x", check=False)
  assert "did you mean montgomery" in out.stderr and out.returncode == 1
  out = run_job("experiments/prepare.py:task=montgomery", tmp_path / "x", check=False)
  assert "prepare needs source" in out.stderr and out.returncode == 1
  data = tmp_path / "data"
  prepared.prepare("montgomery", source, data, progress=False)
  with pytest.raises(ValueError, match="was prepared for task 'montgomery', not 'drive'"):
    prepared.load_splits("drive", str(data))
  with pytest.raises(ValueError, match=r"fold 1 of task 'montgomery': it has no folds"):
    prepared.load_splits("montgomery", str(data), fold=1)


def test_damaged_prepared_folder_names_the_file(tmp_path):
  """A prepared folder whose summary is not JSON, or whose manifest holds a list: a
  ValueError naming the file, not a bare JSONDecodeError or a TypeError."""
  source, _, _ = _montgomery(tmp_path)
  for name, text, message in ((prepared.SUMMARY, '{"task": "montgomery",',
                               "cannot parse the summary of the prepared data .*prepare.json"),
                              (prepared.MANIFEST, "[]", "the manifest of the prepared data "
                               ".*cases.json holds a JSON list, expected an object")):
    data = tmp_path / name
    prepared.prepare("montgomery", source, data, progress=False)
    (data / name).write_text(text)
    with pytest.raises(ValueError, match=message):
      prepared.load_splits("montgomery", str(data))


def _decathlon(root, labels=(1, 2, 1, 2, 1)):
  """A Decathlon folder of five 12x10x8 MRI cases (4 training, 1 validation) and two
  unlabelled test images; case n's mask holds the value labels[n]."""
  rng = np.random.default_rng(0)
  affine = np.diag([1.2, 1.2, 3.0, 1.0])
  for folder in ("imagesTr", "labelsTr", "imagesTs"):
    os.makedirs(root / folder, exist_ok=True)
  entries = []
  for n, value in enumerate(labels):
    label = np.zeros((12, 10, 8), np.uint8)
    label[2:7, 3:8, 2:6] = value
    nib.save(nib.Nifti1Image(rng.random((12, 10, 8)).astype(np.float32), affine),
             root / "imagesTr" / f"case{n}.nii.gz")
    nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / f"case{n}.nii.gz")
    entries.append({"image": f"./imagesTr/case{n}.nii.gz", "label": f"./labelsTr/case{n}.nii.gz"})
  for n in range(2):
    nib.save(nib.Nifti1Image(rng.random((12, 10, 8)).astype(np.float32), affine),
             root / "imagesTs" / f"test{n}.nii.gz")
  listed = {"name": "mine", "modality": {"0": "MRI"},
            "labels": {"0": "background", "1": "liver", "2": "tumour"},
            "training": entries[:4], "validation": entries[4:],
            "test": [f"./imagesTs/test{n}.nii.gz" for n in range(2)]}
  (root / "dataset.json").write_text(json.dumps(listed))
  return root / "dataset.json"


def test_custom_data_prepares_and_feeds_the_job(tmp_path):
  """task=custom: the user's Decathlon dataset.json prepared, then fine-tuning on data.dir
  reads the same cases, classes and modality as fine-tuning on data.json."""
  from experiments import finetune as finetune_experiment
  from rasd_jax.jobs import finetune as finetune_job
  dataset = _decathlon(tmp_path / "mine")
  before = _tree(tmp_path / "mine")
  out = run_job("experiments/prepare.py:task=custom", tmp_path / "data",
                f"--config.source={dataset}")
  assert ("prepared custom from " f"{dataset} (Decathlon dataset.json): 4 train, 1 val, 0 test"
          in out.stdout), out.stdout
  assert _tree(tmp_path / "mine") == before
  runs = {}
  for key, value in (("dir", str(tmp_path / "data")), ("json", str(dataset))):
    config = finetune_experiment.get_config("task=custom,runlocal")
    config.data[key] = value
    task, split = finetune_job._cases(config)
    runs[key] = (task, {s: None if e is None else sorted(c["image"] for c in e)
                        for s, e in split.items()})
  assert runs["dir"] == runs["json"]
  task = runs["dir"][0]
  assert task.classes == ("background", "liver", "tumour") and task.modality_group == "MRI"
  assert task.ndim == 3 and task.in_channels == 1 and task.roi == (32, 32, 32)
  # A mask value that is not one of the dataset's classes: one line naming the file.
  _decathlon(tmp_path / "bad", labels=(1, 2, 7, 2, 1))
  out = run_job("experiments/prepare.py:task=custom", tmp_path / "bad_data",
                f"--config.source={tmp_path / 'bad' / 'dataset.json'}", check=False)
  errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
  assert out.returncode == 1 and len(errors) == 2, out.stderr[-2000:]
  assert "labelsTr/case2.nii.gz has values [7] outside [0, 3)" in errors[0]
  source, _, _ = _montgomery(tmp_path)
  prepared.prepare("montgomery", source, tmp_path / "m", progress=False)
  with pytest.raises(ValueError, match="was prepared for task 'montgomery', not task=custom"):
    prepared.task_of_folder(tmp_path / "m", (32,))


def test_custom_csv_and_class_folders(tmp_path):
  for name, label in (("a", "benign"), ("b", "malignant"), ("c", "benign"), ("d", "malignant")):
    Image.fromarray(np.full((6, 5), ord(name), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "folders" / label).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((6, 5), np.uint8)).save(tmp_path / "folders" / label / f"{name}.png")
  (tmp_path / "labels.csv").write_text(
      "file,diagnosis\na.png,benign\nb.png,malignant\nc.png,benign\nd.png,malignant\n")
  summary = prepared.prepare("custom", tmp_path / "labels.csv", tmp_path / "csv_data",
                             image_column="file", label_column="diagnosis", progress=False)
  assert summary["layout"] == "CSV" and summary["cases"] == {"train": 4, "val": 0, "test": 0}
  entries = prepared.load_splits(prepared.task_of_folder(tmp_path / "csv_data", (8,)),
                                 str(tmp_path / "csv_data"))["train"]
  assert {e["id"]: e["label"] for e in entries} == {"a.png": 0, "b.png": 1, "c.png": 0,
                                                     "d.png": 1}
  summary = prepared.prepare("custom", tmp_path / "folders", tmp_path / "folder_data",
                             progress=False)
  assert summary["layout"] == "class folders" and summary["cases"]["train"] == 4
  task = prepared.task_of_folder(tmp_path / "folder_data", (8,))
  assert task.kind == "classification" and task.classes == ("benign", "malignant")
