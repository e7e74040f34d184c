"""Best-validation selection: the step whose validation score is best so far, its metrics,
and its weights in W/best (an Orbax checkpoint that load_model reads).

W/best_val.json records the step and its validation summary, so a resumed run keeps
selecting over the whole run. A NaN score never beats a number; the first evaluation is
always kept (a run has selected weights once it has evaluated).
"""

import json
import math

from etils import epath
import jax

from rasd_jax.evaluation import compare
from rasd_jax.training import checkpoint
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

BEST_DIR = "best"
RECORD = "best_val.json"


class Best:

  def __init__(self, workdir, metric, resumed):
    """`resumed`: the run restarts from a checkpoint, so an earlier best stands; else any
    W/best (of a run that stopped before its first checkpoint) is cleared."""
    self.metric = metric
    self._sign = -1.0 if compare.lower_is_better(metric) else 1.0
    self._record = epath.Path(workdir) / RECORD
    folder = epath.Path(workdir) / BEST_DIR
    if not resumed and folder.is_dir() and jax.process_index() == 0:
      folder.rmtree()
    self._checkpointer = checkpoint.Checkpointer(folder, keep=1)
    self.step, self.summary, self._score = None, None, -math.inf
    if resumed and self._record.exists() and self._checkpointer.latest_step():
      saved = json.loads(self._record.read_text())
      self._take(saved["step"], saved["val"])
      log(f"best validation so far: step {self.step}, {metric} {self.value}")

  def _score_of(self, summary):
    """Higher is better; a missing or non-finite value scores -inf."""
    value = summary[self.metric]
    return self._sign * value if value is not None and math.isfinite(value) else -math.inf

  def _take(self, step, summary):
    self.step, self.summary, self._score = step, summary, self._score_of(summary)

  @property
  def value(self):
    return self._sign * self._score

  def update(self, step, summary, weights):
    """Keeps `weights` ({'params', 'rest'}) when `summary` beats the best so far; returns
    whether it did."""
    if self.step is not None and self._score_of(summary) <= self._score:
      return False
    self._take(step, summary)
    # Returns once the arrays are copied off the devices (the state is donated next).
    self._checkpointer.save(step, weights)
    workdir_lib.write_json(self._record, {"step": step, "val": summary})
    return True

  def close(self):
    self._checkpointer.close()
