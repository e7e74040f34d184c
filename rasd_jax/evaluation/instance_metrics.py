"""Object-level scores of one image (instance maps) and point-detection F1, in NumPy/SciPy.

An instance map holds 0 on background and 1..n on its n objects. The functions that score an
image return the counts or sums a dataset score is built from: `metrics.segmentation_extra_metrics`
adds them up over the images or averages per image, as each metric's reference does, and its
docstring gives the definitions.
"""

import itertools

import numpy as np
from scipy import ndimage, sparse, spatial
from scipy.sparse import csgraph

# A distance equal to a tolerance up to this relative slack is within it (the NSD's tolerance,
# point matching's radius). It absorbs rounding, 3 * 0.1 = 0.30000000000000004 or a float32
# spacing from a NIfTI header, never a physical difference: 1e-6 of 1 mm is 1 nm.
DISTANCE_RTOL = 1e-6


def instance_map(labels, num_classes, instances=None):
  """The objects of a label map: (ids, classes).

  ids: an int64 array of labels' shape, 0 on background and 1..n on the n objects. classes:
  (n + 1,) the class of each id, classes[0] = 0, so classes[ids] is the label map again.
  Without `instances`, the objects are the connected components of each class 1..num_classes-1
  with full connectivity: 8 neighbours in 2D, 26 in 3D (MATLAB's bwlabel default, which the
  GlaS evaluation code uses, and skimage.measure.label's). They are numbered class by class,
  within a class in raster order of their first voxel. With `instances` (an id map that is
  nonzero exactly on the foreground of labels), an object is the voxels sharing one id and one
  class: an id spanning two classes is two objects. Objects keep the order of their ids.
  """
  ids = np.zeros(labels.shape, np.int64)
  if instances is None:
    structure = ndimage.generate_binary_structure(labels.ndim, labels.ndim)
    classes = [0]
    for c in range(1, num_classes):
      components, count = ndimage.label(labels == c, structure)
      ids[components > 0] = components[components > 0] + (len(classes) - 1)
      classes += [c] * count
    return ids, np.array(classes, np.int64)
  foreground = labels > 0
  keys = instances[foreground].astype(np.int64) * num_classes + labels[foreground]
  unique, inverse = np.unique(keys, return_inverse=True)
  ids[foreground] = inverse + 1
  return ids, np.concatenate([[0], unique % num_classes])


def _overlaps(true_ids, pred_ids):
  """The (true, pred) object pairs that share voxels: ids t, p (>= 1) and the shared counts."""
  both = (true_ids > 0) & (pred_ids > 0)
  stride = int(pred_ids.max()) + 1
  keys, shared = np.unique(true_ids[both] * stride + pred_ids[both], return_counts=True)
  return keys // stride, keys % stride, shared


def _areas(ids, num_objects):
  """Voxel count of each id 0..num_objects (index 0: the background)."""
  return np.bincount(ids.ravel(), minlength=num_objects + 1)


def _best_pairs(owners, partners, score, tie=None):
  """Indices of the pairs that give each owner its highest score; among equal scores the
  highest `tie` (when given), then the lowest partner id.

  Only owners that appear in a pair get one. The lowest id among ties is what MATLAB's `mode`
  picks in the GlaS code and numpy's `argmax` in HoVer-Net's.
  """
  keys = (partners, -score, owners) if tie is None else (partners, -tie, -score, owners)
  order = np.lexsort(keys)
  first = np.ones(len(order), bool)
  first[1:] = owners[order][1:] != owners[order][:-1]
  return order[first]


def glas_sums(true_ids, num_true, pred_ids, num_pred):
  """One image's share of the GlaS object F1 and object Dice (Sirinukunwattana et al. 2017).

  Returns {"tp", "fp", "fn"}: a segmented object is a true positive when the ground-truth object
  it overlaps most covers more than half of that object (`areaOverlap / areaGTObj > 0.5` in the
  challenge's MATLAB code), else a false positive; fn = ground-truth objects without a true
  positive (at most one segmented object can cover more than half of one). And the area-weighted
  Dice sums {"true_dice", "true_area", "pred_dice", "pred_area"}: true_dice = sum over the
  ground-truth objects G of |G| Dice(G, the segmented object that overlaps G most), 0 for a G
  that none overlaps; pred_dice the same from the segmented side; *_area the total object areas.
  """
  t, p, shared = _overlaps(true_ids, pred_ids)
  true_area, pred_area = _areas(true_ids, num_true), _areas(pred_ids, num_pred)
  dice = 2 * shared / (true_area[t] + pred_area[p])
  for_pred = _best_pairs(p, t, shared)
  tp = int(np.sum(2 * shared[for_pred] > true_area[t[for_pred]]))
  for_true = _best_pairs(t, p, shared)
  return {"tp": tp, "fp": num_pred - tp, "fn": num_true - tp,
          "true_dice": float(np.sum(true_area[t[for_true]] * dice[for_true])),
          "true_area": int(true_area[1:].sum()),
          "pred_dice": float(np.sum(pred_area[p[for_pred]] * dice[for_pred])),
          "pred_area": int(pred_area[1:].sum())}


def aji(true_ids, num_true, pred_ids, num_pred):
  """Aggregated Jaccard Index of one image (Kumar et al. 2017, IEEE TMI, Algorithm 1).

  Each ground-truth object G_i takes the segmented object S_j of highest IoU with it, among all
  of them (one S_j may serve several G_i): C += |G_i ∩ S_j|, U += |G_i ∪ S_j|. A G_i that no
  segmented object overlaps adds |G_i| to U (HoVer-Net's `get_fast_aji`; the paper's argmax is
  undefined there). Every segmented object no G_i took adds its area to U. AJI = C / U; NaN for
  an image without objects in either map (0/0), 0 when only one map has objects.

  Exact IoU ties go to the segmented object with the larger union with G_i (so the larger
  overlap), then to the lowest id. This is HoVer-Net's `get_fast_aji`, the code most published
  AJI values come from: it divides by union + 1e-6, which orders equal IoUs by their union and,
  for objects of nucleus or gland size, leaves every other order alone; its argmax takes the
  first id. A tie then depends on the objects, not on how they are numbered.
  """
  t, p, shared = _overlaps(true_ids, pred_ids)
  true_area, pred_area = _areas(true_ids, num_true), _areas(pred_ids, num_pred)
  union = true_area[t] + pred_area[p] - shared
  best = _best_pairs(t, p, shared / union, tie=union)
  true_left, pred_left = np.ones(num_true + 1, bool), np.ones(num_pred + 1, bool)
  true_left[t[best]] = pred_left[p[best]] = False
  total_union = (union[best].sum() + true_area[1:][true_left[1:]].sum()
                 + pred_area[1:][pred_left[1:]].sum())
  return float(shared[best].sum() / total_union) if total_union else float("nan")


def pq_sums(true_ids, true_classes, pred_ids, pred_classes, num_classes):
  """One image's share of the panoptic quality of each class (Kirillov et al. 2019).

  A ground-truth and a segmented object of the same class match when their IoU exceeds 0.5
  (unique: objects of one map are disjoint, so no object has IoU > 0.5 with two). Returns
  {"tp", "fp", "fn", "iou"}: arrays over the classes 0..num_classes-1 of matched pairs,
  unmatched segmented objects, unmatched ground-truth objects, and the summed IoU of the pairs.
  """
  t, p, shared = _overlaps(true_ids, pred_ids)
  true_area = _areas(true_ids, len(true_classes) - 1)
  pred_area = _areas(pred_ids, len(pred_classes) - 1)
  iou = shared / (true_area[t] + pred_area[p] - shared)
  match = (iou > 0.5) & (true_classes[t] == pred_classes[p])
  matched_classes = true_classes[t[match]]
  tp = np.bincount(matched_classes, minlength=num_classes)
  return {"tp": tp,
          "fp": np.bincount(pred_classes[1:], minlength=num_classes) - tp,
          "fn": np.bincount(true_classes[1:], minlength=num_classes) - tp,
          "iou": np.bincount(matched_classes, weights=iou[match], minlength=num_classes)}


def detection_f1_points(pred_points, true_points, radius):
  """F1 of point detections, predictions matched one-to-one to true points within `radius`.

  pred_points (N, D), true_points (M, D): coordinates in one unit (empty: [] or shape (0, D));
  radius in the same unit, a pair matching when its distance is <= radius, equality up to
  DISTANCE_RTOL included (MIDOG 2021: 30 px = 7.5 um at 0.25 um/px). tp is the size of a
  maximum one-to-one matching (scipy's `maximum_bipartite_matching`), which does not depend on
  the order of the points; the greedy pass of grand-challenge's evalutils `score_detection`
  (each true point in turn takes its nearest free prediction) finds fewer pairs in some crowded
  layouts. fp = N - tp, fn = M - tp, f1 = 2 tp / (2 tp + fp + fn): NaN without points on either
  side (0/0), 0 when only one side has points. Over a dataset, add up tp, fp and fn and take the
  F1 of the sums, as MIDOG does. Returns {"f1", "tp", "fp", "fn"}.
  """
  pred, true = _points(pred_points, "pred_points"), _points(true_points, "true_points")
  if len(pred) and len(true) and pred.shape[1] != true.shape[1]:
    raise ValueError(f"pred_points and true_points have different dimensions: {pred.shape} vs "
                     f"{true.shape}")
  if not radius > 0:
    raise ValueError(f"radius must be > 0, got {radius}")
  tp = 0
  if len(pred) and len(true):
    near = spatial.cKDTree(true).query_ball_point(pred, radius * (1 + DISTANCE_RTOL))
    rows = np.repeat(np.arange(len(pred)), [len(n) for n in near])
    columns = np.fromiter(itertools.chain.from_iterable(near), np.intp, len(rows))
    graph = sparse.csr_array((np.ones(len(rows)), (rows, columns)), shape=(len(pred), len(true)))
    tp = int(np.sum(csgraph.maximum_bipartite_matching(graph, perm_type="column") >= 0))
  fp, fn = len(pred) - tp, len(true) - tp
  return {"f1": f1_of_counts(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn}


def f1_of_counts(tp, fp, fn):
  """2 tp / (2 tp + fp + fn), which is 2 P R / (P + R); NaN when all three are 0."""
  denominator = 2 * tp + fp + fn
  return float(2 * tp / denominator) if denominator else float("nan")


def _points(points, name):
  points = np.asarray(points, dtype=float)
  if points.size == 0:
    return points.reshape(0, points.shape[-1] if points.ndim == 2 else 0)
  if points.ndim != 2:
    raise ValueError(f"{name} must be (N, D) coordinates, got shape {points.shape}")
  if not np.all(np.isfinite(points)):
    raise ValueError(f"{name} must be finite, got {np.sum(~np.isfinite(points))} non-finite "
                     f"values in shape {points.shape}")
  return points
