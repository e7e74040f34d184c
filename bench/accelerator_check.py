"""The accelerator check: what a GPU or TPU machine does with the generator and the step.

  python bench/accelerator_check.py [--budget 450] [--out check.jsonl] [--quick]

Runs `python -m rasd_jax.bench` cases one after another, each in its own process, most
informative first, and prints one JSON line per case as it ends (the bench's line plus
`case`, `wall_s`, `commit` and `date`; `error` and the stderr's last lines where the case
failed). Commit the lines under bench/results/ (one file per device run). It stops
starting cases once less than a case's estimate is left of `--budget` seconds, so the whole
check ends within the budget (a case still running at the end is stopped: `error`
"timeout"). The cases:

- our pre-training step against MONAI's network in PyTorch on the same card
  (`step_vs_torch`, PyTorch with autocast in bfloat16), each with the top operations of
  both profiles: SwinUNETR base 3D 128^3 batch 4 and the paper's 2D U-Net 512^2 batch 16,
  bfloat16 first, then float32; then the same with torch.compile;
- synthesis at 3D 128^3 (batch 4) and 2D 512^2 (batch 16), the defaults, and the same
  samples made on the accelerator and on the machine's CPU compared (`agreement`: the
  fraction of equal label voxels, the largest image difference);
- the pre-training step of SwinUNETR base, 3D 128^3, batch 4 (the paper's 3D run), in
  bfloat16 and float32, with and without rematerialised Swin blocks, and with cuDNN's
  fused attention;
- the pre-training step of the paper's 2D U-Net, 512^2, batch 16, bfloat16 and float32.

`--quick` runs the same cases at CPU sizes (32^3, 64^2, tiny networks) to try the script.
"""

import argparse
import json
import os
import subprocess
import sys
import time

# (name, bench arguments, seconds on an H200, compile included: measured for the
# `pretrain` cases (SwinUNETR base compiles in about 2 minutes there), estimated for the
# `step_vs_torch` ones (ours plus PyTorch's eager step, or its torch.compile). The whole
# list needs about 38 minutes; the first two cases fit one 10-minute device call.)
_SWIN = "--ndim 3 --size 128 --model base --batch 4"
_UNET = "--ndim 2 --size 512 --model unet_paper --batch 16 --num-labels 16"
CASES = [
    ("swin3d_bf16_vs_torch", f"step_vs_torch {_SWIN} --compute-dtype bfloat16 --profile 12 "
                             "--no-torch-compile", 220),
    ("unet2d_bf16_vs_torch", f"step_vs_torch {_UNET} --compute-dtype bfloat16 --profile 12 "
                             "--no-torch-compile", 110),
    ("swin3d_f32_vs_torch", f"step_vs_torch {_SWIN} --no-torch-compile", 200),
    ("unet2d_f32_vs_torch", f"step_vs_torch {_UNET} --no-torch-compile", 100),
    ("agreement", "--ndim 3 --size 128 --batch 2", 25),
    ("synthesis3d", "synthesis --ndim 3 --size 128 --batch 4", 20),
    ("synthesis2d", "synthesis --ndim 2 --size 512 --batch 16", 20),
    ("swin3d_bf16", "pretrain --ndim 3 --size 128 --model base --batch 4 "
                    "--compute-dtype bfloat16", 175),
    ("swin3d_f32", "pretrain --ndim 3 --size 128 --model base --batch 4", 160),
    ("unet2d_bf16", "pretrain --ndim 2 --size 512 --model unet_paper --batch 16 "
                    "--num-labels 16 --compute-dtype bfloat16", 65),
    ("unet2d_f32", "pretrain --ndim 2 --size 512 --model unet_paper --batch 16 "
                   "--num-labels 16", 60),
    ("swin3d_bf16_remat", "pretrain --ndim 3 --size 128 --model base --batch 4 "
                          "--compute-dtype bfloat16 --remat", 160),
    ("swin3d_f32_remat", "pretrain --ndim 3 --size 128 --model base --batch 4 --remat", 160),
    ("swin3d_bf16_cudnn", "pretrain --ndim 3 --size 128 --model base --batch 4 "
                          "--compute-dtype bfloat16 --attention cudnn", 175),
    ("unet2d_bf16_vs_torch_compile", f"step_vs_torch {_UNET} --compute-dtype bfloat16", 200),
    ("swin3d_bf16_vs_torch_compile", f"step_vs_torch {_SWIN} --compute-dtype bfloat16", 400),
]

# --quick: the same cases at sizes a 2-core CPU runs in a minute or two (64^3: MONAI's
# SwinUNETR refuses to train at 32^3, where its bottleneck instance norm sees one voxel).
QUICK = {"--size 128": "--size 64", "--size 512": "--size 64", "--model base": "--model tiny",
         "unet_paper": "unet_tiny", "--batch 16": "--batch 2", "--batch 4": "--batch 2"}


_SAMPLES = """
import sys, numpy as np, jax
from rasd_jax import synthesis
from rasd_jax.training.mesh import make_mesh
ndim, size, batch, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
spec = synthesis.make_spec(synthesis.get_config(ndim, size))
batch = jax.device_get(synthesis.make_generator(spec, make_mesh(), batch)(0, 0))
np.savez(path, backend=jax.default_backend(), **batch)
"""


def _agreement(arguments, timeout):
  """Samples (seed 0, step 0) of the accelerator and of the CPU, compared."""
  import tempfile

  import numpy as np
  values = dict(zip(arguments.split()[::2], arguments.split()[1::2]))
  start, out = time.perf_counter(), {}
  with tempfile.TemporaryDirectory() as folder:
    for platform in ("", "cpu"):
      path = os.path.join(folder, f"{platform or 'default'}.npz")
      env = dict(os.environ, JAX_PLATFORMS=platform)
      subprocess.run([sys.executable, "-c", _SAMPLES, values["--ndim"], values["--size"],
                      values["--batch"], path], env=env, check=True, capture_output=True,
                     text=True, timeout=max(1, timeout - (time.perf_counter() - start)))
      out[platform or "default"] = dict(np.load(path))
  a, b = out["default"], out["cpu"]
  return {"bench": "agreement", "ndim": int(values["--ndim"]), "size": int(values["--size"]),
          "backends": [str(a["backend"]), str(b["backend"])],
          "label_equal": float(np.mean(a["label"] == b["label"])),
          "image_max_abs_diff": float(np.abs(a["image"] - b["image"]).max())}


def _run(name, arguments, timeout):
  start = time.perf_counter()
  try:
    if name == "agreement":
      result = _agreement(arguments, timeout)
    else:
      out = subprocess.run([sys.executable, "-m", "rasd_jax.bench", *arguments.split()],
                           capture_output=True, text=True, timeout=timeout, check=True)
      result = json.loads(out.stdout.strip().splitlines()[-1])
  except subprocess.CalledProcessError as e:
    result = {"error": f"exit {e.returncode}", "stderr": _tail(e.stderr)}
  except subprocess.TimeoutExpired:
    result = {"error": "timeout"}
  return dict(result, case=name, wall_s=round(time.perf_counter() - start, 1))


def _stamp():
  """The commit of this checkout (None outside git) and today's date, for bench/results."""
  try:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  except OSError:
    commit = ""
  return {"commit": commit or None, "date": time.strftime("%Y-%m-%d")}


_STAMP = _stamp()


def _tail(stderr):
  """The last lines of a failed case's stderr that say something (not JAX's banners)."""
  lines = [line for line in (stderr or "").splitlines()
           if line.strip() and not line.startswith(("-----", "For simplicity"))]
  return lines[-3:]


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python bench/accelerator_check.py")
  parser.add_argument("--budget", type=float, default=450, help="seconds for the whole check")
  parser.add_argument("--out", help="also append the JSON lines to this file")
  parser.add_argument("--quick", action="store_true", help="CPU sizes, to try the script")
  parser.add_argument("--cases", help="comma-separated case names, run in that order "
                      "(default: all, in the order above)")
  args = parser.parse_args(argv)
  cases = CASES
  if args.cases:
    names = args.cases.split(",")
    unknown = sorted(set(names) - {name for name, _, _ in CASES})
    if unknown:
      parser.error(f"unknown cases {unknown}; known: {[name for name, _, _ in CASES]}")
    cases = [next(case for case in CASES if case[0] == name) for name in names]
  deadline = time.perf_counter() + args.budget
  for name, arguments, estimate in cases:
    if args.quick:
      for full, small in QUICK.items():
        arguments = arguments.replace(full, small)
    left = deadline - time.perf_counter()
    need = 1 if args.quick else min(estimate, args.budget)
    result = (_run(name, arguments, left) if left >= need else
              {"case": name, "error": "skipped: budget", "budget_left_s": round(left, 1)})
    line = json.dumps(dict(result, **_STAMP))
    print(line, flush=True)
    if args.out:
      with open(args.out, "a") as f:
        f.write(line + "\n")


if __name__ == "__main__":
  sys.exit(main())
