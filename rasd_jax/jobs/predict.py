"""The predict job: a fine-tuned network on new images, each output in its input's own space.

`model` is any workdir load_model reads: a fine-tuning run (its W/task.json says the task,
patch size, overlap and window it was evaluated with), or with `task=NAME` a network whose
outputs are a registry task's classes (an imported MONAI SwinUNETR trained for BTCV). Each
input goes through the task's preprocessing (pipeline.prepare) and the network as the
fine-tuning evaluation runs it (downstream.make_segment / make_score); then:
- segmentation: W/predictions/<name><suffix>, the label map on the input's grid
  (pipeline.to_native undoes the crop, reorientation and resampling): NIfTI (with the input's
  header and affine) for NIfTI and DICOM inputs, PNG for Pillow images (a binary mask as
  0/255), .npy for .npy; class indices, or the label file's own values where the task's
  label_map is one to one. `probabilities`: also <name>_probabilities (NIfTI: channels last;
  PNG inputs: a (C, H, W) .npy), linear where a resampling is undone.
- classification, multi-label, regression: W/predictions.csv, a row per input: the
  predicted class and each class's probability (multi-label: each label's), or the value.
A rerun skips the inputs whose outputs exist (written whole: a killed run leaves none half
written); an input that cannot be read is skipped with one line, and listed in
W/unreadable.txt. With several processes each predicts its share of the inputs.
"""

import csv
import glob
import io
import os

from etils import epath
from flax import nnx
import jax
import numpy as np
import tqdm

from rasd_jax.data import pipeline
from rasd_jax.data import predictions
from rasd_jax.data import readers
from rasd_jax.data import tasks
from rasd_jax.training import downstream
from rasd_jax.training import engine
from rasd_jax.training import mesh as mesh_lib
from rasd_jax.training import weights as weights_lib
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

MAY_CHANGE = ("input", "json_section", "probabilities", "batch_size")
FOLDER, TABLE, UNREADABLE = "predictions", "predictions.csv", "unreadable.txt"


def _is_series(folder):
  return any(name.lower().endswith(readers.DICOM_SUFFIXES) for name in readers.listdir(folder))


def _listing(source, section):
  """The inputs `source` names: entries {"image": path or [paths]}. A Decathlon JSON: its
  `section` list; a folder: its image files and DICOM series folders; a glob: its matches; else
  one file or DICOM series."""
  if source.lower().endswith(".json"):
    return readers.load_decathlon(source, section=section)
  if any(c in source for c in "*?["):
    if workdir_lib.is_remote(source):
      folder, pattern = source.rsplit("/", 1)
      paths = sorted(os.fspath(p) for p in epath.Path(folder).glob(pattern))
    else:
      paths = sorted(glob.glob(source, recursive=True))
    if not paths:
      raise FileNotFoundError(f"input {source!r} matches no file")
    return [{"image": p} for p in paths]
  path = epath.Path(source)
  if not path.exists():
    raise FileNotFoundError(f"input {source} does not exist")
  if not path.is_dir() or _is_series(source):
    return [{"image": source}]
  entries, other = [], []
  for name in readers.listdir(source):
    full = workdir_lib.join(source, name)
    if epath.Path(full).is_dir():
      if _is_series(full):
        entries.append({"image": full})
    elif name.lower().endswith(readers.READABLE_SUFFIXES):
      entries.append({"image": full})
    else:
      other.append(name)
  if other:
    log(f"input {source}: {len(other)} file(s) of other formats left out: {readers.few(other)}")
  if not entries:
    raise ValueError(f"input {source} holds no image file "
                     f"({', '.join(readers.READABLE_SUFFIXES)}) and no DICOM series folder")
  return entries


def _entries(source, section):
  """The inputs as entries with "id", their output name, unique."""
  entries = [dict(e, id=predictions.name_of(pipeline.first_path(e["image"])))
             for e in _listing(source, section)]
  seen = {}
  for e in entries:
    seen.setdefault(e["id"], []).append(pipeline.first_path(e["image"]))
  twice = {k: v for k, v in seen.items() if len(v) > 1}
  if twice:
    name, paths = next(iter(twice.items()))
    raise ValueError(f"input {source}: {len(twice)} output name(s) would be written twice, "
                     f"e.g. {name!r} by {readers.few(paths)}; predict each folder apart")
  return entries


def _task(config, spec):
  """(task, output, overlap, window) of the network `spec` in config.model: the fine-tuning
  run's (W/task.json), or the registry task `config.task` with its inference settings.
  Refuses another task than the run's, and a network whose dimension, channels or outputs
  are not the task's, in one line."""
  record = epath.Path(weights_lib.split_path(config.model)[0]) / engine.TASK
  if record.exists():
    found = readers.read_json_object(os.fspath(record), "task file")
    task = pipeline.from_task_record(found["task"])
    overlap, window = found["overlap"], found["window"]
    if config.task and config.task != task.name:
      raise ValueError(f"model {config.model!r} was fine-tuned for task {task.name!r}, not "
                       f"{config.task!r}")
  elif config.task:
    task = tasks.get(config.task)
    overlap, window = task.inference.overlap, engine.WINDOWS["heldout"]
  else:
    raise ValueError(f"model {config.model!r} holds no {engine.TASK} (a fine-tuning run "
                     "writes it): name the task its outputs are, --config.task=NAME")
  output = spec.get("output", "softmax") if spec["network"] == "downstream" else "softmax"
  outputs = spec["num_outputs"] if spec["network"] == "downstream" else spec["out_channels"]
  pooled = spec.get("pooled", False)
  wanted = {"sigmoid": 1, "regression": 1, "multilabel": len(task.classes)}.get(
      output, task.num_classes)
  dense = task.kind == "segmentation"
  fits = output in tasks.SEGMENTATION_OUTPUTS if dense else output == task.kind
  if (spec["ndim"], spec["in_channels"], outputs, pooled, fits) != (
      task.ndim, task.in_channels, wanted, not dense, True):
    raise ValueError(
        f"model {config.model!r} is a {spec['ndim']}D {'image-level' if pooled else 'dense'} "
        f"network of {spec['in_channels']} input channel(s) and {outputs} '{output}' "
        f"output(s); task {task.name!r} takes {task.ndim}D {task.kind} with "
        f"{task.in_channels} channel(s) and {wanted} output(s)")
  return task, output, overlap, window


def _outputs(folder, entry, probabilities):
  return predictions.paths(folder, entry["id"], pipeline.first_path(entry["image"]),
                           probabilities)


def _segment_all(config, task, output, segment, weights, entries, folder):
  """Predicts and writes each entry's label map (and probabilities); returns the unreadable
  ones' lines."""
  bad = []
  show = jax.process_index() == 0
  for entry in tqdm.tqdm(entries, desc="predict", unit="image", disable=not show):
    try:
      sample = pipeline.prepare(task, entry, labelled=False)
    except (ValueError, OSError, MemoryError) as e:
      bad.append(f"{pipeline.first_path(entry['image'])}: {e}")
      log(f"skipped {bad[-1]}")
      continue
    labels, probs = segment(weights, np.moveaxis(sample["image"], 0, -1)[None])
    geometry = sample["geometry"]
    if config.probabilities:  # linear where a resampling is undone; the background's 1 outside
      fill = [1.0] + [0.0] * (probs.shape[-1] - 1) if output == "softmax" else 0.0
      probs = pipeline.to_native(np.moveaxis(np.asarray(probs), -1, 0), geometry, order=1,
                                 fill=fill)
    predictions.write(_outputs(folder, entry, config.probabilities), task, geometry,
                      pipeline.to_native(np.asarray(labels)[None], geometry)[0], probs)
  return bad


def _score_all(config, task, score, weights, entries):
  """(rows of this process's entries, unreadable lines)."""
  rows, bad = [], []
  show = jax.process_index() == 0
  bar = tqdm.tqdm(total=len(entries), desc="predict", unit="image", disable=not show)
  for start in range(0, len(entries), config.batch_size):
    chunk, images = [], []
    for entry in entries[start:start + config.batch_size]:
      try:
        images.append(pipeline.prepare(task, entry, labelled=False)["image"])
        chunk.append(entry)
      except (ValueError, OSError, MemoryError) as e:
        bad.append(f"{pipeline.first_path(entry['image'])}: {e}")
        log(f"skipped {bad[-1]}")
    if chunk:
      out = np.asarray(score(weights, np.stack([np.moveaxis(i, 0, -1) for i in images])))
      rows += [_row(task, pipeline.first_path(e["image"]), o) for e, o in zip(chunk, out)]
    bar.update(len(entries[start:start + config.batch_size]))
  bar.close()
  return rows, bad


def _row(task, path, out):
  row = {"image": path}
  if task.kind == "regression":
    return dict(row, value=float(out[0]))
  if task.kind == "classification":
    row["prediction"] = task.classes[int(np.argmax(out))]
  else:
    row["prediction"] = ";".join(c for c, p in zip(task.classes, out) if p > 0.5)
  return dict(row, **{f"p({c})": float(p) for c, p in zip(task.classes, out)})


def _read_table(path):
  if not epath.Path(path).exists():
    return []
  return list(csv.DictReader(io.StringIO(epath.Path(path).read_text())))


def _write_table(path, rows):
  text = io.StringIO()
  writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
  writer.writeheader()
  writer.writerows(rows)
  workdir_lib.write_file(path, text.getvalue())


def run(config, workdir):
  if not config.model:
    raise ValueError("predict needs model=W: a fine-tuning workdir (--config.model=W)")
  if not config.input:
    raise ValueError("predict needs input=PATH: an image file, a folder, a glob or a Decathlon "
                     "dataset.json (--config.input=PATH)")
  if config.batch_size < 1:
    raise ValueError(f"batch_size = {config.batch_size}: must be >= 1")
  spec = weights_lib.read_spec(config.model)
  task, output, overlap, window = _task(config, spec)
  entries = _entries(config.input, config.json_section)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  model = weights_lib.load_model(config.model)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  weights = mesh_lib.local_copy({"params": params, "rest": rest})
  folder, table = os.path.join(workdir, FOLDER), os.path.join(workdir, TABLE)
  dense = task.kind == "segmentation"
  if dense:
    workdir_lib.makedirs(folder)
    done = set(readers.listdir(folder))
    todo = [e for e in entries if not all(os.path.basename(p) in done
                                          for p in _outputs(folder, e, config.probabilities))]
  else:
    previous = _read_table(table)
    done = {r["image"] for r in previous}
    todo = [e for e in entries if pipeline.first_path(e["image"]) not in done]
  log(f"predict {len(entries)} input(s) with {config.model} (task {task.name}, {output}): "
      f"{len(entries) - len(todo)} done before, {len(todo)} to go")
  mine = todo[jax.process_index()::jax.process_count()]
  if dense:
    segment = downstream.make_segment(graphdef, task.roi, overlap, output, window,
                                      probabilities=config.probabilities,
                                      batch_size=config.batch_size)
    bad = _segment_all(config, task, output, segment, weights, mine, folder)
  else:
    rows, bad = _score_all(config, task, downstream.make_score(graphdef, output), weights, mine)
    rows = previous + mesh_lib.gather(rows)
    if rows and jax.process_index() == 0:
      _write_table(table, rows)
  bad = mesh_lib.gather(bad)
  if jax.process_index() == 0:
    workdir_lib.write_file(os.path.join(workdir, UNREADABLE), "".join(f"{b}\n" for b in bad))
  log(f"predicted {len(todo) - len(bad)}, {len(bad)} unreadable"
      f"{f' (listed in {os.path.join(workdir, UNREADABLE)})' if bad else ''}: "
      f"{folder if dense else table}")
