"""The finetune job end to end through run.py (subprocesses), on a tiny real Decathlon
folder: 2D slices of the MNI152 brain tissue demo (rasd_jax.data.demo), saved as NIfTI."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO_ROOT

TINY = ["--config.model=unet_tiny", "--config.total_steps=12", "--config.eval_every=6",
        "--config.checkpoint_every=6", "--config.batch_size=2", "--config.log_every=3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """dataset.json with 3 training, 1 validation and 1 test case, each a 48x48 patch of
  another axial slice."""
  from rasd_jax.data import demo
  task = demo.brain_tissue()
  root = tmp_path_factory.mktemp("decathlon")
  os.makedirs(root / "images"), os.makedirs(root / "labels")
  corners = [(60, 70, 70), (70, 100, 80), (80, 80, 90), (90, 90, 100), (100, 75, 110)]
  names = []
  for i, (x, y, z) in enumerate(corners):
    box = (slice(x, x + 48), slice(y, y + 48), z)
    name = f"case{i}.nii.gz"
    nib.save(nib.Nifti1Image(task.image[0][box].astype(np.float32), task.affine),
             root / "images" / name)
    nib.save(nib.Nifti1Image(task.label[0][box].astype(np.uint8), task.affine),
             root / "labels" / name)
    names.append({"image": f"images/{name}", "label": f"labels/{name}"})
  labels = {str(i): n for i, n in enumerate(task.class_names)}
  data = {"name": "tiny", "labels": labels, "training": names[:3], "validation": names[3:4],
          "test": names[4:]}
  with open(root / "dataset.json", "w") as f:
    json.dump(data, f)
  return str(root / "dataset.json")


def run(workdir, *overrides, check=True, config="experiments/finetune.py:task=custom,runlocal"):
  result = subprocess.run(
      [sys.executable, "run.py", f"--config={config}", f"--workdir={workdir}", *overrides],
      cwd=REPO_ROOT, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result


def check_results(workdir, init):
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["task"] == "custom" and results["init"] == init
  assert results["split_sizes"] == {"train": 3, "val": 1, "test": 1}
  assert results["model"] == "unet_tiny" and results["selected_step"] in (6, 12)
  assert results["class_names"] == ["grey_matter", "white_matter", "rest"]
  for part in ("val", "test"):
    assert 0 <= results[part]["dice"] <= 1
    assert set(results[part]["dice_per_class"]) == set(results["class_names"])
    assert all(v is None or 0 <= v <= 1 for v in results[part]["dice_per_class"].values())
    assert all(k in results[part] for k in ("hd95", "nsd", "hd95_per_class"))
  return results


def test_scratch_and_pretrained(tmp_path, dataset):
  w = tmp_path / "scratch"
  run(w, f"--config.data.json={dataset}", *TINY)
  check_results(w, "scratch")
  records = [json.loads(l) for l in open(w / "metrics.jsonl")]
  assert [r["step"] for r in records] == [3, 6, 9, 12]
  assert {"loss", "dice_loss", "ce", "lr", "grad_norm"} <= set(records[0])
  assert [json.loads(l)["step"] for l in open(w / "val_metrics.jsonl")] == [6, 12]
  assert json.load(open(w / "best_val.json"))["step"] in (6, 12)

  pre = tmp_path / "pre"
  run(pre, "--config.model=unet_tiny", "--config.synthesis.size=32",
      "--config.synthesis.num_labels=4", "--config.batch_size=2", "--config.total_steps=2",
      config="experiments/pretrain2d.py:runlocal")
  w = tmp_path / "pretrained"
  run(w, f"--config.data.json={dataset}", f"--config.init={pre}", *TINY[1:])
  check_results(w, str(pre))
  report = open(w / "transfer.txt").read()
  assert report.startswith("loaded ") and int(report.split()[1]) > 0
  assert "not loaded" in report and "kernel" in report  # the head: 32 channels vs 4 classes


def test_errors(tmp_path, dataset):
  out = run(tmp_path / "w", check=False)
  assert out.returncode and "error: task=custom needs data.json" in out.stderr
  out = run(tmp_path / "w2", f"--config.data.json={dataset}", "--config.init=/nonexistent",
            check=False)
  assert out.returncode and "error: init '/nonexistent'" in out.stderr
  out = run(tmp_path / "w3", config="experiments/finetune.py:task=brats", check=False)
  assert out.returncode and "error: unknown task 'brats'" in out.stderr
