"""Entry point: python run.py --config=experiments/<job>.py[:args] [--workdir=DIR]."""

import functools
import logging as std_logging
import os
import re
import sys

# Flax imports IPython (0.3 s of a job's start here) only to ask whether a notebook runs it; a
# command line never does, so it is left out here (notebooks do not start through run.py).
sys.modules.setdefault("IPython", None)

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from rasd_jax import config as config_lib
from rasd_jax import jobs
from rasd_jax import usage
from rasd_jax import workdir as workdir_lib
from rasd_jax.training import distributed
from rasd_jax.training import loop

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "The job's config file, experiments/<name>.py[:ARGS] (ARGS: its arguments).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output folder; a rerun resumes it. Default: runs/<config name>[_<args>].")
flags.mark_flags_as_required(["config"])
_EXPERIMENTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "experiments")
# An explicit multi-process launch, as flags or as the variables they set (distributed.py).
_LAUNCH = {
    "JAX_COORDINATOR_ADDRESS": flags.DEFINE_string(
        "coordinator_address", None, "host:port of process 0, in every process."),
    "JAX_NUM_PROCESSES": flags.DEFINE_integer("num_processes", None, "Number of processes."),
    "JAX_PROCESS_ID": flags.DEFINE_integer("process_id", None, "This process's id: 0, 1, ..."),
}


def _cause(e):
  """The exception `e` was raised from or while handling, as a traceback would show it."""
  return e.__cause__ or (None if e.__suppress_context__ else e.__context__)


def _one_line(e):
  """What is wrong, in one line. absl and ml_collections wrap a config's own error in messages
  that hold its whole traceback (an unknown config argument or task) or the paths they tried
  (a missing config file): the outermost single-line message along the chain of causes names
  the flag or the cause; failing that, the last line of the innermost message."""
  messages = []
  while e is not None:
    messages.append(str(e).strip())
    e = _cause(e)
  return next((m for m in messages if m and "\n" not in m), messages[-1].rsplit("\n", 1)[-1].strip())


def _unknown_key(e, argv):
  """The message for a `--config.PATH` override whose PATH names a key the locked config lacks,
  or None when `e` is not that. ml_collections raises the config's KeyError (its message names
  the closest key), bare or inside an AttributeError; a KeyError from a config file's own code
  (a bug there, not a typo on the command line) is not one."""
  if isinstance(e, AttributeError) and e.args and isinstance(e.args[0], KeyError):
    e = e.args[0]
  if not isinstance(e, KeyError) or not e.args:
    return None
  key, _, hint = str(e.args[0]).partition("\n")
  key = key.strip("'")
  typed = (re.match(r"-{1,2}(?:no)?config\.([\w.]+)", arg) for arg in argv)
  if not any(key in match[1].split(".") for match in typed if match):
    return None
  return f"unknown config key {key!r}. {hint}".strip()


def _parse_flags(argv):
  """absl's flag parsing, which loads the config and applies the overrides, with every mistake
  on the command line (a misspelt override key or bad value, an unknown config argument or
  task, a missing config file or --workdir, stray arguments) reported as one `error: ...` line
  instead of a traceback, before anything is written. With --help (or -h): the help
  (rasd_jax.usage) instead, of the config file where --config is given."""
  if usage.asks_for_help(argv):
    _help(usage.without_help(argv))
  error = _parse(argv)
  if error:
    sys.exit(f"error: {error}")
  return argv


def _parse(argv):
  """The one-line message of what is wrong on the command line `argv`, or None."""
  try:
    argv = flags.FLAGS(argv)
    _CONFIG.value.job  # a config file that failed to load raises its OSError only when read
  except (flags.Error, OSError) as e:
    return _one_line(e)
  except (AttributeError, KeyError) as e:
    message = _unknown_key(e, argv)
    if message is None:
      raise
    return message
  if len(argv) > 1:
    return f"unexpected arguments: {argv[1:]}"
  return None


def _help(argv):
  """Prints the help and exits 0; a config file that cannot be read is an error."""
  key_flags = flags.FLAGS.get_key_flags_for_module(sys.argv[0])
  argument = usage.config_arg(argv)
  if argument is None:
    text = usage.jobs_help(_EXPERIMENTS, key_flags)
  else:
    with config_lib.declared_args() as declared:
      error = _parse(argv)
    try:
      text = usage.config_help(argument, declared, None if error else _CONFIG.value, error,
                               key_flags)
    except OSError:
      sys.exit(f"error: {error}")
  try:
    print(text, flush=True)
  except BrokenPipeError:  # `| head`: the reader has what it wanted; no traceback at exit
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
  sys.exit(0)


def default_workdir(config_arg):
  """runs/<config name>[_<args>] for `--config=PATH[:ARGS]`: 'experiments/finetune.py:task=btcv,
  runlocal' -> 'runs/finetune_task=btcv_runlocal'."""
  path, _, args = config_arg.partition(":")
  name = os.path.splitext(os.path.basename(path))[0]
  args = re.sub(r"[^\w.=+-]+", "_", args).strip("_")
  return os.path.join("runs", f"{name}_{args}" if args else name)


def main(argv):
  del argv  # checked by _parse_flags
  if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  # Orbax logs a failed save, with its traceback, from each thread it passes through, and
  # asyncio each of the save's writes that failed with it; the error itself reaches the job,
  # which reports it in one line.
  logging.get_absl_handler().addFilter(
      lambda record: record.levelno < std_logging.ERROR
      or ("/orbax/" not in record.pathname and record.name != "asyncio"))
  # And tensorstore completes the save's other writes on the event loop Orbax has closed: a
  # traceback each, from callbacks that cannot raise.
  sys.unraisablehook = functools.partial(_unless_loop_closed, sys.unraisablehook)
  config = _CONFIG.value
  for variable, flag in _LAUNCH.items():
    if flag.value is not None:
      os.environ[variable] = str(flag.value)
  workdir = _WORKDIR.value
  if workdir is None:
    workdir = default_workdir(config_flags.get_config_filename(flags.FLAGS["config"]))
  try:
    distributed.initialize()
    if _WORKDIR.value is None:
      workdir_lib.log(f"workdir {workdir} (no --workdir given)")
    jobs.run(config, workdir)
  # Bad config or input (a missing file), or a diverged run: the message says what and where.
  except (ValueError, FileNotFoundError, FloatingPointError) as e:
    sys.exit(f"error: {e}")
  # A full disk, a permission, ...: the system's reason and the path.
  except OSError as e:
    sys.exit(f"error: {_os_error(e)}")
  # Saved and stopped: non-zero, as a process killed by the signal, so that `a && b` stops
  # and a scheduler requeues the job.
  except loop.Stopped as e:
    sys.exit(128 + e.signum)


def _unless_loop_closed(hook, unraisable):
  if not (isinstance(unraisable.exc_value, RuntimeError)
          and str(unraisable.exc_value) == "Event loop is closed"):
    hook(unraisable)


def _os_error(e):
  """'No space left on device: /path' from an OSError (or the first line of its message)."""
  if e.strerror:
    return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
  return _one_line(e)


if __name__ == "__main__":
  app.run(main, flags_parser=_parse_flags)
