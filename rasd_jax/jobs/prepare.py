"""Prepare a registry task's data folder from its official download (or task=custom: the
user's own lists): the folder every fine-tuning path reads with --config.data.dir
(rasd_jax.data.prepared says what it holds).

The download is found inside `source`, its cases listed, missing ones reported, what our
readers cannot read converted into the workdir, and every case read and checked; a rerun
checks only the cases whose files changed. Problems are printed one a line (`error: ...`) and
the job exits non-zero; on success it writes W/prepare.json and W/cases.json.
"""

import sys

import jax

from rasd_jax.data import prepared
from rasd_jax.data import tasks
from rasd_jax import workdir as workdir_lib
from rasd_jax.workdir import log

# Another source (a corrected path, a moved download) is checked case by case anew.
MAY_CHANGE = ("source", "threads", "allow_missing")


def _stderr(line):
  if jax.process_index() == 0:
    print(line, file=sys.stderr, flush=True)


def run(config, workdir):
  if config.task != "custom":
    tasks.get(config.task)  # an unknown name: an error with the closest names
  if not config.source:
    raise ValueError(f"prepare needs source: the folder the {config.task} download was "
                     "unpacked into, or for task=custom a dataset.json, a CSV or a folder of "
                     "class folders (--config.source=PATH)")
  prepared.check_workdir(config.source, workdir)
  workdir_lib.prepare(workdir, config, may_change=MAY_CHANGE)
  summary = prepared.prepare(config.task, config.source, workdir, threads=config.threads,
                             allow_missing=config.allow_missing,
                             image_column=config.image_column,
                             label_column=config.label_column, num_classes=config.num_classes,
                             progress=jax.process_index() == 0, log=_stderr)
  counts = ", ".join(f"{n} {split}" for split, n in summary["cases"].items())
  folds = f" (fold 0 of {summary['folds']})" if summary["folds"] > 1 else ""
  empty = summary["empty_labels"]
  log(f"prepared {config.task} from {summary['source']} ({summary['layout']}): {counts}"
      f"{folds}; {summary['converted']} case(s) converted"
      + (f"; {len(empty)} with an empty label: {', '.join(empty[:5])}" if empty else ""))
  return summary
