"""The suite: fine-tune every listed task from scratch and from a pre-training init with a few
seeds, and summarise pre-trained against scratch, paired by seed.

1. `config.tasks` holds one finetune config per task (experiments/suite.py). A registry task
   reads data_root/NAME (a folder the prepare job made) unless its data.dir is set; with
   `tfds_dir`, every task reads its built dataset there instead (data.source=tfds,
   data.tfds_dir). A task whose data does not list (prepared.load_splits raises, a custom
   task's file is missing, no dataset built for it) is skipped and reported with the reason.
2. Per task, seed and init: S/TASK/scratch/seedK and S/TASK/pretrained/seedK, each a run of
   the fine-tuning engine (resumed if it was cut short, skipped if its results.json is
   there) with W/wall.json (the seconds of the invocation that finished it). `init` is
   "scratch" (scratch runs only) or pre-training workdirs, comma-separated, one per
   dimensionality: a task takes the one of its ndim (its own config's init, when not
   "scratch", wins: the way to give a custom task one when there are two).
3. After every task, S/summary.csv, S/summary.md and S/summary.png are rebuilt from the
   results files on disk (so a killed run leaves a valid summary and a rerun rebuilds it):
   per task the selection metric (test split; the best validation score with evaluation
   "paper") from scratch and pre-trained (mean ± sd over seeds), their paired difference
   with its 95% t interval (rasd_jax.evaluation.compare), the seeds where pre-trained is
   better, and the wall time.
"""

import csv
import io
import json
import math
import os
import time

from etils import epath
import jax

from rasd_jax.data import prepared
from rasd_jax.data import sources
from rasd_jax.data import tasks
from rasd_jax.evaluation import compare
from rasd_jax import jobs
from rasd_jax.training import engine
from rasd_jax.training import loop
from rasd_jax.training import weights
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

INITS = ("scratch", "pretrained")
WALL = "wall.json"
COLUMNS = ("task", "modality", "kind", "metric", "lower_is_better", "scratch_mean",
           "scratch_sd", "pretrained_mean", "pretrained_sd", "difference_mean",
           "difference_se", "ci_low", "ci_high", "pretrained_better_seeds", "seeds",
           "wall_seconds", "status")


def _check(config):
  if config.seeds < 1:
    raise ValueError(f"seeds = {config.seeds}: must be >= 1")
  unplaced = [name for name, task in config.tasks.items()
              if task.task != "custom" and not task.data.dir]
  if unplaced and not config.data_root and not config.tfds_dir:
    raise ValueError(f"registry tasks read their data from data_root/NAME: give data_root "
                     f"(--config.data_root=DIR) or each one's data.dir ({unplaced[0]} has none)")


def _inits(config):
  """{ndim: pre-training workdir} of config.init."""
  found = {}
  if config.init == "scratch":
    return found
  for path in filter(None, (p.strip() for p in config.init.split(","))):
    ndim = weights.read_spec(path)["ndim"]
    if ndim in found:
      raise ValueError(f"init: {found[ndim]!r} and {path!r} are both {ndim}D; give one "
                       "pre-training per dimensionality")
    found[ndim] = path
  return found


def _registry(config, name):
  """The registry task of config.tasks[name], or None for a custom task."""
  task_config = config.tasks[name]
  return None if task_config.task == "custom" else tasks.get(task_config.task)


def plan(config, inits):
  """{task: [(init name, init)]}: scratch, then the pre-training of the task's ndim."""
  runs, unmatched = {}, []
  for name, task_config in config.tasks.items():
    runs[name] = [("scratch", "scratch")]
    task = _registry(config, name)
    if task_config.init != "scratch":
      chosen = task_config.init
    elif task is not None:
      chosen = inits.get(task.ndim)
    else:
      chosen = next(iter(inits.values())) if len(inits) == 1 else None
    if chosen:
      runs[name].append(("pretrained", chosen))
    elif inits:
      unmatched.append(name)
  if unmatched:
    log(f"scratch runs only (init {config.init!r} has no pre-training of their "
        f"dimensionality; a custom task takes --config.tasks.NAME.init): {', '.join(unmatched)}")
  return runs


def run_config(config, name, init, seed):
  """The finetune config of one run."""
  run = config.tasks[name].copy_and_resolve_references()
  if run.task != "custom":
    run.data.dir = run.data.dir or os.path.join(config.data_root, name)
    # The suite's fold, for tasks with folds; a task's own data.fold (not 0) wins.
    run.data.fold = run.data.fold or (config.fold if tasks.get(run.task).folds > 1 else 0)
  if config.tfds_dir:
    run.data.source = "tfds"
    run.data.tfds_dir = run.data.tfds_dir or config.tfds_dir
  run.init, run.seed = init, seed
  return run


def data_problem(config, name):
  """Why task `name` cannot run (its data does not list), or None."""
  run = run_config(config, name, "scratch", 0)
  if run.data.source == "tfds":
    from rasd_jax.data import tfds_source  # tensorflow-datasets is needed for tfds alone
    try:
      tfds_source.find(run.data.tfds_dir, tfds_source.recipe_of(run))
    except ValueError as e:
      return str(e)
    return None
  try:
    if run.task == "custom" and not run.data.dir:
      sources.check_custom_source(run.data)
      return None
    task = prepared.task_of_folder(run.data.dir, run.roi) if run.task == "custom" else run.task
    prepared.load_splits(task, run.data.dir, fold=run.data.fold)
  except (FileNotFoundError, ValueError) as e:
    return str(e)
  return None


def run_dir(workdir, name, init_name, seed):
  return os.path.join(workdir, name, init_name, f"seed{seed}")


def _read(path):
  path = epath.Path(path)
  return json.loads(path.read_text()) if path.exists() else None


def read_results(path):
  """W/results.json of a finished run (written last, atomically), else None."""
  return _read(os.path.join(path, engine.RESULTS))


def run(config, workdir):
  _check(config)
  workdir_lib.prepare(workdir, config, may_change=("seeds",))
  runs = plan(config, _inits(config))
  missing, written = {}, False
  for name in config.tasks:
    problem = data_problem(config, name)
    if problem:
      missing[name], written = problem, False
      log(f"{name}: skipped: {problem}")
      continue
    todo = [(seed, init_name, init) for seed in range(config.seeds)
            for init_name, init in runs[name]
            if read_results(run_dir(workdir, name, init_name, seed)) is None]
    for seed, init_name, init in todo:
      path = run_dir(workdir, name, init_name, seed)
      log(f"{name}: {init_name}, seed {seed}")
      start = time.perf_counter()
      try:
        jobs.get("finetune")(run_config(config, name, init, seed), path)
      except loop.Stopped:
        write_summary(config, workdir, runs, missing)  # the runs finished so far
        raise
      workdir_lib.write_json(os.path.join(path, WALL), {"seconds": time.perf_counter() - start})
    if todo:
      write_summary(config, workdir, runs, missing)
      written = True
  if not written:
    write_summary(config, workdir, runs, missing)


# The summary: a function of the config, the plan, the tasks without data and the files.


def _score(results):
  """The selection metric of a finished run: on the test split, else (evaluation "paper")
  the best validation score."""
  scores = results["test"] if results["test"] is not None else results["val"]
  return scores.get(results["selection_metric"])


def summary_rows(config, workdir, runs, missing):
  """One dict per task (COLUMNS, plus "paired": the compare.Paired, and "problem"), sorted
  by modality group and name."""
  rows = []
  for name in config.tasks:
    task = _registry(config, name)
    found = {init: [read_results(run_dir(workdir, name, init, s)) for s in range(config.seeds)]
             for init in INITS}
    done = [r for results in found.values() for r in results if r is not None]
    first = done[0] if done else {}
    metric = first.get("selection_metric") or (task.metrics[0] if task else "")
    values = {init: [None if r is None else _score(r) for r in results]
              for init, results in found.items()}
    paired = compare.paired(values["scratch"], values["pretrained"], metric)
    walls = [_read(os.path.join(run_dir(workdir, name, init, s), WALL))
             for init, _ in runs[name] for s in range(config.seeds)]
    planned = len(runs[name]) * config.seeds
    status = ("no data" if name in missing else "done" if len(done) == planned
              else f"{len(done)}/{planned} runs")
    rows.append(dict(
        task=name, modality=first.get("modality") or (task.modality_group if task else
                                                      "unknown"),
        kind=first.get("kind") or (task.kind if task else ""), metric=metric,
        lower_is_better=paired.lower, scratch_mean=paired.baseline[0],
        scratch_sd=paired.baseline[1], pretrained_mean=paired.treated[0],
        pretrained_sd=paired.treated[1], difference_mean=paired.mean, difference_se=paired.se,
        ci_low=paired.low, ci_high=paired.high, pretrained_better_seeds=paired.better,
        seeds=paired.n, wall_seconds=sum(w["seconds"] for w in walls if w), status=status,
        paired=paired, problem=missing.get(name)))
  return sorted(rows, key=lambda r: (r["modality"], r["task"]))


def summary_csv(rows):
  out = io.StringIO()
  writer = csv.writer(out)
  writer.writerow(COLUMNS)
  for row in rows:
    writer.writerow(["" if isinstance(row[c], float) and not math.isfinite(row[c]) else
                     f"{row[c]:.6g}" if isinstance(row[c], float) else row[c] for c in COLUMNS])
  return out.getvalue()


def _cell(mean, sd):
  return f"{compare.fmt(mean)} ± {compare.fmt(sd)}" if math.isfinite(mean) else "n/a"


def summary_markdown(config, rows):
  ran = [r for r in rows if r["problem"] is None]
  lines = [
      "# Suite: pre-trained vs scratch", "",
      f"- init: {config.init}; seeds 0-{config.seeds - 1}; "
      + (f"prepared datasets (tfds) in {config.tfds_dir}." if config.tfds_dir else
         f"data_root: {config.data_root or '(each task its data.dir)'}."),
      "- Per task its selection metric (test split; the best validation score with "
      "evaluation 'paper'), mean ± sd over seeds; pre - scratch is the difference paired by "
      "seed, with its 95% t interval (seeds - 1 degrees of freedom). For mae, rmse and hd95 "
      "lower is better: there a negative difference is pre-trained's win.", "",
      "| task | modality | kind | metric | scratch | pre-trained | pre - scratch | 95% CI | "
      "pre-trained better | seeds | wall (s) | status |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in ran:
    p = r["paired"]
    interval = (f"[{compare.signed(p.low)}, {compare.signed(p.high)}]"
                if math.isfinite(p.low) else "n/a")
    lines.append(
        f"| {r['task']} | {r['modality']} | {r['kind']} | {r['metric']} | "
        f"{_cell(*p.baseline)} | {_cell(*p.treated)} | {compare.signed(p.mean)} | {interval} | "
        f"{p.better}/{p.n} | {p.n} | {r['wall_seconds']:.0f} | {r['status']} |")
  lines += ["", "## Verdicts", ""]
  lines += [f"- {r['task']} ({r['metric']}): {r['paired'].verdict}" for r in ran
            if r["paired"].n]
  skipped = [r for r in rows if r["problem"] is not None]
  if skipped:
    lines += ["", "## Not run: data missing or not prepared", ""]
    for r in skipped:
      lines.append(f"- {r['task']}: {r['problem']}")
  return "\n".join(lines) + "\n"


def summary_png(rows):
  """PNG bytes: per task the paired difference with its interval, signed so that right is
  pre-trained better, colour by modality group."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  shown = [r for r in rows if r["paired"].n]
  groups = sorted({r["modality"] for r in shown})
  colors = dict(zip(groups, plt.get_cmap("tab10").colors))
  fig, ax = plt.subplots(figsize=(8, 1.5 + 0.3 * max(1, len(shown))))
  for y, r in enumerate(shown):
    p = r["paired"]
    sign = -1.0 if p.lower else 1.0
    x = sign * p.mean
    error = None
    if math.isfinite(p.low):
      low, high = sorted((sign * p.low, sign * p.high))
      error = [[x - low], [high - x]]
    ax.errorbar(x, y, xerr=error, fmt="o", capsize=3, color=colors[r["modality"]],
                label=r["modality"])
  ax.set_yticks(range(len(shown)), [f"{r['task']} ({r['metric']})" for r in shown])
  ax.invert_yaxis()
  ax.axvline(0, color="grey", linewidth=0.8)
  handles, labels = ax.get_legend_handles_labels()
  unique = dict(zip(labels, handles))
  if unique:
    ax.legend(unique.values(), unique.keys(), fontsize=8, title="modality",
              loc="upper left", bbox_to_anchor=(1.01, 1))
  ax.set_xlabel("pre-trained - scratch, paired by seed, with its 95% t interval\n"
                "(sign flipped for mae, rmse, hd95: right is pre-trained better)")
  ax.set_title("Suite: pre-trained vs scratch" + ("" if shown else " (no finished pairs yet)"))
  fig.tight_layout()
  out = io.BytesIO()
  fig.savefig(out, format="png", dpi=100)
  plt.close(fig)
  return out.getvalue()


def _write(path, data):
  """`data` (str or bytes) to `path` atomically, on process 0."""
  if jax.process_index() == 0:
    workdir_lib.write_file(path, data)


def write_summary(config, workdir, runs, missing):
  """S/summary.csv, S/summary.md and S/summary.png, from the files on disk."""
  rows = summary_rows(config, workdir, runs, missing)
  _write(os.path.join(workdir, "summary.csv"), summary_csv(rows))
  _write(os.path.join(workdir, "summary.md"), summary_markdown(config, rows))
  _write(os.path.join(workdir, "summary.png"), summary_png(rows))
  log(f"wrote {os.path.join(workdir, 'summary.md')}, summary.csv and summary.png")
