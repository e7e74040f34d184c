"""Synthesis settings: the ConfigDict users edit and the validated `Spec` code runs on.

Defaults reproduce the reference generator (docs/method.md) at any size. Every
range is a `(min, max)` pair. Fields set to 0 where marked "auto" are derived from
`ndim` and `size` when the Spec is built, so `--config.synthesis.size=64` keeps them right.
"""

import dataclasses
import math

import ml_collections

# One-line help per field: shown in errors and mirrored in the README table.
FIELDS = {
    "ndim": "spatial dimensions, 2 or 3",
    "size": "side length in voxels (cubic / square samples)",
    "num_labels": "labels K; 0 = auto: size/16 in 3D, size/32 in 2D, at least 2",
    "channels": "image channels rendered independently from one label map",
    "paired_views": "also render a second, independent appearance (`image2`)",
    "label_grids": "noise-grid points per axis of the label logits",
    "label_max_std": "logit noise: sigma ~ U(0, max) per grid",
    "flow_grids": "noise-grid points per axis of the per-label flows",
    "flow_max_std": "flow sigma ~ U(0, max) voxels per grid; 0 = auto: size/16",
    "warp_stride": "warp evaluated every n voxels, then interpolated; 1 = exact; 0 = auto",
    "mean_range": "per-label mean intensity",
    "std_range": "per-label intensity std (GMM option; (0, 0) = off, as the reference)",
    "bias_std_range": "bias-field white-noise std",
    "bias_fwhm_range": "bias-field blur FWHM in voxels, per axis",
    "noise_std_range": "additive noise std, as a fraction of max|image|",
    "blur_sigma_range": "final blur sigma in voxels, per axis",
    "gamma_range": "gamma exponent",
    "zero_background_prob": "probability of zeroing label 0",
    "lowres_prob": "probability of low-resolution simulation (all axes)",
    "lowres_factor_range": "low-resolution voxel size factor, per axis",
    "thick_slice_prob": "probability of thick-slice simulation (one random axis)",
    "thick_slice_range": "slice spacing = thickness in voxels",
    "gibbs_prob": "probability of Gibbs ringing (k-space truncation)",
    "gibbs_keep_range": "fraction of k-space kept per axis",
    "spike_prob": "probability of a k-space spike (herringbone)",
    "spike_intensity_range": "spike amplitude as a fraction of max|image|",
    "ghosting_prob": "probability of motion ghosting (one random axis)",
    "ghosting_period_range": "every n-th k-space line is disturbed",
    "ghosting_intensity_range": "disturbed lines keep this fraction of their amplitude",
}

_RANGES = {name for name in FIELDS if name.endswith("_range")}
_PROBS = {name for name in FIELDS if name.endswith("_prob")}


def get_config(ndim=3, size=128):
  """The reference distribution, as a ConfigDict (unlocked; the job config locks it)."""
  return ml_collections.ConfigDict(dict(
      ndim=ndim,
      size=size,
      num_labels=0,
      channels=1,
      paired_views=False,
      label_grids=(8, 4),
      label_max_std=1.0,
      flow_grids=(16, 8, 4),
      flow_max_std=0.0,
      warp_stride=0,
      mean_range=(0.0, 1.0),
      std_range=(0.0, 0.0),
      bias_std_range=(0.01, 0.1),
      bias_fwhm_range=(16.0, 32.0),
      noise_std_range=(0.05, 0.4),
      blur_sigma_range=(0.0, 1.0),
      gamma_range=(0.5, 1.5),
      zero_background_prob=0.0,
      lowres_prob=0.0,
      lowres_factor_range=(1.0, 3.0),
      thick_slice_prob=0.0,
      thick_slice_range=(2.0, 8.0),
      gibbs_prob=0.0,
      gibbs_keep_range=(0.3, 0.8),
      spike_prob=0.0,
      spike_intensity_range=(0.02, 0.2),
      ghosting_prob=0.0,
      ghosting_period_range=(2.0, 8.0),
      ghosting_intensity_range=(0.3, 0.9),
  ))


@dataclasses.dataclass(frozen=True)
class Spec:
  """Validated, fully resolved synthesis settings (hashable: a static jit argument)."""
  ndim: int
  size: int
  num_labels: int
  channels: int
  paired_views: bool
  label_grids: tuple
  label_max_std: float
  flow_grids: tuple
  flow_max_std: float
  warp_stride: int
  mean_range: tuple
  std_range: tuple
  bias_std_range: tuple
  bias_fwhm_range: tuple
  noise_std_range: tuple
  blur_sigma_range: tuple
  gamma_range: tuple
  zero_background_prob: float
  lowres_prob: float
  lowres_factor_range: tuple
  thick_slice_prob: float
  thick_slice_range: tuple
  gibbs_prob: float
  gibbs_keep_range: tuple
  spike_prob: float
  spike_intensity_range: tuple
  ghosting_prob: float
  ghosting_period_range: tuple
  ghosting_intensity_range: tuple

  @property
  def shape(self):
    return (self.size,) * self.ndim

  @property
  def acquisition_artefacts(self):
    return any(p > 0 for p in (self.lowres_prob, self.thick_slice_prob, self.gibbs_prob,
                               self.spike_prob, self.ghosting_prob))


def _fail(name, value, allowed):
  raise ValueError(f"synthesis.{name} = {value!r} is not allowed: {allowed} "
                   f"({name}: {FIELDS[name]})")


def auto_warp_stride(size, flow_grids):
  """Largest power of two that leaves at least 16 warp samples per cell of the finest
  flow grid: 1 (exact) for 3D 128^3, 2 for 2D 512^2.

  The warped logits are smooth on the scale of that cell (size/15 voxels by default), so
  sampling them more sparsely and interpolating linearly costs little, but it does drop
  the smallest fragments: at 4 samples per cell, fragments per label fall by a third in
  3D 128^3 and by 12% in 2D 512^2 (README, "Fidelity and speed").
  """
  cell = (size - 1) / (max(flow_grids) - 1)
  return 2 ** max(0, int(math.floor(math.log2(max(cell / 16, 1.0)))))


def make_spec(config):
  """Validates a synthesis ConfigDict and resolves its auto fields."""
  values = dict(config.to_dict() if hasattr(config, "to_dict") else config)
  unknown = set(values) - set(FIELDS)
  if unknown:
    raise ValueError(f"unknown synthesis fields {sorted(unknown)}; known: {sorted(FIELDS)}")
  missing = set(FIELDS) - set(values)
  if missing:
    raise ValueError(f"synthesis config lacks {sorted(missing)}")

  ndim, size = values["ndim"], values["size"]
  if ndim not in (2, 3):
    _fail("ndim", ndim, "2 or 3")
  for name in ("label_grids", "flow_grids"):
    grids = tuple(values[name])
    if not grids or any(int(g) != g or g < 2 for g in grids):
      _fail(name, values[name], "a non-empty tuple of integers >= 2")
    values[name] = tuple(int(g) for g in grids)
  finest = max(values["label_grids"] + values["flow_grids"])
  if int(size) != size or size < finest:
    _fail("size", size, f"an integer >= {finest}, the largest noise grid "
          f"(label_grids {values['label_grids']}, flow_grids {values['flow_grids']})")

  if values["num_labels"] == 0:
    values["num_labels"] = max(2, size // (16 if ndim == 3 else 32))
  if values["num_labels"] < 2 or values["num_labels"] > 255:
    _fail("num_labels", values["num_labels"], "an integer in [2, 255], or 0 for auto")
  if values["channels"] < 1:
    _fail("channels", values["channels"], "an integer >= 1")
  if values["flow_max_std"] == 0:
    values["flow_max_std"] = size / 16
  for name in ("label_max_std", "flow_max_std"):
    if values[name] < 0:
      _fail(name, values[name], "a number >= 0")
  if values["warp_stride"] == 0:
    values["warp_stride"] = auto_warp_stride(size, values["flow_grids"])
  if values["warp_stride"] < 1 or values["warp_stride"] > size // 2:
    _fail("warp_stride", values["warp_stride"], f"an integer in [1, {size // 2}], or 0 for auto")

  for name in _RANGES:
    pair = values[name]
    if len(pair) != 2:
      _fail(name, pair, "a (min, max) pair")
    lo, hi = (float(v) for v in pair)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
      _fail(name, pair, "a finite (min, max) pair with min <= max")
    values[name] = (lo, hi)
  lower_bounds = {
      "std_range": 0.0, "bias_std_range": 0.0, "bias_fwhm_range": 1e-3,
      "noise_std_range": 0.0, "blur_sigma_range": 0.0, "gamma_range": 1e-3,
      "lowres_factor_range": 1.0, "thick_slice_range": 1.0, "gibbs_keep_range": 1e-3,
      "spike_intensity_range": 0.0, "ghosting_period_range": 2.0,
      "ghosting_intensity_range": 0.0,
  }
  for name, low in lower_bounds.items():
    if values[name][0] < low:
      _fail(name, values[name], f"a (min, max) pair with min >= {low}")
  for name in ("gibbs_keep_range", "ghosting_intensity_range"):
    if values[name][1] > 1:
      _fail(name, values[name], "a (min, max) pair within [0, 1]")
  for name in _PROBS:
    if not 0 <= values[name] <= 1:
      _fail(name, values[name], "a probability in [0, 1]")
  values["paired_views"] = bool(values["paired_views"])
  return Spec(**values)
