"""The fine-tuning protocol of registry tasks in numbers worked out by hand: epochs to steps,
and the loss each task's output trains with (NumPy, from the formulas in docs/protocol.md)."""

import numpy as np
import pytest

from experiments import finetune as finetune_experiment
from rasd_jax.data import tasks
from rasd_jax.training import downstream
from rasd_jax.jobs import finetune as finetune_job


@pytest.mark.parametrize("name, cases, overrides, expected", [
    # BTCV: 300 epochs, validation every 10, warm-up 20; a batch is 1 case x 4 patches, so an
    # epoch is 24 cases x 4 patches / 4 = 24 steps.
    ("btcv", 24, {}, (7200, 240, 480)),
    # DRIVE: 100 epochs, every 10, warm-up 5; 1 image x 2 patches: 14 steps an epoch.
    ("drive", 14, {}, (1400, 140, 70)),
    # The same with batch 4 (2 images) and 7 training images: ceil(7 x 2 / 4) = 4 steps.
    ("drive", 7, {"batch_size": 4}, (400, 40, 20)),
    # IDRiD grading: 200 epochs, every 10, warm-up 3, batch 1: an epoch is the case count.
    ("idrid_grading", 330, {}, (66000, 3300, 990)),
    # 50 steps instead of 100 epochs: validation (1400) and warm-up (70) clipped to the run.
    ("drive", 14, {"total_epochs": 0, "total_steps": 50}, (50, 50, 49)),
])
def test_registry_epochs_become_steps(name, cases, overrides, expected):
  config = finetune_experiment.get_config(f"task={name}")
  config.update(overrides)
  total, eval_every, optim = finetune_job.durations(config, cases)
  assert (total, eval_every, optim.warmup_steps) == expected


def _softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _soft_dice_loss(p, y):
  """Mean over samples and channels of 1 - (2 sum(p y) + 1e-5) / (sum p + sum y + 1e-5)."""
  axes = tuple(range(1, p.ndim - 1))
  dice = (2 * (p * y).sum(axes) + 1e-5) / (p.sum(axes) + y.sum(axes) + 1e-5)
  return np.mean(1 - dice)


def _bce(z, y):
  return np.mean(np.logaddexp(0, z) - y * z)


def _by_hand(task, logits, labels):
  if task.kind == "segmentation" and task.inference.output == "sigmoid":
    p = 1 / (1 + np.exp(-logits))
    return _soft_dice_loss(p, labels[..., None].astype(float)) + _bce(logits, labels[..., None])
  if task.kind == "segmentation":
    p = _softmax(logits)
    y = np.eye(task.num_classes)[labels]
    ce = -np.mean(np.log(np.take_along_axis(p, labels[..., None], -1)))
    return _soft_dice_loss(p[..., 1:], y[..., 1:]) + ce  # background left out of the Dice
  if task.kind == "classification":
    return -np.mean(np.log(np.take_along_axis(_softmax(logits), labels[:, None], -1)))
  if task.kind == "multilabel":
    return _bce(logits, labels)
  return np.mean(np.abs(logits[:, 0] - labels))  # regression: L1 of the single output


@pytest.mark.parametrize("name", ["btcv", "drive", "idrid_grading", "wsss4luad",
                                  "rsna_bone_age"])
def test_each_registry_task_trains_with_its_loss(name):
  """The task's config gives the network's output (finetune_job._network) and its loss; both
  against the formula for the task's kind, on random logits and labels."""
  task = tasks.get(name)
  config = finetune_experiment.get_config(f"task={name}")
  config.model = "unet_tiny"
  spec, _ = finetune_job._network(config, task)
  rng = np.random.default_rng(len(name))
  batch = 2
  shape = (batch, 5, 4, 3) if task.ndim == 3 else (batch, 6, 5)
  if task.kind == "segmentation":
    labels = rng.integers(0, task.num_classes, shape)
    logits = rng.normal(0, 2, shape + (spec["num_outputs"],))
  elif task.kind == "classification":
    labels = rng.integers(0, task.num_classes, batch)
    logits = rng.normal(0, 2, (batch, spec["num_outputs"]))
  elif task.kind == "multilabel":
    labels = rng.integers(0, 2, (batch, len(task.classes))).astype(float)
    logits = rng.normal(0, 2, (batch, spec["num_outputs"]))
  else:
    labels = rng.normal(100, 30, batch)
    logits = rng.normal(100, 30, (batch, spec["num_outputs"]))
  expected_outputs = {"segmentation": 1 if task.inference.output == "sigmoid" else
                      task.num_classes, "classification": task.num_classes,
                      "multilabel": len(task.classes), "regression": 1}
  assert spec["num_outputs"] == expected_outputs[task.kind]
  got = downstream.loss(spec["output"], np.float32(logits), labels)["loss"]
  np.testing.assert_allclose(float(got), _by_hand(task, logits, labels), rtol=2e-5)
