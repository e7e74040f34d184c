"""The seg3d_b download recipes, run by prepare on tiny copies of the official downloads
(fixtures_seg3d_b): counts, converted files, the prepared splits, partial and bad downloads."""

import gzip
import os

import fixtures_seg3d_b as fixtures
import nibabel as nib
import numpy as np
import pytest

from rasd_jax.data import pipeline, prepared, tasks

ALL = sorted(fixtures.WRITERS)


def _tree(folder):
  """{relative path: (size, mtime_ns)} of every file below `folder`."""
  tree = {}
  for parent, _, names in os.walk(folder):
    for name in names:
      info = os.stat(os.path.join(parent, name))
      tree[os.path.relpath(os.path.join(parent, name), folder)] = (info.st_size, info.st_mtime_ns)
  return tree


def _download(tmp_path, task, **options):
  """The fixture of `task` as a user unpacks it: into download/<task>/ (the archive's own top
  folder, where it has one, below that); returns the folder given to prepare."""
  fixtures.WRITERS[task](os.fspath(tmp_path / "download" / task), **options)
  return tmp_path / "download"


def _prepare(task, source, out):
  before = _tree(source)
  try:
    return prepared.prepare(task, source, out, progress=False, log=lambda line: None)
  finally:
    assert _tree(source) == before, "prepare wrote into the download"


def _problems(task, source, out):
  with pytest.raises(prepared.PrepareError) as error:
    _prepare(task, source, out)
  return error.value.problems


def _check_prepared(task, source, out, summary):
  """The summary's counts, every fold's entries, and one case of each split through the data
  side of a fine-tuning step."""
  assert summary["cases"] == fixtures.COUNTS[task]
  assert summary["empty_labels"] == []
  spec = tasks.get(task)
  for fold in range(spec.folds):
    for split, entries in prepared.load_splits(task, out, fold=fold).items():
      assert (entries is None) == (split == "test")
      for entry in entries or ():
        assert os.path.isfile(entry["image"]) and os.path.isfile(entry["label"]), entry
        # Read in place: only a conversion lies outside the download.
        assert entry["image"].startswith(os.fspath(source)), entry
  splits = prepared.load_splits(task, out)
  detailed = set(fixtures.detailed(task))
  for split in ("train", "val"):
    entry = next(e for e in splits[split] if e["id"] in detailed)
    sample = pipeline.prepare(spec, entry)
    assert sample["image"].shape[0] == 1 and sample["image"].shape[1:] == sample["label"].shape
    assert 0 < sample["label"].max() < spec.num_classes


@pytest.mark.parametrize("task", [t for t in ALL if t != "totalsegmentator"])
def test_prepare_official_download(tmp_path, task):
  source, out = _download(tmp_path, task), tmp_path / "data"
  _check_prepared(task, source, out, _prepare(task, source, out))


def test_covid_folds(tmp_path):
  """The authors' five folds: fold k validates on the cases marked k."""
  out = tmp_path / "data"
  _prepare("covid19_20", _download(tmp_path, "covid19_20"), out)
  folds = fixtures.split_list("covid19_20")["folds"]
  for k in range(5):
    splits = prepared.load_splits("covid19_20", out, fold=k)
    assert [e["id"] for e in splits["val"]] == folds[k]
    assert len(splits["train"]) == 199 - len(folds[k])
    assert not {e["id"] for e in splits["train"]} & set(folds[k])


@pytest.mark.parametrize("task", ALL)
def test_partial_download(tmp_path, task):
  """A copy holding only some listed cases: one line, how many are missing and which."""
  source = _download(tmp_path, task, complete=False)
  listed = fixtures.split_list(task)
  ids = dict.fromkeys(i for ids in listed.get("folds", [listed.get("train"), listed.get("val")])
                      for i in ids)
  absent = [i for i in ids if i not in fixtures.detailed(task)]
  problems = _problems(task, source, tmp_path / "data")
  assert len(problems) == 1, problems
  assert problems[0].startswith(f"{len(absent)} of {len(ids)} cases of {task} are missing")
  assert absent[0] in problems[0]


@pytest.fixture(scope="module")
def totalsegmentator(tmp_path_factory):
  """The TotalSegmentator copy (31 cases, 104 masks each: the slowest to write), prepared."""
  tmp_path = tmp_path_factory.mktemp("totalsegmentator")
  source, out = _download(tmp_path, "totalsegmentator"), tmp_path / "data"
  return source, out, _prepare("totalsegmentator", source, out)


def test_totalsegmentator(totalsegmentator):
  """The 104 binary masks of a case become one label map, structure k (v1 order) -> k."""
  source, out, summary = totalsegmentator
  _check_prepared("totalsegmentator", source, out, summary)
  assert summary["converted"] == 31  # s0970 is in both lists, prepared once
  entries = prepared.load_splits("totalsegmentator", out)
  assert [e["id"] for e in entries["val"]].count("s0970") == 1
  assert "s0970" in [e["id"] for e in entries["train"]]
  case = fixtures.detailed("totalsegmentator")[0]
  entry = next(e for e in entries["train"] + entries["val"] if e["id"] == case)
  folder = source / "totalsegmentator" / "Totalsegmentator_dataset" / case
  masks = np.stack([np.asarray(nib.load(folder / "segmentations" / f"{name}.nii.gz").dataobj)
                    for name in fixtures.STRUCTURES])
  assert masks.sum(0).max() == 1  # the fixture's structures do not overlap
  expected = np.tensordot(np.arange(1, 105), masks, axes=1)
  label = nib.load(entry["label"])
  np.testing.assert_array_equal(np.asarray(label.dataobj), expected)
  np.testing.assert_allclose(label.affine, nib.load(folder / "ct.nii.gz").affine)
  assert entry["image"] == os.fspath(folder / "ct.nii.gz")
  assert tasks.get("totalsegmentator").classes[1:] == fixtures.STRUCTURES


@pytest.mark.parametrize("task,option,layout", [
    ("btcv", "monai", "monai"),
    ("verse20", "bids", "bids, one folder per archive"),
    ("bhsd", "suffixless", "label_192"),
])
def test_other_distributions(tmp_path, task, option, layout):
  source, out = _download(tmp_path, task, **{option: True}), tmp_path / "data"
  summary = _prepare(task, source, out)
  assert summary["layout"] == layout and summary["cases"] == fixtures.COUNTS[task]
  entries = {e["id"]: e for e in prepared.load_splits(task, out)["train"]}
  if task == "verse20":  # the authors' MICCAI names, found in the BIDS release
    entry = entries["verse401_verse201_CT-iso"]
    assert entry["image"].endswith(
        "dataset-01training/rawdata/sub-verse401/sub-verse401_split-verse201_dir-iso_ct.nii.gz")
    assert entry["label"].endswith("sub-verse401_split-verse201_dir-iso_seg-vert_msk.nii.gz")
  if task == "bhsd":  # the suffix-less files copied with the suffix, unchanged
    assert summary["converted"] == 192
    case = fixtures.detailed("bhsd")[0]
    for key, folder in (("image", "images"), ("label", "ground truths")):
      original = source / "bhsd" / "label_192" / folder / case
      converted = nib.load(entries[case][key])
      np.testing.assert_array_equal(converted.get_fdata(),
                                    nib.Nifti1Image.from_bytes(
                                        gzip.decompress(original.read_bytes())).get_fdata())


def _replace(file, data=None, affine=fixtures.AFFINE, raw=None):
  os.remove(file)
  if raw is not None:
    with open(file, "wb") as f:
      f.write(raw)
  else:
    fixtures.nifti(os.fspath(file), data, affine)


# Typical bad downloads: each problem line names the file at fault.
_SEGTHOR = "download/segthor/train"


def _bad_shape(tmp_path, case):
  _replace(tmp_path / _SEGTHOR / case / "GT.nii.gz", fixtures.label_map((1, 2), 0, (12, 10, 7)))
  return f"train/{case}/GT.nii.gz"


def _nan_volume(tmp_path, case):
  image = fixtures.ct(0).astype(np.float32)
  image[3, 4, 5] = np.nan
  _replace(tmp_path / _SEGTHOR / case / f"{case}.nii.gz", image)
  return f"train/{case}/{case}.nii.gz"


def _corrupt(tmp_path, case):
  file = tmp_path / _SEGTHOR / case / f"{case}.nii.gz"
  _replace(file, raw=file.read_bytes()[:200])
  return f"train/{case}/{case}.nii.gz"


def _unknown_class(tmp_path, case):
  _replace(tmp_path / _SEGTHOR / case / "GT.nii.gz", fixtures.label_map((1, 5), 0))
  return f"train/{case}/GT.nii.gz"


def _missing_case(tmp_path, case):
  os.remove(tmp_path / _SEGTHOR / case / "GT.nii.gz")
  return f"train/{case}/GT.nii.gz"


@pytest.mark.parametrize("damage", [_bad_shape, _nan_volume, _corrupt, _unknown_class,
                                    _missing_case])
def test_bad_download(tmp_path, damage):
  source = _download(tmp_path, "segthor")
  case = fixtures.detailed("segthor")[1]
  file = damage(tmp_path, case)
  problems = _problems("segthor", source, tmp_path / "data")
  assert len(problems) == 1 and file in problems[0], problems


def test_totalsegmentator_missing_mask(tmp_path):
  """A case lacking one of its masks is a missing case, named with the mask (the partial copy
  keeps the test fast: the case is listed first, before the absent ones)."""
  source = _download(tmp_path, "totalsegmentator", complete=False)
  case = fixtures.detailed("totalsegmentator")[0]
  mask = f"{case}/segmentations/rib_left_7.nii.gz"
  os.remove(source / "totalsegmentator" / "Totalsegmentator_dataset" / mask)
  problems = _problems("totalsegmentator", source, tmp_path / "data")
  assert len(problems) == 1 and problems[0].startswith("30 of 31 cases")
  assert f"{case} ({mask})" in problems[0]


def test_totalsegmentator_v2_refused(tmp_path):
  """v2 (117 structures, heart.nii.gz instead of the heart's five parts) has another class map:
  not taken for v1."""
  source = _download(tmp_path, "totalsegmentator", complete=False)
  for folder, _, names in os.walk(source):
    if "heart_myocardium.nii.gz" in names:
      os.rename(os.path.join(folder, "heart_myocardium.nii.gz"),
                os.path.join(folder, "heart.nii.gz"))
  with pytest.raises(FileNotFoundError, match="heart_myocardium"):
    prepared.prepare("totalsegmentator", source, tmp_path / "data", progress=False)


def test_msd_leftovers_ignored(tmp_path):
  """The macOS ._ files of the MSD tar and its unlabelled imagesTs are never listed."""
  out = tmp_path / "data"
  _prepare("msd09", _download(tmp_path, "msd09"), out)
  splits = prepared.load_splits("msd09", out)
  paths = [e[k] for entries in (splits["train"], splits["val"]) for e in entries
           for k in ("image", "label")]
  assert not [p for p in paths if "/._" in p or "imagesTs" in p]
