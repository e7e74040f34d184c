"""The evaluation of a downstream network, and best-validation selection."""

import numpy as np

from rasd_jax.data import tasks
from rasd_jax.evaluation import evaluators
from rasd_jax.training import selection


def test_region_metrics_by_hand():
  """BraTS regions (TC = NCR + ET, WT = all, ET): each scored as the union of its classes."""
  task = tasks.get("brats21")
  target = np.zeros((4, 4, 2), np.int32)
  target[0, :, 0] = 1  # NCR, 4 voxels
  target[1, :, 0] = 2  # ED, 4
  target[2, :, 0] = 3  # ET, 4
  pred = target.copy()
  pred[2, :, 0] = 1  # the ET voxels predicted as NCR: TC and WT unchanged, ET missed
  sample = {"image": np.zeros((4, 4, 4, 2), np.float32), "label": target,
            "spacing": (1.0, 1.0, 1.0)}
  summary = evaluators.score_segmentation(lambda weights, image: (pred, pred * 1.0), None,
                                         [sample], task)
  regions = summary["regions"]
  assert regions["TC"]["dice"] == 1.0 and regions["WT"]["dice"] == 1.0
  assert regions["ET"]["dice"] == 0.0
  np.testing.assert_allclose(summary["dice_per_class"]["NCR"], 2 * 4 / (4 + 8))


def _weights(value):
  import jax.numpy as jnp
  return {"params": {"w": jnp.full((3,), value, jnp.float32)}, "rest": {}}


def _read_best(workdir):
  import jax
  from rasd_jax.training import checkpoint
  reader = checkpoint.Checkpointer(workdir / selection.BEST_DIR)
  try:
    abstract = {"params": {"w": jax.ShapeDtypeStruct((3,), np.float32)}, "rest": {}}
    return reader.latest_step(), float(reader.restore(abstract)["params"]["w"][0])
  finally:
    reader.close()


def test_best_keeps_the_best_step_and_its_weights(tmp_path):
  """Dice rises then falls: the best step's weights stay in W/best; a resumed Best keeps
  selecting over the whole run; NaN never wins but the first evaluation is kept."""
  best = selection.Best(tmp_path, "dice", resumed=False)
  for step, dice in ((2, 0.5), (4, 0.8), (6, 0.7)):
    best.update(step, {"dice": dice}, _weights(step))
  best.close()
  assert (best.step, best.value) == (4, 0.8)
  assert _read_best(tmp_path) == (4, 4.0)
  resumed = selection.Best(tmp_path, "dice", resumed=True)
  assert (resumed.step, resumed.value) == (4, 0.8)
  assert not resumed.update(8, {"dice": float("nan")}, _weights(8))
  assert resumed.update(10, {"dice": 0.9}, _weights(10))
  resumed.close()
  assert _read_best(tmp_path) == (10, 10.0)
  fresh = selection.Best(tmp_path, "dice", resumed=False)  # a restart from step 0 clears it
  assert fresh.step is None and not list((tmp_path / selection.BEST_DIR).iterdir())
  assert fresh.update(2, {"dice": float("nan")}, _weights(2))  # the first is kept
  fresh.close()


def test_best_minimises_errors(tmp_path):
  """MAE, RMSE and HD95 are lower-is-better."""
  best = selection.Best(tmp_path, "mae", resumed=False)
  for step, mae in ((1, 5.0), (2, 3.0), (3, 4.0)):
    best.update(step, {"mae": mae}, _weights(step))
  best.close()
  assert (best.step, best.value) == (2, 3.0)
  assert _read_best(tmp_path) == (2, 2.0)


def test_durations_steps_or_epochs():
  """A duration in epochs is ceil(epochs x steps per epoch); both units given, or a negative
  one, is an error naming the keys."""
  import pytest
  from rasd_jax.jobs import finetune as finetune_job
  assert finetune_job.steps("total", 0, 3, 2.5) == 8
  assert finetune_job.steps("total", 7, 0, 2.5) == 7
  assert finetune_job.steps("warmup", 0, 0, 4) == 0
  with pytest.raises(ValueError, match="total_steps = 5 and total_epochs = 2 are both given"):
    finetune_job.steps("total", 5, 2, 1)
  with pytest.raises(ValueError, match="eval_every_steps = -1"):
    finetune_job.steps("eval_every", -1, 0, 1)


def test_paper_fundus_dice_counts_the_background():
  """The reference's fundus Dice: mean of background and vessel Dice, per case, then over
  cases; the heldout definition keeps the vessel alone."""
  task = tasks.get("drive")
  target = np.zeros((4, 4), np.int32)
  target[0, :] = 1               # 4 vessel pixels, 12 background
  pred = np.zeros((4, 4), np.int32)
  pred[0, :2] = 1                # 2 of them found, no false positive
  sample = {"image": np.zeros((1, 4, 4), np.float32), "label": target, "spacing": (1.0, 1.0)}
  segment = lambda weights, image: (pred, pred * 1.0)  # noqa: E731
  vessel, background = 2 * 2 / (2 + 4), 2 * 12 / (14 + 12)
  assert evaluators.dice_with_background(pred, target, 2) == (vessel + background) / 2
  heldout = evaluators.score_segmentation(segment, None, [sample], task)
  paper = evaluators.score_segmentation(segment, None, [sample, sample], task, background=True)
  np.testing.assert_allclose(heldout["dice"], vessel)
  np.testing.assert_allclose(paper["dice"], (vessel + background) / 2)
  np.testing.assert_allclose(paper["dice_per_class"][task.classes[1]], vessel)
