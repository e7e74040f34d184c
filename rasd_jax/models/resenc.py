"""nnU-Net's residual-encoder U-Net (dynamic-network-architectures' `ResidualEncoderUNet`, the
network of nnU-Net's ResEnc M / L / XL presets), 2D and 3D, channels-last.

Input (B, *spatial, in_channels) -> dense output (B, *spatial, out_channels). Every spatial
size must be divisible by the product of the strides on its axis (32 per axis for ResEnc M in
3D, 128 in 2D): PyTorch's network needs the same, as its skips are concatenated unpadded.

The network, as nnU-Net's ResEnc planners configure it (`arch_kwargs` of their plans:
conv_bias True, InstanceNorm affine with eps 1e-5, LeakyReLU with PyTorch's default slope
0.01, no dropout):
- encoder: a stem (one conv-norm-LReLU at stride 1 to the first stage's width), then stage
  `s` = `n_blocks_per_stage[s]` ResNet-D basic blocks, the first with stride `strides[s]`
  (conv-norm-LReLU, conv-norm, plus the skip, then LReLU; the skip is an average pool of
  kernel = stride when strided, then a bias-free 1x1 conv-norm when the width changes);
- decoder, from the bottom: a transposed convolution of kernel = stride to the width of the
  stage above, concatenation with that stage's output, `n_conv_per_stage_decoder` conv-norm-
  LReLU; `seg_layers[i]` is a 1x1 convolution to `out_channels` after decoder stage i. Only the
  last (full resolution) is applied: the others are nnU-Net's deep-supervision outputs, kept
  as variables so that the weights are nnU-Net's state dict.

Variable paths are the PyTorch state-dict keys (`encoder/stem/convs/0/conv/kernel` is
`encoder.stem.convs.0.conv.weight`, `encoder/stages/1/blocks/0/skip/1/norm/scale` is
`...skip.1.norm.weight`, `decoder/transpconvs/0/kernel`, `decoder/seg_layers/4/bias`;
interop/torch_layout.py converts names and layouts). PyTorch's state dict also lists every
array a second time under aliases (`...all_modules.0.weight` for `...conv.weight`, and the
whole encoder again under `decoder.encoder.`): interop/nnunet.py adds and removes those.

Initialisation as nnU-Net's (`ResidualEncoderUNet.initialize`): He normal for a leaky slope of
0.01 (fan in) on every convolution, zero biases, and a zero scale and bias in the second norm
of every residual block, so that each block starts as its skip.

Settings (`ResEncUNet(ndim, in_channels, out_channels, rngs=..., **settings)`) are
`arch_kwargs` of nnU-Net's plans: `features_per_stage`, `n_blocks_per_stage`,
`n_conv_per_stage_decoder`, `kernel_sizes`, `strides`. Each may be given per dimensionality
as {2: value, 3: value}, so that one registry entry holds the planner's 2D and 3D networks;
an int stands for every stage (or every axis); `strides` defaults to 1 for the first stage and
2 after it, `kernel_sizes` to 3. `arch_settings(ndim, **settings)` gives them resolved.
"""

import math

from flax import nnx
import jax
import jax.numpy as jnp

from rasd_jax.models import layers

EPS = 1e-5  # nnU-Net's norm_op_kwargs
SLOPE = 0.01  # torch.nn.LeakyReLU's default negative slope
_HE = nnx.initializers.variance_scaling(2.0 / (1 + SLOPE ** 2), "fan_in", "normal")
_SETTINGS = ("features_per_stage", "n_blocks_per_stage", "n_conv_per_stage_decoder",
             "kernel_sizes", "strides")


def _per_stage(value, n, ndim, name):
  """`value` as n per-axis tuples: an int is every stage and axis; a sequence of ints or
  tuples is one entry per stage."""
  if isinstance(value, int):
    value = [value] * n
  if len(value) != n:
    raise ValueError(f"ResEncUNet: {name} has {len(value)} entries for {n} stages")
  out = tuple((v,) * ndim if isinstance(v, int) else tuple(v) for v in value)
  if any(len(v) != ndim for v in out):
    raise ValueError(f"ResEncUNet: {name} = {value}: each entry an int or {ndim} ints")
  return out


def arch_settings(ndim, *, features_per_stage, n_blocks_per_stage, n_conv_per_stage_decoder=1,
                  kernel_sizes=3, strides=None):
  """The settings for `ndim` resolved as nnU-Net's `arch_kwargs` spell them: n_stages, and
  per stage the width, blocks, per-axis kernel sizes and strides; per decoder stage the number
  of convolutions."""
  def pick(value):
    return value[ndim] if isinstance(value, dict) else value

  features = tuple(pick(features_per_stage))
  n = len(features)
  if n < 2:
    raise ValueError(f"ResEncUNet: need >= 2 stages; features_per_stage = {features}")
  blocks = pick(n_blocks_per_stage)
  blocks = (blocks,) * n if isinstance(blocks, int) else tuple(blocks)
  decoder = pick(n_conv_per_stage_decoder)
  decoder = (decoder,) * (n - 1) if isinstance(decoder, int) else tuple(decoder)
  if len(blocks) != n or len(decoder) != n - 1 or min(blocks + decoder) < 1:
    raise ValueError(f"ResEncUNet: {n} stages need {n} n_blocks_per_stage and {n - 1} "
                     f"n_conv_per_stage_decoder, each >= 1; got {blocks} and {decoder}")
  strides = pick(strides)
  strides = [1] + [2] * (n - 1) if strides is None else strides
  return dict(n_stages=n, features_per_stage=features, n_blocks_per_stage=blocks,
              n_conv_per_stage_decoder=decoder,
              kernel_sizes=_per_stage(pick(kernel_sizes), n, ndim, "kernel_sizes"),
              strides=_per_stage(strides, n, ndim, "strides"))


def divisor(ndim, **settings):
  """Per axis, what every spatial size must be a multiple of: the product of the strides."""
  strides = arch_settings(ndim, **settings)["strides"]
  return tuple(math.prod(s[axis] for s in strides) for axis in range(ndim))


def _conv(ndim, cin, cout, kernel, stride=1, *, bias, rngs):
  """PyTorch's ConvNd(padding=(k - 1) // 2): 'same' at stride 1, size / stride when strided."""
  kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
  stride = (stride,) * ndim if isinstance(stride, int) else tuple(stride)
  return layers.Conv(cin, cout, kernel, strides=stride,
                     padding=[((k - 1) // 2, (k - 1) // 2) for k in kernel], use_bias=bias,
                     kernel_init=_HE, rngs=rngs)


class InstanceNorm(nnx.Module):
  """torch.nn.InstanceNormNd(affine=True): per sample and channel over space, then `scale`
  and `bias`. Statistics in float32 (two-pass variance), also under bfloat16 compute."""

  def __init__(self, channels, *, zero=False):
    init = jnp.zeros if zero else jnp.ones
    self.scale = nnx.Param(init((channels,), jnp.float32))
    self.bias = nnx.Param(jnp.zeros((channels,), jnp.float32))

  def __call__(self, x):
    y = jax.nn.standardize(x.astype(jnp.float32), axis=tuple(range(1, x.ndim - 1)),
                           epsilon=EPS, algorithm="stable")
    return (y * self.scale[...] + self.bias[...]).astype(x.dtype)


class ConvNormAct(nnx.Module):
  """dynamic-network-architectures' ConvDropoutNormReLU: `conv`, `norm`, LReLU if `act`."""

  def __init__(self, ndim, cin, cout, kernel, stride=1, *, bias=True, act=True,
               zero_norm=False, rngs):
    self.conv = _conv(ndim, cin, cout, kernel, stride, bias=bias, rngs=rngs)
    self.norm = InstanceNorm(cout, zero=zero_norm)
    self.act = act

  def __call__(self, x):
    x = self.norm(self.conv(x))
    return jax.nn.leaky_relu(x, SLOPE) if self.act else x


class AvgPool(nnx.Module):
  """torch.nn.AvgPoolNd(kernel = stride): no variables (index 0 of a strided skip)."""

  def __init__(self, stride):
    self.stride = tuple(stride)

  def __call__(self, x):
    shape = [x.shape[0]]  # each axis n split into (n / stride, stride), then averaged over
    for n, s in zip(x.shape[1:-1], self.stride):
      shape += [n // s, s]
    x = x.reshape(shape + [x.shape[-1]])
    return x.mean(axis=tuple(range(2, 2 * len(self.stride) + 1, 2)))


class BasicBlockD(nnx.Module):
  """ResNet-D basic block: conv1 (strided, LReLU), conv2 (no activation), the skip (average
  pool when strided, 1x1 conv-norm when the width changes; None: identity), add, LReLU."""

  def __init__(self, ndim, cin, cout, kernel, stride, *, rngs):
    self.conv1 = ConvNormAct(ndim, cin, cout, kernel, stride, rngs=rngs)
    self.conv2 = ConvNormAct(ndim, cout, cout, kernel, act=False, zero_norm=True, rngs=rngs)
    skip = [AvgPool(stride)] if any(s != 1 for s in stride) else []
    if cin != cout:
      skip.append(ConvNormAct(ndim, cin, cout, 1, bias=False, act=False, rngs=rngs))
    self.skip = nnx.List(skip) if skip else None

  def __call__(self, x):
    residual = x
    for layer in self.skip or ():
      residual = layer(residual)
    return jax.nn.leaky_relu(self.conv2(self.conv1(x)) + residual, SLOPE)


class StackedResidualBlocks(nnx.Module):
  def __init__(self, ndim, n, cin, cout, kernel, stride, *, rngs):
    self.blocks = nnx.List([
        BasicBlockD(ndim, cin if i == 0 else cout, cout, kernel,
                    stride if i == 0 else (1,) * ndim, rngs=rngs) for i in range(n)])

  def __call__(self, x):
    for block in self.blocks:
      x = block(x)
    return x


class StackedConvBlocks(nnx.Module):
  def __init__(self, ndim, n, cin, cout, kernel, *, rngs):
    self.convs = nnx.List([ConvNormAct(ndim, cin if i == 0 else cout, cout, kernel, rngs=rngs)
                           for i in range(n)])

  def __call__(self, x):
    for conv in self.convs:
      x = conv(x)
    return x


class ResidualEncoder(nnx.Module):
  def __init__(self, ndim, cin, arch, *, rngs):
    features, kernels = arch["features_per_stage"], arch["kernel_sizes"]
    self.stem = StackedConvBlocks(ndim, 1, cin, features[0], kernels[0], rngs=rngs)
    self.stages = nnx.List([
        StackedResidualBlocks(ndim, arch["n_blocks_per_stage"][s],
                              features[max(s - 1, 0)], features[s], kernels[s],
                              arch["strides"][s], rngs=rngs)
        for s in range(arch["n_stages"])])

  def __call__(self, x):
    """The output of every stage (the skips), the bottleneck last."""
    skips = []
    x = self.stem(x)
    for stage in self.stages:
      x = stage(x)
      skips.append(x)
    return skips


class UNetDecoder(nnx.Module):
  def __init__(self, ndim, cout, arch, *, rngs):
    features, strides = arch["features_per_stage"], arch["strides"]
    self.transpconvs, self.stages, self.seg_layers = nnx.List(), nnx.List(), nnx.List()
    for s in range(1, arch["n_stages"]):
      below, skip = features[-s], features[-(s + 1)]
      self.transpconvs.append(layers.ConvTranspose(
          below, skip, strides[-s], strides=strides[-s],
          padding=layers.conv_transpose_valid_padding(strides[-s], strides[-s]),
          transpose_kernel=True, kernel_init=_HE, rngs=rngs))
      self.stages.append(StackedConvBlocks(ndim, arch["n_conv_per_stage_decoder"][s - 1],
                                           2 * skip, skip, arch["kernel_sizes"][-(s + 1)],
                                           rngs=rngs))
      self.seg_layers.append(_conv(ndim, skip, cout, 1, bias=True, rngs=rngs))

  def __call__(self, skips):
    x = skips[-1]
    for s, (up, stage) in enumerate(zip(self.transpconvs, self.stages)):
      x = stage(jnp.concatenate([up(x), skips[-(s + 2)]], axis=-1))
    return self.seg_layers[-1](x)


class ResEncUNet(nnx.Module):
  """Input (B, *spatial, in_channels) -> (B, *spatial, out_channels); see the module doc."""

  def __init__(self, ndim, in_channels, out_channels, *, rngs, **settings):
    unknown = set(settings) - set(_SETTINGS)
    if unknown:
      raise ValueError(f"ResEncUNet: unknown settings {sorted(unknown)}; known: {_SETTINGS}")
    arch = arch_settings(ndim, **settings)
    self.divisor = divisor(ndim, **settings)
    self.encoder = ResidualEncoder(ndim, in_channels, arch, rngs=rngs)
    self.decoder = UNetDecoder(ndim, out_channels, arch, rngs=rngs)

  def __call__(self, x):
    spatial = x.shape[1:-1]
    if any(n % d for n, d in zip(spatial, self.divisor)):
      raise ValueError(f"ResEncUNet: input size {tuple(spatial)} is not a multiple of "
                       f"{self.divisor} (the product of its strides) on every axis")
    return self.decoder(self.encoder(x))
