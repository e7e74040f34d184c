"""Export a workdir's weights for PyTorch users.

format "monai": the SwinUNETR or UNet of `config.source` (any workdir load_model reads) as a
state dict of MONAI's `SwinUNETR(..., use_v2=True)` or `UNet(..., act="relu",
norm="batch")`: OUT/model.safetensors, OUT/model.pt (where PyTorch is installed; torch.save
of the same tensors). format "nnunet": a ResEnc U-Net as nnU-Net v2's pre-trained weights
(interop/nnunet.py; needs PyTorch). Both: OUT/card.json (network, constructor arguments,
provenance: source workdir and step, its pre-training settings, the code version) and
OUT/README.md (the same for people, and how to load it). The network is checked and
converted before OUT is touched. OUT must be new, empty or an earlier export of the same
config: a folder holding anything else (a model repository's clone) is refused unless
`overwrite=True`, which writes into it and replaces its files of those names. OUT and the
source may be on cloud storage (gs://...): each file is written whole through
workdir.write_file.
"""

import importlib.metadata
import io
import json
import math
import os
import subprocess

from etils import epath
import jax

import rasd_jax
from rasd_jax import interop
from rasd_jax.interop import files
from rasd_jax.interop import monai
from rasd_jax.interop import nnunet
from rasd_jax.training import weights
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

FORMATS = ("monai", "nnunet")


def _git(*args, root):
  """(exit status, stdout) of a read-only git command in `root` (no optional locks: the
  index of a checkout someone is committing in is left alone)."""
  out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, GIT_OPTIONAL_LOCKS="0"))
  return out.returncode, out.stdout.strip()


def code_version():
  """`git describe` of the checkout rasd_jax runs from (with "-dirty" when tracked files
  changed), else the installed package's version, else "unknown"."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(rasd_jax.__file__)))
  if os.path.exists(os.path.join(root, ".git")):  # not an enclosing project's repository
    try:
      status, described = _git("describe", "--always", "--tags", root=root)
      if status == 0:
        return described + ("-dirty" if _git("diff", "--quiet", "HEAD", "--",
                                             root=root)[0] else "")
    except (OSError, subprocess.TimeoutExpired):
      pass
  try:
    return importlib.metadata.version("rasd_jax")
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def provenance(source):
  """What the source workdir's config.json says about how the weights were made."""
  path = epath.Path(source) / "config.json"
  if not path.exists():
    return {}
  config = json.loads(path.read_text())
  out = {"job": config.get("job")}
  if config.get("job") == "pretrain":
    out.update({k: config.get(k) for k in ("total_steps", "batch_size", "seed", "loss",
                                           "optim", "synthesis")})
  elif config.get("job") == "import_weights":
    out["imported_from"] = config.get("path")
  elif config.get("job") == "finetune":
    out.update({k: config.get(k) for k in ("task", "init")})
  return out


def card(config, spec, network, constructor, input_text):
  """OUT/card.json: the PyTorch network, its arguments, where the weights come from."""
  source, _ = weights.split_path(config.source)
  return {
      "format": config.format,
      "network": network,
      "constructor": constructor,
      "input": input_text,
      "rasd_jax": {k: spec[k] for k in spec if k != "checkpoints"},
      "source": config.source,
      "step": spec["step"],
      "made_by": provenance(source),
      "code_version": code_version(),
  }


def readme(info, loading):
  """OUT/README.md from the card `info` and `loading` (the lines that say how to load it):
  what it is, how it was made."""
  made = info["made_by"]
  lines = [
      f"# {info['rasd_jax']['model']} for {'MONAI' if info['format'] == 'monai' else 'nnU-Net'}",
      "",
      f"`{info['network']}`, exported by rasd_jax {info['code_version']} from "
      f"`{info['source']}` (step {info['step']}"
      + (f", written by its {made['job']} job" if made.get("job") else "") + ").",
      "",
      *loading,
      "",
      f"Input: {info['input']}.",
  ]
  network = info["rasd_jax"]
  if network.get("classes"):  # a fine-tuned network
    lines.append(f"Output: {network['output']} over {network['num_outputs']} channels, "
                 f"classes {network['classes']}.")
  if made.get("job") == "pretrain":
    lines += ["", f"Pre-trained for {made['total_steps']} steps (batch {made['batch_size']}, "
              f"seed {made['seed']}) on RaSD synthetic data with the prototype loss.", "",
              f"- loss: `{json.dumps(made['loss'])}`",
              f"- optimiser: `{json.dumps(made['optim'])}`",
              f"- generator: `{json.dumps(made['synthesis'])}`"]
  if made.get("imported_from"):
    lines += ["", f"Imported from `{made['imported_from']}`."]
  lines += ["", "All settings: `card.json`."]
  return "\n".join(lines) + "\n"


def _torch():
  try:
    import torch
  except ImportError:
    return None
  return torch


def _monai(config, spec):
  """(card, loading lines, a function writing the files into OUT) for format monai."""
  name, constructor = monai.monai_network(spec)
  state = monai.from_rasd(weights.load_model(config.source))
  multiple = 32 if name == "SwinUNETR" else math.prod(constructor["strides"])
  info = card(config, spec, f"monai.networks.nets.{name}", constructor,
              f"channels first (B, C, *spatial), each spatial size a multiple of {multiple}")
  args = ", ".join(f"{k}={v!r}" for k, v in constructor.items())
  torch = _torch()
  loading = [
      "```python",
      "import monai, safetensors.torch",
      f"model = monai.networks.nets.{name}({args})",
      'model.load_state_dict(safetensors.torch.load_file("model.safetensors"), strict=True)',
      "```",
  ]
  if torch is not None:
    loading += ["", '`model.pt` holds the same tensors: `torch.load("model.pt", '
                'weights_only=True)`.']

  def write(out):
    files.write_safetensors(os.path.join(out, "model.safetensors"), state,
                            metadata={"format": "pt"})
    if torch is not None:
      buffer = io.BytesIO()
      torch.save({k: torch.from_numpy(v) for k, v in state.items()}, buffer)
      workdir_lib.write_file(os.path.join(out, "model.pt"), buffer.getvalue())
    return ["model.safetensors"] + (["model.pt"] if torch is not None else [])

  return info, loading, write


def _nnunet(config, spec):
  """(card, loading lines, a function writing the files into OUT) for format nnunet."""
  arch = nnunet.architecture(spec)
  info = card(config, spec, arch["network_class_name"], arch["arch_kwargs"],
              nnunet.input_text(spec))
  model = weights.load_model(config.source)
  return info, nnunet.instructions(spec), lambda out: nnunet.write(out, model, spec)


def run(config, workdir):
  if config.format not in FORMATS:
    raise ValueError(f"format {config.format!r}: one of {FORMATS}")
  if config.format == "nnunet":  # before the source is read
    interop.require("export_weights format=nnunet (a torch.save checkpoint)", "torch")
  if not config.source:
    raise ValueError("--config.source=W: the workdir whose weights to export")
  spec = weights.read_spec(config.source)
  info, loading, write = (_monai if config.format == "monai" else _nnunet)(config, spec)

  workdir_lib.prepare(workdir, config, may_change=("overwrite",), replace=config.overwrite)
  workdir_lib.write_json(os.path.join(workdir, "card.json"), info)
  if jax.process_index() == 0:
    written = write(workdir)
    workdir_lib.write_file(os.path.join(workdir, "README.md"), readme(info, loading))
    args = ", ".join(f"{k}={v}" for k, v in info["constructor"].items())
    log(f"wrote {', '.join(os.path.join(workdir, w) for w in written)}: "
        f"{info['network']}({args})")
