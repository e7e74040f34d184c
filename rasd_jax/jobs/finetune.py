"""The finetune job: fine-tune a network on a downstream task, a registry task (data.tasks) or
the user's data; experiments/finetune.py documents its config.

`run(config, workdir)`: every check that can refuse the run (the config, the task and its
splits, every case's data, the network against the patch size) before the workdir is
written; then the durations in steps (`durations`), the network (`_network`: from scratch or
a pre-trained workdir), W/task.json (what the predict job needs), and one run of the
fine-tuning engine (training.engine.train_and_evaluate), whose results it returns.
"""

import dataclasses
import math
import os

from etils import epath
from flax import nnx
import jax
import jax.numpy as jnp

from rasd_jax.data import pipeline
from rasd_jax.data import prepared
from rasd_jax.data import sources
from rasd_jax.data import splits as splits_lib
from rasd_jax.data import tasks
from rasd_jax.evaluation import compare
from rasd_jax import models
from rasd_jax.training import engine
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import optimizer
from rasd_jax.training import weights as weights_lib
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

# data.source / data.tfds_dir: the built dataset holds the cases the files give.
MAY_CHANGE = ("total_steps", "total_epochs", "checkpoint_every", "keep_checkpoints",
              "log_every", "eval_every_steps", "eval_every_epochs", "data.threads",
              "data.source", "data.tfds_dir") + optimizer.MAY_CHANGE
DEFAULT_MODELS = {2: "unet_small", 3: "swinunetr_tiny"}  # init=scratch without `model`


def steps(name, given_steps, given_epochs, steps_per_epoch):
  """A duration given as exactly one of steps or epochs (the other 0), in steps (big_vision's
  `steps()`); an error naming both keys otherwise."""
  if given_steps < 0 or given_epochs < 0:
    raise ValueError(f"{name}_steps = {given_steps}, {name}_epochs = {given_epochs}: "
                     "durations are >= 0")
  if given_steps and given_epochs:
    raise ValueError(f"{name}_steps = {given_steps} and {name}_epochs = {given_epochs} are "
                     f"both given: set one of them to 0")
  return given_steps or math.ceil(given_epochs * steps_per_epoch)


def _check(config):
  if config.data.source not in ("files", "tfds"):
    raise ValueError(f"data.source {config.data.source!r}: 'files' or 'tfds'")
  from_files = config.data.source == "files"
  if not from_files and not config.data.tfds_dir:
    raise ValueError("data.source=tfds needs data.tfds_dir: the --data_dir `tfds build` wrote "
                     "the prepared cases to (--config.data.tfds_dir=PATH)")
  if config.task != "custom":
    tasks.get(config.task)  # an unknown name: an error with the closest names
    if from_files and not config.data.dir:
      raise ValueError(f"task={config.task} needs data.dir: the folder the prepare job made "
                       f"from the download (experiments/prepare.py:task={config.task}; "
                       "--config.data.dir=PATH)")
  else:
    given = [k for k in sources.CUSTOM_SOURCES if config.data[k]] + (
        ["dir"] if config.data.dir else [])
    if from_files and len(given) != 1:
      raise ValueError("task=custom needs exactly one of data.json (a Decathlon dataset.json), "
                       "data.csv (image and label columns), data.folders (one folder per "
                       "class) or data.dir (the folder the prepare job made of one of those); "
                       f"got {given or 'none'}")
    if from_files and given != ["dir"]:
      sources.check_custom_source(config.data)
    if config.data.fold:
      raise ValueError(f"data.fold = {config.data.fold}: task=custom has no folds (only 0)")
  for key in ("batch_size", "checkpoint_every", "log_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  steps("warmup", config.optim.warmup_steps, config.optim.warmup_epochs, 1)
  for name in ("total", "eval_every"):
    steps(name, config[f"{name}_steps"], config[f"{name}_epochs"], 1)
    if not (config[f"{name}_steps"] or config[f"{name}_epochs"]):
      raise ValueError(f"{name}_steps and {name}_epochs are both 0: give one of them")
  if not 0 < config.train_fraction <= 1:
    raise ValueError(f"train_fraction = {config.train_fraction}: must be in (0, 1]")
  if config.num_classes < 0 or config.num_classes == 1:
    raise ValueError(f"num_classes = {config.num_classes}: 0 (infer) or >= 2")
  if config.init != "scratch" and not epath.Path(config.init).is_dir():
    raise ValueError(f"init {config.init!r} is neither 'scratch' nor a pre-training workdir "
                     "or checkpoint folder (W/checkpoints/STEP)")
  if config.model:
    models.resolve(config.model)
  if config.output not in tasks.SEGMENTATION_OUTPUTS:
    raise ValueError(f"output {config.output!r}: one of {tasks.SEGMENTATION_OUTPUTS}")
  if config.evaluation not in tasks.EVALUATIONS:
    raise ValueError(f"evaluation {config.evaluation!r}: one of {tasks.EVALUATIONS}")


def durations(config, train_cases):
  """(total steps, steps between validations, the optimiser config with its warm-up in
  steps) of a finetune config whose training split holds `train_cases` cases: an epoch is
  ceil(cases x patches_per_case / batch_size) steps; validation at least every `total`
  steps, the warm-up shorter than the run."""
  per_epoch = math.ceil(train_cases * config.patches_per_case / config.batch_size)
  total = steps("total", config.total_steps, config.total_epochs, per_epoch)
  eval_every = max(1, min(total, steps("eval_every", config.eval_every_steps,
                                       config.eval_every_epochs, per_epoch)))
  optim = config.optim.copy_and_resolve_references()
  optim.warmup_steps = min(total - 1, steps("warmup", optim.warmup_steps,
                                            optim.warmup_epochs, per_epoch))
  return total, eval_every, optim


def _cases(config):
  """(task, {'train', 'val', 'test'} entries; test None with evaluation 'paper'): the lists
  and splits, checked before anything is written or read in full. data.source "tfds": the
  task of the dataset built in data.tfds_dir for this run's task, fold, roi and splits, and
  its cases (tfds_source.Record)."""
  if config.data.source == "tfds":
    from rasd_jax.data import tfds_source  # tensorflow-datasets is needed for tfds alone
    path = tfds_source.find(config.data.tfds_dir, tfds_source.recipe_of(config))
    return (tfds_source.task_of(path, config.roi),
            tfds_source.records(path, config.train_fraction, config.seed))
  if config.task != "custom":
    task = tasks.get(config.task)
    task = dataclasses.replace(task, roi=sources.expand_roi(config.roi, task.ndim))
    source = config.data.dir
    lists = prepared.load_splits(task, config.data.dir, fold=config.data.fold)
    folds = task.cv_folds
  elif config.data.dir:  # the user's data, prepared
    task = prepared.task_of_folder(config.data.dir, config.roi)
    source, folds = config.data.dir, None
    lists = prepared.load_splits(task, config.data.dir)
  else:
    kind, lists, names, source, modality = sources.custom_lists(
        json_path=config.data.json, csv_path=config.data.csv, folders=config.data.folders,
        image_column=config.data.image_column, label_column=config.data.label_column)
    task, folds = None, None
  split = splits_lib.make_splits(lists, source=source, folds=folds, fold=config.data.fold,
                                 train_fraction=config.train_fraction, seed=config.seed,
                                 test=config.evaluation == "heldout")
  if task is None:
    task = sources.task_of_cases(kind, split["train"], names, config.num_classes, config.roi,
                               modality)
  return task, split


def _data(config, task, split):
  """The prepared samples of each split (training ones with their crop margin): read from
  the files, or with data.source "tfds" from the built dataset. Segmentation whose training
  labels are all background is refused (some empty cases are normal: not all of them)."""
  if config.data.source == "tfds":
    from rasd_jax.data import tfds_source
    data = {k: None if v is None else tfds_source.read(v, config.data.threads)
            for k, v in split.items()}
  else:
    data = {k: None if v is None else sources.prepare_cases(
        task, v, config.data.threads, config.data.skip_bad, training=k == "train")
            for k, v in split.items()}
  if task.kind == "segmentation":
    # Over every process's share: one process may hold only empty cases, the others not.
    found = dict(mesh_lib.gather([(s["id"], s["label"].any()) for s in data["train"]]))
    if not any(found.values()):
      raise ValueError(f"the labels of all {len(found)} training cases hold no foreground "
                       "(every voxel is background, 0): nothing to learn to segment; are these "
                       "the right label files?")
  return data


def _network(config, task):
  """(spec of the fine-tuned network, pre-trained network or None)."""
  output = config.output if task.kind == "segmentation" else task.kind
  if output == "sigmoid" and task.num_classes != 2:
    raise ValueError(f"output 'sigmoid' is for binary segmentation; {task.name} has "
                     f"{task.num_classes} classes")
  pretrained, features, model = None, 32, config.model
  if config.init != "scratch":
    pre = weights_lib.read_spec(config.init)
    if pre["ndim"] != task.ndim:
      raise ValueError(f"init {config.init!r} holds a {pre['ndim']}D network, the data is "
                       f"{task.ndim}D")
    if pre["in_channels"] != task.in_channels:
      log(f"note: the pre-trained network takes {pre['in_channels']} channel(s), the data "
          f"has {task.in_channels}: the first layer does not transfer")
    pretrained = weights_lib.load_model(config.init)
    if pre["network"] == "downstream":
      pretrained = pretrained.backbone
    model, features = model or pre["model"], pre["out_channels"]
    log(f"initialising from {config.init} (step {pre['step']}, model {pre['model']})")
  model = models.resolve(model or config.scratch_model or DEFAULT_MODELS[task.ndim])
  spec = weights_lib.downstream_spec(
      model, task.ndim, task.in_channels, features,
      1 if output in ("sigmoid", "regression") else task.num_classes, head=config.head,
      pooled=task.kind != "segmentation", output=output, classes=list(task.classes),
      dropout=(models.reference_dropout(model, task.ndim) if config.dropout is None
               else config.dropout))
  return spec, pretrained


def run(config, workdir):
  """The finetune job: returns the results it writes to W/results.json. Everything that can
  be refused (the config, every case's data, the network against the patch size) is
  checked before the workdir is written."""
  _check(config)
  task, split = _cases(config)
  mesh = mesh_lib.make_mesh(config.batch_size)
  data = _data(config, task, {k: None if v is None else engine.share(mesh, k, v)
                              for k, v in split.items()})
  sizes = engine.split_sizes(mesh, split, data)
  total, eval_every, optim = durations(config, sizes["train"])
  spec, pretrained = _network(config, task)
  log(f"task {task.name} ({task.kind}, {task.ndim}D, {task.in_channels} channel(s), "
      f"{task.num_classes} classes): cases {sizes}; {total} steps, validation every "
      f"{eval_every}")
  trainer = engine.make_trainer(spec, task, optim, total, batch_size=config.batch_size,
                         probe=config.probe, overlap=config.overlap,
                         evaluation=config.evaluation, mesh=mesh,
                         compute_dtype=config.compute_dtype, seed=config.seed)
  # The network takes the patches (each network: multiples of its downsampling).
  patch = jax.ShapeDtypeStruct((1,) + tuple(task.roi) + (task.in_channels,), jnp.float32)
  params, rest = trainer.abstract["params"], trainer.abstract["rest"]
  jax.eval_shape(lambda p, r, x: nnx.view(nnx.merge(trainer.graphdef, p, r), deterministic=True,
                                          raise_if_not_found=False)(x), params, rest, patch)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  workdir_lib.write_json(os.path.join(workdir, engine.TASK), {
      "task": pipeline.task_record(task), "overlap": config.overlap,
      "window": engine.WINDOWS[config.evaluation]})
  log(f"model {spec['model']} ({task.ndim}D), head {config.head}"
      f"{', linear probe' * config.probe}: "
      f"{models.size(params['backbone']):,}"
      f" backbone parameters; {mesh_lib.layout_text(mesh, config.batch_size)}")
  class_names = list(task.classes[1:] if task.kind == "segmentation" else task.classes)
  about = {"task": config.task, "kind": task.kind, "modality": task.modality_group,
              "init": config.init, "model": spec["model"], "head": config.head,
              "probe": config.probe, "seed": config.seed, "evaluation": config.evaluation,
              "train_fraction": config.train_fraction, "split_sizes": sizes,
              "num_classes": task.num_classes, "class_names": class_names}
  results = engine.train_and_evaluate(
      trainer, workdir, train=data["train"], val=data["val"], test=data["test"],
      seed=config.seed, total_steps=total, eval_every=eval_every, pretrained=pretrained,
      checkpoint_every=config.checkpoint_every, keep_checkpoints=config.keep_checkpoints,
      log_every=config.log_every, threads=config.data.threads, about=about)
  reported = results["test"] if results["test"] is not None else results["val"]
  shown = ", ".join(f"{k} {compare.fmt(reported[k], 4)}" for k in task.metrics)
  log(f"{'test' if results['test'] is not None else 'best validation'} (step "
      f"{results['selected_step']}): {shown}; {os.path.join(workdir, engine.RESULTS)}")
  return results
