"""Weights in and out of rasd_jax: checkpoint files of PyTorch, MONAI and nnU-Net.

Reading and writing the files needs no PyTorch (files.py); what runs PyTorch itself (the
nnU-Net export's torch.save, the bench's PyTorch step) asks for it first through `require`.
"""

import importlib.util

# The packages `require` may ask for: (name, what to install: requirements-test.txt's pin,
# which tests/interop/test_missing_torch.py checks).
PACKAGES = {
    "torch": ("PyTorch", "torch==2.14.1"),
    "monai": ("MONAI", "monai==1.6.1"),
    "einops": ("einops", "einops==0.8.2"),  # MONAI's SwinUNETR needs it
}


def require(what, *modules):
  """Returns when the modules (keys of PACKAGES) are installed; else raises a ValueError,
  one line: `what` needs the missing ones, and the pip command that installs them."""
  missing = [PACKAGES[m] for m in modules if not _installed(m)]
  if missing:
    names = [name for name, _ in missing]
    names = ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else names[0]
    raise ValueError(f"{what} needs {names}, not installed here: "
                     f"pip install {' '.join(pin for _, pin in missing)}")


def _installed(module):
  """Whether `module` would import, found without importing it (importing PyTorch beside JAX
  may load a second copy of the CUDA libraries)."""
  try:
    return importlib.util.find_spec(module) is not None
  except ModuleNotFoundError:  # an import hook (a finder on sys.meta_path) that rules it out
    return False
