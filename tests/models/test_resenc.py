"""nnU-Net's residual-encoder U-Net: shapes, parameter counts against dynamic-network-
architectures 0.4.4, the registry entries, nnU-Net's initialisation, the input-size rule."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import resenc_reference
from rasd_jax import models
from rasd_jax.models import resenc
from rasd_jax.training import transfer


@pytest.mark.parametrize("name, ndim, count", [
    ("resenc_m", 3, 102_373_920), ("resenc_m", 2, 140_077_728),
    ("resenc_tiny", 3, 612_224), ("resenc_tiny", 2, 211_952)])
def test_parameter_count_is_dynamic_network_architectures(name, ndim, count):
  reference = resenc_reference(ndim, models.MODELS[name][1], 1, 32)
  assert sum(p.numel() for p in reference.parameters()) == count
  assert models.count_params(name, ndim) == count


def test_resenc_m_is_the_planners_network():
  """What nnU-Net 2.8.1's nnUNetPlannerResEncM writes for 1 mm isotropic data, a 128^3
  (3D) and a 512^2 (2D) patch."""
  for ndim, stages, widest in ((3, 6, 320), (2, 8, 512)):
    arch = resenc.arch_settings(ndim, **models.MODELS["resenc_m"][1])
    assert arch["n_stages"] == stages
    assert arch["features_per_stage"] == tuple(min(32 * 2 ** i, widest) for i in range(stages))
    assert arch["n_blocks_per_stage"] == (1, 3, 4, 6, 6, 6, 6, 6)[:stages]
    assert arch["n_conv_per_stage_decoder"] == (1,) * (stages - 1)
    assert arch["kernel_sizes"] == ((3,) * ndim,) * stages
    assert arch["strides"] == ((1,) * ndim,) + ((2,) * ndim,) * (stages - 1)
  assert resenc.divisor(3, **models.MODELS["resenc_m"][1]) == (32, 32, 32)
  assert resenc.divisor(2, **models.MODELS["resenc_m"][1]) == (128, 128)


@pytest.mark.parametrize("ndim, name, spatial", [
    (2, "resenc_m", (128, 256)), (3, "resenc_m", (32, 64, 32)),
    (2, "resenc_tiny", (64, 96)), (3, "resenc_tiny", (32, 64, 32))])
def test_output_shape(name, ndim, spatial):
  model = nnx.eval_shape(lambda: models.create(name, ndim, 2, 7, rngs=models.init_rngs(0)))
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((3, *spatial, 2), jnp.float32))
  assert out.shape == (3, *spatial, 7) and out.dtype == jnp.float32


def test_an_input_it_cannot_take_is_a_clear_error():
  model = nnx.eval_shape(lambda: models.create("resenc_tiny", 3, rngs=models.init_rngs(0)))
  with pytest.raises(ValueError, match=r"input size \(32, 36, 32\) is not a multiple of "
                                       r"\(8, 8, 8\)"):
    nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, 32, 36, 32, 1),
                                                                   jnp.float32))


def test_runs_and_initialises_as_nnunet():
  """A forward pass (2D, bfloat16 too); nnU-Net's initialisation: every residual block's
  second norm zero, the other norms identity, zero biases, He-normal kernels."""
  model = nnx.jit(lambda: models.create("resenc_tiny", 2, 1, 5, rngs=models.init_rngs(0)))()
  x = jax.random.normal(jax.random.key(0), (2, 32, 16, 1))
  forward = nnx.jit(lambda m, x: m(x))
  y = forward(model, x)
  assert y.shape == (2, 32, 16, 5) and np.isfinite(np.asarray(y)).all()
  graphdef, params = nnx.split(model)
  y16 = nnx.jit(lambda p, x: nnx.merge(graphdef, p)(x))(  # the pretrain job's bfloat16 compute
      jax.tree.map(lambda p: p.astype(jnp.bfloat16), params), x.astype(jnp.bfloat16))
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(y16, np.float32), y, atol=0.1 * np.abs(y).max())
  params = transfer.named(nnx.state(model, nnx.Param))
  for name, value in params.items():
    value = np.asarray(value)
    if "/conv2/norm/" in name:
      assert (value == 0).all(), name
    elif name.endswith("/norm/scale"):
      assert (value == 1).all(), name
    elif name.endswith("/bias"):
      assert (value == 0).all(), name
  kernel = np.asarray(params["encoder/stages/3/blocks/1/conv1/conv/kernel"])  # 3x3, 64 in
  assert abs(kernel.std() * np.sqrt(9 * 64 / 2) - 1) < 0.05


def test_registry_and_downstream():
  assert models.resolve("resenc_m") == "resenc_m"
  with pytest.raises(ValueError, match="Did you mean 'resenc_m'"):
    models.resolve("resenc_n")
  model = nnx.eval_shape(lambda: models.create_downstream(
      "resenc_tiny", 3, 1, 4, head="add", rngs=models.init_rngs(0)))
  out = nnx.eval_shape(lambda m, x: m(x), model,
                       jax.ShapeDtypeStruct((1, 16, 16, 16, 1), jnp.float32))
  assert out.shape == (1, 16, 16, 16, 4)
  pooled = nnx.eval_shape(lambda: models.create_downstream(
      "resenc_tiny", 2, 1, 3, pooled=True, rngs=models.init_rngs(0)))
  assert nnx.eval_shape(lambda m, x: m(x), pooled,
                        jax.ShapeDtypeStruct((2, 16, 16, 1), jnp.float32)).shape == (2, 3)


def test_settings_per_dimensionality_and_bad_settings():
  arch = resenc.arch_settings(3, features_per_stage={2: (4, 8), 3: (4, 8, 16)},
                              n_blocks_per_stage=1, kernel_sizes=[(1, 3, 3), 3, 3],
                              strides=[1, (1, 2, 2), 2])
  assert arch["kernel_sizes"] == ((1, 3, 3), (3, 3, 3), (3, 3, 3))
  assert arch["strides"] == ((1, 1, 1), (1, 2, 2), (2, 2, 2))
  assert arch["n_blocks_per_stage"] == (1, 1, 1) and arch["n_conv_per_stage_decoder"] == (1, 1)
  with pytest.raises(ValueError, match="3 stages need 3 n_blocks_per_stage"):
    resenc.arch_settings(3, features_per_stage=(4, 8, 16), n_blocks_per_stage=(1, 1))
  with pytest.raises(ValueError, match="unknown settings"):
    resenc.ResEncUNet(2, 1, 1, features_per_stage=(4, 8), n_blocks_per_stage=1, dropout=0.1,
                      rngs=nnx.Rngs(0))
