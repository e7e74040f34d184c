"""Metric writers: workdir/metrics.jsonl (or another file name; one JSON object per line) and
TensorBoard events.

Process 0 writes; other processes' writers do nothing.
"""

import json
import os

import jax


class MetricsWriter:
  """Appends `{"step": ..., **values}` lines to `filename`, optionally to TensorBoard."""

  def __init__(self, workdir, tensorboard=False, resume_step=None, filename="metrics.jsonl"):
    """`resume_step`: a run resumed from that step drops the lines written after it by the
    interrupted run, so each step is recorded once (TensorBoard purges them likewise)."""
    self._path = os.path.join(workdir, filename)
    self._active = jax.process_index() == 0
    self._tensorboard = None
    if not self._active:
      return
    if resume_step is not None and os.path.exists(self._path):
      with open(self._path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
      with open(self._path + ".tmp", "w") as f:
        f.writelines(kept)
      os.replace(self._path + ".tmp", self._path)
    if tensorboard:
      import tensorboardX  # Only jobs that log to TensorBoard need it.
      self._tensorboard = tensorboardX.SummaryWriter(
          os.path.join(workdir, "tensorboard"), purge_step=resume_step)

  def write(self, step, **values):
    if not self._active:
      return
    with open(self._path, "a") as f:
      f.write(json.dumps({"step": int(step), **values}) + "\n")
    if self._tensorboard is not None:
      for name, value in values.items():
        if isinstance(value, (int, float)):
          self._tensorboard.add_scalar(name, value, int(step))

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()
