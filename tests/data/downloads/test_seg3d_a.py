"""Download recipes of the seg3d_a tasks: each fixture download is prepared, its counts, converted
values and splits checked, and typical bad downloads refused with the file named."""

import os
import shutil
import zipfile

import fixtures_seg3d_a as fixtures
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image
import pytest

from rasd_jax.data import downloads, pipeline, prepared, tasks


def _snapshot(folder):
  return {os.path.relpath(os.path.join(d, n), folder): (os.stat(os.path.join(d, n)).st_size,
                                                        os.stat(os.path.join(d, n)).st_mtime_ns)
          for d, _, names in os.walk(folder) for n in names}


@pytest.fixture
def brats_subset(monkeypatch):
  """The shipped BraTS list restricted to the fixture's cases (1251 cases are too many)."""
  shipped = downloads.shipped
  monkeypatch.setattr(downloads, "shipped", lambda name: (
      {**shipped(name), "folds": fixtures.BRATS_IDS} if name == "brats21.json" else shipped(name)))


def _write(task, tmp_path, **kwargs):
  source = tmp_path / "download"
  fixtures.WRITERS[task](os.fspath(source), **kwargs)
  return source


def _prepare(task, source, out):
  return prepared.prepare(task, os.fspath(source), os.fspath(out), threads=2, progress=False,
                          log=lambda line: None)


def _problems(task, source, tmp_path):
  with pytest.raises(prepared.PrepareError) as error:
    _prepare(task, source, tmp_path / "data")
  return error.value.problems


@pytest.mark.parametrize("task", sorted(fixtures.WRITERS))
def test_prepare_reads_the_download(task, tmp_path, brats_subset):
  source = _write(task, tmp_path)
  before = _snapshot(source)
  summary = _prepare(task, source, tmp_path / "data")
  assert summary["cases"] == fixtures.COUNTS[task]
  assert _snapshot(source) == before  # the download is never written
  record = tasks.get(task)
  for fold in (0, record.folds - 1):
    splits = prepared.load_splits(task, os.fspath(tmp_path / "data"), fold=fold)
    assert len(splits["train"]) + len(splits["val"]) == sum(fixtures.COUNTS[task].values())
    for entry in splits["train"] + splits["val"]:
      paths = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
      assert all(os.path.exists(p) for p in paths + [entry["label"]])
  for entry in (splits["train"][0], splits["val"][0]):
    sample = pipeline.prepare(record, entry)
    assert sample["image"].shape[0] == record.in_channels
    assert sample["label"].max() < record.num_classes


def test_acdc_lists_the_authors_frames(tmp_path):
  source = _write("acdc", tmp_path)
  _prepare("acdc", source, tmp_path / "data")
  splits = prepared.load_splits("acdc", os.fspath(tmp_path / "data"))
  val = {e["id"] for e in splits["val"]}
  assert {"patient006_frame01", "patient100_frame01"} <= val and len(val) == 40
  entry = next(e for e in splits["train"] if e["id"] == "patient001_frame12")
  assert entry["label"].endswith("database/training/patient001/patient001_frame12_gt.nii.gz")


def test_amos_reads_mri_cases_of_both_sets(tmp_path):
  source = _write("amos_mri", tmp_path)
  _prepare("amos_mri", source, tmp_path / "data")
  splits = prepared.load_splits("amos_mri", os.fspath(tmp_path / "data"))
  where = {e["id"]: e["image"].split(os.sep)[-2] for e in splits["train"] + splits["val"]}
  assert "amos_0001" not in where and "amos_0008" not in where  # CT cases
  assert where["amos_0507"] == "imagesTr" and where["amos_0544"] == "imagesVa"
  assert {i for i, s in where.items() if s == "imagesTr"} == {
      f"amos_{n}" for n in fixtures.AMOS_TR_MRI}


def test_amos_follows_a_case_in_the_other_set(tmp_path):
  source = _write("amos_mri", tmp_path)
  for kind in ("images", "labels"):
    shutil.move(source / "amos22" / f"{kind}Tr" / "amos_0507.nii.gz",
                source / "amos22" / f"{kind}Va" / "amos_0507.nii.gz")
  _prepare("amos_mri", source, tmp_path / "data")
  splits = prepared.load_splits("amos_mri", os.fspath(tmp_path / "data"))
  entry = next(e for e in splits["train"] if e["id"] == "amos_0507")
  assert entry["label"].endswith(os.path.join("labelsVa", "amos_0507.nii.gz"))


def test_whs_labels_map_to_the_seven_classes(tmp_path):
  source = _write("whs_mr", tmp_path)
  _prepare("whs_mr", source, tmp_path / "data")
  entry = prepared.load_splits("whs_mr", os.fspath(tmp_path / "data"))["val"][0]
  on_disk = np.asarray(nib.load(entry["label"]).dataobj)
  mapped = pipeline.map_label(tasks.get("whs_mr"), on_disk, entry["label"])
  for value, index in zip(fixtures.WHS_VALUES, range(1, 8)):
    assert (mapped == index).sum() == (on_disk == value).sum() == 1


@pytest.mark.parametrize("level", [False, True])
def test_brats_with_and_without_training_data_folder(level, tmp_path, brats_subset):
  source = _write("brats21", tmp_path, training_data_level=level)
  summary = _prepare("brats21", source, tmp_path / "data")
  assert summary["folds"] == 5 and summary["source"].endswith(
      "TrainingData" if level else "TrainingData_16July2021")
  for fold, ids in enumerate(fixtures.BRATS_IDS):
    splits = prepared.load_splits("brats21", os.fspath(tmp_path / "data"), fold=fold)
    assert [e["id"] for e in splits["val"]] == ids and len(splits["train"]) == 12
  entry = splits["val"][0]
  assert [os.path.basename(p)[16:] for p in entry["image"]] == [
      "flair.nii.gz", "t1ce.nii.gz", "t1.nii.gz", "t2.nii.gz"]
  sample = pipeline.prepare(tasks.get("brats21"), entry)
  assert sorted(np.unique(sample["label"])) == [0, 1, 2, 3]  # 1, 2, 4 -> NCR, ED, ET


def test_brats_partial_download_names_the_missing_cases(tmp_path):
  source = _write("brats21", tmp_path)
  problems = _problems("brats21", source, tmp_path)
  assert len(problems) == 1 and problems[0].startswith("1236 of 1251 cases of brats21 are missing")


@pytest.mark.parametrize("task, remove", [
    ("acdc", "database/training/patient042/patient042_frame01_gt.nii.gz"),
    ("atlas_mri", "atlas-train-dataset-1.0.1/train/imagesTr/im7.nii.gz"),
    ("chaos", "CHAOS_Train_Sets/Train_Sets/CT/21/Ground"),
    ("ircadb", "3Dircadb1/3Dircadb1.4/MASKS_DICOM.zip")])
def test_a_missing_case_is_named(task, remove, tmp_path):
  source = _write(task, tmp_path)
  path = source / remove
  shutil.rmtree(path) if path.is_dir() else path.unlink()
  problems = _problems(task, source, tmp_path)
  assert len(problems) == 1 and f"1 of {sum(fixtures.COUNTS[task].values())} cases" in problems[0]
  assert os.path.basename(remove) in problems[0]


def _world_z(affine, index):
  return (affine @ [0, 0, index, 1])[2]


def test_chaos_masks_follow_the_dicom_names(tmp_path):
  source = _write("chaos", tmp_path)
  _prepare("chaos", source, tmp_path / "data")
  entry = prepared.load_splits("chaos", os.fspath(tmp_path / "data"))["val"][0]
  case = source / "CHAOS_Train_Sets" / "Train_Sets" / "CT" / entry["id"]
  dicoms = sorted((case / "DICOM_anon").iterdir())
  pngs = sorted((case / "Ground").iterdir())
  image, label = nib.load(entry["image"]), nib.load(entry["label"])
  np.testing.assert_allclose(image.affine, label.affine)
  volume, mask = np.asarray(image.dataobj), np.asarray(label.dataobj)
  assert volume.shape == mask.shape == (10, 12, 4)
  for k, (dicom, png) in enumerate(zip(dicoms, pngs)):
    ds = pydicom.dcmread(dicom)
    # the NIfTI slice at this DICOM file's height (RAS z = LPS z)
    z = [i for i in range(4) if abs(_world_z(image.affine, i) - ds.ImagePositionPatient[2]) < 1e-3]
    assert len(z) == 1
    np.testing.assert_array_equal(volume[:, :, z[0]].T, ds.pixel_array.astype(float) - 1024)
    np.testing.assert_array_equal(mask[:, :, z[0]].T, np.asarray(Image.open(png)) // 255)
    assert mask[:, :, z[0]].sum() == 3 * (2 + k)  # file k's mask: rows 2 .. 3 + k, 3 columns


def test_ircadb_label_is_liver_and_tumours(tmp_path):
  source = _write("ircadb", tmp_path)
  _prepare("ircadb", source, tmp_path / "data")
  splits = prepared.load_splits("ircadb", os.fspath(tmp_path / "data"))
  entries = {e["id"]: e for e in splits["train"] + splits["val"]}
  # two tumour folders, the one named "tumor", an unzipped patient
  for case in ("3Dircadb1.1", "3Dircadb1.7", fixtures.IRCADB_UNZIPPED[0]):
    label = nib.load(entries[case]["label"])
    mask = np.asarray(label.dataobj)
    np.testing.assert_allclose(label.affine, nib.load(entries[case]["image"]).affine)
    # the fixture's boxes (rows x columns) in every slice but the lowest one
    tumour = {"3Dircadb1.1": 2 * 2 + 1 * 2}.get(case, 2 * 2)
    z_order = np.argsort([_world_z(label.affine, i) for i in range(3)])
    counts = [(np.count_nonzero(mask[:, :, i] == 1), np.count_nonzero(mask[:, :, i] == 2))
              for i in z_order]
    assert counts == [(0, 0)] + [(6 * 5 - tumour, tumour)] * 2


def test_chaos_rgb_or_resized_mask_is_named(tmp_path):
  source = _write("chaos", tmp_path)
  ground = source / "CHAOS_Train_Sets" / "Train_Sets" / "CT" / "5" / "Ground"
  rgb = ground / "liver_GT_001.png"
  Image.open(rgb).convert("RGB").save(rgb)
  small = source / "CHAOS_Train_Sets" / "Train_Sets" / "CT" / "8" / "Ground" / "liver_GT_000.png"
  Image.new("L", (4, 4)).save(small)
  problems = _problems("chaos", source, tmp_path)
  assert len(problems) == 2 and all("has pixels" in p for p in problems)
  assert any(os.fspath(rgb) in p for p in problems) and any(os.fspath(small) in p for p in problems)


def test_ircadb_corrupt_zip_is_named(tmp_path):
  source = _write("ircadb", tmp_path)
  broken = source / "3Dircadb1" / "3Dircadb1.9" / "PATIENT_DICOM.zip"
  broken.write_bytes(broken.read_bytes()[:200])
  problems = _problems("ircadb", source, tmp_path)
  assert len(problems) == 1 and os.fspath(broken) in problems[0]


def test_whs_label_of_another_shape_is_named(tmp_path):
  source = _write("whs_ct", tmp_path)
  label = source / "MM-WHS 2017 Dataset" / "ct_train" / "ct_train_1003_label.nii.gz"
  fixtures.nifti(os.fspath(label), np.zeros((6, 5, 3), np.uint16))
  problems = _problems("whs_ct", source, tmp_path)
  assert len(problems) == 1 and os.fspath(label) in problems[0] and "shape" in problems[0]


def test_brats_nan_volume_is_named(tmp_path, brats_subset):
  source = _write("brats21", tmp_path)
  name = fixtures.BRATS_IDS[2][1]
  t2 = (source / "RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021" / name
        / f"{name}_t2.nii.gz")
  fixtures.nifti(os.fspath(t2), np.full(fixtures.SHAPE, np.nan, np.float32))
  problems = _problems("brats21", source, tmp_path)
  assert len(problems) == 1 and os.fspath(t2) in problems[0] and "NaN" in problems[0]


def test_ircadb_reads_zipped_and_unzipped_patients_alike(tmp_path):
  source = _write("ircadb", tmp_path)
  base = source / "3Dircadb1"
  layout, root = downloads.find_root(downloads.get("ircadb"), os.fspath(source))
  listing = layout.cases(root)
  for case in ("3Dircadb1.2", fixtures.IRCADB_UNZIPPED[0]):
    inputs = listing.cases[case]["label"].inputs
    unzipped = case in fixtures.IRCADB_UNZIPPED
    assert inputs == tuple(os.fspath(base / case / (n if unzipped else n + ".zip"))
                           for n in ("PATIENT_DICOM", "MASKS_DICOM"))
  assert zipfile.is_zipfile(base / "3Dircadb1.2" / "MASKS_DICOM.zip")
