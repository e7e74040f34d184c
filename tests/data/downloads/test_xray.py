"""The X-ray and mammography download recipes, run by prepare on tiny copies of the downloads."""

import os

import numpy as np
from PIL import Image
import pytest

from rasd_jax.data import pipeline, prepared, readers, tasks
from tests.data.downloads import fixtures_xray as fx


def _tree(folder):
  """{relative path: (size, mtime_ns)} of every file below `folder`."""
  return {os.path.relpath(os.path.join(d, n), folder): (os.stat(os.path.join(d, n)).st_size,
                                                        os.stat(os.path.join(d, n)).st_mtime_ns)
          for d, _, names in os.walk(folder) for n in names}


def _prepare(tmp_path, task, writer=None, given=""):
  """Writes the fixture one folder below tmp/download and prepares it from tmp/download (or the
  folder `given` below it); (summary, out, writer's return value)."""
  source = tmp_path / "download"
  written = (writer or fx.WRITERS[task])(str(source / "unpacked"))
  source = source / given
  before = _tree(source)
  out = tmp_path / "data"
  try:
    summary = prepared.prepare(task, str(source), str(out), progress=False, log=lambda _: None)
  finally:
    assert _tree(source) == before  # prepare never writes into the download
  return summary, out, written


@pytest.mark.parametrize("task", sorted(fx.WRITERS))
def test_prepare_reads_the_download(tmp_path, task):
  summary, out, _ = _prepare(tmp_path, task)
  assert summary["cases"] == fx.COUNTS[task]
  record = tasks.get(task)
  splits = prepared.load_splits(task, str(out))
  for split, entries in splits.items():
    assert (entries is None) == (fx.COUNTS[task][split] == 0)
    for entry in entries or ():
      assert all(os.path.exists(p) for p in readers._as_list(entry["image"]))
      if record.kind == "segmentation":
        assert os.path.exists(entry["label"])
    if entries:
      case = pipeline.prepare(record, entries[0])  # the data side of a fine-tuning step
      assert case["image"].ndim == record.ndim + 1 and np.isfinite(case["image"]).all()


def test_shenzhen_class_from_the_name(tmp_path):
  _, out, _ = _prepare(tmp_path, "shenzhen")
  labels = {e["id"]: e["label"] for e in prepared.load_splits("shenzhen", str(out))["train"]}
  assert labels == {"CHNCXR_0001_0": 0, "CHNCXR_0002_0": 0, "CHNCXR_0327_1": 1,
                    "CHNCXR_0328_1": 1}


def test_montgomery_merges_left_and_right_masks(tmp_path):
  summary, out, masks = _prepare(tmp_path, "montgomery")
  assert summary["converted"] == 3
  for entry in prepared.load_splits("montgomery", str(out))["train"]:
    assert entry["label"].startswith(str(out / "converted"))
    _, label, _ = readers.read_case(entry)
    np.testing.assert_array_equal(label, masks[entry["id"]])


# The archive's own folder and the folder above it, each given as the source.
@pytest.mark.parametrize("task, archive", [("montgomery", "unpacked/MontgomerySet"),
                                           ("kau_bcmd", "unpacked/archive")])
@pytest.mark.parametrize("level", [0, 1])
def test_source_is_the_archive_folder_or_above(tmp_path, task, archive, level):
  given = os.path.dirname(archive) if level else archive
  summary, _, _ = _prepare(tmp_path, task, given=given)
  assert summary["layout"] != "authors' layout"
  assert summary["source"] == str(tmp_path / "download" / archive)
  assert summary["cases"] == fx.COUNTS[task]


def test_montgomery_bad_masks_name_the_file(tmp_path):
  source = tmp_path / "download"
  fx.write_montgomery(str(source))
  masks = source / "MontgomerySet" / "ManualMask"
  os.remove(masks / "rightMask" / "MCUCXR_0002_0.png")
  Image.fromarray(np.zeros((30, 20), np.uint8)).save(masks / "leftMask" / "MCUCXR_0104_1.png")
  with pytest.raises(prepared.PrepareError) as error:
    prepared.prepare("montgomery", str(source), str(tmp_path / "data"), progress=False,
                     log=lambda _: None)
  missing, shape = error.value.problems
  assert "1 of 3 cases" in missing and "rightMask/MCUCXR_0002_0.png" in missing
  assert "leftMask/MCUCXR_0104_1.png" in shape and "differ in size" in shape


def test_rsna_bone_age_official_lists(tmp_path):
  _, out, ages = _prepare(tmp_path, "rsna_bone_age")
  for split, entries in prepared.load_splits("rsna_bone_age", str(out)).items():
    got = {int(e["id"].split("_")[1]): e["label"] for e in entries}
    assert got == ages[split]


def test_rsna_bone_age_kaggle_copy(tmp_path):
  summary, out, _ = _prepare(tmp_path, "rsna_bone_age", fx.write_rsna_bone_age_kaggle)
  assert summary["layout"] == "kaggle"
  assert summary["cases"] == {"train": 2, "val": 0, "test": 0}


def test_rsna_bone_age_malformed_list(tmp_path):
  source = tmp_path / "download"
  fx.write_rsna_bone_age(str(source))
  (source / "Bone Age Training Set" / "train.csv").write_text("id,age\n1377,180\n")
  with pytest.raises(ValueError, match="train.csv.*boneage"):
    prepared.prepare("rsna_bone_age", str(source), str(tmp_path / "data"), progress=False)


def test_kau_bcmd_class_and_case_from_the_folders(tmp_path):
  _, out, _ = _prepare(tmp_path, "kau_bcmd")
  entries = prepared.load_splits("kau_bcmd", str(out))["train"]
  assert sorted({(e["group"], e["label"]) for e in entries}) == [
      ("Birad1/1", 0), ("Birad3/15", 2), ("Birad4/104", 3), ("Birad5/210", 4)]


def test_lamis_dmdb_class_and_patient_from_the_sample(tmp_path):
  summary, out, names = _prepare(tmp_path, "lamis_dmdb")
  assert summary["source"].endswith(os.path.join("LAMISDMDB_Sample-main", "LAMIS-DMDB"))
  entries = prepared.load_splits("lamis_dmdb", str(out))["train"]
  classes = tasks.get("lamis_dmdb").classes
  expected = {"Nomal": "normal", "Benign": "benign", "Malign": "malignant"}
  assert {e["id"]: (classes[e["label"]], e["group"]) for e in entries} == {
      f"{folder}/{stem}.png": (expected[folder], stem.split("_")[1])
      for folder, stems in names.items() for stem in stems}


def test_mendeley_mammo_original_images_only(tmp_path):
  summary, out, names = _prepare(tmp_path, "mendeley_mammo")
  assert summary["source"].endswith("Breast Cancer Dataset")
  entries = prepared.load_splits("mendeley_mammo", str(out))["train"]
  classes = tasks.get("mendeley_mammo").classes
  assert sorted((e["id"], classes[e["label"]]) for e in entries) == sorted(
      (f"Original Dataset/{folder}/{name}", folder.lower())
      for folder, files in names.items() for name in files)
  assert all("Augmented" not in e["image"] for e in entries)


def test_cdd_cesm_low_energy_rows_of_the_sheet(tmp_path):
  _, out, _ = _prepare(tmp_path, "cdd_cesm")
  entries = prepared.load_splits("cdd_cesm", str(out))["train"]
  assert {e["id"]: (e["label"], e["group"]) for e in entries} == {
      "P1_L_DM_CC": (0, "P1"), "P1_L_DM_MLO": (0, "P1"), "P2_R_DM_CC": (1, "P2"),
      "P3_L_DM_MLO": (2, "P3")}


def test_cdd_cesm_unknown_label_names_the_sheet(tmp_path):
  source = tmp_path / "download"
  sheet = source / "Radiology manual annotations.xlsx"
  fx.xlsx(str(sheet), ("Image_name", "Type", "Pathology Classification/ Follow up"),
          [("P9_L_DM_CC", "DM", "Suspicious")])
  os.makedirs(source / "Low energy images of CDD-CESM")
  with pytest.raises(ValueError, match="annotations.xlsx line 2.*'Suspicious'"):
    prepared.prepare("cdd_cesm", str(source), str(tmp_path / "data"), progress=False)


def test_inbreast_mass_contours_become_masks(tmp_path):
  summary, out, masks = _prepare(tmp_path, "inbreast")
  assert summary["empty_labels"] == ["20586934"]  # no XML: no finding
  entries = prepared.load_splits("inbreast", str(out))["train"]
  assert {e["id"]: e["group"] for e in entries} == {
      "20586908": "6c613a14b80a8591", "20586934": "6c613a14b80a8591",
      "22614097": "8d0b9620c53c0268", "24065530": "d571b4ff4fd8a9d6",
      "50995789": "1e2ac4b6e3f9d1a4"}
  for entry in entries:
    _, label, _ = readers.read_case(entry)
    np.testing.assert_array_equal(label, masks[entry["id"]])


def test_vindr_mammo_jpeg2000_and_split_column(tmp_path):
  _, out, stored = _prepare(tmp_path, "vindr_mammo")
  splits = prepared.load_splits("vindr_mammo", str(out))
  assert {e["id"]: e["label"] for e in splits["train"]} == {"i11": 0, "i12": 1, "i21": 3}
  assert {e["id"]: e["group"] for e in splits["test"]} == {"i31": "s3", "i32": "s3"}
  for entry in splits["train"] + splits["test"]:
    image, _, _ = readers.read_case(entry["image"])
    np.testing.assert_array_equal(image[0], stored[entry["id"]])


def test_vindr_mammo_corrupt_file_names_it(tmp_path):
  source = tmp_path / "download"
  fx.write_vindr_mammo(str(source))
  broken = source / "vindr-mammo" / "1.0.0" / "images" / "s2" / "i21.dicom"
  broken.write_bytes(broken.read_bytes()[:-200])  # a truncated download
  with pytest.raises(prepared.PrepareError) as error:
    prepared.prepare("vindr_mammo", str(source), str(tmp_path / "data"), progress=False,
                     log=lambda _: None)
  assert len(error.value.problems) == 1 and "i21.dicom" in error.value.problems[0]


def test_cbis_ddsm_finds_the_cropped_image(tmp_path):
  summary, out, crops = _prepare(tmp_path, "cbis_ddsm")
  assert summary["converted"] == 2  # the two folders holding crop and mask in one series
  splits = prepared.load_splits("cbis_ddsm", str(out))
  assert {e["id"]: (e["label"], e["group"]) for e in splits["train"] + splits["test"]} == {
      "Mass-Training_P_00001_LEFT_CC_1": (1, "P_00001"),
      "Calc-Training_P_00005_RIGHT_CC_1": (0, "P_00005"),
      "Mass-Test_P_00016_LEFT_CC_1": (0, "P_00016"),
      "Calc-Test_P_00038_LEFT_CC_1": (1, "P_00038")}
  for entry in splits["train"] + splits["test"]:
    image, _, _ = readers.read_case(entry["image"])
    np.testing.assert_array_equal(image[0], crops[entry["id"]])


def test_cbis_ddsm_missing_folder_is_a_missing_case(tmp_path):
  source = tmp_path / "download"
  fx.write_cbis_ddsm(str(source))
  for d, _, names in os.walk(source / "CBIS-DDSM" / "Calc-Test_P_00038_LEFT_CC_1", False):
    for n in names:
      os.remove(os.path.join(d, n))
    os.rmdir(d)
  with pytest.raises(prepared.PrepareError) as error:
    prepared.prepare("cbis_ddsm", str(source), str(tmp_path / "data"), progress=False,
                     log=lambda _: None)
  assert error.value.problems[0].startswith("1 of 4 cases of cbis_ddsm are missing")
  assert "Calc-Test_P_00038_LEFT_CC_1" in error.value.problems[0]


_BMCD_CLASS = {1: "normal", 2: "benign", "4a": "suspicious", "4c": "suspicious", 5: "suspicious"}


def test_bmcd_recent_images_labelled_from_the_sheet(tmp_path):
  summary, out, stored = _prepare(tmp_path, "bmcd")
  assert summary["layout"] == "zenodo"
  assert summary["source"] == str(tmp_path / "download" / "unpacked")
  entries = prepared.load_splits("bmcd", str(out))["train"]
  classes = tasks.get("bmcd").classes
  assert {e["id"]: (classes[e["label"]], e["group"]) for e in entries} == {
      f"{sheet}/{folder}/{view}_recent": (_BMCD_CLASS[value], f"{sheet}/{folder}")
      for (sheet, folder), value in fx.BMCD_BIRADS.items() for view in ("CC", "MLO")}
  upper = "/".join(map(str, fx.BMCD_UPPER))
  for entry in entries:
    if entry["id"].startswith(upper):
      assert entry["image"].endswith("_recent.DCM")
    image, _, _ = readers.read_case(entry["image"])
    np.testing.assert_array_equal(image[0], stored[entry["id"]])


def test_bmcd_sheet_inside_the_dataset_folder(tmp_path):
  source = tmp_path / "download"
  fx.write_bmcd(str(source))
  os.replace(source / "Description.xlsx", source / "Dataset" / "Description.xlsx")
  summary = prepared.prepare("bmcd", str(source), str(tmp_path / "data"), progress=False,
                             log=lambda _: None)
  assert summary["source"] == str(source / "Dataset")
  assert summary["cases"] == fx.COUNTS["bmcd"]


@pytest.mark.parametrize("value", [3, 0, "BI-RADS 2"])
def test_bmcd_bad_row_names_the_sheet_and_row(tmp_path, value):
  source = tmp_path / "download"
  fx.write_bmcd(str(source), {**fx.BMCD_BIRADS, ("Suspicious_cases", 2): value})
  with pytest.raises(ValueError, match=r"Description\.xlsx sheet Suspicious_cases row 5: "
                     rf"label '{str(value).lower()}'"):
    prepared.prepare("bmcd", str(source), str(tmp_path / "data"), progress=False)
