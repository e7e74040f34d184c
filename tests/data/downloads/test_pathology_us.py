"""The pathology and ultrasound recipes, run by prepare on tiny copies of the official
downloads (fixtures_pathology_us): counts, converted files, the prepared splits, one
preprocessed case a split, and the typical bad downloads."""

import json
import os

import h5py
import numpy as np
from PIL import Image
import pytest

from rasd_jax.data import downloads
from rasd_jax.data import pipeline
from rasd_jax.data import prepared
from rasd_jax.data import tasks

import fixtures_pathology_us as fixtures


def _snapshot(folder):
  """{relative path: (size, mtime_ns)} of every file below `folder`."""
  return {os.path.relpath(os.path.join(d, n), folder): (os.stat(os.path.join(d, n)).st_size,
                                                        os.stat(os.path.join(d, n)).st_mtime_ns)
          for d, _, names in os.walk(folder) for n in names}


def _run(task, tmp_path, damage=None, own=False):
  """Writes the fixture one folder below tmp_path/download (as an archive unpacks), applies
  `damage(root)`, prepares it into tmp_path/data from tmp_path/download (from the dataset's
  own folder with `own`); returns (summary or error, root, out)."""
  download = tmp_path / "download"
  root = fixtures.WRITERS[task](os.fspath(download / "unpacked"))
  if damage:
    damage(root)
  before = _snapshot(download)
  out = tmp_path / "data"
  try:
    result = prepared.prepare(task, root if own else os.fspath(download), os.fspath(out),
                              progress=False, log=lambda line: None)
  except prepared.PrepareError as e:
    result = e
  assert _snapshot(download) == before  # prepare never writes into the download
  return result, root, out


def _entries(task, out):
  """The prepared splits, after checking their files exist and one case a split runs through
  the fine-tuning preprocessing."""
  splits = prepared.load_splits(task, os.fspath(out), fold=0)
  for split, entries in splits.items():
    if not entries:
      continue
    for entry in entries:
      for file in entry["image"] if isinstance(entry["image"], list) else [entry["image"]]:
        assert os.path.exists(file)
    sample = pipeline.prepare(tasks.get(task), entries[0])
    assert np.isfinite(sample["image"]).all()
  return splits


def _by_id(splits):
  return {e["id"]: e for entries in splits.values() if entries for e in entries}


@pytest.mark.parametrize("task", sorted(fixtures.WRITERS))
def test_prepare_counts_and_splits(task, tmp_path):
  summary, _, out = _run(task, tmp_path)
  assert not isinstance(summary, prepared.PrepareError), summary.problems
  assert summary["cases"] == fixtures.COUNTS[task]
  assert summary["layout"] == downloads.RECIPES[task].layouts[0].name  # ours, not the authors'
  _entries(task, out)


@pytest.mark.parametrize("own", [True, False], ids=["own_folder", "folder_above"])
@pytest.mark.parametrize("task", ["glas", "janowczyk_epithelium", "mmotu_seg", "mmotu_cls"])
def test_root_is_the_datasets_own_folder(task, own, tmp_path):
  # The archive's one folder (Warwick QU Dataset ..., epi, OTU_2d) is the root, found from
  # itself or from the folder it was unpacked into.
  summary, root, _ = _run(task, tmp_path, own=own)
  assert summary["source"] == root
  assert summary["layout"] == downloads.RECIPES[task].layouts[0].name
  assert summary["cases"] == fixtures.COUNTS[task]


@pytest.mark.parametrize("removed,layout", [("1_or_data", "stage1_crops"),
                                            ("2_preprocessed_data", "original")])
def test_ddti_layouts(removed, layout, tmp_path):
  root = fixtures.ddti(os.fspath(tmp_path / "download"))
  for d, _, names in os.walk(os.path.join(root, removed), topdown=False):
    for n in names:
      os.remove(os.path.join(d, n))
    os.rmdir(d)
  found, _ = downloads.find_root(downloads.get("ddti"), os.fspath(tmp_path / "download"))
  assert found.name == layout


def test_glas_reads_in_place_with_patients(tmp_path):
  summary, root, out = _run("glas", tmp_path)
  assert summary["converted"] == 0
  entries = _by_id(_entries("glas", out))
  assert entries["train_3"]["image"] == os.path.join(root, "train_3.bmp")
  assert {e["group"] for e in entries.values()} == {"1", "2", "3", "4", "5"}
  sample = pipeline.prepare(tasks.get("glas"), entries["testA_1"])
  anno = np.asarray(Image.open(os.path.join(root, "testA_1_anno.bmp")))
  np.testing.assert_array_equal(sample["label"], anno > 0)
  np.testing.assert_array_equal(sample["instances"], anno)


def test_cocahis_exports_images_and_masks(tmp_path):
  summary, root, out = _run("cocahis", tmp_path)
  assert summary["converted"] == 5
  entries = _by_id(_entries("cocahis", out))
  with h5py.File(os.path.join(root, "CoCaHis.hdf5"), "r") as f:
    raw, vote = f["HE/raw"][3], f["GT/GT_majority_vote"][3]
  case = entries["3_1"]
  assert case["group"] == "3"
  np.testing.assert_array_equal(np.asarray(Image.open(case["image"])), raw)
  np.testing.assert_array_equal(np.asarray(Image.open(case["label"])), vote.astype(np.uint8))


def test_monusac_rasterises_the_xml_per_class(tmp_path):
  summary, root, out = _run("monusac", tmp_path)
  assert summary["converted"] == 5
  entries = _by_id(_entries("monusac", out))
  classes = tasks.get("monusac").classes
  for case, names in (("TCGA-5P-A9K0-01Z-00-DX1_1", ("Epithelial", "Lymphocyte")),
                      ("TCGA-2Z-A9JG-01Z-00-DX1_1", ("Lymphocyte", "Ambiguous"))):
    expected = np.zeros((24, 28), np.uint8)
    for name in names:
      if name != "Ambiguous":  # left as background
        x0, y0, x1, y1 = fixtures.MONUSAC_RECTS[name]
        expected[y0:y1 + 1, x0:x1 + 1] = classes.index(name.lower())
    np.testing.assert_array_equal(np.asarray(Image.open(entries[case]["label"])), expected)
  assert entries["TCGA-5P-A9K0-01Z-00-DX1_1"]["group"] == "TCGA-5P-A9K0-01Z-00-DX1"


def _expected_patch(image, centre, size):
  height, width = image.shape[:2]
  left = min(max(int(round(centre[0])) - size // 2, 0), width - size)
  top = min(max(int(round(centre[1])) - size // 2, 0), height - size)
  return image[top:top + size, left:left + size]


def test_midog_cuts_patches_around_cells(tmp_path):
  summary, root, out = _run("midog21", tmp_path)
  splits = _entries("midog21", out)
  assert summary["converted"] == 5
  classes = tasks.get("midog21").classes
  whole = np.asarray(Image.open(os.path.join(root, "101.tiff")).convert("RGB"))
  test = {e["id"]: e for e in splits["test"]}
  for n, (category, centre) in enumerate(fixtures.MIDOG_CELLS[101]):
    entry = test[f"101_{4 + n}"]  # annotation ids run on from image 001's and 051's
    assert entry["label"] == classes.index("mitotic figure" if category == 1 else "imposter")
    assert entry["group"] == "101"
    np.testing.assert_array_equal(np.asarray(Image.open(entry["image"])),
                                  _expected_patch(whole, centre, 128))


def test_nucls_crops_nuclei_and_drops_ambiguous(tmp_path):
  _, root, out = _run("nucls", tmp_path)
  splits = _entries("nucls", out)
  classes = tasks.get("nucls").classes
  fov = next(iter(fixtures.NUCLS_FOVS))
  whole = np.asarray(Image.open(os.path.join(root, "rgb", fov + ".png")).convert("RGB"))
  train = {e["id"]: e for e in splits["train"]}
  assert sorted(train) == sorted(f"{name}_{i}" for name in list(fixtures.NUCLS_FOVS)[::2]
                                 for i in (0, 1))  # row 2 of the first is AMBIGUOUS
  assert [train[f"{fov}_{i}"]["label"] for i in (0, 1)] == [classes.index("tumor"),
                                                           classes.index("sTIL")]
  assert train[f"{fov}_0"]["group"] == "TCGA-A1-A0SP"
  np.testing.assert_array_equal(np.asarray(Image.open(train[f"{fov}_1"]["image"])),
                                _expected_patch(whole, (45, 35), 64))


def test_wsss4luad_labels_from_file_names_and_masks(tmp_path):
  _, root, out = _run("wsss4luad", tmp_path)
  assert sorted(os.listdir(out / "converted" / "labels")) == [
      "testing_00.json", "testing_01.json", "validation_00.json", "validation_01.json"]
  splits = _entries("wsss4luad", out)
  entries = _by_id(splits)
  assert entries["436219-7159-48281-[1, 1, 0]"]["label"] == [1, 1, 0]
  assert entries["1023469-11488-29436-[0, 0, 1]"]["group"] == "1023469"
  for split, part, prefix in (("val", "2.validation", "validation_"),
                              ("test", "3.testing", "testing_")):
    assert sorted(e["id"] for e in splits[split]) == [prefix + "00", prefix + "01"]
    for entry in splits[split]:
      n = entry["id"][len(prefix):]
      assert entry["image"] == os.path.join(root, part, "img", n + ".png")
      held = np.unique(np.asarray(Image.open(os.path.join(root, part, "mask", n + ".png"))))
      assert entry["label"] == [int(c in held) for c in range(3)]
      assert tuple(np.flatnonzero(entry["label"])) == fixtures.WSSS4LUAD_MASKS[part, n]


def test_jpeg_masks_binarise(tmp_path):
  _, root, out = _run("tn3k", tmp_path)
  entries = _by_id(_entries("tn3k", out))
  sample = pipeline.prepare(tasks.get("tn3k"), entries["test_0001"])
  blob = fixtures._blob()  # pylint: disable=protected-access
  np.testing.assert_array_equal(sample["label"], blob > 0)
  assert entries["test_0001"]["label"] == os.path.join(root, "test-mask", "0001.jpg")


def test_mmotu_classes_from_the_list(tmp_path):
  _, _, out = _run("mmotu_cls", tmp_path)
  splits = _entries("mmotu_cls", out)
  assert {e["id"]: e["label"] for e in splits["val"]} == {"8": 1, "13": 5}


# --- Bad downloads --------------------------------------------------------------------------------


def _problems(result):
  assert isinstance(result, prepared.PrepareError)
  return result.problems


def test_missing_case_is_reported(tmp_path):
  def damage(root):
    os.remove(os.path.join(root, "testB_1_anno.bmp"))
  problems = _problems(_run("glas", tmp_path, damage)[0])
  assert len(problems) == 1 and "1 of 6 cases" in problems[0]
  assert "testB_1_anno.bmp" in problems[0]


def test_mask_of_another_shape(tmp_path):
  def damage(root):
    Image.fromarray(np.zeros((20, 28), np.uint8)).save(
        os.path.join(root, "trainval-mask", "0001.jpg"))
  problems = _problems(_run("tn3k", tmp_path, damage)[0])
  assert len(problems) == 1 and "trainval-mask/0001.jpg" in problems[0]


def test_rgb_mask_where_grey_is_expected(tmp_path):
  def damage(root):
    colour = np.zeros((24, 28, 3), np.uint8)
    colour[3:9, 4:12] = (255, 0, 0)
    Image.fromarray(colour).save(os.path.join(root, "valid", "Annotation", "test_2.png"))
  problems = _problems(_run("crag", tmp_path, damage)[0])
  assert len(problems) == 1 and "Annotation/test_2.png" in problems[0]


def test_corrupt_image(tmp_path):
  def damage(root):
    with open(os.path.join(root, "images", "5.JPG"), "wb") as f:
      f.write(b"\xff\xd8\xff\xe0 truncated")
  problems = _problems(_run("mmotu_seg", tmp_path, damage)[0])
  assert len(problems) == 1 and "images/5.JPG" in problems[0]


def test_wsss4luad_mask_of_unknown_colours(tmp_path):
  def damage(root):
    colour = np.full((24, 28, 3), 255, np.uint8)
    colour[3:9, 4:12] = (0, 64, 128)  # tumor, as a copy saved in RGB reads it
    colour[12:15, 4:12] = (200, 10, 10)  # no class of the challenge
    Image.fromarray(colour).save(os.path.join(root, "3.testing", "mask", "01.png"))
  problems = _problems(_run("wsss4luad", tmp_path, damage)[0])
  assert len(problems) == 1 and "3.testing/mask/01.png" in problems[0]


def test_corrupt_monusac_annotation(tmp_path):
  def damage(root):
    xml = os.path.join(root, "MoNuSAC_images_and_annotations", "TCGA-5P-A9K0-01Z-00-DX1",
                       "TCGA-5P-A9K0-01Z-00-DX1_2.xml")
    with open(xml, "w", encoding="utf-8") as f:
      f.write("<Annotations><Annotation>")
  problems = _problems(_run("monusac", tmp_path, damage)[0])
  assert len(problems) == 1 and "TCGA-5P-A9K0-01Z-00-DX1_2.xml" in problems[0]


@pytest.mark.parametrize("task,file,text", [
    ("mmotu_cls", "val_cls.txt", "8.JPG\n"),
    ("tg3k", "tg3k-trainval.json", json.dumps({"train": [0, 1]})),
    ("tg3k", "tg3k-trainval.json", json.dumps([0, 1, 2])),
    ("midog21", "MIDOG.json", '{"images": [}'),
    ("glas", "Grade.csv", "name,grade\ntrain_1,benign\n"),
])
def test_malformed_list_names_the_file(task, file, text, tmp_path):
  def damage(root):
    with open(os.path.join(root, file), "w", encoding="utf-8") as f:
      f.write(text)
  with pytest.raises(ValueError, match=os.path.basename(file)):
    _run(task, tmp_path, damage)
