"""MONAI SwinUNETR and UNet weights in and out, against the real MONAI 1.6.1 on PyTorch:
imported weights give MONAI's outputs, exported ones load into MONAI with strict=True and give
ours."""

import json
import math
import os
import re

from flax import nnx
import jax
import numpy as np
import pytest
import safetensors.torch
import torch
from monai.networks.nets import SwinUNETR as MonaiSwinUNETR
from monai.networks.nets import UNet as MonaiUNet

from conftest import run_job
from experiments import pretrain2d
import rasd_jax
from rasd_jax import models
from rasd_jax import workdir as workdir_lib
from rasd_jax.interop import files
from rasd_jax.interop import monai
from rasd_jax.jobs import export_weights
from rasd_jax.models import path_name

IN, OUT = 2, 3
# MONAI's instance norm needs more than one voxel at 1/32 resolution, hence 64 on one axis.
SHAPES = {2: (64, 64), 3: (32, 32, 64)}
V2_BLOCKS = sorted(f"swinViT.layers{i}c.0.layer.conv{j}.conv.weight"
                   for i in range(1, 5) for j in (1, 2))


def monai_net(ndim, feature_size=12, v2=True, in_channels=IN, out_channels=OUT):
  """A MONAI SwinUNETR in eval mode with every parameter random (LayerNorm weights and
  biases, bias tables included: one misplaced or mis-laid-out array changes the output)."""
  torch.manual_seed(ndim + feature_size)
  net = MonaiSwinUNETR(in_channels=in_channels, out_channels=out_channels,
                       feature_size=feature_size, spatial_dims=ndim, use_v2=v2).eval()
  with torch.no_grad():
    for p in net.parameters():
      p.copy_(torch.randn_like(p) / math.sqrt(math.prod(p.shape[1:]) if p.ndim > 1 else 4))
  return net


def numpy_state(net):
  return {k: v.numpy() for k, v in net.state_dict().items()}


def merged(name, ndim, weights, in_channels=IN, out_channels=OUT):
  graphdef = nnx.split(nnx.eval_shape(lambda: models.create(
      name, ndim, in_channels, out_channels, rngs=nnx.Rngs(0))), nnx.Param, ...)[0]
  return nnx.merge(graphdef, weights["params"], weights["rest"])


def compare(model, net, ndim, in_channels=IN, shape=None):
  """(max |ours - MONAI's|, max |MONAI's|) on one random input."""
  shape = shape or SHAPES[ndim]
  x = np.random.default_rng(ndim).standard_normal((1, in_channels) + shape)
  x = x.astype(np.float32)
  with torch.no_grad():
    expected = net(torch.from_numpy(x)).numpy()
  graphdef, state = nnx.split(model)
  # Unoptimised XLA: this network compiles about twice as fast and runs one input fast.
  forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x),
                    compiler_options={"xla_backend_optimization_level": 0})
  ours = np.moveaxis(np.asarray(forward(state, np.moveaxis(x, 1, -1))), -1, 1)
  return np.abs(ours - expected).max(), np.abs(expected).max()


def assert_same_state(actual, expected):
  """Bit-exact: keys, dtypes, shapes, values."""
  assert sorted(actual) == sorted(expected)
  for key, value in expected.items():
    assert actual[key].dtype == value.dtype, key
    np.testing.assert_array_equal(actual[key], value, err_msg=key)


@pytest.mark.parametrize("ndim,name", [(2, "swinunetr_tiny"), (3, "swinunetr_tiny"),
                                       (2, "swinunetr_base"), (3, "swinunetr_base")])
def test_import_gives_monais_outputs_and_exports_back_bit_exact(ndim, name):
  net = monai_net(ndim, models.MODELS[name][1]["feature_size"])
  state = numpy_state(net)
  weights, report = monai.to_rasd(state, name, ndim, IN, OUT)
  assert len(report["loaded"]) == 159  # every parameter; the index buffers are recomputed
  assert report["missing"] == report["unused"] == report["shape_mismatch"] == []
  model = merged(name, ndim, weights)
  diff, scale = compare(model, net, ndim)
  assert diff <= 1e-5 * scale, (diff, scale)
  assert_same_state(monai.from_rasd(model), state)


def test_v1_weights_into_v2_leave_the_v2_blocks_fresh():
  net = monai_net(2, v2=False)
  state = numpy_state(net)
  weights, report = monai.to_rasd(state, "tiny", 2, IN, OUT)
  assert sorted(report["missing"]) == V2_BLOCKS
  assert report["unused"] == report["shape_mismatch"] == []
  assert "SwinUNETR v1" in report["source"]
  model = merged("swinunetr_tiny", 2, weights)
  exported = monai.from_rasd(model)
  # Every v1 array lands where MONAI's v2 network has it: a v2 MONAI network with the v1
  # weights and our fresh v2 blocks computes what ours does.
  assert_same_state({k: exported[k] for k in state}, state)
  v2 = MonaiSwinUNETR(in_channels=IN, out_channels=OUT, feature_size=12, spatial_dims=2,
                      use_v2=True).eval()
  v2.load_state_dict({k: torch.from_numpy(v) for k, v in exported.items()}, strict=True)
  diff, scale = compare(model, v2, 2)
  assert diff <= 1e-5 * scale, (diff, scale)


def test_encoder_only_release_reads_as_monai_load_from_reads_it():
  """The self-supervised Swin release's layout (`module.layers1.0.blocks.0.mlp.fc1.weight`,
  no decoder): MONAI's own `load_from` and our import agree on every encoder array."""
  source = numpy_state(monai_net(3, v2=False))
  release = {"module." + k[len("swinViT."):].replace(".mlp.linear", ".mlp.fc"): v
             for k, v in source.items() if k.startswith("swinViT.")}
  reference = MonaiSwinUNETR(in_channels=IN, out_channels=OUT, feature_size=12,
                             spatial_dims=3)
  reference.load_from({"state_dict": {k: torch.from_numpy(v) for k, v in release.items()}})
  weights, report = monai.to_rasd(release, "tiny", 3)
  assert report["out_channels"] == monai.FEATURES and report["unused"] == []
  assert not [k for k in report["missing"]
              if k.startswith("swinViT.") and k not in V2_BLOCKS]
  exported = monai.from_rasd(merged("swinunetr_tiny", 3, weights, IN, monai.FEATURES))
  for key, value in reference.state_dict().items():
    if key.startswith("swinViT.") and key in exported:
      np.testing.assert_array_equal(exported[key], value.numpy(), err_msg=key)


def monai_unet(name, ndim, in_channels=IN, out_channels=OUT):
  """MONAI's UNet of the registry network `name` (the authors' act and norm) in eval mode,
  every parameter and batch norm statistic random."""
  settings = models.MODELS[name][1]
  torch.manual_seed(ndim)
  net = MonaiUNet(spatial_dims=ndim, in_channels=in_channels, out_channels=out_channels,
                  act="relu", norm="batch", **settings).eval()
  with torch.no_grad():
    for key, p in net.state_dict().items():
      if key.endswith("running_var"):
        p.copy_(torch.rand_like(p) + 0.5)
      elif p.is_floating_point():
        p.copy_(torch.randn_like(p) / math.sqrt(math.prod(p.shape[1:]) if p.ndim > 1 else 4))
  return net


UNET_SHAPES = {2: (32, 32), 3: (16, 16, 16)}


@pytest.mark.parametrize("ndim,name", [(2, "unet_paper"), (2, "unet_tiny"),
                                       (3, "unet_small")])
def test_unet_import_gives_monais_outputs_and_exports_back_bit_exact(ndim, name):
  """The authors' 2D network (unet_paper: 64-1024 channels, 4 residual units, batch norm,
  ReLU) and a 3D one: MONAI's weights in, MONAI's outputs out, the same tensors back."""
  net = monai_unet(name, ndim)
  state = numpy_state(net)
  weights, report = monai.to_rasd(state, name, ndim, IN, OUT)
  assert report["missing"] == report["unused"] == report["shape_mismatch"] == []
  assert len(report["loaded"]) == sum(not k.endswith("num_batches_tracked") for k in state)
  assert report["source"].startswith(f"MONAI UNet, {ndim}D, channels ")
  model = merged(name, ndim, weights)
  model.eval()
  diff, scale = compare(model, net, ndim, shape=UNET_SHAPES[ndim])
  assert diff <= 1e-5 * scale, (diff, scale)
  assert_same_state(monai.from_rasd(model), state)


@pytest.fixture(scope="module")
def tiny2d():
  """(MONAI network, its state dict, our import of it)."""
  net = monai_net(2)
  state = numpy_state(net)
  return net, state, monai.to_rasd(state, "tiny", 2, IN, OUT)[0]


@pytest.mark.parametrize("variant", ["module-state_dict", "model-model", "backbone",
                                     "swin_vit-network_weights", "safetensors"])
def test_prefixes_and_wrappers_of_real_files(tmp_path, tiny2d, variant):
  _, state, expected = tiny2d
  prefix, _, wrapper = variant.partition("-")
  tensors = {k: torch.from_numpy(v) for k, v in state.items()}
  path = tmp_path / "weights.pth"
  if variant == "safetensors":
    path = tmp_path / "weights.safetensors"
    safetensors.torch.save_file(tensors, path)
  else:
    tensors = {(k.replace("swinViT.", "swin_vit.") if prefix == "swin_vit"
                else f"{prefix}.{k}"): v for k, v in tensors.items()}
    torch.save({wrapper: tensors, "epoch": 7} if wrapper else tensors, path)
  arrays, _ = files.read_state_dict(path)
  weights, report = monai.to_rasd(arrays, "tiny", 2)
  assert len(report["loaded"]) == 159 and report["unused"] == report["missing"] == []
  assert (report["in_channels"], report["out_channels"]) == (IN, OUT)
  jax.tree.map(np.testing.assert_array_equal, weights, expected)


@pytest.mark.parametrize("name,head", [("swinunetr_tiny", "add"), ("unet_tiny", "replace")])
def test_our_weights_export_to_monai(name, head):
  """A fine-tuned dense network with random weights of ours (SwinUNETR: 32 features and a
  new per-voxel head, folded into MONAI's output convolution; UNet: its own last layer):
  MONAI's network with strict=True gives our outputs."""
  abstract = nnx.eval_shape(lambda: models.create_downstream(
      name, 2, IN, 4, head=head, features=32, rngs=nnx.Rngs(0)))
  graphdef, state = nnx.split(abstract)
  rng = np.random.default_rng(0)

  def draw(path, p):
    """Random weights; batch norm variances positive."""
    scale = math.sqrt(math.prod(p.shape[:-1])) if len(p.shape) > 1 else 4
    shift = 1.0 if path_name(path).endswith("/var") else 0.0
    return (rng.standard_normal(p.shape) / scale + shift).astype(np.float32)

  model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(draw, state))
  model.eval()
  spec = dict(network="downstream", model=name, ndim=2, in_channels=IN, out_channels=32,
              num_outputs=4, head=head, pooled=False)
  network, arguments = monai.monai_network(spec)
  if name == "unet_tiny":
    assert (network, arguments) == ("UNet", dict(
        spatial_dims=2, in_channels=IN, out_channels=4, channels=[8, 16, 32], strides=[2, 2],
        num_res_units=2, act="relu", norm="batch"))
    net = MonaiUNet(**arguments).eval()
  else:
    assert (network, arguments) == ("SwinUNETR", dict(
        spatial_dims=2, in_channels=IN, out_channels=4, feature_size=12, use_v2=True))
    net = MonaiSwinUNETR(**arguments).eval()
  net.load_state_dict({k: torch.from_numpy(v) for k, v in monai.from_rasd(model).items()},
                      strict=True)
  diff, scale = compare(model, net, 2)
  assert diff <= 1e-5 * scale, (diff, scale)


def test_what_monai_cannot_hold_is_refused():
  pooled = nnx.eval_shape(lambda: models.create_downstream(
      "tiny", 2, 1, 3, pooled=True, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="pooled"):
    monai.from_rasd(pooled)
  with pytest.raises(ValueError, match="pooled"):
    monai.monai_network(dict(network="downstream", model="unet_tiny", ndim=2, pooled=True))
  unet_add = dict(network="downstream", model="unet_tiny", ndim=2, pooled=False, head="add")
  with pytest.raises(ValueError, match="head 'replace'"):
    monai.monai_network(unet_add)
  with pytest.raises(ValueError, match="head 'replace'"):
    monai.from_rasd(nnx.eval_shape(lambda: models.create_downstream(
        "unet_tiny", 2, 1, 3, rngs=nnx.Rngs(0))))
  resenc = nnx.eval_shape(lambda: models.create("resenc_tiny", 2, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="has no MONAI counterpart"):
    monai.from_rasd(resenc)


def test_import_and_export_jobs(tmp_path, tiny2d):
  """run.py import_weights: a DataParallel checkpoint in a `state_dict` wrapper -> a workdir
  load_model reads with MONAI's outputs; run.py export_weights: files MONAI loads (as the
  README says) with strict=True, bit-exact the original tensors."""
  net, state, _ = tiny2d
  path = tmp_path / "swin.pth"
  torch.save({"state_dict": {"module." + k: torch.from_numpy(v) for k, v in state.items()},
              "epoch": 3}, path)
  w = tmp_path / "imported"
  run_job("experiments/import_weights.py", w, f"--config.path={path}",
          "--config.model=tiny", "--config.ndim=2")
  report = (w / "import.txt").read_text()
  assert "MONAI SwinUNETR v2, 2D, feature_size 12" in report and "loaded 159 arrays" in report
  diff, scale = compare(rasd_jax.load_model(str(w)), net, 2)
  assert diff <= 1e-5 * scale, (diff, scale)

  out = tmp_path / "export"
  run_job("experiments/export_weights.py:format=monai", out, f"--config.source={w}")
  assert_same_state(safetensors.torch.load_file(out / "model.safetensors"),
                    net.state_dict())
  assert_same_state(torch.load(out / "model.pt", weights_only=True), net.state_dict())
  card = json.loads((out / "card.json").read_text())
  assert card["constructor"] == dict(in_channels=IN, out_channels=OUT, feature_size=12,
                                     spatial_dims=2, use_v2=True)
  assert (card["step"], card["made_by"]) == (0, {"job": "import_weights",
                                                 "imported_from": str(path)})
  # The README's three lines, run where the files are.
  code = re.search(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)[1]
  assert len(code.splitlines()) == 3
  namespace = {}
  cwd = os.getcwd()
  os.chdir(out)
  try:
    exec(code, namespace)
  finally:
    os.chdir(cwd)
  x = torch.randn(1, IN, 64, 64)
  with torch.no_grad():
    torch.testing.assert_close(namespace["model"].eval()(x), net(x), rtol=0, atol=0)


def test_bad_checkpoints_one_line_nothing_written(tmp_path, tiny2d):
  _, state, _ = tiny2d
  swin = tmp_path / "swin.pth"
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, swin)
  unet = tmp_path / "unet.pth"
  torch.save(MonaiUNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(8, 16),
                       strides=(2,), num_res_units=2).state_dict(), unet)  # MONAI's PReLU
  truncated = tmp_path / "truncated.pth"
  truncated.write_bytes(swin.read_bytes()[:swin.stat().st_size // 2])
  cases = [
      (swin, "small", 2, "feature_size 12, 2 -> 3; swinunetr_small has feature_size 24; "
                         "it fits swinunetr_tiny"),
      (swin, "tiny", 3, "holds a MONAI SwinUNETR v2, 2D"),
      (unet, "unet_tiny", 2, "activation has weights (PReLU, MONAI's default act)"),
      (truncated, "tiny", 2, "truncated or corrupt"),
  ]
  for i, (path, model, ndim, message) in enumerate(cases):
    w = tmp_path / f"w{i}"
    result = run_job("experiments/import_weights.py", w, f"--config.path={path}",
                     f"--config.model={model}", f"--config.ndim={ndim}", check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr
    assert message in lines[0], lines[0]
    assert not w.exists()


def test_weights_holding_nan_or_inf_are_refused_nothing_written(tmp_path, tiny2d):
  """A checkpoint of a diverged run (NaN, Inf in its weights), as .pth and as .safetensors:
  one line naming the file and the arrays, and no workdir."""
  _, state, _ = tiny2d
  tensors = {k: torch.from_numpy(v.copy()) for k, v in state.items()}
  tensors["encoder1.layer.conv1.conv.weight"].view(-1)[:3] = float("nan")
  tensors["out.conv.conv.bias"][0] = float("-inf")
  pth, safe = tmp_path / "diverged.pth", tmp_path / "diverged.safetensors"
  torch.save(tensors, pth)
  safetensors.torch.save_file(tensors, safe)
  for path in (pth, safe):
    w = tmp_path / f"w_{path.suffix[1:]}"
    result = run_job("experiments/import_weights.py", w, f"--config.path={path}",
                     "--config.model=tiny", "--config.ndim=2", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines == [f"error: {path}: 2 of its {len(state)} arrays hold NaN or Inf "
                     "(encoder1.layer.conv1.conv.weight: 3 NaN, out.conv.conv.bias: 1 Inf): "
                     "broken weights (saved by a run that diverged?), not imported"], lines
    assert not w.exists()


def test_mismatched_checkpoints_name_what_fits(tiny2d):
  _, swin, _ = tiny2d
  unet = numpy_state(monai_unet("unet_tiny", 2))
  cases = [
      (unet, "unet_small", 2, "MONAI UNet, 2D, channels (8, 16, 32), num_res_units 2, 2 -> 3; "
                              "unet_small has channels (16, 32, 64, 128); it fits unet_tiny"),
      (unet, "tiny", 2, "holds a MONAI UNet, 2D, channels (8, 16, 32), num_res_units 2, "
                        "2 -> 3; swinunetr_tiny is a SwinUNETR"),
      (swin, "unet_tiny", 2, "holds a MONAI SwinUNETR v2, 2D, feature_size 12, 2 -> 3; "
                             "unet_tiny is a UNet"),
      (unet, "unet_tiny", 3, "2 -> 3; asked for a 3D network"),
      ({k: v for k, v in unet.items() if "adn.N" not in k}, "unet_tiny", 2,
       "no batch norm statistics"),
      ({"encoder.0.weight": np.zeros((4, 1, 3, 3)), "head.weight": np.zeros(2)}, "tiny", 2,
       "neither a MONAI SwinUNETR nor a MONAI UNet checkpoint: none of its 2 keys"),
  ]
  for state, name, ndim, message in cases:
    with pytest.raises(ValueError, match=re.escape(message)):
      monai.to_rasd(state, name, ndim)


def test_unet_through_the_jobs(tmp_path):
  """A MONAI UNet checkpoint (a `model.` wrapper prefix over MONAI's own `model.0...` keys)
  imported and exported by run.py: MONAI loads the export strict and computes the original."""
  net = monai_unet("unet_tiny", 2)
  path = tmp_path / "unet.pth"
  torch.save({"model." + k: v for k, v in net.state_dict().items()}, path)
  w = tmp_path / "imported"
  run_job("experiments/import_weights.py", w, f"--config.path={path}",
          "--config.model=unet_tiny", "--config.ndim=2")
  assert "loaded 62 arrays" in (w / "import.txt").read_text()
  out = tmp_path / "export"
  run_job("experiments/export_weights.py:format=monai", out, f"--config.source={w}")
  card = json.loads((out / "card.json").read_text())
  assert card["network"] == "monai.networks.nets.UNet"
  assert "multiple of 4" in card["input"]
  exported = MonaiUNet(**card["constructor"]).eval()
  exported.load_state_dict(safetensors.torch.load_file(out / "model.safetensors"), strict=True)
  x = torch.randn(2, IN, 32, 32)
  with torch.no_grad():
    torch.testing.assert_close(exported(x), net(x), rtol=0, atol=0)


def test_card_of_a_pretraining_workdir(tmp_path):
  config = pretrain2d.get_config("runlocal")
  workdir_lib.prepare(str(tmp_path), config)
  made = export_weights.provenance(str(tmp_path))
  assert made["job"] == "pretrain" and made["total_steps"] == config.total_steps
  assert made["loss"] == config.loss.to_dict() and made["synthesis"]["ndim"] == 2
  info = dict(format="monai", network="monai.networks.nets.SwinUNETR",
              constructor=dict(in_channels=1), rasd_jax=dict(model="swinunetr_base"),
              code_version="v1", source="W", step=5, made_by=made, input="...")
  text = export_weights.readme(info, ["LOADING"])
  assert "\nLOADING\n" in text
  assert f"Pre-trained for {config.total_steps} steps" in text
  assert json.dumps(config.loss.to_dict()) in text
