"""Checkpoint files read without PyTorch, checked against what the real torch and safetensors
write and read."""

import io
import pickle
import zipfile

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

from rasd_jax.interop import files


def _numpy(tensor):
  """What read_state_dict should return for `tensor`: bfloat16 widened to float32."""
  if tensor.dtype == torch.bfloat16:
    tensor = tensor.float()
  return tensor.numpy()


def _assert_same(arrays, tensors):
  assert sorted(arrays) == sorted(tensors)
  for key, tensor in tensors.items():
    expected = _numpy(tensor)
    assert arrays[key].dtype == expected.dtype, key
    np.testing.assert_array_equal(arrays[key], expected, err_msg=key)


def _tensors():
  """Every dtype a state dict holds, views that share a storage, odd strides, no elements."""
  gen = torch.Generator().manual_seed(0)
  base = torch.randn(4, 6, generator=gen)
  return {
      "f32": torch.randn(2, 3, 4, generator=gen),
      "f16": torch.randn(5, generator=gen).half(),
      "bf16": torch.randn(3, 2, generator=gen).bfloat16(),
      "i64": torch.arange(-3, 4),
      "u8": torch.arange(250, 256).to(torch.uint8),
      "bool": torch.tensor([[True, False], [False, True]]),
      "transposed": base.t(),
      "strided": base[1:, ::2],  # Same storage as "transposed", an offset and a step.
      "scalar": torch.tensor(2.5),
      "empty": torch.zeros(0, 3),
  }


@pytest.mark.parametrize("zip_format", [True, False])
def test_tensors_of_every_dtype_and_layout(tmp_path, zip_format):
  """torch.save's zip format and its pre-1.6 one; values, dtypes, shapes bit-exact, arrays
  writable and independent of the file."""
  tensors = _tensors()
  path = tmp_path / "weights.pth"
  torch.save(tensors, path, _use_new_zipfile_serialization=zip_format)
  arrays, info = files.read_state_dict(path)
  _assert_same(arrays, tensors)
  assert info["format"] == ("pytorch" if zip_format else "pytorch-legacy")
  assert info["wrapper"] is None
  assert info["dtypes"]["bf16"] == "bfloat16" and info["dtypes"]["u8"] == "uint8"
  arrays["transposed"][0, 0] = 100.0  # A copy each: the views no longer share memory.
  assert arrays["strided"][0, 0] == tensors["strided"][0, 0].item()


def _conv_net():
  torch.manual_seed(0)
  net = torch.nn.Sequential(torch.nn.Conv3d(1, 4, 3), torch.nn.BatchNorm3d(4), torch.nn.ReLU(),
                            torch.nn.ConvTranspose3d(4, 2, 2, stride=2))
  optimizer = torch.optim.Adam(net.parameters())
  net(torch.randn(2, 1, 5, 5, 5)).square().mean().backward()
  optimizer.step()  # Moments in the optimiser state, running statistics in the net.
  return net, optimizer


def test_wrapped_state_dicts(tmp_path):
  """A module's state_dict as Lightning-style and nnU-Net-style checkpoints save it: the
  weights under their wrapper key, keys as stored (`module.` kept), everything beside
  (optimiser moments, NumPy scores, a torch.device, plain values) read but ignored."""
  net, optimizer = _conv_net()
  state = net.state_dict()
  torch.save({"state_dict": state, "epoch": 7, "optimizer": optimizer.state_dict(),
              "hyper_parameters": {"lr": 1e-3, "name": "net", "sizes": (1, 2), "x": None}},
             tmp_path / "lightning.ckpt")
  arrays, info = files.read_state_dict(tmp_path / "lightning.ckpt")
  _assert_same(arrays, state)
  assert info["wrapper"] == "state_dict"
  assert info["ignored"] == ["epoch", "hyper_parameters", "optimizer"]
  assert arrays["1.num_batches_tracked"].dtype == np.int64

  parallel = torch.nn.DataParallel(net).state_dict()
  assert next(iter(parallel)).startswith("module.")
  torch.save({"network_weights": parallel, "optimizer_state": optimizer.state_dict(),
              "logging": {"ema_fg_dice": [np.float64(0.25), np.float32(0.5)]},
              "_best_ema": np.float64(0.5), "current_epoch": 3,
              "init_args": {"device": torch.device("cuda", 0), "fold": 0},
              "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)},
             tmp_path / "checkpoint_final.pth")
  arrays, info = files.read_state_dict(tmp_path / "checkpoint_final.pth")
  _assert_same(arrays, parallel)
  assert info["wrapper"] == "network_weights"


def test_not_a_state_dict(tmp_path):
  torch.save({"epoch": 3, "weights": [torch.ones(2)]}, tmp_path / "a.pth")
  with pytest.raises(ValueError, match=r"a\.pth: holds no state dict.*'epoch', 'weights'"):
    files.read_state_dict(tmp_path / "a.pth")
  torch.save({"model": {"w": torch.ones(2)}, "net": {"w": torch.zeros(2)}}, tmp_path / "b.pth")
  with pytest.raises(ValueError, match=r"b\.pth: holds several state dicts"):
    files.read_state_dict(tmp_path / "b.pth")


def test_safetensors_written_by_the_library(tmp_path):
  tensors = {key: t.contiguous() for key, t in _tensors().items()}
  safetensors.torch.save_file(tensors, tmp_path / "w.safetensors", metadata={"format": "pt"})
  arrays, info = files.read_state_dict(tmp_path / "w.safetensors")
  _assert_same(arrays, tensors)
  assert info["format"] == "safetensors" and info["metadata"] == {"format": "pt"}
  assert info["dtypes"]["bf16"] == "bfloat16"


def test_write_safetensors_read_by_the_library(tmp_path):
  """Our file is byte for byte the safetensors library's own, and torch and NumPy read it."""
  rng = np.random.default_rng(0)
  arrays = {"conv.weight": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
            "bn.num_batches_tracked": np.array(5, np.int64),
            "half": rng.standard_normal(3).astype(np.float16),
            "brain": rng.standard_normal(5).astype(ml_dtypes.bfloat16),
            "mask": rng.random(7) > 0.5,
            "empty": np.zeros((0, 2), np.float32)}
  path, reference = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
  files.write_safetensors(path, arrays, {"network": "unet"})
  safetensors.numpy.save_file(arrays, reference, {"network": "unet"})
  assert path.read_bytes() == reference.read_bytes()
  by_torch = safetensors.torch.load_file(path)
  for key, array in arrays.items():
    expected = array.astype(np.float32) if array.dtype == ml_dtypes.bfloat16 else array
    np.testing.assert_array_equal(_numpy(by_torch[key]), expected)
    np.testing.assert_array_equal(safetensors.numpy.load_file(path)[key], array)
  assert by_torch["brain"].dtype == torch.bfloat16
  with safetensors.safe_open(path, "np") as f:
    assert f.metadata() == {"network": "unet"}

  # Arrays not in C order (a transpose, a strided view, Fortran order, a transposed JAX
  # array) are written as their shapes read, not as their memory lies.
  base = rng.standard_normal((3, 4)).astype(np.float32)
  views = {"transposed": base.T, "strided": base[::2, 1::2], "fortran": np.asfortranarray(base),
           "jax": jnp.asarray(base).T}
  files.write_safetensors(path, views)
  read = safetensors.numpy.load_file(path)
  for key, view in views.items():
    np.testing.assert_array_equal(read[key], np.asarray(view), err_msg=key)

  with pytest.raises(ValueError, match=r"bad\.safetensors: array 'c' has dtype complex64"):
    files.write_safetensors(tmp_path / "bad.safetensors", {"c": np.ones(2, np.complex64)})
  with pytest.raises(ValueError, match="metadata must map str to str"):
    files.write_safetensors(tmp_path / "bad.safetensors", arrays, {"steps": 3})
  assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())


def _torch_style_zip(path, payload):
  """A zip laid out as torch.save lays it out, around the pickle `payload`."""
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", payload)
    z.writestr("archive/byteorder", "little")
    z.writestr("archive/version", "3\n")


def _edited_checkpoint(path, state, edit):
  """torch.save(state) written to `path` with `edit` applied to its pickle."""
  buffer = io.BytesIO()
  torch.save(state, buffer)
  with zipfile.ZipFile(buffer) as z:
    records = {n: z.read(n) for n in z.namelist()}
  data = next(n for n in records if n.endswith("/data.pkl"))
  records[data] = edit(records[data])
  with zipfile.ZipFile(path, "w") as z:
    for name, content in records.items():
      z.writestr(name, content)


def _system_pickle(command):
  """PROTO 2, GLOBAL 'os system', the command as a 1-tuple, REDUCE, STOP."""
  command = command.encode()
  return (b"\x80\x02cos\nsystem\nX" + len(command).to_bytes(4, "little") + command
          + b"\x85R.")


def test_code_in_a_pickle_is_refused_not_run(tmp_path):
  pickle.loads(_system_pickle(f"touch {tmp_path / 'ran_by_pickle'}"))
  assert (tmp_path / "ran_by_pickle").exists()  # What the payload does to a plain unpickler.
  marker = tmp_path / "ran"
  payload = _system_pickle(f"touch {marker}")
  _torch_style_zip(tmp_path / "evil.pth", payload)
  with pytest.raises(ValueError, match=r"evil\.pth: refused to unpickle os\.system"):
    files.read_state_dict(tmp_path / "evil.pth")
  (tmp_path / "evil_legacy.pt").write_bytes(payload)  # A bare pickle: the pre-1.6 layout.
  with pytest.raises(ValueError, match=r"evil_legacy\.pt: refused to unpickle os\.system"):
    files.read_state_dict(tmp_path / "evil_legacy.pt")
  assert not marker.exists()

  # The weights, but with a builtins.eval hidden next to them.
  _edited_checkpoint(tmp_path / "eval.pth", {"state_dict": {"w": torch.ones(2)}},
                     lambda p: p.replace(b"ccollections\nOrderedDict\n", b"cbuiltins\neval\n"))
  with pytest.raises(ValueError, match=r"refused to unpickle builtins\.eval"):
    files.read_state_dict(tmp_path / "eval.pth")

  # A whole module (torch.save(model)) is a class of its own, refused by name.
  torch.save(torch.nn.Linear(2, 1), tmp_path / "module.pth")
  with pytest.raises(ValueError, match=r"refused to unpickle torch\.nn\.modules\.linear\.Linear"):
    files.read_state_dict(tmp_path / "module.pth")


def test_pickle_cannot_change_a_tensor_after_its_checks(tmp_path):
  """Pickle's BUILD sets attributes: negative strides set after the rebuild would make the
  strided view read memory before the storage. Refused."""
  # Before the final SETITEM and STOP: BUILD the tensor with (None, {'strides': (-1,)}).
  build = b"N}X\x07\x00\x00\x00stridesJ\xff\xff\xff\xff\x85s\x86b"
  _edited_checkpoint(tmp_path / "build.pth", {"w": torch.ones(3)},
                     lambda p: p[:-2] + build + p[-2:])
  with pytest.raises(ValueError, match=r"build\.pth: a pickle that sets attributes of a Tensor"):
    files.read_state_dict(tmp_path / "build.pth")


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pt", "w.safetensors"])
def test_truncated_file(tmp_path, name):
  tensors = {"a": torch.arange(1000.0), "b": torch.ones(50, dtype=torch.int64)}
  path = tmp_path / name
  if name.endswith(".safetensors"):
    safetensors.torch.save_file(tensors, path)
  else:
    torch.save(tensors, path, _use_new_zipfile_serialization=name.startswith("zip"))
  content = path.read_bytes()
  path.write_bytes(content[:len(content) - 300])
  with pytest.raises(ValueError, match=rf"{name}: .*truncated"):
    files.read_state_dict(path)
  path.write_bytes(b"")
  with pytest.raises(ValueError, match=rf"{name}: an empty file"):
    files.read_state_dict(path)
  with pytest.raises(ValueError, match="no such file"):
    files.read_state_dict(tmp_path / "absent.pth")


def test_safetensors_of_an_unsupported_dtype(tmp_path):
  tensors = {"ok": torch.ones(2), "fp8": torch.ones(3).to(torch.float8_e4m3fn)}
  safetensors.torch.save_file(tensors, tmp_path / "fp8.safetensors")
  with pytest.raises(ValueError, match=r"fp8\.safetensors: tensor 'fp8' has dtype 'F8_E4M3'"):
    files.read_state_dict(tmp_path / "fp8.safetensors")
