"""The extra metrics of particular benchmarks against hand-worked cases, scikit-learn,
scikit-image, and plain loops over object pairs."""

import itertools

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure
from sklearn import metrics as skm

from rasd_jax.evaluation import instance_metrics, metrics

ALL_SEGMENTATION = metrics.SEGMENTATION_EXTRA_METRICS


def score(cases, names=("object_f1", "object_dice", "aji", "pq"), num_classes=2):
  return metrics.segmentation_extra_metrics(names, cases, num_classes)


def boxes(shape, *objects):
  """A label map with value v on each (v, rows, columns) box."""
  labels = np.zeros(shape, int)
  for value, rows, columns in objects:
    labels[rows, columns] = value
  return labels


# Two 4 x 20 images. Areas in pixels; rows 0:4 unless said.
# Image 1: G1 = columns 0:5 (20), G2 = 10:14 (16). S1 = 1:6 (20) shares 16 with G1; S2 = rows
# 0:2 of 10:14 (8) covers exactly half of G2; S3 = 16:19 (12) touches nothing.
ALL_ROWS = slice(0, 4)
IMAGE_1 = {"target": boxes((4, 20), (1, ALL_ROWS, slice(0, 5)), (1, ALL_ROWS, slice(10, 14))),
           "pred": boxes((4, 20), (1, ALL_ROWS, slice(1, 6)), (1, slice(0, 2), slice(10, 14)),
                         (1, ALL_ROWS, slice(16, 19)))}
# Image 2: G1 = 0:6 (24), G2 = 7:10 (12); one S = 2:9 (28) shares 16 with G1 and 8 with G2.
IMAGE_2 = {"target": boxes((4, 20), (1, ALL_ROWS, slice(0, 6)), (1, ALL_ROWS, slice(7, 10))),
           "pred": boxes((4, 20), (1, ALL_ROWS, slice(2, 9)))}


def test_glas_object_f1_and_dice_by_hand():
  # Image 1: S1 -> G1 covers 16 > 20 / 2: TP. S2 -> G2 covers 8, not more than 16 / 2: FP (the
  # challenge code's strict "> 0.5"). S3: FP. G2 has no TP: FN. TP 1, FP 2, FN 1: F1 2/5.
  assert score([IMAGE_1])["object_f1"] == pytest.approx(0.4)
  # Image 2: S overlaps G1 most (16 of G1's 24): TP; G2: FN. Pooled over both images: TP 2,
  # FP 2, FN 2 -> 0.5 (the mean of the per-image F1s, (0.4 + 2/3) / 2, would differ).
  both = score([IMAGE_1, IMAGE_2])
  assert both["object_f1"] == pytest.approx(0.5)
  # Object Dice of image 1 alone. Ground-truth side, weights |G| / 36: G1 with S1 (its largest
  # overlap): 2*16/40 = 0.8; G2 with S2: 2*8/24 = 2/3 -> (20*0.8 + 16*2/3) / 36 = 20/27.
  # Predicted side, weights |S| / 40: S1 0.8, S2 2/3, S3 0 -> (20*0.8 + 8*2/3) / 40 = 8/15.
  assert score([IMAGE_1])["object_dice"] == pytest.approx((20 / 27 + 8 / 15) / 2)
  # Both images, weights over the dataset's totals (72 ground-truth, 68 predicted pixels).
  # Image 2: Dice(G1, S) = 32/52, Dice(G2, S) = 16/40; S's best is G1.
  true_side = (20 * 0.8 + 16 * 2 / 3 + 24 * 32 / 52 + 12 * 16 / 40) / 72
  pred_side = (20 * 0.8 + 8 * 2 / 3 + 28 * 32 / 52) / 68
  assert both["object_dice"] == pytest.approx((true_side + pred_side) / 2)


def test_aji_by_hand():
  # Image 1: G1 takes S1 (IoU 16/24), G2 takes S2 (8/16); S3 unused adds 12: 24 / 52.
  # Image 2: S has the highest IoU with both G1 (16/36) and G2 (8/32) and serves both (Kumar
  # et al. reuse it): C = 16 + 8, U = 36 + 32. AJI is averaged over the images.
  assert score([IMAGE_1])["aji"] == pytest.approx(24 / 52)
  assert score([IMAGE_1, IMAGE_2])["aji"] == pytest.approx((24 / 52 + 24 / 68) / 2)
  # G = columns 0:4 (16) against S_small = column 0 (4, IoU 4/16) and S_big = 2:12 (40, shares
  # 8, IoU 8/48): G takes S_small by IoU, not S_big by overlap; S_big adds 40: 4 / (16 + 40).
  target = boxes((4, 12), (1, ALL_ROWS, slice(0, 4)))
  pred = boxes((4, 12), (1, ALL_ROWS, slice(0, 1)), (1, ALL_ROWS, slice(2, 12)))
  result = score([{"target": target, "pred": pred}])
  assert result["aji"] == pytest.approx(4 / 56)
  # GlaS pairs by overlap instead: G with S_big, Dice 16/56 (S_small's Dice would be 8/20).
  # Predicted side: both S have G as partner, weights 4/44 and 40/44.
  assert result["object_dice"] == pytest.approx((16 / 56 + (4 * 8 / 20 + 40 * 16 / 56) / 44) / 2)


def test_ties_go_to_the_lowest_id():
  # S = columns 2:7 shares 8 pixels with G1 = 0:4 (16) and 8 with G2 = 5:7 (8). The tie goes to
  # G1, the first in raster order (MATLAB's mode in the GlaS code takes the lowest id): 8 is
  # not more than half of G1, so S is a FP and F1 is 0 (with G2 it would be a TP).
  target = boxes((4, 12), (1, ALL_ROWS, slice(0, 4)), (1, ALL_ROWS, slice(5, 7)))
  pred = boxes((4, 12), (1, ALL_ROWS, slice(2, 7)))
  assert score([{"target": target, "pred": pred}])["object_f1"] == 0.0


def test_aji_ties_go_to_the_larger_union():
  # G = columns 0:8 (32). S1 = columns 0:2 shares 8, union 32; S2 = columns 3:20 (68) shares 20,
  # union 80: IoU 1/4 each. G takes S2, the larger union, whichever comes first in raster order
  # (mirrored, S2 does): C = 20, U = 80 + 8 (S1 unused). The lowest id, S1 unmirrored, would
  # give 8 / (32 + 68).
  target = boxes((4, 20), (1, ALL_ROWS, slice(0, 8)))
  pred = boxes((4, 20), (1, ALL_ROWS, slice(0, 2)), (1, ALL_ROWS, slice(3, 20)))
  for mirror in (False, True):
    case = {"target": target[:, ::-1] if mirror else target,
            "pred": pred[:, ::-1] if mirror else pred}
    assert score([case], ("aji",))["aji"] == pytest.approx(20 / 88)
    images = (object_masks(case["target"], 2), object_masks(case["pred"], 2))
    assert reference_aji(*images) == pytest.approx(20 / 88)


def test_pq_by_hand():
  # Image 1: G1-S1 IoU 16/24 > 0.5 matches; G2-S2 IoU exactly 0.5 does not. Image 2: G1-S IoU
  # 16/36, no match. Pooled: TP 1 (IoU 2/3), FP 2 + 1, FN 1 + 2: (2/3) / (1 + 3/2 + 3/2).
  assert score([IMAGE_1])["pq"] == pytest.approx((2 / 3) / 2.5)
  assert score([IMAGE_1, IMAGE_2])["pq"] == pytest.approx((2 / 3) / 4)


def test_multiclass_pq_by_hand():
  # Class 1: target 2x4 box, prediction 2x3 inside it: IoU 0.75, TP. Class 2: a target box that
  # the prediction covers exactly but as class 4: no match across classes, so class 2 has FN 1
  # (PQ 0) and class 4 FP 1 (PQ 0, as COCO's panoptic code counts a class only predicted).
  # Class 3 is in neither and is left out of the mean: (0.75 + 0 + 0) / 3.
  target = boxes((6, 12), (1, slice(0, 2), slice(0, 4)), (2, slice(4, 6), slice(0, 4)))
  pred = boxes((6, 12), (1, slice(0, 2), slice(0, 3)), (4, slice(4, 6), slice(0, 4)))
  result = score([{"pred": pred, "target": target}], ("pq",), num_classes=5)
  assert result == {"pq": pytest.approx(0.25)}


def test_instances_separate_touching_objects():
  # Two touching glands, G1 = columns 0:6 (24) and G2 = 6:9 (12), predicted as one S = 0:9.
  # Without instances they are one component equal to S: F1 1. With them, S's largest overlap is
  # G1 (all 24 of it): TP, and G2 is a FN: F1 2/3. AJI: both take S, C = 24 + 12, U = 36 + 36.
  target = boxes((4, 12), (1, slice(0, 4), slice(0, 9)))
  instances = boxes((4, 12), (7, slice(0, 4), slice(0, 6)), (3, slice(0, 4), slice(6, 9)))
  case = {"pred": target.copy(), "target": target}
  assert score([case])["object_f1"] == 1.0
  with_ids = score([dict(case, instances=instances)])
  assert with_ids["object_f1"] == pytest.approx(2 / 3)
  assert with_ids["aji"] == pytest.approx(36 / 72)


def test_instance_map():
  # Diagonal neighbours are one object (8-connectivity, skimage.measure.label's default);
  # pixels two rows apart are not.
  labels = np.array([[1, 0, 2, 2],
                     [0, 1, 0, 0],
                     [0, 0, 0, 2],
                     [1, 1, 0, 0]])
  ids, classes = instance_metrics.instance_map(labels, 3)
  np.testing.assert_array_equal(ids, [[1, 0, 3, 3],
                                      [0, 1, 0, 0],
                                      [0, 0, 0, 4],
                                      [2, 2, 0, 0]])
  np.testing.assert_array_equal(classes, [0, 1, 1, 2, 2])
  np.testing.assert_array_equal(classes[ids], labels)
  # Given ids win over connectivity, and an id spanning two classes (5 and 9 here) is two
  # objects; objects follow the order of (id, class): (2, 1), (5, 1), (5, 2), (9, 1), (9, 2).
  instances = np.array([[5, 0, 5, 5],
                        [0, 9, 0, 0],
                        [0, 0, 0, 9],
                        [2, 2, 0, 0]])
  ids, classes = instance_metrics.instance_map(labels, 3, instances)
  np.testing.assert_array_equal(ids, [[2, 0, 3, 3],
                                      [0, 4, 0, 0],
                                      [0, 0, 0, 5],
                                      [1, 1, 0, 0]])
  np.testing.assert_array_equal(classes, [0, 1, 1, 2, 1, 2])


@pytest.mark.parametrize("shape", [(24, 24), (8, 9, 10)])
def test_instance_map_matches_skimage(shape):
  labels = blobs(np.random.default_rng(1), shape, 3)
  ids, classes = instance_metrics.instance_map(labels, 3)
  offset = 0
  for c in (1, 2):
    expected, count = measure.label(labels == c, connectivity=len(shape), return_num=True)
    np.testing.assert_array_equal(np.where(labels == c, ids - offset, 0), expected)
    offset += count
  assert len(classes) == offset + 1 > 6


# Randomized cases against plain loops over object pairs


def blobs(rng, shape, num_classes, sigma=1.2):
  """A random label map of smooth blobs, several objects per class."""
  noise = ndimage.gaussian_filter(rng.standard_normal((num_classes, *shape)),
                                  (0,) + (sigma,) * len(shape))
  labels = np.argmax(noise, axis=0)
  labels[noise.max(0) < 0.15] = 0
  return labels


def perturbed(rng, target, num_classes):
  """A prediction: the target shifted by one pixel, with 5% of pixels set at random."""
  pred = np.roll(target, 1, axis=-1)
  flip = rng.random(target.shape) < 0.05
  return np.where(flip, rng.integers(0, num_classes, target.shape), pred)


def object_masks(labels, num_classes, instances=None):
  """[(class, mask)] of every object, class by class, by skimage or the given ids."""
  objects = []
  for c in range(1, num_classes):
    components = (measure.label(labels == c, connectivity=labels.ndim) if instances is None
                  else np.where(labels == c, instances, 0))
    objects += [(c, components == k) for k in np.unique(components) if k]
  return objects


def reference_glas(images):
  """GlaS object F1 and Dice, pooled over images, written as the challenge describes them."""
  tp = fp = fn = 0
  true_dice = pred_dice = true_area = pred_area = 0.0
  for true, pred in images:
    dice = lambda a, b: 2 * np.sum(a & b) / (a.sum() + b.sum())
    matched = 0
    for _, s in pred:
      overlaps = [np.sum(s & g) for _, g in true]
      if overlaps and max(overlaps) > 0:
        g = true[int(np.argmax(overlaps))][1]
        pred_dice += s.sum() * dice(g, s)
        matched += max(overlaps) > g.sum() / 2
      pred_area += s.sum()
    for _, g in true:
      overlaps = [np.sum(s & g) for _, s in pred]
      if overlaps and max(overlaps) > 0:
        true_dice += g.sum() * dice(g, pred[int(np.argmax(overlaps))][1])
      true_area += g.sum()
    tp, fp, fn = tp + matched, fp + len(pred) - matched, fn + len(true) - matched
  return {"object_f1": 2 * tp / (2 * tp + fp + fn),
          "object_dice": (true_dice / true_area + pred_dice / pred_area) / 2,
          "counts": (tp, fp, fn)}


def reference_aji(true, pred):
  """Kumar et al. 2017, Algorithm 1, one image, with HoVer-Net's IoU, I / (U + 1e-6)."""
  intersection = union = 0
  used = set()
  for _, g in true:
    ious = [np.sum(g & s) / (np.sum(g | s) + 1e-6) for _, s in pred]
    if ious and max(ious) > 0:
      j = int(np.argmax(ious))
      intersection, union = intersection + np.sum(g & pred[j][1]), union + np.sum(g | pred[j][1])
      used.add(j)
    else:
      union += g.sum()
  union += sum(s.sum() for j, (_, s) in enumerate(pred) if j not in used)
  return intersection / union


def reference_pq(images, num_classes):
  """Kirillov et al. 2019: per class, IoU > 0.5 matches pooled over the images."""
  pq = []
  for c in range(1, num_classes):
    tp = fp = fn = 0
    iou_sum = 0.0
    for true, pred in images:
      true_c, pred_c = [g for k, g in true if k == c], [s for k, s in pred if k == c]
      for g, s in itertools.product(true_c, pred_c):
        iou = np.sum(g & s) / np.sum(g | s)
        if iou > 0.5:
          tp, iou_sum = tp + 1, iou_sum + iou
      fp, fn = fp + len(pred_c), fn + len(true_c)
    fp, fn = fp - tp, fn - tp
    if tp + fp + fn:
      pq.append(iou_sum / (tp + fp / 2 + fn / 2))
  return np.mean(pq)


def random_cases(rng, shape, num_classes, count, split_instances=False):
  cases = []
  for _ in range(count):
    target = blobs(rng, shape, num_classes)
    case = {"target": target, "pred": perturbed(rng, target, num_classes)}
    if split_instances:
      # Cut each component at the middle column: touching objects that only the ids separate.
      halves = np.arange(shape[-1]) >= shape[-1] // 2
      components = measure.label(target > 0, connectivity=target.ndim)
      case["instances"] = np.where(target > 0, 2 * components + halves, 0)
    cases.append(case)
  return cases


@pytest.mark.parametrize("shape, split_instances", [((20, 24), False), ((20, 24), True),
                                                    ((8, 10, 12), False)])
def test_binary_object_metrics_match_loops(shape, split_instances):
  rng = np.random.default_rng(2)
  cases = random_cases(rng, shape, 2, 3, split_instances)
  images = [(object_masks(c["target"], 2, c.get("instances")), object_masks(c["pred"], 2))
            for c in cases]
  expected = reference_glas(images)
  tp, fp, fn = expected["counts"]
  assert tp > 0 and fp > 0 and fn > 0  # every branch of the matching is exercised
  result = score(cases, ALL_SEGMENTATION[:4])
  assert result["object_f1"] == pytest.approx(expected["object_f1"], rel=1e-12)
  assert result["object_dice"] == pytest.approx(expected["object_dice"], rel=1e-12)
  assert result["aji"] == pytest.approx(np.mean([reference_aji(*image) for image in images]),
                                        rel=1e-12)
  assert result["pq"] == pytest.approx(reference_pq(images, 2), rel=1e-12)


def test_multiclass_pq_matches_loops():
  rng = np.random.default_rng(3)
  num_classes = 5
  cases = random_cases(rng, (24, 24), num_classes, 3)
  for case in cases:  # class 4 only predicted, class 3 in neither map
    case["target"][case["target"] >= 3] = 0
    case["pred"][case["pred"] == 3] = 0
  images = [(object_masks(c["target"], num_classes), object_masks(c["pred"], num_classes))
            for c in cases]
  result = score(cases, ("pq",), num_classes)["pq"]
  assert 0 < result < 1
  assert result == pytest.approx(reference_pq(images, num_classes), rel=1e-12)


# Pixel metrics against scikit-learn


def test_miou_and_iou_match_sklearn():
  rng = np.random.default_rng(4)
  cases = random_cases(rng, (16, 16), 3, 3)
  # mIoU pools the pixels of all images and averages over the classes, background included.
  target = np.concatenate([c["target"].ravel() for c in cases])
  pred = np.concatenate([c["pred"].ravel() for c in cases])
  expected = skm.jaccard_score(target, pred, labels=[0, 1, 2], average="macro")
  assert score(cases, ("miou",), 3)["miou"] == pytest.approx(expected, rel=1e-12)
  # A class in neither map is left out (sklearn would count it 0).
  assert score(cases, ("miou",), 4)["miou"] == pytest.approx(expected, rel=1e-12)

  binary = [{"target": (c["target"] > 0).astype(int), "pred": (c["pred"] > 0).astype(int)}
            for c in cases]
  per_image = [skm.jaccard_score(c["target"].ravel(), c["pred"].ravel()) for c in binary]
  empty = np.zeros((16, 16), int)
  binary += [{"target": empty, "pred": binary[0]["pred"]},  # empty target: left out
             {"target": binary[0]["target"], "pred": empty}]  # nothing predicted: IoU 0
  result = score(binary, ("iou", "miou"))
  assert result["iou"] == pytest.approx(np.mean(per_image + [0.0]), rel=1e-12)
  assert list(result) == ["iou", "miou"]


def test_aupr_matches_sklearn():
  rng = np.random.default_rng(5)
  cases = []
  for shape in [(12, 12), (10, 14), (9, 9)]:
    target = (rng.random(shape) < 0.2).astype(int)
    # Rounded to 0.05: many ties, within and across positives and negatives.
    prob = np.round(np.clip(0.3 * target + rng.random(shape) * 0.7, 0, 1) * 20) / 20
    cases.append({"target": target, "pred": (prob > 0.5).astype(int),
                  "prob": prob.astype(np.float32)})
  expected = skm.average_precision_score(
      np.concatenate([c["target"].ravel() for c in cases]),
      np.concatenate([c["prob"].ravel() for c in cases]))
  assert score(cases, ("aupr",))["aupr"] == pytest.approx(expected, rel=1e-12)
  # Perfect separation (some negatives above all positives would lower it).
  cases[0]["prob"] = cases[0]["target"] * 0.9 + 0.05
  assert score(cases[:1], ("aupr",))["aupr"] == 1.0


# Edge cases and errors


def test_empty_maps():
  objects = boxes((6, 6), (1, slice(1, 3), slice(1, 3)))
  empty = np.zeros((6, 6), int)
  prob = np.full((6, 6), 0.5)
  nothing_predicted = score([{"target": objects, "pred": empty, "prob": prob}], ALL_SEGMENTATION)
  assert nothing_predicted == {"object_f1": 0.0, "object_dice": 0.0, "aji": 0.0, "pq": 0.0,
                               "miou": pytest.approx((32 / 36) / 2), "iou": 0.0,
                               "aupr": pytest.approx(4 / 36)}
  only_predicted = score([{"target": empty, "pred": objects, "prob": prob}], ALL_SEGMENTATION)
  assert {k: only_predicted[k] for k in ALL_SEGMENTATION[:4]} == dict.fromkeys(
      ALL_SEGMENTATION[:4], 0.0)
  assert np.isnan(only_predicted["iou"]) and np.isnan(only_predicted["aupr"])
  neither = score([{"target": empty, "pred": empty, "prob": prob}], ALL_SEGMENTATION)
  assert neither["miou"] == 1.0  # background alone, perfectly predicted
  assert all(np.isnan(neither[name]) for name in ALL_SEGMENTATION if name != "miou")
  # An empty image among others is left out of the per-image AJI mean.
  assert score([IMAGE_1, {"target": empty, "pred": empty}])["aji"] == pytest.approx(24 / 52)


def test_segmentation_errors():
  labels = np.zeros((4, 4), int)
  case = {"pred": labels, "target": labels}
  with pytest.raises(ValueError, match=r"unknown segmentation extra metrics \['qwk'\]"):
    metrics.segmentation_extra_metrics(("iou", "qwk"), [case], 2)
  with pytest.raises(ValueError, match=r"aupr needs foreground probabilities: cases\[1\]"):
    metrics.segmentation_extra_metrics(("aupr",), [dict(case, prob=labels + 0.5), case], 2)
  with pytest.raises(ValueError, match=r"\['iou'\] are defined for binary tasks"):
    metrics.segmentation_extra_metrics(("iou", "pq"), [case], 3)
  with pytest.raises(ValueError, match=r"cases\[0\]\['instances'\] must be >= 0 and nonzero "
                                       r"exactly where target is foreground; 1 of 16"):
    stray = np.pad([[1]], ((0, 3), (0, 3)))  # an id on a background pixel
    metrics.segmentation_extra_metrics(("aji",), [dict(case, instances=stray)], 2)
  with pytest.raises(ValueError, match=r"cases\[0\] must have keys 'pred' and 'target'"):
    metrics.segmentation_extra_metrics(("aji",), [dict(case, instance=labels)], 2)
  with pytest.raises(ValueError, match=r"cases\[0\]\['target'\] labels must lie in \[0, 2\)"):
    metrics.segmentation_extra_metrics(("aji",), [dict(case, target=labels + 2)], 2)
  with pytest.raises(ValueError, match=r"cases\[0\]\['prob'\] must be finite"):
    metrics.segmentation_extra_metrics(("aupr",), [dict(case, prob=np.full((4, 4), np.nan))], 2)
  with pytest.raises(ValueError, match="no cases"):
    metrics.segmentation_extra_metrics(("aji",), [], 2)


# Classification


def test_pooled_metrics_match_sklearn():
  rng = np.random.default_rng(6)
  num_classes = 5
  labels = rng.choice([0, 1, 2, 4], 60)  # class 3 in neither labels nor predictions
  right = rng.random(60) < 0.6  # these get their label's score raised above the rest
  scores = rng.random((60, num_classes)) + 2 * np.eye(num_classes)[labels] * right[:, None]
  scores[:, 3] = -1
  predictions = scores.argmax(1)
  result = metrics.pooled_extra_metrics(("qwk", "detection_f1"), labels, scores)
  # The absent class changes the weights' scale but not kappa; sklearn with all labels listed.
  assert result["qwk"] == pytest.approx(skm.cohen_kappa_score(
      labels, predictions, weights="quadratic", labels=range(num_classes)), rel=1e-12)
  assert result["detection_f1"] == pytest.approx(skm.f1_score(labels == 1, predictions == 1),
                                                 rel=1e-12)
  assert 0 < result["detection_f1"] < result["qwk"] < 1


def test_qwk_by_hand_and_undefined_values():
  # Labels 0, 1, 2 predicted 0, 2, 2: O has 1 off-diagonal count at distance 1, weight 1.
  # Marginals: labels (1, 1, 1), predictions (1, 0, 2); E = outer / 3. sum w E =
  # (1*0*1 + 1*2*4 + 1*1*1 + 1*2*1 + 1*1*4 + 1*0*1) / 3 = 15 / 3 = 5; kappa = 1 - 1/5.
  scores = np.eye(3)[[0, 2, 2]]
  assert metrics.pooled_extra_metrics(("qwk",), [0, 1, 2], scores) == {
      "qwk": pytest.approx(0.8)}
  # One class everywhere: kappa 0/0 (sklearn: NaN); no class 1 anywhere: F1 0/0.
  same = metrics.pooled_extra_metrics(("qwk", "detection_f1"), [0, 0], np.eye(2)[[0, 0]])
  assert np.isnan(same["qwk"]) and np.isnan(same["detection_f1"])
  with pytest.raises(ValueError, match=r"unknown classification extra metrics \['aji'\]"):
    metrics.pooled_extra_metrics(("aji",), [0], np.eye(2)[[0]])
  with pytest.raises(ValueError, match="labels must be"):
    metrics.pooled_extra_metrics(("qwk",), [0, 1], np.eye(2)[[0]])


# Point detection


def test_detection_f1_points_by_hand():
  # True A = (0, 0), B = (10, 0); predictions p1 = (4, 0) (4 from A, 6 from B) and p2 = (-5, 0)
  # (5 from A only). Radius 6: the one-to-one matching A-p2, B-p1 finds both; a greedy pass
  # giving A its nearest prediction (p1) would leave B unmatched.
  result = instance_metrics.detection_f1_points([[4, 0], [-5, 0]], [[0, 0], [10, 0]], 6)
  assert result == {"f1": 1.0, "tp": 2, "fp": 0, "fn": 0}
  # Radius 5.5: B has no prediction in reach; one match, one FP, one FN.
  result = instance_metrics.detection_f1_points([[4, 0], [-5, 0]], [[0, 0], [10, 0]], 5.5)
  assert result == {"f1": 0.5, "tp": 1, "fp": 1, "fn": 1}
  # A distance equal to the radius matches (3-4-5), also where rounding puts it one ulp
  # beyond: 3 pixels of 0.1 mm are 0.30000000000000004 mm.
  assert instance_metrics.detection_f1_points([[3, 4]], [[0, 0]], 5)["tp"] == 1
  assert instance_metrics.detection_f1_points([[3, 4]], [[0, 0]], 4.999)["tp"] == 0
  assert instance_metrics.detection_f1_points([[3 * 0.1, 0]], [[0, 0]], 0.3)["tp"] == 1
  assert instance_metrics.detection_f1_points([[3 * 0.1, 0]], [[0, 0]], 0.2999)["tp"] == 0
  # Two predictions on one true point: one TP, one FP.
  assert instance_metrics.detection_f1_points([[0, 0], [1, 1]], [[0, 0]], 2) == {
      "f1": pytest.approx(2 / 3), "tp": 1, "fp": 1, "fn": 0}


def test_detection_f1_points_empty_and_errors():
  assert instance_metrics.detection_f1_points([], [[1, 2]], 3) == {"f1": 0.0, "tp": 0, "fp": 0,
                                                                    "fn": 1}
  assert instance_metrics.detection_f1_points(np.zeros((0, 2)), [], 3)["fp"] == 0
  assert np.isnan(instance_metrics.detection_f1_points([], [], 3)["f1"])
  assert instance_metrics.detection_f1_points([[1, 2]], np.zeros((0, 2)), 3)["fp"] == 1
  with pytest.raises(ValueError, match="different dimensions"):
    instance_metrics.detection_f1_points([[0, 0]], [[0, 0, 0]], 1)
  with pytest.raises(ValueError, match="radius must be > 0"):
    instance_metrics.detection_f1_points([[0, 0]], [[0, 0]], 0)
  with pytest.raises(ValueError, match=r"pred_points must be \(N, D\)"):
    instance_metrics.detection_f1_points([0, 0], [[0, 0]], 1)


def max_matching(pred, true, radius):
  """The largest number of one-to-one pairs within radius, by trying every assignment."""
  def best(i, used):
    if i == len(pred):
      return 0
    options = [best(i + 1, used)]
    options += [1 + best(i + 1, used | {j}) for j in range(len(true))
                if j not in used and np.linalg.norm(pred[i] - true[j]) <= radius]
    return max(options)
  return best(0, frozenset())


def test_detection_f1_points_matches_exhaustive_search():
  rng = np.random.default_rng(7)
  for _ in range(20):
    pred, true = (rng.random((rng.integers(0, 7), 2)) * 10 for _ in range(2))
    result = instance_metrics.detection_f1_points(pred, true, 2.5)
    tp = max_matching(pred, true, 2.5)
    assert (result["tp"], result["fp"], result["fn"]) == (tp, len(pred) - tp, len(true) - tp)
    if len(pred) + len(true):
      assert result["f1"] == pytest.approx(skm.f1_score(
          [1] * tp + [0] * (len(pred) - tp) + [1] * (len(true) - tp),
          [1] * tp + [1] * (len(pred) - tp) + [0] * (len(true) - tp), zero_division=0.0))
