"""Without PyTorch (the lean install, requirements.txt alone), what needs it says so in one
line and names what to install: run in a subprocess whose imports of torch fail, as where it
is not installed (this environment has it, for the parity tests)."""

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from rasd_jax import interop

# Prepended to the command: a finder first on sys.meta_path that finds no torch.
NO_TORCH = """\
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.partition(".")[0] == "torch":
      raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTorch())
"""


def _without_torch(code, *args):
  return subprocess.run([sys.executable, "-c", NO_TORCH + code, *args], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_export_nnunet_names_pytorch(tmp_path):
  out = _without_torch("import runpy\nsys.argv[0] = 'run.py'\n"
                       "runpy.run_path('run.py', run_name='__main__')",
                       "--config=experiments/export_weights.py:format=nnunet",
                       f"--config.source={tmp_path / 'source'}", f"--workdir={tmp_path / 'out'}")
  assert out.returncode == 1
  assert out.stderr == ("error: export_weights format=nnunet (a torch.save checkpoint) needs "
                        "PyTorch, not installed here: pip install torch==2.14.1\n"), out.stderr
  assert not (tmp_path / "out").exists()


def test_step_vs_torch_names_pytorch():
  out = _without_torch("from rasd_jax import bench\nbench.main(sys.argv[1:])",
                       "step_vs_torch", "--model", "unet_tiny", "--ndim", "2")
  assert out.returncode == 1
  assert out.stderr == ("error: python -m rasd_jax.bench step_vs_torch needs PyTorch, not "
                        "installed here: pip install torch==2.14.1\n"), out.stderr
  assert not out.stdout


def test_require_names_the_missing_ones(monkeypatch):
  monkeypatch.setitem(interop.PACKAGES, "no_such_module_a", ("A", "a==1.0"))
  monkeypatch.setitem(interop.PACKAGES, "no_such_module_b", ("B", "b==2.0"))
  interop.require("this", "einops")  # installed here
  with pytest.raises(ValueError) as e:
    interop.require("this", "no_such_module_a", "einops", "no_such_module_b")
  assert str(e.value) == "this needs A and B, not installed here: pip install a==1.0 b==2.0"


def test_pins_are_requirements_test_pins():
  with open(os.path.join(REPO_ROOT, "requirements-test.txt")) as f:
    pins = set(re.findall(r"^\S+==\S+", f.read(), re.MULTILINE))
  assert {pin for _, pin in interop.PACKAGES.values()} <= pins
