"""How long the prepare job takes per 100 cases, on downloads of real-size images made here.

  python bench/prepare_time.py [--cases2d 100] [--side2d 2048] [--side3d 512] [--slices 120]

2D: Shenzhen's layout (ChinaSet_AllFiles/CXR_png/CHNCXR_nnnn_{0,1}.png, grey 8-bit PNG of
side2d^2 pixels; the real ones are about 3000^2), read and checked in place, each case through
the task's preprocessing. 3D: BTCV in MONAI's layout (imagesTr/imgNNNN.nii.gz +
labelsTr/labelNNNN.nii.gz, int16 CT of side3d^2 x slices voxels at 0.8 x 0.8 x 2.5 mm, the 30
cases of the shipped list), each read with its label and checked. Prints one JSON line: seconds
and seconds per 100 cases for each, the rerun (nothing changed: every case skipped) included.
"""

import argparse
import json
import os
import tempfile
import time

import nibabel as nib
import numpy as np
from PIL import Image

from rasd_jax.data import downloads
from rasd_jax.data import prepared


def _shenzhen(root, cases, side):
  folder = os.path.join(root, "ChinaSet_AllFiles", "CXR_png")
  os.makedirs(folder)
  rng = np.random.default_rng(0)
  for n in range(1, cases + 1):
    image = rng.integers(0, 256, (side, side), np.uint8)
    Image.fromarray(image).save(os.path.join(folder, f"CHNCXR_{n:04d}_{n % 2}.png"))


def _btcv(root, side, slices):
  ids = [i for split in ("train", "val") for i in downloads.shipped("btcv.json")[split]]
  for folder in ("imagesTr", "labelsTr"):
    os.makedirs(os.path.join(root, folder))
  rng = np.random.default_rng(0)
  affine = np.diag([-0.8, -0.8, 2.5, 1.0])
  for case in ids:
    image = rng.integers(-1000, 1500, (side, side, slices), np.int16)
    label = np.zeros((side, side, slices), np.uint8)
    label[side // 4:side // 2, side // 4:side // 2, slices // 4:slices // 2] = 6
    nib.save(nib.Nifti1Image(image, affine), os.path.join(root, "imagesTr", f"{case}.nii.gz"))
    number = case.removeprefix("img")
    nib.save(nib.Nifti1Image(label, affine),
             os.path.join(root, "labelsTr", f"label{number}.nii.gz"))
  return len(ids)


def _timed(task, source, out, cases):
  seconds = []
  for _ in range(2):  # the first run checks every case, the rerun none
    start = time.perf_counter()
    prepared.prepare(task, source, out, threads=2, progress=False)
    seconds.append(time.perf_counter() - start)
  return {"task": task, "cases": cases, "seconds": round(seconds[0], 2),
          "per_100_cases_s": round(100 * seconds[0] / cases, 1),
          "rerun_seconds": round(seconds[1], 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--cases2d", type=int, default=100)
  parser.add_argument("--side2d", type=int, default=2048)
  parser.add_argument("--side3d", type=int, default=512)
  parser.add_argument("--slices", type=int, default=120)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as root:
    _shenzhen(os.path.join(root, "shenzhen"), args.cases2d, args.side2d)
    two = _timed("shenzhen", os.path.join(root, "shenzhen"), os.path.join(root, "d2"),
                 args.cases2d)
    cases3d = _btcv(os.path.join(root, "btcv"), args.side3d, args.slices)
    three = _timed("btcv", os.path.join(root, "btcv"), os.path.join(root, "d3"), cases3d)
  print(json.dumps({"bench": "prepare", "2d": {**two, "side": args.side2d},
                    "3d": {**three, "shape": [args.side3d, args.side3d, args.slices]},
                    "threads": 2}))


if __name__ == "__main__":
  main()
