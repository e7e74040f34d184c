"""Two small real segmentation tasks that work offline, from data the pip wheels in
requirements.txt carry: brain tissue in 3D (nilearn's MNI152 template) and nuclei in 2D (stardist's
example fluorescence image). They let the demo show pre-training on real images with no download.

Arrays are channel-first like transforms.py: image (1, *spatial) float32 in [0, 1], label
(1, *spatial) uint8 class indices. `split` cuts a task into spatially disjoint train / val / test
regions, so a score on the test region is never measured on pixels seen in training.
"""

import dataclasses
import importlib.util
import json
import os

import nibabel as nib
import numpy as np
from PIL import Image

# nilearn's own brain-mask threshold (load_mni152_brain_mask) on the T1 template scaled to [0, 1].
BRAIN_THRESHOLD = 0.2
SPLIT_NAMES = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class DemoTask:
  """One image with its labels, or a region of it (see `split`)."""
  image: np.ndarray  # (1, *spatial) float32 in [0, 1]
  label: np.ndarray  # (1, *spatial) uint8, indices into class_names
  affine: np.ndarray  # (ndim + 1, ndim + 1) voxel index -> world position
  class_names: tuple
  split_axis: int  # spatial axis along which `split` cuts
  gap: int  # voxels left out between neighbouring regions
  bounds: tuple  # (start, stop) along split_axis in the full image
  instances: np.ndarray | None = None  # (1, *spatial) int32 object ids, 0 = none; nuclei only


def _package_dir(package):
  """Folder of an installed package, found without importing it: importing stardist would load
  csbdeep and numba, and TensorFlow where it is installed."""
  spec = importlib.util.find_spec(package)
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(f"the demo data ships with the {package} wheel, which is not "
                            "installed: pip install -r requirements.txt")
  return list(spec.submodule_search_locations)[0]


def _data_file(package, relative_path):
  path = os.path.join(_package_dir(package), relative_path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{path} is missing; it ships with the {package} wheel: "
                            "pip install --force-reinstall -r requirements.txt")
  return path


def _scale_to_unit(array):
  array = array.astype(np.float32)
  return (array - array.min()) / (array.max() - array.min())


def _mni152(name):
  image = nib.load(_data_file(
      "nilearn", f"datasets/data/mni_icbm152_{name}_tal_nlin_sym_09a_converted.nii.gz"))
  return _scale_to_unit(np.asarray(image.dataobj)), image.affine


def brain_tissue():
  """3D brain tissue segmentation on the MNI152 2009a symmetric T1 template, 1 mm, RAS+.

  Shape (1, 197, 233, 189). Labels: 0 background (T1 <= BRAIN_THRESHOLD, nilearn's brain mask
  of the skull-stripped template), else the most probable of grey matter (1), white matter (2)
  and the rest, 1 - p_gm - p_wm (3): nilearn ships no CSF map, and this rest is mostly CSF
  (ventricles, sulci), darker on T1. Cut into axial slabs (train lowest, with the cerebellum;
  test at the top), not hemispheres: the template is left-right symmetric, so one hemisphere
  mirrors the other and a flip would leak test data.
  """
  t1, affine = _mni152("t1")
  grey, _ = _mni152("gm")
  white, _ = _mni152("wm")
  tissue = np.argmax(np.stack([grey, white, 1.0 - grey - white]), axis=0) + 1
  label = np.where(t1 > BRAIN_THRESHOLD, tissue, 0).astype(np.uint8)
  return DemoTask(image=t1[None], label=label[None], affine=affine,
                  class_names=("background", "grey_matter", "white_matter", "rest"),
                  split_axis=2, gap=4, bounds=(0, t1.shape[2]))


def nuclei():
  """2D nuclei segmentation on stardist's example fluorescence image and its instance masks,
  from the 2018 Kaggle Data Science Bowl (stardist.data.test_image_nuclei_2d).

  Shape (1, 512, 512); affine is the identity (pixel units: the file states no pixel size). Labels:
  0 background, 1 nucleus; `instances` keeps the object ids. Cut into vertical bands (axis 1).
  """
  image = np.asarray(Image.open(_data_file("stardist", "data/images/img2d.tif")))
  instances = np.asarray(Image.open(_data_file("stardist", "data/images/mask2d.tif")))
  instances = instances.astype(np.int32)[None]
  return DemoTask(image=_scale_to_unit(image)[None], label=(instances > 0).astype(np.uint8),
                  affine=np.eye(3), class_names=("background", "nucleus"), split_axis=1,
                  gap=16, bounds=(0, image.shape[1]), instances=instances)


def _crop(task, start, stop):
  """The part of `task` in [start, stop) along its split axis, with the affine shifted so every
  voxel keeps its world position."""
  box = [slice(None)] * task.image.ndim
  box[1 + task.split_axis] = slice(start, stop)
  box = tuple(box)
  shift = np.eye(len(task.affine))
  shift[task.split_axis, -1] = start
  return dataclasses.replace(
      task, image=task.image[box], label=task.label[box], affine=task.affine @ shift,
      bounds=(task.bounds[0] + start, task.bounds[0] + stop),
      instances=None if task.instances is None else task.instances[box])


def split(task, fractions=(0.6, 0.2, 0.2)):
  """{"train", "val", "test"}: disjoint regions of `task`, in that order along task.split_axis.

  The extent of image > 0 along the axis (the brain, for the template; all of the nuclei image)
  is cut in the given fractions, with task.gap voxels dropped between neighbours so no voxel is
  shared and neighbours do not touch. Each region's `bounds` says where it lies in the image.
  """
  if len(fractions) != len(SPLIT_NAMES) or min(fractions) <= 0:
    raise ValueError(f"split needs {len(SPLIT_NAMES)} positive fractions, got {fractions}")
  other_axes = tuple(a for a in range(task.image.ndim) if a != 1 + task.split_axis)
  occupied = np.flatnonzero(np.any(task.image > 0, axis=other_axes))
  start, stop = occupied[0], occupied[-1] + 1
  usable = stop - start - task.gap * (len(fractions) - 1)
  edges = np.round(np.cumsum((0,) + tuple(fractions)) / sum(fractions) * usable).astype(int)
  regions = {}
  for i, name in enumerate(SPLIT_NAMES):
    offset = start + i * task.gap
    regions[name] = _crop(task, int(offset + edges[i]), int(offset + edges[i + 1]))
  return regions


# The quickstart's 2D samples. Both demo images have 1 mm (brain) or 1 pixel (nuclei) spacing
# in the plane.
SPACING = (1.0, 1.0)


def _slices(region, indices):
  return [{"image": region.image[..., z], "label": region.label[0, ..., z].astype(np.int32),
           "spacing": SPACING} for z in indices]


def _brain_slices(region, min_brain, count=None):
  """Slices of a slab holding at least `min_brain` brain; `count` evenly spaced, or all."""
  brain = (region.label[0] > 0).mean(axis=(0, 1))
  usable = np.flatnonzero(brain >= min_brain)
  if count is not None:
    usable = usable[np.linspace(0, len(usable) - 1, count).round().astype(int)]
  return _slices(region, usable)


def _tiles(image, label, side, min_foreground):
  """Non-overlapping side x side tiles of a 2D (1, H, W) image and (H, W) label whose
  foreground (label > 0) covers at least `min_foreground` of the tile (> 0: any)."""
  tiles = []
  for i in range(0, label.shape[0] - side + 1, side):
    for j in range(0, label.shape[1] - side + 1, side):
      box = (slice(i, i + side), slice(j, j + side))
      covered = (label[box] > 0).mean()
      if covered > 0 and covered >= min_foreground:
        tiles.append({"image": image[(slice(None),) + box], "label": label[box],
                      "spacing": SPACING})
  return tiles


def _whole(region):
  return [{"image": region.image, "label": region.label[0].astype(np.int32),
           "spacing": SPACING}]


def samples_2d(name, *, min_brain=0.1, val_slices=4, test_slices=8, tile=64, tile_brain=0.5):
  """({'train', 'val', 'test'}: lists of prepared 2D samples {'image' (1, H, W), 'label'
  (H, W), 'spacing'}, class names) of a demo task cut by `split`. Training images are
  `tile`-sided tiles, so that a few of them are few labels: "brain", tiles of the axial
  slices of the training slab (slices holding at least `min_brain` brain) that are at least
  `tile_brain` brain; "nuclei", tiles of the training band that hold a nucleus. Validation
  and test images are whole: "brain", `val_slices` / `test_slices` evenly spaced axial
  slices of their slabs; "nuclei", the validation and test bands."""
  if name == "brain":
    regions = split(brain_tissue())
    train = [t for s in _brain_slices(regions["train"], min_brain)
             for t in _tiles(s["image"], s["label"], tile, tile_brain)]
    data = {"train": train,
            "val": _brain_slices(regions["val"], min_brain, val_slices),
            "test": _brain_slices(regions["test"], min_brain, test_slices)}
  elif name == "nuclei":
    regions = split(nuclei())
    train = _tiles(regions["train"].image, regions["train"].label[0].astype(np.int32), tile, 0)
    data = {"train": train, "val": _whole(regions["val"]), "test": _whole(regions["test"])}
  else:
    raise ValueError(f"demo task {name!r}: 'brain' or 'nuclei'")
  return data, regions["train"].class_names


def write_decathlon(name, folder, **settings):
  """Writes the demo task `name` ("brain" or "nuclei", samples_2d with `settings`) as a
  Decathlon folder: 2D NIfTI images and labels (1 mm pixels) and `folder`/dataset.json with
  its training, validation and test lists. Returns the dataset.json path: the finetune job's
  and the suite's custom data (`data.json`)."""
  data, class_names = samples_2d(name, **settings)
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  os.makedirs(os.path.join(folder, "labels"), exist_ok=True)
  lists = {}
  for split, samples in data.items():
    lists[split] = []
    for i, sample in enumerate(samples):
      files = {key: f"{key}s/{split}_{i:03d}.nii.gz" for key in ("image", "label")}
      nib.save(nib.Nifti1Image(sample["image"][0].astype(np.float32), np.eye(4)),
               os.path.join(folder, files["image"]))
      nib.save(nib.Nifti1Image(sample["label"].astype(np.uint8), np.eye(4)),
               os.path.join(folder, files["label"]))
      lists[split].append(files)
  path = os.path.join(folder, "dataset.json")
  with open(path, "w") as f:
    json.dump({"name": name, "labels": {str(i): c for i, c in enumerate(class_names)},
               "training": lists["train"], "validation": lists["val"], "test": lists["test"]},
              f, indent=1)
  return path
