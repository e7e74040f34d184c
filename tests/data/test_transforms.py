import nibabel as nib
import numpy as np
from PIL import Image
from PIL import ImageEnhance
import pytest

from rasd_jax.data import transforms as T


def _world(affine, index):
  return (affine @ np.append(index, 1.0))[:3]


def test_reorient_to_ras_keeps_every_voxel_at_its_world_position():
  image = np.arange(4 * 5 * 6).reshape(1, 4, 5, 6)
  # Voxel axes (y, x, z) of an LPS scan: axis 0 points P, axis 1 points L, axis 2 points S.
  affine = np.array([[0.0, -2.0, 0.0, 10.0],
                     [-1.5, 0.0, 0.0, 20.0],
                     [0.0, 0.0, 3.0, -5.0],
                     [0.0, 0.0, 0.0, 1.0]])
  ras, ras_affine = T.reorient_to_ras(image, affine)
  assert nib.aff2axcodes(ras_affine) == ("R", "A", "S")
  assert ras.shape == (1, 5, 4, 6)
  for old in [(0, 0, 0), (1, 2, 3), (3, 4, 5)]:
    new = np.argwhere(ras[0] == image[(0,) + old])[0]
    np.testing.assert_allclose(_world(ras_affine, new), _world(affine, old))


def test_resample_2mm_to_1mm_shape_affine_and_values():
  affine = np.diag([2.0, 2.0, 2.0, 1.0])
  affine[:3, 3] = (1.0, 2.0, 3.0)
  ramp = np.broadcast_to(2.0 * np.arange(3.0)[:, None, None], (3, 4, 5))[None]  # world x - 1
  image, new_affine = T.resample_to_spacing(ramp, affine, (1.0, 1.0, 1.0), order=1)
  assert image.shape == (1, 5, 7, 9) and image.dtype == np.float32
  expected = np.diag([1.0, 1.0, 1.0, 1.0])
  expected[:3, 3] = (1.0, 2.0, 3.0)  # voxel 0 stays where it was
  np.testing.assert_allclose(new_affine, expected)
  np.testing.assert_allclose(image[0, :, 3, 4], np.arange(5.0), atol=1e-5)  # linear is exact

  label = (ramp > 1).astype(np.uint8)
  resampled, _ = T.resample_to_spacing(label, affine, (1.0, 1.0, 1.0), order=0)
  assert resampled.dtype == np.uint8 and set(np.unique(resampled)) == {0, 1}


def test_resample_output_shape_rounds_as_monai():
  image = np.zeros((1, 10, 10))
  # round((10 - 1) * 1 / 1.5 + 1) = 7 and round(9 * 1 / 4 + 1) = 3 (3.25).
  out, new_affine = T.resample_to_spacing(image, np.eye(3), (1.5, 4.0), order=1)
  assert out.shape == (1, 7, 3)
  np.testing.assert_allclose(np.diag(new_affine), (1.5, 4.0, 1.0))
  with pytest.raises(ValueError, match="spacings"):
    T.resample_to_spacing(image, np.eye(3), (1.0, 1.0, 1.0), order=1)


def test_scale_intensity_range_is_a_clipped_ct_window():
  hu = np.array([[-1000.0, -175.0, 37.5, 250.0, 3000.0]])
  np.testing.assert_allclose(T.scale_intensity_range(hu, -175, 250), [[0, 0, 0.5, 1, 1]])
  unclipped = T.scale_intensity_range(hu, -175, 250, clip=False)
  assert unclipped[0, 0] < 0 and unclipped[0, -1] > 1


def test_normalize_intensity_uses_nonzero_voxels_per_channel():
  image = np.array([[0.0, 1.0, 3.0, 0.0],
                    [0.0, 5.0, 5.0, 0.0],   # std 0: divided by 1, as MONAI
                    [0.0, 0.0, 0.0, 0.0]])  # no non-zero voxel: unchanged
  out = T.normalize_intensity(image)
  np.testing.assert_allclose(out, [[0, -1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
  assert out.dtype == np.float32 and image[0, 1] == 1.0  # input untouched
  everything = T.normalize_intensity(np.array([[1.0, 3.0], [0.0, 0.0]]), nonzero=False,
                                     channel_wise=False)
  np.testing.assert_allclose(everything, [[0, 2 / np.sqrt(1.5)], [-1 / np.sqrt(1.5)] * 2])


def test_crop_foreground_margin_and_k_divisible():
  image = np.zeros((1, 10, 10))
  image[0, 3:5, 4:7] = 1.0
  label = np.arange(100).reshape(1, 10, 10)
  # Box [3, 5) x [4, 7), margin 1 -> [2, 6) x [3, 8), sizes (4, 5) -> (4, 8): 3 more, 1 before.
  cropped, cropped_label, (start, end) = T.crop_foreground(image, label, margin=1, k_divisible=4)
  np.testing.assert_array_equal(start, (2, 2))
  np.testing.assert_array_equal(end, (6, 10))
  np.testing.assert_array_equal(cropped, image[:, 2:6, 2:10])
  np.testing.assert_array_equal(cropped_label, label[:, 2:6, 2:10])


def test_crop_foreground_pads_a_box_reaching_outside():
  image = np.zeros((1, 6, 6))
  image[0, 0, 0:3] = 2.0
  # Box [0, 1) x [0, 3) -> sizes (4, 4): axis 0 starts at -1, one row of zero padding.
  cropped, _, (start, end) = T.crop_foreground(image, None, k_divisible=4)
  np.testing.assert_array_equal(start, (-1, 0))
  np.testing.assert_array_equal(end, (3, 4))
  np.testing.assert_array_equal(cropped[:, 0], 0.0)
  np.testing.assert_array_equal(cropped[:, 1:], image[:, 0:3, 0:4])
  with pytest.raises(ValueError, match="no voxel"):
    T.crop_foreground(np.zeros((1, 4, 4)))
  with pytest.raises(ValueError, match=r"\(1, 4, 5\)"):
    T.crop_foreground(image, np.zeros((1, 4, 5)))


def test_spatial_pad_puts_half_before():
  array = np.ones((2, 3, 5))
  padded = T.spatial_pad(array, (6, 4))
  assert padded.shape == (2, 6, 5)  # never cropped
  np.testing.assert_array_equal(padded[:, 1:4], array)  # diff 3: 1 before, 2 after
  assert padded.sum() == array.sum()
  with pytest.raises(ValueError, match="roi"):
    T.spatial_pad(array, (6, 4, 4))


def _volume(size=20):
  """An image whose value is 1 + the flat voxel index, so a crop tells where it came from."""
  return np.arange(1, size ** 3 + 1, dtype=np.float32).reshape(1, size, size, size)


def _position(image_crop, voxel, size=20):
  return np.unravel_index(int(image_crop[(0,) + voxel]) - 1, (size,) * 3)


def test_pos_crops_are_centred_on_foreground_and_inside():
  image, label = _volume(), np.zeros((1, 20, 20, 20), np.uint8)
  label[0, 8:11, 9:12, 7:10] = 1
  label[0, 0, 0, 0] = label[0, 19, 19, 19] = 2  # corners: centres must move inwards
  crops = T.rand_crop_by_pos_neg_label(image, label, (6, 6, 6), 1, 0, 32, np.random.default_rng(0))
  assert len(crops) == 32
  corners = 0
  for image_crop, label_crop in crops:
    assert image_crop.shape == label_crop.shape == (1, 6, 6, 6)
    start = np.array(_position(image_crop, (0, 0, 0)))
    assert np.all(start >= 0) and np.all(start + 6 <= 20)
    np.testing.assert_array_equal(label_crop, label[:, start[0]:start[0] + 6,
                                                    start[1]:start[1] + 6, start[2]:start[2] + 6])
    if label_crop.max() == 2:
      corners += 1
    else:
      assert label_crop[0, 3, 3, 3] == 1  # the centre (roi // 2) is the foreground voxel drawn
  assert 0 < corners < 32


def test_neg_crops_avoid_label_and_low_image():
  image, label = _volume(), np.zeros((1, 20, 20, 20), np.uint8)
  image[:, :10] = 0  # e.g. padding or air after the CT window
  label[0, 12:20] = 1
  crops = T.rand_crop_by_pos_neg_label(image, label, (2, 2, 2), 0, 1, 16, np.random.default_rng(1))
  for image_crop, label_crop in crops:
    assert image_crop[0, 1, 1, 1] > 0 and label_crop[0, 1, 1, 1] == 0
    assert 10 <= _position(image_crop, (1, 1, 1))[0] < 12


def test_pos_neg_crops_are_deterministic_for_a_seed():
  image, label = _volume(), (_volume() % 7 == 0).astype(np.uint8)
  def draw(seed):
    crops = T.rand_crop_by_pos_neg_label(image, label, (4, 4, 4), 1, 1, 4,
                                         np.random.default_rng(seed))
    return np.stack([c for c, _ in crops])
  np.testing.assert_array_equal(draw(3), draw(3))
  assert not np.array_equal(draw(3), draw(4))


def test_pos_neg_without_foreground_warns_and_takes_background():
  image, label = _volume(), np.zeros((1, 20, 20, 20))
  with pytest.warns(UserWarning, match="no foreground or no background"):
    crops = T.rand_crop_by_pos_neg_label(image, label, (4, 4, 4), 1, 0, 3,
                                         np.random.default_rng(0))
  assert len(crops) == 3
  with pytest.raises(ValueError, match="larger"):
    T.rand_crop_by_pos_neg_label(image, label, (4, 4, 40), 1, 1, 1, np.random.default_rng(0))
  with pytest.raises(ValueError, match="label"):
    T.rand_crop_by_pos_neg_label(image, label[:, :4], (4, 4, 4), 1, 1, 1,
                                 np.random.default_rng(0))


def test_flip_and_rot90_keep_image_and_label_aligned():
  rng = np.random.default_rng(0)
  image = rng.random((2, 5, 6, 7))
  label = (image[:1] > 0.5).astype(np.uint8)
  flipped, flipped_label = T.rand_flip([image, label], 1.0, rng, axes=1)
  np.testing.assert_array_equal(flipped, image[:, :, ::-1])
  np.testing.assert_array_equal(flipped_label, flipped[:1] > 0.5)
  everything, _ = T.rand_flip([image, label], 1.0, rng)
  np.testing.assert_array_equal(everything, image[:, ::-1, ::-1, ::-1])
  kept, _ = T.rand_flip([image, label], 0.0, rng)
  assert kept is image

  rotated, rotated_label = T.rand_rot90([image, label], 1.0, 1, rng)
  np.testing.assert_array_equal(rotated, np.rot90(image, 1, axes=(1, 2)))
  assert rotated.shape == (2, 6, 5, 7)
  np.testing.assert_array_equal(rotated_label, rotated[:1] > 0.5)
  for _ in range(8):
    rotated, rotated_label = T.rand_rot90([image, label], 0.5, 3, rng)
    np.testing.assert_array_equal(rotated_label, rotated[:1] > 0.5)
  with pytest.raises(ValueError, match="spatial shape"):
    T.rand_flip([image, label[:, :4]], 1.0, rng)


def test_intensity_shift_and_scale_are_bounded_and_keep_float32():
  rng = np.random.default_rng(0)
  image = np.linspace(0.1, 1.0, 10, dtype=np.float32)[None]
  shifted = T.rand_shift_intensity(image, 0.1, 1.0, rng)
  shift = shifted - image
  assert shifted.dtype == np.float32 and np.ptp(shift) < 1e-6 and abs(shift[0, 0]) <= 0.1
  scaled = T.rand_scale_intensity(image, 0.1, 1.0, rng)
  ratio = scaled / image
  assert scaled.dtype == np.float32 and np.ptp(ratio) < 1e-6 and abs(ratio[0, 0] - 1) <= 0.1
  assert T.rand_shift_intensity(image, 0.1, 0.0, rng) is image


def test_pos_crop_2d():
  image, label = np.ones((3, 8, 8)), np.zeros((1, 8, 8))
  label[0, 4, 5] = 1
  (image_crop, label_crop), = T.rand_crop_by_pos_neg_label(image, label, (4, 4), 1, 0, 1,
                                                          np.random.default_rng(2))
  assert image_crop.shape == (3, 4, 4) and label_crop[0, 2, 2] == 1


def test_resize_matches_align_corners_false_interpolation():
  row = np.arange(4.0)[None, None]  # (1, 1, 4)
  # Upsampling 4 -> 8: output i samples input (i + 0.5) / 2 - 0.5, the edges repeat.
  up = T.resize(row, (None, 8))
  assert up.shape == (1, 1, 8) and up.dtype == np.float32
  np.testing.assert_allclose(up[0, 0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
  # Downsampling 4 -> 2 averages neighbour pairs; None keeps the axis.
  np.testing.assert_allclose(T.resize(row, (1, 2))[0, 0], [0.5, 2.5])
  labels = np.array([[[0, 1, 2, 3]]], np.int32)
  np.testing.assert_array_equal(T.resize(labels, (1, 2), order=0)[0, 0], [1, 3])
  assert T.resize(labels, (1, 2), order=0).dtype == np.int32
  with pytest.raises(ValueError, match="one entry per spatial axis"):
    T.resize(row, (8,))


def test_rand_scale_intensity_multiplies_by_one_plus_a_uniform_factor():
  image = np.linspace(0.1, 1.0, 10, dtype=np.float32)[None]
  for seed in range(5):
    replay = np.random.default_rng(seed)
    applied = replay.random() < 0.5
    expected = image * (1 + replay.uniform(-0.3, 0.3)) if applied else image
    out = T.rand_scale_intensity(image, 0.3, 0.5, np.random.default_rng(seed))
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_rand_spatial_crop_starts_uniformly_inside():
  image = np.arange(6 * 5, dtype=np.float32).reshape(1, 6, 5)
  rng = np.random.default_rng(0)
  starts = []
  for _ in range(200):
    crop = T.rand_spatial_crop(image, (3, None), rng)
    assert crop.shape == (1, 3, 5)
    starts.append(int(crop[0, 0, 0]) // 5)
    np.testing.assert_array_equal(crop, image[:, starts[-1]:starts[-1] + 3])
  counts = np.bincount(starts, minlength=4)
  assert counts.size == 4 and counts.min() > 30  # 0..3, about 50 each
  state = rng.bit_generator.state
  assert T.rand_spatial_crop(image, (6, 5), rng) is not None
  assert rng.bit_generator.state == state  # a crop of the whole image draws nothing
  with pytest.raises(ValueError, match="does not fit"):
    T.rand_spatial_crop(image, (7, 5), rng)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_enhance_jitter_matches_pil_image_enhance(mode):
  """DRAC: PIL ImageEnhance.Brightness then Contrast, each p0.5, factors 1 +- 0.07 / 0.05;
  PIL works in 8 bits (a rounding per step), so the match is to 1.5 / 255."""
  pixels = np.random.default_rng(1).integers(0, 256, (12, 10, 3)).astype(np.uint8)
  picture = Image.fromarray(pixels).convert(mode)
  array = np.asarray(picture, np.float32) / 255.0
  image = np.moveaxis(array, -1, 0) if mode == "RGB" else array[None]
  applied = 0
  for seed in range(8):
    replay = np.random.default_rng(seed)
    expected = picture
    if replay.random() < 0.5:
      expected = ImageEnhance.Brightness(expected).enhance(replay.uniform(0.93, 1.07))
      applied += 1
    if replay.random() < 0.5:
      expected = ImageEnhance.Contrast(expected).enhance(replay.uniform(0.95, 1.05))
      applied += 1
    expected = np.asarray(expected, np.float32) / 255.0
    out = T.rand_brightness_contrast(image, 0.07, 0.05, 0.5, np.random.default_rng(seed),
                                     "enhance")
    assert out.dtype == np.float32
    out = np.moveaxis(out, 0, -1) if mode == "RGB" else out[0]
    np.testing.assert_allclose(out, expected, atol=1.5 / 255)
  assert 0 < applied < 16


def test_shift_jitter_adds_then_scales_whole_percents_and_clips():
  image = np.array([[0.0, 0.5, 0.98]], np.float32)
  for seed in range(5):
    replay = np.random.default_rng(seed)
    b = replay.integers(-7, 8) / 100 if replay.random() < 1.0 else 0.0
    c = 1 + replay.integers(-5, 6) / 100 if replay.random() < 1.0 else 1.0
    out = T.rand_brightness_contrast(image, 0.07, 0.05, 1.0, np.random.default_rng(seed), "shift")
    np.testing.assert_allclose(out, np.clip((image + b) * c, 0, 1), rtol=1e-6)
  with pytest.raises(ValueError, match="mode 'gamma'"):
    T.rand_brightness_contrast(image, 0.07, 0.05, 1.0, np.random.default_rng(0), "gamma")
