"""Our generator against the authors' PyTorch generator, on the same machine in one run.

  git clone https://github.com/yweibs/RaSD /tmp/RaSD       # the reference (not shipped)
  pip install torch SimpleITK scipy pillow                  # what its generator imports
  python bench/side_by_side.py --reference /tmp/RaSD --ndim 3 --size 128

Times the reference's own `DatasetGEN3D.gen_lab_img` (label map and image of one sample,
pretrain/train_RaSD in 3D, pretrain2d in 2D) on the CPU with `--threads` threads, then
`python -m rasd_jax.bench synthesis` with the same size and number of labels, and prints one
JSON line: both JSON results and `speedup` (reference ms per sample / ours). Each side runs
in its own process; ours sees the same CPUs (XLA uses every core it is given).
"""

import argparse
import json
import os
import subprocess
import sys
import time

_REFERENCE = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads({threads})
sys.path.insert(0, {folder!r})
from utils.dataloader_gen_online import DatasetGEN3D
torch.manual_seed(0); np.random.seed(0)
data = DatasetGEN3D(in_shape=({size},), num_label={labels})
data.gen_lab_img()  # warm-up
times = []
for _ in range({repeats}):
  start = time.perf_counter()
  image, label = data.gen_lab_img()
  times.append(time.perf_counter() - start)
print(json.dumps({{"ms_per_sample": round(1000 * float(np.median(times)), 3),
                  "shape": list(image.shape), "torch": torch.__version__,
                  "threads": torch.get_num_threads(), "repeats": {repeats}}}))
"""


def _last_json(command, env=None):
  out = subprocess.run(command, capture_output=True, text=True, env=env)
  if out.returncode:
    raise SystemExit(f"{' '.join(command[:3])} ... failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python bench/side_by_side.py")
  parser.add_argument("--reference", required=True,
                      help="a checkout of github.com/yweibs/RaSD")
  parser.add_argument("--ndim", type=int, default=3, choices=(2, 3))
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=4, help="our batch (samples per call)")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--threads", type=int, default=os.cpu_count())
  args = parser.parse_args(argv)

  folder = os.path.join(args.reference, "pretrain/train_RaSD" if args.ndim == 3 else "pretrain2d")
  if not os.path.isfile(os.path.join(folder, "utils", "dataloader_gen_online.py")):
    raise SystemExit(f"--reference {args.reference!r}: no {folder}/utils/dataloader_gen_online.py "
                     "(expected a checkout of github.com/yweibs/RaSD)")
  labels = args.size // (16 if args.ndim == 3 else 32)  # the reference's K
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="")  # the CPU, as our side
  start = time.perf_counter()
  reference = _last_json([sys.executable, "-c", _REFERENCE.format(
      threads=args.threads, folder=folder, size=args.size, labels=labels,
      repeats=args.repeats)], env)
  ours = _last_json([sys.executable, "-m", "rasd_jax.bench", "synthesis", "--ndim",
                     str(args.ndim), "--size", str(args.size), "--batch", str(args.batch),
                     "--repeats", str(args.repeats), "--set", f"num_labels={labels}"], env)
  print(json.dumps({
      "bench": "side_by_side", "ndim": args.ndim, "size": args.size, "num_labels": labels,
      "reference": reference, "ours": ours,
      "speedup": round(reference["ms_per_sample"] / ours["ms_per_sample"], 2),
      "wall_s": round(time.perf_counter() - start, 1),
  }))


if __name__ == "__main__":
  sys.exit(main())
