"""Initialise a network from another one: copy every variable whose name and shape match.

This is how a pre-trained encoder-decoder starts a fine-tuning run (README, "Networks"):
the whole network transfers, a head of another width (32 pre-training channels against
N classes) or a first layer of another input width stays as initialised. Names are the
variables' paths in the module tree (`encoder1/layer/conv1/conv/kernel`); batch-norm
statistics transfer with the weights. Continued pre-training (`pretrain --config.init=W`)
starts the same way, from a network of the same architecture: every variable transfers.
"""

from flax import nnx
import jax

from rasd_jax.models import path_name


def named(state):
  return {path_name(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(state)}


def copy_matching(target, source):
  """Copies into the nnx.Module `target` the variables of `source` with the same name and
  shape. Returns {'loaded': [names], 'shape_mismatch': [(name, source shape, target
  shape)], 'missing': [target names absent from source], 'unused': [source names absent
  from target]}."""
  available = named(nnx.state(source))
  state = nnx.state(target)
  report = {"loaded": [], "shape_mismatch": [], "missing": []}

  def pick(path, leaf):
    name = path_name(path)
    if name not in available:
      report["missing"].append(name)
      return leaf
    if available[name].shape != leaf.shape:
      report["shape_mismatch"].append((name, available[name].shape, leaf.shape))
      return leaf
    report["loaded"].append(name)
    return available[name].astype(leaf.dtype)

  nnx.update(target, jax.tree_util.tree_map_with_path(pick, state))
  names = set(named(state))
  report["unused"] = sorted(n for n in available if n not in names)
  return report


def copy_into_state(graphdef, state, source, part=lambda network: network):
  """(state, report): the train state `state` (its 'params' and 'rest' those of the network
  `graphdef`) with the variables of `source` whose names and shapes match copied into
  `part(network)` (copy_matching's report). The copied arrays are new buffers with the
  state's shardings: a train step donates its state, and `source` stays as it is."""
  # Before the merge: the network shares the state's variables, which the copy replaces.
  shardings = jax.tree.map(lambda x: x.sharding, {"params": state["params"],
                                                  "rest": state["rest"]})
  network = nnx.merge(graphdef, state["params"], state["rest"])
  report = copy_matching(part(network), source)
  _, params, rest = nnx.split(network, nnx.Param, ...)
  copied = jax.device_put({"params": params, "rest": rest}, shardings, may_alias=False)
  return dict(state, **copied), report


def summary(report):
  """One line per kind, for the log."""
  lines = [f"loaded {len(report['loaded'])} arrays"]
  lines += [f"not loaded (shape {s} in the source, {t} here): {n}"
            for n, s, t in report["shape_mismatch"]]
  if report["missing"]:
    lines.append(f"not in the source, left as initialised: {report['missing']}")
  if report["unused"]:
    lines.append(f"in the source only, unused: {report['unused']}")
  return "\n".join(lines)
