"""Metric writers: workdir/metrics.jsonl (or another file name; one JSON object per line) and
TensorBoard events.

Process 0 writes; other processes' writers do nothing. The workdir may be on cloud storage
(workdir.append_lines; tensorboardX writes gs:// event files itself, through
google-cloud-storage).
"""

import importlib
import json
import os
import sys
import time

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
      self._tensorboard = _TensorBoard(os.path.join(os.fspath(workdir), "tensorboard"),
                                       resume_step)

  def write(self, step, **values):
    if not self._active:
      return
    workdir_lib.append_lines(self._path, [json.dumps({"step": int(step), **values}) + "\n"])
    if self._tensorboard is not None:
      self._tensorboard.write(int(step), {k: v for k, v in values.items()
                                          if isinstance(v, (int, float))})

  def close(self):
    if self._tensorboard is not None:
      self._tensorboard.close()


class _TensorBoard:
  """TensorBoard scalars in an event file of `folder`, written and flushed in the caller's
  thread: tensorboardX's SummaryWriter writes from a thread of its own, which dies on a
  failed write (a full disk) and leaves the next write waiting for it forever. A resumed
  run (`resume_step`) marks the restart, so TensorBoard drops the later steps of the run
  it resumes."""

  def __init__(self, folder, resume_step):
    self._tbx, self._folder = _tensorboardx(), folder
    event_pb2 = self._tbx.proto.event_pb2
    workdir_lib.makedirs(folder)
    with workdir_lib.naming(folder):
      self._writer = self._tbx.event_file_writer.EventsWriter(os.path.join(folder, "events"))
      if resume_step is not None:
        self._writer.write_event(event_pb2.Event(
            step=resume_step, wall_time=time.time(),
            session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

  def write(self, step, values):
    summary = self._tbx.summary
    merged = summary.Summary(value=[v for name, value in values.items()
                                    for v in summary.scalar(name, value).value])
    with workdir_lib.naming(self._folder):
      self._writer.write_event(self._tbx.proto.event_pb2.Event(
          step=step, wall_time=time.time(), summary=merged))
      self._writer.flush()

  def close(self):
    with workdir_lib.naming(self._folder):
      self._writer.close()


def _tensorboardx():
  """tensorboardX (only jobs that log to TensorBoard need it), imported without PyTorch:
  where PyTorch is installed, tensorboardX's package imports it (3 s of every job's start
  here) for tensor types that numbers never are."""
  hide = "torch" not in sys.modules
  if hide:
    sys.modules["torch"] = None  # `import torch` raises ImportError, which it handles
  try:
    for name in ("event_file_writer", "proto.event_pb2", "summary"):
      importlib.import_module(f"tensorboardX.{name}")
    return sys.modules["tensorboardX"]
  finally:
    if hide:
      del sys.modules["torch"]
