import dataclasses
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from rasd_jax.data import augmentation
from rasd_jax.data import pipeline
from rasd_jax.data import tasks


# The reference BTCV chain; a CC-CCII chain with a 3 px crop offset (for 24 px test slices).
BTCV = augmentation.Augmentation(flip_prob=0.2, rot90_prob=0.2, scale_prob=0.1, shift_prob=0.5)
CCII = augmentation.Augmentation(flip_prob=0.5, flip_axes=(0,), crop_offset=3, brightness=0.07,
                                 contrast=0.05)


def _nifti(path, array, affine):
  nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
  return str(path)


def _png(path, array):
  Image.fromarray(np.asarray(array, np.uint8)).save(path)
  return str(path)


def _npy(path, array):
  np.save(path, np.asarray(array))
  return str(path)


def _replace_prep(task, **changes):
  return dataclasses.replace(task, preprocessing={**task.preprocessing, **changes})


def test_ct_template_reorients_resamples_windows_and_crops(tmp_path):
  task = _replace_prep(tasks.get("btcv"), a_min=0, a_max=100, spacing=(1.0, 1.0, 1.5))
  # Built in RAS voxel order (I, J, K), 2 x 2 x 3 mm, then stored as LPS (axes 0 and 1 flipped).
  i, j, k = np.meshgrid(np.arange(4), np.arange(3), np.arange(2), indexing="ij")
  ras = 1.0 + i + 10 * j + 30 * k  # linear, so linear resampling is exact
  ras[3] = -1000.0  # the rightmost slab: below the window, cropped away as background
  ras_label = (i + j + k) % 3
  lps_affine = np.array([[-2.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 3.0, -5], [0, 0, 0, 1]])
  entry = {"image": _nifti(tmp_path / "ct.nii.gz", ras[::-1, ::-1].astype(np.int16), lps_affine),
           "label": _nifti(tmp_path / "seg.nii.gz", ras_label[::-1, ::-1].astype(np.uint8),
                           lps_affine),
           "id": "case0"}
  out = pipeline.prepare(task, entry)
  assert out["id"] == "case0" and out["spacing"] == (1.0, 1.0, 1.5)
  # Resampled to (7, 5, 3) voxels; RAS x index a >= 5 is background, so (5, 5, 3) remain.
  assert out["image"].shape == (1, 5, 5, 3) and out["image"].dtype == np.float32
  a, b, c = np.meshgrid(np.arange(5), np.arange(5), np.arange(3), indexing="ij")
  np.testing.assert_allclose(out["image"][0], (1 + a / 2 + 5 * b + 15 * c) / 100, atol=1e-5)
  assert out["label"].shape == (5, 5, 3) and out["label"].dtype == np.int32
  np.testing.assert_array_equal(out["label"][::2, ::2, ::2], ras_label[:3])


def test_mr_template_zscores_and_crops_to_a_multiple_of_the_roi(tmp_path):
  task = dataclasses.replace(tasks.get("whs_mr"), roi=(4, 4, 2))
  image = np.zeros((6, 6, 4), np.float32)
  image[1:4, 1:4, 1] = 1.0
  image[1, 1, 1] = image[3, 3, 1] = 2.0  # the voxels above the mean: the foreground box
  label = np.zeros((6, 6, 4), np.int16)
  label[1, 1, 1], label[2, 2, 1] = 205, 500  # MM-WHS values -> classes 1 and 3
  affine = np.diag([2.0, 2.0, 5.0, 1.0])
  out = pipeline.prepare(task, {"image": _nifti(tmp_path / "mr.nii.gz", image, affine),
                                "label": _nifti(tmp_path / "mr_seg.nii.gz", label, affine)})
  assert out["spacing"] == (2.0, 2.0, 5.0)  # MR-T does not resample
  # Box x, y 1..3, z 1 (3 x 3 x 1) grows to (4, 4, 2), extra voxels after it: x, y 1:5, z 1:3.
  assert out["image"].shape == (1, 4, 4, 2)
  values = image[1:4, 1:4, 1]
  expected = np.zeros((4, 4, 2))
  expected[:3, :3, 0] = (values - values.mean()) / values.std()
  np.testing.assert_allclose(out["image"][0], expected, rtol=1e-5)
  assert out["label"][0, 0, 0] == 1 and out["label"][1, 1, 0] == 3
  assert out["label"].sum() == 4


def test_label_values_outside_the_map_or_the_classes_name_the_file(tmp_path):
  affine = np.eye(4)
  image = _nifti(tmp_path / "img.nii.gz", np.ones((4, 4, 4), np.float32), affine)
  label = np.zeros((4, 4, 4), np.int16)
  label[0, 0, 0], label[1, 1, 1] = 205, 7
  bad_map = _nifti(tmp_path / "whs_bad.nii.gz", label, affine)
  whs = dataclasses.replace(tasks.get("whs_mr"), roi=(4, 4, 4))
  with pytest.raises(ValueError, match=re.escape(bad_map) + r".*\[7\]"):
    pipeline.prepare(whs, {"image": image, "label": bad_map})
  label = np.zeros((4, 4, 4), np.int16)
  label[1, 1, 1] = 4  # ACDC has classes 0..3
  bad_class = _nifti(tmp_path / "acdc_bad.nii.gz", label, affine)
  acdc = dataclasses.replace(tasks.get("acdc"), roi=(4, 4, 4))
  with pytest.raises(ValueError, match=re.escape(bad_class) + r".*\[4\] outside \[0, 4\)"):
    pipeline.prepare(acdc, {"image": image, "label": bad_class})


def test_fundus_takes_the_green_channel_and_binarises_the_mask(tmp_path):
  rgb = np.zeros((6, 8, 3), np.uint8)
  rgb[..., 0], rgb[..., 2] = 200, 30
  rgb[..., 1] = np.arange(48).reshape(6, 8) * 5
  mask = np.zeros((6, 8), np.uint8)
  mask[2:4, 3:5] = 128
  out = pipeline.prepare(tasks.get("drive"), {"image": _png(tmp_path / "f.png", rgb),
                                              "label": _png(tmp_path / "m.png", mask)})
  assert out["image"].shape == (1, 6, 8) and out["spacing"] == (1.0, 1.0)
  np.testing.assert_allclose(out["image"][0], rgb[..., 1] / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(out["label"], mask > 0)


def test_instance_masks_keep_their_ids(tmp_path):
  """GlaS / CRAG: the label is binarized, "instances" keeps the ids (object-level metrics)."""
  image = _png(tmp_path / "he.png", np.full((4, 5, 3), 200))
  ids = np.array([[0, 1, 1, 0, 7], [0, 1, 0, 0, 7], [2, 0, 0, 3, 0], [2, 2, 0, 3, 3]])
  out = pipeline.prepare(tasks.get("glas"), {"image": image,
                                             "label": _png(tmp_path / "anno.png", ids)})
  np.testing.assert_array_equal(out["label"], ids > 0)
  assert out["instances"].dtype == np.int32
  np.testing.assert_array_equal(out["instances"], ids)
  drive = pipeline.prepare(tasks.get("drive"), {"image": image,
                                                "label": _png(tmp_path / "v.png", ids > 0)})
  assert "instances" not in drive
  # Through a 3D chain the ids move with the label (RAS flip, foreground crop).
  task = _replace_prep(dataclasses.replace(tasks.get("acdc"), roi=(1, 1, 1)), binarize="nonzero")
  volume = np.zeros((5, 4, 3), np.float32)
  volume[1:4, 1:3, 1] = 1.0
  volume[1, 1, 1] = volume[3, 2, 1] = 3.0  # above the mean: the foreground box's corners
  objects = np.zeros((5, 4, 3), np.int16)
  objects[1, 1, 1], objects[2, 2, 1], objects[0, 0, 0] = 4, 9, 5  # the last one is cropped away
  affine = np.diag([-1.0, 1.0, 1.0, 1.0])  # x stored R->L: flipped to RAS
  out = pipeline.prepare(task, {"image": _nifti(tmp_path / "mr.nii.gz", volume, affine),
                                "label": _nifti(tmp_path / "mr_seg.nii.gz", objects, affine)})
  expected = objects[::-1][1:4, 1:3, 1:2]  # RAS, then the box x 1..3, y 1..2, z 1
  assert sorted(np.unique(expected)) == [0, 4, 9]
  assert out["instances"].shape == out["label"].shape == out["image"].shape[1:]
  np.testing.assert_array_equal(out["instances"], expected)
  np.testing.assert_array_equal(out["label"], expected > 0)


def test_2d_channel_fixes_and_minmax(tmp_path):
  shenzhen = dataclasses.replace(tasks.get("shenzhen"), roi=(4, 4))
  rgb = np.zeros((4, 4, 3), np.uint8)
  rgb[0, :, 0], rgb[1, :, 1], rgb[2:, :, 2] = 255, 255, 255  # rows red, green, blue, blue
  out = pipeline.prepare(shenzhen, {"image": _png(tmp_path / "rgb.png", rgb), "label": 1})
  red, green, blue = 0.299 * 255, 0.587 * 255, 0.114 * 255  # luma, then per-image min-max
  expected = np.array([(red - blue) / (green - blue), 1.0, 0.0, 0.0])[:, None] * np.ones(4)
  assert out["image"].shape == (1, 4, 4) and out["label"] == 1 and out["spacing"] is None
  np.testing.assert_allclose(out["image"][0], expected, rtol=1e-5, atol=1e-6)

  flat = pipeline.prepare(shenzhen, {"image": _png(tmp_path / "flat.png", np.full((4, 4), 9)),
                                     "label": 0})
  np.testing.assert_array_equal(flat["image"], np.zeros((1, 4, 4)))  # no NaN

  glas = tasks.get("glas")  # 3 channels, "scale" 0..255
  grey = _png(tmp_path / "grey.png", np.arange(16).reshape(4, 4) * 10)
  mask = _png(tmp_path / "grey_mask.png", np.eye(4) * 255)
  out = pipeline.prepare(glas, {"image": grey, "label": mask})
  assert out["image"].shape == (3, 4, 4)
  np.testing.assert_allclose(out["image"], np.broadcast_to(np.arange(16).reshape(4, 4) * 10 / 255,
                                                           (3, 4, 4)), rtol=1e-6)
  np.testing.assert_array_equal(out["label"], np.eye(4))
  with pytest.raises(ValueError, match=re.escape(grey) + r" has 2 channel\(s\).*takes 3"):
    pipeline.prepare(glas, {"image": [grey, grey], "label": mask})


def test_npy_volume_is_scaled_centre_cropped_and_resized(tmp_path):
  task = _replace_prep(dataclasses.replace(tasks.get("cc_ccii"), roi=(None, 3, 3)),
                       crop=(6, 6), resize=(3, 3))
  volume = np.broadcast_to(np.arange(10) * 10, (4, 10, 10)).astype(np.uint8)  # 10 * x
  out = pipeline.prepare(task, {"image": _npy(tmp_path / "ct.npy", volume), "label": 2})
  # Crop keeps x 2..7; 6 -> 3 samples x = 2.5, 4.5, 6.5; the depth (None) is kept.
  assert out["image"].shape == (1, 4, 3, 3) and out["label"] == 2
  np.testing.assert_allclose(out["image"][0, 1, 2], np.array([25, 45, 65]) / 255, rtol=1e-5)


def test_mrnet_planes_of_different_depths_become_three_channels(tmp_path):
  task = dataclasses.replace(tasks.get("mrnet_acl"), roi=(6, 4, 4))
  paths = [_npy(tmp_path / f"{plane}.npy", np.full((depth, 8, 8), value, np.uint8))
           for plane, depth, value in (("axial", 5, 51), ("coronal", 7, 102),
                                       ("sagittal", 3, 255))]
  out = pipeline.prepare(task, {"image": paths, "label": 1, "id": "0001"})
  assert out["image"].shape == (3, 6, 4, 4)
  np.testing.assert_allclose(out["image"].mean(axis=(1, 2, 3)), [0.2, 0.4, 1.0], rtol=1e-6)
  assert out["label"] == 1 and out["spacing"] is None
  with pytest.raises(ValueError, match="one file per plane"):
    pipeline.prepare(task, {"image": paths[:2], "label": 1})
  free_depth = dataclasses.replace(task, roi=(None, 4, 4))
  with pytest.raises(ValueError, match=r"come out as \[\(3, 4, 4\), \(5, 4, 4\), \(7, 4, 4\)\]"):
    pipeline.prepare(free_depth, {"image": paths, "label": 1})


@pytest.mark.parametrize("depth", [94, 58, 196, 65])
def test_ccii_scans_of_any_depth_come_out_with_the_roi_depth(tmp_path, depth):
  """A fixed slice count (roi, else resize) gives every scan the same depth, a multiple of 32
  as SwinUNETR needs; slices are resampled linearly, half-pixel centres (np.interp)."""
  task = _replace_prep(dataclasses.replace(tasks.get("cc_ccii"), roi=(64, 4, 4)),
                       crop=(8, 8), resize=(4, 4))
  volume = np.broadcast_to((np.arange(depth) * 250 // (depth - 1))[:, None, None],
                           (depth, 12, 12)).astype(np.uint8)
  out = pipeline.prepare(task, {"image": _npy(tmp_path / "ct.npy", volume), "label": 0})
  assert out["image"].shape == (1, 64, 4, 4)
  centres = np.clip((np.arange(64) + 0.5) * depth / 64 - 0.5, 0, depth - 1)
  expected = np.interp(centres, np.arange(depth), volume[:, 0, 0] / 255.0)
  np.testing.assert_allclose(out["image"][0, :, 2, 1], expected, rtol=1e-5, atol=1e-6)


def test_every_3d_image_level_task_has_a_fixed_input_divisible_by_32():
  for task in tasks.TASKS.values():
    if task.ndim == 3 and task.kind != "segmentation":
      size = pipeline._input_size(task)
      assert all(s is not None and s % 32 == 0 for s in size), (task.name, size)


def _coded_sample(shape):
  """Image values encode their voxel: 1 + 100 x + 10 y + z; the label holds the same codes
  (one voxel 0, so there is background)."""
  code = 1 + np.einsum("i...,i->...", np.indices(shape), [100, 10, 1][-len(shape):])
  label = code.astype(np.int32)
  label[(0,) * len(shape)] = 0
  return {"image": code[None].astype(np.float32), "label": label}


@pytest.mark.parametrize("name, shape, roi", [
    ("msd09", (6, 5, 4), (4, 4, 4)),     # CT-T: flips, rot90, shift
    ("acdc", (6, 5, 4), (4, 4, 2)),      # MR-T: flips
    ("drive", (7, 9), (4, 4)),           # fundus: joint flip, rot90, shift
    ("glas", (3, 9), (6, 6)),            # 2d-generic, padded to the roi along axis 0
])
def test_augment_segmentation_crops_a_roi_box_of_the_image(name, shape, roi):
  task = tasks.get(name)
  sample = _coded_sample(shape)
  for seed in range(5):
    image, label = pipeline.augment(task, sample, roi, np.random.default_rng(seed))
    assert image.shape == (1,) + roi and image.dtype == np.float32
    assert label.shape == roi and label.dtype == np.int32
    # Image and label moved together; the image only gained a constant shift.
    coded = label != 0
    offsets = image[0][coded] - label[coded]
    np.testing.assert_allclose(offsets, offsets[0], atol=1e-4)
    assert abs(offsets[0]) <= 0.1
    # The codes form a box of the image of size roi (or the whole axis, padded).
    kept = np.isin(sample["label"], label[coded])
    sides = [len(np.unique(np.indices(shape)[d][kept]))
             for d in range(len(shape))]
    assert sides == [min(s, r) for s, r in zip(shape, roi)]
    assert (image == 0).sum() == np.prod(roi) - np.prod(sides)  # zero only where padded


def test_augment_is_a_function_of_the_seed():
  task, sample = tasks.get("btcv"), _coded_sample((8, 8, 8))
  first = pipeline.augment(task, sample, (4, 4, 4), np.random.default_rng(7))
  again = pipeline.augment(task, sample, (4, 4, 4), np.random.default_rng(7))
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])


def test_augment_npy_template_flips_in_plane_only():
  task = dataclasses.replace(tasks.get("cc_ccii"), roi=(3, 4, 4), augmentation=None)
  volume = np.indices((3, 4, 4)).astype(np.float32)
  image = (100 * volume[0] + 10 * volume[1] + volume[2])[None]
  outputs = [pipeline.augment(task, {"image": image, "label": 2}, None,
                              np.random.default_rng(seed)) for seed in range(8)]
  for out, label in outputs:
    assert out.shape == image.shape and label == 2
    np.testing.assert_array_equal(out[0] // 100, volume[0])  # slice order kept
  assert any(not np.array_equal(out, image) for out, _ in outputs)


def _mirror_segmentation(aug, sample, pos, neg, seed):
  """augment's draws replayed with NumPy for a sample of exactly the roi (the patch is the whole
  volume; the crop still draws pos/neg and a centre)."""
  rng = np.random.default_rng(seed)
  image, label = sample["image"], sample["label"][None]
  foreground = np.count_nonzero(label)
  background = np.count_nonzero((image[0] > 0) & (label[0] == 0))
  rng.integers(foreground if rng.random() < pos / (pos + neg) else background)
  ndim = label.ndim - 1
  axes = range(ndim) if aug.flip_axes is None else aug.flip_axes
  if aug.flip_together:
    if rng.random() < aug.flip_prob:
      image, label = (np.flip(a, tuple(ax + 1 for ax in axes)) for a in (image, label))
  else:
    for axis in axes:
      if rng.random() < aug.flip_prob:
        image, label = np.flip(image, axis + 1), np.flip(label, axis + 1)
  if aug.rot90_prob and rng.random() < aug.rot90_prob:
    k = rng.integers(3) + 1
    image, label = np.rot90(image, k, (1, 2)), np.rot90(label, k, (1, 2))
  if aug.scale_prob and rng.random() < aug.scale_prob:
    image = image * (1 + rng.uniform(-aug.scale_factor, aug.scale_factor))
  if aug.shift_prob and rng.random() < aug.shift_prob:
    image = image + rng.uniform(-aug.shift_offset, aug.shift_offset)
  return image, label[0]


@pytest.mark.parametrize("name, aug", [
    ("btcv", augmentation.Augmentation(flip_prob=1, rot90_prob=1, scale_prob=1, shift_prob=1)),
    ("btcv", augmentation.Augmentation(flip_prob=0.5, rot90_prob=0.5, scale_prob=0.5,
                                       shift_prob=0.5, scale_factor=0.3, shift_offset=0.2)),
    ("drive", augmentation.TEMPLATES["fundus"]),
    ("acdc", augmentation.Augmentation(flip_prob=0.5, flip_axes=(2,))),
])
def test_segmentation_augmentation_matches_numpy(name, aug):
  task = dataclasses.replace(tasks.get(name), augmentation=aug)
  shape = (4,) * task.ndim
  sample = _coded_sample(shape)
  for seed in range(6):
    image, label = pipeline.augment(task, sample, shape, np.random.default_rng(seed))
    expected_image, expected_label = _mirror_segmentation(aug, sample, task.sampling.pos,
                                                          task.sampling.neg, seed)
    np.testing.assert_allclose(image[0], expected_image[0], rtol=1e-6)
    np.testing.assert_array_equal(label, expected_label)


def test_btcv_intensity_augmentation_rates_and_ranges():
  """BTCV's chain: RandScaleIntensity(0.1) p0.1 then RandShiftIntensity(0.1) p0.5. The image
  is a * code + b over the voxels: a - 1 and b tell which ran and by how much."""
  task = dataclasses.replace(tasks.get("btcv"), augmentation=BTCV)
  sample = _coded_sample((4, 4, 4))
  scaled = shifted = 0
  for seed in range(400):
    image, label = pipeline.augment(task, sample, (4, 4, 4), np.random.default_rng(seed))
    coded = label != 0
    (a, b), *_ = np.linalg.lstsq(np.stack([label[coded], np.ones(coded.sum())], 1),
                                 image[0][coded].astype(np.float64), rcond=None)
    assert abs(a - 1) <= 0.1 + 1e-6 and abs(b) <= 0.1 + 1e-4
    scaled += abs(a - 1) > 1e-6
    shifted += abs(b) > 1e-4
  assert abs(scaled / 400 - 0.1) < 0.05 and abs(shifted / 400 - 0.5) < 0.08


def _ccii_like(tmp_path, aug, depth=4):
  """A small CC-CCII: 24 px slices, centre crop 12 resized to 8 (the reference's 384 of 512
  resized to 256, scale 2/3), crop offset 3 source px = 2 input px."""
  task = _replace_prep(dataclasses.replace(tasks.get("cc_ccii"), roi=(depth, 8, 8),
                                           augmentation=aug), crop=(12, 12), resize=(8, 8))
  code = np.indices((depth, 24, 24))
  volume = (code[1] * 10 + code[2]).astype(np.uint8)  # 10 y + x, below 255
  entry = {"image": _npy(tmp_path / "ct.npy", volume), "label": 1}
  return task, entry


def test_classification_crop_offset_windows_the_training_margin(tmp_path):
  aug = augmentation.Augmentation(crop_offset=3)
  task, entry = _ccii_like(tmp_path, aug)
  val = pipeline.prepare(task, entry)
  train = pipeline.prepare(task, entry, training=True)
  # Margin 3 source px each side: an 18 px region resized to 12 (same 2/3 scale), whose centre
  # 8 px window is the validation input.
  assert val["image"].shape == (1, 4, 8, 8) and train["image"].shape == (1, 4, 12, 12)
  np.testing.assert_allclose(train["image"][..., 2:10, 2:10], val["image"], rtol=1e-6)
  starts = set()
  for seed in range(60):
    out, label = pipeline.augment(task, train, None, np.random.default_rng(seed))
    assert out.shape == (1, 4, 8, 8) and label == 1
    matches = [(y, x) for y in range(5) for x in range(5)
               if np.array_equal(out, train["image"][..., y:y + 8, x:x + 8])]
    assert len(matches) == 1
    starts.add(matches[0])
  for axis in range(2):  # offsets -2..2 px on each axis, all seen
    assert {start[axis] for start in starts} == set(range(5))
  # Without the margin (validation samples) there is nothing to move.
  out, _ = pipeline.augment(task, val, None, np.random.default_rng(0))
  np.testing.assert_array_equal(out, val["image"])
  no_crop = dataclasses.replace(task, preprocessing={**task.preprocessing, "crop": None})
  with pytest.raises(ValueError, match="crop_offset needs a preprocessing 'crop'"):
    pipeline.prepare(no_crop, entry, training=True)


def test_ccii_brightness_and_contrast_are_whole_percents(tmp_path):
  """CC-CCII: (x + b) * c, b in -0.07..0.07 and c in 0.95..1.05 by 0.01 steps
  (random.randint(-7, 7) / 100), slice flip p0.5; read back from two known voxels."""
  aug = dataclasses.replace(CCII, crop_offset=0)
  task = dataclasses.replace(tasks.get("cc_ccii"), roi=(2, 1, 1), augmentation=aug,
                             preprocessing={"template": "npy", "intensity": "scale",
                                            "a_min": 0, "a_max": 1})
  image = np.array([0.2, 0.6], np.float32).reshape(1, 2, 1, 1)
  brightness, contrast, flipped = set(), set(), 0
  for seed in range(300):
    out, _ = pipeline.augment(task, {"image": image, "label": 0}, None,
                              np.random.default_rng(seed))
    low, high = out[0, :, 0, 0]
    flipped += bool(low > high)
    low, high = sorted((low, high))
    c = (high - low) / 0.4
    b = low / c - 0.2
    assert abs(c * 100 - round(c * 100)) < 1e-3 and abs(b * 100 - round(b * 100)) < 1e-3
    contrast.add(round(c * 100) - 100)
    brightness.add(round(b * 100))
  assert brightness == set(range(-7, 8)) and contrast == set(range(-5, 6))
  assert 100 < flipped < 200


def test_classification_clips_to_the_unit_range(tmp_path):
  task, entry = _ccii_like(tmp_path, dataclasses.replace(CCII, brightness=0.5))
  sample = pipeline.prepare(task, entry, training=True)
  sample["image"] = sample["image"] * 4  # values up to ~4: clipped to 1
  for seed in range(10):
    out, _ = pipeline.augment(task, sample, None, np.random.default_rng(seed))
    assert out.min() >= 0 and out.max() <= 1 and out.shape == (1, 4, 8, 8)


def test_mrnet_planes_are_augmented_each_with_its_own_draws():
  aug = augmentation.Augmentation(flip_prob=0.5, flip_axes=(0,))
  task = dataclasses.replace(tasks.get("mrnet_acl"), roi=(3, 2, 2), augmentation=aug)
  plane = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 2, 2), np.float32)
  image = np.stack([plane, plane, plane])
  patterns = set()
  for seed in range(20):
    out, _ = pipeline.augment(task, {"image": image, "label": 0}, None,
                              np.random.default_rng(seed))
    patterns.add(tuple(bool(out[c, 0, 0, 0] == 2) for c in range(3)))
  assert len(patterns) > 4  # flipped planes vary independently (8 patterns possible)


def test_augmentation_of_prefers_the_task_own_then_the_template():
  btcv = tasks.get("btcv")
  assert augmentation.augmentation_of(dataclasses.replace(btcv, augmentation=None)) == \
      augmentation.TEMPLATES["CT-T"]
  assert augmentation.augmentation_of(dataclasses.replace(btcv, augmentation=BTCV)) is BTCV
  custom = pipeline.custom_task("classification", 3, 1, 2, (4, 4, 4))
  assert augmentation.augmentation_of(custom).flip_axes == (0, 1)
  with pytest.raises(ValueError, match="whole percents"):
    augmentation.Augmentation(brightness=0.075)
  with pytest.raises(ValueError, match="flip_prob must lie in"):
    augmentation.Augmentation(flip_prob=1.5)


def _label_samples(labels, shape=(2, 2)):
  """Classification samples whose image holds their index (so a batch tells which were drawn)."""
  return [{"image": np.full((1, *shape), i, np.float32), "label": label}
          for i, label in enumerate(labels)]


def test_balanced_sampling_draws_the_classes_one_to_one():
  task = dataclasses.replace(tasks.get("shenzhen"), roi=(2, 2), augmentation=
                             augmentation.Augmentation())
  task = dataclasses.replace(task, sampling=dataclasses.replace(task.sampling, balanced=True))
  labels = [0] * 45 + [1] * 5
  samples = _label_samples(labels)
  drawn = np.concatenate([pipeline.make_batch(task, samples, task.roi, 4, 3, step)["label"]
                          for step in range(200)])
  assert abs(drawn.mean() - 0.5) < 0.07  # 800 draws: sd 0.018; unbalanced would give 0.1
  batch, again = (pipeline.make_batch(task, samples, task.roi, 4, 3, 7) for _ in range(2))
  assert all(np.array_equal(batch[k], again[k]) for k in batch)
  indices = batch["image"][:, 0, 0, 0].astype(int)
  np.testing.assert_array_equal(np.asarray(labels)[indices], batch["label"])


def test_unbalanced_sampling_draws_uniformly_then_augments():
  """Today's order of draws: a case index, then its augmentation, per element."""
  task = dataclasses.replace(tasks.get("shenzhen"), roi=(2, 2), augmentation=None)
  samples = _label_samples([0] * 45 + [1] * 5)
  batch = pipeline.make_batch(task, samples, task.roi, 6, 5, 11)
  rng = np.random.default_rng((5, 11))
  for image in batch["image"]:
    assert image[0, 0, 0] == rng.integers(50)
    rng.random(2)  # the two flips of the 2d-generic template
  drawn = np.concatenate([pipeline.make_batch(task, samples, task.roi, 4, 3, step)["label"]
                          for step in range(200)])
  assert abs(drawn.mean() - 0.1) < 0.04


def test_custom_task_and_auto_intensity(tmp_path):
  task = pipeline.custom_task("segmentation", 3, 1, 3, (4, 4, 4))
  assert task.classes == ("background", "class 1", "class 2") and task.modality == "unknown"
  assert pipeline.custom_task("classification", 2, 1, ("a", "b"), (4, 4),
                              modality="MRI").modality_group == "MRI"
  affine = np.eye(4)
  label = _nifti(tmp_path / "seg.nii.gz", np.zeros((4, 4, 4), np.uint8), affine)
  unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(4, 4, 4)
  kept = pipeline.prepare(task, {"image": _nifti(tmp_path / "unit.nii.gz", unit, affine),
                                 "label": label})
  np.testing.assert_allclose(kept["image"][0], unit)  # already in [0, 1]: unchanged
  raw = unit * 300
  zscored = pipeline.prepare(task, {"image": _nifti(tmp_path / "raw.nii.gz", raw, affine),
                                    "label": label})
  values = raw[raw != 0]
  np.testing.assert_allclose(zscored["image"][0][raw != 0], (values - values.mean()) / values.std(),
                             rtol=1e-4, atol=1e-5)
  assert zscored["image"][0][0, 0, 0] == 0  # zeros stay 0
