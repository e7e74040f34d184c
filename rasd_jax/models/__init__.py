"""Networks, chosen by name: `models.create(name, ndim, rngs=...)`."""

import math

from flax import nnx
import jax

from rasd_jax.models.swin_unetr import SwinUNETR
from rasd_jax.models.unet import UNet

# name -> (constructor, its settings). `ndim`, `in_channels`, `out_channels` come from the
# caller; the pre-training output has 32 channels (METHOD.md section 4).
MODELS = {
    # The paper's 2D network (the released 2D weights): 51.18M parameters in 2D.
    "unet_paper": (UNet, dict(channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2),
                              num_res_units=4)),
    # CPU-sized for tests and laptops.
    "unet_tiny": (UNet, dict(channels=(8, 16, 32), strides=(2, 2), num_res_units=2)),
    # SwinUNETR v2 (MONAI's use_v2=True); base is the paper's 3D model, huge about its
    # largest. Parameters for 1 -> 32 channels, 3D / 2D, as MONAI 1.6 counts them:
    "swinunetr_tiny": (SwinUNETR, dict(feature_size=12)),     # 4.74M / 1.81M
    "swinunetr_small": (SwinUNETR, dict(feature_size=24)),    # 18.35M / 7.18M
    "swinunetr_base": (SwinUNETR, dict(feature_size=48)),     # 72.76M / 28.66M
    "swinunetr_large": (SwinUNETR, dict(feature_size=96)),    # 290.39M / 114.56M
    "swinunetr_huge": (SwinUNETR, dict(feature_size=144)),    # 653.09M / 257.70M
}


def create(name, ndim, in_channels=1, out_channels=32, *, rngs):
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)}")
  constructor, settings = MODELS[name]
  return constructor(ndim, in_channels, out_channels, rngs=rngs, **settings)


def count_params(name, ndim, in_channels=1, out_channels=32):
  """Parameter count without allocating the weights."""
  abstract = nnx.eval_shape(lambda: create(name, ndim, in_channels, out_channels,
                                           rngs=nnx.Rngs(0)))
  state = nnx.state(abstract, nnx.Param)
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(state))
