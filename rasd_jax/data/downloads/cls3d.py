"""3D classification downloads: CC-CCII, LUNA16, MRNet (abnormal, ACL, meniscus).

CC-CCII comes as folders of slice images (one folder a scan), converted to the authors' volume
(slices x 512 x 512 uint8 .npy), in the authors' three folds (shipped). LUNA16 comes as whole
CT scans (MetaImage .mhd + .raw) and a candidate list: a 48^3 cube is cut around every
candidate, as the Medical-SSL / Models Genesis nodule candidate classification (NCC) does; the
cubes that preparation writes (with its headerless label,path CSVs) are read in place too.
MRNet is read in place.
"""

import csv
import functools
import os
import re
import zlib

from etils import epath
import numpy as np
from PIL import Image

from rasd_jax.data import downloads
from rasd_jax.data.downloads import Convert, Layout, Listing, Recipe


def _csv_rows(path):
  """(line number, fields) of the non-empty rows of the CSV file `path`."""
  with epath.Path(path).open() as f:
    return [(n, row) for n, row in enumerate(csv.reader(f), 1) if any(v.strip() for v in row)]


def _bad_row(path, line, row, want):
  return ValueError(f"{path}, line {line}: {want}, got {','.join(row)!r}")


# ---- MRNet: MRNet-v1.0/{train,valid}/{axial,coronal,sagittal}/NNNN.npy + headerless CSVs.

_MRNET_PLANES = ("axial", "coronal", "sagittal")  # the registry's plane order


def _mrnet_cases(label):
  def cases(root):
    listed, fold = {}, {"test": None}
    for folder, split in (("train", "train"), ("valid", "val")):
      path = downloads.path(root, f"{folder}-{label}.csv")
      fold[split] = []
      for line, row in _csv_rows(path):
        name, value = (v.strip() for v in row) if len(row) == 2 else ("", "")
        if not name.isdigit() or value not in ("0", "1"):
          raise _bad_row(path, line, row, "expected name,0/1 (e.g. 0000,0; no header row)")
        name = f"{int(name):04d}"  # a CSV re-saved by a spreadsheet loses the leading zeros
        listed[name] = {"image": [downloads.path(root, folder, plane, name + ".npy")
                                  for plane in _MRNET_PLANES], "label": int(value)}
        fold[split].append(name)
    return Listing(listed, [fold])
  return cases


def _mrnet(label, title):
  return Recipe(
      task=f"mrnet_{label}", page="https://stanfordmlgroup.github.io/competitions/mrnet/",
      download="MRNet-v1.0.zip (the Stanford MRNet dataset, after accepting its research use "
               "agreement)",
      layouts=(Layout("MRNet-v1.0", ("train/axial", "valid/axial", f"train-{label}.csv",
                                     f"valid-{label}.csv"), _mrnet_cases(label)),),
      notes=f"read in place: {title} labels from train-{label}.csv (1130 exams) and "
            f"valid-{label}.csv (120 exams, the held-out set); image = the axial, coronal "
            "and sagittal .npy volumes of an exam")


# ---- CC-CCII: <class>/<patient_id>/<scan_id>/<slice>.{png,jpg} from the CNCB zips.

_CC_SLICES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_CC_SIZE = 512  # the authors' volumes are slices x 512 x 512; their crop (384) assumes it


def _cc_scans():
  """[(folder, class index, patient, case id)] and the folds of the shipped authors' lists."""
  shipped = downloads.shipped("cc_ccii.json")
  classes, scans = shipped["classes"], []
  folds = [{"train": [], "val": [], "test": None} for _ in range(3)]
  for folder, splits in shipped["scans"].items():
    label, patient, scan = folder.split("/")
    case_id = f"{label}_{patient}_{scan}"  # the folder, as one name
    scans.append((folder, classes.index(label), patient, case_id))
    for fold, split in zip(folds, splits):
      fold["train" if split == "t" else "val"].append(case_id)
  return scans, folds


def _slice_number(path):
  digits = re.findall(r"\d+", epath.Path(path).stem)
  if not digits:
    raise ValueError(f"{path}: a CC-CCII slice is named by its number (e.g. 0012.png)")
  return int(digits[-1])


def _stack_slices(inputs, output):
  """One scan folder of slice images -> (slices, 512, 512) uint8 .npy, in slice-number order."""
  folder = inputs[0]
  names = [n for n in downloads.listdir(folder) if n.lower().endswith(_CC_SLICES)]
  if not names:
    raise ValueError(f"{folder}: no slice images ({', '.join(_CC_SLICES)})")
  slices = []
  for path in sorted((downloads.path(folder, n) for n in names), key=_slice_number):
    with Image.open(path) as image:
      image = image.convert("L")  # some slices are saved as RGB JPEGs
      if image.size != (_CC_SIZE, _CC_SIZE):
        image = image.resize((_CC_SIZE, _CC_SIZE), Image.BILINEAR)
      slices.append(np.asarray(image, np.uint8))
  with open(output, "wb") as f:
    np.save(f, np.stack(slices))


def _cc_ccii_folders(root):
  scans, folds = _cc_scans()
  return Listing({case_id: {"image": Convert(f"volumes/{case_id}.npy",
                                             (downloads.path(root, folder),), _stack_slices),
                            "label": label, "group": patient}
                  for folder, label, patient, case_id in scans}, folds)


def _cc_ccii_authors_npy(root):
  scans, folds = _cc_scans()
  return Listing({case_id: {"image": downloads.path(root, "p{}-s{}.npy".format(
                                *folder.split("/")[1:])), "label": label, "group": patient}
                  for folder, label, patient, case_id in scans}, folds)


CC_CCII = Recipe(
    task="cc_ccii", page="http://ncov-ai.big.ac.cn/download",
    download="the CT zips of the China Consortium of Chest CT Image Investigation (CC-CCII): "
             "NCP-*.zip (served as COVID19-*.zip), CP-*.zip and Normal-*.zip, all unpacked into "
             "one folder (NCP/, CP/, Normal/), with unzip_filenames.csv",
    layouts=(Layout("CNCB zips", ("NCP/*/*", "CP/*/*", "Normal/*/*"), _cc_ccii_folders),
             Layout("authors' volumes", ("p*-s*.npy",), _cc_ccii_authors_npy)),
    notes="each scan folder's slices (ordered by the number in their names, resized to "
          "512 x 512 where they are not, grey) are stacked into one uint8 .npy volume, as the "
          "authors' p<patient>-s<scan>.npy; folds: the authors' three patient-disjoint folds "
          "(shipped cc_ccii.json; fold 0 2514 train / 1664 val scans of 4178)")


# ---- LUNA16: subset0-9/<seriesuid>.mhd + .raw and candidates.csv (MetaImage, no SimpleITK).

_MET_TYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
              "MET_INT": "i4", "MET_UINT": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
              "MET_FLOAT": "f4", "MET_DOUBLE": "f8"}


def read_mhd(path):
  """A MetaImage (.mhd header + data file, or .mha) as (array in (z, y, x) order, header:
  {key: value string}); uncompressed data is memory-mapped (a cube reads only its voxels)."""
  path = os.fspath(path)
  header, offset = {}, 0
  with open(path, "rb") as f:
    for raw in f:
      offset += len(raw)
      if not raw.strip():
        continue
      key, sep, value = raw.decode("latin-1").partition("=")
      if not sep:
        raise ValueError(f"{path}: not a MetaImage header (line {raw[:40]!r})")
      header[key.strip()] = value.strip()
      if key.strip() == "ElementDataFile":  # always the last header field
        break
  missing = [k for k in ("NDims", "DimSize", "ElementType", "ElementDataFile") if k not in header]
  if missing:
    raise ValueError(f"{path}: MetaImage header lacks {', '.join(missing)}")
  if header["ElementType"] not in _MET_TYPES or int(header.get("ElementNumberOfChannels", 1)) > 1:
    raise ValueError(f"{path}: unsupported MetaImage ElementType {header['ElementType']} "
                     f"({header.get('ElementNumberOfChannels', 1)} channels)")
  msb = header.get("BinaryDataByteOrderMSB", header.get("ElementByteOrderMSB", "False"))
  dtype = np.dtype(_MET_TYPES[header["ElementType"]]).newbyteorder(
      ">" if msb.lower() == "true" else "<")
  shape = tuple(int(n) for n in header["DimSize"].split())[::-1]
  name = header["ElementDataFile"]
  if name == "LOCAL":
    data_path = path
  elif " " in name or name.upper().startswith("LIST"):
    raise ValueError(f"{path}: MetaImage data split over several files is not supported")
  else:
    data_path, offset = os.path.join(os.path.dirname(path), name), 0
  offset += int(header.get("HeaderSize", 0))
  size = int(np.prod(shape)) * dtype.itemsize
  if header.get("CompressedData", "False").lower() == "true":
    with open(data_path, "rb") as f:
      f.seek(offset)
      data = zlib.decompress(f.read())
    if len(data) != size:
      raise ValueError(f"{data_path}: {len(data)} bytes once decompressed, {size} expected")
    return np.frombuffer(data, dtype).reshape(shape), header
  if os.path.getsize(data_path) - offset != size:
    raise ValueError(f"{data_path}: {os.path.getsize(data_path) - offset} bytes of data, "
                     f"{size} expected for DimSize {header['DimSize']} {header['ElementType']}")
  return np.memmap(data_path, dtype, "r", offset, shape), header


_CUBE = 48                  # the NCC cube side (Medical-SSL luna_node_extraction.py)
_HU_WINDOW = (-1000, 600)   # truncated to this window, then rescaled to 0-255


@functools.lru_cache(maxsize=None)
def _scan_range(mhd):
  """The (min, max) of a scan truncated to the HU window: the preparation rescales the whole
  truncated scan (SimpleITK RescaleIntensity), so every cube of a scan shares its range."""
  volume, _ = read_mhd(mhd)
  lo, hi = np.min(volume), np.max(volume)
  return max(float(lo), _HU_WINDOW[0]), min(float(hi), _HU_WINDOW[1])


def _voxel(header, world):
  """The (z, y, x) voxel index nearest to the world point `world` (x, y, z mm)."""
  origin = np.array(header.get("Offset", header.get("Origin", "0 0 0")).split(), float)
  spacing = np.array(header.get("ElementSpacing", "1 1 1").split(), float)
  # TransformMatrix row i is the direction of image axis i (ITK's MetaImage reading).
  axes = np.array(header.get("TransformMatrix", "1 0 0 0 1 0 0 0 1").split(), float)
  index = np.linalg.solve(axes.reshape(3, 3).T, np.asarray(world, float) - origin) / spacing
  return np.rint(index).astype(int)[::-1]


def _cut_cube(world, inputs, output):
  """The 48^3 cube (z, y, x) centred on a candidate, truncated to the HU window and rescaled
  to 0-255 over the scan, as the NCC preparation does; stored uint8 (theirs: float 0-255)."""
  volume, header = read_mhd(inputs[0])
  lo, hi = _scan_range(inputs[0])
  # The cube is shifted inside the scan at its borders, as the preparation does; a scan
  # thinner than the cube is padded with the window's floor.
  starts = [min(max(c - _CUBE // 2, 0), max(n - _CUBE, 0))
            for c, n in zip(_voxel(header, world), volume.shape)]
  cube = np.asarray(volume[tuple(slice(s, s + _CUBE) for s in starts)], np.float32)
  cube = np.pad(cube, [(0, _CUBE - n) for n in cube.shape], constant_values=lo)
  scaled = (np.clip(cube, lo, hi) - lo) * (255 / (hi - lo) if hi > lo else 0)
  with open(output, "wb") as f:
    np.save(f, np.rint(scaled).astype(np.uint8))


_LUNA_SPLITS = {**dict.fromkeys(range(6), "train"), 6: "val", **dict.fromkeys((7, 8, 9), "test")}
_CANDIDATE_COLUMNS = ["seriesuid", "coordX", "coordY", "coordZ", "class"]


def _luna_official(root):
  scans = {}  # seriesuid -> (subset, .mhd path)
  for mhd in downloads.glob(root, "subset*/*.mhd"):
    subset = re.fullmatch(r"subset(\d)", epath.Path(mhd).parent.name)
    if subset:
      scans[epath.Path(mhd).name[:-len(".mhd")]] = (int(subset[1]), mhd)
  path = downloads.path(root, "candidates.csv")
  rows = _csv_rows(path)
  if not rows or [v.strip() for v in rows[0][1]] != _CANDIDATE_COLUMNS:
    raise ValueError(f"{path}: expected the header {','.join(_CANDIDATE_COLUMNS)}")
  cases, fold = {}, {"train": [], "val": [], "test": []}
  for line, row in rows[1:]:
    try:
      uid, world, label = row[0].strip(), [float(v) for v in row[1:4]], int(row[4])
    except (ValueError, IndexError):
      raise _bad_row(path, line, row, "expected seriesuid,coordX,coordY,coordZ,0/1") from None
    # A scan not found in any subset folder is reported missing (its subset unknown).
    subset, mhd = scans.get(uid, (None, downloads.path(root, "subset?", uid + ".mhd")))
    case_id = f"candidate{line - 1:06d}"  # its row in candidates.csv
    raw = mhd[:-len(".mhd")] + ".raw"
    cases[case_id] = {"image": Convert(f"cubes/{uid}/{case_id}.npy", (mhd, raw),
                                       functools.partial(_cut_cube, world)),
                      "label": label, "group": uid}
    if subset is not None:
      fold[_LUNA_SPLITS[subset]].append(case_id)
  return Listing(cases, [fold])


_NCC_CSVS = {"train": ("train_0.csv", "train_1.csv"), "val": ("valid.csv",),
             "test": ("test.csv",)}


def _cube_locator(folder, first):
  """How the paths of one NCC CSV resolve. They are the preparation's own paths (absolute,
  or relative to the folder it ran in), to <cubes>/{0,1,1_aug*}/<name>.npy, the CSVs lying
  in <cubes>/<split folder>/: as written if that exists, else the class folder and name
  below the CSV folder's parent (the data moved), or below the CSV folder itself."""
  def tail(p):
    return re.split(r"[\\/]", p)[-2:]
  rules = (lambda p: p if os.path.isabs(p) else None,
           lambda p: downloads.path(folder.parent, *tail(p)),
           lambda p: downloads.path(folder, *tail(p)))
  for rule in rules:
    found = rule(first)
    if found and epath.Path(found).exists():
      return rule
  return rules[1]


def _luna_ncc_cubes(root):
  cases, fold = {}, {}
  for split, names in _NCC_CSVS.items():
    fold[split] = []
    for name in names:
      path = downloads.path(root, name)
      rows = _csv_rows(path)
      locate = _cube_locator(epath.Path(root), rows[0][1][-1]) if rows else None
      for line, row in rows:
        if len(row) != 2 or row[0].strip() not in ("0", "1") or not row[1].endswith(".npy"):
          raise _bad_row(path, line, row, "expected label,path (0/1, the .npy cube; no header)")
        case_id = re.split(r"[\\/]", row[1])[-1][:-len(".npy")]
        if case_id in cases:
          raise _bad_row(path, line, row, f"cube {case_id} is listed twice")
        scan = re.match(r"(\d+_\d+)_\d+", case_id)  # <subset>_<scan>_<candidate>[_aug_<k>]
        cases[case_id] = {"image": locate(row[1]), "label": int(row[0]),
                          **({"group": scan[1]} if scan else {})}
        fold[split].append(case_id)
  return Listing(cases, [fold])


LUNA16 = Recipe(
    task="luna16", page="https://luna16.grand-challenge.org/Data/",
    download="subset0.zip ... subset9.zip and candidates.csv (Zenodo records 3723295 and "
             "4121926), unpacked into one folder; or the NCC cubes of the Medical-SSL "
             "preparation with its train_0.csv, train_1.csv, valid.csv and test.csv",
    layouts=(Layout("LUNA16", ("subset[0-9]", "candidates.csv"), _luna_official),
             Layout("Medical-SSL NCC cubes", tuple(f for names in _NCC_CSVS.values()
                                                   for f in names), _luna_ncc_cubes)),
    notes="every candidate of candidates.csv (551,065: 1,351 nodules, all the false positives "
          "kept, as the Medical-SSL NCC preparation does; not candidates_V2.csv) becomes a "
          "48^3 uint8 cube (z, y, x) around its centre, HU truncated to [-1000, 600] and "
          "rescaled to 0-255 over its scan; subsets 0-5 train, 6 val, 7-9 test; the "
          "preparation's 10 augmented copies of each training nodule are not made; the NCC "
          "cubes with their CSVs (train_0/train_1/valid/test.csv) are read in place")


RECIPES = [CC_CCII, LUNA16, _mrnet("abnormal", "abnormality"), _mrnet("acl", "ACL tear"),
           _mrnet("meniscus", "meniscal tear")]
