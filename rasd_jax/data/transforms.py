"""Host-side transforms for downstream data: NumPy, channel-first arrays (C, *spatial), 2D or 3D.

Each function reproduces the standard semantics of the MONAI transform of the same name, the one
the reference fine-tuning chains use (CT-T and MR-T: README, "finetune"), so scores stay
comparable. They are pure: the random ones take an explicit `np.random.Generator`, so a case's
augmentation is a function of its seed. Random draws are not bit-identical to MONAI's (a
different generator).
"""

import warnings

import nibabel as nib
import numpy as np
from scipy import ndimage

LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 R, G, B weights


def _check_same_spatial(image, label):
  if label is not None and image.shape[1:] != label.shape[1:]:
    raise ValueError(f"image {image.shape} and label {label.shape} differ in spatial shape "
                     "(both are channel-first)")


def _per_axis(value, ndim, name):
  """`value` as one int per spatial axis; a scalar applies to all axes."""
  values = np.full(ndim, value, int) if np.ndim(value) == 0 else np.asarray(value, int)
  if values.shape != (ndim,):
    raise ValueError(f"{name} {np.atleast_1d(value).tolist()} needs {ndim} values, one per "
                     "spatial axis")
  return values


def reorient_to_ras(image, affine):
  """(image, affine) with voxel axes permuted and flipped to RAS+ (MONAI Orientation("RAS")).

  Every voxel keeps its world position: new_affine @ new_index == affine @ old_index.
  """
  if image.ndim != 4 or np.shape(affine) != (4, 4):
    raise ValueError(f"reorient_to_ras needs a (C, x, y, z) image and a 4x4 affine, got "
                     f"{image.shape} and {np.shape(affine)}")
  transform = nib.orientations.ornt_transform(nib.io_orientation(affine),
                                              nib.orientations.axcodes2ornt("RAS"))
  # apply_orientation acts on the leading axes, so the channel axis goes last for the call.
  moved = nib.orientations.apply_orientation(np.moveaxis(image, 0, -1), transform)
  new_affine = affine @ nib.orientations.inv_ornt_aff(transform, image.shape[1:])
  return np.ascontiguousarray(np.moveaxis(moved, -1, 0)), new_affine


def _sample(image, matrix, offset, shape, order):
  """Each channel at input index matrix @ out + offset, border values repeated; order 0 keeps
  the dtype (labels), order 1 gives float32."""
  dtype = image.dtype if order == 0 else np.float32
  return np.stack([
      ndimage.affine_transform(channel, matrix, offset=offset, output_shape=shape,
                               order=order, mode="nearest", output=dtype)
      for channel in image])


def resample_to_spacing(image, affine, spacing, order):
  """(image, affine) resampled to voxel size `spacing` (MONAI Spacing, diagonal=False).

  order 1 for images (bilinear), 0 for labels (nearest). As MONAI: voxel 0 stays at the same world
  position, the axis directions are kept, the output shape is round((n - 1) * old / new + 1), and
  samples past the last input voxel repeat the border.
  """
  ndim = image.ndim - 1
  affine = np.asarray(affine, float)
  if affine.shape != (ndim + 1, ndim + 1) or len(spacing) != ndim:
    raise ValueError(f"image {image.shape} needs a {ndim + 1}x{ndim + 1} affine and {ndim} "
                     f"spacings, got {affine.shape} and {tuple(spacing)}")
  old_spacing = np.linalg.norm(affine[:-1, :-1], axis=0)
  new_affine = affine.copy()
  new_affine[:-1, :-1] = affine[:-1, :-1] * (np.asarray(spacing, float) / old_spacing)
  # Output voxel index -> input voxel index; no translation as both share voxel 0.
  out_to_in = np.linalg.solve(affine, new_affine)
  corners = np.stack(np.meshgrid(*[(0.0, n - 1.0) for n in image.shape[1:]], indexing="ij"))
  corners = corners.reshape(ndim, -1)
  corners_out = np.linalg.solve(out_to_in[:-1, :-1], corners)
  shape = tuple(int(s) for s in np.round(np.ptp(corners_out, axis=1) + 1.0))
  return _sample(image, out_to_in[:-1, :-1], 0.0, shape, order), new_affine


def resample_to_grid(image, affine, target_affine, shape, order):
  """`image` (C, *S) on the voxel grid `affine`, sampled at the voxels of the grid
  (`target_affine`, `shape`): each output voxel takes the input at the same world position,
  border values repeated past the edges (order 0: nearest, keeps the dtype; 1: linear,
  float32). Where the grids differ by a voxel permutation, flips and a whole-voxel shift (a
  reorientation, a crop), every voxel is copied exactly."""
  out_to_in = np.linalg.solve(np.asarray(affine, float), np.asarray(target_affine, float))
  rounded = np.round(out_to_in)
  if np.allclose(out_to_in, rounded, atol=1e-4):
    out_to_in, order = rounded, 0
  return _sample(image, out_to_in[:-1, :-1], out_to_in[:-1, -1], tuple(shape), order)


def uncrop(array, start, end, shape, fill=0):
  """The inverse of crop_foreground's crop [start, end) (which may reach past the array):
  `array` (C, *box) placed back in a (C, *shape) array; elsewhere `fill`, one value or one
  per channel."""
  out = np.empty(array.shape[:1] + tuple(shape), array.dtype)
  out[...] = np.reshape(fill, (-1,) + (1,) * len(shape))
  start, end = np.asarray(start), np.asarray(end)
  low, high = np.maximum(start, 0), np.minimum(end, shape)
  out[(slice(None),) + tuple(map(slice, low, high))] = array[
      (slice(None),) + tuple(map(slice, low - start, high - start))]
  return out


def scale_intensity_range(image, a_min, a_max, b_min=0.0, b_max=1.0, clip=True):
  """Maps [a_min, a_max] linearly to [b_min, b_max] (MONAI ScaleIntensityRange; the CT window)."""
  if a_max == a_min:
    raise ValueError(f"scale_intensity_range needs a_min != a_max, got {a_min} == {a_max}")
  out = (image.astype(np.float32) - a_min) / (a_max - a_min) * (b_max - b_min) + b_min
  return np.clip(out, b_min, b_max) if clip else out


def _z_score(x, nonzero):
  mask = x != 0 if nonzero else np.ones(x.shape, bool)
  if not mask.any():  # MONAI leaves an all-zero input unchanged
    return x
  values = x[mask]
  std = values.std()
  # MONAI divides by 1 when the std is 0, so a constant region becomes 0 rather than NaN.
  x[mask] = (values - values.mean()) / (std if std > 0 else 1.0)
  return x


def normalize_intensity(image, nonzero=True, channel_wise=True):
  """Z-score (MONAI NormalizeIntensity): mean and std over the non-zero voxels if `nonzero`,
  which alone are changed (zeros stay 0); per channel if `channel_wise`. Returns float32."""
  out = image.astype(np.float32)  # a copy, so the in-place writes below never touch `image`
  if channel_wise:
    for channel in out:
      _z_score(channel, nonzero)
    return out
  return _z_score(out, nonzero)


def _crop_pad(array, start, end):
  """array[..., start:end] per spatial axis; parts outside the array are zero padding."""
  shape = np.asarray(array.shape[1:])
  before, after = np.maximum(-start, 0), np.maximum(end - shape, 0)
  padded = np.pad(array, [(0, 0)] + list(zip(before, after)))
  return padded[(slice(None),) + tuple(slice(s, e) for s, e in zip(start + before, end + before))]


def crop_foreground(image, label=None, margin=0, k_divisible=1):
  """(image, label, (start, end)): both cropped to the bounding box of image > 0 in any channel
  (MONAI CropForeground, default select_fn, allow_smaller=True).

  The box grows by `margin` voxels (clipped to the image), then symmetrically (extra // 2 before)
  to a multiple of `k_divisible`; that part may reach outside the image and is zero padded.
  `start` can thus be negative and `end` past the shape.
  """
  _check_same_spatial(image, label)
  ndim = image.ndim - 1
  margin = _per_axis(margin, ndim, "margin")
  k = _per_axis(k_divisible, ndim, "k_divisible")
  foreground = np.argwhere(np.any(image > 0, axis=0))
  if len(foreground) == 0:
    raise ValueError(f"crop_foreground: image {image.shape} has no voxel > 0")
  start = np.maximum(foreground.min(0) - margin, 0)
  end = np.minimum(foreground.max(0) + margin + 1, image.shape[1:])
  size = end - start
  divisible = -(-size // k) * k
  start = start - (divisible - size) // 2
  end = start + divisible
  cropped_label = None if label is None else _crop_pad(label, start, end)
  return _crop_pad(image, start, end), cropped_label, (start, end)


def spatial_pad(array, roi, mode="constant"):
  """`array` padded to at least `roi` on each spatial axis, diff // 2 before (MONAI SpatialPad).
  `mode` is a np.pad mode; constant pads with 0."""
  roi = _per_axis(roi, array.ndim - 1, "roi")
  diff = np.maximum(roi - np.asarray(array.shape[1:]), 0)
  return np.pad(array, [(0, 0)] + [(d // 2, d - d // 2) for d in diff], mode=mode)


def rand_crop_by_pos_neg_label(image, label, roi, pos, neg, num_samples, rng, image_threshold=0.0):
  """`num_samples` (image, label) crops of size `roi` (MONAI RandCropByPosNegLabel).

  Each crop is centred on a random foreground voxel (label != 0 in any channel) with probability
  pos / (pos + neg), else on a random background voxel (label 0 and image > image_threshold in
  some channel, so padding and air are never picked). A centre is then moved just enough for the
  crop to stay inside the volume. If one kind of voxel is absent all centres come from the other,
  with a warning as in MONAI. The crops are views of the inputs.
  """
  _check_same_spatial(image, label)
  shape = np.asarray(image.shape[1:])
  roi = _per_axis(roi, len(shape), "roi")
  if np.any(roi > shape):
    raise ValueError(f"roi {tuple(roi.tolist())} is larger than image {image.shape}; "
                     "spatial_pad first")
  if pos < 0 or neg < 0 or pos + neg == 0:
    raise ValueError(f"pos and neg must be >= 0 and not both 0, got {pos} and {neg}")
  labelled = np.any(label != 0, axis=0).ravel()
  foreground = np.flatnonzero(labelled)
  background = np.flatnonzero(np.any(image > image_threshold, axis=0).ravel() & ~labelled)
  pos_ratio = pos / (pos + neg)
  if len(foreground) == 0 and len(background) == 0:
    raise ValueError(f"rand_crop_by_pos_neg_label: no foreground and no background voxel in "
                     f"image {image.shape} (image_threshold {image_threshold})")
  if len(foreground) == 0 or len(background) == 0:
    # One text for every case, so Python's default filter shows it once, not every batch.
    warnings.warn("a sample has no foreground or no background voxels: its crops are all "
                  "centred in the non-empty set (not class balanced)")
    pos_ratio = float(len(background) == 0)
  # The valid centres c satisfy 0 <= c - roi // 2 and c - roi // 2 + roi <= shape.
  low, high = roi // 2, shape - roi + roi // 2
  crops = []
  for _ in range(num_samples):
    indices = foreground if rng.random() < pos_ratio else background
    centre = np.unravel_index(indices[rng.integers(len(indices))], tuple(shape))
    start = np.clip(centre, low, high) - roi // 2
    box = (slice(None),) + tuple(slice(s, s + r) for s, r in zip(start, roi))
    crops.append((image[box], label[box]))
  return crops


def _check_arrays(arrays):
  if len({a.shape[1:] for a in arrays}) > 1:
    raise ValueError(f"arrays differ in spatial shape: {[a.shape for a in arrays]}")


def rand_flip(arrays, prob, rng, axes=None):
  """With probability `prob`, all `arrays` (image, label, ...) flipped along the spatial `axes`
  (an int or a tuple; None = every spatial axis), as MONAI RandFlip(spatial_axis=axes).
  The reference chains flip each axis independently: one call per axis."""
  _check_arrays(arrays)
  if rng.random() >= prob:
    return list(arrays)
  spatial = tuple(range(arrays[0].ndim - 1)) if axes is None else np.atleast_1d(axes)
  return [np.flip(a, tuple(int(ax) + 1 for ax in spatial)) for a in arrays]


def rand_rot90(arrays, prob, max_k, rng, spatial_axes=(0, 1)):
  """With probability `prob`, all `arrays` rotated by k * 90 degrees, k uniform in 1..max_k, in the
  plane of `spatial_axes`, as MONAI RandRotate90 (same direction as np.rot90)."""
  _check_arrays(arrays)
  if rng.random() >= prob:
    return list(arrays)
  k = int(rng.integers(max_k)) + 1
  return [np.rot90(a, k, axes=tuple(ax + 1 for ax in spatial_axes)) for a in arrays]


def rand_scale_intensity(image, factor, prob, rng):
  """With probability `prob`, image * (1 + f), f uniform in [-factor, factor)
  (MONAI RandScaleIntensity)."""
  if rng.random() >= prob:
    return image
  return image * (1.0 + float(rng.uniform(-factor, factor)))  # float: keeps float32


def rand_shift_intensity(image, offset, prob, rng):
  """With probability `prob`, image + o, o uniform in [-offset, offset)
  (MONAI RandShiftIntensity)."""
  if rng.random() >= prob:
    return image
  return image + float(rng.uniform(-offset, offset))


def rand_spatial_crop(image, size, rng):
  """A random window of `size` (None: the whole axis) of `image`, its start uniform in
  0..n - size on each axis (MONAI RandSpatialCrop, random_center, fixed size). Axes already of
  that size draw nothing. A view of the input."""
  shape = image.shape[1:]
  size = [n if s is None else int(s) for n, s in zip(shape, size)]
  if len(size) != len(shape) or any(s > n for s, n in zip(size, shape)):
    raise ValueError(f"rand_spatial_crop: size {tuple(size)} does not fit in image {image.shape}")
  starts = [int(rng.integers(n - s + 1)) if n > s else 0 for n, s in zip(shape, size)]
  return image[(slice(None),) + tuple(slice(b, b + s) for b, s in zip(starts, size))]


def _grey_mean(image):
  """PIL's mean grey level of a [0, 1] image: ITU-R 601 luma of RGB (else the values), as the
  nearest of 256 levels (ImageStat mean + 0.5, truncated)."""
  grey = np.tensordot(LUMA, image, axes=1) if image.shape[0] == 3 else image
  return float(np.floor(float(grey.mean()) * 255.0 + 0.5)) / 255.0  # a Python float keeps float32


def rand_brightness_contrast(image, brightness, contrast, prob, rng, mode):
  """Brightness, then contrast, each with probability `prob`, on a [0, 1] image; clipped to
  [0, 1]. mode "shift" (the CC-CCII / MRNet reference): x + b, then * c, b and c - 1 whole
  percents drawn uniformly in +-brightness and +-contrast (random.randint(-7, 7) / 100), one clip
  at the end. mode "enhance" (PIL ImageEnhance, the DRAC reference): x * u, then
  m + u' * (x - m) with m the image's mean grey, u and u' uniform in 1 +- brightness and
  1 +- contrast, clipped after each as PIL's 8-bit images are. Returns float32."""
  image = image.astype(np.float32)
  if mode == "shift":
    if rng.random() < prob:
      image = image + int(rng.integers(-round(100 * brightness), round(100 * brightness) + 1)) / 100
    if rng.random() < prob:
      image = image * (1 + int(rng.integers(-round(100 * contrast),
                                            round(100 * contrast) + 1)) / 100)
    return np.clip(image, 0.0, 1.0)
  if mode != "enhance":
    raise ValueError(f"rand_brightness_contrast: mode {mode!r} is not 'shift' or 'enhance'")
  if rng.random() < prob:
    image = np.clip(image * float(rng.uniform(1 - brightness, 1 + brightness)), 0.0, 1.0)
  if rng.random() < prob:
    mean = _grey_mean(image)
    image = np.clip(mean + float(rng.uniform(1 - contrast, 1 + contrast)) * (image - mean),
                    0.0, 1.0)
  return image


def resize(image, size, order=1):
  """`image` (C, *spatial) resized to `size` (None keeps that axis), as torch interpolate with
  align_corners=False (MONAI Resize without anti-aliasing): output voxel centres map to
  (i + 0.5) * n_in / n_out - 0.5, and borders repeat the edge. order 1: (bi/tri)linear;
  order 0: the nearest input voxel centre. Returns float32 for order 1, the input dtype for 0."""
  shape = image.shape[1:]
  if len(size) != len(shape):
    raise ValueError(f"resize: size {tuple(size)} needs one entry per spatial axis of "
                     f"{image.shape}")
  size = tuple(n if s is None else int(s) for n, s in zip(shape, size))
  if min(size) < 1:
    raise ValueError(f"resize: sizes must be >= 1, got {size}")
  if size == shape:
    return image.astype(np.float32) if order else image
  scale = np.asarray(shape, float) / np.asarray(size, float)
  return _sample(image, scale, 0.5 * scale - 0.5, size, order)
