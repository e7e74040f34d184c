"""Train / validation / test splits of a task's case lists, as the dataset's protocol says.

Official lists are kept. What a dataset does not ship is held out of its training list by
patient ("group"; a case without one is its own group), so that one patient's cases never land
in two splits, and from a fixed permutation, so that every seed and training fraction is
scored on the same validation and test cases. Where the protocol is k-fold cross-validation,
the test split is one of k patient-disjoint folds.
"""

import json
import math

import numpy as np

_HOLD_OUT_SEED = 0  # one permutation of the groups for every run


def _group(entry):
  """The patient of a case; a case without one is its own group (listed twice: still one)."""
  return ("group", entry["group"]) if "group" in entry else ("case", json.dumps(entry["image"]))


def make_splits(lists, *, source, folds=None, fold=0, hold_out=0.2, train_fraction=1.0, seed=0,
                test=True):
  """lists: {"train": entries, "val": entries or None, "test": entries or None} from
  load_splits (or the user's lists); entries are dicts {image, label, id, and "group" when the
  layout knows the patient}. Returns {"train", "val", "test"}: lists of those entries.

  - An official validation or test list is kept; a test list with an unlabelled case does not
    count (the MSD imagesTs lists). A training case of a group (or, without one, an image) that
    an official list holds leaves training (TotalSegmentator lists case 0970 in both).
  - `folds` = k (k-fold cross-validation, for data without official folds or test list): the
    groups are dealt, in the fixed permutation, each to the fold holding the fewest cases so
    far, and fold `fold` is the test split. Without `folds`, `fold` is not used here (official
    folds are picked by tasks.load_splits).
  - A missing split takes the first groups of the fixed permutation until it holds
    max(1, round(hold_out * n)) cases, n the training list's size: validation first, then test.
  - The remaining training cases are shuffled with `seed` and the first
    max(1, ceil(train_fraction * n)) kept (`training_subset`). `seed=None`: all of them, in
    their listed order (what a prepared dataset stores; each run takes its subset:
    data.tfds_source).
  - `test=False` (the reference's protocol: the best validation score is the result): no
    test split ("test" is None), an official test list is not used, and with `folds` the
    fold `fold` is the validation split.
  Errors (ValueError naming `source`): a fold out of range, unlabelled training or validation
  cases, no training case left.
  """
  if not 0 < hold_out < 1:
    raise ValueError(f"{source}: hold_out {hold_out} must be in (0, 1)")
  if not 0 < train_fraction <= 1 or (seed is None and train_fraction != 1):
    raise ValueError(f"{source}: train_fraction {train_fraction} must be in (0, 1] (1 without "
                     "a seed)")
  held_out_test = test
  listed, val = lists["train"] or [], lists.get("val") or None
  test = (lists.get("test") or None) if held_out_test else None
  if folds is not None and folds < 2:
    raise ValueError(f"{source}: folds {folds}: cross-validation needs at least 2 folds")
  if folds is not None and not 0 <= fold < folds:
    raise ValueError(f"fold {fold} of {source}: it has {folds} folds (0-{folds - 1})")
  for name, entries in (("training", listed), ("validation", val)):
    unlabelled = [e.get("id", e["image"]) for e in entries or () if e.get("label") is None]
    if unlabelled:
      raise ValueError(f"{source}: every {name} case needs a label; {len(unlabelled)} have "
                       f"none, e.g. {unlabelled[0]}")
  if test is not None and any(e.get("label") is None for e in test):
    test = None
  if folds is not None and test is not None:
    raise ValueError(f"{source}: {folds}-fold cross-validation holds out its own test fold, "
                     "but the data has a labelled test list")
  official = {_group(e) for e in (val or []) + (test or [])}
  training = [e for e in listed if _group(e) not in official]

  # Group -> indices of its training cases, groups in the order they first appear.
  members = {}
  for i, entry in enumerate(training):
    members.setdefault(_group(entry), []).append(i)
  groups = list(members)
  ranked = [groups[i] for i in np.random.default_rng(_HOLD_OUT_SEED).permutation(len(groups))]
  target = max(1, round(hold_out * len(training)))

  def take(candidates):
    held, count = [], 0
    for group in candidates:
      if count >= target:
        break
      held.append(group)
      count += len(members[group])
    return held

  def cases(held):
    return [training[i] for i in sorted(i for group in held for i in members[group])]

  if folds is not None:
    sizes, test_groups = [0] * folds, set()
    for group in ranked:
      lightest = sizes.index(min(sizes))
      sizes[lightest] += len(members[group])
      if lightest == fold:
        test_groups.add(group)
    ranked = [g for g in ranked if g not in test_groups]
    if held_out_test:
      test = cases(test_groups)
    else:
      val = cases(test_groups)
  if val is None:
    held = take(ranked)
    ranked, val = ranked[len(held):], cases(held)
  if test is None and held_out_test:
    held = take(ranked)
    ranked, test = ranked[len(held):], cases(held)
  train = cases(ranked)
  if not train or not val or (held_out_test and not test):
    raise ValueError(f"{source}: {len(listed)} training cases ({len(listed) - len(training)} "
                     f"of patients in the official lists) in {len(groups)} groups leave "
                     f"{len(train)} to train on, {len(val)} to validate and {len(test)} to test; "
                     "add cases or official lists")
  if seed is not None:
    train = training_subset(train, train_fraction, seed)
  return {"train": train, "val": val, "test": test}


def training_subset(train, train_fraction, seed):
  """The training cases a run uses: `train` shuffled with `seed`, the first
  max(1, ceil(train_fraction * n)) kept."""
  train = [train[i] for i in np.random.default_rng(seed).permutation(len(train))]
  return train[:max(1, math.ceil(train_fraction * len(train)))]
