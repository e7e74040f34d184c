"""Networks, chosen by name: `models.create(name, ndim, rngs=...)`."""

import difflib
import math

from flax import nnx
import jax

from rasd_jax.models.heads import Downstream
from rasd_jax.models.resenc import ResEncUNet
from rasd_jax.models.swin_unetr import SwinUNETR
from rasd_jax.models.unet import UNet

# name -> (constructor, its settings). `ndim`, `in_channels`, `out_channels` come from the
# caller; the pre-training output has 32 channels (README, "Networks").
MODELS = {
    # The paper's 2D network (the released 2D weights): 51.18M parameters in 2D.
    "unet_paper": (UNet, dict(channels=(64, 128, 256, 512, 1024), strides=(2, 2, 2, 2),
                              num_res_units=4)),
    # The calibration network (README, "quickstart"): laptop pre-training.
    "unet_small": (UNet, dict(channels=(16, 32, 64, 128), strides=(2, 2, 2),
                              num_res_units=2)),
    # CPU-sized for tests and laptops.
    "unet_tiny": (UNet, dict(channels=(8, 16, 32), strides=(2, 2), num_res_units=2)),
    # SwinUNETR v2 (MONAI's use_v2=True); base is the paper's 3D model, huge about its
    # largest. Parameters for 1 -> 32 channels, 3D / 2D, as MONAI 1.6 counts them:
    "swinunetr_tiny": (SwinUNETR, dict(feature_size=12)),     # 4.74M / 1.81M
    "swinunetr_small": (SwinUNETR, dict(feature_size=24)),    # 18.35M / 7.18M
    "swinunetr_base": (SwinUNETR, dict(feature_size=48)),     # 72.76M / 28.66M
    "swinunetr_large": (SwinUNETR, dict(feature_size=96)),    # 290.39M / 114.56M
    "swinunetr_huge": (SwinUNETR, dict(feature_size=144)),    # 653.09M / 257.70M
    # nnU-Net's residual-encoder U-Net (models/resenc.py). resenc_m: the network nnU-Net's
    # ResEnc M planner (nnunetv2 2.8.1) makes for 1 mm isotropic data, per dimensionality: 3D
    # for a 128^3 patch (6 stages, inputs a multiple of 32 per axis), 2D for a 512^2 patch (8
    # stages, a multiple of 128). Parameters for 1 -> 32 channels, 3D / 2D, as
    # dynamic-network-architectures 0.4.4 counts them:
    "resenc_m": (ResEncUNet, dict(                                # 102.37M / 140.08M
        features_per_stage={3: (32, 64, 128, 256, 320, 320),
                            2: (32, 64, 128, 256, 512, 512, 512, 512)},
        n_blocks_per_stage={3: (1, 3, 4, 6, 6, 6), 2: (1, 3, 4, 6, 6, 6, 6, 6)})),
    # CPU-sized for tests and laptops (a multiple of 8 per axis).
    "resenc_tiny": (ResEncUNet, dict(features_per_stage=(8, 16, 32, 64),   # 0.61M / 0.21M
                                     n_blocks_per_stage=(1, 2, 2, 2))),
}


# Short names: a bare size means that SwinUNETR v2 ("tiny" = "swinunetr_tiny").
SIZES = ("tiny", "small", "base", "large", "huge")


def path_name(path):
  """'params/encoder1/layer/conv1/kernel': the name of a network variable's pytree path, the
  same whether it comes from live arrays or from a checkpoint's metadata (which stores every
  key as a string): what checkpoints, weight transfer and the PyTorch layout match on."""
  parts = (getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))) for k in path)
  return "/".join(str(p) for p in parts if p != "value")


def resolve(name):
  """The registry name of `name` (a registry name or a SwinUNETR size); a clear error
  for an unknown one."""
  full = f"swinunetr_{name}" if name in SIZES else name
  if full not in MODELS:
    close = difflib.get_close_matches(name, list(MODELS) + list(SIZES), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"unknown model {name!r}; available: {sorted(MODELS)} or a size "
                     f"{list(SIZES)}.{hint}")
  return full


def init_rngs(seed):
  """nnx.Rngs for initialising a network. rbg keys: each initialiser is one XLA
  RngBitGenerator op; threefry keys compile ~1 s per initialiser on a CPU (a SwinUNETR has
  hundreds)."""
  return nnx.Rngs(jax.random.key(seed, impl="rbg"))


# Options that change how a network computes, not its weights (the pre-training configs'
# `remat` and `attention`, the finetune config's `dropout`), with their plain values, and
# which networks take them. Any network takes an option at its plain value.
PLAIN = {"remat": False, "attention": "einsum", "dropout": 0.0}
OPTIONS = {SwinUNETR: ("remat", "attention"), UNet: ("dropout",)}
# The authors fine-tune their 2D U-Net with MONAI's dropout 0.15, their other networks
# without.
REFERENCE_DROPOUT = 0.15


def create(name, ndim, in_channels=1, out_channels=32, *, rngs, **options):
  """The network `name`; `options` (e.g. remat=True) where the network takes them."""
  constructor, settings = MODELS[resolve(name)]
  takes = OPTIONS.get(constructor, ())
  unknown = sorted(k for k, v in options.items()
                   if k not in takes and (k not in PLAIN or v != PLAIN[k]))
  if unknown:
    takers = {k: sorted(n for n, (c, _) in MODELS.items() if k in OPTIONS.get(c, ()))
              for k in unknown}
    raise ValueError(f"model {name!r} takes no option {unknown}; "
                     + "; ".join(f"{k} is for {v}" for k, v in takers.items()))
  options = {k: v for k, v in options.items() if k in takes}
  return constructor(ndim, in_channels, out_channels, rngs=rngs, **settings, **options)


HEADS = ("add", "replace")


def reference_dropout(name, ndim):
  """The dropout rate the reference fine-tunes the network `name` with in `ndim` D."""
  return REFERENCE_DROPOUT if MODELS[resolve(name)][0] is UNet and ndim == 2 else 0.0


def create_downstream(name, ndim, in_channels, num_outputs, *, head="add", pooled=False,
                      features=32, dropout=0.0, rngs):
  """The network `name` for a downstream task with `num_outputs` outputs; `dropout` where
  the network takes it (OPTIONS).

  head "add": the network keeps its `features` output channels (the pre-training width, 32 by
  default) and a new linear layer maps them to the outputs (per voxel, or after global
  average pooling when `pooled`). head "replace": the network is made with `num_outputs`
  output channels (its last layer does not transfer from a pre-training checkpoint); dense
  outputs only.
  """
  if head not in HEADS:
    raise ValueError(f"head {head!r}: one of {HEADS}")
  if head == "replace":
    if pooled:
      raise ValueError("head 'replace' gives dense outputs; pooled outputs (classification, "
                       "regression) need head 'add'")
    return Downstream(create(name, ndim, in_channels, num_outputs, rngs=rngs,
                             dropout=dropout), None, False)
  backbone = create(name, ndim, in_channels, features, rngs=rngs, dropout=dropout)
  return Downstream(backbone, nnx.Linear(features, num_outputs, rngs=rngs), pooled)


def count_params(name, ndim, in_channels=1, out_channels=32):
  """Parameter count without allocating the weights."""
  abstract = nnx.eval_shape(lambda: create(name, ndim, in_channels, out_channels,
                                           rngs=nnx.Rngs(0)))
  return size(nnx.state(abstract, nnx.Param))


def size(params):
  """The number of values in a tree of arrays (or of their shapes)."""
  return sum(math.prod(p.shape) for p in jax.tree_util.tree_leaves(params))
