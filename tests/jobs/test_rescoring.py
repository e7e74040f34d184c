"""A fine-tuning run's numbers checked from outside: the test predictions it saves
(W/predictions/, on each image file's grid) re-scored with MONAI's metrics against the label
files as downloaded, in their own voxel spacing, equal the test scores in W/results.json."""

import json
import os
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_surface_dice

from conftest import REPO_ROOT, run_job

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
sys.path.insert(0, os.path.join(REPO_ROOT, "bench"))  # windows.write_acdc
TINY = ["--config.model=unet_tiny", "--config.total_steps=6", "--config.eval_every_steps=6",
        "--config.checkpoint_every=6", "--config.log_every=6"]


def one_hot(labels, num_classes):
  return torch.nn.functional.one_hot(torch.as_tensor(labels, dtype=torch.long)[None],
                                     num_classes).movedim(-1, 1).double()


def monai_case(pred, target, num_classes, spacing):
  """Per foreground class: Dice, HD95 and NSD at 1 mm from MONAI, with the conventions
  README's metric section states: a class absent from the target is not scored (NaN), one
  missed by the prediction has Dice 0, HD95 inf, NSD 0 (MONAI gives NaN for its HD95)."""
  p, t = one_hot(pred, num_classes), one_hot(target, num_classes)
  dice = compute_dice(p, t, include_background=False)[0].numpy()
  hd95 = compute_hausdorff_distance(p, t, percentile=95, spacing=spacing)[0].numpy()
  nsd = compute_surface_dice(p, t, [1.0] * (num_classes - 1), spacing=spacing)[0].numpy()
  for c in range(1, num_classes):
    if not (target == c).any():
      dice[c - 1] = hd95[c - 1] = nsd[c - 1] = np.nan
    elif not (pred == c).any():
      hd95[c - 1] = np.inf
  return {"dice": dice, "hd95": hd95, "nsd": nsd}


def mean(values, axis=None):
  """NaN-skipping mean that keeps an inf (a missed class's HD95)."""
  values = np.asarray(values, float)
  kept = ~np.isnan(values)
  return np.sum(np.where(kept, values, 0), axis=axis) / np.sum(kept, axis=axis)


def rescore(workdir, task, data_dir):
  """MONAI's scores of W/predictions against the data folder's label files: the dataset
  means per class, then over the classes; and the cases' names."""
  from rasd_jax.data import pipeline, prepared, readers
  entries = [e for split in prepared.load_splits(task, data_dir).values() for e in split or ()]
  labels = {os.path.basename(str(e["id"])): e["label"] for e in entries}
  names = sorted(os.listdir(os.path.join(workdir, "predictions")))
  cases = []
  for name in names:
    path = os.path.join(workdir, "predictions", name)
    key = name.split(".")[0]
    if name.endswith(".png"):
      pred, target = readers.read_case({"image": path, "label": labels[key]})[0][0] // 255, (
          readers.read_case({"image": path, "label": labels[key]})[1])
      spacing = (1.0, 1.0)
    else:
      pred = np.asarray(nib.load(path).dataobj)
      label = nib.load(labels[key])
      target = np.asarray(label.dataobj)
      spacing = [float(s) for s in label.header.get_zooms()[:3]]
    target = pipeline.map_label(task, target, labels[key])
    cases.append(monai_case(pred.astype(int), target, task.num_classes, spacing))
  per_class = {m: mean([c[m] for c in cases], axis=0) for m in cases[0]}
  return {m: (float(mean(v)), v) for m, v in per_class.items()}, names


@pytest.mark.slow(30)
@pytest.mark.parametrize("name, roi", [("acdc", "(8,8,4)"), ("drive", "(16,)")])
def test_saved_test_predictions_rescored_with_monai_equal_the_results(tmp_path, name, roi):
  """ACDC (MR-T: RAS reorientation and a foreground crop of scans 1.25 x 1.2 x 4.9 mm,
  axes flipped and mixed; bench/windows.py's synthetic hearts) and DRIVE (2D fundus, PNG
  predictions of GIF masks; its fixture)."""
  import official
  import windows
  from rasd_jax.data import prepared, tasks
  task = tasks.get(name)
  if name == "acdc":  # synthetic hearts in the download's layout, on a scanner grid
    windows.write_acdc(str(tmp_path / "download"), cases=3, shape=(24, 20, 7))
    prepared.prepare(name, str(tmp_path / "download"), str(tmp_path / "data"),
                     allow_missing=True, progress=False, log=lambda line: None)
  else:
    official.write_prepared(name, str(tmp_path / "data"), cases=6)
  w = tmp_path / "w"
  # A learning rate that leaves the network near its initialisation: it predicts every class
  # somewhere, so that every metric has finite values to compare.
  run_job(f"experiments/finetune.py:task={name},runlocal", w,
          f"--config.data.dir={tmp_path / 'data'}", f"--config.roi={roi}",
          "--config.optim.lr=1e-7", *TINY)
  results = json.load(open(w / "results.json"))
  scores, names = rescore(str(w), task, str(tmp_path / "data"))
  assert len(names) == results["split_sizes"]["test"] > 0
  finite = 0
  for metric, (value, per_class) in scores.items():
    reported = [results["test"][metric]] + list(results["test"][f"{metric}_per_class"].values())
    for got, expected in zip(reported, [value, *per_class]):
      if np.isfinite(expected):  # results.json holds an inf or NaN as null
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=metric)
        finite += 1
      else:
        assert got is None, (metric, got, expected)
  assert finite >= 3 * len(per_class)
  if name == "acdc":  # anisotropic: the same scores in voxel units would differ
    spacing = nib.load(os.path.join(w, "predictions", names[0])).header.get_zooms()
    assert len(set(np.round(spacing, 3))) == 3
