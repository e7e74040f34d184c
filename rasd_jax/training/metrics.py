"""Metric writers: workdir/metrics.jsonl (or another file name; one JSON object per line) and
TensorBoard events.

Process 0 writes; other processes' writers do nothing. The workdir may be on cloud storage
(workdir.append_lines; tensorboardX writes gs:// event files itself, through
google-cloud-storage).
"""

import json
import os

from etils import epath
import jax

from rasd_jax import workdir as workdir_lib


class MetricsWriter:
  """Appends `{"step": ..., **values}` lines to `filename`, optionally to TensorBoard."""

  def __init__(self, workdir, tensorboard=False, resume_step=None, filename="metrics.jsonl"):
    """`resume_step`: a run resumed from that step drops the lines written after it by the
    interrupted run, so each step is recorded once (TensorBoard purges them likewise)."""
    self._path = epath.Path(workdir) / filename
    self._active = jax.process_index() == 0
    self._tensorboard = None
    if not self._active:
      return
    if resume_step is not None and self._path.exists():
      lines = self._path.read_text().splitlines(keepends=True)
      kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= resume_step]
      workdir_lib.write_file(self._path, "".join(kept))
    if tensorboard:
      import tensorboardX  # Only jobs that log to TensorBoard need it.
      self._tensorboard = tensorboardX.SummaryWriter(
          os.path.join(os.fspath(workdir), "tensorboard"), purge_step=resume_step)

  def write(self, step, **values):
    if not self._active:
      return
    workdir_lib.append_lines(self._path, [json.dumps({"step": int(step), **values}) + "\n"])
    if self._tensorboard is not None:
      for name, value in values.items():
        if isinstance(value, (int, float)):
          self._tensorboard.add_scalar(name, value, int(step))

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()
