"""Predictions on the input's own grid (data.predictions, pipeline.to_native) and the predict
job through run.py on networks saved as the fine-tuning job saves them."""

import csv
import dataclasses
import json
import os
import re

import nibabel as nib
import numpy as np
from PIL import Image
import pytest

from conftest import run_job

# A scanner-like affine: not RAS (x flipped, y and z mixed), anisotropic (1.25 x 1.2 x 4.9 mm).
AFFINE = np.array([[-1.25, 0.0, 0.0, 90.0],
                   [0.0, -1.2, 0.4, 120.5],
                   [0.0, 0.25, 4.9, -60.0],
                   [0.0, 0.0, 0.0, 1.0]])
# Axes permuted and flipped, 1.5 mm isotropic: a CT-T task's spacing, so nothing is resampled.
PERMUTED = np.array([[0.0, -1.5, 0.0, 10.0],
                     [0.0, 0.0, 1.5, -20.0],
                     [-1.5, 0.0, 0.0, 30.0],
                     [0.0, 0.0, 0.0, 1.0]])


def volume(folder, name, affine, values, seed, shape=(21, 17, 7)):
  """An image (zero border, so the foreground crop cuts it) and its label with `values`."""
  rng = np.random.default_rng(seed)
  image = np.zeros(shape, np.float32)
  image[3:-2, 2:-3, 1:-1] = rng.normal(100, 20, (shape[0] - 5, shape[1] - 5, shape[2] - 2))
  label = np.zeros(shape, np.uint16)
  label[4:-3, 3:-4, 2:-2] = rng.choice(values, (shape[0] - 7, shape[1] - 7, shape[2] - 4))
  paths = [os.path.join(folder, f"{name}{s}.nii.gz") for s in ("", "_label")]
  nib.save(nib.Nifti1Image(image, affine), paths[0])
  nib.save(nib.Nifti1Image(label, affine), paths[1])
  return paths


def oracle(task, paths, folder, probabilities=False):
  """What data.predictions writes for a network whose output is the case's own label."""
  from rasd_jax.data import pipeline, predictions
  sample = pipeline.prepare(task, {"image": paths[0], "label": paths[1]})
  geometry = sample["geometry"]
  probs = np.moveaxis(np.eye(task.num_classes, dtype=np.float32)[sample["label"]], -1, 0)
  background = [1.0] + [0.0] * (task.num_classes - 1)
  files = predictions.paths(folder, "out", paths[0], probabilities)
  predictions.write(files, task, geometry, pipeline.to_native(sample["label"][None], geometry)[0],
                    pipeline.to_native(probs, geometry, order=1, fill=background))
  return sample, files


@pytest.mark.parametrize("name, affine, values, roi", [
    ("acdc", AFFINE, (0, 1, 2, 3), (16, 16, 8)),        # MR-T: RAS, a crop grown to the roi
    ("brats21", AFFINE, (0, 1, 2, 4), (16, 16, 8)),     # label_map 1, 2, 4 -> 1, 2, 3 and back
    ("btcv", PERMUTED, tuple(range(14)), (8, 8, 8))])   # CT-T at its own spacing
def test_a_network_giving_the_labels_gives_back_the_label_file(tmp_path, name, affine, values,
                                                               roi):
  from rasd_jax.data import tasks
  task = dataclasses.replace(tasks.get(name), roi=roi)
  if name == "brats21":  # one modality instead of four
    task = dataclasses.replace(task, in_channels=1)
  paths = volume(str(tmp_path), "case", affine, values, seed=len(name))
  sample, files = oracle(task, paths, str(tmp_path), probabilities=True)
  assert sample["image"].shape[1:] != nib.load(paths[0]).shape  # cropped (and reoriented)
  written, truth = nib.load(files[0]), nib.load(paths[1])
  np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(truth.dataobj))
  np.testing.assert_allclose(written.affine, affine, atol=1e-6)
  assert written.header["sform_code"] == truth.header["sform_code"]
  probs = nib.load(files[1]).get_fdata()
  assert probs.shape == truth.shape + (task.num_classes,)
  np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
  classes = np.argmax(probs, -1)
  np.testing.assert_array_equal(np.asarray(values)[classes], np.asarray(truth.dataobj))
  assert (classes[:3] == 0).all()  # outside the crop: the background's probability 1


def test_a_resampled_task_comes_back_on_the_file_grid(tmp_path):
  """CT-T resamples 1.25 x 1.2 x 4.9 mm to 1.5 mm: nearest neighbour back, the file's grid."""
  from rasd_jax.data import tasks
  task = dataclasses.replace(tasks.get("btcv"), roi=(8, 8, 8))
  paths = volume(str(tmp_path), "case", AFFINE, (0, 3, 7), seed=3, shape=(30, 24, 6))
  sample, files = oracle(task, paths, str(tmp_path))
  truth = np.asarray(nib.load(paths[1]).dataobj)
  assert sample["label"].shape != truth.shape
  written = nib.load(files[0])
  assert written.shape == truth.shape
  np.testing.assert_allclose(written.affine, AFFINE, atol=1e-6)
  agree = np.mean(np.asarray(written.dataobj) == truth)
  assert 0.85 < agree < 1.0, agree  # lossy (4.9 mm slices at 1.5 mm and back), not garbage


def test_a_png_mask_comes_back_as_the_file(tmp_path):
  """The fundus template (DRIVE): a 0/255 GIF mask, written back as a 0/255 PNG."""
  from rasd_jax.data import tasks
  task = dataclasses.replace(tasks.get("drive"), roi=(16, 16))
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "im.png")
  mask = (rng.random((20, 24)) > 0.7).astype(np.uint8) * 255
  Image.fromarray(mask).save(tmp_path / "mask.gif")
  _, files = oracle(task, [str(tmp_path / "im.png"), str(tmp_path / "mask.gif")], str(tmp_path))
  assert files[0].endswith(".png")
  np.testing.assert_array_equal(np.asarray(Image.open(files[0])), mask)


def test_a_2d_dicom_input_gets_a_nifti_on_its_pixel_grid(tmp_path):
  """A single-frame DICOM file has a 2D pixel grid (a 3x3 affine): its label map is a 2D NIfTI
  whose affine holds that grid on its first two axes."""
  from rasd_jax.data import pipeline, predictions
  task = pipeline.custom_task("segmentation", 2, 1, 3, (16, 16))
  grid = np.array([[0.7, 0.0, 4.0], [0.0, 0.8, -2.0], [0.0, 0.0, 1.0]])
  labels = np.random.default_rng(0).integers(0, 3, (5, 6))
  files = predictions.paths(str(tmp_path), "mammo", "/data/mammo.dcm")
  predictions.write(files, task, {"affine": grid, "path": "/data/mammo.dcm"}, labels)
  written = nib.load(files[0])
  np.testing.assert_array_equal(np.asarray(written.dataobj), labels)
  np.testing.assert_allclose(written.affine, [[0.7, 0, 0, 4], [0, 0.8, 0, -2], [0, 0, 1, 0],
                                              [0, 0, 0, 1]])


def save_network(workdir, spec, task):
  """A workdir as the finetune job leaves it (model.json, W/best, task.json), of the
  network `spec` at its initial weights."""
  from flax import nnx
  from rasd_jax.data import pipeline
  from rasd_jax.training import checkpoint, engine, weights
  from rasd_jax import workdir as workdir_lib
  os.makedirs(workdir)
  _, params, rest = nnx.split(weights.build(spec, seed=1), nnx.Param, ...)
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, spec["checkpoints"]))
  checkpointer.save(0, {"params": params, "rest": rest})
  checkpointer.close()
  weights.write_spec(workdir, spec)
  workdir_lib.write_json(os.path.join(workdir, engine.TASK), {
      "task": pipeline.task_record(task), "overlap": 0.25, "window": "constant"})


def predict(workdir, *overrides, check=True):
  return run_job("experiments/predict.py", workdir, *overrides, check=check)


def test_predict_segmentation(tmp_path):
  """Two scans and a corrupt file: label maps on the scans' grids that equal the network's
  own output mapped back, the corrupt file listed; a rerun does nothing more; a network of
  another dimension is refused in one line, before anything is written."""
  import rasd_jax
  from rasd_jax.data import pipeline, tasks
  from rasd_jax.evaluation import sliding_window
  from rasd_jax.training import weights
  task = dataclasses.replace(tasks.get("acdc"), roi=(16, 16, 8))
  model = tmp_path / "model"
  save_network(str(model), weights.downstream_spec(
      "unet_tiny", 3, 1, 8, 4, classes=list(task.classes)), task)
  scans = tmp_path / "scans"
  os.makedirs(scans)
  paths = [volume(str(scans), f"s{i}", AFFINE, (0, 1), seed=i)[0] for i in range(2)]
  for path in os.listdir(scans):
    if "_label" in path:
      os.remove(scans / path)
  (scans / "broken.nii.gz").write_bytes(b"not a NIfTI file")
  (scans / "notes.txt").write_text("left out")
  out = predict(tmp_path / "out", f"--config.model={model}", f"--config.input={scans}",
                "--config.probabilities=true")
  assert "1 file(s) of other formats left out: notes.txt" in out.stdout
  assert "skipped " + str(scans / "broken.nii.gz") in out.stdout
  assert (tmp_path / "out" / "unreadable.txt").read_text().startswith(str(scans / "broken"))
  network = rasd_jax.load_model(model)
  for i, path in enumerate(paths):
    written = nib.load(tmp_path / "out" / "predictions" / f"s{i}.nii.gz")
    scan = nib.load(path)
    assert written.shape == scan.shape
    np.testing.assert_allclose(written.affine, scan.affine, atol=1e-6)
    sample = pipeline.prepare(task, {"image": path}, labelled=False)
    logits = np.asarray(sliding_window.sliding_window_inference(
        np.moveaxis(sample["image"], 0, -1)[None], task.roi, network, overlap=0.25,
        mode="constant"))[0]
    expected = pipeline.to_native(np.argmax(logits, -1)[None], sample["geometry"])[0]
    np.testing.assert_array_equal(np.asarray(written.dataobj), expected)
    probs = nib.load(tmp_path / "out" / "predictions" / f"s{i}_probabilities.nii.gz")
    assert probs.shape == scan.shape + (4,)
  again = predict(tmp_path / "out", f"--config.model={model}", f"--config.input={scans}",
                  "--config.probabilities=true")
  assert "2 done before, 1 to go" in again.stdout
  # Another task than the run's; then, with no task.json to say it, a network of another
  # dimension than the task's: one line each (run.py prints a ValueError as one `error:`
  # line), nothing written.
  from experiments import predict as predict_experiment
  from rasd_jax import jobs
  config = predict_experiment.get_config()
  config.update(model=str(model), input=str(scans), task="drive")
  with pytest.raises(ValueError, match="was fine-tuned for task 'acdc', not 'drive'") as refused:
    jobs.run(config, str(tmp_path / "other"))
  assert "\n" not in str(refused.value)
  os.remove(model / "task.json")
  message = ("is a 3D dense network of 1 input channel(s) and 4 'softmax' output(s); task "
             "'drive' takes 2D segmentation with 1 channel(s) and 2 output(s)")
  with pytest.raises(ValueError, match=re.escape(message)) as refused:
    jobs.run(config, str(tmp_path / "other"))
  assert "\n" not in str(refused.value)
  assert not (tmp_path / "other").exists()


def test_predict_classification(tmp_path):
  """predictions.csv: each image's class probabilities (those of the saved network, computed
  here apart) and the most probable class; a rerun with one more image adds its row only."""
  import rasd_jax
  from rasd_jax.data import pipeline
  from rasd_jax.training import weights
  task = pipeline.custom_task("classification", 2, 1, ("few", "many"), (32, 32))
  model = tmp_path / "model"
  save_network(str(model), weights.downstream_spec(
      "unet_tiny", 2, 1, 8, 2, pooled=True, output="classification",
      classes=list(task.classes)), task)
  images = tmp_path / "images"
  os.makedirs(images)
  rng = np.random.default_rng(0)
  for i in range(3):
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(images / f"{i}.png")
  predict(tmp_path / "out", f"--config.model={model}", f"--config.input={images}/[01].png",
          "--config.batch_size=2")
  network = rasd_jax.load_model(model)
  first = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
  assert [r["image"] for r in first] == [str(images / "0.png"), str(images / "1.png")]
  out = predict(tmp_path / "out", f"--config.model={model}", f"--config.input={images}",
                "--config.batch_size=2")
  assert "2 done before, 1 to go" in out.stdout
  rows = list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))
  assert rows[:2] == first and len(rows) == 3
  for row in rows:
    sample = pipeline.prepare(task, {"image": row["image"]}, labelled=False)
    logits = np.asarray(network(np.moveaxis(sample["image"], 0, -1)[None]))[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([float(row["p(few)"]), float(row["p(many)"])], expected,
                               rtol=1e-4)
    assert row["prediction"] == task.classes[int(np.argmax(expected))]
  assert json.load(open(tmp_path / "out" / "config.json"))["model"] == str(model)
