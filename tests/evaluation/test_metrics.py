"""Downstream metrics against hand-computed values and direct transcriptions of the formulas."""

import itertools

import numpy as np
import pytest
import torch
from monai.metrics import compute_hausdorff_distance, compute_surface_dice
from scipy import ndimage

from rasd_jax.evaluation import metrics

# Segmentation


def test_dice_by_hand():
  # Class 1: pred {1, 2, 3}, target {2, 3}: 2*2 / (3 + 2). Class 2: pred {4, 5}, target
  # {4..7}: 2*2 / (2 + 4). Class 3 is in neither.
  pred = np.array([[0, 1, 1, 1, 2, 2, 0, 0]])
  target = np.array([[0, 0, 1, 1, 2, 2, 2, 2]])
  result = metrics.segmentation_metrics(pred, target, num_classes=4)
  np.testing.assert_allclose(result["dice"], [0.8, 2 / 3, np.nan])
  # A one-row image is all surface. Class 1, pred -> target: [1, 0, 0], q95 = 0.9 (linear
  # interpolation at position 0.95 * 2); target -> pred: [0, 0].
  np.testing.assert_allclose(result["hd95"], [0.9, 1.85, np.nan])
  # Class 1 at 1 mm: all 5 surface voxels within; class 2: target voxels 6, 7 are 1 and 2 away.
  np.testing.assert_allclose(result["nsd"], [1.0, 5 / 6, np.nan])


def test_empty_class_conventions():
  pred = np.zeros((6, 6), int)
  target = np.zeros((6, 6), int)
  pred[1:3, 1:3] = 1  # only predicted: not scored, as MONAI's ignore_empty
  target[3:5, 3:5] = 2  # missed: Dice 0, HD95 inf, NSD 0
  result = metrics.segmentation_metrics(pred, target, num_classes=4)  # class 3: in neither
  np.testing.assert_array_equal(result["dice"], [np.nan, 0.0, np.nan])
  np.testing.assert_array_equal(result["hd95"], [np.nan, np.inf, np.nan])
  np.testing.assert_array_equal(result["nsd"], [np.nan, 0.0, np.nan])


@pytest.mark.parametrize("axis, spacing, distance_mm", [(0, (2.0, 0.5), 6.0),
                                                        (1, (2.0, 0.5), 1.5)])
def test_hd95_of_shifted_squares_in_mm(axis, spacing, distance_mm):
  # Two 5x5 squares 3 voxels apart along `axis` (spacing 2 mm on axis 0, 0.5 mm on axis 1).
  # Every surface voxel has its counterpart 3 voxels away, but some have a nearer one: HD95 is
  # at most the shift, and equals the brute force below.
  target = np.zeros((16, 16), int)
  target[2:7, 2:7] = 1
  pred = np.roll(target, 3, axis=axis)
  result = metrics.segmentation_metrics(pred, target, num_classes=2, spacing=spacing)
  assert 0 < result["hd95"][0] <= distance_mm
  np.testing.assert_allclose(result["hd95"], brute_force(pred, target, 2, spacing)["hd95"])
  # Lines one voxel thick: every surface distance is the shift, so HD95 is the shift in mm.
  lines = np.zeros((16, 16), int)
  lines[2, 2:12] = 1
  lines = lines if axis == 0 else lines.T
  result = metrics.segmentation_metrics(np.roll(lines, 3, axis=axis), lines, 2, spacing=spacing)
  np.testing.assert_allclose(result["hd95"], [distance_mm])


def test_hd95_is_the_larger_directed_percentile():
  # Target: 10 voxels in a row; pred: the same plus one voxel 10 rows (20 mm) away. pred ->
  # target: ten 0s and 20, q95 at position 0.95 * 10 = 9.5 -> 10 mm; target -> pred: all 0.
  # The 95th percentile of the union (twenty 0s and 20) would be 0.
  target = np.zeros((16, 12), int)
  target[2, 0:10] = 1
  pred = target.copy()
  pred[12, 0] = 1
  spacing = (2.0, 1.0)
  result = metrics.segmentation_metrics(pred, target, 2, spacing=spacing)
  np.testing.assert_allclose(result["hd95"], [10.0])
  # NSD: 20 of the 21 surface voxels are within any tolerance; the outlier is 20 mm away.
  below = metrics.segmentation_metrics(pred, target, 2, spacing=spacing, tolerance_mm=19.9)
  above = metrics.segmentation_metrics(pred, target, 2, spacing=spacing, tolerance_mm=20.0)
  np.testing.assert_allclose(below["nsd"], [20 / 21])
  np.testing.assert_allclose(above["nsd"], [1.0])


def test_nsd_tolerance_around_a_known_distance():
  lines = np.zeros((12, 12), int)
  lines[2, 1:11] = 1
  pred = np.roll(lines, 3, axis=0)  # every surface voxel 3 rows = 4.5 mm from the other line
  at = lambda tau: metrics.segmentation_metrics(pred, lines, 2, spacing=(1.5, 1.0),
                                                tolerance_mm=tau)["nsd"][0]
  assert at(4.49) == 0.0
  assert at(4.5) == 1.0


def one_hot(labels, num_classes):
  """A label map as MONAI's metrics take it: (1, num_classes, *shape)."""
  return torch.as_tensor(np.moveaxis(np.eye(num_classes)[labels], -1, 0)[None])


@pytest.mark.parametrize("spacing", [0.1, float(np.float32(0.1))])
def test_nsd_counts_a_distance_equal_to_the_tolerance(spacing):
  # Lines 3 rows apart: every surface distance is 3 x 0.1 mm, which is 0.30000000000000004 in
  # floating point, or 0.3000000045 with 0.1 as a NIfTI header stores it (float32). Within a
  # 0.3 mm tolerance by hand; a plain <= said no to all of them (NSD 0).
  lines = np.zeros((8, 12), int)
  lines[2, 1:11] = 1
  pred = np.roll(lines, 3, axis=0)
  at = lambda tau: metrics.segmentation_metrics(pred, lines, 2, spacing=spacing,
                                                tolerance_mm=tau)["nsd"][0]
  assert at(0.3) == 1.0
  assert at(0.2999) == 0.0
  monai = lambda tau: compute_surface_dice(one_hot(pred, 2), one_hot(lines, 2), [tau],
                                           spacing=spacing).item()
  assert (monai(0.3), monai(0.2999)) == (1.0, 0.0)


def test_surface_metrics_match_monai_at_tolerances_on_the_voxel_grid():
  # Spacings 0.1, 0.2, 0.3 mm: many surface distances are sums of these and land on the
  # tolerances up to rounding. MONAI computes in float32, hence rtol 1e-6.
  rng = np.random.default_rng(1)
  shape, num_classes, spacing = (14, 12, 10), 4, (0.1, 0.2, 0.3)
  target = blobs(rng, shape, num_classes)
  pred = np.where(rng.random(shape) < 0.1, rng.integers(0, num_classes, shape),
                  np.roll(target, 1, axis=2))
  hd95 = compute_hausdorff_distance(one_hot(pred, num_classes), one_hot(target, num_classes),
                                    percentile=95, spacing=spacing).numpy()[0]
  for tau in (0.2, 0.3, 0.6):
    result = metrics.segmentation_metrics(pred, target, num_classes, spacing, tolerance_mm=tau)
    expected = compute_surface_dice(one_hot(pred, num_classes), one_hot(target, num_classes),
                                    [tau] * (num_classes - 1), spacing=spacing).numpy()[0]
    np.testing.assert_allclose(result["nsd"], expected, rtol=1e-6)
    np.testing.assert_allclose(result["hd95"], hd95, rtol=1e-6)
  # The case has ties: the brute force's plain <= (float64 distances) misses some at 0.3 mm.
  strict = brute_force(pred, target, num_classes, spacing, tolerance_mm=0.3)["nsd"]
  assert np.any(strict < metrics.segmentation_metrics(pred, target, num_classes, spacing,
                                                      tolerance_mm=0.3)["nsd"] - 1e-3)


def blobs(rng, shape, num_classes):
  """A random label map of smooth blobs (so surfaces are not the whole mask)."""
  noise = ndimage.gaussian_filter(rng.standard_normal((num_classes, *shape)), (0, 1.5, 1.5, 1.5))
  labels = np.argmax(noise, axis=0)
  labels[noise.max(0) < 0.1] = 0
  return labels


def brute_force(pred, target, num_classes, spacing, tolerance_mm=1.0):
  """The docstring's definitions, written out: explicit face neighbours and all voxel pairs."""
  def surface(mask):
    padded = np.pad(mask, 1)
    inner = np.ones_like(mask)
    for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
      inner &= np.roll(padded, step, axis)[tuple(slice(1, -1) for _ in mask.shape)]
    return np.argwhere(mask & ~inner) * np.asarray(spacing)

  hd95, nsd = [], []
  for c in range(1, num_classes):
    p, t = surface(pred == c), surface(target == c)
    if not len(t) or not len(p):
      hd95.append(np.nan if not len(t) else np.inf)
      nsd.append(np.nan if not len(t) else 0.0)
      continue
    pairwise = np.linalg.norm(p[:, None] - t[None], axis=-1)
    p_to_t, t_to_p = pairwise.min(1), pairwise.min(0)
    hd95.append(max(np.percentile(p_to_t, 95), np.percentile(t_to_p, 95)))
    nsd.append((np.sum(p_to_t <= tolerance_mm) + np.sum(t_to_p <= tolerance_mm))
               / (len(p) + len(t)))
  return {"hd95": np.array(hd95), "nsd": np.array(nsd)}


def test_surface_metrics_match_brute_force_in_3d():
  rng = np.random.default_rng(0)
  shape, num_classes, spacing = (14, 12, 10), 4, (0.8, 1.0, 2.5)
  target = blobs(rng, shape, num_classes)
  pred = np.where(rng.random(shape) < 0.1, rng.integers(0, num_classes, shape),
                  np.roll(target, 1, axis=2))
  assert (target == 3).any() and (pred == 1).any()
  result = metrics.segmentation_metrics(pred, target, num_classes, spacing, tolerance_mm=1.7)
  expected = brute_force(pred, target, num_classes, spacing, tolerance_mm=1.7)
  np.testing.assert_allclose(result["hd95"], expected["hd95"], rtol=1e-12)
  np.testing.assert_allclose(result["nsd"], expected["nsd"], rtol=1e-12)
  assert 0 < result["nsd"].min() < result["nsd"].max() < 1


def test_aggregate_segmentation():
  cases = [
      {"dice": np.array([0.8, np.nan]), "hd95": np.array([2.0, np.nan]),
       "nsd": np.array([0.9, np.nan])},
      {"dice": np.array([0.6, 0.5]), "hd95": np.array([4.0, np.inf]),
       "nsd": np.array([0.7, 0.0])},
  ]
  summary = metrics.aggregate_segmentation(cases, class_names=["liver", "tumour"])
  assert summary["num_cases"] == 2
  # Class means (0.7, 0.5), then their mean; not the mean of the case means (0.8 + 0.55) / 2.
  assert summary["dice_per_class"] == pytest.approx({"liver": 0.7, "tumour": 0.5})
  assert summary["dice"] == pytest.approx(0.6)
  assert summary["hd95_per_class"]["liver"] == 3.0
  assert summary["hd95"] == np.inf  # a missed tumour is not averaged away
  assert summary["nsd"] == pytest.approx((0.8 + 0.0) / 2)
  assert list(metrics.aggregate_segmentation(cases)["dice_per_class"]) == ["1", "2"]
  with pytest.raises(ValueError, match="1 class names for 2 foreground classes"):
    metrics.aggregate_segmentation(cases, class_names=["liver"])


def test_segmentation_errors():
  labels = np.zeros((4, 4), int)
  with pytest.raises(ValueError, match=r"shapes differ: \(4, 4\) vs \(4, 5\)"):
    metrics.segmentation_metrics(labels, np.zeros((4, 5), int), 2)
  with pytest.raises(ValueError, match=r"target labels must lie in \[0, 3\), got values in "
                                       r"\[0, 3\] \(shape \(4, 4\)\)"):
    metrics.segmentation_metrics(labels, np.eye(4, dtype=int) * 3, 3)
  with pytest.raises(ValueError, match="pred must hold integer labels, got dtype float64"):
    metrics.segmentation_metrics(labels.astype(float), labels, 2)
  with pytest.raises(ValueError, match=r"spacing must be one or 2 positive numbers"):
    metrics.segmentation_metrics(labels, labels, 2, spacing=(1.0, 1.0, 1.0))
  with pytest.raises(ValueError, match="2D or 3D"):
    metrics.segmentation_metrics(labels[0], labels[0], 2)


# Classification and regression


def auc_by_pairs(positive, scores):
  """The fraction of (positive, negative) pairs in the right order, ties counting 1/2."""
  pos, neg = scores[positive.astype(bool)], scores[~positive.astype(bool)]
  diff = pos[:, None] - neg[None]
  return (np.sum(diff > 0) + 0.5 * np.sum(diff == 0)) / diff.size


def test_auc_with_ties_by_hand():
  # Positives 0.4, 0.8, 0.9 against negatives 0.1, 0.4, 0.8: 1.5 + 2.5 + 3 of 9 pairs.
  positive = np.array([0, 0, 1, 1, 0, 1])
  scores = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])
  assert metrics.roc_auc(positive, scores) == pytest.approx(7 / 9)
  assert auc_by_pairs(positive, scores) == pytest.approx(7 / 9)
  rng = np.random.default_rng(0)
  positive, scores = rng.integers(0, 2, 200), rng.integers(0, 8, 200).astype(float)  # many ties
  assert metrics.roc_auc(positive, scores) == pytest.approx(auc_by_pairs(positive, scores))
  assert np.isnan(metrics.roc_auc(np.ones(3), [0.1, 0.2, 0.3]))


PROBS = np.array([[0.7, 0.2, 0.1],
                  [0.3, 0.4, 0.3],
                  [0.2, 0.2, 0.6],
                  [0.4, 0.5, 0.1],
                  [0.5, 0.3, 0.2],
                  [0.1, 0.3, 0.6]])
LABELS = np.array([0, 1, 2, 0, 1, 2])


def test_three_class_by_hand():
  result = metrics.classification_metrics(LABELS, PROBS)
  # Class 0: positives 0.7, 0.4 vs 0.3, 0.2, 0.5, 0.1: 4 + 3 of 8. Class 1: 0.4, 0.3 vs 0.2,
  # 0.2, 0.5, 0.3: 3 + 2.5 of 8. Class 2: 0.6, 0.6 above all: 1.
  np.testing.assert_allclose(result["auc_per_class"], [7 / 8, 5.5 / 8, 1.0])
  assert result["auc"] == pytest.approx((7 / 8 + 5.5 / 8 + 1) / 3)
  # Predictions 0, 1, 2, 1, 0, 2: recalls 1/2, 1/2, 1; F1 = 2TP / (2TP + FP + FN): 2/4, 2/4, 1.
  assert result["accuracy"] == pytest.approx(4 / 6)
  assert result["balanced_accuracy"] == pytest.approx(2 / 3)
  assert result["macro_f1"] == pytest.approx(2 / 3)
  # Logits (log-probabilities shifted per row) give the same metrics. Without the last row:
  # rounding in exp and log would break its exact tie with row 4.
  logits = np.log(PROBS[:5]) + np.arange(5)[:, None]
  from_probabilities = metrics.classification_metrics(LABELS[:5], PROBS[:5])
  from_logits = metrics.classification_metrics(LABELS[:5], logits)
  for key in result:
    np.testing.assert_allclose(from_logits[key], from_probabilities[key])


def test_balanced_accuracy_and_macro_f1_with_absent_classes():
  labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  predictions = np.array([0, 0, 0, 1, 1, 2, 2, 3])  # class 3 only predicted; class 4 in neither
  scores = np.eye(5)[predictions] * 0.9 + 0.02
  result = metrics.classification_metrics(labels, scores)
  assert result["accuracy"] == pytest.approx(5 / 8)
  # Recall over the classes in labels: 3/4, 1/2, 1/2.
  assert result["balanced_accuracy"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)
  # F1: 6/7, 2/4, 2/4, and 0 for class 3; class 4 is left out.
  assert result["macro_f1"] == pytest.approx((6 / 7 + 0.5 + 0.5 + 0) / 4)
  # Classes 3 and 4 have no positives: NaN, left out of the macro AUC.
  auc = result["auc_per_class"]
  assert np.isnan(auc[3]) and np.isnan(auc[4])
  assert result["auc"] == pytest.approx(np.mean(auc[:3]))


def test_binary_auc_is_the_positive_class():
  labels = np.array([0, 0, 1, 1, 0, 1])
  p = np.array([0.1, 0.4, 0.4, 0.8, 0.8, 0.9])
  result = metrics.classification_metrics(labels, np.stack([1 - p, p], axis=1))
  assert result["auc"] == pytest.approx(7 / 9)
  logits = np.stack([np.zeros(6), np.log(p / (1 - p))], axis=1)
  assert metrics.classification_metrics(labels, logits)["auc"] == pytest.approx(7 / 9)


def test_multilabel_auc():
  targets = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])
  scores = np.array([[0.2, 0.9, 0.5], [0.8, 0.6, 0.1], [0.6, 0.7, 0.3], [0.7, 0.1, 0.2]])
  result = metrics.multilabel_metrics(targets, scores)
  # Label 0: 0.8, 0.6 vs 0.2, 0.7: 2 + 1 of 4. Label 1: 0.9, 0.6 vs 0.7, 0.1: 2 + 1 of 4.
  # Label 2: no positives, NaN, left out of the mean.
  np.testing.assert_allclose(result["auc_per_label"], [3 / 4, 3 / 4, np.nan])
  assert result["auc"] == pytest.approx(3 / 4)
  logits = np.log(scores / (1 - scores))
  np.testing.assert_allclose(metrics.multilabel_metrics(targets, logits)["auc_per_label"],
                             result["auc_per_label"])


def test_regression_by_hand():
  result = metrics.regression_metrics([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
  assert result["mae"] == pytest.approx(1.0)
  assert result["rmse"] == pytest.approx(np.sqrt(5 / 3))


def test_classification_errors():
  with pytest.raises(ValueError, match=r"got labels \(6,\) and scores \(5, 3\)"):
    metrics.classification_metrics(LABELS, PROBS[:5])
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values in \[0, 3\]"):
    metrics.classification_metrics(np.array([0, 1, 2, 3, 1, 2]), PROBS)
  with pytest.raises(ValueError, match=r"scores must be finite; 1 of the 18 values"):
    metrics.classification_metrics(LABELS, np.where(PROBS == 0.7, np.nan, PROBS))
  with pytest.raises(ValueError, match=r"targets \(4, 3\) and scores \(4, 2\)"):
    metrics.multilabel_metrics(np.zeros((4, 3)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="targets must be 0/1"):
    metrics.roc_auc([0, 2], [0.1, 0.2])
  with pytest.raises(ValueError, match=r"got \(3,\) and \(2,\)"):
    metrics.regression_metrics([1, 2, 3], [1, 2])
