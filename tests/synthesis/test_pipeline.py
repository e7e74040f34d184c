import os
import subprocess
import sys

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from rasd_jax import synthesis
from rasd_jax.training.mesh import make_mesh

from conftest import REPO_ROOT, device_flags, spec_of


def test_batches_are_sharded_typed_and_in_range():
  spec = spec_of(3, 32)
  batch = synthesis.make_generator(spec, make_mesh(), 2)(0, 0)
  assert batch["image"].shape == (2, 32, 32, 32, 1) and batch["image"].dtype == np.float32
  assert batch["label"].shape == (2, 32, 32, 32) and batch["label"].dtype == np.int32
  mesh = make_mesh()
  assert batch["image"].sharding.is_equivalent_to(NamedSharding(mesh, P("data")), 5)
  image = np.asarray(batch["image"])
  assert np.isfinite(image).all() and image.min() >= 0 and image.max() <= 1


def test_a_sample_depends_only_on_seed_step_and_index():
  spec = spec_of(2, 32)
  mesh = make_mesh()
  four = jax.device_get(synthesis.make_generator(spec, mesh, 4)(7, 3))
  two = jax.device_get(synthesis.make_generator(spec, mesh, 2)(7, 3, 2))  # samples 2, 3
  np.testing.assert_array_equal(four["image"][2:], two["image"])
  np.testing.assert_array_equal(four["label"][2:], two["label"])
  other_step = jax.device_get(synthesis.make_generator(spec, mesh, 4)(7, 4))
  assert not np.array_equal(other_step["label"], four["label"])
  assert not np.array_equal(four["label"][0], four["label"][1])


def test_channels_and_paired_views_share_the_label_map():
  spec = spec_of(2, 32, channels=3, paired_views=True)
  batch = jax.device_get(synthesis.make_generator(spec, make_mesh(), 2)(0, 0))
  assert batch["image"].shape == (2, 32, 32, 3) and batch["image2"].shape == (2, 32, 32, 3)
  assert not np.allclose(batch["image"][..., 0], batch["image"][..., 1])
  assert not np.allclose(batch["image"], batch["image2"])
  plain = jax.device_get(synthesis.make_generator(spec_of(2, 32), make_mesh(), 2)(0, 0))
  np.testing.assert_array_equal(plain["label"], batch["label"])


def test_non_finite_samples_are_replaced_never_emitted():
  spec = spec_of(2, 32, bias_std_range=(500.0, 500.0))  # exp(bias) overflows to inf
  batch = jax.device_get(synthesis.make_generator(spec, make_mesh(), 2)(0, 0))
  assert np.isfinite(batch["image"]).all()
  np.testing.assert_allclose(batch["image"][..., 0],
                             batch["label"] / (spec.num_labels - 1))


def test_batch_must_divide_over_devices():
  class FakeMesh:
    shape = {"data": 8}
  try:
    synthesis.make_generator(spec_of(2, 32), FakeMesh(), 4)
  except ValueError as e:
    assert "batch_size 4 is not a multiple of the 8 devices" in str(e)
  else:
    raise AssertionError("expected a ValueError")


_SCRIPT = """
import sys, numpy as np, jax
from rasd_jax import synthesis
from rasd_jax.training.mesh import make_mesh
config = synthesis.get_config(3, 32)
config.update(dict(channels=2, lowres_prob=0.5, gibbs_prob=0.5))
spec = synthesis.make_spec(config)
mesh = make_mesh()
batch = jax.device_get(synthesis.make_generator(spec, mesh, 8)(11, 5))
np.savez(sys.argv[1], devices=mesh.shape["data"], **batch)
"""


def test_bit_identical_on_one_and_eight_devices(tmp_path):
  results = {}
  for devices in (1, 8):
    env = dict(os.environ, XLA_FLAGS=device_flags(devices), JAX_PLATFORMS="cpu")
    out = tmp_path / f"{devices}.npz"
    subprocess.run([sys.executable, "-c", _SCRIPT, str(out)], check=True, env=env,
                   cwd=REPO_ROOT)
    results[devices] = np.load(out)
    assert int(results[devices]["devices"]) == devices
  for name in ("image", "label"):
    np.testing.assert_array_equal(results[1][name], results[8][name])
