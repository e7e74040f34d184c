"""Tiny copies of the 3D classification downloads (CC-CCII, LUNA16, MRNet), in the publishers'
own folder, file and column names, written from their public documentation (cited above each
writer). Images are small; label values are what the real files hold."""

import csv
import os

import numpy as np
from PIL import Image

_RNG_SEED = 17


def _write_csv(path, rows, header=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    if header:
      writer.writerow(header)
    writer.writerows(rows)


# MRNet: https://stanfordmlgroup.github.io/competitions/mrnet/ and Bien et al. 2018 (PLOS Med
# 15(11) e1002699): 1,370 knee MRI exams; 1,130 train and 120 validation exams; each exam is
# three series (sagittal, coronal, axial), each stored as a (slices, 256, 256) uint8 NumPy
# array. MRNet-v1.0.zip unpacks to MRNet-v1.0/{train,valid}/{axial,coronal,sagittal}/NNNN.npy
# and {train,valid}-{abnormal,acl,meniscus}.csv: "exam,label" rows without a header
# (e.g. 0000,0); validation exams are numbered 1130-1249.
MRNET_LABELS = {  # exam: (abnormal, acl, meniscus); an ACL or meniscal tear is abnormal
    "train": {"0000": (1, 0, 0), "0001": (1, 1, 1), "0002": (0, 0, 0)},
    "valid": {"1130": (0, 0, 0), "1131": (1, 1, 0)},
}
_MRNET_TASKS = ("abnormal", "acl", "meniscus")


def write_mrnet(root):
  rng = np.random.default_rng(_RNG_SEED)
  base = os.path.join(root, "MRNet-v1.0")
  for folder, exams in MRNET_LABELS.items():
    for index, label in enumerate(_MRNET_TASKS):
      _write_csv(os.path.join(base, f"{folder}-{label}.csv"),
                 [(exam, labels[index]) for exam, labels in exams.items()])
    for exam in exams:
      for plane, slices in (("axial", 5), ("coronal", 4), ("sagittal", 6)):
        os.makedirs(os.path.join(base, folder, plane), exist_ok=True)
        np.save(os.path.join(base, folder, plane, exam + ".npy"),
                rng.integers(0, 256, (slices, 16, 16), dtype=np.uint8))
  return base


# CC-CCII: http://ncov-ai.big.ac.cn/download (China National Center for Bioinformation) and
# Zhang et al. 2020 (Cell 181(6) 1423): CT slices of NCP (COVID-19), CP (common pneumonia) and
# Normal scans, in zips NCP-*.zip, CP-*.zip, Normal-*.zip. The COVIDNet-CT dataset notes
# (https://github.com/haydengunraj/COVIDNet-CT/blob/master/docs/dataset.md) give the unpacked
# structure: <CNCB root>/{CP,NCP,Normal}/ + unzip_filenames.csv + lesions_slices.csv, a scan
# being <class>/<patient_id>/<scan_id>/ holding its slice images (PNG or JPEG, mostly
# 512 x 512); unzip_filenames.csv columns zip_file,label,patient_id,scan_id,n_slice;
# lesions_slices.csv one slice path a row. The scans are among those the authors' fold lists
# name (fold 0: the first three train, the last three valid), plus one scan no list names.
CC_CCII_SCANS = {  # folder: (zip, slice file names, slice size, mode)
    "Normal/742/177": ("Normal-1.zip", ["0000.png", "0001.png", "0002.png"], 512, "L"),
    "CP/2/3503": ("CP-1.zip", ["1.jpg", "2.jpg", "10.jpg"], 16, "L"),
    "NCP/16/1164": ("NCP-1.zip", ["0001.png", "0002.png"], 24, "RGB"),
    "Normal/743/178": ("Normal-1.zip", ["0000.png", "0001.png"], 16, "L"),
    "CP/0/3131": ("CP-1.zip", ["0000.png", "0001.png", "0002.png", "0003.png"], 20, "L"),
    "NCP/18/1168": ("NCP-1.zip", ["0000.png", "0001.png"], 16, "L"),
    "Normal/1/1": ("Normal-1.zip", ["0000.png"], 16, "L"),
}
CC_CCII_UNLISTED = "Normal/1/1"


def cc_ccii_slice(folder, index, size, mode):
  """The pixels of slice `index` of a fixture scan (grey, or RGB with equal channels)."""
  y, x = np.mgrid[:size, :size]
  grey = ((x * 7 + y * 3 + index * 40 + len(folder) * 11) % 256).astype(np.uint8)
  return np.repeat(grey[..., None], 3, -1) if mode == "RGB" else grey


def write_cc_ccii(root, scans=CC_CCII_SCANS):
  base = os.path.join(root, "CC-CCII")
  rows, lesions = [], []
  for folder, (zip_name, names, size, mode) in scans.items():
    label, patient, scan = folder.split("/")
    os.makedirs(os.path.join(base, folder), exist_ok=True)
    for index, name in enumerate(names):
      Image.fromarray(cc_ccii_slice(folder, index, size, mode)).save(
          os.path.join(base, folder, name), quality=95)
    rows.append((zip_name, label, patient, scan, len(names)))
    if label != "Normal":
      lesions.append((f"{folder}/{names[-1]}",))
  _write_csv(os.path.join(base, "unzip_filenames.csv"), rows,
             ("zip_file", "label", "patient_id", "scan_id", "n_slice"))
  _write_csv(os.path.join(base, "lesions_slices.csv"), lesions, ("imgpath",))
  return base


# LUNA16: https://luna16.grand-challenge.org/Data/ (and Zenodo records 3723295, 4121926):
# subset0.zip ... subset9.zip hold the 888 CT scans, each a MetaImage <seriesuid>.mhd header +
# <seriesuid>.raw data (int16 HU, DimSize x y z, ElementSpacing and Offset in mm, identity
# TransformMatrix); candidates.csv (seriesuid,coordX,coordY,coordZ,class: world mm, class 1
# = nodule) and annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm) lie beside the
# subset folders. A candidate's voxel is (world - Offset) / ElementSpacing.
LUNA_UID = "1.3.6.1.4.1.14519.5.2.1.6279.6001.{:030d}"
LUNA_SCANS = {  # seriesuid number: (subset, DimSize x y z, ElementSpacing, Offset)
    101: (0, (56, 52, 50), (0.70, 0.70, 2.50), (-195.0, -180.5, -335.0)),
    102: (0, (50, 54, 49), (0.78, 0.78, 1.25), (-170.2, -190.0, -310.75)),
    303: (3, (52, 50, 52), (0.65, 0.65, 2.00), (-160.0, -150.0, -280.0)),
    606: (6, (50, 50, 50), (0.74, 0.74, 2.50), (-185.0, -185.0, -300.0)),
    808: (8, (54, 50, 50), (0.60, 0.60, 1.00), (-150.0, -160.0, -220.0)),
}
LUNA_CANDIDATES = [  # (seriesuid number, voxel x y z, class); one per scan near a border
    (101, (28, 26, 25), 1), (101, (3, 40, 47), 0), (101, (40, 10, 20), 0),
    (102, (25, 27, 24), 0), (102, (48, 2, 1), 1),
    (303, (20, 30, 26), 1), (303, (30, 20, 10), 0),
    (606, (25, 25, 25), 1), (606, (45, 5, 40), 0),
    (808, (27, 25, 25), 0), (808, (10, 40, 49), 1),
]


def luna_volume(number):
  """The HU volume (z, y, x) of a fixture scan: air at -1000, padding at -2000, tissue."""
  _, size, _, _ = LUNA_SCANS[number]
  rng = np.random.default_rng(number)
  volume = rng.integers(-1100, 1400, size[::-1]).astype(np.int16)
  volume[:, :, :2] = -2000  # outside the reconstruction circle
  return volume


def luna_world(number, voxel):
  _, _, spacing, offset = LUNA_SCANS[number]
  return tuple(o + v * s for o, v, s in zip(offset, voxel, spacing))


def write_luna16(root):
  base = os.path.join(root, "LUNA16")
  for number, (subset, size, spacing, offset) in LUNA_SCANS.items():
    uid = LUNA_UID.format(number)
    folder = os.path.join(base, f"subset{subset}")
    os.makedirs(folder, exist_ok=True)
    header = ["ObjectType = Image", "NDims = 3", "BinaryData = True",
              "BinaryDataByteOrderMSB = False", "CompressedData = False",
              "TransformMatrix = 1 0 0 0 1 0 0 0 1",
              "Offset = " + " ".join(str(v) for v in offset), "CenterOfRotation = 0 0 0",
              "AnatomicalOrientation = RAI",
              "ElementSpacing = " + " ".join(str(v) for v in spacing),
              "DimSize = " + " ".join(str(v) for v in size), "ElementType = MET_SHORT",
              f"ElementDataFile = {uid}.raw"]
    with open(os.path.join(folder, uid + ".mhd"), "w") as f:
      f.write("\n".join(header) + "\n")
    luna_volume(number).astype("<i2").tofile(os.path.join(folder, uid + ".raw"))
  for subset in range(10):  # every subset folder is unpacked; most hold no fixture scan
    os.makedirs(os.path.join(base, f"subset{subset}"), exist_ok=True)
  _write_csv(os.path.join(base, "candidates.csv"),
             [(LUNA_UID.format(n), *luna_world(n, v), c) for n, v, c in LUNA_CANDIDATES],
             ("seriesuid", "coordX", "coordY", "coordZ", "class"))
  _write_csv(os.path.join(base, "annotations.csv"),
             [(LUNA_UID.format(n), *luna_world(n, v), 6.5) for n, v, c in LUNA_CANDIDATES if c],
             ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"))
  return base


# The NCC cubes of the Medical-SSL preparation (https://github.com/EndoluminalSurgicalVision-IMR/
# Medical-SSL, pre_processing/luna_node_extraction.py): LUNA_Classification/0/ and 1/ hold one
# cube a candidate, <subset>_<scan>_<candidate>.npy (z, y, x, float 0-255), 1_aug_monai/
# <name>_aug_<k>.npy augmented nodules; LUNA_Classification/MG_split/{train_0,train_1,valid,
# test}.csv are csv.writer rows label,path without a header, the path as the preparation
# named it: absolute on the machine that ran it, or relative to the folder it ran in.
LUNA_CUBES = {  # split CSV: [(label, class folder, name)]
    "train_0.csv": [(0, "0", "0_3_0"), (0, "0", "0_3_2"), (0, "0", "5_11_4")],
    "train_1.csv": [(1, "1", "0_3_1"), (1, "1_aug_monai", "0_3_1_aug_0"),
                    (1, "1_aug_monai", "0_3_1_aug_1")],
    "valid.csv": [(1, "1", "6_0_0"), (0, "0", "6_0_1"), (0, "0", "6_2_0")],
    "test.csv": [(0, "0", "7_1_0"), (1, "1", "9_4_2"), (0, "0", "8_0_5")],
}
LUNA_CUBES_PATHS = {"stale": "/scratch/someone/LUNA/LUNA_Classification",
                    "relative": "../../Data/LUNA_Classification"}


def write_luna16_ncc_cubes(root, paths="stale"):
  """paths: "stale" (absolute paths of the machine that made them), "relative", or
  "absolute" (the real paths of this copy)."""
  base = os.path.join(root, "LUNA_Classification")
  named = LUNA_CUBES_PATHS.get(paths, base)
  for csv_name, cubes in LUNA_CUBES.items():
    rows = []
    for index, (label, folder, name) in enumerate(cubes):
      os.makedirs(os.path.join(base, folder), exist_ok=True)
      cube = np.random.default_rng(index + 10 * len(csv_name)).uniform(0, 255, (16, 16, 16))
      np.save(os.path.join(base, folder, name + ".npy"), cube.astype(np.float32))
      rows.append((label, f"{named}/{folder}/{name}.npy"))
    _write_csv(os.path.join(base, "MG_split", csv_name), rows)
  return base


WRITERS = {"cc_ccii": write_cc_ccii, "luna16": write_luna16, "mrnet_abnormal": write_mrnet,
           "mrnet_acl": write_mrnet, "mrnet_meniscus": write_mrnet}

# What prepare reports for each fixture: CC-CCII with the shipped list restricted to the
# fixture's listed scans (the full list names 4178 scans), LUNA16 split by subset folder.
COUNTS = {"cc_ccii": {"train": 3, "val": 3, "test": 0},
          "luna16": {"train": 7, "val": 2, "test": 2},
          "mrnet_abnormal": {"train": 3, "val": 2, "test": 0},
          "mrnet_acl": {"train": 3, "val": 2, "test": 0},
          "mrnet_meniscus": {"train": 3, "val": 2, "test": 0}}
