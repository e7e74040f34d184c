"""Downstream metrics on the host (NumPy/SciPy), with the standard definitions.

Segmentation, per case and background excluded: Dice, HD95 and NSD as MONAI's DiceMetric
(include_background=False, ignore_empty=True), HausdorffDistanceMetric(percentile=95) and
SurfaceDiceMetric define them, in mm; `aggregate_segmentation` summarises a dataset.
Classification: accuracy, balanced accuracy, macro F1, exact ROC AUC (binary and macro
one-vs-rest); multi-label macro AUC. Regression: MAE and RMSE. Dataset-level metrics of
particular benchmarks (a task's extra_metrics): `segmentation_extra_metrics` (GlaS object F1
and object Dice, AJI, PQ, mIoU, IoU, pixel AUPR; the object-level parts in `instance_metrics`)
and `pooled_extra_metrics` (QWK, detection F1 over candidates).

NaN means "undefined for this input" (a class absent from the target, an AUC without positives)
and is left out of every mean. Each function states its conventions.
"""

import numpy as np
from scipy import ndimage

from rasd_jax.evaluation import instance_metrics

# Segmentation


def segmentation_metrics(pred, target, num_classes, spacing=None, tolerance_mm=1.0):
  """Per-class Dice, HD95 (mm) and NSD of one case.

  pred, target: integer label maps of the same 2D or 3D shape with values in [0, num_classes);
  class 0 is background and is not scored. spacing: voxel size in mm along each array axis (one
  number for isotropic voxels; default 1). Returns {"dice", "hd95", "nsd"}: float arrays of
  shape (num_classes - 1,), entry c - 1 for class c.

  With P, T the voxels of class c in pred and target, dP, dT their surfaces (the voxels of the
  mask with a face neighbour outside it or outside the image: scipy's `binary_erosion` defaults,
  as MONAI's `get_mask_edges`), and d(x, S) the distance in mm from the centre of voxel x to the
  nearest voxel centre of S:
  - Dice = 2 |P ∩ T| / (|P| + |T|).
  - HD95 = max(q95{d(x, dT) : x in dP}, q95{d(y, dP) : y in dT}), q95 the 95th percentile with
    linear interpolation (numpy's default; torch.quantile's in MONAI). The larger of the two
    directed distances, not the percentile of their union.
  - NSD = (|{x in dP : d(x, dT) <= tau}| + |{y in dT : d(y, dP) <= tau}|) / (|dP| + |dT|), the
    surface Dice at tolerance tau = tolerance_mm (Nikolov et al. 2021; MONAI's
    `compute_surface_dice` with use_subvoxels=False, which counts surface voxels, not area).
    Default 1 mm, as in the FLARE challenges; a tolerance below the voxel size only credits
    surface voxels that coincide. A distance equal to tau up to a relative 1e-6 counts as within
    (instance_metrics.DISTANCE_RTOL): 3 voxels of 0.1 mm are 0.30000000000000004 mm in floating
    point, and spacings read from NIfTI headers are float32 (0.1 is stored as 0.10000000149),
    so a plain `<=` would miss surface voxels lying exactly at the tolerance. MONAI, whose
    distances are float32, counts them too.

  Empty classes. A class absent from the target is NaN in all three metrics: MONAI's
  ignore_empty=True for Dice, applied to HD95 and NSD too (where MONAI would give inf and 0 if
  only the prediction has the class) so that the three average over the same (case, class)
  pairs. A class of the target absent from the prediction: Dice 0, HD95 inf, NSD 0. (MONAI's
  percentile path returns NaN there, torch.quantile of infinities, and so drops the miss from
  its mean: MONAI issue #9095. Its maximum path returns inf, as we do.)
  """
  pred, target = np.asarray(pred), np.asarray(target)
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
  if target.ndim not in (2, 3):
    raise ValueError(f"label maps must be 2D or 3D, got shape {target.shape}")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2 (background + 1), got {num_classes}")
  _check_labels(pred, num_classes, "pred")
  _check_labels(target, num_classes, "target")
  spacing = _spacing(spacing, target.ndim)
  if not tolerance_mm >= 0:
    raise ValueError(f"tolerance_mm must be >= 0, got {tolerance_mm}")
  # intp: no overflow in the pair code below, and find_objects wants integers, not bools.
  pred, target = pred.astype(np.intp), target.astype(np.intp)

  # One pass over the voxels for every class: counts[p, t] of (pred, target) label pairs.
  counts = _confusion(pred, target, num_classes)
  intersection = np.diag(counts)[1:]
  pred_size, target_size = counts.sum(1)[1:], counts.sum(0)[1:]
  dice, hd95, nsd = (np.full(num_classes - 1, np.nan) for _ in range(3))
  present = target_size > 0
  dice[present] = 2 * intersection[present] / (pred_size + target_size)[present]

  limit = tolerance_mm * (1 + instance_metrics.DISTANCE_RTOL)
  pred_boxes = ndimage.find_objects(pred, num_classes - 1)
  target_boxes = ndimage.find_objects(target, num_classes - 1)
  for i in np.flatnonzero(present):
    if pred_size[i] == 0:
      hd95[i], nsd[i] = np.inf, 0.0
      continue
    box = _union_box(pred_boxes[i], target_boxes[i], target.shape)
    pred_to_target, target_to_pred = _surface_distances(pred[box] == i + 1, target[box] == i + 1,
                                                        spacing)
    hd95[i] = max(np.percentile(pred_to_target, 95), np.percentile(target_to_pred, 95))
    within = np.sum(pred_to_target <= limit) + np.sum(target_to_pred <= limit)
    nsd[i] = within / (len(pred_to_target) + len(target_to_pred))
  return {"dice": dice, "hd95": hd95, "nsd": nsd}


def aggregate_segmentation(cases, class_names=None):
  """Dataset summary of a list of `segmentation_metrics` results.

  For each metric m: m_per_class[name] = the mean over the cases where the class is scored (NaN
  skipped), and m = the mean of those class means over the classes scored in at least one case,
  so every class weighs the same whatever its number of cases (the "average" row of a per-organ
  table; MONAI's DiceMetric(reduction="mean") instead averages each case's class mean over the
  cases). An infinite HD95 (a target class with nothing predicted) makes its class mean and the
  overall HD95 infinite: a missed structure is reported, not averaged away. class_names: one per
  foreground class, default "1", "2", ... Also returns num_cases.
  """
  if not cases:
    raise ValueError("no cases to aggregate")
  num_foreground = len(cases[0]["dice"])
  names = ([str(c) for c in range(1, num_foreground + 1)] if class_names is None
           else [str(name) for name in class_names])
  if len(names) != num_foreground:
    raise ValueError(f"{len(names)} class names for {num_foreground} foreground classes")
  summary = {"num_cases": len(cases)}
  for metric in cases[0]:
    values = np.asarray([case[metric] for case in cases], dtype=float)
    if values.shape != (len(cases), num_foreground):
      raise ValueError(f"{metric}: expected {num_foreground} classes per case, got an array of "
                       f"shape {values.shape} over the cases")
    per_class = _nanmean(values, axis=0)
    summary[metric] = float(_nanmean(per_class))
    summary[f"{metric}_per_class"] = dict(zip(names, per_class.tolist()))
  return summary


def _surface(mask):
  # scipy's default structure (face neighbours) and border_value=0, as MONAI's get_mask_edges.
  return mask & ~ndimage.binary_erosion(mask)


def _surface_distances(a, b, spacing):
  """Distances in mm from each surface voxel of mask a to the surface of b, and of b to a."""
  surface_a, surface_b = _surface(a), _surface(b)
  to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
  to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing)
  return to_b[surface_a], to_a[surface_b]


def _union_box(box_a, box_b, shape):
  """The union of two find_objects boxes (either may be None), one voxel wider, in the image.

  Surfaces and distances in it equal those of the full image, at a fraction of the cost for
  small structures: the margin keeps the crop border off both masks, and all surface voxels lie
  inside.
  """
  boxes = [box for box in (box_a, box_b) if box is not None]
  return tuple(slice(max(min(box[axis].start for box in boxes) - 1, 0),
                     min(max(box[axis].stop for box in boxes) + 1, size))
               for axis, size in enumerate(shape))


def _spacing(spacing, ndim):
  values = np.atleast_1d(np.asarray(1.0 if spacing is None else spacing, dtype=float))
  if values.size == 1:
    values = np.repeat(values, ndim)
  if values.shape != (ndim,) or not np.all(values > 0):
    raise ValueError(f"spacing must be one or {ndim} positive numbers (mm per axis), "
                     f"got {spacing}")
  return tuple(values)


# Classification and regression


def classification_metrics(labels, scores):
  """Single-label classification metrics.

  labels: (N,) ints in [0, C). scores: (N, C), C >= 2: probabilities (every value in [0, 1],
  rows summing to 1) or logits (anything else; softmaxed for the AUC, as a class's probability
  is not a monotone function of its logit alone). The prediction is the argmax.
  - accuracy: the fraction of correct predictions.
  - balanced_accuracy: the mean recall TP_c / (TP_c + FN_c) over the classes present in labels
    (sklearn's balanced_accuracy_score).
  - macro_f1: the mean of F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c) over the classes present in
    labels or predictions (sklearn's f1_score(average="macro") without `labels`); a class
    present in only one of them has F1 0, one absent from both is left out.
  - auc_per_class: one-vs-rest `roc_auc` of labels == c against the probability of class c;
    NaN for a class with no positives or no negatives.
  - auc: binary (C = 2): the AUC of class 1. Multi-class: the mean of auc_per_class over the
    classes where it is defined (sklearn's roc_auc_score(multi_class="ovr", average="macro")
    when every class is present).
  """
  labels, scores = _classification_inputs(labels, scores)
  num_classes = scores.shape[1]
  predictions = np.argmax(scores, axis=1)
  confusion = _confusion(labels, predictions, num_classes)
  correct, support, predicted = np.diag(confusion), confusion.sum(1), confusion.sum(0)
  f1_denominator = support + predicted  # (TP + FN) + (TP + FP)
  f1_scored = f1_denominator > 0
  probabilities = scores if _is_distribution(scores) else _softmax(scores)
  auc_per_class = np.array([roc_auc(labels == c, probabilities[:, c])
                            for c in range(num_classes)])
  return {
      "accuracy": float(correct.sum() / len(labels)),
      "balanced_accuracy": float(np.mean(correct[support > 0] / support[support > 0])),
      "macro_f1": float(np.mean(2 * correct[f1_scored] / f1_denominator[f1_scored])),
      "auc": float(auc_per_class[1] if num_classes == 2 else _nanmean(auc_per_class)),
      "auc_per_class": auc_per_class.tolist(),
  }


def multilabel_metrics(targets, scores):
  """Multi-label classification: targets (N, L) binary, scores (N, L) probabilities or logits.

  auc_per_label: `roc_auc` of each label (NaN without positives or negatives; the sigmoid is
  monotone, so probabilities and logits give the same value); auc: their mean over the labels
  where it is defined (sklearn's roc_auc_score(average="macro") when all are).
  """
  targets, scores = np.asarray(targets), np.asarray(scores, dtype=float)
  if targets.ndim != 2 or targets.shape != scores.shape:
    raise ValueError(f"targets and scores must both be (N, L), got targets {targets.shape} and "
                     f"scores {scores.shape}")
  auc_per_label = np.array([roc_auc(targets[:, j], scores[:, j])
                            for j in range(targets.shape[1])])
  return {"auc": float(_nanmean(auc_per_label)), "auc_per_label": auc_per_label.tolist()}


def roc_auc(positive, scores):
  """Exact area under the ROC curve of binary targets (N,) against scores (N,).

  By the Mann-Whitney U statistic: AUC = (R - n_pos (n_pos + 1) / 2) / (n_pos n_neg), R the sum
  of the ranks of the positives' scores among all scores, tied scores sharing their average
  rank. This is the fraction of (positive, negative) pairs whose scores are in the right order,
  a tie counting 1/2. NaN when there are no positives or no negatives.
  """
  positive, scores = np.asarray(positive), np.asarray(scores, dtype=float)
  if positive.ndim != 1 or positive.shape != scores.shape:
    raise ValueError(f"targets and scores must both be (N,), got {positive.shape} and "
                     f"{scores.shape}")
  if not np.isin(positive, (0, 1)).all():
    raise ValueError(f"targets must be 0/1 or bool, got values {np.unique(positive)[:10]}")
  _check_finite(scores, "scores")
  positive = positive.astype(bool)
  num_positive = int(positive.sum())
  num_negative = len(positive) - num_positive
  if num_positive == 0 or num_negative == 0:
    return float("nan")
  # Imported here: scipy.stats takes ~0.5 s to import, paid by the tasks that score an AUC.
  from scipy import stats
  rank_sum = stats.rankdata(scores)[positive].sum()
  return float((rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative))


def regression_metrics(targets, predictions):
  """MAE = mean |y - y_hat| and RMSE = sqrt(mean (y - y_hat)^2) over all entries, in the units
  of the targets (months for bone age)."""
  targets, predictions = np.asarray(targets, dtype=float), np.asarray(predictions, dtype=float)
  if targets.shape != predictions.shape or not targets.size:
    raise ValueError(f"targets and predictions must have the same non-empty shape, got "
                     f"{targets.shape} and {predictions.shape}")
  _check_finite(predictions, "predictions")
  error = predictions - targets
  return {"mae": float(np.mean(np.abs(error))), "rmse": float(np.sqrt(np.mean(error ** 2)))}


# Dataset-level metrics of particular benchmarks (a task's extra_metrics)

SEGMENTATION_EXTRA_METRICS = ("object_f1", "object_dice", "aji", "pq", "miou", "iou", "aupr")
POOLED_EXTRA_METRICS = ("qwk", "detection_f1")
_CASE_KEYS = ("pred", "target", "instances", "prob")


def segmentation_extra_metrics(names, cases, num_classes):
  """The metrics `names` (of SEGMENTATION_EXTRA_METRICS) of a segmentation dataset: {name: float}.

  cases: one dict per image, {"pred": int label map, "target": int label map of the same 2D or
  3D shape, "instances": the ground truth's instance-id map (0 on background, nonzero exactly
  where target is foreground) or None, "prob": float foreground probability map or None};
  missing optional keys mean None. Objects: a ground-truth object is one id of `instances` within
  one class, or without it a connected component of one target class; a predicted object is a
  connected component of one predicted class. Components use full connectivity (8 neighbours in
  2D, 26 in 3D), as `instance_metrics.instance_map` says.

  - object_f1 (GlaS, Sirinukunwattana et al. 2017, Med. Image Anal. 35): a predicted object is a
    true positive when the ground-truth object it overlaps most has more than half of its area
    covered by it, else a false positive; ground-truth objects left are false negatives.
    Precision, recall and F1 of the counts added over all images (the challenge's F1 over its
    test set, as the Warwick evaluation code sums them). Matching ignores classes. NaN without
    objects in any image (0/0), 0 when only one side has objects.
  - object_dice (GlaS, same paper): 1/2 [sum_i w_i Dice(G_i, S*(G_i)) + sum_j v_j Dice(G*(S_j),
    S_j)], over all ground-truth objects G_i and predicted objects S_j of the dataset, w_i and
    v_j their areas over the total ground-truth and predicted object areas of the dataset,
    S*(G_i) the predicted object of the same image that overlaps G_i most (Dice 0 if none does),
    G*(S_j) likewise. A side with no objects adds 0; NaN when neither has any (the challenge
    code gives 1 to such an image; pooled, that happens only for a dataset without objects).
  - aji (Kumar et al. 2017, IEEE TMI 36): the Aggregated Jaccard Index of each image
    (`instance_metrics.aji`), then the mean over the images where it is defined (an image with
    no objects on either side is NaN and left out). Matching ignores classes.
  - pq (Kirillov et al. 2019, CVPR, "Panoptic Segmentation"): for each foreground class c,
    objects of class c matched at IoU > 0.5 in each image; with TP, FP, FN and the matched IoUs
    added over all images, PQ_c = sum IoU / (TP + FP / 2 + FN / 2) (the paper's dataset-level
    PQ, as the COCO panoptic code computes it; MoNuSAC's own scoring averages per image). pq is
    the mean of PQ_c over the classes with TP + FP + FN > 0: a class that is in neither the
    targets nor the predictions is left out, one only predicted counts 0. Background is not a
    class of PQ.
  - miou: IoU_c = |P_c ∩ T_c| / |P_c ∪ T_c| with the voxel counts added over all images, for
    every class c INCLUDING background, and the mean over the classes with a nonzero union
    (mmsegmentation's IoUMetric, the convention of the MMOTU benchmark).
  - iou (binary tasks only): the foreground IoU |P ∩ T| / |P ∪ T| of each image, then the mean
    over the images whose target has foreground (an empty target is NaN and left out, as the
    Dice's ignore_empty). Background is not scored.
  - aupr (binary tasks only; needs "prob" in every case): the average precision of the
    foreground probabilities against target > 0 over all pixels of all images together,
    AP = sum_n (R_n - R_{n-1}) P_n over the distinct thresholds (sklearn's
    average_precision_score: no interpolation, tied scores share one threshold). NaN without
    any foreground pixel.
  """
  names = _check_metric_names(names, SEGMENTATION_EXTRA_METRICS, "segmentation")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2 (background + 1), got {num_classes}")
  binary_only = [name for name in names if name in ("iou", "aupr")]
  if binary_only and num_classes != 2:
    raise ValueError(f"{binary_only} are defined for binary tasks, got num_classes={num_classes}")
  if not cases:
    raise ValueError("no cases to score")
  cases = [_check_case(case, i, num_classes, need_prob="aupr" in names)
           for i, case in enumerate(cases)]

  objects = {"object_f1", "object_dice", "aji", "pq"}.intersection(names)
  totals, image_aji, image_iou = {}, [], []
  for case in cases:
    if objects:
      true_ids, true_classes = instance_metrics.instance_map(case["target"], num_classes,
                                                             case["instances"])
      pred_ids, pred_classes = instance_metrics.instance_map(case["pred"], num_classes)
      num_true, num_pred = len(true_classes) - 1, len(pred_classes) - 1
    if {"object_f1", "object_dice"}.intersection(names):
      _add_to(totals, instance_metrics.glas_sums(true_ids, num_true, pred_ids, num_pred))
    if "aji" in names:
      image_aji.append(instance_metrics.aji(true_ids, num_true, pred_ids, num_pred))
    if "pq" in names:
      _add_to(totals, {f"pq_{key}": value for key, value in instance_metrics.pq_sums(
          true_ids, true_classes, pred_ids, pred_classes, num_classes).items()})
    if "miou" in names or "iou" in names:
      confusion = _confusion(case["target"], case["pred"], num_classes)
      _add_to(totals, {"confusion": confusion})
      image_iou.append(_iou(confusion)[1] if confusion[1].sum() else np.nan)

  results = {}
  if "object_f1" in names:
    results["object_f1"] = instance_metrics.f1_of_counts(totals["tp"], totals["fp"], totals["fn"])
  if "object_dice" in names:
    sides = [totals[f"{side}_dice"] / totals[f"{side}_area"] if totals[f"{side}_area"] else 0.0
             for side in ("true", "pred")]
    results["object_dice"] = (float(np.mean(sides)) if totals["true_area"] + totals["pred_area"]
                              else float("nan"))
  if "aji" in names:
    results["aji"] = float(_nanmean(image_aji))
  if "pq" in names:
    tp, fp, fn = (totals[f"pq_{key}"][1:] for key in ("tp", "fp", "fn"))
    denominator = tp + (fp + fn) / 2
    with np.errstate(invalid="ignore"):
      results["pq"] = float(_nanmean(totals["pq_iou"][1:] / denominator))
  if "miou" in names:
    results["miou"] = float(_nanmean(_iou(totals["confusion"])))
  if "iou" in names:
    results["iou"] = float(_nanmean(image_iou))
  if "aupr" in names:
    results["aupr"] = _pixel_average_precision(cases)
  return {name: results[name] for name in names}


def pooled_extra_metrics(names, labels, scores):
  """The metrics `names` (of POOLED_EXTRA_METRICS) of a classification set: {name: float}.

  labels: (N,) ints in [0, C); scores: (N, C) probabilities or logits; the prediction is the
  argmax. Over all N samples at once:
  - qwk: Cohen's quadratically weighted kappa (Cohen 1968), 1 - sum w_ij O_ij / sum w_ij E_ij
    with O the C x C confusion matrix over all classes 0..C-1 (absent ones included), E the
    outer product of its marginals over N, w_ij = (i - j)^2 (sklearn's
    cohen_kappa_score(weights="quadratic")). NaN when sum w E = 0 (labels and predictions all
    one and the same class).
  - detection_f1: F1 = 2 TP / (2 TP + FP + FN) of class 1 (MIDOG's "mitotic figure") against
    the rest. With one candidate per annotated cell this is the detection F1; NaN without class 1
    in labels and predictions.
  """
  names = _check_metric_names(names, POOLED_EXTRA_METRICS, "classification")
  labels, scores = _classification_inputs(labels, scores)
  confusion = _confusion(labels, np.argmax(scores, axis=1), scores.shape[1])
  results = {}
  if "qwk" in names:
    classes = np.arange(len(confusion))
    weights = (classes[:, None] - classes[None, :]) ** 2
    expected = np.outer(confusion.sum(1), confusion.sum(0)) / confusion.sum()
    disagreement = np.sum(weights * expected)
    results["qwk"] = (float(1 - np.sum(weights * confusion) / disagreement) if disagreement
                      else float("nan"))
  if "detection_f1" in names:
    tp = confusion[1, 1]
    results["detection_f1"] = instance_metrics.f1_of_counts(
        tp, confusion[:, 1].sum() - tp, confusion[1].sum() - tp)
  return {name: results[name] for name in names}


def _check_metric_names(names, known, kind):
  names = tuple(names)
  unknown = [name for name in names if name not in known]
  if unknown:
    raise ValueError(f"unknown {kind} extra metrics {unknown}; known: {list(known)}")
  return names


def _check_case(case, index, num_classes, need_prob):
  """The case with arrays checked and optional keys filled with None."""
  where = f"cases[{index}]"
  unknown = set(case) - set(_CASE_KEYS)
  if unknown or "pred" not in case or "target" not in case:
    raise ValueError(f"{where} must have keys 'pred' and 'target' (optional: 'instances', "
                     f"'prob'), got {sorted(case)}")
  case = {key: None if case.get(key) is None else np.asarray(case[key]) for key in _CASE_KEYS}
  pred, target = case["pred"], case["target"]
  if pred.shape != target.shape or target.ndim not in (2, 3):
    raise ValueError(f"{where}: pred and target must be label maps of one 2D or 3D shape, got "
                     f"{pred.shape} and {target.shape}")
  _check_labels(pred, num_classes, f"{where}['pred']")
  _check_labels(target, num_classes, f"{where}['target']")
  instances = case["instances"]
  if instances is not None:
    if instances.shape != target.shape or not np.issubdtype(instances.dtype, np.integer):
      raise ValueError(f"{where}['instances'] must be an integer map of the target's shape "
                       f"{target.shape}, got {instances.dtype} {instances.shape}")
    mismatch = np.sum((instances != 0) != (target > 0))
    if instances.min() < 0 or mismatch:
      raise ValueError(f"{where}['instances'] must be >= 0 and nonzero exactly where target is "
                       f"foreground; {mismatch} of {target.size} voxels disagree, min "
                       f"{instances.min()}")
  prob = case["prob"]
  if prob is None and need_prob:
    raise ValueError(f"aupr needs foreground probabilities: {where} has no 'prob'")
  if prob is not None:
    if prob.shape != target.shape:
      raise ValueError(f"{where}['prob'] has shape {prob.shape}, target {target.shape}")
    _check_finite(prob, f"{where}['prob']")
  return case


def _iou(confusion):
  """IoU of each class from a confusion matrix; NaN where the class is in neither map."""
  intersection = np.diag(confusion)
  union = confusion.sum(0) + confusion.sum(1) - intersection
  with np.errstate(invalid="ignore"):
    return intersection / union


def _pixel_average_precision(cases):
  """Average precision of case["prob"] against case["target"] > 0 over all pixels of all cases.

  Recall changes only at thresholds equal to some positive's score, so AP is the sum over the
  distinct positive scores t of (positives scoring t) / P x precision at t. The negatives are
  only counted against those thresholds, one image at a time: no sort of every pixel at once.
  """
  positives = np.concatenate([case["prob"][case["target"] > 0].astype(float) for case in cases])
  if not len(positives):
    return float("nan")
  thresholds, at_threshold = np.unique(positives, return_counts=True)
  # negatives_in[k]: negatives scoring in [thresholds[k - 1], thresholds[k]) (k = 0: below all).
  negatives_in = np.zeros(len(thresholds) + 1, np.int64)
  for case in cases:
    negatives = case["prob"][case["target"] == 0].astype(float)
    negatives_in += np.bincount(np.searchsorted(thresholds, negatives, side="right"),
                                minlength=len(thresholds) + 1)
  # At threshold thresholds[k], the positives and negatives scoring >= it are predicted positive.
  true_positives = np.cumsum(at_threshold[::-1])[::-1]
  false_positives = np.cumsum(negatives_in[::-1])[::-1][1:]
  precision = true_positives / (true_positives + false_positives)
  return float(np.sum(at_threshold * precision) / len(positives))


def _add_to(totals, values):
  for key, value in values.items():
    totals[key] = totals.get(key, 0) + value


# Shared checks and reductions


def _check_labels(x, num_classes, name):
  if not (np.issubdtype(x.dtype, np.integer) or x.dtype == bool):
    raise ValueError(f"{name} must hold integer labels, got dtype {x.dtype} (shape {x.shape}); "
                     "cast with .astype(int)")
  if x.size and (x.min() < 0 or x.max() >= num_classes):
    raise ValueError(f"{name} labels must lie in [0, {num_classes}), got values in "
                     f"[{x.min()}, {x.max()}] (shape {x.shape})")


def _check_finite(x, name):
  if not np.all(np.isfinite(x)):
    raise ValueError(f"{name} must be finite; {np.sum(~np.isfinite(x))} of the {x.size} values "
                     f"of shape {x.shape} are not")


def _classification_inputs(labels, scores):
  """labels (N,) in [0, C) and scores (N, C) as arrays, checked; C >= 2, N >= 1."""
  labels, scores = np.asarray(labels), np.asarray(scores, dtype=float)
  if scores.ndim != 2 or scores.shape[1] < 2 or labels.shape != scores.shape[:1]:
    raise ValueError(f"labels must be (N,) and scores (N, C) with C >= 2, got labels "
                     f"{labels.shape} and scores {scores.shape}")
  if not len(labels):
    raise ValueError("no samples")
  _check_finite(scores, "scores")
  _check_labels(labels, scores.shape[1], "labels")
  return labels, scores


def _confusion(rows, columns, num_classes):
  """counts[i, j] of the positions where rows == i and columns == j (label arrays)."""
  keys = rows.astype(np.intp).ravel() * num_classes + columns.astype(np.intp).ravel()
  return np.bincount(keys, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _is_distribution(scores):
  # 1e-3: probabilities saved in float16 or float32 sum to 1 only that closely.
  return bool(np.all((scores >= 0) & (scores <= 1)) and np.allclose(scores.sum(1), 1, atol=1e-3))


def _softmax(logits):
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  return e / e.sum(axis=1, keepdims=True)


def _nanmean(x, axis=None):
  """The mean of the non-NaN entries; NaN where there are none, without numpy's warning."""
  x = np.asarray(x, dtype=float)
  count = np.sum(~np.isnan(x), axis=axis)
  total = np.sum(np.where(np.isnan(x), 0.0, x), axis=axis)
  with np.errstate(invalid="ignore"):
    return total / count
