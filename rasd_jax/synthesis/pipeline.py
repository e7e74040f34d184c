"""Whole samples and sharded batches.

Sample i of step s is a pure function of (seed, s, i): its key is
fold_in(fold_in(key(seed), s), i). A batch is generated inside `jax.shard_map` over the
`data` mesh axis, each device making only its own samples, so the batch comes out already
sharded and identical for any number of devices.
"""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from rasd_jax.synthesis import appearance
from rasd_jax.synthesis import structure


def _render(spec, key, label):
  """`spec.channels` independent appearances of one label map: (*spatial, C) float32."""
  keys = jax.random.split(key, spec.channels)
  image = jax.vmap(lambda k: appearance.render(spec, k, label), out_axes=-1)(keys)
  # A non-finite sample (possible only with extreme user ranges, e.g. a huge bias std)
  # is never emitted: it is replaced by its label map at evenly spaced intensities.
  def fallback():
    return jnp.broadcast_to((label.astype(jnp.float32) / (spec.num_labels - 1))[..., None],
                            image.shape)
  # A conditional, not an elementwise select: no pass over the image when it is finite.
  return jax.lax.cond(jnp.all(jnp.isfinite(image)), lambda: image, fallback)


def sample(spec, key):
  """One sample: {'image': (*spatial, C), 'label': (*spatial,) int32[, 'image2']}."""
  key_label, key_image = jax.random.split(key)
  label = structure.label_map(spec, key_label)
  out = {"image": _render(spec, jax.random.fold_in(key_image, 0), label), "label": label}
  if spec.paired_views:
    out["image2"] = _render(spec, jax.random.fold_in(key_image, 1), label)
  return out


def sample_key(seed, step, index):
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), step), index)


def sharded_batch(spec, mesh, batch_size):
  """`batch(seed, step, offset) -> batch`, a `shard_map` over mesh axis 'data' (not jitted,
  so a train step can generate its batch inside its own jit, with no host round trip).

  The batch holds global samples offset .. offset + batch_size - 1 of `step`.
  """
  devices = mesh.shape["data"]
  if batch_size % devices:
    raise ValueError(f"batch_size {batch_size} is not a multiple of the {devices} devices "
                     "of the 'data' mesh axis")
  local = batch_size // devices

  def per_device(seed, step, offset):
    first = offset + jax.lax.axis_index("data") * local
    indices = first + jnp.arange(local)
    keys = jax.vmap(functools.partial(sample_key, seed, step))(indices)
    # One sample at a time, with the same program whatever the local batch: vmap over a
    # batch changes XLA's code (and the last bits of the floats) with the batch size.
    return jax.lax.map(functools.partial(sample, spec), keys)

  return jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P()),
                       out_specs=P("data"))


def make_generator(spec, mesh, batch_size):
  """A jitted `generate(seed, step, offset=0) -> batch` of `sharded_batch`."""
  jitted = jax.jit(sharded_batch(spec, mesh, batch_size))

  def generate(seed, step, offset=0):
    return jitted(jnp.int32(seed), jnp.int32(step), jnp.int32(offset))

  return generate
