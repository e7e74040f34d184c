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
`dropout` is MONAI's (the authors fine-tune with 0.15): in every conv unit's ADN, between
the norm and the ReLU, elementwise; not in the residual convolutions nor the bare last one.
It has no weights; its masks come from the key the train step gives (training.state).
Channels-last (NHWC / NDHWC). Batch norm statistics and dropout: `model.train()` /
`model.eval()`.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

from rasd_jax.models import layers

KERNEL = 3


class Dropout(nnx.Dropout):
  """nnx.Dropout, its mask drawn as one flat vector and reshaped: the same law, but XLA
  compiles it in a fraction of the time on a CPU (threefry's counters over a 4-D shape took
  1-2.5 s of compilation per layer, a flat one 0.2 s)."""

  def __call__(self, x):
    if self.deterministic or self.rate == 0.0:
      return x
    if self.rngs is None:
      raise ValueError("dropout in train mode needs a key: the train step gives one "
                       "(training.state.train_model); model.eval() turns dropout off")
    keep = jax.random.bernoulli(self.rngs(), 1.0 - self.rate, (x.size,)).reshape(x.shape)
    return jnp.where(keep, x / (1.0 - self.rate), jnp.zeros_like(x))


class Norm(nnx.Module):
  """MONAI's ADN with ordering "NDA": `N`, a batch norm (PyTorch's epsilon and momentum), `D`,
  dropout (MONAI's dropout_dim 1: single elements), then ReLU (`A`). Its output keeps the
  input's dtype: bf16 activations are normalised in float32 against the float32
  statistics, as PyTorch's autocast does."""

  def __init__(self, channels, dropout, *, rngs):
    self.N = nnx.BatchNorm(channels, momentum=0.9, epsilon=1e-5, rngs=rngs)
    self.D = Dropout(dropout)

  def __call__(self, x):
    return jax.nn.relu(self.D(self.N(x).astype(x.dtype)))


class Convolution(nnx.Module):
  """MONAI's Convolution: `conv`, then `adn` unless `conv_only`."""

  def __init__(self, ndim, cin, cout, *, strides=1, transposed=False, conv_only=False,
               dropout=0.0, rngs):
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
    self.adn = None if conv_only else Norm(cout, dropout, rngs=rngs)

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
               dropout=0.0, rngs):
    self.conv = Units([
        Convolution(ndim, cin if i == 0 else cout, cout, strides=strides if i == 0 else 1,
                    conv_only=last_conv_only and i == subunits - 1, dropout=dropout,
                    rngs=rngs)
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


def _level(ndim, cin, cout, channels, strides, num_res_units, is_top, dropout, rngs):
  """[down, Skip(the level below), up] for `channels[0]`, built recursively from the top."""
  c, s = channels[0], strides[0]
  down = ResidualUnit(ndim, cin, c, strides=s, subunits=num_res_units, dropout=dropout,
                      rngs=rngs)
  if len(channels) > 2:
    below = _level(ndim, c, c, channels[1:], strides[1:], num_res_units, False, dropout,
                   rngs)
    up_in = 2 * c
  else:
    below = ResidualUnit(ndim, c, channels[1], subunits=num_res_units, dropout=dropout,
                         rngs=rngs)
    up_in = c + channels[1]
  up = nnx.List([Convolution(ndim, up_in, cout, strides=s, transposed=True, dropout=dropout,
                             rngs=rngs),
                 ResidualUnit(ndim, cout, cout, subunits=1, last_conv_only=is_top,
                              dropout=dropout, rngs=rngs)])
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
  spatial size a multiple of the product of the strides. `dropout`: the rate (MONAI's)."""

  def __init__(self, ndim, in_channels, out_channels, channels, strides, num_res_units,
               *, dropout=0.0, rngs):
    if len(channels) < 2 or len(strides) != len(channels) - 1 or num_res_units < 1:
      raise ValueError(f"UNet: need >= 2 channels, len(strides) == len(channels) - 1 and "
                       f"num_res_units >= 1; got channels={channels}, strides={strides}, "
                       f"num_res_units={num_res_units}")
    if not 0 <= dropout < 1:
      raise ValueError(f"UNet: dropout = {dropout}; a rate in [0, 1)")
    self.model = _level(ndim, in_channels, out_channels, tuple(channels), tuple(strides),
                        num_res_units, True, dropout, rngs)
    self.multiple = math.prod(strides)

  def __call__(self, x):
    if any(size % self.multiple for size in x.shape[1:-1]):
      raise ValueError(f"UNet: input size {tuple(x.shape[1:-1])} is not a multiple of "
                       f"{self.multiple} (the product of its strides) on every axis")
    return _run(self.model, x)
