"""The TFDS path (rasd_jax.data.tfds_source): registry fixtures (tests/data/downloads/official.py,
each task's official layout) and the offline demo data (rasd_jax.data.demo) built as ArrayRecord
with no TensorFlow, read back equal to what the finetune job prepares from the files, and the
finetune job reading them gives the same losses and results."""

import json
import os
import subprocess
import sys

from etils import epath
import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import REPO_ROOT, run_job
from experiments import finetune as finetune_experiment
from rasd_jax.data import demo, tasks, tfds_source
from rasd_jax.jobs import finetune as finetune_job

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
import official  # noqa: E402  (every task's official-download fixture)

TINY = ["--config.model=unet_tiny", "--config.total_steps=6", "--config.eval_every_steps=3",
        "--config.checkpoint_every=6", "--config.batch_size=2", "--config.log_every=1",
        "--config.roi=(16,)"]


def build(manual_dir, data_dir, **recipe):
  """The dataset of `recipe` (RasdConfig's fields) built through the Python API."""
  builder = tfds_source.RasdTasks(config=tfds_source.RasdConfig(**recipe), data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def job_config(task, **data):
  """The finetune job's runlocal config of `task` with data.* = `data`."""
  config = finetune_experiment.get_config(f"task={task},runlocal")
  config.unlock()
  config.data.update(data)
  return config


def assert_same_samples(expected, got):
  """The same samples: keys, value types, array dtypes, shapes and values; a sample read from
  the files also says where they are ("geometry"), which a built dataset does not hold."""
  assert len(got) == len(expected)
  for a, b in zip(expected, got):
    a = {k: v for k, v in a.items() if k != "geometry"}
    assert a.keys() == b.keys(), (a.keys(), b.keys())
    for key in a:
      assert type(a[key]) is type(b[key]), (key, type(a[key]), type(b[key]))
      if isinstance(a[key], np.ndarray):
        assert (a[key].dtype, a[key].shape) == (b[key].dtype, b[key].shape), key
        assert b[key].flags.writeable and b[key].flags.c_contiguous, key
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
      else:
        assert a[key] == b[key], (key, a[key], b[key])


def assert_job_reads_the_same(config, tfds_dir):
  """The job's task and prepared cases of every split: from the files, then from the built
  dataset (data.source=tfds); returns the tfds ones."""
  task, split = finetune_job._cases(config)
  files = finetune_job._data(config, task, split)
  config.data.update(source="tfds", tfds_dir=str(tfds_dir))
  finetune_job._check(config)
  tfds_task, records = finetune_job._cases(config)
  built = finetune_job._data(config, tfds_task, records)
  assert tfds_task == task
  for name in tasks.SPLITS:
    assert (files[name] is None) == (built[name] is None), name
    assert_same_samples(files[name] or [], built[name] or [])
  return built


# Segmentation with instance ids, 3D CT at another roi, BraTS's official folds (4-channel
# MR-T) read by runs of two seeds and training fractions, multi-label, regression with
# evaluation "paper" (no test split), classification, and a cross-validated task's third fold.
RECIPES = [("glas", {}), ("msd09", {"roi": (16,)}), ("brats21", {"fold": 1}),
           ("brats21", {"fold": 1, "seed": 1, "train_fraction": 0.5}), ("wsss4luad", {}),
           ("rsna_bone_age", {"evaluation": "paper"}), ("idrid_grading", {}),
           ("janowczyk_epithelium", {"fold": 2})]
RUN_ONLY = ("seed", "train_fraction")  # a run's choice, not the dataset's


@pytest.mark.parametrize("name,recipe", RECIPES, ids=[
    name + "".join(f"-{k}{v}" for k, v in recipe.items() if k in RUN_ONLY)
    for name, recipe in RECIPES])
def test_registry_task_reads_back_as_the_job_prepares_it(tmp_path, name, recipe):
  task = tasks.get(name)
  official.write_prepared(task.name, str(tmp_path / "data"), cases=6)
  builder = build(tmp_path / "data", tmp_path / "tfds", task=name,
                  **{k: v for k, v in recipe.items() if k not in RUN_ONLY})
  assert builder.info.file_format.value == "array_record"
  assert sorted(p.name for p in builder.data_path.glob("*.array_record*"))
  assert f"prepare.py:task={name} " in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
  config = job_config(name, dir=str(tmp_path / "data"), fold=recipe.get("fold", 0))
  config.roi = recipe.get("roi", task.roi)
  config.seed, config.train_fraction = recipe.get("seed", 0), recipe.get("train_fraction", 1.0)
  config.evaluation = recipe.get("evaluation", "heldout")
  built = assert_job_reads_the_same(config, tmp_path / "tfds")
  assert (built["test"] is None) == (config.evaluation == "paper")
  # The reader on its own, and through the dataset's own folder.
  folder = epath.Path(builder.data_path)
  for data_dir in (tmp_path / "tfds", folder):
    for split in ("train", "val"):
      path = tfds_source.find(data_dir, tfds_source.recipe(
          name, **{k: v for k, v in recipe.items() if k not in RUN_ONLY}))
      chosen = tfds_source.records(path, recipe.get("train_fraction", 1.0),
                                   recipe.get("seed", 0))[split]
      assert_same_samples(built[split], tfds_source.read(chosen))


def test_registry_configs_and_their_names():
  configs = {c.name: c for c in tfds_source.RasdTasks.BUILDER_CONFIGS}
  assert len(configs) == sum(t.folds for t in tasks.TASKS.values())
  assert {"btcv-fold0", "brats21-fold4", "cc_ccii-fold2"} <= set(configs)
  assert configs["btcv-fold0"].recipe == {
      "task": "btcv", "fold": 0, "evaluation": "heldout", "roi": [96, 96, 96]}
  named = tfds_source.RasdConfig(task="btcv", roi=(32,), evaluation="paper")
  assert named.name == "btcv-fold0-roi32x32x32-paper"
  with pytest.raises(ValueError, match="task custom has no folds"):
    tfds_source.RasdConfig(task="custom", fold=1)


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
  """(dataset.json, tfds data dir) of the demo nuclei task written as a Decathlon folder and
  built by the command line (this module's `tfds build`, in a subprocess)."""
  root = tmp_path_factory.mktemp("nuclei")
  path = demo.write_decathlon("nuclei", str(root / "data"))
  out = subprocess.run(
      [sys.executable, "-m", "rasd_jax.data.tfds_source", "rasd_tasks",
       '--config={"task": "custom"}', f"--manual_dir={root / 'data'}",
       f"--data_dir={root / 'tfds'}"], cwd=REPO_ROOT, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  return path, root / "tfds"


def test_demo_task_built_by_the_command_line_reads_back(nuclei):
  path, tfds_dir = nuclei
  built = assert_job_reads_the_same(job_config("custom", json=path), tfds_dir)
  assert [len(built[k]) for k in tasks.SPLITS] == [32, 1, 1]
  # Per process (engine.share): process i of 3 reads records i, i + 3, ... only; together
  # all the cases, once.
  train = tfds_source.records(tfds_source.find(tfds_dir, tfds_source.recipe("custom")))["train"]
  parts = [tfds_source.read(train[i::3]) for i in range(3)]
  assert [len(p) for p in parts] == [11, 11, 10]
  assert [s["id"] for s in parts[1]] == [s["id"] for s in built["train"][1::3]]
  assert_same_samples(built["train"][2::3], parts[2])


@pytest.mark.slow(50)
def test_finetune_from_tfds_equals_files(tmp_path, nuclei):
  """The same job through run.py, reading the files and reading the built dataset: the same
  losses at every step, validation curve and results."""
  path, tfds_dir = nuclei
  config = "experiments/finetune.py:task=custom,runlocal"
  run_job(config, tmp_path / "files", f"--config.data.json={path}", *TINY)
  out = run_job(config, tmp_path / "tfds", "--config.data.source=tfds",
                f"--config.data.tfds_dir={tfds_dir}", *TINY)
  assert "cases {'train': 32, 'val': 1, 'test': 1}" in out.stdout

  def read(name, w):
    return [json.loads(line) for line in open(tmp_path / w / name)]

  losses = [{k: r[k] for k in ("step", "loss", "dice_loss", "ce", "grad_norm")}
            for r in read("metrics.jsonl", "files")]
  assert losses == [{k: r[k] for k in losses[0]} for r in read("metrics.jsonl", "tfds")]
  assert read("val_metrics.jsonl", "files") == read("val_metrics.jsonl", "tfds")
  files, built = (json.load(open(tmp_path / w / "results.json")) for w in ("files", "tfds"))
  assert files == built and files["test"]["dice"] > 0


@pytest.mark.slow(55)
def test_suite_reads_the_built_datasets(tmp_path):
  """The suite with tfds_dir: a task built for the suite's recipe (tiny: roi 16) gives the
  results of the same suite reading the files; a task with no dataset there is skipped,
  naming what it asked for."""
  task = tasks.get("drive")
  official.write_prepared(task.name, str(tmp_path / "data" / "drive"))
  build(tmp_path / "data" / "drive", tmp_path / "tfds", task="drive", roi=(16,))
  config = "experiments/suite.py:tiny,tasks=drive+stare"
  run_job(config, tmp_path / "files", f"--config.data_root={tmp_path / 'data'}")
  out = run_job(config, tmp_path / "tfds_suite", f"--config.tfds_dir={tmp_path / 'tfds'}")
  assert "stare: skipped" in out.stdout and "built for task stare, fold 0" in out.stdout
  results = [json.loads((tmp_path / w / "drive/scratch/seed0/results.json").read_text())
             for w in ("files", "tfds_suite")]
  assert results[0]["test"] == results[1]["test"] and results[0]["val"] == results[1]["val"]
  summary = (tmp_path / "tfds_suite" / "summary.md").read_text()
  assert f"prepared datasets (tfds) in {tmp_path / 'tfds'}" in summary


def test_a_dataset_for_another_recipe_is_a_one_line_error(tmp_path):
  """Another task, another fold, another split recipe, a missing or empty dir, no tfds_dir:
  one line naming what the run asks and what the dir holds, before the workdir exists."""
  for name in ("drive", "janowczyk_epithelium"):
    task = tasks.get(name)
    official.write_prepared(task.name, str(tmp_path / name))
    build(tmp_path / name, tmp_path / "tfds", task=name)
  os.makedirs(tmp_path / "empty")
  drive = "drive-fold0: task drive, fold 0, evaluation heldout, roi (128, 128)"
  cases = [
      ("stare", {}, {}, ["built for task stare, fold 0", drive]),
      ("janowczyk_epithelium", {"fold": 1}, {}, ["task janowczyk_epithelium, fold 1", drive]),
      ("drive", {}, {"evaluation": "paper"}, ["task drive, fold 0, evaluation paper", drive]),
      ("drive", {}, {"roi": (64,)}, ["task drive, fold 0, evaluation heldout, roi (64, 64)",
                                     drive]),
      ("drive", {"tfds_dir": str(tmp_path / "nowhere")}, {}, ["nowhere does not exist"]),
      ("drive", {"tfds_dir": str(tmp_path / "empty")}, {}, ["it holds nothing"]),
      ("drive", {"tfds_dir": ""}, {}, ["data.source=tfds needs data.tfds_dir"]),
  ]
  for i, (name, data, fields, messages) in enumerate(cases):
    config = job_config(name, source="tfds", tfds_dir=str(tmp_path / "tfds"))
    config.data.update(data)
    config.update(dict(dict(roi=tasks.get(name).roi), **fields))
    w = tmp_path / f"w{i}"
    with pytest.raises(ValueError) as error:
      finetune_job.run(config, str(w))
    message = str(error.value)
    assert "\n" not in message and all(m in message for m in messages), message
    assert not w.exists()
