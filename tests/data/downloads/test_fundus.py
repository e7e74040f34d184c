"""The fundus group's download recipes: prepare turns a tiny copy of each official download
(fixtures_fundus) into a data folder that fine-tuning reads, and refuses typical bad ones."""

import csv
import gzip
import io
import os

import numpy as np
from PIL import Image
import pytest

import fixtures_fundus
from rasd_jax.data import downloads
from rasd_jax.data import pipeline
from rasd_jax.data import prepared
from rasd_jax.data import readers
from rasd_jax.data import tasks


def _snapshot(folder):
  """{path relative to folder: (size, mtime_ns)} of every file below it."""
  found = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      full = os.path.join(parent, name)
      info = os.stat(full)
      found[os.path.relpath(full, folder)] = (info.st_size, info.st_mtime_ns)
  return found


def _download(tmp_path, task, **kwargs):
  """The fixture of `task` unpacked one folder below tmp_path/download, as an archive
  unpacks; (source, masks the fixture wrote)."""
  source = tmp_path / "download"
  masks = fixtures_fundus.WRITERS[task](os.fspath(source / "unpacked"), **kwargs)
  return source, masks


def _prepare(task, source, out):
  return prepared.prepare(task, os.fspath(source), os.fspath(out), threads=2, progress=False,
                          log=lambda line: None)


def _problems(task, source, out):
  with pytest.raises(prepared.PrepareError) as caught:
    _prepare(task, source, out)
  return caught.value.problems


def _listing(task_name, source):
  """The recipe's listing of the download in `source` (the layout prepare picks)."""
  layout, root = downloads.find_root(downloads.get(task_name), source)
  return layout.cases(root)


def _source_of(value):
  """The download file a listed label (a path or a Convert) is read or made from."""
  return value.inputs[0] if isinstance(value, downloads.Convert) else value


def _pixels(path):
  return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
  """made(task) -> (source, masks, out, summary): the fixture download of `task` prepared,
  once a module (DRAC's 611 cases take seconds)."""
  cache = {}

  def make(task_name):
    if task_name not in cache:
      tmp_path = tmp_path_factory.mktemp(task_name)
      source, masks = _download(tmp_path, task_name)
      before = _snapshot(source)
      summary = _prepare(task_name, source, tmp_path / "data")
      assert _snapshot(source) == before  # nothing written into, or touched in, the download
      cache[task_name] = source, masks, tmp_path / "data", summary
    return cache[task_name]
  return make


@pytest.mark.parametrize("task_name", sorted(fixtures_fundus.WRITERS))
def test_prepare_reads_the_official_download(made, task_name):
  task = tasks.get(task_name)
  source, masks, out, summary = made(task_name)
  assert summary["cases"] == fixtures_fundus.COUNTS[task_name]
  assert summary["layout"] != "authors' layout"
  listing = _listing(task_name, source)

  splits = prepared.load_splits(task, os.fspath(out))
  for split, entries in splits.items():
    if fixtures_fundus.COUNTS[task_name][split] == 0:
      assert entries is None
      continue
    for entry in entries:
      files = [entry["image"]] + ([entry["label"]] if task.kind == "segmentation" else [])
      assert all(os.path.isfile(f) for f in files), entry
      if task.kind == "segmentation":
        # Every mask, read in place or converted, holds the 0/1 mask the fixture drew.
        source_mask = os.path.relpath(_source_of(listing.cases[entry["id"]]["label"]),
                                      source / "unpacked")
        _, label, _ = readers.read_case({"image": entry["image"], "label": entry["label"]})
        np.testing.assert_array_equal(label, masks[source_mask])
        if entry["label"].startswith(os.fspath(out)):
          np.testing.assert_array_equal(_pixels(entry["label"]) > 0, masks[source_mask])
    # The data side of a fine-tuning step, once per split.
    sample = pipeline.prepare(task, entries[0])
    assert sample["image"].shape[0] == task.in_channels
    if task.kind == "segmentation":
      assert sample["label"].shape == sample["image"].shape[1:]
      assert set(np.unique(sample["label"])) <= {0, 1}
    else:
      assert sample["label"] == entries[0]["label"]


def _grades_in(csv_path, name_column, grade_column):
  with open(csv_path, newline="") as f:
    return {row[name_column]: int(row[grade_column]) for row in csv.DictReader(f)}


def test_drac_cases_carry_their_listed_grades(made):
  # Each image gets the grade the shipped list gives its name (the fixture's official CSV is
  # written from that list), in the registry's class counts.
  source, _, out, _ = made("drac")
  official = _grades_in(
      source / "unpacked" / "C. Diabetic Retinopathy Grading" / "2. Groundtruths" /
      "a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv", "image name", "DR grade")
  splits = prepared.load_splits("drac", os.fspath(out))
  listed = {os.path.basename(e["image"]): e["label"] for s in ("train", "val") for e in splits[s]}
  assert listed == official
  assert [sum(1 for e in splits["train"] if e["label"] == g) for g in range(3)] == [279, 162, 58]
  assert [sum(1 for e in splits["val"] if e["label"] == g) for g in range(3)] == [50, 50, 12]


def test_idrid_grading_labels_and_both_roots(made, tmp_path):
  source, _, out, _ = made("idrid_grading")
  splits = prepared.load_splits("idrid_grading", os.fspath(out))
  for split in ("train", "test"):
    assert [e["label"] for e in splits[split]] == list(fixtures_fundus.GRADES[split])
    assert [os.path.basename(e["image"]) for e in splits[split]] == [
        f"IDRiD_{i:03d}.jpg" for i in range(1, len(fixtures_fundus.GRADES[split]) + 1)]
  # Given the archive's folder itself, the same cases are found.
  inner = source / "unpacked" / "B. Disease Grading"
  summary = _prepare("idrid_grading", inner, tmp_path / "data")
  assert summary["layout"] == "B. Disease Grading"
  assert summary["cases"] == fixtures_fundus.COUNTS["idrid_grading"]


def test_stare_converts_images_and_reads_either_unpacking(tmp_path):
  source, _ = _download(tmp_path, "stare", folders=True)
  summary = _prepare("stare", source, tmp_path / "data")
  assert summary["layout"] == "one folder per archive"
  assert summary["converted"] == 20
  entry = prepared.load_splits("stare", os.fspath(tmp_path / "data"))["val"][0]
  original = source / "unpacked" / "STARE" / "stare-images" / f"{entry['id']}.ppm.gz"
  with gzip.open(original) as f:
    expected = np.asarray(Image.open(io.BytesIO(f.read())))
  np.testing.assert_array_equal(_pixels(entry["image"]), expected)


def test_hvdropdb_od_lists_each_validation_image_once(made):
  val = prepared.load_splits("hvdropdb_od", os.fspath(made("hvdropdb_od")[2]))["val"]
  assert [e["id"] for e in val] == [f"{c}_{n}" for c in ("Neo", "RetCam") for n in range(36, 41)]
  assert all("/Retcam_OpticDisc_images/" in e["image"] for e in val[5:])


_HVDROPDB_BV = "HVDROPDB_RetCam_Neo_Segmentation/HVDROPDB-BV/{0}_Vessels_images/{1}.png"


@pytest.mark.parametrize("task_name, listed, removed", [
    ("drive", 20, "DRIVE/training/1st_manual/{}_manual1.gif".format),
    ("stare", 20, "STARE/labels-ah/{}.ah.ppm.gz".format),
    ("hvdropdb_bv", 80, lambda case: _HVDROPDB_BV.format(*case.split("_"))),
])
def test_a_partial_download_is_one_problem_naming_the_missing_cases(tmp_path, task_name, listed,
                                                                     removed):
  source, _ = _download(tmp_path, task_name)
  gone = _listing(task_name, source).folds[0]["val"][:3]
  for case in gone:
    os.remove(source / "unpacked" / removed(case))
  problems = _problems(task_name, source, tmp_path / "data")
  assert len(problems) == 1
  assert f"3 of {listed} cases of {task_name} are missing" in problems[0]
  assert all(case in problems[0] for case in gone)
  assert not (tmp_path / "data" / prepared.SUMMARY).exists()


def test_bad_files_are_named(tmp_path):
  # DRIVE: a manual segmentation of another size than its image.
  source, _ = _download(tmp_path / "drive", "drive")
  gif = source / "unpacked" / "DRIVE" / "training" / "1st_manual" / "35_manual1.gif"
  Image.fromarray(np.zeros((9, 9), np.uint8)).save(gif)
  problems = _problems("drive", source, tmp_path / "drive" / "data")
  assert len(problems) == 1 and "35_manual1" in problems[0] and "shape" in problems[0]

  # STARE: a corrupt (truncated) image archive member.
  source, _ = _download(tmp_path / "stare", "stare")
  image = source / "unpacked" / "STARE" / "im0044.ppm.gz"
  image.write_bytes(image.read_bytes()[:20])
  problems = _problems("stare", source, tmp_path / "stare" / "data")
  assert len(problems) == 1 and os.fspath(image) in problems[0]

  # HVDROPDB: a colour mask where the release's masks are grey in every channel.
  source, _ = _download(tmp_path / "bv", "hvdropdb_bv")
  mask = (source / "unpacked" / "HVDROPDB_RetCam_Neo_Segmentation" / "HVDROPDB-BV" /
          "RetCam_Vessels_masks" / "7.png")
  Image.fromarray(fixtures_fundus._rgb("colour")).save(mask)
  problems = _problems("hvdropdb_bv", source, tmp_path / "bv" / "data")
  assert len(problems) == 1 and os.fspath(mask) in problems[0] and "colour" in problems[0]

  # IDRiD: an image without its hard exudate mask (not an empty mask: a missing file).
  source, _ = _download(tmp_path / "idrid", "idrid_lesion_seg")
  os.remove(source / "unpacked" / "A. Segmentation" / "2. All Segmentation Groundtruths" /
            "b. Testing Set" / "3. Hard Exudates" / "IDRiD_56_EX.tif")
  problems = _problems("idrid_lesion_seg", source, tmp_path / "idrid" / "data")
  assert len(problems) == 1 and "IDRiD_56_EX.tif" in problems[0]


def test_a_malformed_grading_csv_is_named(tmp_path):
  source, _ = _download(tmp_path, "idrid_grading")
  labels = (source / "unpacked" / "B. Disease Grading" / "2. Groundtruths" /
            "b. IDRiD_Disease Grading_Testing Labels.csv")
  labels.write_text(labels.read_text().replace("IDRiD_002,0", "IDRiD_002,mild"))
  with pytest.raises(ValueError, match="Testing Labels.csv.*Retinopathy grade"):
    _prepare("idrid_grading", source, tmp_path / "data")
  labels.write_text("Image,Grade\nIDRiD_001,1\n")
  with pytest.raises(ValueError, match="Testing Labels.csv: no column"):
    _prepare("idrid_grading", source, tmp_path / "data")
