"""The finetune job end to end through run.py (subprocesses), on a tiny real Decathlon
folder: 2D slices of the MNI152 brain tissue demo (rasd_jax.data.demo), saved as NIfTI."""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest

from conftest import REPO_ROOT, run_job

TINY = ["--config.model=unet_tiny", "--config.total_steps=12", "--config.eval_every_steps=6",
        "--config.checkpoint_every=6", "--config.batch_size=2", "--config.log_every=3"]


def write_dataset(root, train=3, val=1, test=1):
  """A Decathlon folder in `root` (its dataset.json's path): `train`, `val` and `test` cases,
  each a 48x48 patch of another axial slice of the MNI152 brain tissue demo."""
  from rasd_jax.data import demo
  task = demo.brain_tissue()
  os.makedirs(root / "images"), os.makedirs(root / "labels")
  names = []
  for i in range(train + val + test):
    x, y, z = 60 + 10 * i % 80, (70, 100, 80, 90, 75)[i % 5], 70 + 10 * i
    box = (slice(x, x + 48), slice(y, y + 48), z)
    name = f"case{i}.nii.gz"
    nib.save(nib.Nifti1Image(task.image[0][box].astype(np.float32), task.affine),
             root / "images" / name)
    nib.save(nib.Nifti1Image(task.label[0][box].astype(np.uint8), task.affine),
             root / "labels" / name)
    names.append({"image": f"images/{name}", "label": f"labels/{name}"})
  labels = {str(i): n for i, n in enumerate(task.class_names)}
  data = {"name": "tiny", "modality": {"0": "T1"}, "labels": labels, "training": names[:train],
          "validation": names[train:train + val], "test": names[train + val:]}
  with open(root / "dataset.json", "w") as f:
    json.dump(data, f)
  return str(root / "dataset.json")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """dataset.json with 3 training, 1 validation and 1 test case."""
  return write_dataset(tmp_path_factory.mktemp("decathlon"))


def run(workdir, *overrides, check=True, config="experiments/finetune.py:task=custom,runlocal"):
  return run_job(config, workdir, *overrides, check=check)


def check_results(workdir, init):
  results = json.load(open(os.path.join(workdir, "results.json")))
  assert results["task"] == "custom" and results["init"] == init
  assert results["modality"] == "MRI"  # the dataset.json's own word, T1
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
  """Scratch: 6 steps, then resumed to 12 (the selection spans both parts); the saved best
  weights reproduce the test score. Then from a pre-training workdir."""
  w = tmp_path / "scratch"
  run(w, f"--config.data.json={dataset}", *TINY, "--config.total_steps=6")
  assert json.load(open(w / "best_val.json"))["step"] == 6
  out = run(w, f"--config.data.json={dataset}", *TINY)
  assert "resuming from the checkpoint of step 6" in out.stdout
  assert "best validation so far: step 6" in out.stdout
  results = check_results(w, "scratch")
  records = [json.loads(l) for l in open(w / "metrics.jsonl")]
  assert [r["step"] for r in records] == [3, 6, 9, 12]
  assert {"loss", "dice_loss", "ce", "lr", "grad_norm"} <= set(records[0])
  assert [json.loads(l)["step"] for l in open(w / "val_metrics.jsonl")] == [6, 12]
  assert json.load(open(w / "best_val.json"))["step"] == results["selected_step"]

  import rasd_jax
  from rasd_jax.data import pipeline, readers
  from rasd_jax.evaluation import metrics, sliding_window
  from rasd_jax.training import weights
  model = rasd_jax.load_model(w)
  spec = weights.read_spec(w)
  assert spec["step"] == results["selected_step"]
  assert spec["classes"][1:] == results["class_names"]
  entry, = readers.load_decathlon(dataset, "test")
  task = pipeline.custom_task("segmentation", 2, 1, spec["classes"], (32, 32))
  sample = pipeline.prepare(task, entry)
  logits = sliding_window.sliding_window_inference(
      np.moveaxis(sample["image"], 0, -1)[None], (32, 32), model, overlap=0.5)
  case = metrics.segmentation_metrics(np.argmax(np.asarray(logits[0]), -1), sample["label"], 4)
  np.testing.assert_allclose(np.nanmean(case["dice"]), results["test"]["dice"], rtol=1e-5)

  pre = tmp_path / "pre"
  run(pre, "--config.model=unet_tiny", "--config.synthesis.size=32",
      "--config.synthesis.num_labels=4", "--config.batch_size=2", "--config.total_steps=2",
      config="experiments/pretrain2d.py:runlocal")
  w = tmp_path / "pretrained"
  out = run(w, f"--config.data.json={dataset}", f"--config.init={pre}", *TINY[1:])
  assert "(step 2, model unet_tiny)" in out.stdout
  check_results(w, str(pre))
  report = open(w / "transfer.txt").read()
  assert report.startswith("loaded ") and int(report.split()[1]) > 0
  # head "add": the whole pre-trained network loads, the new linear head stays as initialised.
  assert report.strip().count("\n") == 0, report
  # A checkpoint folder instead of the workdir: that step; a step that is not there: an error.
  one = pre / "checkpoints" / "2"
  out = run(tmp_path / "one", f"--config.data.json={dataset}", f"--config.init={one}",
            *TINY[1:], "--config.total_steps=1", "--config.eval_every_steps=1")
  assert "(step 2, model unet_tiny)" in out.stdout
  out = run(tmp_path / "seven", f"--config.data.json={dataset}",
            f"--config.init={pre / 'checkpoints' / '7'}", *TINY[1:], check=False)
  assert out.returncode == 1 and "checkpoints/7' is neither 'scratch'" in out.stderr


def test_errors(tmp_path, dataset):
  out = run(tmp_path / "w", check=False)
  assert out.returncode and "error: task=custom needs exactly one of data.json" in out.stderr
  out = run(tmp_path / "w2", f"--config.data.json={dataset}", "--config.init=/nonexistent",
            check=False)
  assert out.returncode and "error: init '/nonexistent'" in out.stderr
  out = run(tmp_path / "w3", config="experiments/finetune.py:task=brats", check=False)
  assert out.returncode and "unknown task 'brats'" in out.stderr and "brats21" in out.stderr
  out = run(tmp_path / "w4", config="experiments/finetune.py:task=btcv", check=False)
  assert out.returncode and "error: task=btcv needs data.dir" in out.stderr


def broken_copy(dataset, tmp_path, name, change):
  """A copy of the dataset folder with case 0 (a training case) broken by `change(root)`."""
  root = tmp_path / name
  shutil.copytree(os.path.dirname(dataset), root)
  change(root)
  return str(root / "dataset.json")


def save(path, array, affine=None):
  nib.save(nib.Nifti1Image(array, np.eye(4) if affine is None else affine), path)


def png_image(root):
  """Case 0's image as a PNG, its label still NIfTI (dataset.json lists the PNG)."""
  from PIL import Image
  image = nib.load(root / "images" / "case0.nii.gz").get_fdata()
  image = Image.fromarray((255 * image / image.max()).astype(np.uint8))
  image.save(root / "images" / "case0.png")
  listed = json.loads((root / "dataset.json").read_text())
  listed["training"][0]["image"] = "images/case0.png"
  (root / "dataset.json").write_text(json.dumps(listed))


def huge_header(root):
  """Case 0's image: a real gzipped NIfTI whose header declares 32767^3 x 4 float64 voxels
  (1 PiB, beyond any address space), followed by a few bytes of data."""
  header = nib.Nifti1Header()
  header.set_data_dtype(np.float64)
  header.set_data_shape((32767, 32767, 32767, 4))
  header.set_data_offset(352)
  with gzip.open(root / "images" / "case0.nii.gz", "wb") as f:
    f.write(header.binaryblock + bytes(4 + 64))


BROKEN = {
    "missing": (lambda r: os.remove(r / "images" / "case0.nii.gz"),
                r"1 file\(s\) listed in .*dataset.json do not exist: .*case0.nii.gz"),
    "shape": (lambda r: save(r / "labels" / "case0.nii.gz", np.zeros((40, 48), np.uint8),
                             nib.load(r / "images" / "case0.nii.gz").affine),
              "labels/case0.nii.gz has spatial shape"),
    "affine": (lambda r: save(r / "labels" / "case0.nii.gz", np.zeros((48, 48), np.uint8)),
               "case0.nii.gz and .*case0.nii.gz differ in affine"),
    "range": (lambda r: save(r / "labels" / "case0.nii.gz", np.full((48, 48), 9, np.uint8),
                             nib.load(r / "images" / "case0.nii.gz").affine),
              "labels/case0.nii.gz.*outside"),
    "nan": (lambda r: save(r / "images" / "case0.nii.gz", np.full((48, 48), np.nan, np.float32),
                           nib.load(r / "images" / "case0.nii.gz").affine),
            "images/case0.nii.gz has 2304 NaN/Inf voxels"),
    "unreadable": (lambda r: open(r / "images" / "case0.nii.gz", "wb").write(b"not a nifti"),
                   "images/case0.nii.gz"),
    "json": (lambda r: (r / "dataset.json").write_text('{"training": [}'),
             r"cannot parse dataset json .*/json/dataset.json: Expecting value: line 1"),
    "formats": (png_image, r"image .*images/case0.png \(PNG\) and label .*labels/case0.nii.gz "
                           r"\(NIfTI\) are different formats: .* must be the same kind"),
    "memory": (huge_header, r"not enough memory to read .*images/case0.nii.gz: its header "
                            r"declares a \(32767, 32767, 32767, 4\) array of float64, "
                            r"1,048,480.0 GiB"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_bad_input_names_the_file(tmp_path, dataset, kind):
  """Each broken case stops the job before any JAX work with an error naming the file; with
  data.skip_bad the readable cases still train (shown for the unreadable file)."""
  change, message = BROKEN[kind]
  broken = broken_copy(dataset, tmp_path, kind, change)
  out = run(tmp_path / "w", f"--config.data.json={broken}", *TINY, check=False)
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  error = out.stderr.strip().splitlines()[-1]
  assert error.startswith("error: ") and re.search(message, error), error
  if kind == "unreadable":
    w = tmp_path / "skip"
    out = run(w, f"--config.data.json={broken}", "--config.data.skip_bad=true", *TINY)
    assert "skipping case" in out.stderr and "case0.nii.gz" in out.stderr
    assert json.load(open(w / "results.json"))["split_sizes"]["train"] == 2


def test_all_empty_training_labels_stop_before_training(tmp_path, dataset):
  """Training labels that are all background (a wrong label folder, say): one line naming the
  split and its size, before any training and before the workdir is written. Some empty
  training cases among others are normal and read as they are."""
  def empty(root, cases):
    for i in cases:
      path = root / "labels" / f"case{i}.nii.gz"
      save(path, np.zeros((48, 48), np.uint8), nib.load(path).affine)

  broken = broken_copy(dataset, tmp_path, "empty", lambda r: empty(r, range(3)))
  w = tmp_path / "w"
  out = run(w, f"--config.data.json={broken}", *TINY, check=False)
  assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == (
      "error: the labels of all 3 training cases hold no foreground (every voxel is "
      "background, 0): nothing to learn to segment; are these the right label files?")
  assert not w.exists()

  from experiments import finetune as finetune_experiment
  from rasd_jax.jobs import finetune as finetune_job
  config = finetune_experiment.get_config("task=custom,runlocal")
  config.data.json = broken_copy(dataset, tmp_path, "two_empty", lambda r: empty(r, range(2)))
  task, split = finetune_job._cases(config)
  data = finetune_job._data(config, task, split)
  assert sorted(bool(s["label"].any()) for s in data["train"]) == [False, False, True]


def test_custom_classification_from_class_folders(tmp_path):
  """One folder per class of real 32x32 PNG tiles of the nuclei image: tiles with many nucleus
  pixels against tiles with few. Trains a pooled head, then a linear probe on it."""
  from PIL import Image
  from rasd_jax.data import demo
  task = demo.nuclei()
  image = (task.image[0] * 255).astype(np.uint8)
  tiles = [(image[y:y + 32, x:x + 32], task.label[0][y:y + 32, x:x + 32].mean())
           for y in range(0, 512, 32) for x in range(0, 512, 32)]
  tiles.sort(key=lambda t: t[1])
  for name, chosen in (("few", tiles[:10]), ("many", tiles[-10:])):
    os.makedirs(tmp_path / "tiles" / name)
    for i, (tile, _) in enumerate(chosen):
      Image.fromarray(tile).save(tmp_path / "tiles" / name / f"{i}.png")
  w = tmp_path / "cls"
  out = run(w, f"--config.data.folders={tmp_path / 'tiles'}", *TINY)
  results = json.load(open(w / "results.json"))
  assert results["kind"] == "classification" and results["class_names"] == ["few", "many"]
  assert results["split_sizes"] == {"train": 12, "val": 4, "test": 4}
  assert results["selection_metric"] == "accuracy"
  for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc"):
    assert 0 <= results["test"][key] <= 1
  assert "test (step" in out.stdout
  probe = tmp_path / "probe"
  run(probe, f"--config.data.folders={tmp_path / 'tiles'}", "--config.probe=true", *TINY)
  assert json.load(open(probe / "results.json"))["probe"] is True


def test_killed_then_resumed_equals_uninterrupted(tmp_path, dataset):
  """SIGKILL mid-run, then the same command: each step logged once, the same losses, the
  same validation curve, selected step and test scores as a run that was never stopped."""
  import signal
  import time
  steps = [f"--config.data.json={dataset}", *TINY, "--config.total_steps=24",
           "--config.checkpoint_every=4", "--config.eval_every_steps=4",
           "--config.log_every=1"]
  run(tmp_path / "reference", *steps)
  w = tmp_path / "killed"
  process = subprocess.Popen(
      [sys.executable, "run.py", "--config=experiments/finetune.py:task=custom,runlocal",
       f"--workdir={w}", *steps], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while time.time() < deadline and process.poll() is None:
    text = open(w / "metrics.jsonl").read() if (w / "metrics.jsonl").exists() else ""
    lines = text[:text.rfind("\n") + 1].splitlines()  # complete lines only
    if lines and json.loads(lines[-1])["step"] >= 10:  # past the checkpoints of 4 and 8
      break
    time.sleep(0.05)
  assert process.poll() is None, "the run ended before it could be killed"
  process.send_signal(signal.SIGKILL)
  process.wait()
  out = run(w, *steps)
  assert "resuming from the checkpoint of step" in out.stdout

  def read(workdir, name):
    return [json.loads(line) for line in open(workdir / name)]
  reference, resumed = read(tmp_path / "reference", "metrics.jsonl"), read(w, "metrics.jsonl")
  assert [r["step"] for r in resumed] == list(range(1, 25))
  np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in reference],
                             rtol=1e-6)
  assert read(w, "val_metrics.jsonl") == read(tmp_path / "reference", "val_metrics.jsonl")
  a = json.load(open(tmp_path / "reference" / "results.json"))
  b = json.load(open(w / "results.json"))
  assert a["selected_step"] == b["selected_step"] and a["curve"] == b["curve"]
  np.testing.assert_allclose(a["test"]["dice"], b["test"]["dice"], rtol=1e-6)


def test_registry_mistakes_are_one_line_and_write_nothing(tmp_path):
  """Missing data, a download that was not prepared, prepared data half present (a listed
  file gone since), a fold out of range, and a duration given in both units: one `error:`
  line, no traceback, and the workdir of an earlier run left byte for byte as it was (a
  fresh workdir is not even created)."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
  import official
  from rasd_jax.data import prepared
  data = tmp_path / "data"
  official.write_prepared("drive", str(data))
  config = "experiments/finetune.py:task=drive,runlocal"
  earlier = tmp_path / "earlier"
  os.makedirs(earlier)
  (earlier / "config.json").write_text('{"job": "finetune"}')  # a run of ours
  half = tmp_path / "half"
  shutil.copytree(f"{data}.download", f"{half}.download")
  prepared.prepare("drive", f"{half}.download", half, progress=False)
  os.remove(prepared.load_splits("drive", half)["train"][0]["image"])
  cases = {
      "missing": ([f"--config.data.dir={tmp_path / 'nowhere'}"], "nowhere"),
      "not prepared": ([f"--config.data.dir={data}.download"],
                       "is not a prepared data folder (no prepare.json)"),
      "half present": ([f"--config.data.dir={half}"], "do not exist (moved or deleted"),
      "fold": ([f"--config.data.dir={data}", "--config.data.fold=3"],
               "fold 3 of task 'drive'"),
      "both units": ([f"--config.data.dir={data}", "--config.total_epochs=3"],
                     "total_steps = 200 and total_epochs = 3 are both given"),
  }
  for name, (overrides, message) in cases.items():
    for w in (tmp_path / f"new_{name}", earlier):
      out = run(w, *overrides, check=False, config=config)
      lines = [l for l in out.stderr.splitlines() if l.strip()]
      assert out.returncode == 1 and "Traceback" not in out.stderr, (name, out.stderr[-2000:])
      assert lines[-1].startswith("error: ") and message in lines[-1], (name, lines[-1])
    assert not (tmp_path / f"new_{name}").exists(), name
    assert os.listdir(earlier) == ["config.json"]
    assert (earlier / "config.json").read_text() == '{"job": "finetune"}'


def test_swinunetr_3d_through_the_job(tmp_path):
  """A 3D registry task (MSD spleen, CT-T) fine-tunes the job's own default 3D network,
  swinunetr_tiny, built with its real initialisers, on 32^3 patches: two steps, one
  validation, a test score; load_model gives the network back."""
  sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
  import official
  import rasd_jax
  official.write_prepared("msd09", str(tmp_path / "data"), cases=4)
  w = tmp_path / "w"
  out = run(w, f"--config.data.dir={tmp_path / 'data'}", "--config.total_steps=2",
            "--config.eval_every_steps=2", "--config.log_every=1",
            "--config.checkpoint_every=2", config="experiments/finetune.py:task=msd09,runlocal")
  from rasd_jax import models
  assert f"model swinunetr_tiny (3D), head add: {models.count_params('swinunetr_tiny', 3):,} " \
      "backbone parameters" in out.stdout
  results = json.load(open(w / "results.json"))
  assert results["model"] == "swinunetr_tiny" and results["selected_step"] == 2
  assert 0 <= results["test"]["dice"] <= 1
  model = rasd_jax.load_model(w)
  assert model(np.zeros((1, 32, 32, 32, 1), np.float32)).shape == (1, 32, 32, 32, 2)
