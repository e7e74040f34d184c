"""Every registry task's official-download fixture (the fixtures_<group>.py modules, each
written from its dataset's documentation) and the data folder the prepare job makes of it:
what the job tests fine-tune on."""

import os
import pathlib
import shutil
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for tests in other folders

import fixtures_cls3d  # noqa: E402
import fixtures_fundus  # noqa: E402
import fixtures_pathology_us  # noqa: E402
import fixtures_seg3d_a  # noqa: E402
import fixtures_seg3d_b  # noqa: E402
import fixtures_xray  # noqa: E402

from rasd_jax.data import downloads  # noqa: E402
from rasd_jax.data import prepared  # noqa: E402

_GROUPS = (fixtures_cls3d, fixtures_fundus, fixtures_pathology_us, fixtures_seg3d_a,
           fixtures_seg3d_b, fixtures_xray)
WRITERS = {task: writer for group in _GROUPS for task, writer in group.WRITERS.items()}
COUNTS = {task: counts for group in _GROUPS for task, counts in group.COUNTS.items()}


def _keep(task, root, cases):
  """Deletes from the fixture in `root` every file that only cases beyond the first `cases`
  it holds of each list of fold 0 read, where it holds more than 4 x `cases` (the job tests'
  data: a few cases, where a shipped list names hundreds)."""
  layout, found = downloads.find_root(downloads.get(task), root)
  listing = layout.cases(found)
  files = {i: set(prepared.files_of(case)) for i, case in listing.cases.items()}
  written = {i for i, paths in files.items() if all(os.path.exists(p) for p in paths)}
  if len(written) <= 4 * cases:  # a small fixture stays whole
    return
  kept = {i for ids in listing.folds[0].values()
          for i in [i for i in ids or () if i in written][:cases]}
  needed = set().union(*(files[i] for i in kept))
  for path in set().union(*files.values()) - needed:
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def write_prepared(task, data_dir, cases=None):
  """Writes the fixture of `task` (a name) to `data_dir`.download and prepares it into
  `data_dir`; returns the summary. `cases`: only the first so many cases of each list are
  kept. BraTS's and CC-CCII's fixtures hold a few of the 1251 and 4178 cases their shipped
  lists name: what a fixture lacks is left out (allow_missing)."""
  WRITERS[task](f"{data_dir}.download")
  if cases is not None:
    _keep(task, f"{data_dir}.download", cases)
  return prepared.prepare(task, f"{data_dir}.download", data_dir, allow_missing=True,
                          progress=False, log=lambda line: None)
