"""Every registry task from its official download (the fixtures of official.py) through prepare
and the finetune job's data path: its cases prepared, its splits made, one training batch."""

import json

import numpy as np
import pytest

import official
from experiments import finetune as finetune_experiment
from rasd_jax.data import downloads, pipeline, prepared, splits, tasks
from rasd_jax.jobs import finetune as finetune_job

ALL = list(tasks.TASKS.values())


def test_every_task_has_a_recipe_and_a_fixture():
  assert set(downloads.RECIPES) == set(tasks.TASKS) == set(official.WRITERS)
  assert set(official.COUNTS) == set(tasks.TASKS)
  for recipe in downloads.RECIPES.values():
    assert recipe.page.startswith("http") and recipe.download and recipe.notes, recipe.task
    assert recipe.layouts and all(layout.markers for layout in recipe.layouts), recipe.task


def test_split_lists_name_their_source():
  """Every shipped list records where it was read, and some recipe reads it."""
  for path in sorted(downloads.SPLITLISTS.iterdir()):
    listed = downloads.shipped(path.name)
    assert set(listed["source"]) == {"repository", "commit", "path"}, path.name
    assert listed["source"]["commit"] == "38d0dae237d6d5df8fcdf2ab6a44162c18f96c15"
    assert path.stem in tasks.TASKS, path.name


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_task_prepares_and_feeds_the_job(task, tmp_path):
  summary = official.write_prepared(task.name, str(tmp_path / "data"))
  assert summary["task"] == task.name and summary["cases"] == official.COUNTS[task.name]
  assert json.loads((tmp_path / "data" / "prepare.json").read_text()) == summary
  lists = prepared.load_splits(task, str(tmp_path / "data"))
  for split, entries in lists.items():
    assert (entries is None) == (summary["cases"][split] == 0 and split != "train"), split
  # The job's config and data path: every case prepared, the splits completed by holding
  # training cases out, one training batch of the registry's roi (runlocal: CPU-sized).
  config = finetune_experiment.get_config(f"task={task.name},runlocal")
  config.data.dir = str(tmp_path / "data")
  job_task, split = finetune_job._cases(config)
  data = finetune_job._data(config, job_task, split)
  assert len(data["train"]) >= 1 and len(data["val"]) >= 1 and len(data["test"]) >= 1
  for sample in data["train"] + data["val"] + data["test"]:
    assert sample["image"].dtype == np.float32 and sample["image"].ndim == task.ndim + 1
    assert sample["image"].shape[0] == task.in_channels
  batch = pipeline.make_batch(job_task, data["train"], job_task.roi, 2, 0, 0)
  roi = (finetune_experiment.RUNLOCAL_ROI[task.ndim],) * task.ndim
  assert batch["image"].shape == (2, *roi, task.in_channels)
  if task.kind == "segmentation":
    assert batch["label"].shape == (2, *roi) and batch["label"].max() < task.num_classes
  _check_patients_apart(task, lists)


def _patient(entry):
  return entry.get("group", json.dumps(entry["image"]))


def _check_patients_apart(task, lists):
  """make_splits over seeds and fractions: official lists kept, no patient in two splits, the
  same validation and test cases for every seed, cross-validated tasks tested on their fold."""
  first = None
  for seed, fraction in ((0, 1.0), (1, 1.0), (2, 0.5)):
    out = splits.make_splits(lists, source=task.name, folds=task.cv_folds, seed=seed,
                             train_fraction=fraction)
    for split in ("val", "test"):
      if lists[split] is not None:
        assert out[split] == lists[split]
    patients = {split: {_patient(e) for e in entries} for split, entries in out.items()}
    assert all(patients.values())
    assert not patients["train"] & patients["val"] and not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"] or lists["test"] is not None
    first = first or out
    assert (out["val"], out["test"]) == (first["val"], first["test"])
    if fraction == 1.0:
      assert sorted(map(_patient, out["train"])) == sorted(map(_patient, first["train"]))
    else:
      assert len(out["train"]) == -(-len(first["train"]) // 2)


def test_the_datasets_page_says_what_each_recipe_says():
  """docs/datasets.md: per task the recipe's page, download and notes, and the command."""
  page = (official.REPO_ROOT / "docs" / "datasets.md").read_text()
  for name, recipe in downloads.RECIPES.items():
    section = page.split(f"### `{name}`: ")[1].split("\n### ")[0]
    for text in (recipe.page, recipe.download, recipe.notes,
                 f"prepare.py:task={name} --config.source=DOWNLOAD"):
      assert text in section, (name, text)
