"""nnU-Net export of the ResEnc U-Net against the real dynamic-network-architectures 0.4.4 and
nnunetv2 2.8.1 on PyTorch CPU: their weights give their outputs here; our export goes through
nnU-Net's own plans handling, network building and `load_pretrained_weights`, and nnU-Net's
network then computes ours."""

import json
import math
import os
import subprocess
import sys

from flax import nnx
import jax
import numpy as np
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
import pytest
import torch

from conftest import resenc_reference
from conftest import run_job
from rasd_jax import models
from rasd_jax.interop import files
from rasd_jax.interop import nnunet
from rasd_jax.interop import torch_layout
from rasd_jax.models import resenc
from rasd_jax.training import checkpoint
from rasd_jax.training import weights

SHAPES = {2: (32, 48), 3: (16, 16, 24)}
# Anisotropic kernels and strides as nnU-Net plans them for thick slices, and a strided
# stage of unchanged width (its skip: an average pool without a projection).
ANISOTROPIC = dict(features_per_stage=(4, 8, 8), n_blocks_per_stage=(1, 2, 1),
                   n_conv_per_stage_decoder=(1, 2), kernel_sizes=((1, 3, 3), 3, 3),
                   strides=(1, (1, 2, 2), 2))


def randomise(net):
  """Every parameter random (norm scales and biases included), eval mode."""
  torch.manual_seed(0)
  with torch.no_grad():
    for p in net.parameters():
      p.copy_(torch.randn_like(p) / math.sqrt(math.prod(p.shape[1:]) if p.ndim > 1 else 4))
  return net.eval()


def forward_ours(model, x):
  """Our output on the channels-first input `x`, channels first."""
  return np.moveaxis(np.asarray(nnx.jit(lambda m, x: m(x))(model, np.moveaxis(x, 1, -1))),
                     -1, 1)


def forward_theirs(net, x):
  with torch.no_grad():
    out = net(torch.from_numpy(x))
  return (out[0] if isinstance(out, (list, tuple)) else out).numpy()


def assert_close(ours, theirs):
  diff, scale = np.abs(ours - theirs).max(), np.abs(theirs).max()
  assert diff <= 1e-5 * scale, (diff, scale)


def numpy_state(net):
  return {k: v.numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("ndim, settings", [(2, "resenc_tiny"), (3, "resenc_tiny"),
                                            (3, ANISOTROPIC)])
def test_their_weights_give_their_outputs_and_export_back_bit_exact(ndim, settings):
  settings = models.MODELS[settings][1] if isinstance(settings, str) else settings
  net = randomise(resenc_reference(ndim, settings, 2, 3, deep_supervision=False))
  state = numpy_state(net)
  arrays = nnunet.strip_aliases(state)
  assert len(arrays) < len(state) / 3  # the aliases: all_modules.*, decoder.encoder.*

  def make():
    return resenc.ResEncUNet(ndim, 2, 3, rngs=models.init_rngs(0), **settings)

  loaded, report = torch_layout.load(make, arrays)
  assert report["missing"] == report["shape_mismatch"] == []
  assert sorted(report["loaded"]) == sorted(arrays) and report["used"] == set(arrays)
  model = nnx.merge(nnx.graphdef(nnx.eval_shape(make)), loaded["params"], loaded["rest"])
  x = np.random.default_rng(ndim).standard_normal((2, 2) + SHAPES[ndim]).astype(np.float32)
  if settings is ANISOTROPIC:
    x = x[:, :, :8, :, :12]
  assert_close(forward_ours(model, x), forward_theirs(net, x))
  exported = nnunet.state_dict(model)
  assert sorted(exported) == sorted(state)
  for key, value in state.items():
    np.testing.assert_array_equal(exported[key], value, err_msg=key)


def random_model(spec):
  """The network of `spec` with every variable random."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: weights.build(spec)))
  rng = np.random.default_rng(1)
  state = jax.tree.map(lambda p: (rng.standard_normal(p.shape) / math.sqrt(
      math.prod(p.shape[:-1]) if len(p.shape) > 1 else 4)).astype(np.float32), state)
  return nnx.merge(graphdef, state)


def downstream_spec(ndim, in_channels=2, classes=3):
  return weights.downstream_spec("resenc_tiny", ndim, in_channels, 32, classes)


def write_target(folder, ndim, channels=2, classes=3):
  """A target dataset's plans file as nnU-Net's planner writes it (the fields the
  configuration's inheritance shows) and its dataset.json."""
  base = nnunet.BASE[ndim]
  plans = {
      "dataset_name": "Dataset001_Target", "plans_name": "nnUNetPlans",
      "configurations": {base: {
          "data_identifier": f"nnUNetPlans_{base}", "preprocessor_name": "DefaultPreprocessor",
          "batch_size": 40, "patch_size": [48] * ndim, "spacing": [0.8] * ndim,
          "normalization_schemes": ["ZScoreNormalization"] * channels,
          "architecture": {
              "network_class_name":
                  "dynamic_network_architectures.architectures.unet.PlainConvUNet",
              "arch_kwargs": {"n_stages": 2}, "_kw_requires_import": []}}},
      "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager"}
  os.makedirs(folder)
  with open(os.path.join(folder, "nnUNetPlans.json"), "w") as f:
    json.dump(plans, f)
  dataset = {"channel_names": {str(i): "MRI" for i in range(channels)},
             "labels": {"background": 0, **{f"c{i}": i for i in range(1, classes)}},
             "numTraining": 2, "file_ending": ".nii.gz"}
  with open(os.path.join(folder, "dataset.json"), "w") as f:
    json.dump(dataset, f)
  return os.path.join(folder, "nnUNetPlans.json"), dataset


def add_to_plans(export, plans_path):
  """The export's script, run as the README says."""
  return subprocess.run([sys.executable, os.path.join(export, nnunet.SCRIPT), plans_path],
                        capture_output=True, text=True)


@pytest.mark.parametrize("ndim", [2, 3])
def test_export_goes_through_nnunets_fine_tuning_route(tmp_path, ndim):
  """Our random fine-tuned network (32 features and a per-voxel head of 3 classes) ->
  write -> the script adds the configuration to a target's plans -> nnU-Net builds the
  network as its trainer does (PlansManager, inheritance, get_network_from_plans) ->
  load_pretrained_weights loads every array but the segmentation layers, each ours
  bit-exact; with the segmentation layers loaded too (the route leaves them as nnU-Net
  initialised them), nnU-Net's network computes ours."""
  spec = downstream_spec(ndim)
  model = random_model(spec)
  export = tmp_path / "export"
  export.mkdir()
  assert nnunet.write(str(export), model, spec) == [nnunet.CHECKPOINT, nnunet.PLANS,
                                                    nnunet.SCRIPT]
  plans_path, dataset = write_target(str(tmp_path / "Dataset001_Target"), ndim)
  result = add_to_plans(str(export), plans_path)
  assert result.returncode == 0, result.stderr
  name = nnunet.configuration_name(spec)
  assert f"nnUNetv2_train DATASET {name} FOLD -pretrained_weights" in result.stdout

  plans = PlansManager(plans_path)
  configuration = plans.get_configuration(name)
  base = nnunet.BASE[ndim]
  assert configuration.data_identifier == f"nnUNetPlans_{base}"  # inherited
  assert configuration.spacing == [0.8] * ndim
  assert configuration.patch_size == [nnunet.PATCH[ndim]] * ndim
  assert configuration.batch_size == nnunet.BATCH[ndim]
  assert configuration.configuration["architecture"] == nnunet.architecture(spec)
  # nnUNetTrainer.initialize's network (its build_network_architecture, without importing
  # the trainer: 6 s here).
  network = get_network_from_plans(
      configuration.network_arch_class_name, configuration.network_arch_init_kwargs,
      configuration.network_arch_init_kwargs_req_import,
      determine_num_input_channels(plans, configuration, dataset),
      plans.get_label_manager(dataset).num_segmentation_heads, allow_init=True,
      deep_supervision=True)
  fresh = numpy_state(network)
  checkpoint = str(export / nnunet.CHECKPOINT)
  load_pretrained_weights(network, checkpoint)

  ours = nnunet.state_dict(model)
  after = numpy_state(network)
  assert sorted(after) == sorted(ours)
  for key, value in after.items():
    expected = fresh[key] if ".seg_layers." in key else ours[key]
    np.testing.assert_array_equal(value, expected, err_msg=key)
  seg = {k: v for k, v in torch.load(checkpoint)["network_weights"].items()
         if ".seg_layers." in k}
  network.load_state_dict(seg, strict=False)
  x = np.random.default_rng(0).standard_normal((2, 2) + SHAPES[ndim]).astype(np.float32)
  assert_close(forward_ours(model, x), forward_theirs(network.eval(), x))

  # And back: read without PyTorch, the checkpoint is a 3-output network of ours (the head
  # folded in), bit-exact.
  arrays = nnunet.strip_aliases(files.read_state_dict(checkpoint)[0])

  def make():
    return models.create("resenc_tiny", ndim, 2, 3, rngs=models.init_rngs(0))

  back, report = torch_layout.load(make, arrays)
  assert report["missing"] == report["shape_mismatch"] == []
  back = torch_layout.export(nnx.merge(nnx.graphdef(nnx.eval_shape(make)), back["params"],
                                       back["rest"]))
  assert sorted(back) == sorted(arrays) == sorted(nnunet.strip_aliases(ours))
  for key, value in arrays.items():
    np.testing.assert_array_equal(back[key], ours[key], err_msg=key)


def test_what_nnunet_or_we_cannot_take_is_a_clear_error(tmp_path):
  spec = downstream_spec(3)
  model = random_model(spec)
  export = str(tmp_path)
  nnunet.write(export, model, spec)
  checkpoint = os.path.join(export, nnunet.CHECKPOINT)
  arch = nnunet.architecture(spec)

  def network(arch_kwargs, in_channels=2):
    return get_network_from_plans(arch["network_class_name"], arch_kwargs,
                                  arch["_kw_requires_import"], in_channels, 3)

  # nnU-Net's own checks: another input width, another network.
  with pytest.raises(AssertionError, match="encoder.stem.convs.0.conv.weight is not the same"):
    load_pretrained_weights(network(arch["arch_kwargs"], in_channels=1), checkpoint)
  deeper = dict(arch["arch_kwargs"], n_stages=5, features_per_stage=[8, 16, 32, 64, 64],
                kernel_sizes=[[3] * 3] * 5, strides=[[1] * 3] + [[2] * 3] * 4,
                n_blocks_per_stage=[1, 2, 2, 2, 2], n_conv_per_stage_decoder=[1] * 4)
  with pytest.raises(AssertionError, match="Key encoder.stages.4.* is missing"):
    load_pretrained_weights(network(deeper), checkpoint)

  # The script: a dataset of another input width, plans without the base configuration.
  plans_path, _ = write_target(str(tmp_path / "one_channel"), 3, channels=1)
  result = add_to_plans(export, plans_path)
  assert result.returncode != 0
  assert "the network takes 2 input channels" in result.stderr
  plans_path, _ = write_target(str(tmp_path / "two_d"), 2)
  result = add_to_plans(export, plans_path)
  assert "has no configuration '3d_fullres' to inherit from" in result.stderr

  # Ours: networks nnU-Net has no counterpart of, a network that is not its spec's.
  with pytest.raises(ValueError, match="swinunetr_tiny has no nnU-Net counterpart"):
    nnunet.architecture(dict(spec, model="tiny"))
  with pytest.raises(ValueError, match="pooled"):
    nnunet.architecture(dict(spec, pooled=True))
  with pytest.raises(ValueError, match="not the resenc_tiny of its spec"):
    nnunet.write(export, model, dict(spec, in_channels=1))
  swin = nnx.eval_shape(lambda: models.create("tiny", 2, rngs=nnx.Rngs(0)))
  with pytest.raises(ValueError, match="a SwinUNETR has no nnU-Net counterpart"):
    nnunet.state_dict(swin)
  with pytest.raises(ValueError, match="stands for 'encoder.stem.convs.0.conv.weight'"):
    nnunet.strip_aliases({"encoder.stem.convs.0.all_modules.0.weight": np.zeros(3)})


def test_instructions_name_the_files_and_configuration():
  spec = downstream_spec(3, in_channels=1)
  text = "\n".join(nnunet.instructions(spec))
  assert "nnUNetv2_plan_and_preprocess -d DATASET -c 3d_fullres" in text
  assert (f"nnUNetv2_train DATASET 3d_fullres_rasd FOLD -pretrained_weights "
          f"{nnunet.CHECKPOINT}") in text
  assert "multiple of [8, 8, 8]" in text
  assert nnunet.input_text(spec) == ("channels first (B, 1, *spatial), each spatial size a "
                                     "multiple of 8")


def test_export_job(tmp_path):
  """run.py export_weights format=nnunet on a workdir of a ResEnc U-Net (model.json and an
  Orbax checkpoint, as the pretrain job leaves them): the checkpoint nnU-Net reads holds our
  weights with the aliases, the card and README say what it is and how to use it; a
  SwinUNETR workdir is one line and nothing is written."""
  spec = dict(network="backbone", checkpoints="checkpoints", model="resenc_tiny", ndim=3,
              in_channels=1, out_channels=32)
  model = random_model(spec)
  source = tmp_path / "pretrained"
  source.mkdir()
  checkpointer = checkpoint.Checkpointer(str(source / "checkpoints"))
  params, rest = nnx.split_state(nnx.state(model), nnx.Param, ...)
  checkpointer.save(7, {"params": params, "rest": rest})
  checkpointer.close()
  weights.write_spec(str(source), spec)

  out = tmp_path / "export"
  run_job("experiments/export_weights.py:format=nnunet", out, f"--config.source={source}")
  saved = torch.load(out / nnunet.CHECKPOINT, weights_only=True)["network_weights"]
  expected = nnunet.state_dict(model)
  assert sorted(saved) == sorted(expected)
  for key, value in saved.items():
    np.testing.assert_array_equal(value.numpy(), expected[key], err_msg=key)
  card = json.loads((out / "card.json").read_text())
  assert card["network"] == nnunet.NETWORK_CLASS and card["step"] == 7
  assert card["constructor"] == nnunet.architecture(spec)["arch_kwargs"]
  text = (out / "README.md").read_text()
  assert "\n".join(nnunet.instructions(spec)) in text
  assert sorted(os.listdir(out)) == sorted(["config.json", "card.json", "README.md",
                                            nnunet.CHECKPOINT, nnunet.PLANS, nnunet.SCRIPT])

  swin = tmp_path / "swin"
  weights.write_spec(str(source), dict(spec, model="swinunetr_tiny"))
  result = run_job("experiments/export_weights.py:format=nnunet", swin,
                   f"--config.source={source}", check=False)
  assert result.returncode and result.stderr.strip().splitlines() == [
      "error: swinunetr_tiny has no nnU-Net counterpart; residual-encoder U-Nets export to "
      "nnU-Net: ['resenc_m', 'resenc_tiny']"], result.stderr
  assert not swin.exists()
