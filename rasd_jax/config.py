"""Typed config-string arguments, shared by every `experiments/*.py` config.

`get_config("ndim=2,size=256,runlocal")` receives the text after the colon of
`--config=experiments/x.py:ndim=2,size=256,runlocal`. `parse_arg` turns it into a
ConfigDict whose values take the types of the given defaults. `declared_args` collects the
names and defaults a config file declares this way, for its help (rasd_jax.usage).
"""

import contextlib
import difflib

import ml_collections


def _convert(name, text, default):
  if isinstance(default, bool):
    lowered = text.lower()
    if lowered in ("", "1", "true", "yes"):
      return True
    if lowered in ("0", "false", "no"):
      return False
    raise ValueError(f"config argument {name}={text!r}: expected a boolean (true/false)")
  try:
    return type(default)(text)
  except ValueError:
    raise ValueError(
        f"config argument {name}={text!r}: expected {type(default).__name__}") from None


# The lists of the `declared_args` blocks open now.
_declared = []


@contextlib.contextmanager
def declared_args():
  """Yields a list that collects `(arg, defaults)` of each parse_arg call in the block, in
  order: the first is the config's own (a config may build others, each parsing theirs)."""
  calls = []
  _declared.append(calls)
  try:
    yield calls
  finally:
    _declared.remove(calls)


def parse_arg(arg, **defaults):
  """Parses `"a=1,b=x,flag"` against typed defaults; unknown names are errors."""
  for calls in _declared:
    calls.append((arg, dict(defaults)))
  values = dict(defaults)
  for item in filter(None, (arg or "").split(",")):
    name, _, text = item.partition("=")
    name = name.strip()
    if name not in defaults:
      close = difflib.get_close_matches(name, list(defaults), n=1)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ValueError(
          f"unknown config argument {name!r}; allowed: {sorted(defaults)}.{hint}")
    # A bare name switches a boolean on ("runlocal").
    values[name] = _convert(name, text.strip() if "=" in item else "", defaults[name])
  return ml_collections.ConfigDict(values)
