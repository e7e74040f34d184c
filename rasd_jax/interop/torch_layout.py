"""Our variables <-> a PyTorch state dict, for networks whose variable paths are the PyTorch
module's keys (SwinUNETR and UNet mirror MONAI's, the ResEnc U-Net nnU-Net's).

Names: the path `a/0/b/kernel` is the key `a.0.b.weight`; a norm's `scale` is `weight`, batch
norm statistics `mean` / `var` are `running_mean` / `running_var` (and PyTorch's
`num_batches_tracked` counter, which nothing here reads, is written as 0). Layouts: a Linear's
weight is transposed; a convolution's (O, I, *k) is our (*k, I, O), its first two axes moved
last and swapped. A transposed convolution built with `transpose_kernel=True` (PyTorch's
semantics) stores (*k, O, I) against PyTorch's (I, O, *k): the same move.
"""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from rasd_jax.models import heads
from rasd_jax.training import transfer
from rasd_jax.models import path_name

_LEAVES = {"kernel": "weight", "scale": "weight", "mean": "running_mean",
           "var": "running_var"}
_COUNTER = "num_batches_tracked"


def torch_key(name):
  """Our variable path -> the PyTorch key: 'a/0/b/kernel' -> 'a.0.b.weight'."""
  module, _, leaf = name.rpartition("/")
  return module.replace("/", ".") + "." + _LEAVES.get(leaf, leaf)


def to_torch(name, array):
  """Our layout -> PyTorch's, for the variable at path `name`."""
  if not name.endswith("/kernel"):
    return array
  if array.ndim == 2:  # Linear: (in, out) -> (out, in)
    return array.T
  return np.moveaxis(array, (-1, -2), (0, 1))  # convolution: (*k, I, O) -> (O, I, *k)


def to_ours(name, array):
  """PyTorch's layout -> ours, for the variable at path `name`."""
  if not name.endswith("/kernel"):
    return array
  if array.ndim == 2:
    return array.T
  return np.moveaxis(array, (0, 1), (-1, -2))


def counters(keys):
  """The `num_batches_tracked` keys PyTorch keeps beside the batch norms among `keys`."""
  return [k[:-len("running_mean")] + _COUNTER for k in keys if k.endswith(".running_mean")]


def load(make, arrays):
  """({'params', 'rest'} of the network `make()` builds, report): each variable whose key is
  in `arrays` ({PyTorch key: array}) with that array, the others as `make` initialises them.

  The report, as training.transfer's: 'loaded', 'missing' and 'shape_mismatch' ((key,
  stored shape, expected shape), PyTorch layout) name PyTorch keys; 'used' is the set of
  keys the network has (`num_batches_tracked` counters included), for the caller's 'unused'.
  """
  abstract = nnx.eval_shape(make)
  report = {"loaded": [], "missing": [], "shape_mismatch": []}
  values = {}
  variables = transfer.named(nnx.state(abstract))
  for var, leaf in variables.items():
    key = torch_key(var)
    expected = to_torch(var, np.broadcast_to(False, leaf.shape)).shape
    if key not in arrays:
      report["missing"].append(key)
    elif np.shape(arrays[key]) != expected:
      report["shape_mismatch"].append((key, np.shape(arrays[key]), expected))
    else:
      report["loaded"].append(key)
      values[var] = jnp.asarray(to_ours(var, np.asarray(arrays[key])), leaf.dtype)
  keys = [torch_key(var) for var in variables]
  report["used"] = set(keys) | set(counters(keys))
  fresh = set(variables) - set(values)
  if fresh:
    # Only the initialisers of the variables not loaded: XLA drops the others' random
    # draws (a whole SwinUNETR's take ~10 s to compile on a CPU).
    values.update(jax.jit(lambda: {k: v for k, v in transfer.named(nnx.state(make())).items()
                                   if k in fresh})())
  state = jax.tree_util.tree_map_with_path(lambda path, _: values[path_name(path)],
                                           nnx.state(abstract))
  params, rest = nnx.split_state(state, nnx.Param, ...)
  return {"params": params, "rest": rest}, report


def export(module):
  """{PyTorch key: array} of every variable of `module` (C-contiguous, PyTorch layout), with
  a zero `num_batches_tracked` beside each batch norm."""
  out = {torch_key(var): np.array(to_torch(var, np.asarray(v)), order="C")
         for var, v in transfer.named(nnx.state(module)).items()}
  out.update({key: np.zeros((), np.int64) for key in counters(list(out))})
  return out


def pooled_error(target):
  """The error for a pooled network, which `target` (a framework's name) cannot hold."""
  return ValueError(f"a pooled (classification / regression) network has no {target} "
                    "counterpart; dense (segmentation) networks export")


def network_and_head(model, networks, target):
  """(the network of `model`, an instance of one of the classes `networks`; the per-voxel
  head of a dense downstream network around it, or None). Anything else is a ValueError
  saying that `target` has no counterpart of it."""
  head = None
  if isinstance(model, heads.Downstream):
    if model.pooled:
      raise pooled_error(target)
    model, head = model.backbone, model.head
  if not isinstance(model, networks):
    raise ValueError(f"a {type(model).__name__} has no {target} counterpart; "
                     f"{' and '.join(c.__name__ for c in networks)} networks export")
  return model, head


def fold_head(arrays, conv, head):
  """Folds the per-voxel linear `head` into the convolution whose PyTorch keys are
  `conv`.weight / `conv`.bias in `arrays` (in place): conv(x) = W x + b and head(y) = H^T y
  + c make one convolution (H^T W) x + (H^T b + c)."""
  h = np.asarray(head.kernel[...], np.float64)  # (features, outputs)
  weight, bias = arrays[conv + ".weight"], arrays[conv + ".bias"]
  arrays[conv + ".weight"] = np.ascontiguousarray(
      np.einsum("fi...,fn->ni...", weight.astype(np.float64), h), weight.dtype)
  arrays[conv + ".bias"] = np.ascontiguousarray(
      bias.astype(np.float64) @ h + np.asarray(head.bias[...], np.float64), bias.dtype)
