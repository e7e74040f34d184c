"""Scoring a downstream network on prepared samples, and the evaluator the training loop runs.

`score_segmentation` and `score_pooled` turn the network's outputs on a set of samples
(data.pipeline.prepare outputs) into the dataset's metrics (evaluation.metrics).
`Evaluator` scores the train state's weights every `every` steps, writes one line to
W/val_metrics.jsonl and hands the summary to a `selection.Best`.
"""

import time

import numpy as np

from rasd_jax.data import pipeline
from rasd_jax.evaluation import metrics
from rasd_jax.workdir import log
from rasd_jax.workdir import json_ready


def dice_with_background(pred, target, num_classes):
  """The reference's fundus Dice of one case (evaluation "paper", docs/metrics.md):
  the mean over every class, background included, of 2|P ∩ T| / (|P| + |T|) (a class in
  neither: left out)."""
  values = []
  for c in range(num_classes):
    total = np.sum(pred == c) + np.sum(target == c)
    if total:
      values.append(2.0 * np.sum((pred == c) & (target == c)) / total)
  return float(np.mean(values))


def score_segmentation(segment, weights, samples, task, background=False, gather=list,
                       native=False, keep=None):
  """Dataset Dice/HD95/NSD over the foreground classes, per region where the task has
  regions (BraTS TC/WT/ET), and the task's extra_metrics (metrics.segmentation_extra_metrics:
  object F1, AJI, PQ, IoU, AUPR ...; instance maps from a sample's "instances"). segment:
  (weights, image (1, *S, C)) -> (label map (*S), foreground probability (*S)).
  `background`: "dice" is the mean over cases of dice_with_background (the reference's
  fundus definition); the per-class values stay foreground-only. `gather`: this process's
  per-case results -> every process's, in the cases' order (mesh.gather; with one process,
  `samples` are all the cases). Scored on the samples' grid (after the preprocessing's
  reorientation, resampling and crop, as the reference scores), or with `native` on each
  label file's own grid and spacing (the prediction mapped back: pipeline.to_native), where
  the sample knows its files. `keep(sample, label map)`: called with each case's prediction
  on the grid it is scored on (the finetune job writes the test cases')."""
  cases = []
  for sample in samples:
    image = np.moveaxis(sample["image"], 0, -1)[None]
    pred, prob = (np.asarray(x) for x in segment(weights, image))
    target, spacing = sample["label"], sample["spacing"]
    instances = sample.get("instances")
    if native and "geometry" in sample:
      geometry = sample["geometry"]
      pred = pipeline.to_native(pred[None], geometry)[0]
      prob = pipeline.to_native(prob[None], geometry, order=1)[0]
      target, spacing = pipeline.native_target(task, geometry)
      if instances is not None:
        instances = pipeline.to_native(instances[None], geometry)[0]
    if keep is not None:
      keep(sample, pred)
    case = {"metrics": metrics.segmentation_metrics(pred, target, task.num_classes,
                                                    spacing=spacing)}
    if background:
      case["with_background"] = dice_with_background(pred, target, task.num_classes)
    case["regions"] = {name: metrics.segmentation_metrics(
        np.isin(pred, members).astype(np.int32), np.isin(target, members).astype(np.int32), 2,
        spacing=spacing) for name, members in (task.regions or {}).items()}
    if task.extra_metrics:
      case["extra"] = {"pred": pred, "target": target, "instances": instances,
                       "prob": prob if "aupr" in task.extra_metrics else None}
    cases.append(case)
  cases = gather(cases)
  summary = metrics.aggregate_segmentation([c["metrics"] for c in cases],
                                           list(task.classes[1:]))
  if background:
    summary["dice"] = float(np.mean([c["with_background"] for c in cases]))
  if task.regions:
    summary["regions"] = {name: metrics.aggregate_segmentation(
        [c["regions"][name] for c in cases], [name]) for name in task.regions}
  if task.extra_metrics:
    summary.update(metrics.segmentation_extra_metrics(
        task.extra_metrics, [c["extra"] for c in cases], task.num_classes))
  return summary


def score_pooled(score, weights, samples, task, batch_size, gather=list):
  """Classification / multi-label / regression metrics of the whole set, with the task's
  extra_metrics (QWK, detection F1). score: (weights, images (B, *S, C)) -> (B, N)
  probabilities or values; `gather` as in score_segmentation."""
  cases = []
  for start in range(0, len(samples), batch_size):
    chunk = samples[start:start + batch_size]
    images = np.stack([np.moveaxis(s["image"], 0, -1) for s in chunk])
    cases += zip(np.asarray(score(weights, images)), [s["label"] for s in chunk])
  cases = gather(cases)
  outputs = np.stack([output for output, _ in cases])
  labels = np.asarray([label for _, label in cases])
  if task.kind == "classification":
    summary = metrics.classification_metrics(labels, outputs)
  elif task.kind == "multilabel":
    summary = metrics.multilabel_metrics(labels, outputs)
  else:
    summary = metrics.regression_metrics(labels.astype(float), outputs[:, 0])
  if task.extra_metrics:
    summary.update(metrics.pooled_extra_metrics(task.extra_metrics, labels, outputs))
  return summary


class Evaluator:
  """Every `every` steps: `evaluate(weights) -> summary`, a line of `writer` with the
  summary's scalars, then `best.update(step, summary, weights)`."""

  def __init__(self, evaluate, every, writer, best):
    self.evaluate, self.every, self.writer, self.best = evaluate, every, writer, best

  def __call__(self, state, step):
    start = time.perf_counter()
    weights = {"params": state["params"], "rest": state["rest"]}
    summary = self.evaluate(weights)
    self.writer.write(step, **json_ready({k: v for k, v in summary.items()
                                          if np.isscalar(v)}))
    self.best.update(step, summary, weights)
    log(f"step {step}: validation {self.best.metric} {summary[self.best.metric]:.4f} (best "
        f"{self.best.value:.4f} at step {self.best.step}; {time.perf_counter() - start:.1f} s)")
