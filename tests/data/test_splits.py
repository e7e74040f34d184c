"""make_splits: patients kept in one split, the same held-out cases for every seed, k folds,
official lists; on the lists of download recipes and on plain lists."""

import math
import os

import numpy as np
import pytest

from rasd_jax.data import downloads, prepared, splits, tasks

SEEDS_AND_FRACTIONS = [(0, 1.0), (1, 1.0), (7, 1.0), (3, 0.4)]


def _touch(path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  open(path, "w").close()  # listing checks that files exist; nothing here reads them


def _patients(entries):
  return {e["group"] for e in entries}


def _check_apart(out):
  """No patient in two splits."""
  train, val, test = (_patients(out[s]) for s in ("train", "val", "test"))
  assert not train & val and not train & test and not val & test


def _over_seeds(lists, source, **kwargs):
  """make_splits for several seeds and fractions: the same val and test every time, the same
  training cases at fraction 1 and ceil(f * n) of them otherwise."""
  first = splits.make_splits(lists, source=source, **kwargs)
  for seed, fraction in SEEDS_AND_FRACTIONS:
    out = splits.make_splits(lists, source=source, seed=seed, train_fraction=fraction, **kwargs)
    _check_apart(out)
    assert out["val"] == first["val"] and out["test"] == first["test"]
    ids = [e["id"] for e in out["train"]]
    assert len(ids) == max(1, math.ceil(fraction * len(first["train"])))
    assert set(ids) <= {e["id"] for e in first["train"]}
    if fraction == 1.0:
      assert sorted(ids) == sorted(e["id"] for e in first["train"])
  return first


def _listed(task, root):
  """The lists of `task`'s download in `root` as its recipe names them (fold 0), without
  reading a file (prepare would: these files are empty)."""
  layout, found = downloads.find_root(downloads.get(task), root)
  listing = layout.cases(found)
  return prepared.splits_of(listing.cases, listing.folds)


def test_patients_with_several_scans_stay_together():
  """CC-CCII: 1 to 5 scans a patient; an official validation list; the test split held out of
  the training list by whole patients, just enough of them to reach 20% of the cases."""
  train = {patient: 1 + patient % 5 for patient in range(1, 15)}
  lists = {"train": [{"image": f"/d/p{p}-s{s}.npy", "label": p % 3, "id": f"p{p}-s{s}",
                      "group": str(p)} for p, count in train.items() for s in range(count)],
           "val": [{"image": f"/d/p{p}-s0.npy", "label": 0, "id": f"p{p}-s0", "group": str(p)}
                   for p in (100, 101)], "test": None}
  out = _over_seeds(lists, "cc_ccii")
  assert out["val"] == lists["val"]  # the official validation list
  n = sum(train.values())
  target = round(0.2 * n)
  held = [str(p) for p in train if str(p) in _patients(out["test"])]
  assert sorted(e["id"] for e in out["test"]) == sorted(
      f"p{p}-s{s}" for p in held for s in range(train[int(p)]))
  assert len(out["test"]) >= target > len(out["test"]) - max(train[int(p)] for p in held)
  assert len(out["train"]) + len(out["test"]) == n


def test_tnbc_folders_hold_validation_out_by_patient(tmp_path):
  images = {patient: 1 + patient % 4 for patient in range(1, 12)}
  for patient, count in images.items():
    for n in range(1, count + 1):
      _touch(str(tmp_path / f"TNBC/Slide_{patient:02d}/{patient:02d}_{n}.png"))
      _touch(str(tmp_path / f"TNBC/GT_{patient:02d}/{patient:02d}_{n}.png"))
  lists = _listed("tnbc", tmp_path)
  assert _patients(lists["train"]) == {f"{p:02d}" for p in range(1, 9)}
  assert _patients(lists["test"]) == {"09", "10", "11"} and lists["val"] is None
  out = _over_seeds(lists, "tnbc")
  assert out["test"] == lists["test"]  # the official patients 9-11
  for patient in _patients(out["val"]):  # every image of a validation patient
    assert sum(e["group"] == patient for e in out["val"]) == images[int(patient)]


def test_cross_validation_folds_partition_the_patients(tmp_path):
  task = tasks.get("janowczyk_epithelium")
  images = {patient: 1 + patient % 4 for patient in range(10, 21)}  # 11 patients
  for patient, count in images.items():
    for n in range(count):
      _touch(os.path.join(tmp_path, f"epi/{patient}_500_f{patient:03d}{n}_original.tif"))
      _touch(os.path.join(tmp_path, f"epi/{patient}_500_f{patient:03d}{n}_mask.png"))
  lists = _listed(task.name, tmp_path)
  tests = []
  for fold in range(task.cv_folds):
    out = _over_seeds(lists, task.name, folds=task.cv_folds, fold=fold)
    tests.append(_patients(out["test"]))
    assert len(out["train"]) + len(out["val"]) + len(out["test"]) == sum(images.values())
  assert all(tests) and set().union(*tests) == {str(p) for p in images}
  assert sum(map(len, tests)) == len(images)  # each patient in exactly one test fold
  # Dealt to the lightest fold: fold sizes differ by at most the largest patient.
  sizes = [sum(images[int(p)] for p in fold) for fold in tests]
  assert max(sizes) - min(sizes) <= max(images.values())
  with pytest.raises(ValueError, match="fold 5 of janowczyk_epithelium: it has 5 folds \\(0-4\\)"):
    splits.make_splits(lists, source=task.name, folds=task.cv_folds, fold=5)


def _entries(n, groups=None, labelled=True):
  return [{"image": f"/data/{i}.png", "label": i % 2 if labelled else None, "id": str(i),
           **({} if groups is None else {"group": f"g{groups[i]}"})} for i in range(n)]


def test_ungrouped_cases_are_held_out_as_before():
  """Cases without a group: 20% each for validation and test from one permutation (seed 0),
  the rest shuffled with the run's seed: the hold-out the fine-tuning job always made."""
  entries = _entries(23)
  order = np.random.default_rng(0).permutation(23)
  k = round(0.2 * 23)
  for seed in (0, 5):
    out = splits.make_splits({"train": entries, "val": None, "test": None}, source="s",
                             seed=seed)
    assert out["val"] == [entries[i] for i in sorted(order[:k])]
    assert out["test"] == [entries[i] for i in sorted(order[k:2 * k])]
    rest = [entries[i] for i in sorted(order[2 * k:])]
    assert out["train"] == [rest[i] for i in np.random.default_rng(seed).permutation(len(rest))]


def test_plain_lists_with_patients():
  rng = np.random.default_rng(3)
  entries = _entries(40, groups=rng.integers(0, 12, 40))
  out = _over_seeds({"train": entries, "val": None, "test": None}, "lists")
  assert len(out["val"]) >= 8 and len(out["test"]) >= 8
  # k folds of plain lists, no patient in two folds.
  folds = [_patients(splits.make_splits({"train": entries}, source="lists", folds=3,
                                        fold=fold)["test"]) for fold in range(3)]
  assert set().union(*folds) == _patients(entries) and sum(map(len, folds)) == 12


def test_official_lists_are_used_and_their_patients_leave_training():
  entries = _entries(20, groups=[i // 2 for i in range(20)])  # patients g0..g9, 2 cases each
  val = [{"image": "/v/0.png", "label": 0, "id": "v0", "group": "g3"}]
  test = [{"image": "/t/0.png", "label": 1, "id": "t0", "group": "g100"}]
  out = splits.make_splits({"train": entries, "val": val, "test": test}, source="lists")
  assert out["val"] == val and out["test"] == test
  assert "g3" not in _patients(out["train"]) and len(out["train"]) == 18
  # Without groups, a case listed for training and validation (TotalSegmentator's 0970) is
  # validated only.
  plain = _entries(6)
  out = splits.make_splits({"train": plain, "val": plain[2:3]}, source="lists")
  assert out["val"] == plain[2:3] and plain[2] not in out["train"] + out["test"]
  assert len(out["train"]) + len(out["test"]) == 5
  # A test list without labels (the MSD imagesTs) does not count: test cases are held out.
  unlabelled = [{"image": "/t/0.png", "id": "t0"}]
  out = splits.make_splits({"train": entries, "val": val, "test": unlabelled}, source="lists")
  assert out["val"] == val and out["test"] != unlabelled and len(out["test"]) >= 4
  _check_apart(out)
  with pytest.raises(ValueError, match="lists: 3-fold cross-validation .* a labelled test list"):
    splits.make_splits({"train": entries, "val": val, "test": test}, source="lists", folds=3)


@pytest.mark.parametrize("lists, kwargs, message", [
    ({"train": _entries(5, labelled=False)}, {}, "my data: every training case needs a label"),
    ({"train": _entries(5), "val": _entries(2, labelled=False)}, {},
     "my data: every validation case needs a label"),
    ({"train": _entries(1)}, {}, "my data: 1 training cases .* leave 0 to train on"),
    ({"train": _entries(6, groups=[0] * 6)}, {}, "my data: 6 training cases .* in 1 groups"),
    ({"train": _entries(9)}, {"folds": 3, "fold": 3}, r"fold 3 of my data: it has 3 folds \(0-2\)"),
    ({"train": _entries(9)}, {"folds": 3, "fold": -1}, "fold -1 of my data"),
    ({"train": _entries(9)}, {"folds": 1}, "at least 2 folds"),
    ({"train": _entries(9)}, {"hold_out": 0.0}, "hold_out"),
    ({"train": _entries(9)}, {"train_fraction": 1.5}, "train_fraction")])
def test_errors_name_the_source(lists, kwargs, message):
  with pytest.raises(ValueError, match=message):
    splits.make_splits(lists, source="my data", **kwargs)


def test_paper_protocol_holds_out_no_test():
  """test=False: no test split, an official test list unused, and with k folds the fold is
  the validation split; the training cases are all the others."""
  entries = [{"image": f"/d/{i}.png", "label": i % 2, "id": str(i)} for i in range(20)]
  official = [{"image": "/d/t.png", "label": 0, "id": "t"}]
  paper = splits.make_splits({"train": entries, "val": None, "test": official}, source="s",
                             test=False)
  assert paper["test"] is None and len(paper["val"]) == 4 and len(paper["train"]) == 16
  heldout = splits.make_splits({"train": entries, "val": None, "test": official}, source="s")
  assert heldout["test"] == official and heldout["val"] == paper["val"]
  folded = splits.make_splits({"train": entries, "val": None, "test": None}, source="s",
                              folds=5, fold=2, test=False)
  tested = splits.make_splits({"train": entries, "val": None, "test": None}, source="s",
                              folds=5, fold=2)
  assert folded["test"] is None and folded["val"] == tested["test"]
  assert len(folded["train"]) == 16
