"""Every registry task's official-download fixture (the fixtures_<group>.py modules, each
written from its dataset's documentation) and the data folder the prepare job makes of it:
what the job tests fine-tune on."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # for tests in other folders

import fixtures_cls3d  # noqa: E402
import fixtures_fundus  # noqa: E402
import fixtures_pathology_us  # noqa: E402
import fixtures_seg3d_a  # noqa: E402
import fixtures_seg3d_b  # noqa: E402
import fixtures_xray  # noqa: E402

from rasd_jax.data import prepared  # noqa: E402

_GROUPS = (fixtures_cls3d, fixtures_fundus, fixtures_pathology_us, fixtures_seg3d_a,
           fixtures_seg3d_b, fixtures_xray)
WRITERS = {task: writer for group in _GROUPS for task, writer in group.WRITERS.items()}
COUNTS = {task: counts for group in _GROUPS for task, counts in group.COUNTS.items()}


def write_prepared(task, data_dir):
  """Writes the fixture of `task` (a name) to `data_dir`.download and prepares it into
  `data_dir`; returns the summary. BraTS's and CC-CCII's fixtures hold a few of the 1251 and
  4178 cases their shipped lists name: the others are left out (allow_missing)."""
  WRITERS[task](f"{data_dir}.download")
  return prepared.prepare(task, f"{data_dir}.download", data_dir, allow_missing=True,
                          progress=False, log=lambda line: None)
