"""Per-sample statistics of synthetic samples (NumPy, on the host).

Used by the fidelity tests, the explorer notebook and anyone comparing generators:
`sample_statistics(image, label)` returns one flat dict of floats per sample.
"""

import numpy as np
from scipy import ndimage


def label_statistics(label):
  label = np.asarray(label)
  present, counts = np.unique(label, return_counts=True)
  fractions = counts / label.size
  boundary = np.zeros(label.shape, bool)
  for axis in range(label.ndim):
    differs = np.diff(label, axis=axis) != 0
    lo = [slice(None)] * label.ndim
    hi = [slice(None)] * label.ndim
    lo[axis], hi[axis] = slice(0, -1), slice(1, None)
    boundary[tuple(lo)] |= differs
    boundary[tuple(hi)] |= differs
  fragments = [ndimage.label(label == k)[1] for k in present]
  return {
      "labels_present": float(len(present)),
      "largest_fraction": float(fractions.max()),
      "smallest_fraction": float(fractions.min()),
      "boundary_fraction": float(boundary.mean()),
      "fragments_per_label": float(np.mean(fragments)),
  }


def image_statistics(image, label):
  """`image` [*spatial] (one channel) against its label map."""
  image = np.asarray(image, np.float64)
  label = np.asarray(label)
  present = np.unique(label)
  means = np.array([image[label == k].mean() for k in present])
  stds = np.array([image[label == k].std() for k in present])
  gradient = np.mean([np.abs(np.diff(image, axis=a)).mean() for a in range(image.ndim)])
  p5, p95 = np.percentile(image, [5, 95])
  return {
      "mean": float(image.mean()),
      "std": float(image.std()),
      "p5": float(p5),
      "p95": float(p95),
      "region_contrast": float(means.std() / max(stds.mean(), 1e-12)),
      "mean_abs_gradient": float(gradient),
  }


def sample_statistics(image, label):
  return {**label_statistics(label), **image_statistics(image, label)}
