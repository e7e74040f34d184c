"""SwinUNETR v2 (MONAI's `SwinUNETR(..., use_v2=True)`), 2D and 3D, channels-last.

Input (B, *spatial, in_channels) -> dense output (B, *spatial, out_channels); every spatial
size must be divisible by 32 (patch size 2, then four 2x patch mergings).

The architecture is MONAI 1.6's with its defaults: patch embedding (a stride-2 convolution,
no norm), four Swin stages (depths (2, 2, 2, 2), heads (3, 6, 12, 24), window 7, every second
block shifted by 3 with the shifted-window attention mask, relative position bias tables,
MLP ratio 4 with exact GELU), the v1.x "merging" PatchMerging at the end of every stage, the
v2 residual convolution block (`layers{i}c`) before each stage, a parameter-free layer norm on
each hidden state (`normalize=True`), and the UNETR decoder (UnetResBlock: bias-free 3^d
convolutions, parameter-free instance norm, LeakyReLU(0.01); UnetrUpBlock: bias-free 2^d
stride-2 transposed convolution, concatenation, UnetResBlock; a 1x1 convolution `out`).
MONAI's small-input rules are kept: a stage whose feature map is at most the window on an
axis uses window = size and no shift on that axis, the feature map is zero-padded (after
`norm1`) to window multiples, and the relative position index is the full window's index cut
to `[:n, :n]` as MONAI does. Dropout and drop path are left out (MONAI's defaults are 0).

Weight exchange with PyTorch: the attribute paths are MONAI's state-dict keys
(`swinViT.layers1[0].blocks[0].attn.qkv` is `swinViT.layers1.0.blocks.0.attn.qkv`,
`swinViT.layers1c[0].layer.conv1.conv`, `encoder1.layer.conv1.conv`,
`decoder5.transp_conv.conv`, `out.conv.conv`, ...). The remaining differences:
- `kernel` for `weight`: a Linear's is transposed (in, out); every convolution's, transposed
  ones included, is torch's with its first two axes moved last and swapped, (*k, in, out) for
  a convolution and (*k, out, in) for a transposed one (built with `transpose_kernel=True`).
- LayerNorm `scale` for `weight`.
- `relative_position_index` (a buffer) is not stored; it is recomputed from the window.
- Initial values follow Flax's initialisers (the bias tables: truncated normal, std 0.02).
"""

import itertools
import math

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from rasd_jax.models import layers

# torch.nn.LayerNorm's and InstanceNorm's epsilon.
_EPS = 1e-5


def _standardize(x, axis):
  """jax.nn.standardize in float32, returned in x's dtype: its variance is E[x^2] - E[x]^2,
  which in bfloat16 cancels to nothing where the mean is large against the spread."""
  return jax.nn.standardize(x.astype(jnp.float32), axis=axis, epsilon=_EPS).astype(x.dtype)


def _plain_layer_norm(x):
  """Layer norm over channels without scale or bias (MONAI's `proj_out`)."""
  return _standardize(x, -1)


def _instance_norm(x):
  """Per sample and channel over space, no affine (MONAI's "instance")."""
  return _standardize(x, tuple(range(1, x.ndim - 1)))


def _layer_norm(dim, rngs):
  return nnx.LayerNorm(dim, epsilon=_EPS, rngs=rngs)


class Convolution(nnx.Module):
  """MONAI's `Convolution(conv_only=True)` as `get_conv_layer` makes it: one conv in `.conv`.

  Stride 1: "same" padding (kernel // 2); transposed: kernel == stride, no overlap.
  """

  def __init__(self, ndim, cin, cout, kernel, *, strides=1, transposed=False, bias=False,
               rngs):
    if transposed:
      self.conv = layers.ConvTranspose(
          cin, cout, (kernel,) * ndim, strides=(strides,) * ndim,
          padding=layers.conv_transpose_valid_padding((kernel,) * ndim, (strides,) * ndim),
          use_bias=bias, transpose_kernel=True, rngs=rngs)
    else:
      self.conv = layers.Conv(cin, cout, (kernel,) * ndim, strides=(strides,) * ndim,
                              padding=[(kernel // 2, kernel // 2)] * ndim, use_bias=bias,
                              rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


class UnetResBlock(nnx.Module):
  """conv-IN-LReLU-conv-IN plus a shortcut (1x1 conv and IN when channels change), LReLU."""

  def __init__(self, ndim, cin, cout, *, rngs):
    self.conv1 = Convolution(ndim, cin, cout, 3, rngs=rngs)
    self.conv2 = Convolution(ndim, cout, cout, 3, rngs=rngs)
    self.conv3 = Convolution(ndim, cin, cout, 1, rngs=rngs) if cin != cout else None

  def __call__(self, x):
    residual = x if self.conv3 is None else _instance_norm(self.conv3(x))
    out = jax.nn.leaky_relu(_instance_norm(self.conv1(x)), 0.01)
    out = _instance_norm(self.conv2(out)) + residual
    return jax.nn.leaky_relu(out, 0.01)


class UnetrBasicBlock(nnx.Module):
  """MONAI's UnetrBasicBlock with `res_block=True`, stride 1."""

  def __init__(self, ndim, cin, cout, *, rngs):
    self.layer = UnetResBlock(ndim, cin, cout, rngs=rngs)

  def __call__(self, x):
    return self.layer(x)


class UnetrUpBlock(nnx.Module):
  """2x transposed convolution, concatenation with the skip, UnetResBlock."""

  def __init__(self, ndim, cin, cout, *, rngs):
    self.transp_conv = Convolution(ndim, cin, cout, 2, strides=2, transposed=True, rngs=rngs)
    self.conv_block = UnetResBlock(ndim, 2 * cout, cout, rngs=rngs)

  def __call__(self, x, skip):
    return self.conv_block(jnp.concatenate([self.transp_conv(x), skip], axis=-1))


class UnetOutBlock(nnx.Module):
  def __init__(self, ndim, cin, cout, *, rngs):
    self.conv = Convolution(ndim, cin, cout, 1, bias=True, rngs=rngs)

  def __call__(self, x):
    return self.conv(x)


class PatchEmbed(nnx.Module):
  def __init__(self, ndim, cin, dim, patch_size, *, rngs):
    self.proj = layers.Conv(cin, dim, (patch_size,) * ndim, strides=(patch_size,) * ndim,
                            padding=[(0, 0)] * ndim, rngs=rngs)

  def __call__(self, x):
    return self.proj(x)


class MLPBlock(nnx.Module):
  def __init__(self, dim, hidden, *, rngs):
    self.linear1 = nnx.Linear(dim, hidden, rngs=rngs)
    self.linear2 = nnx.Linear(hidden, dim, rngs=rngs)

  def __call__(self, x):
    return self.linear2(jax.nn.gelu(self.linear1(x), approximate=False))


def _stage_window(sizes, window, shift):
  """MONAI's get_window_size: an axis no larger than the window is one window, unshifted."""
  use_window = tuple(s if s <= w else w for s, w in zip(sizes, window))
  use_shift = tuple(0 if s <= w else h for s, w, h in zip(sizes, window, shift))
  return use_window, use_shift


def relative_position_index(window):
  """(n, n) indices into the bias table, n = prod(window), row-major like MONAI's."""
  coords = np.stack(np.meshgrid(*[np.arange(w) for w in window], indexing="ij")).reshape(
      len(window), -1)
  relative = coords[:, :, None] - coords[:, None, :] + (np.array(window) - 1)[:, None, None]
  strides = [math.prod(2 * w - 1 for w in window[i + 1:]) for i in range(len(window))]
  return np.tensordot(np.array(strides), relative, axes=1)


def _partition(x, window):
  """(B, *padded, C) -> (B, windows, tokens per window, C), windows and tokens row-major."""
  b, *sizes, c = x.shape
  ndim = len(sizes)
  x = x.reshape([b] + [v for s, w in zip(sizes, window) for v in (s // w, w)] + [c])
  x = x.transpose([0] + list(range(1, 2 * ndim, 2)) + list(range(2, 2 * ndim + 1, 2))
                  + [2 * ndim + 1])
  return x.reshape(b, -1, math.prod(window), c)


def _unpartition(windows, window, sizes):
  """Inverse of `_partition` for padded spatial `sizes`."""
  b, c, ndim = windows.shape[0], windows.shape[-1], len(sizes)
  counts = [s // w for s, w in zip(sizes, window)]
  x = windows.reshape([b] + counts + list(window) + [c])
  x = x.transpose([0] + [i for a in range(ndim) for i in (1 + a, 1 + ndim + a)]
                  + [2 * ndim + 1])
  return x.reshape([b] + list(sizes) + [c])


def shifted_window_regions(padded, window, shift):
  """(windows, n) region ids of the rolled map: tokens of one window with different ids
  must not attend to each other (MONAI's compute_mask, whose -100 mask is `ids != ids`).

  Along each shifted axis the rolled map has three regions, [0, P - w), [P - w, P - s) and
  [P - s, P); an unshifted axis has one.
  """
  region = np.zeros(padded, np.int32)
  for axis, (p, w, s) in enumerate(zip(padded, window, shift)):
    labels = np.zeros(p, np.int32) if s == 0 else np.searchsorted([p - w, p - s],
                                                                    np.arange(p), "right")
    region = region * 3 + labels.reshape([-1 if a == axis else 1 for a in range(len(padded))])
  return _partition(region[None, ..., None], window)[0, ..., 0]


# How window attention is computed (`attention=`): "einsum" (two einsums and a softmax),
# or jax.nn.dot_product_attention with implementation "xla" or "cudnn" (NVIDIA GPUs, a
# fused kernel; bfloat16/float16 only). All three compute the same function.
ATTENTION = ("einsum", "xla", "cudnn")
_TOKEN_MULTIPLE = 8


@jax.custom_vjp
def _add_bias(logits, bias):
  """`logits + bias`, `bias` shared by the leading axes of `logits`. Its gradient, the sum
  over those axes, as a matrix product with ones: XLA's CPU reduction of the (batch,
  windows) axes of a (B, windows, heads, n, n) array took 45x as long (280 ms against 6 ms
  for 1 x 125 windows of 7^3 tokens, 3 heads), a tenth of a SwinUNETR step."""
  return logits + bias


def _add_bias_forward(logits, bias):
  return logits + bias, None


def _add_bias_backward(_, grad):
  shared = grad.shape[grad.ndim - 3:]
  rows = grad.reshape(-1, math.prod(shared))
  total = jnp.dot(jnp.ones(rows.shape[0], grad.dtype), rows,
                  preferred_element_type=jnp.float32)
  return grad, total.reshape(shared).astype(grad.dtype)


_add_bias.defvjp(_add_bias_forward, _add_bias_backward)


class WindowAttention(nnx.Module):
  """Multi-head self-attention within windows, with a relative position bias."""

  def __init__(self, dim, num_heads, window, attention="einsum", *, rngs):
    if attention not in ATTENTION:
      raise ValueError(f"SwinUNETR: attention = {attention!r}; available: {ATTENTION}")
    self.num_heads = num_heads
    self.window = tuple(window)
    self.attention = attention
    table_size = math.prod(2 * w - 1 for w in window)
    self.relative_position_bias_table = nnx.Param(
        0.02 * jax.random.truncated_normal(rngs.params(), -2.0, 2.0, (table_size, num_heads)))
    self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
    self.proj = nnx.Linear(dim, dim, rngs=rngs)

  def __call__(self, x, regions):
    """x: (B, windows, n, C); regions: (windows, n) ids from `shifted_window_regions`, or
    None."""
    b, nw, n, c = x.shape
    heads = self.num_heads
    q, k, v = jnp.moveaxis(self.qkv(x).reshape(b, nw, n, 3, heads, c // heads), 3, 0)
    # MONAI cuts the full window's index to [:n, :n] when a stage's window shrinks.
    index = relative_position_index(self.window)[:n, :n]
    table = self.relative_position_bias_table[...].astype(x.dtype)
    bias = table[index.reshape(-1)].reshape(n, n, heads).transpose(2, 0, 1)  # (heads, n, n)
    # (windows, 1, n, n): -100 between the regions of a shifted window, else 0. Built here
    # from the small id table, not stored as a (windows, n, n) constant.
    mask = (None if regions is None else jnp.where(
        regions[:, None, :, None] != regions[:, None, None, :], -100.0, 0.0).astype(x.dtype))
    scale = (c // heads) ** -0.5
    if self.attention == "einsum":
      logits = _add_bias(jnp.einsum("bwqhd,bwkhd->bwhqk", q * scale, k), bias)
      logits = logits if mask is None else logits + mask
      out = jnp.einsum("bwhqk,bwkhd->bwqhd", jax.nn.softmax(logits, axis=-1), v)
    else:  # windows as the batch of each sample
      bias = bias[None] if mask is None else bias + mask  # (1 or windows, heads, n, n)
      # The tokens padded to a multiple of 8 (cuDNN's fused kernel trains with a bias only
      # on even lengths; a 7^3 window has 343): padded keys masked out, padded queries cut.
      extra = -n % _TOKEN_MULTIPLE
      q, k, v = (jnp.pad(t, [(0, 0), (0, 0), (0, extra), (0, 0), (0, 0)]) for t in (q, k, v))
      bias = jnp.pad(bias, [(0, 0), (0, 0), (0, extra), (0, 0)])
      bias = jnp.pad(bias, [(0, 0), (0, 0), (0, 0), (0, extra)], constant_values=-1e9)
      out = jax.vmap(lambda q, k, v: jax.nn.dot_product_attention(
          q, k, v, bias=bias, scale=scale, implementation=self.attention))(q, k, v)[:, :, :n]
    return self.proj(out.reshape(b, nw, n, c))


class SwinTransformerBlock(nnx.Module):
  def __init__(self, dim, num_heads, window, shift, mlp_ratio, attention="einsum", *, rngs):
    self.window, self.shift = tuple(window), tuple(shift)
    self.norm1 = _layer_norm(dim, rngs)
    self.attn = WindowAttention(dim, num_heads, window, attention, rngs=rngs)
    self.norm2 = _layer_norm(dim, rngs)
    self.mlp = MLPBlock(dim, int(dim * mlp_ratio), rngs=rngs)

  def _attention(self, x):
    sizes = x.shape[1:-1]
    axes = tuple(range(1, len(sizes) + 1))
    window, shift = _stage_window(sizes, self.window, self.shift)
    padded = tuple(-(-s // w) * w for s, w in zip(sizes, window))
    x = jnp.pad(self.norm1(x), [(0, 0)] + [(0, p - s) for p, s in zip(padded, sizes)]
                + [(0, 0)])
    shifted = any(shift)
    if shifted:
      x = jnp.roll(x, [-s for s in shift], axes)
    regions = shifted_window_regions(padded, window, shift) if shifted else None
    x = _unpartition(self.attn(_partition(x, window), regions), window, padded)
    if shifted:
      x = jnp.roll(x, shift, axes)
    return x[(slice(None),) + tuple(slice(0, s) for s in sizes)]

  def __call__(self, x):
    x = x + self._attention(x)
    return x + self.mlp(self.norm2(x))


class PatchMerging(nnx.Module):
  """MONAI's "merging" PatchMerging: 2^d neighbours concatenated, LayerNorm, Linear to 2C."""

  def __init__(self, ndim, dim, *, rngs):
    self.ndim = ndim
    self.norm = _layer_norm(2 ** ndim * dim, rngs)
    self.reduction = nnx.Linear(2 ** ndim * dim, 2 * dim, use_bias=False, rngs=rngs)

  def __call__(self, x):
    if self.ndim == 3:  # MONAI v0.9's order of the eight (d, h, w) offsets
      offsets = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 0, 1), (0, 1, 1),
                 (1, 1, 1)]
    else:  # PatchMergingV2's 2D order: the h offset varies fastest
      offsets = [(h, w) for w, h in itertools.product(range(2), range(2))]
    parts = [x[(slice(None),) + tuple(slice(o, None, 2) for o in offset)] for offset in offsets]
    return self.reduction(self.norm(jnp.concatenate(parts, axis=-1)))


class BasicLayer(nnx.Module):
  """One Swin stage: blocks alternating unshifted / shifted windows, then PatchMerging."""

  def __init__(self, ndim, dim, depth, num_heads, window, mlp_ratio, remat,
               attention="einsum", *, rngs):
    shift = tuple(w // 2 for w in window)
    self.blocks = nnx.List([
        SwinTransformerBlock(dim, num_heads, window, shift if i % 2 else (0,) * ndim,
                             mlp_ratio, attention, rngs=rngs)
        for i in range(depth)])
    self.downsample = PatchMerging(ndim, dim, rngs=rngs)
    self.remat = remat

  def __call__(self, x):
    for block in self.blocks:
      x = nnx.remat(SwinTransformerBlock.__call__)(block, x) if self.remat else block(x)
    return self.downsample(x)


class SwinTransformer(nnx.Module):
  """The encoder (MONAI's `swinViT`): five hidden states, from 1/2 to 1/32 resolution."""

  def __init__(self, ndim, in_channels, embed_dim, depths, num_heads, window, mlp_ratio,
               remat, attention, *, rngs):
    self.patch_embed = PatchEmbed(ndim, in_channels, embed_dim, 2, rngs=rngs)
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
      dim = embed_dim * 2 ** i
      setattr(self, f"layers{i + 1}", nnx.List([
          BasicLayer(ndim, dim, depth, heads, window, mlp_ratio, remat, attention,
                     rngs=rngs)]))
      setattr(self, f"layers{i + 1}c", nnx.List([
          UnetrBasicBlock(ndim, dim, dim, rngs=rngs)]))
    self.num_layers = len(depths)

  def __call__(self, x, normalize=True):
    norm = _plain_layer_norm if normalize else (lambda h: h)
    x = self.patch_embed(x)
    hidden = [norm(x)]
    for i in range(1, self.num_layers + 1):
      x = getattr(self, f"layers{i}c")[0](x)
      x = getattr(self, f"layers{i}")[0](x)
      hidden.append(norm(x))
    return hidden


class SwinUNETR(nnx.Module):
  """Input (B, *spatial, in_channels) -> dense output (B, *spatial, out_channels)."""

  def __init__(self, ndim, in_channels, out_channels, feature_size=48, *,
               depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=7, mlp_ratio=4.0,
               normalize=True, remat=False, attention="einsum", rngs):
    if ndim not in (2, 3):
      raise ValueError(f"SwinUNETR: ndim must be 2 or 3, got {ndim}")
    if feature_size % 12:
      raise ValueError(f"SwinUNETR: feature_size must be divisible by 12, got {feature_size}")
    if len(depths) != 4 or len(num_heads) != 4 or any(
        feature_size * 2 ** i % h for i, h in enumerate(num_heads)):
      raise ValueError(f"SwinUNETR: four stages, each stage's width (feature_size * 2^i) "
                       f"divisible by its heads; got feature_size={feature_size}, "
                       f"depths={depths}, num_heads={num_heads}")
    f = feature_size
    self.ndim, self.in_channels, self.normalize = ndim, in_channels, normalize
    self.swinViT = SwinTransformer(ndim, in_channels, f, tuple(depths), tuple(num_heads),
                                   (window_size,) * ndim, mlp_ratio, remat, attention,
                                   rngs=rngs)
    self.encoder1 = UnetrBasicBlock(ndim, in_channels, f, rngs=rngs)
    self.encoder2 = UnetrBasicBlock(ndim, f, f, rngs=rngs)
    self.encoder3 = UnetrBasicBlock(ndim, 2 * f, 2 * f, rngs=rngs)
    self.encoder4 = UnetrBasicBlock(ndim, 4 * f, 4 * f, rngs=rngs)
    self.encoder10 = UnetrBasicBlock(ndim, 16 * f, 16 * f, rngs=rngs)
    self.decoder5 = UnetrUpBlock(ndim, 16 * f, 8 * f, rngs=rngs)
    self.decoder4 = UnetrUpBlock(ndim, 8 * f, 4 * f, rngs=rngs)
    self.decoder3 = UnetrUpBlock(ndim, 4 * f, 2 * f, rngs=rngs)
    self.decoder2 = UnetrUpBlock(ndim, 2 * f, f, rngs=rngs)
    self.decoder1 = UnetrUpBlock(ndim, f, f, rngs=rngs)
    self.out = UnetOutBlock(ndim, f, out_channels, rngs=rngs)

  def __call__(self, x):
    spatial = x.shape[1:-1]
    if (x.ndim != self.ndim + 2 or x.shape[-1] != self.in_channels
        or any(s % 32 for s in spatial)):
      raise ValueError(
          f"SwinUNETR ({self.ndim}D, {self.in_channels} input channels) needs input "
          f"(B, *spatial, {self.in_channels}) with every spatial size divisible by 32; "
          f"got shape {x.shape}")
    h = self.swinViT(x, self.normalize)
    enc0 = self.encoder1(x)
    enc1 = self.encoder2(h[0])
    enc2 = self.encoder3(h[1])
    enc3 = self.encoder4(h[2])
    dec4 = self.encoder10(h[4])
    dec3 = self.decoder5(dec4, h[3])
    dec2 = self.decoder4(dec3, enc3)
    dec1 = self.decoder3(dec2, enc2)
    dec0 = self.decoder2(dec1, enc1)
    return self.out(self.decoder1(dec0, enc0))
