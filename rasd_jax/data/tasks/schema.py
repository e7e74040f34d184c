"""What a downstream task is: the `Task` record, its typed protocol parts, and their checks.

Conventions of the fields:
- roi: the patch (segmentation) or network input (classification) size, in array axis order
  after loading (x, y, z for NIfTI in RAS; as stored for .npy and 2D images). None: the size of
  the volume along that axis is kept (a variable slice count).
- metrics: names of the values `rasd_jax.evaluation.metrics` returns for the task's kind;
  metrics[0] selects the best checkpoint. extra_metrics: standard metrics of the dataset that
  that module does not compute yet (QWK, object F1, AJI, PQ, mIoU, AUPR, ...).
- classes: segmentation starts with "background"; regression has none.
- label_map: label value on disk -> class index, where the files do not hold 0..C-1; it lists
  every value but 0 (background), and any other value on disk is an error.
- regions: evaluation regions as unions of class indices (BraTS TC/WT/ET).
- preprocessing: template ("CT-T", "MR-T", "fundus", "2d-generic", "npy"), intensity
  ("window": clip a_min..a_max and map to 0..1; "scale": map a_min..a_max to 0..1 without
  clipping; "zscore_nonzero": per channel over nonzero voxels; "minmax": per image to 0..1),
  spacing (mm; None keeps the native grid), green_channel, crop, resize, planes, binarize
  (masks: "nonzero" for instance labels, "half" for lossy JPEG masks).
- optimizer, schedule, sampling, inference: the reference protocol's training recipe (the
  dataclasses below say what each value means).
- official_folds: how many folds the dataset's (or the authors') lists define; `fold` picks
  the validation fold. cv_folds: k, where the protocol is k-fold cross-validation on data
  without official folds or test list (splits.make_splits holds fold `fold` out as the test
  split).
Where a task's files lie in its download, and which lists it follows, is its download recipe's
business (rasd_jax.data.downloads).
"""

import dataclasses

from rasd_jax.data.augmentation import Augmentation
from rasd_jax.training.optimizer import ALGORITHMS
from rasd_jax.training.optimizer import SCHEDULES

KINDS = ("segmentation", "classification", "multilabel", "regression")
# Modality -> the paper's six modality groups (mammography counts as X-ray, OCTA as fundus).
MODALITY_GROUPS = {
    "CT": "CT", "MRI": "MRI", "X-ray": "X-ray", "mammography": "X-ray", "fundus": "fundus",
    "OCTA": "fundus", "pathology": "pathology", "ultrasound": "ultrasound",
    "unknown": "unknown",  # custom data that does not declare its modality
}
# Kind -> the metric names `rasd_jax.evaluation.metrics` returns for it.
METRICS = {
    "segmentation": ("dice", "hd95", "nsd"),
    "classification": ("accuracy", "balanced_accuracy", "macro_f1", "auc"),
    "multilabel": ("auc",),
    "regression": ("mae", "rmse"),
}
SEGMENTATION_METRICS = METRICS["segmentation"]
SPLITS = ("train", "val", "test")
SEGMENTATION_OUTPUTS = ("softmax", "sigmoid")  # the other kinds' output is the kind
# How a fine-tuning run is scored (README, "finetune"): a held-out test split, or the best
# validation score as the reference reports.
EVALUATIONS = ("heldout", "paper")


@dataclasses.dataclass(frozen=True)
class Optimizer:
  # "adamw" | "adamw_amsgrad" | "adam" (torch Adam: L2 in the gradient)
  algorithm: str = "adamw"
  lr: float = 1e-4
  weight_decay: float = 1e-5
  # "cosine" (linear warm-up from 0, cosine to 0, per step) | "constant"
  schedule: str = "cosine"


@dataclasses.dataclass(frozen=True)
class Schedule:                 # durations of the reference protocol, in epochs
  epochs: int
  warmup_epochs: int = 0
  eval_every_epochs: int = 1


@dataclasses.dataclass(frozen=True)
class Sampling:
  batch: int = 1                # cases per batch in the reference
  # RandCropByPosNegLabel num_samples; the job's batch is batch * patches_per_case
  patches_per_case: int = 1
  pos: float = 1.0
  neg: float = 1.0
  balanced: bool = False        # class-balanced resampling of the training cases (LUNA16)


@dataclasses.dataclass(frozen=True)
class Inference:
  overlap: float = 0.5          # sliding-window overlap
  output: str = "softmax"       # segmentation: "softmax" | "sigmoid" (one sigmoid channel, binary)


@dataclasses.dataclass(frozen=True)
class Task:
  """One downstream task; the module docstring gives the conventions of each field."""
  name: str
  title: str
  modality: str
  ndim: int
  kind: str
  classes: tuple
  in_channels: int
  split: str
  preprocessing: dict
  roi: tuple
  schedule: Schedule
  metrics: tuple
  optimizer: Optimizer = Optimizer()
  sampling: Sampling = Sampling()
  inference: Inference = Inference()
  augmentation: Augmentation = None  # None: the template's (data.augmentation.TEMPLATES)
  extra_metrics: tuple = ()
  official_folds: int = 1
  cv_folds: int = None
  label_map: dict = None
  regions: dict = None
  inferred: bool = False
  notes: str = ""

  def __post_init__(self):
    choices = {"modality": MODALITY_GROUPS, "kind": METRICS, "ndim": (2, 3)}
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        self._fail(f"{field} {getattr(self, field)!r} is not one of {', '.join(map(str, allowed))}")
    if len(self.roi) != self.ndim:
      self._fail(f"roi {self.roi} does not have ndim = {self.ndim} sizes")
    if self.in_channels < 1:
      self._fail(f"in_channels must be >= 1, got {self.in_channels}")
    if self.kind == "segmentation" and self.classes[:1] != ("background",):
      self._fail(f"segmentation classes must start with 'background', got {self.classes[:3]}")
    if (self.kind == "regression") != (not self.classes):
      self._fail(f"only regression has no classes; kind {self.kind}, classes {self.classes}")
    unknown = set(self.metrics) - set(METRICS[self.kind])
    if not self.metrics or unknown:
      self._fail(f"metrics {self.metrics}: {self.kind} metrics are {METRICS[self.kind]}; list "
                 "others as extra_metrics")
    self._check_protocol()
    if not (isinstance(self.official_folds, int) and self.official_folds >= 1):
      self._fail(f"official_folds {self.official_folds!r} must be an int >= 1")
    if self.cv_folds is not None and (not isinstance(self.cv_folds, int) or self.cv_folds < 2
                                      or self.official_folds > 1):
      self._fail(f"cv_folds {self.cv_folds!r} must be an int >= 2, for data without official "
                 "folds")

  def _check_protocol(self):
    for field, kind in (("optimizer", Optimizer), ("schedule", Schedule),
                        ("sampling", Sampling), ("inference", Inference)):
      if not isinstance(getattr(self, field), kind):
        self._fail(f"{field} must be a tasks.{kind.__name__}, got {getattr(self, field)!r}")
    optimizer, schedule = self.optimizer, self.schedule
    sampling, inference = self.sampling, self.inference
    problems = [
        (optimizer.algorithm not in ALGORITHMS, f"algorithm is one of {ALGORITHMS}"),
        (optimizer.schedule not in SCHEDULES, f"schedule is one of {sorted(SCHEDULES)}"),
        (not optimizer.lr > 0, "lr > 0"), (not optimizer.weight_decay >= 0, "weight_decay >= 0"),
        (not schedule.epochs >= 1, "epochs >= 1"),
        (not 0 <= schedule.warmup_epochs < schedule.epochs, "0 <= warmup_epochs < epochs"),
        (not 1 <= schedule.eval_every_epochs <= schedule.epochs,
         "1 <= eval_every_epochs <= epochs"),
        (not (sampling.batch >= 1 and sampling.patches_per_case >= 1),
         "batch >= 1 and patches_per_case >= 1"),
        (not (sampling.pos >= 0 and sampling.neg >= 0 and sampling.pos + sampling.neg > 0),
         "pos, neg >= 0, not both 0"),
        (sampling.balanced and self.kind != "classification",
         "balanced sampling is for classification"),
        (not 0 <= inference.overlap < 1, "0 <= overlap < 1"),
        (inference.output not in SEGMENTATION_OUTPUTS,
         f"output is one of {SEGMENTATION_OUTPUTS}"),
        (inference.output == "sigmoid" and (self.kind, self.num_classes) != ("segmentation", 2),
         "output 'sigmoid' is for 2-class segmentation")]
    broken = [rule for failed, rule in problems if failed]
    if broken:
      self._fail(f"{'; '.join(broken)}: got {optimizer}, {schedule}, {sampling}, {inference}")

  def _fail(self, message):
    raise ValueError(f"task {self.name!r}: {message}")

  @property
  def modality_group(self):
    return MODALITY_GROUPS[self.modality]

  @property
  def num_classes(self):
    return len(self.classes)

  @property
  def folds(self):
    """How many values `fold` takes: the official folds (prepared.load_splits picks the
    validation fold), else the cross-validation folds (make_splits picks the test fold)."""
    return self.official_folds if self.official_folds > 1 else self.cv_folds or 1
