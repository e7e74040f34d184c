"""Training augmentation as data: what each reference chain does to a training sample.

`Augmentation` lists the random transforms `pipeline.augment` applies; a task's own
(`task.augmentation`) or, when it has none, its preprocessing template's default
(`augmentation_of`). Values follow the reference chains (docs/protocol.md).

Segmentation, after the RandCropByPosNegLabel patch, in this order: RandFlip (`flip_prob`, each
of `flip_axes` on its own draw, or all together with `flip_together`), RandRotate90 (max_k 3,
axes 0 and 1, only where the patch is square there), RandScaleIntensity (x * (1 + f), f uniform
in [-scale_factor, scale_factor)), RandShiftIntensity (x + o, o uniform in [-shift_offset,
shift_offset)). SpatialPad has no switch: every chain pads a volume smaller than the roi before
the crop. The reference BTCV and WHS-CT chains leave SpatialPad out; there MONAI's
RandCropByPosNegLabel fails on such a volume (or, with allow_smaller, returns a smaller patch that
cannot be stacked), and the padded volume gives the patch a crop-then-pad would. Both chains'
volumes (1.5 mm, foreground-cropped) are larger than their roi, where the pad does nothing.

Image-level tasks (classification, multi-label, regression), on the prepared input: the flips,
then a random crop of the input size out of a margin of `crop_offset` source pixels around the
centre crop (the reference's +-18 px of a 384 crop of 512 px slices; `prepare(training=True)`
keeps that margin), then brightness and contrast, clipped to [0, 1]:
- jitter "shift" (CC-CCII, MRNet): x + b, then * c, with b = k / 100 (k a whole number in
  +-100 * brightness) and c = 1 + k' / 100 likewise: the reference's random.randint(-7, 7) / 100.
- jitter "enhance" (DRAC): PIL ImageEnhance. Brightness x * u, u uniform in 1 +- brightness;
  contrast m + u * (x - m), u uniform in 1 +- contrast, m the image's mean grey (ITU-R 601 luma
  of RGB) rounded to 1/255 as PIL does; clipped after each. PIL also rounds to 8 bits after
  each step; we stay in float. DRAC's reference draws its two flips p0.5 and then discards them
  (docs/protocol.md); reference defects are not copied, so its entry flips.
Each of brightness and contrast is applied with probability `jitter_prob`; both expect inputs
in [0, 1] (the "scale" and "minmax" intensities). The reference jitters before its resize; we
jitter the resized input, which differs only where the clip bites. A task whose preprocessing
has `planes` (MRNet) augments each plane (channel) with its own draws, as the reference
transforms each plane volume alone.
"""

import dataclasses

JITTERS = ("shift", "enhance")


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """The random transforms of a training sample; see the module docstring for their order."""
  flip_prob: float = 0.0
  flip_axes: tuple = None  # spatial axes that flip; None: every axis
  flip_together: bool = False  # one draw flips all flip_axes (MONAI RandFlip(spatial_axis=None))
  rot90_prob: float = 0.0
  scale_factor: float = 0.1
  scale_prob: float = 0.0
  shift_offset: float = 0.1
  shift_prob: float = 0.0
  crop_offset: int = 0  # image-level: +- source pixels of the preprocessing crop's position
  brightness: float = 0.0
  contrast: float = 0.0
  jitter: str = "shift"
  jitter_prob: float = 1.0

  def __post_init__(self):
    for name in ("flip_prob", "rot90_prob", "scale_prob", "shift_prob", "jitter_prob"):
      if not 0 <= getattr(self, name) <= 1:
        raise ValueError(f"Augmentation {name} must lie in [0, 1], got {getattr(self, name)}")
    for name in ("scale_factor", "shift_offset", "crop_offset", "brightness", "contrast"):
      if getattr(self, name) < 0:
        raise ValueError(f"Augmentation {name} must be >= 0, got {getattr(self, name)}")
    if self.jitter not in JITTERS:
      raise ValueError(f"Augmentation jitter {self.jitter!r} is not one of {JITTERS}")
    if self.jitter == "shift" and any(abs(100 * v - round(100 * v)) > 1e-9
                                      for v in (self.brightness, self.contrast)):
      raise ValueError(f"Augmentation jitter 'shift' draws whole percents: brightness "
                       f"{self.brightness} and contrast {self.contrast} must be multiples of 0.01")
    if int(self.crop_offset) != self.crop_offset:
      raise ValueError(f"Augmentation crop_offset is a pixel count, got {self.crop_offset}")


# Preprocessing template -> the default. CT-T, MR-T and fundus are the reference chains
# (docs/protocol.md); MR-T's probabilities are hard-coded to 0.1 there. 2d-generic and
# custom flip each axis p0.5; npy flips the in-plane axes of volumes stored slices first.
TEMPLATES = {
    "CT-T": Augmentation(flip_prob=0.2, rot90_prob=0.2, shift_prob=0.1),
    "MR-T": Augmentation(flip_prob=0.1),
    "fundus": Augmentation(flip_prob=0.2, flip_together=True, rot90_prob=0.2, shift_prob=0.1),
    "2d-generic": Augmentation(flip_prob=0.5),
    "npy": Augmentation(flip_prob=0.5, flip_axes=(1, 2)),
    "custom": Augmentation(flip_prob=0.5),
}
# A custom image-level volume (NIfTI x, y, z) flips in-plane only.
_CUSTOM_IMAGE_LEVEL = Augmentation(flip_prob=0.5, flip_axes=(0, 1))


def augmentation_of(task):
  """The task's own Augmentation (`task.augmentation`), else its template's default."""
  own = task.augmentation
  if own is not None:
    return own
  template = task.preprocessing.get("template")
  if template not in TEMPLATES:
    raise ValueError(f"task {task.name!r}: unknown preprocessing template {template!r}")
  if template == "custom" and task.kind != "segmentation" and task.ndim == 3:
    return _CUSTOM_IMAGE_LEVEL
  return TEMPLATES[template]
