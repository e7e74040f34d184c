"""pyproject.toml, requirements.txt (the jobs) and requirements-test.txt (the tests) pin the same
versions."""

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


def _requirements(name):
  """The pins of the requirements file `name` and of the files it includes (`-r FILE`)."""
  with open(os.path.join(REPO_ROOT, name)) as f:
    lines = f.readlines()
  found = {}
  for line in lines:
    match = re.match(r"^\s*-r\s+(\S+)", line)
    if match:
      found.update(_requirements(match.group(1)))
  return found | _pins(lines)


def test_pyproject_pins_match_requirements():
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  runtime, tests = _requirements("requirements.txt"), _requirements("requirements-test.txt")
  declared = _pins(project["dependencies"])
  assert declared, "no pins read from pyproject.toml"
  differ = {name: (version, runtime.get(name)) for name, version in declared.items()
            if runtime.get(name) != version}
  assert not differ, f"pyproject.toml's dependencies vs requirements.txt: {differ}"
  for extra, pins in project["optional-dependencies"].items():
    if extra not in ("cuda12", "tpu"):  # jax with its accelerator plugin: the same jax pin
      differ.update({name: (version, tests.get(name)) for name, version in _pins(pins).items()
                     if tests.get(name) != version})
  assert not differ, f"pyproject.toml's extras vs requirements-test.txt: {differ}"


def test_requirements_leave_pytorch_to_the_tests():
  """requirements.txt, the jobs' install, has no PyTorch stack (the interop jobs that need it
  say so); requirements-test.txt adds it to requirements.txt."""
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    interop = set(_pins(tomllib.load(f)["project"]["optional-dependencies"]["interop"]))
  runtime, tests = _requirements("requirements.txt"), _requirements("requirements-test.txt")
  assert "torch" in interop and not set(runtime) & interop, set(runtime) & interop
  assert interop <= set(tests) and runtime.items() <= tests.items()


def test_runtime_leaves_out_pytorch():
  """`pip install .` installs no PyTorch stack: the interop extra's packages are no runtime
  dependency (reading PyTorch checkpoints needs none of them)."""
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  runtime = set(_pins(project["dependencies"]))
  interop = set(_pins(project["optional-dependencies"]["interop"]))
  assert "torch" in interop and not runtime & interop, runtime & interop
