"""Benchmarks; each prints one JSON line of figures.

python -m rasd_jax.bench synthesis --ndim 3 --size 128 --batch 4 [--repeats 5]
  [--set warp_stride=1 --set gibbs_prob=1.0 ...]   (any synthesis field)
python -m rasd_jax.bench pretrain --ndim 3 --size 64 --model tiny --batch 2 [--repeats 5]
  [--num-labels 8] [--compute-dtype bfloat16] [--remat] [--attention cudnn] [--set ...]
"""

import argparse
import ast
import json
import resource
import sys
import time

import jax
from jax.sharding import Mesh
import numpy as np


def _spec(args, **fields):
  from rasd_jax import synthesis
  config = synthesis.get_config(args.ndim, args.size)
  config.update(fields)
  for item in args.set:
    name, _, text = item.partition("=")
    if name not in config:
      raise SystemExit(f"--set {item!r}: unknown synthesis field {name!r}; "
                       f"known: {sorted(synthesis.FIELDS)}")
    config[name] = type(config[name])(ast.literal_eval(text))
  return synthesis.make_spec(config)


def _median_s(fn, repeats):
  """(seconds of the first call, compile included; median seconds of `repeats` calls).
  `fn(i)` must block until its result is ready."""
  start = time.perf_counter()
  fn(0)
  first = time.perf_counter() - start
  times = []
  for i in range(1, repeats + 1):
    start = time.perf_counter()
    fn(i)
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


# Dense peak FLOP/s per chip from the vendors' datasheets, by jax `device_kind` (first
# match): (bfloat16, float32 matrix products). float32 is the TF32 tensor-core rate on
# NVIDIA (XLA's default precision for float32 products there) and the bfloat16 rate on TPUs
# (default precision: bfloat16 passes).
PEAK_FLOPS = (
    ("H200", 989e12, 494e12),
    ("H100", 989e12, 494e12),   # SXM
    ("A100", 312e12, 156e12),
    ("L4", 121e12, 60e12),
    ("TPU v6", 918e12, 918e12),  # v6e (Trillium)
    ("TPU v5p", 459e12, 459e12),
    ("TPU v5", 197e12, 197e12),  # v5e ("TPU v5 lite")
    ("TPU v4", 275e12, 275e12),
)


def peak_flops(device_kind, dtype):
  """The table's peak FLOP/s of one device of `device_kind` for `dtype`, or None."""
  for name, bf16, f32 in PEAK_FLOPS:
    if name.lower() in device_kind.lower():
      return bf16 if dtype == "bfloat16" else f32
  return None


def program_flops(lowered):
  """XLA's count of floating-point operations of one call of a program lowered for the CPU
  (the cost analysis of the program before the backend's passes, which on a GPU hide
  convolutions in library calls it no longer counts): 2 per multiply-add of a product or
  convolution, 1 per elementwise op; a loop body counts once whatever its trip count, so
  the generator's per-sample loop is undercounted, the network not."""
  analysis = lowered.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per program
    analysis = analysis[0]
  return float(analysis["flops"]) if analysis and "flops" in analysis else None


def _peak_rss_mb():
  return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _synthesis(args):
  from rasd_jax import synthesis
  from rasd_jax.training import mesh as mesh_lib

  spec = _spec(args)
  mesh = mesh_lib.make_mesh()
  generate = synthesis.make_generator(spec, mesh, args.batch)
  compile_s, seconds = _median_s(lambda step: jax.block_until_ready(generate(0, step)),
                                 args.repeats)
  per_sample = seconds / args.batch
  return {
      "bench": "synthesis", "ndim": args.ndim, "size": args.size, "batch": args.batch,
      "num_labels": spec.num_labels, "warp_stride": spec.warp_stride,
      "channels": spec.channels, "devices": mesh.shape["data"],
      "backend": jax.default_backend(), "compile_s": round(compile_s, 3),
      "ms_per_sample": round(per_sample * 1000, 3),
      "samples_per_s": round(1 / per_sample, 3), "repeats": args.repeats,
      "peak_rss_mb": _peak_rss_mb(),
  }


def _pretrain(args):
  """One pre-training step (synthesis inside), against the generator alone."""
  import ml_collections

  from rasd_jax import models
  from rasd_jax import synthesis
  from rasd_jax.training import mesh as mesh_lib
  from rasd_jax.training import optimizer
  from rasd_jax.training import pretrain
  from rasd_jax.training import state as state_lib

  spec = _spec(args, num_labels=args.num_labels)
  name = models.resolve(args.model)
  mesh = mesh_lib.make_mesh()
  tx, schedule = optimizer.make(optimizer.get_config(), total_steps=1)

  def make_model():
    return models.create(name, spec.ndim, spec.channels, 32, rngs=models.init_rngs(0),
                         remat=args.remat, attention=args.attention)

  loss = ml_collections.ConfigDict(dict(exclude_absent=False, cosine=False, two_view=False))

  def lower(mesh):
    graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
    step = pretrain.make_step(graphdef, abstract, spec, mesh, seed=0, batch_size=args.batch,
                              tx=tx, schedule=schedule, loss=loss,
                              compute_dtype=args.compute_dtype)
    return abstract, step.lower(abstract)

  start = time.perf_counter()
  abstract, lowered = lower(mesh)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  # Counted on the program for one CPU device, whatever runs the step: the whole batch,
  # before any backend's passes.
  cpu = Mesh(np.asarray(jax.devices("cpu")[:1]).reshape(1, 1), ("replica", "data"))
  flops = program_flops(lower(cpu)[1])
  state = [state_lib.create(make_model, tx, abstract)]

  def train(_):
    state[0], metrics = compiled(state[0])
    jax.block_until_ready(metrics)

  _, step_s = _median_s(train, args.repeats)
  generate = synthesis.make_generator(spec, mesh, args.batch)
  _, synthesis_s = _median_s(lambda s: jax.block_until_ready(generate(0, s)), args.repeats)
  kind = jax.devices()[0].device_kind
  peak = peak_flops(kind, args.compute_dtype)  # None for a CPU: not in the table
  peak = peak * mesh.size if peak else None  # every device of the step
  achieved = flops / step_s if flops else None
  return {
      "bench": "pretrain", "ndim": args.ndim, "size": args.size, "batch": args.batch,
      "model": name, "params": models.count_params(name, spec.ndim, spec.channels, 32),
      "num_labels": spec.num_labels, "compute_dtype": args.compute_dtype,
      "remat": args.remat, "attention": args.attention,
      "devices": mesh.shape["data"], "backend": jax.default_backend(), "device_kind": kind,
      "compile_s": round(compile_s, 3), "step_s": round(step_s, 4),
      "flops": flops, "flops_per_s": round(achieved, 1) if achieved else None,
      "peak_flops": peak, "mfu": round(achieved / peak, 4) if achieved and peak else None,
      "samples_per_s": round(args.batch / step_s, 3),
      "synthesis_s": round(synthesis_s, 4),
      "synthesis_fraction": round(synthesis_s / step_s, 4),
      "compiled_temp_mb": round(memory.temp_size_in_bytes / 2**20, 1) if memory else None,
      "compiled_argument_mb": (round(memory.argument_size_in_bytes / 2**20, 1)
                               if memory else None),
      "repeats": args.repeats, "peak_rss_mb": _peak_rss_mb(),
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
  p = sub.add_parser("pretrain", help="pre-training step time and the synthesis share")
  p.add_argument("--ndim", type=int, default=3, choices=(2, 3))
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--model", default="tiny",
                 help="a rasd_jax.models name; tiny ... huge mean swinunetr_<size>")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--num-labels", type=int, default=8)
  p.add_argument("--compute-dtype", default="float32", choices=("float32", "bfloat16"))
  p.add_argument("--remat", action="store_true", help="recompute each Swin block (SwinUNETR)")
  p.add_argument("--attention", default="einsum", help="SwinUNETR: einsum, xla or cudnn")
  p.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a synthesis field")
  args = parser.parse_args(argv)
  if args.repeats < 5:
    parser.error("--repeats must be at least 5")
  print(json.dumps({"synthesis": _synthesis, "pretrain": _pretrain}[args.bench](args)))


if __name__ == "__main__":
  sys.exit(main())
