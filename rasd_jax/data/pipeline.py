"""A task's preprocessing, in one place: `prepare` (deterministic) and `augment` (random).

`prepare(task, entry)` reads one case and applies `task.preprocessing` (keys in tasks): the
input of validation and test, and, with training=True, of training. `augment(task, sample, roi,
rng)` draws one training sample from a prepared one, as `augmentation.augmentation_of(task)`
says; `make_batch` stacks them, a pure function of (seed, step). All host NumPy (transforms.py),
channel-first.

Templates (README, "finetune"):
- CT-T: RAS, resample to `spacing` (image linear, label nearest), window a_min..a_max -> 0..1
  clipped, crop to the foreground (image > 0).
- MR-T: RAS, z-score per channel over non-zero voxels, crop to the foreground (image > 0 after
  the z-score, as the reference chain) grown to a multiple of task.roi.
- fundus: the green channel of an RGB file (`green_channel`), 0..255 -> 0..1, masks > 0 -> 1.
- 2d-generic: "scale" (a_min..a_max -> 0..1) or "minmax" (per image to 0..1).
- npy: a_min..a_max -> 0..1, a centre `crop` of the last axes, `resize` (None keeps an axis).
  MRNet (`planes`): the reference runs three backbones, one per plane; here the three plane
  volumes of a case, each resized to the input size, are stacked as 3 channels (so every plane
  needs the same slice count: `resize` names it).
- custom (custom_task): intensity "auto" keeps an image already in [0, 1], else z-scores it per
  channel over non-zero voxels.
A 2D RGB file for a 1-channel task becomes grey (ITU-R 601 luma) and a grey file for a
3-channel task is repeated; any other channel mismatch is an error naming the file.
Classification, multilabel and regression inputs are resized to the input size: task.roi, a
None axis taken from `resize` (aligned to the last axes), else kept. A fixed slice count is how
a volume of any depth fits a network that needs sizes divisible by 32: CC-CCII's scans hold
16-690 slices, and its reference keeps each scan's depth and doubles it (the network
concatenates the input with itself along depth), so it needs depths divisible by 16 that real
scans seldom have (6% of fold 0); a roi of (64, 256, 256) resamples every scan to 64 slices
(linear; the median scan has 70). The reference resizes in-plane with align_corners=True; we
use the half-pixel convention (transforms.resize), at most half a pixel apart at the borders.
Segmentation labels go through task.label_map and must then lie in [0, task.num_classes).

`spacing`: for segmentation, the voxel size in mm per spatial axis from the affine after
resampling; files without an affine (Pillow, .npy) give 1.0 per axis, i.e. pixel units. For the
other kinds the inputs are resized, and spacing is None.

`instances`: where preprocessing binarizes instance masks ("nonzero": GlaS, CRAG), the original
instance ids (int32, same grid as label), for object-level metrics; other tasks have no key.
"""

import dataclasses
import os

import numpy as np

from rasd_jax.data import augmentation
from rasd_jax.data import readers
from rasd_jax.data import tasks
from rasd_jax.data import transforms


def first_path(paths):
  return os.fspath(paths if isinstance(paths, (str, os.PathLike)) else paths[0])


def input_channels(task, image, path):
  """`image` with task.in_channels channels: the green channel where the task takes it, 2D
  RGB -> grey and grey -> RGB converted; any other mismatch is an error naming `path`."""
  if task.preprocessing.get("green_channel") and image.shape[0] >= 3:
    image = image[1:2]
  have, want = image.shape[0], task.in_channels
  if have == want:
    return image
  if task.ndim == 2 and (have, want) == (3, 1):
    return np.tensordot(transforms.LUMA, image, axes=1)[None]
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


def map_label(task, label, path):
  """Disk values -> class indices: the fundus template's masks > 0 -> 1, preprocessing
  `binarize` ("nonzero": instance labels -> 1; "half": above half the mask's maximum -> 1, for
  lossy JPEG masks) or task.label_map, then checked in [0, num_classes) (ValueError naming
  `path` otherwise)."""
  if task.preprocessing.get("template") == "fundus":
    label = (label > 0).astype(np.int32)
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


def _spatial(task, image, labels, affine):
  """CT-T / MR-T geometry: RAS, CT-T resampling; then the foreground crop after intensity.
  labels: (L, *S) integer maps (the label, and the instance ids where kept) moved alike.
  Returns the image, labels, affine of the grid before the crop, and the geometry
  (`to_native`)."""
  prep = task.preprocessing
  geometry = {"shape": image.shape[1:], "affine": affine}
  labels, _ = transforms.reorient_to_ras(labels, affine)
  image, affine = transforms.reorient_to_ras(image, affine)
  if prep["template"] == "CT-T" and prep.get("spacing") is not None:
    labels, _ = transforms.resample_to_spacing(labels, affine, prep["spacing"], order=0)
    image, affine = transforms.resample_to_spacing(image, affine, prep["spacing"], order=1)
  image = _intensity(task, image)
  k = 1 if prep["template"] == "CT-T" else tuple(r or 1 for r in task.roi)
  geometry.update(grid_shape=image.shape[1:], grid_affine=affine)
  image, labels, geometry["crop"] = transforms.crop_foreground(image, labels, k_divisible=k)
  return image, labels, affine, geometry


def to_native(maps, geometry, order=0, fill=0):
  """Maps (C, *S) on a prepared sample's grid (a network's labels or probabilities) on the
  grid of the image file it was prepared from: the inverse of `prepare`'s crop,
  reorientation and resampling, from its sample["geometry"]. Outside the crop: `fill` (one
  value or one per channel: 1 for a softmax's background). order 0 (labels): nearest
  neighbour; 1 (probabilities): linear where a resampling is undone. A crop and a
  reorientation alone are undone exactly (every voxel back where it came from)."""
  if "crop" not in geometry:  # prepared on the file's own grid
    return maps
  maps = transforms.uncrop(maps, *geometry["crop"], geometry["grid_shape"], fill)
  return transforms.resample_to_grid(maps, geometry["grid_affine"], geometry["affine"],
                                     geometry["shape"], order)


def native_target(task, geometry):
  """(label map as class indices, spacing) of a prepared sample's label file, on its own grid:
  what a prediction mapped back by `to_native` is scored against."""
  label, _ = readers.read_label(geometry["label"])
  return map_label(task, label, geometry["label"]), spacing_of(geometry["affine"], task.ndim)


def spacing_of(affine, ndim):
  """Voxel size per spatial axis, from an affine (1.0 each for files without one)."""
  return tuple(float(s) for s in np.linalg.norm(np.asarray(affine)[:-1, :ndim], axis=0))


def _centre_crop(image, crop):
  """The centre `crop` of the last len(crop) axes; an axis already smaller is kept whole."""
  shape = image.shape[-len(crop):]
  starts = [(n - min(c, n)) // 2 for n, c in zip(shape, crop)]
  return image[(Ellipsis,) + tuple(slice(s, s + min(c, n))
                                   for s, c, n in zip(starts, crop, shape))]


def _input_size(task):
  """The network input of an image-level task: task.roi, a None axis taken from `resize`
  (aligned to the last axes); None where both leave it free (the axis is kept)."""
  resize = tuple(task.preprocessing.get("resize") or ())
  resize = (None,) * (task.ndim - len(resize)) + resize
  return tuple(r if r is not None else s for r, s in zip(task.roi, resize))


def _image_level_input(task, image, margin):
  """Intensity, the centre `crop`, the resize to the input size. margin: source pixels kept
  on each side of the crop (where the image has them) for augment's random crop offset,
  resized at the crop's scale: (crop + 2 margin) * size / crop pixels, so augment's centre
  window is the validation input (exactly when margin * size / crop is a whole number)."""
  image = _intensity(task, image)
  size = list(_input_size(task))
  crop = task.preprocessing.get("crop")
  if crop:
    shape = image.shape[-len(crop):]
    extra = [max(0, min(margin, (n - c) // 2)) for n, c in zip(shape, crop)]
    for axis, (c, e) in enumerate(zip(crop, extra), task.ndim - len(crop)):
      if not e:
        continue
      if size[axis] is None:
        raise ValueError(f"task {task.name!r}: a crop offset needs a fixed input size on the "
                         f"cropped axes; roi {task.roi} and resize leave axis {axis} free")
      size[axis] = round(size[axis] * (c + 2 * e) / c)
    image = _centre_crop(image, [c + 2 * e for c, e in zip(crop, extra)])
  elif margin:
    raise ValueError(f"task {task.name!r}: its augmentation's crop_offset needs a preprocessing "
                     "'crop' to move")
  return transforms.resize(image, size)


def _read_planes(task, entry, margin):
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
    volumes.append(_image_level_input(task, image, margin)[0])
  shapes = {v.shape for v in volumes}
  if len(shapes) > 1:
    raise ValueError(f"task {task.name!r}: planes {paths!r} come out as {sorted(shapes)}; give "
                     "every axis a size (roi or preprocessing resize) so they stack as channels")
  return np.stack(volumes)


def prepare(task, entry, training=False, labelled=True):
  """The deterministic preprocessing of one case: {"image", "label", "spacing", "id"}, plus
  "instances" where the task binarizes instance masks (module docstring).

  entry: {"image": path or [paths], "label": mask path (segmentation), class index, [0/1, ...]
  or float, "id": str}. image: float32 (C, *S); label: int32 (*S) for segmentation, else as
  given; spacing: see the module docstring; id: entry["id"], else the first image path;
  geometry (segmentation): the image and label files, and how to map the sample's grid back
  to theirs (`to_native`). labelled=False (prediction): the entry has no label; "label" is
  None.
  training: an image-level task whose augmentation has a crop_offset keeps that margin around
  its centre crop (the image is larger than the input size; augment crops it); otherwise
  training and validation inputs are the same.
  """
  prep = task.preprocessing
  template = prep.get("template")
  if template not in augmentation.TEMPLATES:
    raise ValueError(f"task {task.name!r}: unknown preprocessing template {template!r}")
  path = first_path(entry["image"])
  sample_id = str(entry.get("id") or path)
  segmentation = task.kind == "segmentation"
  margin = int(augmentation.augmentation_of(task).crop_offset) if training else 0
  if prep.get("planes"):
    return {"image": _read_planes(task, entry, margin), "label": entry.get("label"),
            "spacing": None, "id": sample_id}
  if segmentation and labelled and entry.get("label") is None:
    raise ValueError(f"{path}: a segmentation entry needs a 'label' mask")
  image, label, affine = readers.read_case(
      {"image": entry["image"], "label": entry.get("label") if segmentation else None})
  if image.ndim - 1 != task.ndim:
    raise ValueError(f"{path}: image of spatial shape {image.shape[1:]} is not {task.ndim}D as "
                     f"task {task.name!r} needs")
  image = input_channels(task, image, path)
  if not segmentation:
    return {"image": np.ascontiguousarray(_image_level_input(task, image, margin), np.float32),
            "label": entry.get("label"), "spacing": None, "id": sample_id}
  if label is None:
    label = np.zeros(image.shape[1:], np.int32)
  instances = label.astype(np.int32) if prep.get("binarize") == "nonzero" else None
  labels = map_label(task, label, entry.get("label"))[None]
  if instances is not None:
    labels = np.concatenate([labels.astype(np.int32), instances[None]])
  if template in ("CT-T", "MR-T"):
    image, labels, affine, geometry = _spatial(task, image, labels, affine)
  else:
    image, geometry = _intensity(task, image), {"shape": image.shape[1:], "affine": affine}
  out = {"image": np.ascontiguousarray(image, np.float32),
         "label": np.ascontiguousarray(labels[0], np.int32) if labelled else None,
         "spacing": spacing_of(affine, task.ndim), "id": sample_id,
         "geometry": dict(geometry, path=path, label=entry.get("label"))}
  if instances is not None:
    out["instances"] = np.ascontiguousarray(labels[1], np.int32)
  return out


def _flips(arrays, aug, ndim, rng):
  axes = tuple(range(ndim)) if aug.flip_axes is None else tuple(aug.flip_axes)
  if aug.flip_together:
    return transforms.rand_flip(arrays, aug.flip_prob, rng, axes=axes)
  for axis in axes:
    arrays = transforms.rand_flip(arrays, aug.flip_prob, rng, axes=axis)
  return arrays


def _augment_image(task, aug, image, rng):
  """An image-level sample (C, *S): flips, the random window of the input size, brightness and
  contrast."""
  image, = _flips([image], aug, task.ndim, rng)
  # Draws only on axes with a training margin: other inputs already have the input size.
  image = transforms.rand_spatial_crop(image, _input_size(task), rng)
  if aug.brightness or aug.contrast:
    image = transforms.rand_brightness_contrast(image, aug.brightness, aug.contrast,
                                                aug.jitter_prob, rng, aug.jitter)
  return image


def augment(task, sample, roi, rng):
  """One random training (image, label) from a `prepare`d sample; rng: np.random.Generator.

  The transforms are augmentation.augmentation_of(task) (see that module). Segmentation: pad
  to `roi`, one rand_crop_by_pos_neg_label patch (task.sampling pos / neg), flips, rot90 (only
  where roi[0] == roi[1], so the shape stays roi), scale and shift intensity: image float32
  (C, *roi), label int32 (*roi). Other kinds (`roi` unused): flips, the random window of the
  input size where prepare(training=True) kept a margin, brightness and contrast (each plane
  alone for `planes` tasks): image float32 (C, *input size), the label unchanged.
  """
  aug = augmentation.augmentation_of(task)
  image, label = sample["image"], sample["label"]
  if task.kind != "segmentation":
    if task.preprocessing.get("planes"):
      image = np.concatenate([_augment_image(task, aug, plane[None], rng) for plane in image])
    else:
      image = _augment_image(task, aug, image, rng)
    return np.ascontiguousarray(image, np.float32), label
  roi = tuple(int(r) for r in roi)
  (image, label), = transforms.rand_crop_by_pos_neg_label(
      transforms.spatial_pad(image, roi), transforms.spatial_pad(label[None], roi), roi,
      task.sampling.pos, task.sampling.neg, 1, rng)
  image, label = _flips([image, label], aug, task.ndim, rng)
  if aug.rot90_prob and roi[0] == roi[1]:
    image, label = transforms.rand_rot90([image, label], aug.rot90_prob, 3, rng)
  if aug.scale_prob:
    image = transforms.rand_scale_intensity(image, aug.scale_factor, aug.scale_prob, rng)
  if aug.shift_prob:
    image = transforms.rand_shift_intensity(image, aug.shift_offset, aug.shift_prob, rng)
  return np.ascontiguousarray(image, np.float32), np.ascontiguousarray(label[0], np.int32)


def custom_task(kind, ndim, in_channels, classes, roi, name="custom", modality="unknown"):
  """A registry-compatible tasks.Task for user data (task=custom).

  classes: names (segmentation starts with "background"; regression: ()) or their count.
  Preprocessing {"template": "custom", "intensity": "auto"}; segmentation patches pos 1 /
  neg 1. modality is metadata (a tasks.MODALITY_GROUPS key).
  """
  segmentation = kind == "segmentation"
  if isinstance(classes, int):
    classes = (("background",) * segmentation
               + tuple(f"class {i}" for i in range(int(segmentation), classes)))
  return tasks.Task(
      name=name, title=f"custom {kind} data", modality=modality, ndim=ndim, kind=kind,
      classes=tuple(classes), in_channels=in_channels, split="user data",
      preprocessing={"template": "custom", "intensity": "auto"}, roi=tuple(roi),
      sampling=tasks.Sampling(pos=1, neg=1), optimizer=tasks.Optimizer(),
      schedule=tasks.Schedule(epochs=1), inference=tasks.Inference(),
      metrics=tasks.METRICS.get(kind, ()))


def task_record(task):
  """What rebuilds `task` (`from_task_record`), as JSON: a registry task's name, or the fields
  of custom data's task, with the run's roi."""
  if task.name in tasks.TASKS and dataclasses.replace(tasks.get(task.name), roi=task.roi) == task:
    return {"name": task.name, "roi": list(task.roi)}
  record = {"name": "custom", "kind": task.kind, "ndim": task.ndim,
            "in_channels": task.in_channels, "classes": list(task.classes),
            "modality": task.modality, "roi": list(task.roi)}
  if from_task_record(record) != dataclasses.replace(task, name="custom"):
    raise ValueError(f"task {task.name!r} is neither a registry task nor custom data's")
  return record


def from_task_record(record):
  """The tasks.Task a `task_record` describes (a registry task: its entry with the record's
  roi; custom data: the task custom_task makes of its fields)."""
  roi = tuple(record["roi"])
  if record["name"] != "custom":
    return dataclasses.replace(tasks.get(record["name"]), roi=roi)
  return custom_task(record["kind"], record["ndim"], record["in_channels"],
                     tuple(record["classes"]), roi, modality=record.get("modality", "unknown"))


def label_values(task):
  """The value written for each class in a label file: the file's own where task.label_map
  maps its values one to one (a BraTS 4 goes back to 4), else the class index."""
  values = np.arange(task.num_classes)
  if task.label_map and len(set(task.label_map.values())) == len(task.label_map):
    for value, index in task.label_map.items():
      values[index] = value
  return values


def _class_members(samples):
  """Balanced sampling: the sample indices of each class present, in class order."""
  labels = np.fromiter((s["label"] for s in samples), np.int64, len(samples))
  order = np.argsort(labels, kind="stable")
  _, starts = np.unique(labels[order], return_index=True)
  return np.split(order, starts[1:])


def make_batch(task, samples, roi, batch_size, seed, step, block=()):
  """The training batch of `step`, a pure function of (seed, step): per element a random
  `prepare`d sample through `augment`, with np.random.default_rng((seed, step, *block)) (a
  process's block of a batch fed by several: its index in `block`). A sample is
  drawn uniformly; with task.sampling.balanced (LUNA16) a class is drawn uniformly among the
  classes present, then a sample of it, so classes come 1:1 (the reference draws all positives
  and as many fresh negatives each epoch). Returns {'image': (B, *S, C) float32 channels-last,
  'label': (B, *roi) int32 for segmentation, (B,) int32 classes, (B, L) float32 multi-label
  targets or (B,) float32 values}."""
  rng = np.random.default_rng((seed, step, *block))
  members = _class_members(samples) if task.sampling.balanced else None
  images, labels = [], []
  for _ in range(batch_size):
    if members is None:
      index = rng.integers(len(samples))
    else:
      group = members[rng.integers(len(members))]
      index = group[rng.integers(len(group))]
    image, label = augment(task, samples[index], roi, rng)
    images.append(np.moveaxis(image, 0, -1))
    labels.append(label)
  shapes = {image.shape for image in images}
  if len(shapes) > 1:
    raise ValueError(f"task {task.name!r}: inputs of shapes {sorted(shapes)} do not stack into "
                     "a batch; give every axis a size (roi or preprocessing resize)")
  dtype = {"segmentation": np.int32, "classification": np.int32}.get(task.kind, np.float32)
  return {"image": np.stack(images), "label": np.asarray(np.stack(labels), dtype)}
