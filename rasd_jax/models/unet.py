"""MONAI's residual U-Net (`monai.networks.nets.UNet` with num_res_units > 0, act="relu",
norm="batch": the authors' 2D network), 2D and 3D.

The same blocks and variable names as MONAI's, so that `model/1/submodule/0/conv/unit0/conv/
kernel` is MONAI's key `model.1.submodule.0.conv.unit0.conv.weight` (interop/torch_layout.py
converts): `model` is [down, skip, up] at every level, the skip's `submodule` the level below
(the bottom: one ResidualUnit). A ResidualUnit is `num_res_units` conv-norm-ReLU units
(`conv/unit{i}`, the first strided) plus a `residual` convolution when the shape changes; a
decoder level is a strided transposed convolution (norm, ReLU) and a one-unit ResidualUnit
whose last convolution is bare at the top. Transposed convolutions are PyTorch's (kernel 3,
padding 1, output_padding stride - 1: the output is exactly `stride` times the input).
MONAI's dropout (the authors' 0.15 downstream) has no weights and is not modelled.
Channels-last (NHWC / NDHWC). Batch norm statistics: `model.train()` / `model.eval()`.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

from rasd_jax.models import layers

KERNEL = 3


class Norm(nnx.Module):
  """MONAI's ADN with ordering "NDA" and no dropout: `N`, a batch norm (PyTorch's epsilon and
  momentum), then ReLU (`A`, no weights)."""

  def __init__(self, channels, *, rngs):
    self.N = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)

  def __call__(self, x):
    return jax.nn.relu(self.N(x))


class Convolution(nnx.Module):
  """MONAI's Convolution: `conv`, then `adn` unless `conv_only`."""

  def __init__(self, ndim, cin, cout, *, strides=1, transposed=False, conv_only=False, rngs):
    if transposed:
      # PyTorch's ConvTranspose(padding=p, output_padding=s - 1) is a convolution of the
      # s-dilated input padded by (k - 1 - p, k - 1 - p + s - 1), its kernel flipped.
      low = KERNEL - 1 - KERNEL // 2
      self.conv = layers.ConvTranspose(cin, cout, (KERNEL,) * ndim, strides=(strides,) * ndim,
                                       padding=[(low, low + strides - 1)] * ndim,
                                       transpose_kernel=True, rngs=rngs)
    else:
      self.conv = layers.Conv(cin, cout, (KERNEL,) * ndim, strides=(strides,) * ndim,
                              padding=[(KERNEL // 2, KERNEL // 2)] * ndim, rngs=rngs)
    self.adn = None if conv_only else Norm(cout, rngs=rngs)

  def __call__(self, x):
    x = self.conv(x)
    return x if self.adn is None else self.adn(x)


class Units(nnx.Module):
  """`unit0`, `unit1`, ...: MONAI's ResidualUnit.conv (a Sequential of named units)."""

  def __init__(self, units):
    self.count = len(units)
    for i, unit in enumerate(units):
      setattr(self, f"unit{i}", unit)

  def __call__(self, x):
    for i in range(self.count):
      x = getattr(self, f"unit{i}")(x)
    return x


class ResidualUnit(nnx.Module):
  """`subunits` Convolutions (the first strided) plus a shortcut (MONAI's ResidualUnit)."""

  def __init__(self, ndim, cin, cout, *, strides=1, subunits=2, last_conv_only=False,
               rngs):
    self.conv = Units([
        Convolution(ndim, cin if i == 0 else cout, cout, strides=strides if i == 0 else 1,
                    conv_only=last_conv_only and i == subunits - 1, rngs=rngs)
        for i in range(subunits)])
    kernel = KERNEL if strides != 1 else 1
    self.residual = (
        layers.Conv(cin, cout, (kernel,) * ndim, strides=(strides,) * ndim,
                    padding=[(kernel // 2, kernel // 2)] * ndim, rngs=rngs)
        if strides != 1 or cin != cout else None)

  def __call__(self, x):
    shortcut = x if self.residual is None else self.residual(x)
    return self.conv(x) + shortcut


class Skip(nnx.Module):
  """MONAI's SkipConnection: [x, submodule(x)] on the channel axis."""

  def __init__(self, submodule):
    self.submodule = submodule

  def __call__(self, x):
    return jnp.concatenate([x, _run(self.submodule, x)], axis=-1)


def _level(ndim, cin, cout, channels, strides, num_res_units, is_top, rngs):
  """[down, Skip(the level below), up] for `channels[0]`, built recursively from the top."""
  c, s = channels[0], strides[0]
  down = ResidualUnit(ndim, cin, c, strides=s, subunits=num_res_units, rngs=rngs)
  if len(channels) > 2:
    below = _level(ndim, c, c, channels[1:], strides[1:], num_res_units, False, rngs)
    up_in = 2 * c
  else:
    below = ResidualUnit(ndim, c, channels[1], subunits=num_res_units, rngs=rngs)
    up_in = c + channels[1]
  up = nnx.List([Convolution(ndim, up_in, cout, strides=s, transposed=True, rngs=rngs),
                 ResidualUnit(ndim, cout, cout, subunits=1, last_conv_only=is_top,
                              rngs=rngs)])
  return nnx.List([down, Skip(below), up])


def _run(layer, x):
  """`layer(x)`; a List's layers one after the other (MONAI's Sequential)."""
  if not isinstance(layer, nnx.List):
    return layer(x)
  for sublayer in layer:
    x = _run(sublayer, x)
  return x


class UNet(nnx.Module):
  """Input (B, *spatial, in_channels) -> dense output (B, *spatial, out_channels); each
  spatial size a multiple of the product of the strides."""

  def __init__(self, ndim, in_channels, out_channels, channels, strides, num_res_units,
               *, rngs):
    if len(channels) < 2 or len(strides) != len(channels) - 1 or num_res_units < 1:
      raise ValueError(f"UNet: need >= 2 channels, len(strides) == len(channels) - 1 and "
                       f"num_res_units >= 1; got channels={channels}, strides={strides}, "
                       f"num_res_units={num_res_units}")
    self.model = _level(ndim, in_channels, out_channels, tuple(channels), tuple(strides),
                        num_res_units, True, rngs)
    self.multiple = math.prod(strides)

  def __call__(self, x):
    if any(size % self.multiple for size in x.shape[1:-1]):
      raise ValueError(f"UNet: input size {tuple(x.shape[1:-1])} is not a multiple of "
                       f"{self.multiple} (the product of its strides) on every axis")
    return _run(self.model, x)
