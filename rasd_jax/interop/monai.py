"""MONAI weights in and out: SwinUNETR (v2, and v1 read into v2) and the residual UNet.

`to_rasd` turns a PyTorch state dict into our variables, `from_rasd` our network into a state
dict that `monai_network(spec)`'s class and arguments take with `strict=True`. Our networks'
variable paths are MONAI's keys (models/swin_unetr.py, models/unet.py), converted by
interop/torch_layout.py. MONAI's SwinUNETR `relative_position_index` buffers are not
variables here: read, they are checked against our recomputation; written, recomputed.

Keys are read as saved by `torch.save(model.state_dict())` or by a wrapper of it: the leading
`module.` (DataParallel), `model.` and `backbone.` (training wrappers; a UNet's own keys begin
`model.<digit>`, which stays) are dropped, `swin_vit.` is `swinViT.`, and the encoder-only
layout MONAI's `SwinUNETR.load_from` reads (`patch_embed.*`, `layers1.0.blocks.0.mlp.fc1.*`:
the self-supervised Swin release) is the same encoder under older names. A v1 SwinUNETR
checkpoint (`use_v2=False`) lacks the v2 blocks `swinViT.layers{1-4}c`: they stay as
initialised and the report lists them. A UNet checkpoint must be the authors' configuration,
act="relu" and norm="batch" (MONAI's defaults, PReLU and instance norm, compute another
function: refused); its strides are not in the weights and are taken to be the registry's.
"""

import difflib
import re

from flax import nnx
import numpy as np

from rasd_jax import models
from rasd_jax.models import swin_unetr
from rasd_jax.models import unet
from rasd_jax.interop import torch_layout
from rasd_jax.training import transfer

_PREFIXES = ("module.", "model.", "backbone.")
_PATCH_EMBED = "swinViT.patch_embed.proj.weight"
_UNET_FIRST = "model.0.conv.unit0.conv.weight"
# SwinUNETR's output convolution, into which a dense head folds. A UNet's output is not one
# linear layer (its top unit adds a shortcut around the last convolution): a UNet with a new
# head has no MONAI UNet form.
_OUTPUT = "out.conv.conv"
_UNET_HEAD = ("a UNet with a new head (head 'add') has no MONAI UNet form: its last unit adds "
              "a shortcut around the output convolution. Export the pre-trained network, or "
              "fine-tune with head 'replace'")
_CLASSES = {swin_unetr.SwinUNETR: "SwinUNETR", unet.UNet: "UNet"}
FEATURES = 32  # output channels of a checkpoint without an output layer: the pre-training's


def _monai_key(key):
  """The MONAI key a checkpoint's `key` stands for."""
  stripped = True
  while stripped:
    stripped = next((p for p in _PREFIXES if key.startswith(p)
                     and not key[len(p):][:1].isdigit()), "")
    key = key[len(stripped):]
  if key.startswith("swin_vit."):
    key = "swinViT." + key[len("swin_vit."):]
  if key.startswith(("patch_embed.", "layers")):  # the encoder-only release
    key = "swinViT." + key
  return key.replace(".mlp.fc1.", ".mlp.linear1.").replace(".mlp.fc2.", ".mlp.linear2.")


def _normalise(state_dict):
  """{MONAI key: (key as stored, array)}; two stored keys for one MONAI key are an error."""
  out = {}
  for key, array in state_dict.items():
    name = _monai_key(key)
    if name in out:
      raise ValueError(f"the checkpoint holds {out[name][0]!r} and {key!r}, both {name!r}")
    out[name] = (key, np.asarray(array))
  return out


def _index_buffers(model):
  """{MONAI key: relative_position_index} for every attention block of `model`."""
  return {".".join(map(str, path)) + ".relative_position_index":
          swin_unetr.relative_position_index(module.window).astype(np.int64)
          for path, module in nnx.iter_modules(model)
          if isinstance(module, swin_unetr.WindowAttention)}


def _closest(keys, expected, n=3):
  """The `n` stored keys nearest to an expected one, each with its nearest, for errors."""
  pairs = []
  for key in keys[:200]:
    match = difflib.get_close_matches(key, expected, n=1, cutoff=0)[0]
    pairs.append((difflib.SequenceMatcher(None, key, match).ratio(), key, match))
  pairs.sort(reverse=True)
  return ", ".join(f"{k!r} (nearest MONAI key {m!r})" for _, k, m in pairs[:n])


def _registry(constructor):
  """{name: settings} of the registry networks built by `constructor`."""
  return {name: s for name, (c, s) in models.MODELS.items() if c is constructor}


def _describe_swin(arrays):
  stored, embed = arrays[_PATCH_EMBED]
  if embed.ndim not in (4, 5) or embed.shape[2:] != (2,) * (embed.ndim - 2):
    raise ValueError(f"{stored!r} has shape {embed.shape}: not a SwinUNETR's patch embedding "
                     "(a 2D or 3D convolution of kernel 2, patch size 2)")
  out = arrays.get("out.conv.conv.weight")
  size = dict(feature_size=embed.shape[0])
  v2 = any(k.startswith("swinViT.layers1c.") for k in arrays)
  return dict(network=swin_unetr.SwinUNETR, ndim=embed.ndim - 2, size=size,
              in_channels=embed.shape[1],
              out_channels=None if out is None else out[1].shape[0],
              kind=f"MONAI SwinUNETR {'v2' if v2 else 'v1'}")


def _describe_unet(arrays):
  """A MONAI UNet's channels and residual units, read level by level from its keys."""
  first = arrays[_UNET_FIRST][1]
  channels, prefix = [], "model."
  units = sum(bool(re.fullmatch(r"model\.0\.conv\.unit\d+\.conv\.weight", k)) for k in arrays)
  while True:
    channels.append(arrays[prefix + "0.conv.unit0.conv.weight"][1].shape[0])
    below = prefix + "1.submodule."
    if below + "0.conv.unit0.conv.weight" in arrays:
      prefix = below
    elif below + "conv.unit0.conv.weight" in arrays:
      channels.append(arrays[below + "conv.unit0.conv.weight"][1].shape[0])
      break
    else:
      raise ValueError(f"a MONAI UNet checkpoint without {below}conv.unit0.conv.weight (its "
                       "bottom level)")
  if any(k.endswith(".adn.A.weight") for k in arrays):
    raise ValueError("the MONAI UNet's activation has weights (PReLU, MONAI's default act); "
                     "rasd_jax's UNets are act='relu', norm='batch' (the authors' network)")
  if not any(k.endswith(".adn.N.running_mean") for k in arrays):
    raise ValueError("the MONAI UNet has no batch norm statistics (norm='instance', MONAI's "
                     "default?); rasd_jax's UNets are act='relu', norm='batch'")
  out = arrays.get("model.2.0.conv.weight")
  size = dict(channels=tuple(channels), num_res_units=units)
  return dict(network=unet.UNet, ndim=first.ndim - 2, size=size, in_channels=first.shape[1],
              out_channels=None if out is None else out[1].shape[1], kind="MONAI UNet")


def _describe(arrays):
  """identify() of a `_normalise`d checkpoint."""
  if _PATCH_EMBED in arrays:
    found = _describe_swin(arrays)
  elif _UNET_FIRST in arrays:
    found = _describe_unet(arrays)
  elif not arrays:
    raise ValueError("the checkpoint holds no arrays")
  else:
    expected = [torch_layout.torch_key(k) for name in ("tiny", "unet_tiny")
                for k in transfer.named(nnx.state(nnx.eval_shape(
                    lambda: models.create(name, 3, rngs=nnx.Rngs(0)))))]
    keys = [stored for stored, _ in arrays.values()]
    raise ValueError(f"neither a MONAI SwinUNETR nor a MONAI UNet checkpoint: none of its "
                     f"{len(keys)} keys is {_PATCH_EMBED!r} or {_UNET_FIRST!r}; closest: "
                     f"{_closest(keys, expected)}")
  sizes = ", ".join(f"{k} {v}" for k, v in found["size"].items())
  found["model"] = next((name for name, s in _registry(found["network"]).items()
                         if all(s[k] == v for k, v in found["size"].items())), None)
  found["source"] = (f"{found['kind']}, {found['ndim']}D, {sizes}, {found['in_channels']} -> "
                     f"{found['out_channels'] or 'no output layer'}")
  return found


def identify(state_dict):
  """What a MONAI SwinUNETR or UNet checkpoint holds: {'network' (our class), 'ndim', 'size'
  (feature_size; channels and num_res_units), 'in_channels', 'out_channels' (None without an
  output layer), 'model' (the registry name of that size, or None), 'source' (one line)}. A
  checkpoint of another network is a ValueError naming the stored keys nearest to MONAI's."""
  return _describe(_normalise(state_dict))


def to_rasd(state_dict, model_name, ndim, in_channels=None, out_channels=None, seed=0):
  """({'params', 'rest'} of our network `model_name` (ndim, in_channels, out_channels;
  None: the checkpoint's, 32 output channels without an output layer) with the
  checkpoint's weights, report).

  The report, as training.transfer's: 'loaded', 'missing' (MONAI keys left as initialised
  with `seed`: the v2 blocks of a v1 checkpoint), 'unused' (keys as stored),
  'shape_mismatch' ((MONAI key, stored shape, expected shape), PyTorch layout; left as
  initialised); and 'source' (one line on what the checkpoint holds), 'in_channels',
  'out_channels' (the network's). A checkpoint of another network, dimensionality or
  size is a ValueError in one line."""
  name = models.resolve(model_name)
  constructor, settings = models.MODELS[name]
  if constructor not in _CLASSES:
    raise ValueError(f"{name} has no MONAI counterpart; MONAI weights load into "
                     f"{sorted(n for c in _CLASSES for n in _registry(c))}")
  arrays = _normalise(state_dict)
  found = _describe(arrays)
  if found["network"] is not constructor:
    raise ValueError(f"the checkpoint holds a {found['source']}; {name} is a "
                     f"{_CLASSES[constructor]}")
  if found["ndim"] != ndim:
    raise ValueError(f"the checkpoint holds a {found['source']}; asked for a {ndim}D network")
  differ = [f"{k} {settings[k]}" for k, v in found["size"].items() if settings[k] != v]
  if differ:
    fits = f"; it fits {found['model']}" if found["model"] else ""
    raise ValueError(f"the checkpoint holds a {found['source']}; {name} has "
                     f"{', '.join(differ)}{fits}")
  in_channels = in_channels or found["in_channels"]
  out_channels = out_channels or found["out_channels"] or FEATURES

  def make():
    return models.create(name, ndim, in_channels, out_channels, rngs=models.init_rngs(seed))

  state, report = torch_layout.load(make, {k: a for k, (_, a) in arrays.items()})
  used = report.pop("used")
  if constructor is swin_unetr.SwinUNETR:
    for key, index in _index_buffers(nnx.eval_shape(make)).items():
      if key in arrays and not np.array_equal(arrays[key][1], index):
        report["shape_mismatch"].append((key, arrays[key][1].shape, index.shape))
      used.add(key)
  report.update(unused=sorted(stored for key, (stored, _) in arrays.items()
                              if key not in used),
                source=found["source"], in_channels=in_channels, out_channels=out_channels)
  return state, report


def from_rasd(model):
  """{MONAI key: array} of our SwinUNETR or UNet `model` (or of a dense downstream network
  around one: a SwinUNETR's per-voxel head, a linear map, is folded into MONAI's output
  convolution; a UNet's must be its own last layer, head 'replace')."""
  network, head = torch_layout.network_and_head(model, tuple(_CLASSES), "MONAI")
  if head is not None and isinstance(network, unet.UNet):
    raise ValueError(_UNET_HEAD)
  out = torch_layout.export(network)
  if head is not None:
    torch_layout.fold_head(out, _OUTPUT, head)
  if isinstance(network, swin_unetr.SwinUNETR):
    out.update(_index_buffers(network))
  return out


def monai_network(spec):
  """(class name in `monai.networks.nets`, its arguments) that take `from_rasd`'s weights of
  the network of `spec` (a W/model.json, training/weights.py) with `strict=True`."""
  name = models.resolve(spec["model"])
  constructor, settings = models.MODELS[name]
  if constructor not in _CLASSES:
    raise ValueError(f"{name} has no MONAI counterpart; SwinUNETR and UNet networks export")
  downstream = spec["network"] == "downstream"
  if downstream and spec["pooled"]:
    raise torch_layout.pooled_error("MONAI")
  if downstream and spec["head"] == "add" and constructor is unet.UNet:
    raise ValueError(_UNET_HEAD)
  arguments = dict(spatial_dims=spec["ndim"], in_channels=spec["in_channels"],
                   out_channels=spec["num_outputs"] if downstream else spec["out_channels"])
  if constructor is swin_unetr.SwinUNETR:
    arguments.update(feature_size=settings["feature_size"], use_v2=True)
  else:
    arguments.update(channels=list(settings["channels"]), strides=list(settings["strides"]),
                     num_res_units=settings["num_res_units"], act="relu", norm="batch")
  return _CLASSES[constructor], arguments
