"""Checkpoints behind one small class: Orbax, asynchronous, the last N kept, auto-resume.

A checkpoint is the whole train state (a pytree of arrays) of one step, in
`<directory>/<step>`. Restoring checks every array's path and shape against the state the
run expects first, so a checkpoint of another model or shape is an error that names the
first differences, never a crash inside Orbax, and never overwritten. A resume starts from
the latest checkpoint that restores: one that cannot be read (truncated, garbled, files
missing) is renamed `<step>.damaged`, out of the run's way and never deleted, and named.
"""

import contextlib
import os
import re
import time

import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from rasd_jax.models import path_name
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

_ITEM = "default"  # the folder of a step's one item, as CheckpointManager names it


class AnotherModelError(ValueError):
  """The checkpoint holds arrays of other names or shapes than the run's."""


def _shapes(tree):
  return {path_name(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


class Checkpointer:
  """Checkpoints in `directory`: a local folder or any path etils.epath opens (gs://...),
  which Orbax (tensorstore underneath) writes directly."""

  def __init__(self, directory, keep=3):
    if keep < 1:
      raise ValueError(f"keep_checkpoints = {keep}: must keep at least one checkpoint")
    self.directory = workdir_lib.as_path(directory)
    try:
      self._manager = ocp.CheckpointManager(
          self.directory, item_handlers=ocp.StandardCheckpointHandler(),
          options=ocp.CheckpointManagerOptions(
          preservation_policy=checkpoint_managers.LatestN(keep),
          enable_async_checkpointing=True,
          cleanup_tmp_directories=True,  # Partial saves of a killed run.
          # Two checkpointers save at once in a fine-tuning run (its checkpoints and its
          # best weights); without keys of their own, a process's save of one met the
          # other process's save of the other at the same barrier and the run hung. The
          # folder is the same in every process of a run.
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix=str(self.directory))))
    except OSError as e:
      raise ValueError(
          f"cannot create the checkpoint folder {str(self.directory)!r}: {e}") from None

  def latest_step(self):
    return self._manager.latest_step()

  def _check(self, step, abstract, partial=False):
    """Raises a ValueError naming the differences between the arrays of `abstract` and
    those of the checkpoint of `step` (with `partial`, arrays the checkpoint has beyond
    `abstract` are fine)."""
    if step not in self._manager.all_steps():
      raise ValueError(f"{self.directory} holds no checkpoint of step {step}; it has "
                       f"{sorted(self._manager.all_steps())}")
    saved = _shapes(self._manager.item_metadata(step))
    expected = _shapes(abstract)
    problems = [f"{k}: missing" for k in expected if k not in saved]
    if not partial:
      problems += [f"{k}: not in this model" for k in saved if k not in expected]
    problems += [f"{k}: shape {saved[k]} in the checkpoint, {expected[k]} here"
                 for k in expected if k in saved and saved[k] != expected[k]]
    problems.sort(key=lambda p: not p.startswith("params/"))  # The model's own first.
    if problems:
      raise AnotherModelError(
          f"the checkpoint {self.directory / str(step)} holds another model or "
          f"shape ({len(problems)} differences, e.g. {problems[:3]}); it is left as it is. "
          "Use a new --workdir.")

  def restore(self, abstract_state, step=None):
    """The checkpoint of `step` (default: the latest), laid out (shardings included) as
    `abstract_state`."""
    step = self.latest_step() if step is None else step
    self._check(step, abstract_state)
    return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

  def restore_subset(self, abstract, step=None):
    """Only the arrays of `abstract` (e.g. {'params', 'rest'} of a train state) from the
    checkpoint of `step`: the others (the optimiser's moments) are never read."""
    step = self.latest_step() if step is None else step
    self._check(step, abstract, partial=True)
    path = self.directory / str(step) / _ITEM
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract)
    with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
      return reader.restore(path, args=ocp.args.PyTreeRestore(
          abstract, restore_args=restore_args, partial_restore=True))

  def start(self, abstract_state, create):
    """(first step, state): the latest checkpoint that restores, or 0 and `create()` when
    there is none. A damaged checkpoint is set aside (module docstring); none that
    restores, or one of another model or shape, is an error."""
    damaged = []
    for step in sorted(self._manager.all_steps(), reverse=True):
      try:
        state = self.restore(abstract_state, step)
      except AnotherModelError:
        raise
      except Exception as e:  # noqa: BLE001 - whatever a damaged checkpoint raises
        damaged.append(self._set_aside(step, e))
        continue
      log(f"resuming from the checkpoint of step {step}")
      return step, state
    if damaged:
      raise ValueError(f"no checkpoint in {self.directory} restores (set aside: "
                       f"{', '.join(str(p) for p in damaged)}); run the same command again "
                       "to start from step 0")
    return 0, create()

  def _set_aside(self, step, error):
    """Renames the damaged checkpoint of `step` to `<step>.damaged` (process 0, once every
    process has tried it); returns its new path."""
    path = self.directory / str(step)
    aside = self.directory / f"{step}.damaged"
    reason = (str(error).strip().splitlines() or [""])[0]
    reason = re.split(r" See full| \[tensorstore_spec", reason)[0][:200]  # no spec dumps
    multihost_utils.sync_global_devices(f"checkpoint {step} read")
    if jax.process_index() == 0:
      if aside.exists():
        aside = self.directory / f"{step}.damaged.{time.strftime('%Y%m%d-%H%M%S')}"
      path.rename(aside)
    multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
    self._manager.reload()
    log(f"warning: the checkpoint of step {step} cannot be read ({type(error).__name__}: "
        f"{reason}); it is kept as {aside} (delete it once you no longer need it: "
        f"rm -r {aside}); trying the one before it")
    return aside

  def save(self, step, state):
    """Starts an asynchronous save; returns once the arrays are copied off the devices."""
    with self._reporting_os_errors():
      self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

  def close(self):
    """Waits for pending saves."""
    with self._reporting_os_errors():
      self._manager.wait_until_finished()
    self._manager.close()

  @contextlib.contextmanager
  def _reporting_os_errors(self):
    """A failed write of a save (tensorstore reports a full disk as a ValueError carrying
    `os_error_code`; an asynchronous save's, at the next save or at close) as the OSError
    of the checkpoint folder."""
    try:
      yield
    except ValueError as e:
      code = re.search(r"os_error_code='?(\d+)", str(e))
      if code is None:
        raise
      raise OSError(int(code[1]), os.strerror(int(code[1])), str(self.directory)) from None
