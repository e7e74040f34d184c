"""The suite job end to end through run.py (subprocesses), at its `tiny` size: every registry
task on a fixture in its official layout (tests/data/downloads/official.py),
from scratch and from tiny 2D and 3D pre-trainings; missing data, a custom task, a rerun."""

import csv
import json
import math
import os
import sys

import pytest

from conftest import REPO_ROOT, run_job

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
import official  # noqa: E402  (every task's official-download fixture)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BATCH = {2: 2, 3: 1}  # of the tiny pre-trainings
CASES = 6  # of each official list a task's fixture keeps (tiny runs: every task scored quickly)


def run(workdir, *overrides, check=True, config="experiments/suite.py:tiny"):
  return run_job(config, workdir, *overrides, check=check)


def pretraining(root, ndim):
  """The workdir of a 2-step unet_tiny pre-training in `ndim` D (32 voxels a side)."""
  workdir = root / f"p{ndim}d"
  run(workdir, "--config.synthesis.size=32", "--config.synthesis.num_labels=4",
      f"--config.batch_size={BATCH[ndim]}", "--config.total_steps=2",
      "--config.checkpoint_every=2", config=f"experiments/pretrain{ndim}d.py:runlocal,"
      "model=unet_tiny")
  return workdir


@pytest.fixture(scope="module")
def init2d(tmp_path_factory):
  return pretraining(tmp_path_factory.mktemp("pretrain"), 2)


@pytest.fixture(scope="module")
def init3d(tmp_path_factory):
  return pretraining(tmp_path_factory.mktemp("pretrain"), 3)


def write_data(root, names):
  """root/NAME: each task's official fixture, prepared."""
  for name in names:
    official.write_prepared(name, str(root / name), cases=CASES)


def read_csv(workdir):
  with open(workdir / "summary.csv") as f:
    return {row["task"]: row for row in csv.DictReader(f)}


def score(workdir, name, init, seed=0):
  """The run's selection metric on its test split, NaN where the metric is undefined."""
  path = workdir / name / init / f"seed{seed}" / "results.json"
  results = json.loads(path.read_text())
  value = results["test"][results["selection_metric"]]
  return math.nan if value is None else value


def number(cell):
  return math.nan if cell == "" else float(cell)


@pytest.mark.slow(420)
@pytest.mark.parametrize("half", [0, 1])
def test_every_registry_task(tmp_path, request, half):
  """All 56 registry tasks (every other one in each half: two tests the two workers share)
  from scratch, one seed: each run's results hold its task's metrics and extra metrics, its
  config the task's optimiser and output. In the second half the 3D tasks run from the 3D
  pre-training too (the 2D init is the next test's): 1- and 3-channel data, segmentation and
  classification, a first layer that transfers and one that does not (the 3D tasks of both
  halves would add about a minute and no path). A summary row per task whose numbers are
  those of the runs' results.json."""
  from rasd_jax.data import tasks
  names = sorted(tasks.TASKS)[half::2]
  init = str(request.getfixturevalue("init3d")) if half else "scratch"
  write_data(tmp_path / "data", names)
  s = tmp_path / "suite"
  out = run(s, f"--config.data_root={tmp_path / 'data'}", f"--config.init={init}",
            config="experiments/suite.py:tiny,tasks=" + "+".join(names))
  if half:
    only = out.stdout.split("scratch runs only (")[1].splitlines()[0].split("): ")[1]
    assert only.split(", ") == sorted(n for n in names if tasks.get(n).ndim == 2)
  else:
    assert "scratch runs only" not in out.stdout
  rows = read_csv(s)
  assert set(rows) == set(names)
  for name in names:
    task = tasks.get(name)
    row = rows[name]
    assert (row["modality"], row["kind"], row["metric"]) == (
        task.modality_group, task.kind, task.metrics[0]), row
    assert row["status"] == "done" and float(row["wall_seconds"]) > 0, row
    run_dir = s / name / "scratch" / "seed0"
    results = json.loads((run_dir / "results.json").read_text())
    assert (results["task"], results["kind"], results["selection_metric"]) == (
        name, task.kind, task.metrics[0])
    for key in task.metrics + task.extra_metrics:  # GlaS object F1, IDRiD QWK, ...
      assert key in results["test"] and key in results["val"], (name, key)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["optim"]["algorithm"] == task.optimizer.algorithm, name
    assert config["output"] == task.inference.output, name
    assert f"task {name} ({task.kind}, {task.ndim}D" in out.stdout
    transfers = half and task.ndim == 3
    scratch = score(s, name, "scratch")
    pre = score(s, name, "pretrained") if transfers else math.nan
    assert (s / name / "pretrained").is_dir() == transfers
    if transfers:
      config = json.loads((s / name / "pretrained" / "seed0" / "config.json").read_text())
      assert config["init"] == init and config["data"]["dir"] == str(
          tmp_path / "data" / name)
    assert row["seeds"] == str(int(math.isfinite(scratch) and math.isfinite(pre)))
    for cell, value in (("scratch_mean", scratch), ("pretrained_mean", pre),
                        ("difference_mean", pre - scratch)):
      assert math.isclose(number(row[cell]), value, rel_tol=1e-5) or (
          math.isnan(value) and row[cell] == ""), (name, cell, row[cell], value)
    # One seed: no spread and no interval.
    assert row["scratch_sd"] == row["ci_low"] == row["ci_high"] == ""
  summary = (s / "summary.md").read_text()
  assert all(f"\n| {name} | " in summary for name in names)
  # A verdict per pair: none from scratch alone.
  assert ("too few seeds to judge" in summary) == bool(half) and "## Not run" not in summary
  assert (s / "summary.png").read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.slow(200)
def test_missing_data_custom_task_and_rerun(tmp_path, init2d):
  """drive with data, btcv without (not prepared: the reason listed), a custom class-folders
  task (a registry fixture's class folders), 2 seeds; a rerun redoes nothing and rebuilds the
  same summary; a run whose results.json is lost is redone alone."""
  from rasd_jax.evaluation import compare
  write_data(tmp_path / "data", ["drive", "bfmr"])
  s = tmp_path / "suite"
  args = [f"--config.data_root={tmp_path / 'data'}", f"--config.init={init2d}",
          "--config.seeds=2", "--config.tasks.drive.total_steps=2"]
  mine = tmp_path / "data/bfmr.download/Bone_Fracture_Binary_Classification" / \
      "Bone_Fracture_Binary_Classification/train"
  config = f"experiments/suite.py:tiny,tasks=drive+btcv+mine={mine}"
  out = run(s, *args, config=config)
  assert "btcv: skipped" in out.stdout
  rows = read_csv(s)
  assert rows["btcv"]["status"] == "no data" and rows["btcv"]["seeds"] == "0"
  summary = (s / "summary.md").read_text()
  missing = summary.split("## Not run")[1]
  assert "- btcv: " in missing and "is not a prepared data folder" in missing
  assert "experiments/prepare.py:task=NAME" in missing
  assert "| btcv |" not in summary.split("## Not run")[0]
  results = json.loads((s / "drive" / "pretrained" / "seed1" / "results.json").read_text())
  assert results["total_steps"] == 2 and results["seed"] == 1
  assert rows["mine"]["kind"] == "classification" and rows["mine"]["modality"] == "unknown"
  for name in ("drive", "mine"):
    row, metric = rows[name], rows[name]["metric"]
    values = {init: [score(s, name, init, seed) for seed in (0, 1)]
              for init in ("scratch", "pretrained")}
    paired = compare.paired(values["scratch"], values["pretrained"], metric)
    assert row["status"] == "done" and row["seeds"] == str(paired.n)
    for cell, value in (("difference_mean", paired.mean), ("ci_low", paired.low),
                        ("ci_high", paired.high), ("pretrained_sd", paired.treated[1])):
      assert (row[cell] == "" and math.isnan(value)) or math.isclose(
          float(row[cell]), value, rel_tol=1e-5, abs_tol=1e-9), (name, cell)
    assert f"- {name} ({metric}): {paired.verdict}" in summary

  files = sorted(s.glob("*/*/seed*/results.json"))
  assert len(files) == 8
  times = {f: f.stat().st_mtime_ns for f in files}
  before = {n: (s / n).read_bytes() for n in ("summary.csv", "summary.md")}
  for n in ("summary.csv", "summary.md", "summary.png"):
    (s / n).unlink()
  out = run(s, *args, config=config)
  assert "seed" not in out.stdout.replace("seeds", "")  # no run started
  assert {f: f.stat().st_mtime_ns for f in files} == times
  assert {n: (s / n).read_bytes() for n in before} == before
  lost = s / "mine" / "scratch" / "seed1" / "results.json"
  lost.unlink()
  out = run(s, *args, config=config)
  assert "mine: scratch, seed 1" in out.stdout and out.stdout.count(", seed ") == 1
  assert all(f.stat().st_mtime_ns == times[f] for f in files if f != lost) and lost.exists()


def test_config_errors(tmp_path):
  from experiments import suite
  config = suite.get_config("tasks=btcv+drive+mine=/data/ds/dataset.json,runlocal")
  assert sorted(config.tasks) == ["btcv", "drive", "mine"] and config.seeds == 3
  assert config.tasks.mine.task == "custom" and config.tasks.mine.data.json.endswith(".json")
  assert config.tasks.btcv.total_steps == 200  # the finetune config's runlocal
  with pytest.raises(ValueError, match="unknown task 'btcx': did you mean btcv"):
    suite.get_config("tasks=btcx")
  with pytest.raises(ValueError, match="mine=a.txt: give a dataset.json, a .csv or a folder"):
    suite.get_config("tasks=mine=a.txt")
  with pytest.raises(ValueError, match="'drive' is a registry task"):
    suite.get_config("tasks=drive=/data/x.csv")
  assert len(suite.get_config("tiny").tasks) == 56
  out = run(tmp_path / "w", config="experiments/suite.py:tiny,tasks=drive", check=False)
  assert out.returncode == 1 and "error: registry tasks read their data from data_root" \
      in out.stderr
