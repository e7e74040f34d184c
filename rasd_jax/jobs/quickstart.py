"""The laptop demo: pre-train, then fine-tune pre-trained and from-scratch twins on the demo
tasks at a few amounts of labels and seeds, and report the paired differences.

1. The pretrain job runs `config.pretrain` into W/pretrain (resumable as that job is).
2. Two 2D tasks from rasd_jax.data.demo (demo.samples_2d), each split into disjoint train /
   val / test regions (demo.split): brain tissue of the MNI152 template (background, grey
   matter, white matter, rest), training on `tile`-sided tiles of the training slab's axial
   slices, validation and test on `val_slices` / `test_slices` whole slices evenly spaced in
   their slabs; nuclei, tiles of the training band, the whole validation and test bands. A
   run trains on n tiles: the first n of a permutation drawn from the seed, so the sets are
   nested across n and the same for both inits.
3. Per task, n and seed: init "scratch" (the network as initialised) and "pretrained" (the
   pre-trained network copied in, transfer.copy_matching), each with a new 1x1 head on its
   32 output channels (head "add"); Dice+CE, `config.optim`, `steps` steps of
   pipeline.make_batch(seed, step) batches. Validation Dice every `eval_every` steps (the
   learning curve); the weights of the best one are scored on the test region. Probes (n in
   `probe_images`): the same with the backbone frozen in eval mode and only the head trained
   (`config.probe_optim`); scratch is then the random network.
4. Each finished run is a line of W/runs.jsonl; a rerun skips those and rebuilds
   W/report.md and W/report.png from the file.

Every run goes through the fine-tuning engine (engine.train_and_evaluate) in its own folder
W/runs/...; the engine Trainers (jitted step, probe step, sliding-window segmentation) are
built once per task and shared by all its runs.
"""

import io
import json
import os
import time

import jax
import numpy as np

from rasd_jax.data import demo
from rasd_jax.data import pipeline
from rasd_jax.evaluation import compare
from rasd_jax import jobs
from rasd_jax.training import engine
from rasd_jax.training import weights
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

TASKS = ("brain", "nuclei")
INITS = ("scratch", "pretrained")
UNITS = {"brain": "tiles", "nuclei": "tiles"}
MODALITIES = {"brain": "MRI", "nuclei": "unknown"}  # T1 MRI; fluorescence microscopy


def _check(config):
  for key in ("steps", "batch_size", "roi", "eval_every"):
    if config[key] < 1:
      raise ValueError(f"{key} = {config[key]}: must be >= 1")
  if not config.seeds:
    raise ValueError("seeds is empty: give at least one")
  for name in TASKS:
    amounts = config[name].train_images
    if not amounts or min(amounts) < 1:
      raise ValueError(f"{name}.train_images = {amounts}: give counts >= 1")
    if not set(config[name].probe_images) <= set(amounts):
      raise ValueError(f"{name}.probe_images = {config[name].probe_images} must be among "
                       f"{name}.train_images = {amounts}")


def _spec(pre, num_classes):
  """The fine-tuned network: the pre-trained one with a new 1x1 head on its outputs."""
  return weights.downstream_spec(pre.model, 2, 1, pre.out_channels, num_classes)


def run_one(trainers, data, workdir, name, init, n, seed, probe, pretrained, config):
  """One fine-tuning or probe run through the engine, in its own workdir: its runs.jsonl
  record."""
  start = time.perf_counter()
  order = np.random.default_rng(seed).permutation(len(data["train"]))
  mine = {"train": [data["train"][i] for i in order[:n]], "val": data["val"],
          "test": data["test"]}
  mine = {k: engine.share(trainers[probe].mesh, k, v) for k, v in mine.items()}
  results = engine.train_and_evaluate(
      trainers[probe], workdir, **mine, seed=seed, total_steps=config.steps,
      eval_every=config.eval_every,
      pretrained=pretrained if init == "pretrained" else None,
      checkpoint_every=config.steps, log_every=config.steps, threads=2,
      about={"task": name, "init": init, "train_images": n, "seed": seed, "probe": probe})
  return workdir_lib.json_ready({
      "task": name, "init": init, "train_images": n, "seed": seed, "probe": probe,
      "selected_step": results["selected_step"], "val_dice": results["val"]["dice"],
      "test_dice": results["test"]["dice"],
      "test_dice_per_class": results["test"]["dice_per_class"], "curve": results["curve"],
      "split_sizes": {k: len(v) for k, v in data.items()},
      "seconds": round(time.perf_counter() - start, 2)})


def run_key(record):
  return (record["task"], record["init"], record["train_images"], record["seed"],
          record["probe"])


def planned_runs(config):
  """(task, init, n, seed, probe) of every run, pairs of inits next to each other."""
  runs = []
  for name in TASKS:
    for probe in (False, True):
      amounts = config[name].probe_images if probe else config[name].train_images
      for n in amounts:
        for seed in config.seeds:
          runs += [(name, init, n, seed, probe) for init in INITS]
  return runs


def pretrain_summary(workdir):
  """{'seconds', 'first_loss', 'last_loss'} of the pretrain job, from its metrics.jsonl:
  seconds per step times steps over the logged intervals (compilation in the first)."""
  records = workdir_lib.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  seconds, previous = 0.0, 0
  for record in records:
    seconds += record["step_s"] * (record["step"] - previous)
    previous = record["step"]
  return {"seconds": seconds, "first_loss": records[0]["loss"], "last_loss": records[-1]["loss"]}


def run(config, workdir):
  start = time.perf_counter()
  _check(config)
  workdir_lib.prepare(workdir, config)
  pre_dir = os.path.join(workdir, "pretrain")
  jobs.get("pretrain")(config.pretrain, pre_dir)
  pretrained = weights.load_model(pre_dir)
  path = os.path.join(workdir, "runs.jsonl")
  done = {run_key(r) for r in workdir_lib.read_jsonl(path)}
  todo = [r for r in planned_runs(config) if r not in done]
  log(f"{len(done)} runs already in {path}; {len(todo)} to do")
  for name in TASKS:
    mine = [r for r in todo if r[0] == name]
    if not mine:
      continue
    settings = config[name]
    data, class_names = demo.samples_2d(
        name, **{k: settings[k] for k in ("min_brain", "val_slices", "test_slices", "tile",
                                          "tile_brain") if k in settings})
    if len(data["train"]) < max(settings.train_images):
      raise ValueError(f"{name}: {len(data['train'])} training {UNITS[name]} available, "
                       f"fewer than train_images {max(settings.train_images)}")
    log(f"{name}: {len(class_names)} classes; {len(data['train'])} training {UNITS[name]}, "
        f"{len(data['val'])} validation and {len(data['test'])} test images")
    task = pipeline.custom_task("segmentation", 2, 1, class_names, (config.roi,) * 2,
                                name=name, modality=MODALITIES[name])
    spec = _spec(config.pretrain, len(class_names))
    trainers = {probe: engine.make_trainer(
        spec, task, config.probe_optim if probe else config.optim, config.steps,
        batch_size=config.batch_size, probe=probe, overlap=config.overlap)
        for probe in (False, True)}
    for _, init, n, seed, probe in mine:
      run_dir = os.path.join(workdir, "runs", f"{name}_{init}_n{n}_seed{seed}"
                             + "_probe" * probe)
      record = run_one(trainers, data, run_dir, name, init, n, seed, probe, pretrained,
                       config)
      if jax.process_index() == 0:
        workdir_lib.append_lines(path, [json.dumps(record) + "\n"])
      log(f"{name} {'probe ' if probe else ''}{init} n={n} seed={seed}: test dice "
          f"{record['test_dice']:.4f} (step {record['selected_step']}, "
          f"{record['seconds']:.0f} s)")
  if jax.process_index() == 0:
    write_report(config, workdir, workdir_lib.read_jsonl(path), pretrain_summary(pre_dir),
                 time.perf_counter() - start)


# The report: W/report.md and W/report.png, from the runs.jsonl records alone.


def _groups(records, name, probe):
  """{(init, n): {seed: record}} of one task, fine-tuning or probe runs."""
  groups = {}
  for r in records:
    if r["task"] == name and r["probe"] == probe:
      groups.setdefault((r["init"], r["train_images"]), {})[r["seed"]] = r
  return groups


def comparisons(records, name, probe):
  """Per n: (n, {init: [test dice per seed]}, paired differences pretrained - scratch)."""
  groups = _groups(records, name, probe)
  rows = []
  for n in sorted({n for _, n in groups}):
    scratch, pre = groups.get(("scratch", n), {}), groups.get(("pretrained", n), {})
    seeds = sorted(set(scratch) & set(pre))
    diffs = [(s, pre[s]["test_dice"] - scratch[s]["test_dice"]) for s in seeds]
    values = {init: [r["test_dice"] for r in groups.get((init, n), {}).values()]
              for init in INITS}
    rows.append((n, values, diffs))
  return rows


def _comparison_table(records, name, probe):
  base = "random network" if probe else "scratch"
  lines = [f"| {UNITS[name]} | {base} | pre-trained | pre - {base} (mean ± SE) | positive | "
           "per seed |", "|---|---|---|---|---|---|"]
  verdicts = []
  for n, values, diffs in comparisons(records, name, probe):
    cells = []
    for init in INITS:
      mean, sd, _ = compare.spread(values[init])
      cells.append(f"{compare.fmt(mean)} ± {compare.fmt(sd)}")
    mean, _, se = compare.spread([d for _, d in diffs])
    positive = sum(d > 0 for _, d in diffs)
    per_seed = ", ".join(f"{s}: {compare.signed(d)}" for s, d in diffs)
    lines.append(f"| {n} | {cells[0]} | {cells[1]} | {compare.signed(mean)} ± "
                 f"{compare.fmt(se)} | {positive}/{len(diffs)} | {per_seed} |")
    verdict = compare.verdict(mean, se, positive, len(diffs), names=(base, "pre-trained"))
    verdicts.append(f"- {name}, {'probe, ' if probe else ''}{n} {UNITS[name]}: {verdict}")
  return lines, verdicts


def _per_class_table(records, name):
  rows = {}
  for r in records:
    if r["task"] == name and not r["probe"]:
      rows.setdefault((r["train_images"], r["init"]), []).append(r["test_dice_per_class"])
  if not rows:
    return []
  classes = list(next(iter(rows.values()))[0])
  lines = [f"| {UNITS[name]} | init | " + " | ".join(classes) + " |",
           "|---|---|" + "---|" * len(classes)]
  for (n, init), values in sorted(rows.items()):
    means = [np.nanmean([np.nan if v[c] is None else v[c] for v in values]) for c in classes]
    lines.append(f"| {n} | {init} | " + " | ".join(compare.fmt(m) for m in means) + " |")
  return lines


def mean_curves(records, name, probe=False):
  """{(init, n): (steps, mean validation Dice over seeds)}."""
  curves = {}
  for key, runs in _groups(records, name, probe).items():
    steps = [s for s, _ in next(iter(runs.values()))["curve"]]
    dice = np.array([[np.nan if d is None else d for _, d in r["curve"]]
                     for r in runs.values()], float)
    curves[key] = (steps, np.nanmean(dice, axis=0))
  return curves


def _curve_table(records, name):
  curves = mean_curves(records, name)
  if not curves:
    return []
  steps = next(iter(curves.values()))[0]
  lines = [f"| {UNITS[name]} | init | " + " | ".join(f"step {s}" for s in steps) + " |",
           "|---|---|" + "---|" * len(steps)]
  for (init, n), (_, dice) in sorted(curves.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    lines.append(f"| {n} | {init} | " + " | ".join(compare.fmt(d) for d in dice) + " |")
  return lines


def _early_lines(records, name):
  """The learning curves' gap (pre-trained - scratch mean validation Dice) at the first
  evaluation and at the last."""
  curves = mean_curves(records, name)
  lines = []
  for n in sorted({n for _, n in curves}):
    if ("scratch", n) in curves and ("pretrained", n) in curves:
      (steps, scratch), (_, pre) = curves[("scratch", n)], curves[("pretrained", n)]
      lines.append(f"- {name}, {n} {UNITS[name]}, validation Dice gap (mean over seeds): "
                   f"{compare.signed(pre[0] - scratch[0])} at step {steps[0]}, "
                   f"{compare.signed(pre[-1] - scratch[-1])} at step {steps[-1]}")
  return lines


def report_markdown(config, records, pretrain, wall):
  pre = config.pretrain
  fine = [r for r in records if not r["probe"]]
  probes = [r for r in records if r["probe"]]
  sizes = {r["task"]: r["split_sizes"] for r in records}
  lines = [
      "# Quickstart: synthetic pre-training vs training from scratch", "",
      "## Setup", "",
      f"- Pre-training (W/pretrain): {pre.model}, {pre.synthesis.ndim}D "
      f"{pre.synthesis.size}^2 synthetic samples, K={pre.synthesis.num_labels}, batch "
      f"{pre.batch_size}, AdamW lr {pre.optim.lr} {pre.optim.schedule}, "
      f"{pre.total_steps} steps in {pretrain['seconds'] / 60:.1f} min; loss "
      f"{pretrain['first_loss']:.3f} -> {pretrain['last_loss']:.3f}.",
      f"- Fine-tuning: the whole network with its {pre.out_channels} output channels plus a "
      f"new 1x1 head, Dice+CE, AdamW lr {config.optim.lr} (wd {config.optim.weight_decay}, "
      f"{config.optim.warmup_steps} warm-up steps, {config.optim.schedule}), "
      f"{config.steps} steps of batch {config.batch_size} random {config.roi}x{config.roi} "
      "crops (pos/neg 1:1, flips); scratch and pre-trained runs share the seed: head "
      "init, label subset and batches.",
      f"- Linear probe: the backbone frozen (eval mode, its batch-norm statistics as they "
      f"came), the head alone trained, AdamW lr {config.probe_optim.lr}, same steps; "
      "against the same probe on the randomly initialised network.",
      f"- Seeds {list(config.seeds)}. Evaluation: validation Dice (mean over foreground "
      f"classes) every {config.eval_every} steps by sliding-window inference (overlap "
      f"{config.overlap}); the weights with the best validation Dice are scored on the "
      "test region, disjoint from training and validation.",
  ]
  if "brain" in sizes:
    t = config.brain.tile
    lines.append(
        f"- Brain tissue: the MNI152 template (grey matter, white matter, rest), axial slabs "
        f"(demo.split); training on {list(config.brain.train_images)} of "
        f"{sizes['brain']['train']} {t}x{t} tiles of the training slab's axial slices (tiles "
        f"at least {config.brain.tile_brain:.0%} brain), validation on "
        f"{sizes['brain']['val']} and test on {sizes['brain']['test']} evenly spaced whole "
        f"slices (slices with at least {config.brain.min_brain:.0%} brain).")
  if "nuclei" in sizes:
    t = config.nuclei.tile
    lines.append(
        f"- Nuclei: the stardist example image, vertical bands; training on "
        f"{list(config.nuclei.train_images)} of {sizes['nuclei']['train']} {t}x{t} tiles of "
        "the training band (tiles with a nucleus), validation and test on the whole bands.")
  lines += ["", "## Test Dice (mean ± sd over seeds; paired differences per seed)", ""]
  verdicts = []
  for name in TASKS:
    table, found = _comparison_table(fine, name, False)
    if len(table) > 2:
      lines += [f"### {name}: fine-tuning", ""] + table + [""]
      lines += ["Per class, mean over seeds:", ""] + _per_class_table(fine, name) + [""]
      verdicts += found
      verdicts += _early_lines(fine, name)
  lines += ["## Linear probe (frozen features, head only)", ""]
  for name in TASKS:
    table, found = _comparison_table(probes, name, True)
    if len(table) > 2:
      lines += [f"### {name}: probe", ""] + table + [""]
      verdicts += found
  lines += ["## Learning curves (validation Dice, mean over seeds)", ""]
  for name in TASKS:
    table = _curve_table(fine, name)
    if table:
      lines += [f"### {name}", ""] + table + [""]
  seconds = [r["seconds"] for r in records]
  lines += [
      "## Wall time", "",
      f"- Pre-training: {pretrain['seconds']:.0f} s.",
      f"- {len(records)} fine-tuning / probe runs: {sum(seconds):.0f} s "
      f"({np.mean(seconds):.1f} s each on average, evaluation included).",
      f"- This invocation of the job: {wall:.0f} s (a rerun skips finished work).", "",
      "## Where there is and is not a difference", "",
      "Differences are pre-trained minus scratch (or random network) test Dice, paired by "
      "seed; one whose 95% t interval (seeds - 1 degrees of freedom) holds zero is reported "
      "as not resolved. With 3 seeds the interval reaches 4.3 SE each side, and effects "
      "below ~0.01 Dice are out of reach (paired SEs of 0.002-0.007 Dice were measured on this "
      "demo: the README's quickstart table).", "",
  ] + verdicts
  return "\n".join(lines) + "\n"


def report_plot(records, path):
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt

  fig, axes = plt.subplots(2, len(TASKS), figsize=(6 * len(TASKS), 9), squeeze=False)
  colors = {"scratch": "tab:blue", "pretrained": "tab:orange"}
  for col, name in enumerate(TASKS):
    ax = axes[0, col]
    for probe in (False, True):
      rows = comparisons(records, name, probe)
      for init in INITS:
        points = [(n, *compare.spread(v[init])[:2]) for n, v, _ in rows if v[init]]
        if not points:
          continue
        n, mean, sd = np.array(points).T
        label = ("probe, " if probe else "") + ("random" if probe and init == "scratch"
                                                else init)
        ax.errorbar(n, mean, yerr=np.nan_to_num(sd), color=colors[init], capsize=3,
                    marker="s" if probe else "o", linestyle="--" if probe else "-",
                    label=label)
    ax.set_xscale("log")
    ax.set_xlabel(f"labelled training {UNITS[name]}")
    ax.set_ylabel("test Dice (mean ± sd)")
    ax.set_title(f"{name}: test Dice")
    ax.legend(fontsize=8)
    ax = axes[1, col]
    curves = mean_curves(records, name)
    amounts = sorted({n for _, n in curves})
    shades = dict(zip(amounts, np.linspace(0.4, 1.0, len(amounts))))
    for (init, n), (steps, dice) in sorted(curves.items()):
      ax.plot(steps, dice, color=colors[init], alpha=shades[n],
              linestyle="-" if init == "pretrained" else ":", label=f"{init}, n={n}")
    ax.set_xlabel("fine-tuning step")
    ax.set_ylabel("validation Dice (mean over seeds)")
    ax.set_title(f"{name}: learning curves")
    ax.legend(fontsize=7)
  fig.tight_layout()
  png = io.BytesIO()
  fig.savefig(png, format="png", dpi=100)
  plt.close(fig)
  workdir_lib.write_file(path, png.getvalue())


def write_report(config, workdir, records, pretrain, wall):
  """W/report.md and W/report.png."""
  workdir_lib.write_file(os.path.join(workdir, "report.md"),
                         report_markdown(config, records, pretrain, wall))
  report_plot(records, os.path.join(workdir, "report.png"))
  log(f"wrote {os.path.join(workdir, 'report.md')} and report.png")
