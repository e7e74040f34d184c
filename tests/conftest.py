"""Shared test set-up.

XLA compiles of the generator take seconds on a 2-core CPU; a persistent compilation
cache shared by this process and the subprocesses the tests start (same environment)
compiles each program once per test run.
"""

import glob
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(REPO_ROOT, ".jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")]))
sys.path.insert(0, REPO_ROOT)
# The suite keeps XLA's default CPU convolutions (YNNPACK, one thread per process): its two
# workers, and the processes of the multi-process tests, already fill the cores, and the
# multi-threaded ones that `import rasd_jax` asks for would oversubscribe them (two unet_small
# pre-training steps side by side on 2 cores: 0.26 s each against 0.23 s). Set before rasd_jax
# is imported (it keeps a value given here); the test subprocesses inherit it.
SUITE_XLA_FLAG = "--xla_cpu_experimental_ynn_fusion_type=+individual_convolution"
if SUITE_XLA_FLAG.partition("=")[0] not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(filter(None, [os.environ.get("XLA_FLAGS"), SUITE_XLA_FLAG]))


def device_flags(devices):
  """XLA_FLAGS for a test subprocess with `devices` fake CPU devices (the suite's kept)."""
  return f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"


def pytest_collection_modifyitems(items):
  """The tests marked slow(seconds) first, longest first: with the README's `--dist load
  --maxschedchunk 1` each worker takes the next test when it is free, so the long ones start
  at once on both and the short ones fill in behind (none left to run alone at the end)."""
  def seconds(item):
    marker = item.get_closest_marker("slow")
    return marker.args[0] if marker else 0
  items.sort(key=seconds, reverse=True)  # stable: the others keep their order


def spec_of(ndim=3, size=128, **fields):
  """A validated synthesis Spec: the defaults of (ndim, size) with `fields` changed."""
  from rasd_jax import synthesis
  config = synthesis.get_config(ndim, size)
  config.update(fields)
  return synthesis.make_spec(config)


def run_job(config, workdir, *overrides, check=True):
  """`python run.py --config=CONFIG --workdir=WORKDIR OVERRIDES...` from the repository root,
  as a user runs a job; raises with its stderr when it fails and `check` is set."""
  import subprocess
  result = subprocess.run(
      [sys.executable, "run.py", f"--config={config}", f"--workdir={workdir}", *overrides],
      cwd=REPO_ROOT, capture_output=True, text=True)
  if check and result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result


def tensorboard_events(workdir):
  """The events of W/tensorboard, read back from the TFRecord framing of its event files
  (per record: length, its crc, the record, its crc)."""
  from tensorboardX.proto import event_pb2
  events = []
  for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
    data = open(path, "rb").read()
    offset = 0
    while offset < len(data):
      length = int.from_bytes(data[offset:offset + 8], "little")
      events.append(event_pb2.Event.FromString(data[offset + 12:offset + 12 + length]))
      offset += 16 + length
  return events


def resenc_reference(ndim, settings, in_channels, out_channels, deep_supervision=True):
  """dynamic-network-architectures' ResidualEncoderUNet with our registry `settings`
  (models/resenc.py), configured as nnU-Net's ResEnc plans configure it."""
  import torch
  from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
  from rasd_jax.models import resenc
  arch = resenc.arch_settings(ndim, **settings)
  return ResidualEncoderUNet(
      input_channels=in_channels, num_classes=out_channels, n_stages=arch["n_stages"],
      features_per_stage=arch["features_per_stage"],
      conv_op=torch.nn.Conv3d if ndim == 3 else torch.nn.Conv2d,
      kernel_sizes=arch["kernel_sizes"], strides=arch["strides"],
      n_blocks_per_stage=arch["n_blocks_per_stage"],
      n_conv_per_stage_decoder=arch["n_conv_per_stage_decoder"], conv_bias=True,
      norm_op=torch.nn.InstanceNorm3d if ndim == 3 else torch.nn.InstanceNorm2d,
      norm_op_kwargs={"eps": resenc.EPS, "affine": True}, nonlin=torch.nn.LeakyReLU,
      nonlin_kwargs={"inplace": True}, deep_supervision=deep_supervision)
