"""MONAI SwinUNETR weights in and out: `to_rasd` (a PyTorch state dict -> our variables) and
`from_rasd` (our network -> a state dict that `SwinUNETR(**monai_constructor(spec),
use_v2=True).load_state_dict(..., strict=True)` accepts).

Our SwinUNETR's variable paths are MONAI's keys (models/swin_unetr.py): `a/0/b/kernel` is
`a.0.b.weight`. The layouts differ: a Linear's weight is transposed, a convolution's
(transposed ones included) has its first two axes moved last and swapped, (O, I, *k) ->
(*k, I, O); LayerNorm `weight` is our `scale`. MONAI's `relative_position_index` buffers are
not variables here: read, they are checked against our recomputation; written, they are
recomputed.

Keys are read as saved by `torch.save(model.state_dict())` or by a wrapper of it: the
leading `module.` (DataParallel), `model.` and `backbone.` (training wrappers) are dropped,
`swin_vit.` is `swinViT.`, and the encoder-only layout MONAI's `SwinUNETR.load_from` reads
(`patch_embed.*`, `layers1.0.blocks.0.mlp.fc1.*`: the self-supervised Swin release) is
the same encoder under older names. A v1 checkpoint (`use_v2=False`) lacks the v2 blocks
`swinViT.layers{1-4}c`: they stay as initialised and the report lists them.
"""

import difflib

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from rasd_jax import models
from rasd_jax.models import heads
from rasd_jax.models import swin_unetr
from rasd_jax.training import transfer
from rasd_jax.training.checkpoint import path_name

_PREFIXES = ("module.", "model.", "backbone.")
_PATCH_EMBED = "swinViT.patch_embed.proj.weight"
_OUT = "out.conv.conv"
_POOLED = ("a pooled (classification / regression) network has no MONAI SwinUNETR "
           "counterpart; dense (segmentation) networks export")
FEATURES = 32  # output channels of an encoder-only checkpoint: the pre-training width


def _monai_key(key):
  """The MONAI SwinUNETR key a checkpoint's `key` stands for."""
  stripped = True
  while stripped:
    stripped = next((p for p in _PREFIXES if key.startswith(p)), "")
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


def _torch_key(name):
  """Our variable path -> the MONAI key: 'a/0/b/kernel' -> 'a.0.b.weight'."""
  module, _, leaf = name.rpartition("/")
  return module.replace("/", ".") + "." + {"kernel": "weight", "scale": "weight"}.get(leaf, leaf)


def _to_torch(name, array):
  """Our layout -> PyTorch's, for the variable at path `name`."""
  if not name.endswith("/kernel"):
    return array
  if array.ndim == 2:  # Linear: (in, out) -> (out, in)
    return array.T
  return np.moveaxis(array, (-1, -2), (0, 1))  # convolution: (*k, I, O) -> (O, I, *k)


def _to_ours(name, array):
  if not name.endswith("/kernel"):
    return array
  if array.ndim == 2:
    return array.T
  return np.moveaxis(array, (0, 1), (-1, -2))


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
  return ", ".join(f"{k!r} (nearest SwinUNETR key {m!r})" for _, k, m in pairs[:n])


def _size_names():
  """{feature_size: registry name} of the SwinUNETRs."""
  return {s["feature_size"]: name for name, (c, s) in models.MODELS.items()
          if c is swin_unetr.SwinUNETR}


def _describe(arrays):
  """describe() of a `_normalise`d checkpoint."""
  if _PATCH_EMBED not in arrays:
    if not arrays:
      raise ValueError("the checkpoint holds no arrays")
    expected = [_torch_key(k) for k in transfer.named(nnx.state(nnx.eval_shape(
        lambda: models.create("tiny", 3, rngs=nnx.Rngs(0)))))]
    keys = [stored for stored, _ in arrays.values()]
    raise ValueError(f"not a MONAI SwinUNETR checkpoint: none of its {len(keys)} keys is "
                     f"{_PATCH_EMBED!r}; closest: {_closest(keys, expected)}")
  stored, embed = arrays[_PATCH_EMBED]
  if embed.ndim not in (4, 5) or embed.shape[2:] != (2,) * (embed.ndim - 2):
    raise ValueError(f"{stored!r} has shape {embed.shape}: not a SwinUNETR's patch embedding "
                     "(a 2D or 3D convolution of kernel 2, patch size 2)")
  out = arrays.get(_OUT + ".weight")
  return dict(ndim=embed.ndim - 2, feature_size=embed.shape[0], in_channels=embed.shape[1],
              out_channels=None if out is None else out[1].shape[0],
              v2=any(k.startswith("swinViT.layers1c.") for k in arrays),
              model=_size_names().get(embed.shape[0]))


def describe(state_dict):
  """What a MONAI SwinUNETR checkpoint holds: {'ndim', 'feature_size', 'in_channels',
  'out_channels' (None without an output layer), 'v2', 'model' (the registry name of that
  feature size, or None)}. A checkpoint of another network is a ValueError naming the
  stored keys nearest to SwinUNETR's."""
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
  feature size is a ValueError in one line."""
  name = models.resolve(model_name)
  constructor, settings = models.MODELS[name]
  if constructor is not swin_unetr.SwinUNETR:
    raise ValueError(f"importing MONAI weights into {name} is not available yet; "
                     f"SwinUNETR models: {sorted(_size_names().values())}")
  arrays = _normalise(state_dict)
  found = _describe(arrays)
  kind = (f"MONAI SwinUNETR {'v2' if found['v2'] else 'v1'}, {found['ndim']}D, feature_size "
          f"{found['feature_size']}, {found['in_channels']} -> "
          f"{found['out_channels'] or 'no output layer'}")
  if found["ndim"] != ndim:
    raise ValueError(f"the checkpoint holds a {kind}; asked for a {ndim}D network")
  if found["feature_size"] != settings["feature_size"]:
    fits = f"; it fits {found['model']}" if found["model"] else ""
    raise ValueError(f"the checkpoint holds a {kind}; {name} has feature_size "
                     f"{settings['feature_size']}{fits}")
  in_channels = in_channels or found["in_channels"]
  out_channels = out_channels or found["out_channels"] or FEATURES

  def make():
    return models.create(name, ndim, in_channels, out_channels, rngs=models.init_rngs(seed))

  abstract = nnx.eval_shape(make)
  report = {"loaded": [], "missing": [], "shape_mismatch": [], "source": kind,
            "in_channels": in_channels, "out_channels": out_channels}
  values, used = {}, set()
  for var, leaf in transfer.named(nnx.state(abstract)).items():
    key = _torch_key(var)
    expected = _to_torch(var, np.broadcast_to(False, leaf.shape)).shape
    if key not in arrays:
      report["missing"].append(key)
    elif arrays[key][1].shape != expected:
      report["shape_mismatch"].append((key, arrays[key][1].shape, expected))
    else:
      report["loaded"].append(key)
      values[var] = jnp.asarray(_to_ours(var, arrays[key][1]), leaf.dtype)
    used.add(key)
  for key, index in _index_buffers(abstract).items():
    if key in arrays and not np.array_equal(arrays[key][1], index):
      report["shape_mismatch"].append((key, arrays[key][1].shape, index.shape))
    used.add(key)
  report["unused"] = sorted(stored for key, (stored, _) in arrays.items() if key not in used)
  fresh = set(transfer.named(nnx.state(abstract))) - set(values)
  if fresh:
    # Only the initialisers of the variables not loaded: XLA drops the others' random
    # draws (the whole network's take ~10 s to compile on a CPU).
    values.update(jax.jit(lambda: {k: v for k, v in transfer.named(nnx.state(make())).items()
                                   if k in fresh})())
  loaded = jax.tree_util.tree_map_with_path(lambda path, _: values[path_name(path)],
                                            nnx.state(abstract))
  params, rest = nnx.split_state(loaded, nnx.Param, ...)
  return {"params": params, "rest": rest}, report


def _swin(model):
  """(the SwinUNETR of `model`, the dense head to fold into its output layer or None)."""
  if isinstance(model, heads.Downstream):
    if model.pooled:
      raise ValueError(_POOLED)
    return _swin(model.backbone)[0], model.head
  if not isinstance(model, swin_unetr.SwinUNETR):
    raise ValueError(f"exporting a {type(model).__name__} to MONAI is not available yet; "
                     "SwinUNETR networks export")
  return model, None


def from_rasd(model):
  """{MONAI key: array} of our SwinUNETR `model` (or of a dense downstream network around
  one: its per-voxel head, a linear map, is folded into MONAI's 1x1 output convolution)."""
  swin, head = _swin(model)
  params = {k: np.asarray(v) for k, v in transfer.named(nnx.state(swin, nnx.Param)).items()}
  if head is not None:
    # out(x) = x W + b and head(y) = y H + c make one convolution x (W H) + (b H + c).
    h = np.asarray(head.kernel[...], np.float64)
    for leaf, shift in (("kernel", 0.0), ("bias", np.asarray(head.bias[...], np.float64))):
      var = f"out/conv/conv/{leaf}"
      params[var] = (params[var].astype(np.float64) @ h + shift).astype(params[var].dtype)
  out = {_torch_key(var): np.array(_to_torch(var, array), order="C")
         for var, array in params.items()}
  out.update(_index_buffers(swin))
  return out


def monai_constructor(spec):
  """The arguments of `monai.networks.nets.SwinUNETR` that take `from_rasd`'s weights of
  the network of `spec` (a W/model.json, training/weights.py) with `strict=True`."""
  name = models.resolve(spec["model"])
  constructor, settings = models.MODELS[name]
  if constructor is not swin_unetr.SwinUNETR:
    raise ValueError(f"exporting {name} to MONAI is not available yet; SwinUNETR models "
                     "export")
  downstream = spec["network"] == "downstream"
  if downstream and spec["pooled"]:
    raise ValueError(_POOLED)
  return dict(in_channels=spec["in_channels"],
              out_channels=spec["num_outputs"] if downstream else spec["out_channels"],
              feature_size=settings["feature_size"], spatial_dims=spec["ndim"], use_v2=True)
