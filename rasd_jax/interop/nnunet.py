"""nnU-Net v2 export of a ResEnc U-Net: the checkpoint `nnUNetv2_train ... -pretrained_weights
FILE` starts from, and the plans configuration that makes nnU-Net build the same network.

nnU-Net's fine-tuning route (nnunetv2 2.8.1, run/load_pretrained_weights.py) reads
`torch.load(FILE)["network_weights"]`, requires every key of its network's state dict but
the segmentation layers (`.seg_layers.`) to be there with the same shape, and copies them;
the segmentation layers stay as nnU-Net initialised them. Its network comes from the plans
configuration being trained, so the configuration must describe our network: `write` adds
one, `3d_fullres_rasd` (or `2d_rasd`), to the user's own plans of the target dataset. It
inherits everything from the target's `3d_fullres` (`2d`): spacing, normalisation,
resampling and the preprocessed data (its data_identifier) stay the target's, as nnU-Net's
own `inherits_from` configurations do; it sets the `architecture` (ours), a `patch_size`
(128^3 in 3D, 512^2 in 2D: the ResEnc M planner's for 1 mm data; any multiple of the
network's strides works) and a `batch_size` (nnU-Net's reference batch for those patches:
2 in 3D, 12 in 2D). So nnU-Net's pre-training recipe (docs: pretraining_and_finetuning.md,
plans moved between datasets with nnUNetv2_move_plans_between_datasets) is not needed: no
source dataset exists, and the target keeps its own normalisation.

Keys: our variable paths are the network's keys (models/resenc.py, interop/torch_layout.py);
PyTorch's `state_dict()` of a ResidualEncoderUNet also holds aliases, which the route
requires too: every conv-norm block's `conv.*` / `norm.*` again as `all_modules.0.*` /
`all_modules.1.*`, and the whole encoder again under `decoder.encoder.` (the decoder holds
the encoder). `state_dict` adds them, `strip_aliases` removes them (for `torch_layout.load`).
"""

import collections
import io
import json
import os

from flax import nnx
import numpy as np

from rasd_jax import models
from rasd_jax import workdir as workdir_lib
from rasd_jax.interop import torch_layout
from rasd_jax.models import resenc
from rasd_jax.training import transfer
from rasd_jax.training import weights

NETWORK_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
CHECKPOINT = "nnunet_checkpoint.pth"
PLANS = "nnunet_plans.json"
SCRIPT = "add_to_plans.py"
BASE = {3: "3d_fullres", 2: "2d"}  # the target's configuration ours inherits from
PATCH = {3: 128, 2: 512}  # per axis, raised to a multiple of the network's strides
BATCH = {3: 2, 2: 12}
_DECODER_ENCODER = "decoder.encoder."
_ALIASES = {"conv": "all_modules.0", "norm": "all_modules.1"}


def _settings(spec):
  """The registry settings of the spec's network; a ValueError when nnU-Net cannot hold it."""
  name = models.resolve(spec["model"])
  constructor, settings = models.MODELS[name]
  if constructor is not resenc.ResEncUNet:
    available = sorted(n for n, (c, _) in models.MODELS.items() if c is resenc.ResEncUNet)
    raise ValueError(f"{name} has no nnU-Net counterpart; residual-encoder U-Nets export "
                     f"to nnU-Net: {available}")
  if spec["network"] == "downstream" and spec["pooled"]:
    raise torch_layout.pooled_error("nnU-Net")
  return settings


def architecture(spec):
  """The `architecture` entry of an nnU-Net plans configuration that builds the network of
  `spec` (a W/model.json, training/weights.py): {'network_class_name', 'arch_kwargs',
  '_kw_requires_import'}, as nnU-Net's ResEnc planners write it. Input channels and classes
  are not in it: nnU-Net takes them from the target dataset."""
  ndim = spec["ndim"]
  arch = resenc.arch_settings(ndim, **_settings(spec))
  return {
      "network_class_name": NETWORK_CLASS,
      "arch_kwargs": {
          "n_stages": arch["n_stages"],
          "features_per_stage": list(arch["features_per_stage"]),
          "conv_op": f"torch.nn.modules.conv.Conv{ndim}d",
          "kernel_sizes": [list(k) for k in arch["kernel_sizes"]],
          "strides": [list(s) for s in arch["strides"]],
          "n_blocks_per_stage": list(arch["n_blocks_per_stage"]),
          "n_conv_per_stage_decoder": list(arch["n_conv_per_stage_decoder"]),
          "conv_bias": True,
          "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{ndim}d",
          "norm_op_kwargs": {"eps": resenc.EPS, "affine": True},
          "dropout_op": None,
          "dropout_op_kwargs": None,
          "nonlin": "torch.nn.LeakyReLU",
          "nonlin_kwargs": {"inplace": True},
      },
      "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
  }


def configuration_name(spec):
  return BASE[spec["ndim"]] + "_rasd"


def configuration(spec):
  """The plans configuration of our network: it inherits the rest from the target's."""
  ndim = spec["ndim"]
  divisor = resenc.divisor(ndim, **_settings(spec))
  patch = [-(-PATCH[ndim] // d) * d for d in divisor]
  return {"inherits_from": BASE[ndim], "patch_size": patch, "batch_size": BATCH[ndim],
          "architecture": architecture(spec)}


def input_text(spec):
  """What the network takes, for the card."""
  divisor = resenc.divisor(spec["ndim"], **_settings(spec))
  return (f"channels first (B, {spec['in_channels']}, *spatial), each spatial size a "
          f"multiple of {divisor[0] if len(set(divisor)) == 1 else divisor}")


def _aliases(key):
  """The other keys under which PyTorch's state dict lists the array of `key`."""
  module, _, leaf = key.rpartition(".")
  parent, _, child = module.rpartition(".")
  same = [key]
  if child in _ALIASES:
    same.append(f"{parent}.{_ALIASES[child]}.{leaf}")
  if key.startswith("encoder."):
    same += ["decoder." + k for k in same]
  return same[1:]


def _canonical(key):
  """The key an alias stands for (a key that is no alias: itself)."""
  if key.startswith(_DECODER_ENCODER):
    key = key[len("decoder."):]
  for child, alias in _ALIASES.items():
    key = key.replace(f".{alias}.", f".{child}.")
  return key


def strip_aliases(state_dict):
  """{key: array} of a ResidualEncoderUNet state dict without its aliases (module doc), each
  alias checked to hold the array it stands for."""
  out = {k: v for k, v in state_dict.items() if _canonical(k) == k}
  for key, value in state_dict.items():
    name = _canonical(key)
    if name == key:
      continue
    if name not in out:
      raise ValueError(f"{key!r} stands for {name!r}, which the checkpoint lacks: not a "
                       "ResidualEncoderUNet as nnU-Net's ResEnc plans build it (no dropout)")
    if not np.array_equal(np.asarray(value), np.asarray(out[name])):
      raise ValueError(f"{key!r} differs from {name!r}, the array it stands for")
  return out


def state_dict(model):
  """{key: array} as nnU-Net's ResidualEncoderUNet.state_dict() of our `model` lists it,
  aliases included (the same array object as the key they stand for). A dense downstream
  network's per-voxel head (a linear map) is folded into every segmentation layer, the
  deep-supervision ones included: nnU-Net's network with `num_outputs` classes computes
  ours."""
  unet, head = torch_layout.network_and_head(model, (resenc.ResEncUNet,), "nnU-Net")
  out = torch_layout.export(unet)
  if head is not None:
    for i in range(len(unet.decoder.seg_layers)):
      torch_layout.fold_head(out, f"decoder.seg_layers.{i}", head)
  for key in list(out):
    out.update(dict.fromkeys(_aliases(key), out[key]))
  return out


def _check(model, spec):
  """A ValueError unless `model` is the network of `spec` (names and shapes)."""
  expected = {k: v.shape for k, v in transfer.named(nnx.state(
      nnx.eval_shape(lambda: weights.build(spec)))).items()}
  actual = {k: np.shape(v) for k, v in transfer.named(nnx.state(model)).items()}
  if actual != expected:
    differ = sorted(set(actual.items()) ^ set(expected.items()))
    raise ValueError(f"the network is not the {spec['model']} of its spec ({spec['ndim']}D, "
                     f"{spec['in_channels']} input channels): first difference {differ[0]}")


_SCRIPT = '''"""Adds the rasd_jax network to the nnU-Net v2 plans of a target dataset: one
configuration, which inherits the rest (spacing, normalisation, preprocessed data) from the
dataset's own. Usage: python add_to_plans.py $nnUNet_preprocessed/DatasetXXX_NAME/nnUNetPlans.json
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "nnunet_plans.json")) as f:
  fragment = json.load(f)
if len(sys.argv) != 2:
  sys.exit(__doc__)
path = sys.argv[1]
with open(path) as f:
  plans = json.load(f)
for name, configuration in fragment["configurations"].items():
  base = configuration["inherits_from"]
  if base not in plans["configurations"]:
    sys.exit(f"error: {path} has no configuration {base!r} to inherit from: plan it first "
             f"(nnUNetv2_plan_and_preprocess -d DATASET -c {base})")
  plans["configurations"][name] = configuration
dataset = os.path.join(os.path.dirname(path), "dataset.json")
if os.path.exists(dataset):
  with open(dataset) as f:
    info = json.load(f)
  channels = len(info.get("channel_names", info.get("modality", {})))
  wanted = fragment["rasd_jax"]["in_channels"]
  if channels != wanted:
    sys.exit(f"error: the network takes {wanted} input channels; {dataset} has {channels}")
with open(path, "w") as f:
  json.dump(plans, f, indent=4)
checkpoint = os.path.join(here, "nnunet_checkpoint.pth")
print(f"added configuration {name!r} to {path}; fine-tune with:\\n"
      f"nnUNetv2_train DATASET {name} FOLD -pretrained_weights {checkpoint}")
'''


def write(out_dir, model, spec):
  """Writes into the folder `out_dir` the nnU-Net export of `model`, the network of `spec`:
  CHECKPOINT (torch.save of {'network_weights': state dict}), PLANS ({'configurations':
  {name: configuration}, 'rasd_jax': the spec}) and SCRIPT (adds the configuration to the
  target's plans file). Returns the file names. Needs PyTorch. `out_dir` may be on cloud
  storage (gs://...): each file is written whole through workdir.write_file."""
  import torch

  _settings(spec)
  _check(model, spec)
  arrays = state_dict(model)
  tensors = {}  # one tensor per array: aliases share it, and torch.save writes it once
  network_weights = collections.OrderedDict()
  for key, array in arrays.items():
    if id(array) not in tensors:
      tensors[id(array)] = torch.from_numpy(array)
    network_weights[key] = tensors[id(array)]
  buffer = io.BytesIO()
  torch.save({"network_weights": network_weights}, buffer)
  workdir_lib.write_file(os.path.join(out_dir, CHECKPOINT), buffer.getvalue())
  fragment = {"configurations": {configuration_name(spec): configuration(spec)},
              "rasd_jax": {k: v for k, v in spec.items() if k != "checkpoints"}}
  workdir_lib.write_file(os.path.join(out_dir, PLANS), json.dumps(fragment, indent=4))
  workdir_lib.write_file(os.path.join(out_dir, SCRIPT), _SCRIPT)
  return [CHECKPOINT, PLANS, SCRIPT]


def instructions(spec):
  """Markdown lines for the export's README: how to fine-tune from it with nnU-Net."""
  name, base = configuration_name(spec), BASE[spec["ndim"]]
  config = configuration(spec)
  return [
      f"nnU-Net v2 (2.8 or later) fine-tunes from it on a dataset with {spec['in_channels']} "
      "input channel(s), any classes:",
      "",
      "```bash",
      f"nnUNetv2_plan_and_preprocess -d DATASET -c {base}",
      f"python {SCRIPT} $nnUNet_preprocessed/DatasetXXX_NAME/nnUNetPlans.json",
      f"nnUNetv2_train DATASET {name} FOLD -pretrained_weights {CHECKPOINT}",
      "```",
      "",
      f"`{SCRIPT}` adds the configuration `{name}` from `{PLANS}` to the dataset's plans: "
      f"the network (`{NETWORK_CLASS}`), patch size {config['patch_size']} and batch size "
      f"{config['batch_size']}; everything else (spacing, normalisation, preprocessed data) "
      f"is inherited from the dataset's `{base}`. The patch size may be changed to any "
      f"multiple of {list(resenc.divisor(spec['ndim'], **_settings(spec)))} per axis, the "
      "batch size freely. nnU-Net loads every weight but the segmentation layers, which it "
      "initialises for the dataset's classes. Predict with "
      f"`nnUNetv2_predict -i IN -o OUT -d DATASET -c {name} -f FOLD`.",
  ]
