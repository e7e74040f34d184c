"""The task registry: 56 well-formed tasks whose values match the reference's
protocol (README, "finetune")."""

import collections
import dataclasses

import numpy as np
import pytest

from rasd_jax.data import tasks
from rasd_jax.evaluation import metrics


def _metric_keys():
  """The result keys of each kind's metric function, on a tiny input."""
  labels = np.array([[0, 1], [1, 0]])
  scores = np.array([[0.8, 0.2], [0.3, 0.7]])
  return {
      "segmentation": set(metrics.segmentation_metrics(labels, labels, 2)),
      "classification": set(metrics.classification_metrics(labels[0], scores)),
      "multilabel": set(metrics.multilabel_metrics(labels, scores)),
      "regression": set(metrics.regression_metrics([1.0, 2.0], [1.5, 2.0])),
  }


METRIC_KEYS = _metric_keys()
ALL = list(tasks.TASKS.values())


def test_metric_names_exist():
  assert set(tasks.METRICS) == set(tasks.KINDS) == set(METRIC_KEYS)
  for kind, names in tasks.METRICS.items():
    assert set(names) <= METRIC_KEYS[kind], kind


def test_task_checks_its_fields():
  fields = {field.name: getattr(tasks.get("drive"), field.name)
            for field in dataclasses.fields(tasks.Task)}
  tasks.Task(**fields)
  for change, message in [({"roi": (128, 128, 128)}, "roi"), ({"kind": "detection"}, "kind"),
                          ({"classes": ("vessel", "background")}, "background"),
                          ({"metrics": ("dice", "aupr")}, "extra_metrics"),
                          ({"modality": "PET"}, "modality"),
                          ({"official_folds": 0}, "official_folds 0 must be an int >= 1"),
                          ({"official_folds": 2.0}, "official_folds 2.0"),
                          ({"cv_folds": 1}, "cv_folds 1 must be an int >= 2")]:
    with pytest.raises(ValueError, match=message):
      tasks.Task(**{**fields, **change})


def test_task_checks_its_protocol():
  """Each typed protocol part is checked, naming the task and the rule broken."""
  drive = {field.name: getattr(tasks.get("drive"), field.name)
           for field in dataclasses.fields(tasks.Task)}
  btcv = {field.name: getattr(tasks.get("btcv"), field.name)
          for field in dataclasses.fields(tasks.Task)}
  for fields, change, message in [
      (drive, {"optimizer": tasks.Optimizer("sgd")}, "algorithm is one of"),
      (drive, {"optimizer": tasks.Optimizer(schedule="step")}, "schedule is one of"),
      (drive, {"optimizer": tasks.Optimizer(lr=0.0)}, "lr > 0"),
      (drive, {"optimizer": {"lr": 1e-4}}, "must be a tasks.Optimizer"),
      (drive, {"schedule": tasks.Schedule(10, warmup_epochs=10)}, "warmup_epochs < epochs"),
      (drive, {"schedule": tasks.Schedule(10, eval_every_epochs=11)}, "eval_every_epochs <="),
      (drive, {"sampling": tasks.Sampling(patches_per_case=0)}, "patches_per_case >= 1"),
      (drive, {"sampling": tasks.Sampling(pos=0, neg=0)}, "not both 0"),
      (drive, {"sampling": tasks.Sampling(balanced=True)}, "balanced sampling is for"),
      (drive, {"inference": tasks.Inference(overlap=1.0)}, "overlap < 1"),
      (drive, {"inference": tasks.Inference(output="tanh")}, "output is one of"),
      (btcv, {"inference": tasks.Inference(output="sigmoid")}, "'sigmoid' is for 2-class"),
      (btcv, {"cv_folds": 5.0}, "must be an int >= 2")]:
    with pytest.raises(ValueError, match=f"task '{fields['name']}': .*{message}"):
      tasks.Task(**{**fields, **change})
  brats = {field.name: getattr(tasks.get("brats21"), field.name)
           for field in dataclasses.fields(tasks.Task)}
  with pytest.raises(ValueError, match="for data without official folds"):
    tasks.Task(**{**brats, "cv_folds": 5})


def test_counts():
  assert len(tasks.TASKS) == 56
  assert all(name == task.name for name, task in tasks.TASKS.items())
  assert set(tasks.MODALITY_GROUPS.values()) - {"unknown"} == {t.modality_group for t in ALL}
  assert len({t.modality_group for t in ALL}) == 6
  kinds = collections.Counter((t.kind, t.ndim) for t in ALL)
  assert kinds[("segmentation", 3)] == 17
  # 5 fundus tasks with a reference folder + 13 inferred 2D segmentation tasks.
  assert kinds[("segmentation", 2)] == 18
  assert sum(not t.inferred for t in ALL) == 25  # 26 reference folders + 2 MRNet - 3 MRNet


@pytest.mark.parametrize("task", ALL, ids=lambda t: t.name)
def test_task_is_valid(task):
  assert task.name == task.name.lower() and " " not in task.name and task.title
  assert task.modality in tasks.MODALITY_GROUPS
  assert task.ndim in (2, 3) and task.kind in tasks.KINDS
  assert len(task.roi) == task.ndim
  assert all(size is None or (isinstance(size, int) and size > 0) for size in task.roi)
  assert task.in_channels >= 1
  assert task.split
  assert len(set(task.classes)) == len(task.classes)
  if task.kind == "segmentation":
    assert task.classes[0] == "background" and len(task.classes) >= 2
    assert None not in task.roi
    assert task.sampling.patches_per_case >= 1 and task.inference.overlap == 0.75
  else:  # one input per case, no sliding window
    assert task.sampling.patches_per_case == 1 and task.inference == tasks.Inference()
    assert len(task.classes) >= 2 or (task.kind == "regression" and task.classes == ())
  # Metrics the module computes for this kind; the others only as extra_metrics.
  assert task.metrics and set(task.metrics) <= METRIC_KEYS[task.kind]
  assert not set(task.extra_metrics) & set.union(*METRIC_KEYS.values())
  assert task.optimizer.lr > 0 and task.schedule.epochs > 0 and task.sampling.batch >= 1
  # The five reference fundus tasks (one JSON each) have one sigmoid output channel.
  # The reference's fundus loop: one sigmoid channel.
  assert (task.inference.output == "sigmoid") == (
      task.preprocessing.get("template") == "fundus" and not task.inferred)
  assert task.sampling.balanced == (task.name == "luna16")
  assert 1 <= task.folds and (task.cv_folds is None or task.cv_folds == task.folds)
  assert "template" in task.preprocessing
  if task.preprocessing.get("intensity") in ("window", "scale"):
    assert task.preprocessing["a_min"] < task.preprocessing["a_max"]
  if task.label_map:
    assert 0 not in task.label_map
    assert sorted(task.label_map.values()) == list(range(1, task.num_classes))
  for members in (task.regions or {}).values():
    assert set(members) <= set(range(1, task.num_classes))


def test_reference_values():
  btcv = tasks.get("btcv")
  assert btcv.num_classes == 14 and btcv.roi == (96, 96, 96) and not btcv.inferred
  assert (btcv.preprocessing["a_min"], btcv.preprocessing["a_max"]) == (-175, 250)
  assert btcv.preprocessing["spacing"] == (1.5, 1.5, 1.5)
  assert btcv.sampling == tasks.Sampling(batch=1, patches_per_case=4, pos=9, neg=1)
  assert btcv.schedule == tasks.Schedule(300, warmup_epochs=20, eval_every_epochs=10)
  assert btcv.optimizer == tasks.Optimizer("adamw", lr=3e-4, weight_decay=1e-5)
  brats = tasks.get("brats21")
  assert brats.in_channels == 4 and brats.roi == (128, 128, 128)
  assert brats.label_map == {1: 1, 2: 2, 4: 3} and set(brats.regions) == {"TC", "WT", "ET"}
  total = tasks.get("totalsegmentator")
  assert total.num_classes == 105 and total.roi == (64, 64, 64)
  assert total.classes[1] == "spleen" and total.classes[-1] == "urinary_bladder"
  for name in ("whs_mr", "whs_ct"):
    assert tasks.get(name).label_map == {205: 1, 420: 2, 500: 3, 550: 4, 600: 5, 820: 6, 850: 7}
  whs_ct = tasks.get("whs_ct")
  assert whs_ct.roi == (64, 64, 64) and whs_ct.schedule == tasks.Schedule(500, 50, 5)
  assert whs_ct.optimizer == tasks.Optimizer("adamw_amsgrad", lr=3e-4, weight_decay=0.01)
  assert tasks.get("acdc").preprocessing["template"] == "MR-T"
  assert tasks.get("acdc").roi == (192, 192, 32)
  assert tasks.get("parse22").optimizer.weight_decay == 5e-3
  assert tasks.get("totalsegmentator").schedule == tasks.Schedule(200, 5, 200)
  assert tasks.get("verse20").num_classes == 29
  assert tasks.get("amos_mri").num_classes == 16
  mrnet = [t for t in ALL if t.name.startswith("mrnet_")]
  assert sorted(t.name for t in mrnet) == ["mrnet_abnormal", "mrnet_acl", "mrnet_meniscus"]
  assert all(t.metrics == ("auc",) and t.num_classes == 2 for t in mrnet)
  drac = tasks.get("drac")
  assert drac.num_classes == 3 and drac.in_channels == 3 and drac.modality_group == "fundus"
  bone_age = tasks.get("rsna_bone_age")
  assert bone_age.kind == "regression" and bone_age.metrics == ("mae",)
  assert bone_age.inferred and bone_age.modality_group == "X-ray"
  drive = tasks.get("drive")
  assert drive.roi == (128, 128) and drive.optimizer.lr == 2e-4
  assert drive.inference == tasks.Inference(overlap=0.75, output="sigmoid")
  assert drive.preprocessing["green_channel"] and drive.metrics[0] == "dice"
  assert tasks.get("cc_ccii").metrics == ("accuracy",)
  luna = tasks.get("luna16")
  assert luna.metrics == ("auc",) and luna.sampling == tasks.Sampling(batch=8, balanced=True)
  assert luna.optimizer == tasks.Optimizer("adam", 1e-4, 1e-6, schedule="constant")
  assert luna.schedule == tasks.Schedule(101, 0, 10)
  assert tasks.get("drac").optimizer == tasks.Optimizer("adamw_amsgrad", 8e-5, 0.01)
  assert {"idrid_grading", "idrid_lesion_seg", "mmotu_seg", "mmotu_cls"} <= set(tasks.TASKS)
  assert tasks.get("mmotu_cls").num_classes == 8
  # Official folds, and cross-validation where the row says so.
  assert {t.name: t.cv_folds for t in ALL if t.cv_folds} == {
      "shenzhen": 5, "janowczyk_epithelium": 5, "ddti": 5}
  assert {t.name: t.folds for t in ALL if t.folds > 1 and not t.cv_folds} == {
      "brats21": 5, "covid19_20": 5, "cc_ccii": 3}


def test_unknown_name_suggests_the_closest():
  with pytest.raises(ValueError, match="did you mean btcv"):
    tasks.get("btvc")
  with pytest.raises(ValueError, match="known tasks: acdc"):
    tasks.get("zzzzzz")
