"""The synthesize job end to end, as users run it: `python run.py ...` in a subprocess."""

import json
import os
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from conftest import REPO_ROOT


def run(workdir, arg, *overrides, check=True):
  cmd = [sys.executable, "run.py", f"--config=experiments/synthesize.py:{arg}",
         f"--workdir={workdir}", *overrides]
  result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result


def test_3d_export_montage_config_and_resume(tmp_path):
  w = tmp_path / "w3"
  run(w, "ndim=3,size=32,num=3", "--config.seed=5", "--config.batch_size=2",
      "--config.synthesis.num_labels=4")
  names = sorted(os.listdir(w / "samples"))
  assert names == [f"{n:04d}_{kind}.nii.gz" for n in range(3) for kind in ("image", "label")]
  image = nib.load(w / "samples/0001_image.nii.gz")
  label = nib.load(w / "samples/0001_label.nii.gz")
  assert image.shape == label.shape == (32, 32, 32)
  assert image.get_fdata().min() >= 0 and image.get_fdata().max() <= 1
  np.testing.assert_array_equal(image.affine, np.eye(4))
  assert set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
  config = json.loads((w / "config.json").read_text())
  assert config["seed"] == 5 and config["synthesis"]["num_labels"] == 4
  metrics = [json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()]
  assert [m["step"] for m in metrics] == [0, 1] and all(m["samples_per_s"] > 0 for m in metrics)
  assert Image.open(w / "montage.png").size[0] > 6 * 32

  # Resume: a lost file is regenerated identically; nothing else is redone; more samples
  # may be asked for.
  before = np.asarray(nib.load(w / "samples/0002_label.nii.gz").dataobj)
  os.remove(w / "samples/0002_label.nii.gz")
  run(w, "ndim=3,size=32,num=4", "--config.seed=5", "--config.batch_size=2",
      "--config.synthesis.num_labels=4")
  after = np.asarray(nib.load(w / "samples/0002_label.nii.gz").dataobj)
  np.testing.assert_array_equal(before, after)
  assert len(os.listdir(w / "samples")) == 8
  assert len((w / "metrics.jsonl").read_text().splitlines()) == 3  # only batch 1 redone


def test_2d_multichannel_paired_export(tmp_path):
  w = tmp_path / "w2"
  run(w, "ndim=2,size=32,num=2", "--config.synthesis.channels=3",
      "--config.synthesis.paired_views=True")
  image = nib.load(w / "samples/0000_image.nii.gz")
  assert image.shape == (32, 32, 1, 3)
  assert nib.load(w / "samples/0000_label.nii.gz").shape == (32, 32)
  assert nib.load(w / "samples/0000_image2.nii.gz").shape == (32, 32, 1, 3)


@pytest.mark.parametrize("overrides, needle", [
    (["--config.synthesis.gama_range=(0.5,1.5)"], 'Did you mean "gamma_range"'),
    (["--config.synthesis.ndim=4"], "synthesis.ndim = 4 is not allowed: 2 or 3"),
])
def test_bad_config_is_a_clear_error(tmp_path, overrides, needle):
  result = run(tmp_path / "bad", "ndim=2,size=32,num=1", *overrides, check=False)
  assert result.returncode != 0 and needle in result.stderr


def test_workdir_of_another_config_is_refused(tmp_path):
  w = tmp_path / "w"
  run(w, "ndim=2,size=32,num=1")
  result = run(w, "ndim=2,size=32,num=1", "--config.seed=3", check=False)
  assert result.returncode != 0 and "holds a run with another config" in result.stderr
  assert "seed" in result.stderr
