"""Benchmarks; each prints one JSON line of figures.

python -m rasd_jax.bench synthesis --ndim 3 --size 128 --batch 4 [--repeats 5]
  [--set warp_stride=1 --set gibbs_prob=1.0 ...]   (any synthesis field)
python -m rasd_jax.bench pretrain --ndim 3 --size 64 --model tiny --batch 2 [--repeats 5]
  [--num-labels 8] [--compute-dtype bfloat16] [--remat] [--attention cudnn] [--set ...]
python -m rasd_jax.bench step_vs_torch --model tiny --ndim 3 --size 64 --batch 2
  [--compute-dtype bfloat16] [--no-torch-compile] [...]   (the pretrain options)
  our pre-training step and the same network built by MONAI in PyTorch, same batch, loss
  and optimiser, on the same device (PyTorch in a subprocess that ends before JAX starts);
python -m rasd_jax.bench torch_step ...   (that PyTorch side alone)
python -m rasd_jax.bench finetune_step --task drive [--model unet_paper] [--size 128]
  [--batch 2] [--compute-dtype both] [--dropout 0.15] [--repeats 5]
  the fine-tuning step of a registry task (its patch, batch, classes and output; the
  engine's scratch network, the reference's dropout unless given), on random data; "both":
  float32 and bfloat16 side by side in one process
"""

import argparse
import ast
import json
import platform
import resource
import subprocess
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
  top_ops = _profile(train, compiled.as_text(), args.profile) if args.profile else None
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
      **({"top_ops": top_ops} if top_ops else {}),
  }


def _profile(fn, hlo_text, count, steps=3):
  """The `count` operations that take the most time in `steps` calls of `fn` under
  jax.profiler: [{op, ms_per_step, share, hlo}], `hlo` the start of the operation's line in
  the compiled program. Time is summed over the accelerator's kernels where the trace has a
  device plane, else over the CPU's XLA worker threads (so a CPU op split over two threads
  counts twice); `share` is of that sum."""
  import collections
  import glob
  import re
  import tempfile

  from jax.profiler import ProfileData

  with tempfile.TemporaryDirectory() as folder:
    jax.profiler.start_trace(folder)
    for i in range(steps):
      fn(i)
    jax.profiler.stop_trace()
    data = ProfileData.from_file(glob.glob(f"{folder}/**/*.xplane.pb", recursive=True)[0])
  device = [p for p in data.planes if p.name.startswith("/device:")]
  totals = collections.Counter()
  for plane in device or [p for p in data.planes if p.name.startswith("/host:")]:
    for line in plane.lines:
      if line.name != "XLA Ops" if device else "XLAEigen" not in line.name:
        continue
      for event in line.events:
        if not event.name.startswith(("ThunkExecutor", "SlinkyThreadPool")):
          totals[event.name] += event.duration_ns
  whole = sum(totals.values()) or 1
  out = []
  for name, ns in totals.most_common(count):
    match = re.search(rf"%{re.escape(name)} = ([^\n]{{0,160}})", hlo_text)
    out.append({"op": name, "ms_per_step": round(ns / steps / 1e6, 3),
                "share": round(ns / whole, 4), "hlo": match.group(1) if match else None})
  return out


# The PyTorch side of `step_vs_torch`: MONAI's network (interop/monai.py names it), the
# prototype loss written out in PyTorch on a random batch (labels uniform over num_labels),
# AdamW with our default optimiser settings; bfloat16 under torch.autocast. Timed like ours:
# the median of `repeats` steps after one untimed step (two for torch.compile).
def _torch_step(args):
  import torch
  from torch.utils import flop_counter

  from rasd_jax import models
  from rasd_jax.interop import monai as monai_interop
  from rasd_jax.training import optimizer
  import monai.networks.nets

  name = models.resolve(args.model)
  class_name, arguments = monai_interop.monai_network(dict(
      model=name, ndim=args.ndim, network="backbone", in_channels=1, out_channels=32))
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(0)
  network = getattr(monai.networks.nets, class_name)(**arguments).to(device)
  optim = optimizer.get_config()
  opt = torch.optim.AdamW(network.parameters(), lr=optim.lr, betas=(optim.b1, optim.b2),
                          eps=optim.eps, weight_decay=optim.weight_decay)
  shape = (args.batch,) + (args.size,) * args.ndim
  image = torch.randn((args.batch, 1) + shape[1:], device=device)
  labels = torch.randint(0, args.num_labels, shape, device=device)
  eye = torch.eye(args.num_labels, device=device)
  autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                            enabled=args.compute_dtype == "bfloat16")

  def loss_fn(features, temperature=0.07, eps=1e-6):
    f = features.float().flatten(2)                                   # (B, C, V)
    y = torch.nn.functional.one_hot(labels.flatten(1), args.num_labels).float()  # (B, V, K)
    p = torch.einsum("bvk,bcv->bkc", y, f) / y.sum(1).clamp(min=1)[..., None]
    seg = torch.einsum("bkc,bcv->bvk", p, f) / temperature
    seg = -(y * torch.log(torch.softmax(seg, -1) + eps)).mean()
    proto = torch.einsum("bic,bjc->bij", p, p) / temperature
    return seg - (eye * torch.log(torch.softmax(proto, -1) + eps)).mean()

  def step():
    opt.zero_grad(set_to_none=True)
    with autocast:
      features = network(image)
    loss = loss_fn(features)
    loss.backward()
    opt.step()
    return loss

  def timed(fn, warmup):
    for _ in range(warmup):
      fn()
    times = []
    for _ in range(args.repeats):
      if device.type == "cuda":
        torch.cuda.synchronize()
      start = time.perf_counter()
      fn()
      if device.type == "cuda":
        torch.cuda.synchronize()
      times.append(time.perf_counter() - start)
    return float(np.median(times))

  with flop_counter.FlopCounterMode(display=False) as counter:
    step()
  result = {
      "torch_step_s": round(timed(step, 1), 4),
      "model_flops": float(counter.get_total_flops()),
      "torch_device": (torch.cuda.get_device_name() if device.type == "cuda"
                       else platform.processor() or "cpu"),
      "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
      "monai": monai.__version__, "monai_network": class_name,
  }
  if args.profile:
    result["torch_top_ops"] = _torch_profile(step, device, args.profile)
  if args.torch_compile:
    try:
      step = torch.compile(step)
      start = time.perf_counter()
      step()
      result["torch_compile_compile_s"] = round(time.perf_counter() - start, 3)
      result["torch_compile_step_s"] = round(timed(step, 1), 4)
    except Exception as e:  # noqa: BLE001 -- reported, as torch.compile fails on some setups
      result["torch_compile_error"] = f"{type(e).__name__}: {str(e)[:300]}"
  return result


def _torch_profile(step, device, count, steps=3):
  """`_profile`'s summary of PyTorch's eager step (torch.profiler): time on the GPU's
  kernels where there is one, else on the CPU, by operator, self time."""
  from torch import profiler
  import torch

  cuda = device.type == "cuda"
  activities = [profiler.ProfilerActivity.CPU] + ([profiler.ProfilerActivity.CUDA]
                                                  if cuda else [])
  with profiler.profile(activities=activities) as trace:
    for _ in range(steps):
      step()
    if cuda:
      torch.cuda.synchronize()
  key = "self_device_time_total" if cuda else "self_cpu_time_total"
  events = trace.key_averages()
  whole = sum(getattr(e, key) for e in events) or 1
  top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:count]
  return [{"op": e.key, "ms_per_step": round(getattr(e, key) / steps / 1e3, 3),
           "share": round(getattr(e, key) / whole, 4)} for e in top]


def _step_vs_torch(args):
  """Both steps on the same device: PyTorch first, in a subprocess that ends before this
  process starts JAX (so neither holds the other's accelerator memory)."""
  command = [sys.executable, "-m", "rasd_jax.bench", "torch_step"] + _step_argv(args)
  out = subprocess.run(command, capture_output=True, text=True)
  if out.returncode:
    raise SystemExit(f"error: the PyTorch side failed ({' '.join(command[1:])}):\n"
                     f"{out.stderr[-3000:]}")
  theirs = json.loads(out.stdout.strip().splitlines()[-1])
  ours = _pretrain(args)
  model_flops = theirs["model_flops"]
  peak = ours["peak_flops"]
  result = {
      "bench": "step_vs_torch", "model": ours["model"], "ndim": args.ndim,
      "size": args.size, "batch": args.batch, "num_labels": args.num_labels,
      "compute_dtype": args.compute_dtype, "ours_step_s": ours["step_s"],
      "torch_step_s": theirs["torch_step_s"],
      "speedup": round(theirs["torch_step_s"] / ours["step_s"], 3),
      "model_flops": model_flops, "ours_program_flops": ours["flops"],
      "ours_model_flops_per_s": round(model_flops / ours["step_s"], 1),
      "torch_model_flops_per_s": round(model_flops / theirs["torch_step_s"], 1),
      "ours_mfu": round(model_flops / ours["step_s"] / peak, 4) if peak else None,
      "torch_mfu": round(model_flops / theirs["torch_step_s"] / peak, 4) if peak else None,
      "synthesis_fraction": ours["synthesis_fraction"], "ours_compile_s": ours["compile_s"],
      **({"top_ops": ours["top_ops"]} if "top_ops" in ours else {}),
      "device_kind": ours["device_kind"], "devices": ours["devices"],
      "jax": jax.__version__, "python": platform.python_version(),
  }
  if "torch_compile_step_s" in theirs:
    result["speedup_vs_torch_compile"] = round(
        theirs["torch_compile_step_s"] / ours["step_s"], 3)
  result.update({k: v for k, v in theirs.items() if k not in result})
  return result


def _finetune_step(args):
  """The fine-tuning step (downstream.make_step) of a registry-like config, per compute
  dtype."""
  from rasd_jax import models
  from rasd_jax.data import tasks
  from rasd_jax.jobs import finetune as finetune_job
  from rasd_jax.training import downstream
  from rasd_jax.training import mesh as mesh_lib
  from rasd_jax.training import optimizer
  from rasd_jax.training import state as state_lib

  task = tasks.get(args.task)
  name = models.resolve(args.model or finetune_job.DEFAULT_MODELS[task.ndim])
  roi = (args.size,) * task.ndim if args.size else tuple(task.roi)
  batch = args.batch or task.sampling.batch * task.sampling.patches_per_case
  output = task.inference.output if task.kind == "segmentation" else task.kind
  outputs = 1 if output in ("sigmoid", "regression") else task.num_classes
  dropout = models.reference_dropout(name, task.ndim) if args.dropout is None else args.dropout
  mesh = mesh_lib.make_mesh(batch)
  tx, schedule = optimizer.make(optimizer.get_config(lr=task.optimizer.lr), total_steps=100)

  def make_model():
    return models.create_downstream(name, task.ndim, task.in_channels, outputs,
                                    pooled=task.kind != "segmentation", dropout=dropout,
                                    rngs=models.init_rngs(0))

  rng = np.random.default_rng(0)
  image = rng.random((batch,) + roi + (task.in_channels,), dtype=np.float32)
  label = {"softmax": rng.integers(0, outputs, (batch,) + roi, dtype=np.int32),
           "sigmoid": rng.integers(0, 2, (batch,) + roi, dtype=np.int32),
           "classification": rng.integers(0, outputs, (batch,), dtype=np.int32),
           "multilabel": rng.integers(0, 2, (batch, outputs)).astype(np.float32),
           "regression": rng.random(batch, dtype=np.float32)}[output]
  graphdef, abstract = state_lib.abstract(make_model, tx, mesh)
  data = jax.device_put({"image": image, "label": label}, mesh_lib.batch_sharding(mesh))
  dtypes = ("float32", "bfloat16") if args.compute_dtype == "both" else (args.compute_dtype,)
  figures = {}
  for dtype in dtypes:
    start = time.perf_counter()
    step = downstream.make_step(graphdef, abstract, mesh, tx=tx, schedule=schedule,
                                output=output, compute_dtype=dtype).lower(
                                    abstract, data).compile()
    compile_s = time.perf_counter() - start
    state = [state_lib.create(make_model, tx, abstract)]

    def train(_):
      state[0], metrics = step(state[0], data)
      jax.block_until_ready(metrics)

    _, step_s = _median_s(train, args.repeats)
    figures[dtype] = {"compile_s": round(compile_s, 3), "step_s": round(step_s, 4)}
  result = {
      "bench": "finetune_step", "task": task.name, "ndim": task.ndim, "roi": list(roi),
      "batch": batch, "model": name, "output": output, "num_outputs": outputs,
      "dropout": dropout, "devices": mesh.shape["data"], "backend": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind,
      **{f"{dtype}_{k}": v for dtype, f in figures.items() for k, v in f.items()},
      "repeats": args.repeats, "peak_rss_mb": _peak_rss_mb(),
  }
  if len(figures) == 2:
    result["bfloat16_speedup"] = round(
        figures["float32"]["step_s"] / figures["bfloat16"]["step_s"], 3)
  return result


def _step_argv(args):
  """The command-line arguments that make `args` (the pretrain options) again."""
  argv = ["--model", args.model, "--ndim", str(args.ndim), "--size", str(args.size),
          "--batch", str(args.batch), "--num-labels", str(args.num_labels),
          "--compute-dtype", args.compute_dtype, "--repeats", str(args.repeats),
          "--attention", args.attention]
  argv += ["--remat"] if args.remat else []
  argv += [f"--profile={args.profile}"]
  argv += ["--torch-compile" if args.torch_compile else "--no-torch-compile"]
  return argv + [f"--set={item}" for item in args.set]


def _step_options(p, torch_compile):
  """The options of a training-step bench (`pretrain`, `step_vs_torch`, `torch_step`)."""
  p.add_argument("--ndim", type=int, default=3, choices=(2, 3))
  p.add_argument("--size", type=int, default=64)
  p.add_argument("--model", default="tiny",
                 help="a rasd_jax.models name; tiny ... huge mean swinunetr_<size>")
  p.add_argument("--batch", type=int, default=2)
  p.add_argument("--num-labels", "--num_labels", type=int, default=8)
  p.add_argument("--compute-dtype", "--compute_dtype", default="float32",
                 choices=("float32", "bfloat16"))
  p.add_argument("--remat", action="store_true", help="recompute each Swin block (SwinUNETR)")
  p.add_argument("--attention", default="einsum", help="SwinUNETR: einsum, xla or cudnn")
  p.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a synthesis field")
  p.add_argument("--profile", type=int, default=0, metavar="N",
                 help="add `top_ops`: the N operations that take the most time (jax.profiler)")
  if torch_compile:
    p.add_argument("--torch-compile", "--torch_compile", default=True,
                   action=argparse.BooleanOptionalAction,
                   help="also time the PyTorch step under torch.compile")


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
  _step_options(sub.add_parser("pretrain", help="pre-training step time and the synthesis "
                                "share"), torch_compile=False)
  _step_options(sub.add_parser("step_vs_torch", help="our pre-training step against MONAI's "
                               "network in PyTorch"), torch_compile=True)
  _step_options(sub.add_parser("torch_step", help="the PyTorch side of step_vs_torch"),
                torch_compile=True)
  p = sub.add_parser("finetune_step", help="fine-tuning step time, float32 and bfloat16")
  p.add_argument("--task", default="drive", help="a registry task (rasd_jax.data.tasks)")
  p.add_argument("--model", default="",
                 help="a rasd_jax.models name; default: the engine's scratch network")
  p.add_argument("--size", type=int, default=0, help="patch side; default: the task's patch")
  p.add_argument("--batch", type=int, default=0, help="default: the task's batch")
  p.add_argument("--compute-dtype", "--compute_dtype", default="both",
                 choices=("float32", "bfloat16", "both"))
  p.add_argument("--dropout", type=float, default=None,
                 help="default: the reference's (0.15 in a 2D U-Net, else 0)")
  p.add_argument("--repeats", type=int, default=5, help="timed steps (median)")
  args = parser.parse_args(argv)
  if args.repeats < 5:
    parser.error("--repeats must be at least 5")
  if args.bench in ("step_vs_torch", "torch_step"):
    from rasd_jax import interop
    try:
      interop.require(f"python -m rasd_jax.bench {args.bench}", "torch", "monai", "einops")
    except ValueError as e:
      sys.exit(f"error: {e}")
  benches = {"synthesis": _synthesis, "pretrain": _pretrain, "step_vs_torch": _step_vs_torch,
             "torch_step": _torch_step, "finetune_step": _finetune_step}
  print(json.dumps(benches[args.bench](args)))


if __name__ == "__main__":
  sys.exit(main())
