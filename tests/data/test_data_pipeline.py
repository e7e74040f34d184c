import dataclasses
import re

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from rasd_jax.data import pipeline
from rasd_jax.data import tasks


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
  task = dataclasses.replace(tasks.get("mrnet_acl"), roi=(None, 4, 4))
  paths = [_npy(tmp_path / f"{plane}.npy", np.full((depth, 8, 8), value, np.uint8))
           for plane, depth, value in (("axial", 5, 51), ("coronal", 7, 102),
                                       ("sagittal", 3, 255))]
  out = pipeline.prepare(task, {"image": paths, "label": 1, "id": "0001"})
  assert out["image"].shape == (3, pipeline.MRNET_DEPTH, 4, 4)
  np.testing.assert_allclose(out["image"].mean(axis=(1, 2, 3)), [0.2, 0.4, 1.0], rtol=1e-6)
  assert out["label"] == 1 and out["spacing"] is None
  with pytest.raises(ValueError, match="one file per plane"):
    pipeline.prepare(task, {"image": paths[:2], "label": 1})


def _coded_sample(shape):
  """Image values encode their voxel: 1 + 100 x + 10 y + z; the label holds the same codes
  (one voxel 0, so there is background)."""
  code = 1 + np.einsum("i...,i->...", np.indices(shape), [100, 10, 1][-len(shape):])
  label = code.astype(np.int32)
  label[(0,) * len(shape)] = 0
  return {"image": code[None].astype(np.float32), "label": label}


@pytest.mark.parametrize("name, shape, roi", [
    ("btcv", (6, 5, 4), (4, 4, 4)),      # CT-T: flips, rot90, shift
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


def test_augment_classification_flips_in_plane_only():
  task = tasks.get("cc_ccii")
  volume = np.indices((3, 4, 4)).astype(np.float32)
  image = (100 * volume[0] + 10 * volume[1] + volume[2])[None]
  outputs = [pipeline.augment(task, {"image": image, "label": 2}, None,
                              np.random.default_rng(seed)) for seed in range(8)]
  for out, label in outputs:
    assert out.shape == image.shape and label == 2
    np.testing.assert_array_equal(out[0] // 100, volume[0])  # slice order kept
  assert any(not np.array_equal(out, image) for out, _ in outputs)


def test_custom_task_and_auto_intensity(tmp_path):
  task = pipeline.custom_task("segmentation", 3, 1, 3, (4, 4, 4))
  assert task.classes == ("background", "class 1", "class 2") and task.layout == "decathlon_json"
  assert pipeline.custom_task("classification", 2, 1, ("a", "b"), (4, 4)).layout == "csv"
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
