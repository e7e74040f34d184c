"""Each registry task's official download, as its publisher distributes it: one `Recipe` a task.

A recipe knows where the dataset's root lies inside the folder a user unpacked (`markers`:
paths that exist there), how the download names its cases, what must be converted before our
readers can read it (`Convert`: RGB masks, left + right masks, DICOM series, ...) and which
split lists it follows: the download's own, or the authors' lists shipped in
`rasd_jax/data/splitlists` (`shipped`), mapped to the download's file names. Where a dataset
comes in several common distributions (BTCV from Synapse or as MONAI's folder), the recipe has
one `Layout` per distribution.

`rasd_jax.data.prepared.prepare` runs a recipe: it finds the root, lists the cases, checks
that every listed file exists, converts, reads and checks every case, and writes the manifest
that `prepared.load_splits` reads. Recipes only list: they never read pixels (a `Convert` does,
when prepare runs it) and never write into the download.

A recipe's `cases(root)` returns a `Listing`:
- cases: {case id: {"image": path or [paths] (channels, MRI planes), "label": mask path or
  Convert (segmentation), class index (classification), [0/1 per class] (multilabel), float
  (regression), "group": the patient, where the download names it (optional)}}; an image may
  be a Convert too, and so may an image-level label that only the pixels tell (its output a
  JSON file holding the label). Paths are absolute strings (`root / name`, see `path`).
- folds: [{"train": [ids], "val": [ids] or None, "test": [ids] or None}], one per official
  fold (one element for a task without folds). None: the protocol has no such labelled list
  (splits.make_splits holds cases out). A case id listed in a fold must be in `cases`.
"""

import csv
import dataclasses
import fnmatch
import importlib
import io
import json
import os
import re
from typing import Callable

from etils import epath

from rasd_jax.data.tasks import registry

# Folder names never searched for a dataset root and file names never listed: what archivers
# and operating systems leave beside the data (macOS resource forks, Finder and Windows files).
_IGNORED = re.compile(r"^(\._.*|\.DS_Store|__MACOSX|Thumbs\.db|desktop\.ini)$")
_MAX_DEPTH = 4  # how deep below the given folder a dataset root is searched for
# The modules holding the recipes.
_GROUPS = ("seg3d_a", "seg3d_b", "fundus", "cls3d", "xray", "pathology_us")
SPLITLISTS = epath.Path(__file__).parent.parent / "splitlists"


@dataclasses.dataclass(frozen=True)
class Convert:
  """A file prepare makes from source files (again only when they change): `make(inputs,
  output)` writes `output` (a path under DATA/converted named `name`, with the suffix that
  says its format). `inputs`: the files or folders it reads (checked to exist first)."""
  name: str
  inputs: tuple
  make: Callable


@dataclasses.dataclass(frozen=True)
class Listing:
  cases: dict
  folds: list


@dataclasses.dataclass(frozen=True)
class Layout:
  """One distribution of a dataset: `markers` (relative paths, glob patterns allowed) all
  exist at its root; `cases(root: epath.Path) -> Listing`."""
  name: str
  markers: tuple
  cases: Callable


@dataclasses.dataclass(frozen=True)
class Recipe:
  task: str
  page: str          # the dataset's web page
  download: str      # what to download and unpack, in the publisher's words
  layouts: tuple     # Layout, one per common distribution, the most common first
  notes: str = ""    # what prepare converts or maps, for the docs


def path(root, *parts):
  """The absolute path string of `parts` below `root` (what a Listing holds)."""
  return os.fspath(epath.Path(root).joinpath(*parts))


def ignored(name):
  """Whether a file or folder name is an archiver's or OS's leftover, never data."""
  return bool(_IGNORED.match(name))


def listdir(folder):
  """The sorted names in `folder`, leftovers (`ignored`) and hidden names left out; [] for a
  folder that does not exist (the missing cases are reported by prepare)."""
  folder = epath.Path(folder)
  if not folder.is_dir():
    return []
  return sorted(p.name for p in folder.iterdir()
                if not ignored(p.name) and not p.name.startswith("."))


def glob(root, pattern):
  """The sorted absolute paths below `root` matching `pattern` (a relative glob, one `*`
  level per path part), leftovers left out."""
  found = [epath.Path(root)]
  for part in pattern.split("/"):
    if any(c in part for c in "*?["):
      found = [p / n for p in found for n in listdir(p) if fnmatch.fnmatchcase(n, part)]
    else:
      found = [p / part for p in found if (p / part).exists()]
  return sorted(os.fspath(p) for p in found)


def shipped(name):
  """A split list shipped in rasd_jax/data/splitlists (its "source" names the repository,
  commit and path it was read from)."""
  return json.loads((SPLITLISTS / name).read_text())


def one_fold(cases, train=None, val=None, test=None):
  """The Listing of a download with one set of lists: `train` (by default every case: the
  others are held out later), `val`, `test` (None: no such labelled list)."""
  listed = lambda ids: None if ids is None else list(ids)  # noqa: E731
  return Listing(cases, [{"train": list(cases) if train is None else list(train),
                          "val": listed(val), "test": listed(test)}])


def shipped_listing(name, case):
  """The Listing of the shipped {"train": ids, "val": ids} list `name` (no labelled test list);
  `case(id)` gives a case's {"image", "label"}. An id in both lists is one case."""
  lists = shipped(name)
  return one_fold({i: case(i) for i in lists["train"] + lists["val"]}, lists["train"],
                  lists["val"])


def read_csv(path, columns=()):
  """The rows of a CSV with a header row (a download's list), as dicts with the names and cells
  stripped, all-empty rows left out. ValueError naming the file when it cannot be parsed or
  its header lacks one of `columns`."""
  try:
    reader = csv.DictReader(io.StringIO(epath.Path(path).read_text(encoding="utf-8-sig"),
                                        newline=""))
    rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()
             if not isinstance(v, list)} for row in reader]
  except (UnicodeDecodeError, csv.Error) as e:
    raise ValueError(f"cannot read the list {path}: {type(e).__name__}: {e}") from e
  header = [(name or "").strip() for name in reader.fieldnames or ()]
  missing = [c for c in columns if c not in header]
  if missing:
    raise ValueError(f"{path}: no column {missing} in its header {header}; is it the list the "
                     "publisher distributes?")
  return [row for row in rows if any(row.values())]


def _matches(folder, markers):
  return all(glob(folder, marker) for marker in markers)


def find_root(recipe, source):
  """(layout, root): the shallowest folder, `source` or one below it (breadth first,
  `_MAX_DEPTH` levels), where all the markers of one of the recipe's layouts exist (the first
  such layout). FileNotFoundError saying what was expected."""
  source = epath.Path(source)
  if not source.is_dir():
    raise FileNotFoundError(f"source {source} is not a folder: give the folder the "
                            f"{recipe.task} download was unpacked into")
  level = [source]
  for _ in range(_MAX_DEPTH + 1):
    for folder in level:
      for layout in recipe.layouts:
        if _matches(folder, layout.markers):
          return layout, folder
    level = [f / n for f in level for n in listdir(f) if (f / n).is_dir()]
  wanted = "; or ".join(" + ".join(layout.markers) for layout in recipe.layouts)
  raise FileNotFoundError(
      f"no {recipe.task} download found in {source} (searched {_MAX_DEPTH} folder levels "
      f"down for {wanted}); download: {recipe.download} ({recipe.page})")


def _load_recipes():
  recipes = {}
  for group in _GROUPS:
    module = importlib.import_module(f"rasd_jax.data.downloads.{group}")
    for recipe in module.RECIPES:
      if recipe.task in recipes:
        raise ValueError(f"two download recipes for task {recipe.task!r}")
      recipes[recipe.task] = recipe
  return recipes


RECIPES = _load_recipes()


def get(task):
  """The download recipe of registry task `task` (a name)."""
  registry.get(task)  # an unknown name: an error naming the closest ones
  return RECIPES[task]
