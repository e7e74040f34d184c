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
- files: where the task's lists and files lie, relative to the data dir, read by
  `layouts.load_splits` (its docstring lists the keys of each layout). None: a custom task, whose
  caller lists the cases.
"""

import dataclasses
import json
import re

from rasd_jax.data.augmentation import Augmentation

# Layout name -> the `rasd_jax.data.readers` function that lists its cases.
LAYOUTS = {
    "decathlon_json": "load_decathlon",      # MSD dataset.json: training/validation {image, label}
    "image_mask_json": "load_decathlon",     # 2D image/mask pairs listed in the same JSON form
    "image_mask_folders": "pairs_from_folders",  # 2D images and masks matched by name
    "csv": "load_classification_csv",        # CSV of image path and label column(s)
    "npy_csv": "load_classification_csv",    # CSV of labels naming .npy volumes
    "class_folders": "load_class_folders",   # one folder per class
}
KINDS = ("segmentation", "classification", "multilabel", "regression")
# Modality -> the paper's six modality groups (mammography counts as X-ray, OCTA as fundus).
MODALITY_GROUPS = {
    "CT": "CT", "MRI": "MRI", "X-ray": "X-ray", "mammography": "X-ray", "fundus": "fundus",
    "OCTA": "fundus", "pathology": "pathology", "ultrasound": "ultrasound",
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
ALGORITHMS = ("adamw", "adamw_amsgrad", "adam")
LR_SCHEDULES = ("cosine", "constant")
OUTPUTS = ("softmax", "sigmoid")
# Keys of `files` about the whole task, never merged into a split's entry.
_TASK_KEYS = ("folds", "cv_folds")
_JSON_KEYS = {"json", "fold_key", "val_tail", "image", "label", "group"}
# Layout -> (keys a split's entry may hold, keys it must hold); JSON layouts list section names.
_SPLIT_KEYS = {
    "image_mask_folders": ({"images", "masks", "pattern", "ids", "group"},
                           {"images", "masks", "pattern"}),
    "csv": ({"csv", "image", "label", "label_names", "fieldnames", "delimiter", "where", "group"},
            {"csv", "image", "label"}),
    "class_folders": ({"label_names", "group"}, set()),
}
_SPLIT_KEYS["npy_csv"] = _SPLIT_KEYS["csv"]


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
  layout: str
  layout_notes: str
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
  files: dict = None
  label_map: dict = None
  regions: dict = None
  inferred: bool = False
  notes: str = ""

  def __post_init__(self):
    choices = {"modality": MODALITY_GROUPS, "kind": METRICS, "layout": LAYOUTS, "ndim": (2, 3)}
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
    if self.files is not None:
      self._check_files()

  def _check_protocol(self):
    for field, kind in (("optimizer", Optimizer), ("schedule", Schedule),
                        ("sampling", Sampling), ("inference", Inference)):
      if not isinstance(getattr(self, field), kind):
        self._fail(f"{field} must be a tasks.{kind.__name__}, got {getattr(self, field)!r}")
    optimizer, schedule = self.optimizer, self.schedule
    sampling, inference = self.sampling, self.inference
    problems = [
        (optimizer.algorithm not in ALGORITHMS, f"algorithm is one of {ALGORITHMS}"),
        (optimizer.schedule not in LR_SCHEDULES, f"schedule is one of {LR_SCHEDULES}"),
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
        (inference.output not in OUTPUTS, f"output is one of {OUTPUTS}"),
        (inference.output == "sigmoid" and (self.kind, self.num_classes) != ("segmentation", 2),
         "output 'sigmoid' is for 2-class segmentation")]
    broken = [rule for failed, rule in problems if failed]
    if broken:
      self._fail(f"{'; '.join(broken)}: got {optimizer}, {schedule}, {sampling}, {inference}")

  def _check_files(self):
    files = self.files
    if not isinstance(files, dict) or not isinstance(files.get("train"), (str, dict, list)):
      self._fail(f"files must be a dict with a 'train' list, got {files!r}")
    if self.layout in _SPLIT_KEYS:
      allowed, required = _SPLIT_KEYS[self.layout]
      for split in (s for s in SPLITS if s in files):
        value = files[split]
        if self.layout == "class_folders":
          if not isinstance(value, str):
            self._fail(f"files[{split!r}] must be a folder, got {value!r}")
          continue
        if not all(isinstance(one, dict) for one in (value if isinstance(value, list)
                                                     else [value])):
          self._fail(f"files[{split!r}] must be a dict or a list of dicts, got {value!r}")
        for spec in split_specs(files, split):
          unknown, missing = set(spec) - allowed, required - set(spec)
          if unknown or missing:
            self._fail(f"files[{split!r}]: unknown keys {sorted(unknown)}, missing keys "
                       f"{sorted(missing)}; a {self.layout} split has keys {sorted(allowed)}")
          self._check_spec(spec)
      shared = set(files) - set(SPLITS) - set(_TASK_KEYS)
      if shared - allowed:
        self._fail(f"files: unknown keys {sorted(shared - allowed)}; known are {sorted(allowed)}")
      if self.layout == "class_folders":
        self._check_spec(files)
    else:
      unknown = set(files) - set(SPLITS) - set(_TASK_KEYS) - _JSON_KEYS
      if unknown or "json" not in files:
        self._fail(f"files: unknown keys {sorted(unknown)} or no 'json'; a {self.layout} task "
                   f"has keys {sorted(set(SPLITS) | _JSON_KEYS | set(_TASK_KEYS))}")
      if any(not isinstance(files[s], str) for s in SPLITS if s in files):
        self._fail(f"files: a {self.layout} split is a section name of {files['json']}")
      if "fold_key" in files and "val" in files:
        self._fail("files: with 'fold_key' the val list is the fold, not a section")
      self._check_spec(files)
    has_folds = "fold_key" in files or "{fold}" in json.dumps(files)
    if has_folds != ("folds" in files):
      self._fail("files: 'folds' goes with a 'fold_key' or a {fold} file name, and only there")
    if "cv_folds" in files:
      cv_folds = files["cv_folds"]
      if not isinstance(cv_folds, int) or cv_folds < 2 or "folds" in files or "test" in files:
        self._fail(f"files: 'cv_folds' {cv_folds!r} must be an int >= 2, for data without "
                   "official folds or test list (the test split is one of its folds)")

  def _check_spec(self, spec):
    names = spec.get("label_names")
    if isinstance(names, dict) and not set(names.values()) <= set(self.classes):
      self._fail(f"files label_names {names} map to names that are not classes {self.classes}")
    if names is not None and not isinstance(names, dict) and names != "classes":
      self._fail(f"files label_names must be 'classes' or a dict, got {names!r}")
    if self.kind == "multilabel" and list(spec.get("label", ())) != list(self.classes):
      self._fail(f"files: a multilabel task's label columns are its classes {self.classes}")
    if "group" in spec:
      pattern = spec["group"]
      try:
        groups = re.compile(pattern).groups if isinstance(pattern, str) else None
      except re.error as e:
        self._fail(f"files group {pattern!r} is not a regular expression: {e}")
      if groups != 1:
        self._fail(f"files group {pattern!r} must be a regular expression with one (group): "
                   "the patient, searched in each case's image path")

  def _fail(self, message):
    raise ValueError(f"task {self.name!r}: {message}")

  @property
  def modality_group(self):
    return MODALITY_GROUPS[self.modality]

  @property
  def num_classes(self):
    return len(self.classes)

  @property
  def cv_folds(self):
    """k of the k-fold cross-validation the protocol prescribes (splits.make_splits holds the
    test fold out); None where the data ships its folds or test list, or the row says neither."""
    return (self.files or {}).get("cv_folds")

  @property
  def folds(self):
    """How many values `fold` takes: the official folds (load_splits picks the validation
    fold), else the cross-validation folds (make_splits picks the test fold), else 1."""
    files = self.files or {}
    return files.get("folds") or files.get("cv_folds") or 1


def split_specs(files, split):
  """The list of one split's entries in `files`, each with the shared keys merged in."""
  shared = {k: v for k, v in files.items() if k not in SPLITS + _TASK_KEYS}
  spec = files[split]
  return [{**shared, **one} for one in (spec if isinstance(spec, list) else [spec])]
