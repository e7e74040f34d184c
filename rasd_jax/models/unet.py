"""MONAI-style residual U-Net (monai.networks.nets.UNet with num_res_units > 0), 2D and 3D.

Same blocks and parameter count as MONAI's: each encoder level is a ResidualUnit (strided
first convolution, `num_res_units` conv-norm-ReLU units, a convolutional shortcut when the
shape changes); the skip concatenates the level's input-side features with the output of
the level below; each decoder level is a strided transposed convolution (norm, ReLU) and a
one-unit ResidualUnit, whose last convolution is bare at the top. Channels-last (NHWC /
NDHWC). Batch norm statistics: `model.train()` / `model.eval()`.
"""

from flax import nnx
import jax
import jax.numpy as jnp


class Convolution(nnx.Module):
  """Convolution, then batch norm and ReLU unless `conv_only` (MONAI's Convolution, NDA)."""

  def __init__(self, ndim, cin, cout, *, strides=1, kernel=3, transposed=False,
               conv_only=False, rngs):
    layer = nnx.ConvTranspose if transposed else nnx.Conv
    padding = "SAME" if transposed else [(kernel // 2, kernel // 2)] * ndim
    self.conv = layer(cin, cout, (kernel,) * ndim, strides=(strides,) * ndim,
                      padding=padding, rngs=rngs)
    self.norm = None if conv_only else nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

  def __call__(self, x):
    x = self.conv(x)
    return x if self.norm is None else jax.nn.relu(self.norm(x))


class ResidualUnit(nnx.Module):
  """`subunits` Convolutions (the first strided) plus a shortcut (MONAI's ResidualUnit)."""

  def __init__(self, ndim, cin, cout, *, strides=1, subunits=2, last_conv_only=False,
               rngs):
    self.units = nnx.List([
        Convolution(ndim, cin if i == 0 else cout, cout, strides=strides if i == 0 else 1,
                    conv_only=last_conv_only and i == subunits - 1, rngs=rngs)
        for i in range(subunits)])
    kernel = 3 if strides != 1 else 1
    self.residual = (
        nnx.Conv(cin, cout, (kernel,) * ndim, strides=(strides,) * ndim,
                 padding=[(kernel // 2, kernel // 2)] * ndim, rngs=rngs)
        if strides != 1 or cin != cout else None)

  def __call__(self, x):
    shortcut = x if self.residual is None else self.residual(x)
    for unit in self.units:
      x = unit(x)
    return x + shortcut


class Level(nnx.Module):
  """down -> [x, submodule(x)] -> up, built recursively from the top level."""

  def __init__(self, ndim, cin, cout, channels, strides, num_res_units, is_top, rngs):
    c, s = channels[0], strides[0]
    self.down = ResidualUnit(ndim, cin, c, strides=s, subunits=num_res_units, rngs=rngs)
    if len(channels) > 2:
      self.submodule = Level(ndim, c, c, channels[1:], strides[1:], num_res_units, False,
                             rngs)
      up_in = 2 * c
    else:
      self.submodule = ResidualUnit(ndim, c, channels[1], subunits=num_res_units, rngs=rngs)
      up_in = c + channels[1]
    self.up_conv = Convolution(ndim, up_in, cout, strides=s, transposed=True, rngs=rngs)
    self.up_unit = ResidualUnit(ndim, cout, cout, subunits=1, last_conv_only=is_top,
                                rngs=rngs)

  def __call__(self, x):
    x = self.down(x)
    x = jnp.concatenate([x, self.submodule(x)], axis=-1)
    return self.up_unit(self.up_conv(x))


class UNet(nnx.Module):
  """Input (B, *spatial, in_channels) -> dense output (B, *spatial, out_channels)."""

  def __init__(self, ndim, in_channels, out_channels, channels, strides, num_res_units,
               *, rngs):
    if len(channels) < 2 or len(strides) != len(channels) - 1 or num_res_units < 1:
      raise ValueError(f"UNet: need >= 2 channels, len(strides) == len(channels) - 1 and "
                       f"num_res_units >= 1; got channels={channels}, strides={strides}, "
                       f"num_res_units={num_res_units}")
    self.model = Level(ndim, in_channels, out_channels, tuple(channels), tuple(strides),
                       num_res_units, True, rngs)

  def __call__(self, x):
    return self.model(x)
