"""Benchmarks; each prints one JSON line of figures.

python -m rasd_jax.bench synthesis --ndim 3 --size 128 --batch 4 [--repeats 5]
  [--set warp_stride=1 --set gibbs_prob=1.0 ...]   (any synthesis field)
"""

import argparse
import ast
import json
import resource
import sys
import time

import jax
import numpy as np


def _synthesis(args):
  from rasd_jax import synthesis
  from rasd_jax.training import mesh as mesh_lib

  config = synthesis.get_config(args.ndim, args.size)
  for item in args.set:
    name, _, text = item.partition("=")
    if name not in config:
      raise SystemExit(f"--set {item!r}: unknown synthesis field {name!r}; "
                       f"known: {sorted(synthesis.FIELDS)}")
    config[name] = type(config[name])(ast.literal_eval(text))
  spec = synthesis.make_spec(config)
  mesh = mesh_lib.make_mesh()
  generate = synthesis.make_generator(spec, mesh, args.batch)

  start = time.perf_counter()
  jax.block_until_ready(generate(0, 0))
  compile_s = time.perf_counter() - start
  times = []
  for step in range(1, args.repeats + 1):
    start = time.perf_counter()
    jax.block_until_ready(generate(0, step))
    times.append(time.perf_counter() - start)
  per_sample = float(np.median(times)) / args.batch
  return {
      "bench": "synthesis", "ndim": args.ndim, "size": args.size, "batch": args.batch,
      "num_labels": spec.num_labels, "warp_stride": spec.warp_stride,
      "channels": spec.channels, "devices": mesh.shape["data"],
      "backend": jax.default_backend(), "compile_s": round(compile_s, 3),
      "ms_per_sample": round(per_sample * 1000, 3),
      "samples_per_s": round(1 / per_sample, 3), "repeats": args.repeats,
      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
  }


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m rasd_jax.bench")
  sub = parser.add_subparsers(dest="bench", required=True)
  p = sub.add_parser("synthesis", help="generator throughput")
  p.add_argument("--ndim", type=int, default=3, choices=(2, 3))
  p.add_argument("--size", type=int, default=128)
  p.add_argument("--batch", type=int, default=4)
  p.add_argument("--repeats", type=int, default=5, help="timed batches (median)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a synthesis field")
  args = parser.parse_args(argv)
  if args.repeats < 5:
    parser.error("--repeats must be at least 5")
  print(json.dumps({"synthesis": _synthesis}[args.bench](args)))


if __name__ == "__main__":
  sys.exit(main())
