"""Fine-tune a network on a real segmentation dataset (task=custom: a Decathlon dataset.json).

Starts from scratch or from a pre-training workdir (every variable whose name and shape match
is copied: transfer.copy_matching; the report is printed and written to W/transfer.txt).

Data. Every case is read to host memory (readers.read_cases), channel-first. Intensities:
an image already in [0, 1] is kept as it is, any other is z-scored per channel over its
non-zero voxels (transforms.normalize_intensity). Splits:
- validation: the json's "validation" list; without one, 20% of "training" (at least 1 case);
- test: the json's "test" list if all its entries have labels; otherwise (no list, or the MSD
  unlabelled test list) 20% of "training" (at least 1) are held out as the test set.
Held-out cases are taken from a fixed permutation (seed 0, whatever config.seed), so every
seed and train_fraction shares the same validation and test cases. The training cases left
are shuffled with config.seed and the first ceil(train_fraction * n) (at least 1) are kept.

Training. The batch of step s is drawn on the host with np.random.default_rng((seed, s)):
per sample a random training case, one rand_crop_by_pos_neg_label crop of `roi` (pos 1,
neg 1) and a random flip per spatial axis (prob 0.5); so a resumed run sees the same batches.
The batch is put on the devices with NamedSharding(mesh, P('data')): one process only (a
multi-host run would need each process to build its shard). training.loop.run gives
checkpoints, resume, the NaN stop, signals and metrics.jsonl.

Evaluation. Every `eval_every` steps and at the last step, sliding-window inference
(Gaussian, `overlap`) on the validation cases, argmax, Dice/HD95/NSD (evaluation.metrics);
W/val_metrics.jsonl gets one line per evaluation. The parameters of the best validation mean
Dice are kept in memory (W/best_val.json says which step); after a resume the selection is
among the evaluations of the resumed run only. At the end the selected parameters are
evaluated on the test cases: W/results.json. NaN/Inf are written as null.
"""

import json
import math
import os
import time

from flax import nnx
import jax
import numpy as np

from rasd_jax import models
from rasd_jax.data import readers
from rasd_jax.data import transforms
from rasd_jax.evaluation import metrics as eval_metrics
from rasd_jax.jobs import pretrain as pretrain_job
from rasd_jax.jobs import workdir as workdir_lib
from rasd_jax.jobs.workdir import log
from rasd_jax.training import checkpoint
from rasd_jax.training import finetune
from rasd_jax.training import loop
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import metrics as metrics_lib
from rasd_jax.training import optimizer
from rasd_jax.training import state as state_lib
from rasd_jax.training import transfer

MAY_CHANGE = ("total_steps", "checkpoint_every", "keep_checkpoints", "log_every",
              "eval_every")
TASKS = ("custom",)
DEFAULT_MODEL = "unet_small"  # for init=scratch without `model`
HOLD_OUT_FRACTION = 0.2


def _check(config):
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; this job supports {list(TASKS)} (a "
                     "Decathlon dataset.json given as --config.data.json)")
  if not config.data.json:
    raise ValueError("task=custom needs data.json: the path of a Decathlon dataset.json "
                     "(--config.data.json=PATH)")
  if not os.path.isfile(config.data.json):
    raise ValueError(f"data.json {config.data.json!r} does not exist")
  for key in ("total_steps", "batch_size", "checkpoint_every", "log_every", "eval_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  if not 0 < config.train_fraction <= 1:
    raise ValueError(f"train_fraction = {config.train_fraction}: must be in (0, 1]")
  if config.num_classes < 0 or config.num_classes == 1:
    raise ValueError(f"num_classes = {config.num_classes}: 0 (infer) or >= 2")
  if config.init != "scratch" and not os.path.isdir(config.init):
    raise ValueError(f"init {config.init!r} is neither 'scratch' nor a pre-training workdir")
  if config.model:
    models.resolve(config.model)


def _hold_out(n):
  return max(1, round(HOLD_OUT_FRACTION * n))


def _splits(config):
  """{'train', 'val', 'test'}: lists of dataset.json entries, and the class names."""
  path = config.data.json
  with open(path) as f:
    data = json.load(f)
  training = readers.load_decathlon(path, "training")
  lists = {k for k, v in data.items() if isinstance(v, list)}
  val = readers.load_decathlon(path, "validation") if "validation" in lists else None
  test = readers.load_decathlon(path, "test") if "test" in lists else None
  if test is not None and not (test and all(e.get("label") for e in test)):
    log("the test list has no labels: holding out training cases as the test set")
    test = None
  order = np.random.default_rng(0).permutation(len(training))
  held = []
  if val is None:
    held, order = order[:_hold_out(len(training))], order[_hold_out(len(training)):]
    val = [training[i] for i in held]
  if test is None:
    k = _hold_out(len(training))
    test, order = [training[i] for i in order[:k]], order[k:]
  if len(order) == 0:
    raise ValueError(f"{path}: {len(training)} training cases leave none to train on after "
                     "holding out validation and test cases; add cases or the "
                     "'validation'/'test' lists")
  train = [training[i] for i in np.sort(order)]
  train = [train[i] for i in np.random.default_rng(config.seed).permutation(len(train))]
  train = train[:max(1, math.ceil(config.train_fraction * len(train)))]
  for name, entries in (("training", train), ("validation", val), ("test", test)):
    if not all(e.get("label") for e in entries):
      raise ValueError(f"{path}: every {name} case needs a 'label'")
  labels = data.get("labels") if isinstance(data.get("labels"), dict) else {}
  return {"train": train, "val": val, "test": test}, labels


def _prepare(image):
  """Float32 channel-first image: kept if already in [0, 1], else z-scored on non-zero."""
  if image.min() >= 0 and image.max() <= 1:
    return image.astype(np.float32)
  return transforms.normalize_intensity(image, nonzero=True, channel_wise=True)


def _read(entries, num_classes=None):
  cases = readers.read_cases(entries, num_classes=num_classes)
  for case in cases:
    case["image"] = _prepare(case["image"])
  return cases


def _roi(roi, ndim):
  roi = tuple(int(r) for r in roi)
  if len(roi) == 1:
    roi = roi * ndim
  if len(roi) != ndim or min(roi) < 1:
    raise ValueError(f"roi {roi}: give one size, or one per spatial axis ({ndim})")
  return roi


def _spacing(affine, ndim):
  affine = np.asarray(affine, float)
  return np.sqrt((affine[:3, :ndim] ** 2).sum(0)) if affine.shape[0] == 4 else None


def make_batch(cases, roi, batch_size, seed, step):
  """The host batch of `step`: (B, *roi, C) float32 images, (B, *roi) int32 labels."""
  rng = np.random.default_rng((seed, step))
  ndim = len(roi)
  images, labels = [], []
  for _ in range(batch_size):
    case = cases[rng.integers(len(cases))]
    (image, label), = transforms.rand_crop_by_pos_neg_label(
        case["image"], case["label"], roi, pos=1, neg=1, num_samples=1, rng=rng)
    for axis in range(ndim):
      image, label = transforms.rand_flip([image, label], 0.5, rng, axes=axis)
    images.append(np.moveaxis(image, 0, -1))
    labels.append(label[0])
  return {"image": np.stack(images).astype(np.float32),
          "label": np.stack(labels).astype(np.int32)}


def _clean(value):
  """JSON-ready: NumPy scalars to Python, NaN/Inf to None."""
  if isinstance(value, dict):
    return {str(k): _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if isinstance(value, (np.floating, float)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def _write_json(path, data):
  if jax.process_index() == 0:
    with open(path + ".tmp", "w") as f:
      json.dump(_clean(data), f, indent=2, allow_nan=False)
    os.replace(path + ".tmp", path)


def evaluate(predict, params, rest, cases, num_classes, class_names):
  results = []
  for case in cases:
    image = np.moveaxis(case["image"], 0, -1)[None]
    pred = np.asarray(predict(params, rest, image))
    ndim = pred.ndim
    results.append(eval_metrics.segmentation_metrics(
        pred, case["label"], num_classes, spacing=_spacing(case["affine"], ndim)))
  return eval_metrics.aggregate_segmentation(results, class_names)


def run(config, workdir):
  _check(config)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  splits, label_names = _splits(config)
  train = _read(splits["train"])
  in_channels, ndim = train[0]["image"].shape[0], train[0]["image"].ndim - 1
  num_classes = config.num_classes or max(2, max(int(c["label"].max()) for c in train) + 1)
  if any(c["image"].shape[0] != in_channels for c in train):
    raise ValueError(f"training cases differ in their number of channels ({in_channels} in "
                     "the first)")
  val, test = _read(splits["val"], num_classes), _read(splits["test"], num_classes)
  roi = _roi(config.roi, ndim)
  for case in train:
    case["image"] = transforms.spatial_pad(case["image"], roi)
    case["label"] = transforms.spatial_pad(case["label"][None], roi)
  class_names = [label_names.get(str(c), str(c)) for c in range(1, num_classes)]
  sizes = {k: len(v) for k, v in splits.items()}
  log(f"task {config.task}: {ndim}D, {in_channels} channel(s), {num_classes} classes; "
      f"cases: {sizes}")

  pretrained = None
  model_name = config.model
  if config.init != "scratch":
    pretrained, pre_config, pre_step = pretrain_job.load_model(config.init)
    if pre_config.synthesis.ndim != ndim:
      raise ValueError(f"init {config.init!r} was pre-trained in {pre_config.synthesis.ndim}D,"
                       f" the data is {ndim}D")
    model_name = model_name or pre_config.model
    log(f"initialising from {config.init} (step {pre_step}, model {pre_config.model})")
  model_name = models.resolve(model_name or DEFAULT_MODEL)

  mesh = mesh_lib.make_mesh()
  tx, schedule = optimizer.make(config.optim, config.total_steps)

  def make_model():
    return models.create(model_name, ndim, in_channels, num_classes,
                         rngs=models.init_rngs(config.seed))

  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  log(f"model {model_name} ({ndim}D): "
      f"{models.count_params(model_name, ndim, in_channels, num_classes):,} parameters; "
      f"{mesh.shape['data']} devices, {jax.process_count()} processes")

  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                         keep=config.keep_checkpoints)
  try:
    def create():
      state = state_lib.create(make_model, tx, abstract)
      if pretrained is not None:
        model = make_model()
        report = transfer.copy_matching(model, pretrained)
        text = transfer.summary(report)
        log(text)
        if jax.process_index() == 0:
          with open(os.path.join(workdir, "transfer.txt"), "w") as f:
            f.write(text + "\n")
        _, params, rest = nnx.split(model, nnx.Param, ...)
        put = lambda a, x: jax.device_put(x, a.sharding)  # noqa: E731
        state["params"] = jax.tree.map(put, abstract["params"], params)
        state["rest"] = jax.tree.map(put, abstract["rest"], rest)
      return state

    first_step, state = checkpointer.start(abstract, create)
    if first_step >= config.total_steps:
      log(f"nothing to do: step {first_step} >= total_steps {config.total_steps}")
      return

    step_fn = finetune.make_step(graphdef, abstract, mesh, tx=tx, schedule=schedule,
                                 num_classes=num_classes)
    predict = finetune.make_predict(graphdef, roi, config.overlap)
    sharding = finetune.batch_sharding(mesh)
    best = {"dice": -math.inf, "step": None, "metrics": None, "params": None}
    counter = [first_step]

    def validate(state, step):
      start = time.perf_counter()
      summary = evaluate(predict, state["params"], state["rest"], val, num_classes,
                         class_names)
      record = dict(step=step, **{k: summary[k] for k in ("dice", "hd95", "nsd")})
      if jax.process_index() == 0:
        with open(os.path.join(workdir, "val_metrics.jsonl"), "a") as f:
          f.write(json.dumps(_clean(record), allow_nan=False) + "\n")
      dice = summary["dice"] if math.isfinite(summary["dice"]) else -1.0
      if best["params"] is None or dice > best["dice"]:
        # Host copies: the device state is donated to the next step.
        best.update(dice=dice, step=step, metrics=summary,
                    params=jax.device_get((state["params"], state["rest"])))
        _write_json(os.path.join(workdir, "best_val.json"),
                    {"step": step, "val": summary})
      log(f"step {step}: validation dice {summary['dice']:.4f} (best {best['dice']:.4f} "
          f"at step {best['step']}; {time.perf_counter() - start:.1f} s)")

    def train_step(state):
      step = counter[0]
      batch = make_batch(train, roi, config.batch_size, config.seed, step)
      batch = jax.device_put(batch, sharding)
      state, metrics = step_fn(state, batch)
      counter[0] = done = step + 1
      if done % config.eval_every == 0 or done == config.total_steps:
        validate(state, done)
      return state, metrics

    writer = metrics_lib.MetricsWriter(workdir, tensorboard=True, resume_step=first_step)
    try:
      state, _, stopped = loop.run(
          train_step, state, first_step=first_step, total_steps=config.total_steps,
          batch_size=config.batch_size, checkpointer=checkpointer, writer=writer,
          log_every=config.log_every, checkpoint_every=config.checkpoint_every,
          desc="finetune")
    finally:
      writer.close()
  finally:
    checkpointer.close()
  if stopped:
    return

  params, rest = best["params"]
  test_summary = evaluate(predict, params, rest, test, num_classes, class_names)
  results = {
      "task": config.task, "init": config.init, "model": model_name, "seed": config.seed,
      "train_fraction": config.train_fraction, "split_sizes": sizes,
      "num_classes": num_classes, "class_names": class_names,
      "selected_step": best["step"], "val": best["metrics"], "test": test_summary,
  }
  _write_json(os.path.join(workdir, "results.json"), results)
  log(f"test (step {best['step']}): dice {test_summary['dice']:.4f}, "
      f"hd95 {test_summary['hd95']:.2f}, nsd {test_summary['nsd']:.4f}; "
      f"{os.path.join(workdir, 'results.json')}")

