"""The polyphase convolutions equal flax's (dilated) ones, forward and gradients, the
networks' training steps lower with no dilated convolution left, and `import rasd_jax` moves
XLA's CPU convolutions off YNNPACK."""

import os
import re
import subprocess
import sys

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rasd_jax
from rasd_jax import models
from rasd_jax.models import layers


def _pair(kind, *args, **kwargs):
  """(ours, flax's) with the same variables (same initialiser, same key)."""
  ours = getattr(layers, kind)(*args, **kwargs, rngs=nnx.Rngs(0))
  theirs = getattr(nnx, kind)(*args, **kwargs, rngs=nnx.Rngs(0))
  return ours, theirs


def _assert_same(ours, theirs, shape, seed):
  """Equal variables, outputs, and gradients of a random projection of the output with
  respect to the input and every variable."""
  x = jax.random.normal(jax.random.key(seed), shape)
  for a, b in zip(jax.tree.leaves(nnx.state(ours)), jax.tree.leaves(nnx.state(theirs))):
    np.testing.assert_array_equal(a, b)
  y_ours, y_theirs = ours(x), theirs(x)
  assert y_ours.shape == y_theirs.shape
  scale = float(jnp.abs(y_theirs).max())
  np.testing.assert_allclose(y_ours, y_theirs, rtol=0, atol=2e-6 * scale)
  weights = jax.random.normal(jax.random.key(seed + 1), y_theirs.shape)

  def grads(module):
    graphdef, params = nnx.split(module)

    def loss(params, x):
      return jnp.sum(nnx.merge(graphdef, params)(x) * weights)

    return jax.grad(loss, argnums=(0, 1))(params, x)

  for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(theirs))):
    np.testing.assert_allclose(a, b, rtol=0, atol=2e-6 * float(jnp.abs(b).max()))


# (features in, out, kernel, strides, padding, input spatial shape): every strided
# convolution the networks hold (UNet's kernel 3 stride 2 with padding 1, SwinUNETR's patch
# embedding kernel = stride, ResEnc's anisotropic strides) and cases beyond them.
CONVS = [
    (3, 5, (3, 3), (2, 2), [(1, 1)] * 2, (8, 12)),
    (2, 4, (3, 3, 3), (2, 2, 2), [(1, 1)] * 3, (4, 6, 8)),
    (2, 6, (2, 2, 2), (2, 2, 2), [(0, 0)] * 3, (4, 4, 6)),
    (3, 4, (1, 3, 3), (1, 2, 2), [(0, 0), (1, 1), (1, 1)], (3, 6, 8)),
    (3, 4, (3, 3, 3), (1, 2, 2), [(1, 1)] * 3, (3, 6, 4)),
    (2, 3, (5, 4), (3, 2), [(2, 1), (0, 3)], (9, 10)),
    (2, 3, (1, 1), (2, 2), [(0, 0)] * 2, (6, 8)),
    (2, 3, (3, 3), (1, 1), [(1, 1)] * 2, (5, 5)),    # stride 1: flax's path
    (2, 3, (3, 3), (2, 2), [(1, 1)] * 2, (7, 8)),    # 7 not a multiple of 2: flax's path
]


@pytest.mark.parametrize("case", range(len(CONVS)))
def test_conv_equals_flax(case):
  cin, cout, kernel, strides, padding, spatial = CONVS[case]
  ours, theirs = _pair("Conv", cin, cout, kernel, strides=strides, padding=padding)
  _assert_same(ours, theirs, (2,) + spatial + (cin,), seed=case)


# Transposed: UNet's kernel 3 stride 2 (PyTorch's padding 1, output_padding 1), kernel ==
# stride with "VALID" padding (SwinUNETR, ResEnc, anisotropic too), the kernel as given
# (transpose_kernel=False) and shapes that fall back.
TRANSPOSED = [
    (4, 3, (3, 3), (2, 2), [(1, 2)] * 2, (5, 6), True),
    (3, 2, (3, 3, 3), (2, 2, 2), [(1, 2)] * 3, (3, 4, 2), True),
    (4, 2, (2, 2, 2), (2, 2, 2), "valid", (3, 2, 4), True),
    (4, 2, (1, 2, 2), (1, 2, 2), "valid", (3, 2, 4), True),
    (3, 5, (4, 3), (2, 3), [(2, 2), (1, 3)], (4, 5), False),
    (3, 2, (1, 3), (2, 2), [(0, 1), (1, 2)], (4, 5), False),  # output phases with no tap
    (3, 2, (3, 3), (2, 2), [(1, 1)] * 2, (4, 5), True),  # odd output: flax's path
]


@pytest.mark.parametrize("case", range(len(TRANSPOSED)))
def test_conv_transpose_equals_flax(case):
  cin, cout, kernel, strides, padding, spatial, transpose_kernel = TRANSPOSED[case]
  if padding == "valid":
    padding = layers.conv_transpose_valid_padding(kernel, strides)
  ours, theirs = _pair("ConvTranspose", cin, cout, kernel, strides=strides, padding=padding,
                       transpose_kernel=transpose_kernel)
  _assert_same(ours, theirs, (2,) + spatial + (cin,), seed=10 + case)


def test_valid_padding_is_flax_valid():
  for kernel, strides in [((2, 2), (2, 2)), ((1, 2, 2), (1, 2, 2)), ((3,), (2,)),
                          ((2,), (3,))]:
    ours, theirs = _pair("ConvTranspose", 2, 3, kernel, strides=strides,
                         padding=layers.conv_transpose_valid_padding(kernel, strides))
    theirs.padding = "VALID"
    _assert_same(ours, theirs, (1,) + (4,) * len(kernel) + (2,), seed=3)


def test_strings_are_refused():
  with pytest.raises(ValueError, match="padding must be 2 .low, high. pairs"):
    layers.Conv(1, 2, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))


_DILATED = re.compile(r"(lhs_dilate|rhs_dilate) = \[([\d, ]+)\]")


@pytest.mark.parametrize("name, ndim, size", [("unet_tiny", 2, 16), ("unet_tiny", 3, 8),
                                              ("swinunetr_tiny", 2, 64),
                                              ("resenc_tiny", 3, 16)])
def test_training_step_has_no_dilated_convolution(name, ndim, size):
  """The forward and backward pass of each network, as lowered: every convolution has
  dilation 1 (XLA's slow path is a dilated convolution)."""
  model = models.create(name, ndim, 1, 4, rngs=models.init_rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  x = jnp.zeros((1,) + (size,) * ndim + (1,))

  def loss(params):
    return jnp.sum(nnx.merge(graphdef, params, rest, copy=True)(x) ** 2)

  text = jax.jit(jax.grad(loss)).lower(params).as_text()
  assert "convolution" in text
  dilations = [m.group(0) for m in _DILATED.finditer(text)
               if set(m.group(2).replace(" ", "").split(",")) != {"1"}]
  assert not dilations, dilations[:3]


_COMPILED_CONVOLUTION = """
import os
import rasd_jax
import jax
from rasd_jax.models import layers
x, kernel = jax.numpy.ones((1, 64, 64, 32)), jax.numpy.ones((3, 3, 32, 32))
text = jax.jit(layers.conv, static_argnums=2).lower(x, kernel, ((1, 1), (1, 1))).compile().as_text()
print(os.environ["XLA_FLAGS"], jax.device_count(), "__ynn_fusion" in text, "convolution(" in text,
      sep="|")
"""


@pytest.mark.parametrize("flags, expected", [
    (None, (rasd_jax.CPU_CONVOLUTION_FLAG, 1, False)),
    ("--xla_force_host_platform_device_count=2",
     ("--xla_force_host_platform_device_count=2 " + rasd_jax.CPU_CONVOLUTION_FLAG, 2, False)),
    # XLA's default set (YNNPACK convolutions; it takes this one, 32 channels, not one of
    # 16): a user's own value of the flag is kept.
    ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution",
     ("--xla_cpu_experimental_ynn_fusion_type=+individual_convolution", 1, True))])
def test_import_sets_the_cpu_convolution_flag(flags, expected):
  """`import rasd_jax` adds its XLA flag to XLA_FLAGS before JAX starts, keeping the flags
  there: a CPU convolution compiles as XLA's own (Eigen: every core) rather than a YNNPACK
  fusion (one thread), unless XLA_FLAGS already gives the flag a value."""
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  env.update({"XLA_FLAGS": flags} if flags else {}, JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", _COMPILED_CONVOLUTION], env=env,
                          capture_output=True, text=True, check=True)
  xla_flags, devices, ynn, convolution = result.stdout.strip().splitlines()[-1].split("|")
  assert (xla_flags, int(devices), ynn == "True") == expected
  assert convolution == "True"  # the convolution itself: in YNNPACK's fusion or on its own
