"""Fine-tune a network on a downstream task: a registry task (data.tasks) or the user's data.

Tasks. `task=NAME` is one of the 56 registry tasks: its cases come from `data.dir` in the
dataset's official layout (tasks.load_splits), its preprocessing, classes and metrics from the
registry. `task=custom` is the user's data: a Decathlon dataset.json (`data.json`,
segmentation), a CSV (`data.csv` with `data.image_column` and `data.label_column`; several
comma-separated label columns make a multi-label task) or one folder per class
(`data.folders`); the spatial dims and channels come from the first training case, the
classes from the labels (or `num_classes`). Every case goes through data.pipeline.prepare
(the deterministic preprocessing) on the host; `data.skip_bad` skips a case that cannot be
read, with a warning, instead of stopping.

Splits. The layout's validation and test lists where it has them (a test list without labels
does not count); otherwise 20% of the training cases (at least 1) are held out for each, from
a fixed permutation (seed 0, whatever config.seed), so every seed and train_fraction shares
the same validation and test cases. The training cases left are shuffled with config.seed and
the first ceil(train_fraction * n) (at least 1) are kept.

Model. `init=scratch` or a pre-training workdir (every variable of the backbone whose name
and shape match is copied: transfer.copy_matching; the report goes to the log and
W/transfer.txt). The network is `model`, else the workdir's, else `scratch_model`, else a
CPU-sized default (DEFAULT_MODELS). `head=add` puts a new linear layer on the network's 32
output channels (per voxel for segmentation; after global average pooling for the other
kinds), `head=replace` builds the network with the task's outputs (segmentation).
`probe=True` trains the head alone.

Loading. Cases are prepared once, in memory, on `data.threads` grain threads; the training
batches are made ahead on the same number of threads (grain prefetch). One process feeds
the whole batch.

Training. Step s trains on pipeline.make_batch(task, train, roi, batch_size, seed, s): a
resumed run sees the same batches. Losses: Dice + CE (softmax), sigmoid Dice + BCE (binary
segmentation with `output=sigmoid`, the reference fundus form), CE, BCE (multi-label), L1
(regression). training.loop.run gives checkpoints, resume, the NaN stop and signals.
total_steps = 0 means epochs * ceil(n_train * patches_per_case / batch_size), and
eval_every = 0 means every val_every epochs (the registry's full-size protocol).

Evaluation. Every `eval_every` steps and at the last step on the validation cases:
segmentation by sliding-window inference (Gaussian, `overlap`) then Dice/HD95/NSD per class
(background excluded) and, for tasks with regions (BraTS), per region; the other kinds by
one forward pass per batch, then accuracy, balanced accuracy, macro F1, AUC (classification),
AUC (multi-label) or MAE/RMSE (regression). W/val_metrics.jsonl gets one line per evaluation.
The selection metric is the task's first metric (higher is better; MAE/RMSE lower). The best
parameters are saved in W/best (an Orbax checkpoint; W/best_val.json says which step and its
scores), so a resumed run keeps selecting over the whole run. At the end the selected
parameters are read back with load_model and evaluated on the test cases: W/results.json.
NaN/Inf are written as null. `load_model(W)` gives the fine-tuned network with those parameters (W/model.json holds how
to build it).
"""

import dataclasses
import json
import math
import os
import shutil
import time
import warnings

from flax import nnx
import grain
import jax
import numpy as np

from rasd_jax import models
from rasd_jax.data import pipeline
from rasd_jax.data import readers
from rasd_jax.data import tasks
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
              "eval_every", "data.threads")
DEFAULT_MODELS = {2: "unet_small", 3: "swinunetr_tiny"}  # init=scratch without `model`
HOLD_OUT_FRACTION = 0.2
LOWER_IS_BETTER = ("mae", "rmse")
MODEL_FILE = "model.json"  # how to build the fine-tuned network (load_model)
BEST_DIR = "best"          # the parameters of the best validation step
CUSTOM_SOURCES = ("json", "csv", "folders")


def _check(config):
  if config.task != "custom":
    tasks.get(config.task)  # an unknown name: an error with the closest names
    if not config.data.dir:
      raise ValueError(f"task={config.task} needs data.dir: the folder holding the dataset "
                       "in its official layout (--config.data.dir=PATH)")
  else:
    given = [k for k in CUSTOM_SOURCES if config.data[k]]
    if len(given) != 1:
      raise ValueError("task=custom needs exactly one of data.json (a Decathlon dataset.json), "
                       "data.csv (image and label columns) or data.folders (one folder per "
                       f"class); got {given or 'none'}")
    path = config.data[given[0]]
    exists = os.path.isdir if given[0] == "folders" else os.path.isfile
    if not exists(path):
      raise ValueError(f"data.{given[0]} {path!r} does not exist")
  for key in ("batch_size", "checkpoint_every", "log_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  for key in ("total_steps", "eval_every"):
    if config[key] < 0:
      raise ValueError(f"{key} = {config[key]}: must be >= 1, or 0 to derive it from epochs")
  if (config.total_steps == 0 or config.eval_every == 0) and config.epochs < 1:
    raise ValueError("total_steps = 0 or eval_every = 0 derive from epochs, which is "
                     f"{config.epochs}")
  if not 0 < config.train_fraction <= 1:
    raise ValueError(f"train_fraction = {config.train_fraction}: must be in (0, 1]")
  if config.num_classes < 0 or config.num_classes == 1:
    raise ValueError(f"num_classes = {config.num_classes}: 0 (infer) or >= 2")
  if config.init != "scratch" and not os.path.isdir(config.init):
    raise ValueError(f"init {config.init!r} is neither 'scratch' nor a pre-training workdir "
                     "or checkpoint folder (W/checkpoints/STEP)")
  if config.model:
    models.resolve(config.model)
  if config.output not in ("", "softmax", "sigmoid"):
    raise ValueError(f"output {config.output!r}: '' (by task), 'softmax' or 'sigmoid'")


def _hold_out(n):
  return max(1, round(HOLD_OUT_FRACTION * n))


def _labelled(entries):
  return entries is not None and len(entries) > 0 and all(
      e.get("label") is not None for e in entries)


def _splits(lists, config, source):
  """{'train', 'val', 'test'} from the layout's lists (val / test may be None)."""
  training, val, test = lists["train"], lists.get("val"), lists.get("test")
  if test is not None and not _labelled(test):
    log("the test list has no labels: holding out training cases as the test set")
    test = None
  order = np.random.default_rng(0).permutation(len(training))
  k = _hold_out(len(training))
  if val is None:
    val, order = [training[i] for i in order[:k]], order[k:]
  if test is None:
    test, order = [training[i] for i in order[:k]], order[k:]
  if len(order) == 0:
    raise ValueError(f"{source}: {len(training)} training cases leave none to train on after "
                     "holding out validation and test cases; add cases or validation/test "
                     "lists")
  train = [training[i] for i in np.sort(order)]
  train = [train[i] for i in np.random.default_rng(config.seed).permutation(len(train))]
  train = train[:max(1, math.ceil(config.train_fraction * len(train)))]
  for name, entries in (("training", train), ("validation", val), ("test", test)):
    if not _labelled(entries):
      raise ValueError(f"{source}: every {name} case needs a label")
  return {"train": train, "val": val, "test": test}


def _custom_lists(config):
  """(kind, {'train': entries, ...}, class names or None, source) of the user's data."""
  data = config.data
  if data.json:
    with open(data.json) as f:
      listed = json.load(f)
    lists = {"train": readers.load_decathlon(data.json, "training")}
    for key, name in (("val", "validation"), ("test", "test")):
      has = isinstance(listed.get(name), list)
      lists[key] = readers.load_decathlon(data.json, name) if has else None
    names = listed.get("labels") if isinstance(listed.get("labels"), dict) else {}
    return "segmentation", lists, names, data.json
  if data.csv:
    columns = [c.strip() for c in data.label_column.split(",")]
    loaded = readers.load_classification_csv(data.csv, data.image_column,
                                              columns[0] if len(columns) == 1 else columns)
    kind = "classification" if len(columns) == 1 else "multilabel"
    source = data.csv
  else:
    loaded = readers.load_class_folders(data.folders)
    kind, source = "classification", data.folders
  return kind, {"train": loaded.entries, "val": None, "test": None}, loaded.classes, source


def _read_options(threads):
  return grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(1, threads))


def _prepare(task, entries, config):
  """pipeline.prepare of every entry, on `data.threads` grain threads, in order."""
  def one(entry):
    try:
      return pipeline.prepare(task, entry)
    except (ValueError, OSError) as e:
      if not config.data.skip_bad:
        raise
      warnings.warn(f"skipping case {entry.get('id', entry['image'])}: {e}", stacklevel=2)
      return None

  dataset = grain.MapDataset.source(list(entries)).map(one)
  samples = [s for s in dataset.to_iter_dataset(_read_options(config.data.threads),
                                                allow_nones=True) if s is not None]
  if not samples:
    raise ValueError(f"none of the {len(entries)} cases could be read")
  return samples


def _roi(roi, ndim):
  roi = tuple(None if r is None else int(r) for r in roi)
  if len(roi) == 1:
    roi = roi * ndim
  if len(roi) != ndim or any(r is not None and r < 1 for r in roi):
    raise ValueError(f"roi {roi}: give one size, or one per spatial axis ({ndim})")
  return roi


def _task_and_data(config):
  """(task, {'train': samples, 'val': samples, 'test': samples}, split sizes)."""
  if config.task != "custom":
    task = tasks.get(config.task)
    task = dataclasses.replace(task, roi=_roi(config.roi, task.ndim))
    source = config.data.dir
    splits = _splits(tasks.load_splits(task, config.data.dir, fold=config.data.fold), config,
                     source)
  else:
    kind, lists, names, source = _custom_lists(config)
    splits = _splits(lists, config, source)
    # The first training case gives the dims and channels.
    image, _, _ = readers.read_case(splits["train"][0]["image"])
    ndim, in_channels = image.ndim - 1, image.shape[0]
    if kind == "segmentation":
      # The json's label names, else the largest training label.
      count = config.num_classes or len(names) or max(2, 1 + max(
          int(readers.read_case(e)[1].max()) for e in splits["train"]))
      classes = ("background",) + tuple(names.get(str(c), str(c)) for c in range(1, count))
    else:
      classes = tuple(str(c) for c in names)
    task = pipeline.custom_task(kind, ndim, in_channels, classes, _roi(config.roi, ndim))
  data = {k: _prepare(task, v, config) for k, v in splits.items()}
  return task, data, {k: len(v) for k, v in data.items()}


def _output(task, config):
  if task.kind != "segmentation":
    return task.kind
  if config.output == "sigmoid" and task.num_classes != 2:
    raise ValueError(f"output 'sigmoid' is for binary segmentation; {task.name} has "
                     f"{task.num_classes} classes")
  return config.output or "softmax"


def evaluate_segmentation(segment, params, rest, samples, task):
  """Dataset Dice/HD95/NSD (and per region where the task has regions)."""
  per_case, per_region = [], {name: [] for name in task.regions or {}}
  for sample in samples:
    image = np.moveaxis(sample["image"], 0, -1)[None]
    pred = np.asarray(segment(params, rest, image))
    per_case.append(eval_metrics.segmentation_metrics(
        pred, sample["label"], task.num_classes, spacing=sample["spacing"]))
    for name, members in (task.regions or {}).items():
      per_region[name].append(eval_metrics.segmentation_metrics(
          np.isin(pred, members).astype(np.int32),
          np.isin(sample["label"], members).astype(np.int32), 2, spacing=sample["spacing"]))
  summary = eval_metrics.aggregate_segmentation(per_case, list(task.classes[1:]))
  if per_region:
    summary["regions"] = {name: eval_metrics.aggregate_segmentation(cases, [name])
                          for name, cases in per_region.items()}
  return summary


def evaluate_pooled(score, params, rest, samples, task, batch_size):
  """Classification / multi-label / regression metrics of the whole set."""
  outputs = []
  for start in range(0, len(samples), batch_size):
    chunk = samples[start:start + batch_size]
    images = np.stack([np.moveaxis(s["image"], 0, -1) for s in chunk])
    outputs.append(np.asarray(score(params, rest, images)))
  outputs = np.concatenate(outputs)
  labels = np.asarray([s["label"] for s in samples])
  if task.kind == "classification":
    return eval_metrics.classification_metrics(labels, outputs)
  if task.kind == "multilabel":
    return eval_metrics.multilabel_metrics(labels, outputs)
  return eval_metrics.regression_metrics(labels.astype(float), outputs[:, 0])


def _schedule_lengths(config, n_train):
  """(total_steps, eval_every, warmup_steps), derived from epochs where config says 0."""
  per_epoch = math.ceil(n_train * config.patches_per_case / config.batch_size)
  total = config.total_steps or config.epochs * per_epoch
  every = config.eval_every or config.val_every * per_epoch
  warmup = config.optim.warmup_steps or config.warmup_epochs * per_epoch
  return total, max(1, min(every, total)), min(warmup, total - 1)


def run(config, workdir):
  _check(config)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  task, data, sizes = _task_and_data(config)
  output = _output(task, config)
  num_outputs = 1 if output in ("sigmoid", "regression") else task.num_classes
  ndim, in_channels = task.ndim, task.in_channels
  total_steps, eval_every, warmup = _schedule_lengths(config, sizes["train"])
  log(f"task {task.name} ({task.kind}, {ndim}D, {in_channels} channel(s), "
      f"{task.num_classes} classes): cases {sizes}; {total_steps} steps")

  pretrained, features = None, 32
  model_name = config.model
  if config.init != "scratch":
    pretrained, pre_config, pre_step = pretrain_job.load_model(config.init)
    if pre_config.synthesis.ndim != ndim:
      raise ValueError(f"init {config.init!r} was pre-trained in {pre_config.synthesis.ndim}D,"
                       f" the data is {ndim}D")
    if pre_config.synthesis.channels != in_channels:
      log(f"note: pre-trained on {pre_config.synthesis.channels} channel(s), the data has "
          f"{in_channels}: the first layer does not transfer")
    model_name = model_name or pre_config.model
    features = pre_config.out_channels
    log(f"initialising from {config.init} (step {pre_step}, model {pre_config.model})")
  model_name = models.resolve(model_name or config.scratch_model or DEFAULT_MODELS[ndim])

  mesh = mesh_lib.make_mesh()
  optim = config.optim.copy_and_resolve_references()
  optim.warmup_steps = warmup
  tx, schedule = optimizer.make(optim, total_steps)
  if config.probe:
    tx = finetune.probe_tx(tx)
  pooled = task.kind != "segmentation"

  def make_model():
    return models.create_downstream(model_name, ndim, in_channels, num_outputs,
                                    head=config.head, pooled=pooled, features=features,
                                    rngs=models.init_rngs(config.seed))

  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  workdir_lib.write_json(os.path.join(workdir, MODEL_FILE), dict(
      model=model_name, ndim=ndim, in_channels=in_channels, num_outputs=num_outputs,
      head=config.head, pooled=pooled, features=features, output=output,
      classes=list(task.classes)))
  log(f"model {model_name} ({ndim}D), head {config.head}{', linear probe' * config.probe}: "
      f"{models.count_params(model_name, ndim, in_channels, features):,} backbone parameters"
      f"; {mesh.shape['data']} devices, {jax.process_count()} processes")

  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                         keep=config.keep_checkpoints)
  best_checkpointer = None
  try:
    def create():
      state = state_lib.create(make_model, tx, abstract)
      if pretrained is not None:
        model = make_model()
        text = transfer.summary(transfer.copy_matching(model.backbone, pretrained))
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
    best_dir = os.path.join(workdir, BEST_DIR)
    if first_step == 0 and os.path.isdir(best_dir) and jax.process_index() == 0:
      shutil.rmtree(best_dir)  # a run that stopped before its first checkpoint
    best_checkpointer = checkpoint.Checkpointer(best_dir, keep=1)
    if first_step >= total_steps:
      log(f"nothing to do: step {first_step} >= total_steps {total_steps}")
      return

    step_fn = finetune.make_step(graphdef, abstract, mesh, tx=tx, schedule=schedule,
                                 output=output, probe=config.probe)
    if pooled:
      score = finetune.make_score(graphdef, output)
      evaluate = lambda params, rest, samples: evaluate_pooled(  # noqa: E731
          score, params, rest, samples, task, config.batch_size)
    else:
      segment = finetune.make_segment(graphdef, task.roi, config.overlap, output)
      evaluate = lambda params, rest, samples: evaluate_segmentation(  # noqa: E731
          segment, params, rest, samples, task)
    key = task.metrics[0]
    sign = -1.0 if key in LOWER_IS_BETTER else 1.0
    sharding = finetune.batch_sharding(mesh)
    # The best evaluation so far; its weights are in W/best (read back for the test).
    best = {"score": -math.inf, "step": None, "metrics": None}
    best_path = os.path.join(workdir, "best_val.json")
    if first_step and os.path.exists(best_path) and best_checkpointer.latest_step():
      with open(best_path) as f:
        saved = json.load(f)
      value = saved["val"][key]
      best.update(score=-math.inf if value is None else sign * value, step=saved["step"],
                  metrics=saved["val"])
      log(f"best validation so far: step {best['step']}, {key} {value}")
    counter = [first_step]
    # Step s's batch is a pure function of (seed, s): made ahead on grain threads, in order.
    batches = iter(grain.MapDataset.range(first_step, total_steps).map(
        lambda s: pipeline.make_batch(task, data["train"], task.roi, config.batch_size,
                                      config.seed, s)
    ).to_iter_dataset(_read_options(config.data.threads)))

    def validate(state, step):
      start = time.perf_counter()
      summary = evaluate(state["params"], state["rest"], data["val"])
      scalars = {k: v for k, v in summary.items() if np.isscalar(v)}
      val_writer.write(step, **workdir_lib.json_ready(scalars))
      value = summary[key]
      score_value = sign * value if math.isfinite(value) else -math.inf
      if best["step"] is None or score_value > best["score"]:
        best.update(score=score_value, step=step, metrics=summary)
        # Returns once the arrays are copied off the devices (the state is donated next).
        best_checkpointer.save(step, {"params": state["params"], "rest": state["rest"]})
        workdir_lib.write_json(best_path, {"step": step, "val": summary})
      log(f"step {step}: validation {key} {value:.4f} (best {sign * best['score']:.4f} at "
          f"step {best['step']}; {time.perf_counter() - start:.1f} s)")

    def train_step(state):
      state, metrics = step_fn(state, jax.device_put(next(batches), sharding))
      counter[0] = done = counter[0] + 1
      if done % eval_every == 0 or done == total_steps:
        validate(state, done)
      return state, metrics

    writer = metrics_lib.MetricsWriter(workdir, tensorboard=True, resume_step=first_step)
    val_writer = metrics_lib.MetricsWriter(workdir, resume_step=first_step,
                                           filename="val_metrics.jsonl")
    try:
      state, _, stopped = loop.run(
          train_step, state, first_step=first_step, total_steps=total_steps,
          batch_size=config.batch_size, checkpointer=checkpointer, writer=writer,
          log_every=config.log_every, checkpoint_every=config.checkpoint_every,
          desc="finetune")
    finally:
      writer.close()
  finally:
    checkpointer.close()
    if best_checkpointer is not None:
      best_checkpointer.close()
  if stopped:
    return

  _, params, rest = nnx.split(load_model(workdir)[0], nnx.Param, ...)
  test_summary = evaluate(params, rest, data["test"])
  class_names = list(task.classes[1:] if task.kind == "segmentation" else task.classes)
  results = {
      "task": config.task, "kind": task.kind, "init": config.init, "model": model_name,
      "head": config.head, "probe": config.probe, "seed": config.seed,
      "train_fraction": config.train_fraction, "split_sizes": sizes,
      "num_classes": task.num_classes, "class_names": class_names, "total_steps": total_steps,
      "selection_metric": key, "selected_step": best["step"], "val": best["metrics"],
      "test": test_summary,
  }
  workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
  shown = ", ".join(f"{k} {test_summary[k]:.4f}" for k in task.metrics)
  log(f"test (step {best['step']}): {shown}; {os.path.join(workdir, 'results.json')}")


def load_model(workdir):
  """(model, spec, step): the fine-tuned network of `workdir` with the parameters of its best
  validation step (W/best), in eval mode; spec is W/model.json (model, ndim, in_channels,
  num_outputs, head, pooled, features, output, classes)."""
  path = os.path.join(workdir, MODEL_FILE)
  if not os.path.exists(path):
    raise ValueError(f"{workdir!r} is not a fine-tuning workdir: no {MODEL_FILE}")
  with open(path) as f:
    spec = json.load(f)

  def make_model():
    return models.create_downstream(
        spec["model"], spec["ndim"], spec["in_channels"], spec["num_outputs"],
        head=spec["head"], pooled=spec["pooled"], features=spec["features"],
        rngs=models.init_rngs(0))

  graphdef, params, rest = nnx.split(nnx.eval_shape(make_model), nnx.Param, ...)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          {"params": params, "rest": rest})
  checkpointer = checkpoint.Checkpointer(os.path.join(workdir, BEST_DIR), keep=1)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise ValueError(f"{workdir!r} holds no best-validation weights yet ({BEST_DIR}/)")
    weights = checkpointer.restore(abstract)
  finally:
    checkpointer.close()
  model = nnx.merge(graphdef, weights["params"], weights["rest"])
  model.eval()
  return model, spec, step
