"""Prepared cases as a TFDS dataset: prepared once by `tfds build`, then read by every run.

The builder `RasdTasks` ("rasd_tasks") holds one BuilderConfig per registry task and fold;
any other recipe, and the user's own Decathlon dataset.json (task "custom"), is a config given
as JSON on the command line. Each example is one case as the finetune job prepares it
(pipeline.prepare, training cases with their crop margin), in the job's train / val / test
splits (splits.make_splits: the task's lists, fold and evaluation), the training cases in
their listed order: each run takes its own subset and order (splits.training_subset of its
seed and train_fraction), so one dataset serves every seed and training fraction. No
TensorFlow: tensorflow-datasets writes ArrayRecord and the cases are read back through
`tfds.data_sources` on grain threads.

  python -m rasd_jax.data.tfds_source rasd_tasks --config=drive-fold0 \
      --manual_dir=/data/drive --data_dir=/data/tfds   # /data/drive: made by the prepare job
  python -m rasd_jax.data.tfds_source rasd_tasks \
      --config='{"task": "custom", "json": "dataset.json"}' --manual_dir=/data/mine \
      --data_dir=/data/tfds

`python -m rasd_jax.data.tfds_source` is `tfds build` with the same arguments (`main`): the
`tfds` command of tensorflow-datasets 4.9.10 needs TensorFlow to start. Where TensorFlow is
installed, `tfds build rasd_tasks --imports=rasd_jax.data.tfds_source ...` does the same.

The recipe (task, fold, roi, evaluation; num_classes for custom data)
names the config and is stored in the dataset's metadata; `find` picks the dataset built for
a run's recipe and names what the folder holds when none was. roi is part of a registry
task's recipe because preprocessing sizes some inputs by it (MR-T crops, image-level resizes).

Arrays are stored flat with the image's shape, so one schema serves 2D and 3D data and any
channel count (custom data is known only when read): image float32, segmentation label
(and `instances` where the task keeps them) int32, spacing float64, all bit-exact.
"""

import collections
import dataclasses

from etils import epath
import grain
import numpy as np
import tensorflow_datasets as tfds

from rasd_jax.data import pipeline
from rasd_jax.data import prepared
from rasd_jax.data import sources
from rasd_jax.data import splits as splits_lib
from rasd_jax.data import tasks

NAME = "rasd_tasks"
VERSION = "1.1.0"
# A case of a built dataset: the dataset folder, the split and the index in it.
Record = collections.namedtuple("Record", "path split index")


def recipe(task, *, fold=0, roi=None, evaluation="heldout", num_classes=0):
  """What a dataset's cases and splits depend on, as stored with it: a dict. task: a registry
  name or "custom" (a Decathlon dataset.json); roi (registry tasks; None: the task's) one size
  or one per axis; num_classes (custom: 0 infers it) as the finetune config has them."""
  out = {"task": task, "fold": int(fold), "evaluation": evaluation}
  if task == "custom":
    return {**out, "num_classes": int(num_classes)}
  registered = tasks.get(task)
  roi = registered.roi if roi is None else sources.expand_roi(roi, registered.ndim)
  return {**out, "roi": list(roi)}


def recipe_of(config):
  """The recipe of the dataset a finetune config (experiments/finetune.py) reads."""
  return recipe(config.task, fold=config.data.fold, roi=config.roi,
                evaluation=config.evaluation, num_classes=config.num_classes)


def recipe_text(built):
  """A recipe in words, for errors."""
  return ", ".join(f"{k} {tuple(v) if isinstance(v, list) else v}" for k, v in built.items())


def _config_name(made):
  """The config's name: task and fold, then whatever differs from the defaults."""
  parts = [made["task"], f"fold{made['fold']}"]
  if made["task"] != "custom" and tuple(made["roi"]) != tasks.get(made["task"]).roi:
    parts.append("roi" + "x".join(str(r) for r in made["roi"]))
  if made["evaluation"] != "heldout":
    parts.append(made["evaluation"])
  if made.get("num_classes"):
    parts.append(f"classes{made['num_classes']}")
  return "-".join(parts)


@dataclasses.dataclass(eq=False)
class RasdConfig(tfds.core.BuilderConfig):
  """One recipe (see `recipe`); the name is derived from it unless given. json: task=custom,
  the Decathlon dataset.json, relative to the manual dir. threads: grain threads preparing
  cases (not part of the recipe)."""
  name: str = ""
  task: str = "custom"
  fold: int = 0
  roi: tuple = None
  evaluation: str = "heldout"
  num_classes: int = 0
  json: str = "dataset.json"
  threads: int = 4

  def __post_init__(self):
    if self.evaluation not in tasks.EVALUATIONS:
      raise ValueError(f"evaluation {self.evaluation!r}: one of {tasks.EVALUATIONS}")
    if self.task == "custom" and self.fold:
      raise ValueError(f"fold {self.fold}: task custom has no folds (only 0)")
    self.recipe = recipe(self.task, fold=self.fold, roi=self.roi, evaluation=self.evaluation,
                         num_classes=self.num_classes)
    self.name = self.name or _config_name(self.recipe)
    self.description = self.description or recipe_text(self.recipe)


def _registry_configs():
  return [RasdConfig(task=name, fold=fold) for name, task in tasks.TASKS.items()
          for fold in range(task.folds)]


def _manual_instructions(config):
  """Where the manual dir's files go, from the task's layout."""
  if config.task == "custom":
    return (f"The manual dir holds {config.json}: a Decathlon dataset.json (the MSD / MONAI "
            "layout) whose 'training' list (and 'validation', 'test' where given) names image "
            "and label files relative to it; 'labels' names the classes.")
  return (f"The manual dir is the folder the prepare job made from the {config.task} download: "
          f"python run.py --config=experiments/prepare.py:task={config.task} "
          "--config.source=DOWNLOAD --workdir=DATA, then --manual_dir=DATA.")


def _features(kind, instances):
  """The schema: flat arrays and the image's shape (module docstring)."""
  flat = lambda dtype: tfds.features.Tensor(shape=(None,), dtype=dtype,  # noqa: E731
                                             encoding=tfds.features.Encoding.BYTES)
  features = {"image": flat(np.float32), "shape": tfds.features.Tensor(shape=(None,),
                                                                        dtype=np.int64),
              "id": tfds.features.Text()}
  if kind == "segmentation":
    # Bytes, as every array here: a plain float64 tensor is stored as float32.
    features.update(label=flat(np.int32), spacing=flat(np.float64))
    if instances:
      features["instances"] = flat(np.int32)
  elif kind == "multilabel":
    features["label"] = tfds.features.Tensor(shape=(None,), dtype=np.int64)
  else:
    features["label"] = tfds.features.Scalar(
        dtype=np.float64 if kind == "regression" else np.int64)
  return tfds.features.FeaturesDict(features)


def _example(sample):
  """A prepared sample as the schema stores it."""
  example = {"image": sample["image"].ravel(), "shape": np.asarray(sample["image"].shape),
             "id": sample["id"], "label": sample["label"]}
  if sample["spacing"] is not None:
    example.update(label=sample["label"].ravel(), spacing=np.asarray(sample["spacing"]))
  if "instances" in sample:
    example["instances"] = sample["instances"].ravel()
  return example


def _sample(example, kind):
  """A stored example back as pipeline.prepare returns it (same keys, types and arrays; the
  arrays writable, as prepare's are, where tfds decodes read-only views of its buffer)."""
  shape = tuple(int(n) for n in example["shape"])
  sample = {"image": np.array(example["image"]).reshape(shape), "label": example["label"],
            "spacing": None, "id": example["id"].decode()}
  if kind == "segmentation":
    sample.update(label=np.array(example["label"]).reshape(shape[1:]),
                  spacing=tuple(float(s) for s in example["spacing"]))
    if "instances" in example:
      sample["instances"] = np.array(example["instances"]).reshape(shape[1:])
  elif kind == "multilabel":
    sample["label"] = [int(v) for v in example["label"]]
  else:
    sample["label"] = (float if kind == "regression" else int)(example["label"])
  return sample


class RasdTasks(tfds.core.GeneratorBasedBuilder):
  """The registry tasks and custom Decathlon data, prepared as the finetune job prepares them
  (module docstring)."""

  VERSION = tfds.core.Version(VERSION)
  RELEASE_NOTES = {
      "1.0.0": "pipeline.prepare's output, the finetune job's splits.",
      "1.1.0": "cases from the prepare job's data folder; spacing stored as float64 bytes (it "
               "was rounded to float32)."}
  BUILDER_CONFIGS = _registry_configs()

  def __init__(self, *, config=None, file_format=None, **kwargs):
    """ArrayRecord unless told otherwise: tfds's default, TFRecord, needs TensorFlow. A config
    given by its fields (`--config='{...}'`) whose recipe is a registry config's is that config
    (tfds refuses a second config of the same name)."""
    listed = self.get_builder_config(config.name) if isinstance(config, RasdConfig) else None
    if listed is not None and listed.recipe == config.recipe:
      config = listed
    super().__init__(config=config, file_format=file_format or "array_record", **kwargs)

  @property
  def MANUAL_DOWNLOAD_INSTRUCTIONS(self):  # noqa: N802 (the name tfds reads)
    """Per config (tfds reads it from the builder instance)."""
    return _manual_instructions(self.builder_config)

  def _info(self):
    made = self.builder_config.recipe
    if made["task"] == "custom":
      kind, instances = "segmentation", False
    else:
      task = tasks.get(made["task"])
      kind, instances = task.kind, task.preprocessing.get("binarize") == "nonzero"
    return tfds.core.DatasetInfo(
        builder=self, description=__doc__.split("\n", 1)[0], features=_features(kind, instances),
        disable_shuffling=True,  # the job's order: its batches index the training list
        metadata=tfds.core.MetadataDict(recipe=made))

  def _split_generators(self, dl_manager):
    config = self.builder_config
    made, data_dir = config.recipe, dl_manager.manual_dir
    if made["task"] == "custom":
      json_path = data_dir / config.json
      if not json_path.exists():
        raise ValueError(f"{json_path} does not exist; {_manual_instructions(config)}")
      kind, lists, names, source, modality = sources.custom_lists(json_path=str(json_path))
      folds = None
    else:
      task = dataclasses.replace(tasks.get(made["task"]), roi=tuple(made["roi"]))
      lists = prepared.load_splits(task, data_dir, fold=made["fold"])
      source, folds = str(data_dir), task.cv_folds
    split = splits_lib.make_splits(lists, source=source, folds=folds, fold=made["fold"],
                                   seed=None, test=made["evaluation"] == "heldout")
    if made["task"] == "custom":
      task = sources.task_of_cases(kind, split["train"], names, made["num_classes"], (None,),
                                 modality)
    self.info.metadata["task"] = {"name": task.name, "kind": task.kind, "ndim": task.ndim,
                                  "in_channels": task.in_channels,
                                  "classes": list(task.classes), "modality": task.modality}
    self.info.metadata["source"] = source
    return {k: self._generate_examples(task, v, k == "train")
            for k, v in split.items() if v is not None}

  def _generate_examples(self, task, entries, training):
    """(index, example) of every case, prepared on grain threads, in the split's order."""
    prepared = grain.MapDataset.source(list(entries)).map(
        lambda entry: pipeline.prepare(task, entry, training=training))
    for i, sample in enumerate(prepared.to_iter_dataset(
        sources.read_options(self.builder_config.threads))):
      yield i, _example(sample)


def _built(path):
  """(recipe, task metadata) of the dataset in `path`."""
  metadata = tfds.builder_from_directory(path).info.metadata
  return metadata["recipe"], metadata["task"]


def find(data_dir, wanted):
  """The folder of the dataset built for the recipe `wanted` in `data_dir` (the `tfds build
  --data_dir`, a local or mounted folder), or `data_dir` itself where it is one built dataset
  holding that recipe. A missing folder, no dataset, or none for `wanted`: a one-line ValueError that
  names what was asked and what is there."""
  root = epath.Path(data_dir)
  if not root.exists():
    raise ValueError(f"tfds dir {data_dir} does not exist; build it with `tfds build {NAME} "
                     f"--imports=rasd_jax.data.tfds_source --data_dir={data_dir} ...`")
  if (root / "dataset_info.json").exists():
    built = [root]
  else:
    built = sorted(p.parent for p in root.glob(f"{NAME}/*/{VERSION}/dataset_info.json"))
  recipes = {path: _built(path)[0] for path in built}
  chosen = [path for path, made in recipes.items() if made == wanted]
  if len(chosen) == 1:
    return chosen[0]
  held = "; ".join(f"{p.parent.name}: {recipe_text(m)}" for p, m in recipes.items()) or "nothing"
  if chosen:
    raise ValueError(f"tfds dir {data_dir} holds {len(chosen)} datasets built for "
                     f"{recipe_text(wanted)}: give the folder of one ({held})")
  raise ValueError(f"tfds dir {data_dir} holds no {NAME} {VERSION} dataset built for "
                   f"{recipe_text(wanted)}; it holds {held}")


def task_of(path, roi):
  """The tasks.Task of the dataset in `path`, with the run's `roi`: a registry task's entry, or
  custom data's task as the finetune job makes it from the files."""
  made, task = _built(path)
  return pipeline.from_task_record(dict(task, name=made["task"],
                                        roi=sources.expand_roi(roi, task["ndim"])))


def records(path, train_fraction=1.0, seed=0):
  """{'train', 'val', 'test'}: the Records of each split of the dataset in `path` (None for a
  split it does not have: evaluation 'paper' holds no test split); the training ones, the
  subset and order a run of `seed` and `train_fraction` uses (splits.training_subset)."""
  info = tfds.builder_from_directory(path).info
  found = {split: [Record(path, split, i) for i in range(info.splits[split].num_examples)]
           if split in info.splits else None for split in tasks.SPLITS}
  return dict(found, train=splits_lib.training_subset(found["train"], train_fraction, seed))


def read(chosen, threads=4):
  """The prepared samples of `chosen` Records (of one split of one dataset), in order, read
  through tfds.data_sources on `threads` grain threads."""
  if not chosen:
    return []
  path, split = chosen[0].path, chosen[0].split
  if any((r.path, r.split) != (path, split) for r in chosen):
    raise ValueError("read takes the records of one split of one dataset")
  builder = tfds.builder_from_directory(path)
  source, kind = builder.as_data_source(split), builder.info.metadata["task"]["kind"]
  dataset = grain.MapDataset.source([r.index for r in chosen]).map(
      lambda i: _sample(source[i], kind))
  return list(dataset.to_iter_dataset(sources.read_options(threads)))


def main():
  """`tfds build` without TensorFlow: tensorflow-datasets 4.9.10's `tfds` command imports
  TensorFlow (for its convert_format command) before it parses anything, so this runs its
  build command alone, with the same arguments; this module's builder is registered already
  (no --imports)."""
  from absl import app  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import build  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import cli_utils  # pylint: disable=g-import-not-at-top
  app.run(lambda args: args.execute(), flags_parser=cli_utils.make_flags_parser(
      build.Args, f"tfds build, without TensorFlow; {NAME} is registered"))


if __name__ == "__main__":
  main()
