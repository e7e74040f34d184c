"""A task's preprocessing, in one place: `prepare` (deterministic) and `augment` (random).

`prepare(task, entry)` reads one case and applies `task.preprocessing` (keys in tasks.py): the
input of validation and test, and the start of training. `augment(task, sample, roi, rng)` draws
one training sample from a prepared one. Both are host NumPy (transforms.py), channel-first.

Templates (TASKS.md sections 1-4):
- CT-T: RAS, resample to `spacing` (image linear, label nearest), window a_min..a_max -> 0..1
  clipped, crop to the foreground (image > 0).
- MR-T: RAS, z-score per channel over non-zero voxels, crop to the foreground (image > 0 after
  the z-score, as the reference chain) grown to a multiple of task.roi.
- fundus: the green channel of an RGB file (`green_channel`), 0..255 -> 0..1, masks > 0 -> 1.
- 2d-generic: "scale" (a_min..a_max -> 0..1) or "minmax" (per image to 0..1).
- npy: a_min..a_max -> 0..1, a centre `crop` of the last axes, `resize` (None keeps an axis).
  MRNet (`planes`): the reference runs three backbones, one per plane; here the three plane
  volumes of a case, each resized to task.roi (a None axis: MRNET_DEPTH slices), are stacked
  as 3 channels.
- custom (custom_task): intensity "auto" keeps an image already in [0, 1], else z-scores it per
  channel over non-zero voxels.
A 2D RGB file for a 1-channel task becomes grey (ITU-R 601 luma) and a grey file for a
3-channel task is repeated; any other channel mismatch is an error naming the file.
Classification, multilabel and regression inputs are resized to task.roi (a None axis kept, or
taken from `resize`), so a batch stacks. Segmentation labels go through task.label_map and must
then lie in [0, task.num_classes).

`spacing`: for segmentation, the voxel size in mm per spatial axis from the affine after
resampling; files without an affine (Pillow, .npy) give 1.0 per axis, i.e. pixel units. For the
other kinds the inputs are resized, and spacing is None.
"""

import os

import numpy as np

from rasd_jax.data import readers
from rasd_jax.data import tasks
from rasd_jax.data import transforms

# Slices per MRNet plane where the roi leaves the depth free (scans hold about 17-61 slices).
MRNET_DEPTH = 32
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 R, G, B weights
_SHIFT = 0.1  # RandShiftIntensity offset of the CT-T and fundus chains
# Template -> training augmentation after the crop: flip probability, whether each spatial axis
# flips on its own draw (else all together), rot90 probability (max_k 3, axes 0 and 1), shift
# intensity probability.
_AUGMENTATION = {
    "CT-T": (0.2, True, 0.2, 0.1),
    "MR-T": (0.1, True, 0.0, 0.0),
    "fundus": (0.2, False, 0.2, 0.1),
    "2d-generic": (0.5, True, 0.0, 0.0),
    "custom": (0.5, True, 0.0, 0.0),
}
_TEMPLATES = (*_AUGMENTATION, "npy")


def _first_path(paths):
  return os.fspath(paths if isinstance(paths, (str, os.PathLike)) else paths[0])


def _match_channels(task, image, path):
  """`image` with task.in_channels channels; 2D RGB -> grey and grey -> RGB are converted."""
  have, want = image.shape[0], task.in_channels
  if have == want:
    return image
  if task.ndim == 2 and (have, want) == (3, 1):
    return np.tensordot(_LUMA, image, axes=1)[None]
  if task.ndim == 2 and (have, want) == (1, 3):
    return np.repeat(image, 3, axis=0)
  raise ValueError(f"{path} has {have} channel(s) but task {task.name!r} takes "
                   f"{want} (in_channels)")


def _intensity(task, image):
  prep = task.preprocessing
  kind = prep.get("intensity")
  if kind in ("window", "scale"):
    return transforms.scale_intensity_range(image, prep["a_min"], prep["a_max"],
                                            clip=kind == "window")
  if kind == "zscore_nonzero":
    return transforms.normalize_intensity(image)
  if kind == "minmax":
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image)
  if kind == "auto":
    return image if image.min() >= 0 and image.max() <= 1 else transforms.normalize_intensity(image)
  raise ValueError(f"task {task.name!r}: unknown preprocessing intensity {kind!r}")


def _map_label(task, label, path):
  """Disk values -> class indices: preprocessing `binarize` ("nonzero": instance labels ->
  1; "half": above half the mask's maximum -> 1, for lossy JPEG masks) or task.label_map,
  then checked in [0, num_classes)."""
  binarize = task.preprocessing.get("binarize")
  if binarize not in (None, "nonzero", "half"):
    raise ValueError(f"task {task.name!r}: binarize {binarize!r} is not 'nonzero' or 'half'")
  if binarize == "nonzero":
    label = (label > 0).astype(np.int32)
  elif binarize == "half":
    label = (label > label.max(initial=0) / 2).astype(np.int32)
  if task.label_map:
    unknown = np.setdiff1d(np.unique(label), [0, *task.label_map])
    if unknown.size:
      raise ValueError(f"label {path} has values {unknown[:10].tolist()} that task "
                       f"{task.name!r}'s label_map {task.label_map} does not list")
    mapped = np.zeros_like(label)
    for value, index in task.label_map.items():
      mapped[label == value] = index
    label = mapped
  bad = np.unique(label[(label < 0) | (label >= task.num_classes)])
  if bad.size:
    raise ValueError(f"label {path} has values {bad[:10].tolist()} outside "
                     f"[0, {task.num_classes}) (task {task.name!r})")
  return label


def _spatial(task, image, label, affine):
  """CT-T / MR-T geometry: RAS, CT-T resampling; then the foreground crop after intensity."""
  prep = task.preprocessing
  label = transforms.reorient_to_ras(label[None], affine)[0]
  image, affine = transforms.reorient_to_ras(image, affine)
  if prep["template"] == "CT-T" and prep.get("spacing") is not None:
    label = transforms.resample_to_spacing(label, affine, prep["spacing"], order=0)[0]
    image, affine = transforms.resample_to_spacing(image, affine, prep["spacing"], order=1)
  image = _intensity(task, image)
  k = 1 if prep["template"] == "CT-T" else tuple(r or 1 for r in task.roi)
  image, label, _ = transforms.crop_foreground(image, label, k_divisible=k)
  return image, label[0], affine


def _centre_crop(image, crop):
  """The centre `crop` of the last len(crop) axes; an axis already smaller is kept whole."""
  shape = image.shape[-len(crop):]
  starts = [(n - min(c, n)) // 2 for n, c in zip(shape, crop)]
  return image[(Ellipsis,) + tuple(slice(s, s + min(c, n))
                                   for s, c, n in zip(starts, crop, shape))]


def _input_size(task, default=None):
  """task.roi with None axes taken from `resize` (aligned to the last axes), else `default`."""
  resize = tuple(task.preprocessing.get("resize") or ())
  resize = (None,) * (task.ndim - len(resize)) + resize
  return tuple(r if r is not None else (s if s is not None else default)
               for r, s in zip(task.roi, resize))


def _classification_input(task, image):
  image = _intensity(task, image)
  if task.preprocessing.get("crop"):
    image = _centre_crop(image, task.preprocessing["crop"])
  default = MRNET_DEPTH if task.preprocessing.get("planes") else None
  return transforms.resize(image, _input_size(task, default))


def _read_planes(task, entry):
  """MRNet: the plane volumes of one case, each prepared alone, stacked as channels."""
  planes = task.preprocessing["planes"]
  paths = entry["image"]
  if isinstance(paths, (str, os.PathLike)) or len(paths) != len(planes):
    raise ValueError(f"task {task.name!r} needs one file per plane {tuple(planes)}, got "
                     f"{paths!r}")
  volumes = []
  for path in paths:
    image, _, _ = readers.read_case(path)
    if image.shape[0] != 1 or image.ndim != 4:
      raise ValueError(f"{path}: expected one (slices, height, width) volume, got {image.shape}")
    volumes.append(_classification_input(task, image)[0])
  return np.stack(volumes)


def prepare(task, entry):
  """The deterministic preprocessing of one case: {"image", "label", "spacing", "id"}.

  entry: {"image": path or [paths], "label": mask path (segmentation), class index, [0/1, ...]
  or float, "id": str}. image: float32 (C, *S); label: int32 (*S) for segmentation, else as
  given; spacing: see the module docstring; id: entry["id"], else the first image path.
  """
  prep = task.preprocessing
  template = prep.get("template")
  if template not in _TEMPLATES:
    raise ValueError(f"task {task.name!r}: unknown preprocessing template {template!r}")
  path = _first_path(entry["image"])
  sample_id = str(entry.get("id") or path)
  if prep.get("planes"):
    return {"image": _read_planes(task, entry), "label": entry["label"], "spacing": None,
            "id": sample_id}
  segmentation = task.kind == "segmentation"
  if segmentation and entry.get("label") is None:
    raise ValueError(f"{path}: a segmentation entry needs a 'label' mask")
  image, label, affine = readers.read_case(
      {"image": entry["image"], "label": entry["label"] if segmentation else None})
  if image.ndim - 1 != task.ndim:
    raise ValueError(f"{path}: image of spatial shape {image.shape[1:]} is not {task.ndim}D as "
                     f"task {task.name!r} needs")
  if prep.get("green_channel") and image.shape[0] >= 3:
    image = image[1:2]
  image = _match_channels(task, image, path)
  if not segmentation:
    return {"image": np.ascontiguousarray(_classification_input(task, image), np.float32),
            "label": entry["label"], "spacing": None, "id": sample_id}
  if template == "fundus":
    label = (label > 0).astype(np.int32)
  label = _map_label(task, label, entry["label"])
  if template in ("CT-T", "MR-T"):
    image, label, affine = _spatial(task, image, label, affine)
  else:
    image = _intensity(task, image)
  return {"image": np.ascontiguousarray(image, np.float32),
          "label": np.ascontiguousarray(label, np.int32),
          "spacing": tuple(float(s) for s in np.linalg.norm(affine[:-1, :task.ndim], axis=0)),
          "id": sample_id}


def _flips(arrays, prob, per_axis, rng, axes):
  if not per_axis:
    return transforms.rand_flip(arrays, prob, rng, axes=tuple(axes))
  for axis in axes:
    arrays = transforms.rand_flip(arrays, prob, rng, axes=axis)
  return arrays


def augment(task, sample, roi, rng):
  """One random training (image, label) from a `prepare`d sample; rng: np.random.Generator.

  Segmentation: pad to `roi`, one rand_crop_by_pos_neg_label patch (task.optim pos / neg),
  then the template's augmentation (_AUGMENTATION; rot90 only when roi[0] == roi[1], so the
  shape stays roi): image float32 (C, *roi), label int32 (*roi). Other kinds: a flip p0.5 of
  each in-plane axis (both 2D axes; for npy volumes stored slices first, axes 1 and 2; else
  axes 0 and 1), `roi` unused: image float32 (C, *S), the label unchanged.
  """
  image, label = sample["image"], sample["label"]
  if task.kind != "segmentation":
    axes = (1, 2) if task.ndim == 3 and task.preprocessing["template"] == "npy" else (0, 1)
    image, = _flips([image], 0.5, True, rng, axes)
    return np.ascontiguousarray(image, np.float32), label
  roi = tuple(int(r) for r in roi)
  flip, per_axis, rot90, shift = _AUGMENTATION[task.preprocessing["template"]]
  (image, label), = transforms.rand_crop_by_pos_neg_label(
      transforms.spatial_pad(image, roi), transforms.spatial_pad(label[None], roi), roi,
      task.optim["pos"], task.optim["neg"], 1, rng)
  image, label = _flips([image, label], flip, per_axis, rng, range(task.ndim))
  if rot90 and roi[0] == roi[1]:
    image, label = transforms.rand_rot90([image, label], rot90, 3, rng)
  if shift:
    image = transforms.rand_shift_intensity(image, _SHIFT, shift, rng)
  return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(label[0], np.int32)


def custom_task(kind, ndim, in_channels, classes, roi, name="custom", modality="CT"):
  """A registry-compatible tasks.Task for user data (task=custom).

  classes: names (segmentation starts with "background"; regression: ()) or their count.
  Preprocessing {"template": "custom", "intensity": "auto"}; layout decathlon_json for
  segmentation (patches pos 1 / neg 1), csv otherwise. modality is metadata (a
  tasks.MODALITY_GROUPS key).
  """
  segmentation = kind == "segmentation"
  if isinstance(classes, int):
    classes = (("background",) * segmentation
               + tuple(f"class {i}" for i in range(int(segmentation), classes)))
  return tasks.Task(
      name=name, title=f"custom {kind} data", modality=modality, ndim=ndim, kind=kind,
      classes=tuple(classes), in_channels=in_channels,
      layout="decathlon_json" if segmentation else "csv",
      layout_notes="user data: a Decathlon dataset.json" if segmentation
      else "user data: a CSV of image, label", split="user data",
      preprocessing={"template": "custom", "intensity": "auto"}, roi=tuple(roi),
      optim={"pos": 1, "neg": 1, "num_samples": 1} if segmentation else {},
      metrics=tasks.METRICS.get(kind, ()))


def make_batch(task, samples, roi, batch_size, seed, step):
  """The training batch of `step`, a pure function of (seed, step): per element a random
  `prepare`d sample through `augment`, with np.random.default_rng((seed, step)). Returns
  {'image': (B, *S, C) float32 channels-last, 'label': (B, *roi) int32 for segmentation,
  (B,) int32 classes, (B, L) float32 multi-label targets or (B,) float32 values}."""
  rng = np.random.default_rng((seed, step))
  images, labels = [], []
  for _ in range(batch_size):
    image, label = augment(task, samples[rng.integers(len(samples))], roi, rng)
    images.append(np.moveaxis(image, 0, -1))
    labels.append(label)
  dtype = {"segmentation": np.int32, "classification": np.int32}.get(task.kind, np.float32)
  return {"image": np.stack(images), "label": np.asarray(np.stack(labels), dtype)}
