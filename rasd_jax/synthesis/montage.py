"""Montages of samples as RGB images (Pillow): the synthesize job's montage.png and the
explorer notebook."""

import numpy as np
from PIL import Image


def label_colours(label, num_labels):
  """A fixed, well-spread colour per label (golden-ratio hues, full saturation)."""
  h = ((np.arange(num_labels) * 0.618034) % 1.0) * 6
  rgb = np.clip(np.stack([np.abs(h - 3) - 1, 2 - np.abs(h - 2), 2 - np.abs(h - 4)], -1), 0, 1)
  return (rgb[np.asarray(label)] * 255).astype(np.uint8)


def _grey(image):
  return np.repeat((np.clip(np.asarray(image), 0, 1) * 255).astype(np.uint8)[..., None], 3, -1)


def _panels(image, label, num_labels):
  """Image and label panels of one sample: 2D as is, 3D as three mid-slices."""
  if image.ndim == 2:
    views = [(image, label)]
  else:
    views = [(np.take(image, image.shape[a] // 2, axis=a),
              np.take(label, label.shape[a] // 2, axis=a)) for a in range(3)]
  return ([_grey(i) for i, _ in views] + [label_colours(l, num_labels) for _, l in views])


def montage(images, labels, num_labels, columns=None, gap=2):
  """RGB montage: one row of panels per sample (image views, then label views).

  images: [N, *spatial] (one channel) in [0, 1]; labels: [N, *spatial] ints.
  For 2D samples several samples share a row (`columns` pairs, default up to 4).
  """
  rows = [np.concatenate(_with_gaps(_panels(i, l, num_labels), gap, axis=1), axis=1)
          for i, l in zip(images, labels)]
  if np.asarray(images).ndim == 3:  # 2D samples: pack rows side by side.
    columns = columns or min(4, len(rows))
    rows = rows + [np.zeros_like(rows[0])] * (-len(rows) % columns)
    rows = [np.concatenate(_with_gaps(rows[r:r + columns], gap * 4, axis=1), axis=1)
            for r in range(0, len(rows), columns)]
  return Image.fromarray(np.concatenate(_with_gaps(rows, gap, axis=0), axis=0))


def _with_gaps(panels, gap, axis):
  out = []
  for p in panels:
    if out:
      shape = list(p.shape)
      shape[axis] = gap
      out.append(np.zeros(shape, np.uint8))
    out.append(p)
  return out
