import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rasd_jax import models
from rasd_jax.models import swin_unetr

# XLA's CPU backend compiles this network slowly (its convolutions' and normalisations'
# gradients above all); unoptimised code builds about twice as fast and runs tiny maps fast.
FAST_COMPILE = dict(compiler_options={"xla_backend_optimization_level": 0})


def random_model(name, ndim, in_channels, out_channels):
  """(graphdef, params): the model's structure with random weights drawn by numpy.

  Flax's initialisers (a random draw per parameter) take a minute to compile for the whole
  network on a 2-core CPU; the structure is what these tests are about.
  """
  abstract = nnx.eval_shape(lambda: models.create(name, ndim, in_channels, out_channels,
                                                  rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(abstract)
  rng = np.random.default_rng(0)
  params = jax.tree.map(
      lambda p: (rng.standard_normal(p.shape) / np.sqrt(max(np.prod(p.shape[:-1]), 1))
                 ).astype(np.float32), params)
  return graphdef, params


# MONAI 1.6.1: sum(p.numel() for p in SwinUNETR(in_channels=1, out_channels=32,
# feature_size=f, use_v2=True, spatial_dims=ndim).parameters()); the paper's base model in
# 3D and 2D, and its largest (about 653M). The other sizes match too (models/__init__.py).
@pytest.mark.parametrize("name,ndim,count", [("swinunetr_base", 3, 72_763_538),
                                             ("swinunetr_base", 2, 28_664_570),
                                             ("swinunetr_huge", 3, 653_088_434)])
def test_parameter_counts_match_monai(name, ndim, count):
  assert models.count_params(name, ndim) == count


def test_3d_forward_shape():
  # 32^3: the stages' maps (16, 8, 4, 2) are padded to window multiples or shrink the window.
  graphdef, params = random_model("swinunetr_tiny", 3, in_channels=2, out_channels=3)
  forward = jax.jit(lambda params, x: nnx.merge(graphdef, params)(x), **FAST_COMPILE)
  out = forward(params, jnp.ones((1, 32, 32, 32, 2)))
  assert out.shape == (1, 32, 32, 32, 3)
  assert np.isfinite(np.asarray(out)).all()


@pytest.mark.parametrize("ndim,shape", [(2, (64, 48)), (3, (32, 32, 40))])
def test_input_not_divisible_by_32_is_a_clear_error(ndim, shape):
  model = nnx.eval_shape(lambda: models.create("swinunetr_tiny", ndim, rngs=nnx.Rngs(0)))
  x = jax.ShapeDtypeStruct((1,) + shape + (1,), jnp.float32)
  with pytest.raises(ValueError, match=rf"divisible by 32; got shape \(1, {shape[0]}, "):
    nnx.eval_shape(lambda model, x: model(x), model, x)


@pytest.mark.parametrize("shift", [(0, 0), (3, 3)])
def test_attention_stays_inside_the_shifted_window_regions(shift):
  # On a 14x14 map with 7x7 windows, output token p depends on input token q exactly when
  # both fall in one window of the map rolled by -shift and, along each axis, on the same
  # side of the roll's wrap-around (the shifted-window mask). Everything else in the block
  # is per token.
  size, window, dim = 14, 7, 12
  block = nnx.jit(lambda: swin_unetr.SwinTransformerBlock(
      dim, 3, (window,) * 2, shift, 4.0, rngs=nnx.Rngs(0)))()
  x = jax.random.normal(jax.random.key(1), (1, size, size, dim))
  jacobian = jax.jit(jax.jacrev(lambda x: block(x).sum(-1)))(x)  # (1, 14, 14, 1, 14, 14, 12)
  depends = np.abs(np.asarray(jacobian)).sum((0, 3, 6)).reshape(size ** 2, size ** 2) > 1e-20

  def group(i, s):  # per axis: (rolled window, wrapped around or not)
    rolled = (i - s) % size
    return rolled // window, rolled >= size - s
  coords = [(i, j) for i in range(size) for j in range(size)]
  keys = [(group(i, shift[0]), group(j, shift[1])) for i, j in coords]
  expected = np.array([[a == b for b in keys] for a in keys])
  np.testing.assert_array_equal(depends, expected)
  if any(shift):  # the mask matters: the wrapped corner is cut off from its window's rest
    corner, wrapped = coords.index((13, 13)), coords.index((0, 0))
    assert not depends[corner, wrapped]


def test_2d_forward_shape_and_gradients_reach_every_parameter():
  graphdef, params = random_model("swinunetr_tiny", 2, in_channels=1, out_channels=2)
  x = jax.random.normal(jax.random.key(0), (2, 64, 96, 1))

  def loss_fn(params):
    out = nnx.merge(graphdef, params)(x)
    return jnp.mean(jnp.square(out - 0.5)), out

  (loss, out), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True), **FAST_COMPILE)(
      params)
  assert out.shape == (2, 64, 96, 2)
  assert np.isfinite(float(loss))
  dead = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_leaves_with_path(grads)
          if not (np.isfinite(np.asarray(g)).all() and np.abs(np.asarray(g)).sum() > 0)]
  assert not dead, dead


def test_remat_checkpoints_each_swin_block():
  def gradient_program(remat):
    layer = nnx.eval_shape(lambda: swin_unetr.BasicLayer(2, 12, 2, 3, (7, 7), 4.0, remat,
                                                         rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(layer)
    loss = lambda state, x: jnp.mean(jnp.square(nnx.merge(graphdef, state)(x)))
    return str(jax.make_jaxpr(jax.grad(loss))(state, jnp.ones((1, 14, 14, 12))))

  remat, plain = gradient_program(True), gradient_program(False)
  assert remat.count("remat2[") == 2 and "remat" not in plain  # jax.checkpoint's primitive


@pytest.mark.parametrize("shift", [(0, 0), (3, 3)])
def test_attention_implementations_compute_the_same_block(shift):
  """jax.nn.dot_product_attention ("xla"; "cudnn" is the same call on a GPU) against the
  einsum attention, with the relative position bias and the shifted-window mask, forward
  and gradients."""
  def block(attention):
    return nnx.jit(lambda: swin_unetr.SwinTransformerBlock(
        12, 3, (7, 7), shift, 4.0, attention, rngs=nnx.Rngs(0)))()
  x = jax.random.normal(jax.random.key(1), (2, 14, 21, 12))
  outs = {}
  for attention in ("einsum", "xla"):
    graphdef, params = nnx.split(block(attention))
    loss = lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x)))
    outs[attention] = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(params, x)
  (a, (ga, gxa)), (b, (gb, gxb)) = outs["einsum"], outs["xla"]
  np.testing.assert_allclose(a, b, rtol=1e-5)
  np.testing.assert_allclose(gxa, gxb, atol=1e-5)
  for u, v in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    np.testing.assert_allclose(u, v, atol=1e-4)


def test_options_reach_swinunetr_only():
  net = nnx.eval_shape(lambda: models.create("swinunetr_tiny", 2, remat=True, attention="xla",
                                             rngs=nnx.Rngs(0)))
  layer = net.swinViT.layers1[0]
  assert layer.remat and layer.blocks[0].attn.attention == "xla"
  with pytest.raises(ValueError, match=r"model 'unet_tiny' takes no option \['remat'\]"):
    models.create("unet_tiny", 2, remat=True, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match="attention = 'flash'"):
    nnx.eval_shape(lambda: models.create("swinunetr_tiny", 2, attention="flash",
                                         rngs=nnx.Rngs(0)))


def test_norms_compute_their_statistics_in_float32():
  """bfloat16 activations whose mean is large against their spread: the instance and layer
  norms give what float32 gives (to bfloat16's precision), not E[x^2] - E[x]^2 cancelled."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8, 4)) * 0.1 + 10.0
  low = x.astype(jnp.bfloat16)
  for norm in (swin_unetr._instance_norm, swin_unetr._plain_layer_norm):
    expected = norm(low.astype(jnp.float32))
    got = norm(low)
    assert got.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(got, np.float32), expected, rtol=0, atol=0.05)
