"""The 3D classification download recipes (CC-CCII, LUNA16, MRNet) run by prepare on tiny
copies of the official downloads (fixtures_cls3d)."""

import json
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from rasd_jax.data import downloads
from rasd_jax.data import pipeline
from rasd_jax.data import prepared
from rasd_jax.data import tasks
from rasd_jax.data.downloads import cls3d
from tests.data.downloads import fixtures_cls3d as fx


def _snapshot(folder):
  """{relative path: (size, mtime_ns)} of every file below `folder`."""
  found = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      info = os.stat(os.path.join(parent, name))
      found[os.path.relpath(os.path.join(parent, name), folder)] = (info.st_size,
                                                                     info.st_mtime_ns)
  return found


def _prepare(task, source, out):
  before = _snapshot(source)
  try:
    return prepared.prepare(task, source, out, threads=2, progress=False, log=lambda _: None)
  finally:
    assert _snapshot(source) == before  # prepare never writes into the download


def _problems(task, source, out):
  with pytest.raises(prepared.PrepareError) as error:
    _prepare(task, source, out)
  return error.value.problems


def _check_splits(task_name, out, fold=0):
  """load_splits gives existing files; one entry per split goes through the pipeline."""
  task = tasks.get(task_name)
  splits = prepared.load_splits(task_name, out, fold=fold)
  for split, entries in splits.items():
    if entries is None:
      continue
    for entry in entries:
      for path in entry["image"] if isinstance(entry["image"], list) else [entry["image"]]:
        assert os.path.exists(path), path
    sample = pipeline.prepare(task, entries[0])
    assert sample["image"].shape == (task.in_channels, *pipeline._input_size(task))
    assert np.isfinite(sample["image"]).all()
    assert sample["label"] == entries[0]["label"]
  return splits


# ---- MRNet


@pytest.mark.parametrize("label", ["abnormal", "acl", "meniscus"])
def test_mrnet(tmp_path, label):
  task = f"mrnet_{label}"
  source = tmp_path / "download"
  base = fx.write_mrnet(source)
  summary = _prepare(task, source, tmp_path / "data")
  assert summary["cases"] == fx.COUNTS[task]
  assert summary["layout"] == "MRNet-v1.0" and summary["converted"] == 0
  splits = _check_splits(task, tmp_path / "data")
  column = fx._MRNET_TASKS.index(label)
  for split, folder in (("train", "train"), ("val", "valid")):
    got = {e["id"]: e for e in splits[split]}
    assert {i: e["label"] for i, e in got.items()} == {
        exam: labels[column] for exam, labels in fx.MRNET_LABELS[folder].items()}
    first = got[sorted(got)[0]]
    assert first["image"] == [os.path.join(base, folder, plane, sorted(got)[0] + ".npy")
                              for plane in ("axial", "coronal", "sagittal")]
  assert splits["test"] is None


def test_mrnet_bad_downloads(tmp_path):
  source = tmp_path / "download"
  base = fx.write_mrnet(source)
  os.remove(os.path.join(base, "valid", "coronal", "1131.npy"))
  with open(os.path.join(base, "train", "sagittal", "0002.npy"), "r+b") as f:
    f.truncate(60)  # a corrupt (cut short) volume
  problems = _problems("mrnet_acl", source, tmp_path / "data")
  assert len(problems) == 2
  assert "1 of 5 cases" in problems[0] and "valid/coronal/1131.npy" in problems[0]
  assert "train/sagittal/0002.npy" in problems[1]


def test_mrnet_malformed_csv(tmp_path):
  source = tmp_path / "download"
  base = fx.write_mrnet(source)
  with open(os.path.join(base, "valid-meniscus.csv"), "w") as f:
    f.write("name,label\n1130,0\n")  # a header row: not the official file
  with pytest.raises(ValueError, match=r"valid-meniscus.csv, line 1"):
    _prepare("mrnet_meniscus", source, tmp_path / "data")


# ---- CC-CCII


def _cc_listed():
  listed = downloads.shipped("cc_ccii.json")["scans"]
  return {f: s for f, s in listed.items() if f in fx.CC_CCII_SCANS}


def test_cc_ccii_shipped_list():
  shipped = downloads.shipped("cc_ccii.json")
  assert shipped["source"]["commit"] == "38d0dae237d6d5df8fcdf2ab6a44162c18f96c15"
  scans = shipped["scans"]
  assert len(scans) == 4178
  for fold, (train, val) in enumerate(((2514, 1664), (2515, 1663), (2517, 1661))):
    splits = [s[fold] for s in scans.values()]
    assert (splits.count("t"), splits.count("v")) == (train, val)
    # patient-disjoint: no patient in both lists of a fold
    patients = {split: {f.split("/")[1] for f, s in scans.items() if s[fold] == split}
                for split in "tv"}
    assert not patients["t"] & patients["v"]
  assert set(_cc_listed()) == set(fx.CC_CCII_SCANS) - {fx.CC_CCII_UNLISTED}


def test_cc_ccii_partial_download(tmp_path):
  source = tmp_path / "download"
  fx.write_cc_ccii(source)
  problems = _problems("cc_ccii", source, tmp_path / "data")
  assert len(problems) == 1
  assert problems[0].startswith("4172 of 4178 cases of cc_ccii are missing from")
  assert "Normal_745_180 (Normal/745/180)" in problems[0] and "and 4167 more" in problems[0]


def _with_fixture_list(monkeypatch):
  """The shipped list restricted to the fixture's scans: a whole download is 4178 scans."""
  shipped = downloads.shipped("cc_ccii.json")
  restricted = {**shipped, "scans": _cc_listed()}
  monkeypatch.setattr(downloads, "shipped",
                      lambda name: restricted if name == "cc_ccii.json" else shipped(name))


def test_cc_ccii(tmp_path, monkeypatch):
  _with_fixture_list(monkeypatch)
  source = tmp_path / "download"
  base = fx.write_cc_ccii(source)
  out = tmp_path / "data"
  summary = _prepare("cc_ccii", source, out)
  assert summary["cases"] == fx.COUNTS["cc_ccii"]
  assert summary["layout"] == "CNCB zips" and summary["converted"] == 6
  classes = ("Normal", "CP", "NCP")
  for fold in range(3):
    splits = _check_splits("cc_ccii", out, fold)
    for split, letter in (("train", "t"), ("val", "v")):
      want = {f.replace("/", "_") for f, s in _cc_listed().items() if s[fold] == letter}
      assert {e["id"] for e in splits[split]} == want
  first = prepared.load_splits("cc_ccii", out)
  entries = {e["id"]: e for e in first["train"] + first["val"]}
  for folder, (_, names, size, mode) in fx.CC_CCII_SCANS.items():
    if folder == fx.CC_CCII_UNLISTED:
      continue
    entry = entries[folder.replace("/", "_")]
    assert entry["label"] == classes.index(folder.split("/")[0])
    assert entry["group"] == folder.split("/")[1]
    volume = np.load(entry["image"])
    assert volume.shape == (len(names), 512, 512) and volume.dtype == np.uint8
    # slice order: the number in the name (1, 2, 10), not the text order (1, 10, 2)
    order = sorted(range(len(names)), key=lambda i: int(names[i].split(".")[0]))
    for k, i in enumerate(order):
      grey = np.asarray(Image.open(os.path.join(base, folder, names[i])).convert("L"))
      if size != 512:
        grey = np.asarray(Image.fromarray(grey).resize((512, 512), Image.BILINEAR))
      np.testing.assert_array_equal(volume[k], grey)
  full = np.load(entries["Normal_742_177"]["image"])  # 512 px slices: stacked untouched
  np.testing.assert_array_equal(full[1], fx.cc_ccii_slice("Normal/742/177", 1, 512, "L"))


def test_cc_ccii_bad_downloads(tmp_path, monkeypatch):
  _with_fixture_list(monkeypatch)
  source = tmp_path / "download"
  base = fx.write_cc_ccii(source)
  for name in os.listdir(os.path.join(base, "CP/0/3131")):
    os.remove(os.path.join(base, "CP/0/3131", name))  # an empty scan folder
  with open(os.path.join(base, "NCP/18/1168/0001.png"), "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n broken")
  shutil.rmtree(os.path.join(base, "Normal/743/178"))
  problems = _problems("cc_ccii", source, tmp_path / "data")
  assert len(problems) == 3
  assert "1 of 6 cases" in problems[0] and "Normal/743/178" in problems[0]
  assert any("CP/0/3131" in p and "no slice images" in p for p in problems[1:])
  assert any("NCP/18/1168/0001.png" in p for p in problems[1:])


def test_cc_ccii_authors_volumes(tmp_path, monkeypatch):
  _with_fixture_list(monkeypatch)
  source = tmp_path / "download" / "npy"
  source.mkdir(parents=True)
  for folder in _cc_listed():
    _, patient, scan = folder.split("/")
    np.save(source / f"p{patient}-s{scan}.npy", np.full((3, 64, 64), 7, np.uint8))
  summary = _prepare("cc_ccii", tmp_path / "download", tmp_path / "data")
  assert summary["layout"] == "authors' volumes" and summary["cases"] == fx.COUNTS["cc_ccii"]
  _check_splits("cc_ccii", tmp_path / "data")


# ---- LUNA16


def _expected_cube(number, voxel):
  """The NCC cube, computed independently: 48^3 (z, y, x) around the voxel, shifted inside
  the scan, HU truncated to [-1000, 600], rescaled to 0-255 over the truncated scan."""
  volume = fx.luna_volume(number).astype(np.float64)
  clipped = np.clip(volume, -1000, 600)
  lo, hi = clipped.min(), clipped.max()
  starts = [min(max(c - 24, 0), n - 48) for c, n in zip(voxel[::-1], volume.shape)]
  cube = clipped[tuple(slice(s, s + 48) for s in starts)]
  assert cube.shape == (48, 48, 48)
  return np.rint((cube - lo) / (hi - lo) * 255).astype(np.uint8)


def test_luna16(tmp_path):
  source = tmp_path / "download"
  base = fx.write_luna16(source)
  out = tmp_path / "data"
  summary = _prepare("luna16", source, out)
  assert summary["cases"] == fx.COUNTS["luna16"]
  assert summary["layout"] == "LUNA16" and summary["converted"] == len(fx.LUNA_CANDIDATES)
  splits = _check_splits("luna16", out)
  subsets = {"train": (0, 1, 2, 3, 4, 5), "val": (6,), "test": (7, 8, 9)}
  for split, entries in splits.items():
    for entry in entries:
      row = int(entry["id"][len("candidate"):]) - 1
      number, voxel, label = fx.LUNA_CANDIDATES[row]
      assert fx.LUNA_SCANS[number][0] in subsets[split]
      assert entry["label"] == label and entry["group"] == fx.LUNA_UID.format(number)
      np.testing.assert_array_equal(np.load(entry["image"]), _expected_cube(number, voxel))
  assert os.path.isfile(os.path.join(base, "annotations.csv"))


def test_luna16_voxel_follows_transform_matrix():
  # axes x and y swapped: world x runs along image axis 1
  header = {"Offset": "10 20 30", "ElementSpacing": "2 4 5",
            "TransformMatrix": "0 1 0 1 0 0 0 0 1"}
  world = (10 + 3 * 4, 20 + 7 * 2, 30 + 2 * 5)  # index (i0, i1, i2) = (7, 3, 2)
  assert list(cls3d._voxel(header, world)) == [2, 3, 7]


def test_luna16_bad_downloads(tmp_path):
  source = tmp_path / "download"
  base = fx.write_luna16(source)
  shutil.rmtree(os.path.join(base, "subset3"))  # one subset not unpacked
  os.makedirs(os.path.join(base, "subset3"))
  raw = os.path.join(base, "subset8", fx.LUNA_UID.format(808) + ".raw")
  with open(raw, "r+b") as f:
    f.truncate(1000)
  problems = _problems("luna16", source, tmp_path / "data")
  uid = fx.LUNA_UID.format(303)
  assert problems[0].startswith("2 of 11 cases of luna16 are missing")
  assert f"candidate000006 (subset?/{uid}.mhd)" in problems[0]
  assert len(problems) == 3 and all(raw in p and "bytes of data" in p for p in problems[1:])


def test_luna16_malformed_candidates(tmp_path):
  source = tmp_path / "download"
  base = fx.write_luna16(source)
  with open(os.path.join(base, "candidates.csv"), "a") as f:
    f.write("1.3.6.1.4.1.14519.5.2.1.6279.6001.9,-1.5,x,3\n")
  with pytest.raises(ValueError, match=r"candidates.csv, line 13"):
    _prepare("luna16", source, tmp_path / "data")


@pytest.mark.parametrize("paths", ["stale", "relative", "absolute"])
def test_luna16_ncc_cubes(tmp_path, paths):
  source = tmp_path / "download"
  base = fx.write_luna16_ncc_cubes(source, paths)
  out = tmp_path / "data"
  summary = _prepare("luna16", source, out)
  assert summary["layout"] == "Medical-SSL NCC cubes"
  assert summary["cases"] == {"train": 6, "val": 3, "test": 3} and summary["converted"] == 0
  splits = _check_splits("luna16", out)
  csvs = {"train": ("train_0.csv", "train_1.csv"), "val": ("valid.csv",), "test": ("test.csv",)}
  for split, names in csvs.items():
    want = [(name, label, os.path.join(base, folder, name + ".npy"))
            for csv_name in names for label, folder, name in fx.LUNA_CUBES[csv_name]]
    assert [(e["id"], e["label"], e["image"]) for e in splits[split]] == want
  assert {e["group"] for e in splits["train"]} == {"0_3", "5_11"}


def test_luna16_ncc_cubes_bad(tmp_path):
  source = tmp_path / "download"
  base = fx.write_luna16_ncc_cubes(source)
  os.remove(os.path.join(base, "1_aug_monai", "0_3_1_aug_1.npy"))
  nan = np.full((16, 16, 16), np.nan, np.float32)
  np.save(os.path.join(base, "0", "6_2_0.npy"), nan)
  problems = _problems("luna16", source, tmp_path / "data")
  assert len(problems) == 2
  assert "1 of 12 cases" in problems[0] and "1_aug_monai/0_3_1_aug_1.npy" in problems[0]
  assert "0/6_2_0.npy" in problems[1] and "NaN" in problems[1]
  with open(os.path.join(base, "MG_split", "valid.csv"), "w") as f:
    f.write("label,path\n")  # a header row: the preparation writes none
  with pytest.raises(ValueError, match=r"valid.csv, line 1"):
    _prepare("luna16", source, tmp_path / "data2")


def test_recipes_name_their_tasks():
  for task in fx.WRITERS:
    recipe = downloads.get(task)
    assert recipe.page.startswith("http") and recipe.notes
    assert tasks.get(task).kind == "classification"
  assert json.loads(json.dumps(fx.COUNTS)) == fx.COUNTS
