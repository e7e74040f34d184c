"""pyproject.toml and requirements.txt pin the same versions."""

import os
import re
import tomllib

from conftest import REPO_ROOT


def _pins(lines):
  found = {}
  for line in lines:
    match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
    if match:
      found[match.group(1).lower().replace("_", "-")] = match.group(3)
  return found


def test_pyproject_pins_match_requirements():
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  with open(os.path.join(REPO_ROOT, "requirements.txt")) as f:
    required = _pins(f)
  declared = _pins(project["dependencies"])
  for extra, pins in project["optional-dependencies"].items():
    if extra not in ("cuda12", "tpu"):  # jax with its accelerator plugin: the same jax pin
      declared.update(_pins(pins))
  assert declared, "no pins read from pyproject.toml"
  differ = {name: (version, required.get(name)) for name, version in declared.items()
            if required.get(name) != version}
  assert not differ, f"pyproject.toml vs requirements.txt: {differ}"


def test_runtime_leaves_out_pytorch():
  """`pip install .` installs no PyTorch stack: the interop extra's packages are no runtime
  dependency (reading PyTorch checkpoints needs none of them)."""
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  runtime = set(_pins(project["dependencies"]))
  interop = set(_pins(project["optional-dependencies"]["interop"]))
  assert "torch" in interop and not runtime & interop, runtime & interop
