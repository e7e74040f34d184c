"""What `python run.py --help` prints: the jobs and their config files, or for one config file
its description, its arguments and every field with its value.

A config file is an `experiments/*.py` with a `get_config`; the first line of its docstring
describes it, and the `config.job` it sets (or that an experiments module it imports sets)
names its job, read from the source without running it. A new job or config file is listed
as soon as it exists.
"""

import ast
import inspect
import os
import textwrap

from etils import epath

from rasd_jax import jobs
from rasd_jax.config import parse_arg

# absl's short-help flags, and -h; --helpfull (every absl flag) stays absl's.
HELP_FLAGS = ("-h", "-?", "-help", "--help", "-helpshort", "--helpshort")
WIDTH = 100
_INDENT = "  "


def asks_for_help(argv):
  """Whether a help flag comes before any `--` in `argv` (argv[0] is the program)."""
  return any(arg in HELP_FLAGS for arg in _flag_args(argv))


def without_help(argv):
  """`argv` less its help flags."""
  flag_args = len(_flag_args(argv)) + 1
  return [arg for i, arg in enumerate(argv) if i >= flag_args or arg not in HELP_FLAGS]


def config_arg(argv):
  """The value of `--config` in `argv` (`FILE[:ARGS]`; the last one, as absl takes), or None
  where it is not given."""
  args, found = _flag_args(argv), None
  for i, arg in enumerate(args):
    name, equals, value = arg.lstrip("-").partition("=")
    if arg.startswith("-") and name == "config":
      found = value if equals else (args[i + 1] if i + 1 < len(args) else None)
  return found


def _flag_args(argv):
  """argv[1:] up to a `--`, after which absl reads no flags."""
  args = argv[1:]
  return args[:args.index("--")] if "--" in args else args


def jobs_help(experiments, key_flags):
  """The usage, every job of rasd_jax.jobs with its config files in the folder `experiments`,
  and the flags `key_flags` (run.py's absl flags)."""
  files = {}  # job -> [(path, description)]
  for path in sorted(epath.Path(experiments).glob("*.py")):
    if any(isinstance(node, ast.FunctionDef) and node.name == "get_config"
           for node in _tree(path).body):
      files.setdefault(_job(path), []).append((path, _docstring(path).splitlines()[0]))
  width = max(len(str(job)) for job in (*jobs.JOBS, *files)) + 2
  lines = [_usage("experiments/FILE.py[:ARGS]"), "",
           "jobs, each with its config files (python run.py --config=FILE --help: a file's "
           "arguments and fields):"]
  for job in (*jobs.JOBS, *sorted(set(files) - set(jobs.JOBS), key=str)):
    if job in jobs.JOBS:
      name = job
    else:
      name = f"{job} (not in rasd_jax.jobs.JOBS)" if job else "(job not found)"
    listed = [(_shown(path), description) for path, description in files.get(job, [])]
    if not listed:
      listed = [("(no config file)", f"A file in {_shown(experiments)} with config.job = "
                 f"{job!r} would be listed here.")]
    for i, (shown, description) in enumerate(listed):
      lines.append(_item("" if i else name, shown, 1, width))
      lines.append(_item("", description, 1, width + 2))
  return "\n".join(lines + ["", _flags_help(key_flags)])


def config_help(argument, declared, config, problem, key_flags):
  """The help of the config file of `--config=argument`: its docstring, the arguments its
  get_config declared to parse_arg (`declared`, from config.declared_args) with their
  defaults, and every field of `config` with its value, or the `problem` that stopped it
  loading. Raises OSError where the file cannot be read."""
  path, _, arg = argument.partition(":")
  docstring = _docstring(epath.Path(path))
  job = config.job if config is not None else _job(epath.Path(path))
  lines = [_usage(path + "[:ARGS]" * bool(declared)), "", docstring, "",
           f"job: {job or '(not found)'}", ""]
  if declared:
    given, defaults = declared[0]
    try:
      values = parse_arg(given, **defaults)
    except ValueError:  # the problem below says why
      values = defaults
    lines.append(f"arguments ({path}:NAME=VALUE,...; NAME alone sets a boolean to true):")
    for name, default in defaults.items():
      value = "" if values[name] == default else f"  (default {default!r})"
      lines.append(f"{_INDENT}{name} = {values[name]!r}{value}")
  else:
    lines.append("arguments: none")
  lines.append("")
  if problem:
    lines += ["fields: not listed, because:",
              textwrap.fill(problem, WIDTH, initial_indent=_INDENT, subsequent_indent=_INDENT)]
  else:
    lines.append(f"fields{' for these arguments' * bool(arg)} (--config.KEY=VALUE sets one):")
    lines += [f"{_INDENT}{key} = {value!r}" for key, value in _flat(config)]
  return "\n".join(lines + ["", _flags_help(key_flags)])


def _usage(config):
  return f"usage: python run.py --config={config} [--config.KEY=VALUE ...] [--workdir=DIR]"


def _flags_help(key_flags):
  """One line per flag, --config.KEY=VALUE after --config, and where the others are."""
  items = []
  for flag in key_flags:
    items.append((f"--{flag.name}", flag.help))
    if flag.name == "config":
      items.append(("--config.KEY=VALUE", "Sets a field of the config (--config=FILE --help "
                    "lists them)."))
  items.append(("--helpfull", "Every flag, absl's included."))
  width = max(len(name) for name, _ in items) + 2
  return "\n".join(["flags:", *(_item(name, text, 1, width) for name, text in items)])


def _item(name, text, depth, width):
  """`name` in a column `width` wide, then `text` wrapped to WIDTH beside it (below a name
  too wide for the column)."""
  indent = _INDENT * depth
  hang = " " * (len(indent) + width)
  head = f"{indent}{name:<{width}}"
  if len(name) + 2 > width:
    head = f"{indent}{name}\n{hang}"
  filled = textwrap.fill(text, WIDTH, initial_indent=hang, subsequent_indent=hang,
                         break_on_hyphens=False)
  return head + filled[len(hang):]


def _flat(config, prefix=""):
  """(dotted key, value) of every leaf of a ConfigDict, in key order."""
  for key, value in config.items():
    if hasattr(value, "items"):
      yield from _flat(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _tree(path):
  return ast.parse(path.read_text(), filename=os.fspath(path))


def _docstring(path):
  """A module's docstring as its source writes it: its command lines keep the backslashes
  that end their lines (the string's value joins those lines)."""
  source = path.read_text()
  body = ast.parse(source).body
  if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
          and isinstance(body[0].value.value, str)):
    return "(no docstring)"
  literal = ast.get_source_segment(source, body[0].value).lstrip("rRuU")
  quote = literal[:3] if literal[:3] in ('"""', "'''") else literal[0]
  return inspect.cleandoc(literal[len(quote):-len(quote)])


def _job(path, seen=()):
  """The job of a config file, from its source: the string it assigns to an attribute `job`
  (`config.job = "pretrain"`), or failing that the job of an `experiments` module it imports
  (experiments/pretrain2d.py builds its config with experiments/common.py); None if none."""
  tree = _tree(path)
  for node in ast.walk(tree):
    if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        and any(isinstance(target, ast.Attribute) and target.attr == "job"
                for target in node.targets)):
      return node.value.value
  for node in ast.walk(tree):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module == "experiments":
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.Import):
      names = [alias.name.partition(".")[2] for alias in node.names
               if alias.name.startswith("experiments.")]
    for name in names:
      imported = path.parent / f"{name}.py"
      if imported not in seen and imported.exists():
        job = _job(imported, (*seen, path))
        if job:
          return job
  return None


def _shown(path):
  """`path` relative to the current folder, as --config takes it, where it lies below it."""
  relative = os.path.relpath(path)
  return os.fspath(path) if relative.startswith("..") else relative
