"""The fine-tuning engine: what the finetune job, the suite, the quickstart and the notebooks
all run (the Flax examples' train_and_evaluate).

- `Trainer`: what the runs of one network, task and optimiser share, built once: the
  abstract state, the jitted initialiser (by seed), train step and evaluation.
- `train_and_evaluate(trainer, workdir, ...)`: one run. The state starts from the network
  of `seed` with a pre-trained network's matching variables copied in
  (transfer.copy_matching); step s trains on pipeline.make_batch(seed, s), made ahead on
  grain threads, so a resumed run sees the same batches; the validation evaluator runs every
  `eval_every` steps and at the last, selection.Best keeps the best step's weights in
  W/best; checkpoints, resume, the NaN stop and signals are the loop's. At the end the
  selected weights are read back with load_model (the user's path) and scored on the test
  cases (on their label files' own grids; the predictions saved in W/predictions/):
  W/results.json.
The finetune job (rasd_jax.jobs.finetune) turns a config into a Trainer and its cases.

Evaluation (`config.evaluation`):
- "heldout" (default): a test split apart from training and validation (the layout's, else
  held out by splits.make_splits) scored with the selected weights; segmentation Dice,
  HD95 and NSD over the foreground classes, a class absent from a case's target left out.
- "paper": as the reference code reports (README, "finetune"): the best validation
  score is the result (no test split is held out and an official test list is not used, so
  training and validation cases are the reference's; with cross-validation the fold is the
  validation split), with its metric definitions: the fundus tasks' Dice averaged with the
  background class (evaluators.dice_with_background). The reference scores a BraTS region or
  a COVID-19-20 lesion absent from a case 0 but divides by the cases that have it, which is
  our mean over the cases where it is present: the same number.
"""

import contextlib
import dataclasses
import functools
import os

from flax import nnx
import grain
import jax
import jax.numpy as jnp

from rasd_jax.data import pipeline
from rasd_jax.data import predictions
from rasd_jax.data import sources
from rasd_jax.data import tasks
from rasd_jax.evaluation import evaluators
from rasd_jax.training import checkpoint
from rasd_jax.training import downstream
from rasd_jax.training import loop
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import metrics as metrics_lib
from rasd_jax.training import optimizer
from rasd_jax.training import selection
from rasd_jax.training import state as state_lib
from rasd_jax.training import transfer
from rasd_jax.training import weights as weights_lib
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

# The sliding window's weighting by evaluation: the reference's (MONAI's default) in "paper".
WINDOWS = {"heldout": "gaussian", "paper": "constant"}
RESULTS = "results.json"
PREDICTIONS = "predictions"  # the test cases' label maps, on their image files' grids
TASK = "task.json"  # what the predict job needs: the task, the patch size, overlap and window


@dataclasses.dataclass
class Trainer:
  """A network, a task and an optimiser, with their jitted functions (built once, shared
  by every run made with them). `evaluate(weights, samples) -> summary`."""
  spec: dict
  task: tasks.Task
  graphdef: object
  abstract: dict
  init: object
  step: object
  evaluate: object
  batch_size: int
  mesh: object


def make_trainer(spec, task, optim, total_steps, *, batch_size, probe=False, overlap=0.5,
                 evaluation="heldout", mesh=None, compute_dtype="float32", seed=0):
  """The Trainer of the network `spec` (weights.build) on `task` with the optimiser config
  `optim` over `total_steps` steps; `probe` trains the head alone; `evaluation` "paper":
  the reference's metric definitions (the module docstring); `compute_dtype` the step's
  (downstream.make_step); step s draws its dropout masks from (seed, s)."""
  mesh = mesh or mesh_lib.make_mesh(batch_size)
  tx, schedule = optimizer.make(optim, total_steps)
  if probe:
    tx = downstream.probe_tx(tx)
  graphdef, abstract = state_lib.abstract(lambda: weights_lib.build(spec), tx, mesh)
  init = state_lib.initializer(lambda seed: weights_lib.build(spec, seed), tx, abstract)
  output = spec["output"]
  step = downstream.make_step(graphdef, abstract, mesh, tx=tx, schedule=schedule,
                              output=output, probe=probe, compute_dtype=compute_dtype,
                              seed=seed)
  # Each process scores its share of the cases (`share`) on one of its devices with its own
  # copy of the weights; the per-case results are gathered before they are summarised.
  if spec["pooled"]:
    score = downstream.make_score(graphdef, output)
    evaluate = lambda weights, samples, **test: evaluators.score_pooled(  # noqa: E731
        score, mesh_lib.local_copy(weights), samples, task, batch_size, mesh_lib.gather)
  else:
    segment = downstream.make_segment(graphdef, task.roi, overlap, output, WINDOWS[evaluation])
    background = evaluation == "paper" and task.preprocessing.get("template") == "fundus"
    evaluate = lambda weights, samples, **test: evaluators.score_segmentation(  # noqa: E731
        segment, mesh_lib.local_copy(weights), samples, task, background=background,
        gather=mesh_lib.gather, **test)
  return Trainer(spec, task, graphdef, abstract, init, step, evaluate, batch_size, mesh)


def _part(mesh, split, n):
  """(index, count): this process's part of the `n` cases of `split` is every count-th from
  the index-th."""
  if split == "train":
    index, count = mesh_lib.data_share(mesh)
    return (0, 1) if n < count else (index, count)
  return jax.process_index(), jax.process_count()


def share(mesh, split, items):
  """This process's part of a split's cases (entries to read, or prepared samples), which is
  what `train_and_evaluate` takes. Training cases are dealt out over the blocks of the batch
  that the processes feed (mesh_lib.data_share; every block has them all when there are
  fewer cases than blocks), validation and test cases over the processes (each scores its
  own; the results are gathered). With one process: all of them."""
  index, count = _part(mesh, split, len(items))
  return items[index::count]


def split_sizes(mesh, split, data):
  """{split: the number of cases prepared over all processes} (skip_bad may have dropped
  some), from each process's `share` of `split` prepared as `data`."""
  parts = mesh_lib.gather([{k: (_part(mesh, k, len(split[k])), len(v))
                            for k, v in data.items() if v is not None}])
  return {k: None if v is None else sum(dict(p[k] for p in parts).values())
          for k, v in data.items()}


def initial_state(trainer, seed, pretrained=None):
  """(state, transfer report or None): the fresh state of `seed`, with the variables of the
  network `pretrained` whose names and shapes match copied into the backbone."""
  state = trainer.init(jnp.int32(seed))
  if pretrained is None:
    return state, None
  state, report = transfer.copy_into_state(trainer.graphdef, state, pretrained,
                                           part=lambda network: network.backbone)
  if not report["loaded"]:
    raise ValueError("the pre-trained network shares no variable (name and shape) with "
                     f"the fine-tuned one:\n{transfer.summary(report)}")
  return state, report


def train_and_evaluate(trainer, workdir, *, train, val, test, seed, total_steps, eval_every,
                       pretrained=None, checkpoint_every=1000, keep_checkpoints=2,
                       log_every=50, threads=4, about=None):
  """One fine-tuning run in `workdir` (resumed if it holds one); returns its results, also
  written to W/results.json: the fields of `about` (what the caller says of the run),
  selection metric, selected step, val and test summaries, the validation curve (a signal
  raises loop.Stopped once the checkpoint is saved). train / val / test: this process's
  `share` of the prepared samples; test may be None (evaluation "paper": no test split).
  Each process makes its block of a batch (pipeline.make_batch of its training share, keyed
  by its block where there are several)."""
  task = trainer.task
  workdir_lib.makedirs(workdir)
  weights_lib.write_spec(workdir, trainer.spec)
  with contextlib.ExitStack() as stack:
    # Resume order: the latest checkpoint that restores, else the fresh state of `seed` with
    # `pretrained` copied in; then the best validation so far (W/best, W/best_val.json).
    checkpointer = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"),
                                           keep=keep_checkpoints)
    stack.callback(checkpointer.close)
    first_step, state = checkpointer.start(
        trainer.abstract, functools.partial(_fresh_state, trainer, workdir, seed, pretrained))
    best = selection.Best(workdir, task.metrics[0], resumed=first_step > 0)
    stack.callback(best.close)
    if first_step < total_steps:
      block, blocks = mesh_lib.data_share(trainer.mesh)
      made = grain.MapDataset.range(first_step, total_steps).map(
          lambda s: pipeline.make_batch(task, train, task.roi, trainer.batch_size // blocks,
                                        seed, s, block=() if blocks == 1 else (block,))
      ).to_iter_dataset(sources.read_options(threads))
      batches = (mesh_lib.process_batch(trainer.mesh, b, trainer.batch_size) for b in made)
      writer = metrics_lib.MetricsWriter(workdir, tensorboard=True, resume_step=first_step)
      stack.callback(writer.close)
      val_writer = metrics_lib.MetricsWriter(workdir, resume_step=first_step,
                                             filename="val_metrics.jsonl")
      validation = evaluators.Evaluator(lambda w: trainer.evaluate(w, val), eval_every,
                                        val_writer, best)
      loop.run(trainer.step, state, batches, first_step=first_step, total_steps=total_steps,
               batch_size=trainer.batch_size, checkpointer=checkpointer, writer=writer,
               log_every=log_every, checkpoint_every=checkpoint_every,
               evaluators=[validation], desc="finetune")

  results = dict(about or {}, selection_metric=task.metrics[0], selected_step=best.step,
                 total_steps=total_steps, val=best.summary, test=None,
                 curve=_curve(workdir, task.metrics[0]))
  if test is not None:
    _, params, rest = nnx.split(weights_lib.load_model(workdir), nnx.Param, ...)
    test_options = {} if trainer.spec["pooled"] else {
        "native": True, "keep": _writer(os.path.join(workdir, PREDICTIONS), task)}
    results["test"] = trainer.evaluate({"params": params, "rest": rest}, test, **test_options)
  workdir_lib.write_json(os.path.join(workdir, RESULTS), results)
  return workdir_lib.json_ready(results)


def _fresh_state(trainer, workdir, seed, pretrained):
  """The state of a run that starts (initial_state), the transfer report in the log and in
  W/transfer.txt."""
  state, report = initial_state(trainer, seed, pretrained)
  if report is not None:
    text = transfer.summary(report)
    log(text)
    if jax.process_index() == 0:
      workdir_lib.write_file(os.path.join(workdir, "transfer.txt"), text + "\n")
  return state


def _writer(folder, task):
  """keep(sample, label map on its file's grid): writes a test case's prediction to `folder`
  (data.predictions), where the sample knows its files (read from files, not TFDS)."""
  def keep(sample, labels):
    if "geometry" in sample:
      workdir_lib.makedirs(folder)
      geometry = sample["geometry"]
      name = predictions.name_of(sample["id"])
      predictions.write(predictions.paths(folder, name, geometry["path"]), task, geometry,
                        labels)
  return keep


def _curve(workdir, metric):
  """[[step, validation value], ...] from W/val_metrics.jsonl."""
  records = workdir_lib.read_jsonl(os.path.join(workdir, "val_metrics.jsonl"))
  return [[r["step"], r.get(metric)] for r in records]
