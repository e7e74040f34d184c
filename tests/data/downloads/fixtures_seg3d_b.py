"""Tiny copies of the seg3d_b downloads (BHSD, BTCV, MSD Task07 / Task09, COVID-19-20, PARSE
2022, SegTHOR, VerSe 2020, TotalSegmentator v1), in the publishers' folder and file names.

Every task of the group follows an authors' split list, so a preparable copy holds every listed
case: the first cases of each split ("detailed": 12 x 10 x 8 voxels, an oblique affine, the
label values the real data has) and the others as 2 x 2 x 2 volumes. `complete=False` writes the
detailed cases only: a partial download. `WRITERS[task](folder)` writes into `folder` what the
official archive unpacks to (its own top folder where it has one); `COUNTS[task]` is what
prepare reports for it; `detailed(task)` the case ids written in full.
"""

import json
import os

import nibabel as nib
import numpy as np

_LISTS = os.path.join(os.path.dirname(__file__), *[".."] * 3, "rasd_jax", "data", "splitlists")
_SHAPE = (12, 10, 8)
# An oblique CT grid (0.8 x 0.75 x 2.5 mm, x flipped, a small tilt), as scanners write them.
AFFINE = np.array([[-0.8, 0.0, 0.05, 120.0],
                   [0.0, 0.75, 0.1, -95.0],
                   [0.0, -0.02, 2.5, -310.0],
                   [0.0, 0.0, 0.0, 1.0]])
_TINY_AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def split_list(task):
  """The authors' list shipped for `task` (the case names of the download)."""
  with open(os.path.join(_LISTS, f"{task}.json")) as f:
    return json.load(f)


def nifti(file, data, affine=AFFINE):
  os.makedirs(os.path.dirname(file), exist_ok=True)
  nib.save(nib.Nifti1Image(data, affine), file)


def ct(seed, shape=_SHAPE):
  """A CT volume in Hounsfield units (int16, as the scanners store them)."""
  return np.random.default_rng(seed).integers(-1000, 1200, shape).astype(np.int16)


def label_map(values, seed, shape=_SHAPE, dtype=np.uint8):
  """A label volume holding each of `values` (slabs along the first axis, then noise)."""
  label = np.zeros(shape, dtype)
  for k, value in enumerate(values):
    label[k % shape[0], :, k // shape[0] % shape[2]] = value
  label[np.random.default_rng(seed).random(shape) < 0.1] = values[0]
  return label


def _case(image_file, label_file, values, seed, detailed):
  """One image and its label map on the same grid: detailed, or 2 x 2 x 2 with one voxel of
  the first value."""
  if detailed:
    nifti(image_file, ct(seed))
    nifti(label_file, label_map(values, seed + 1))
  else:
    label = np.zeros((2, 2, 2), np.uint8)
    label[0, 0, 0] = values[0]
    nifti(image_file, ct(seed, (2, 2, 2)), _TINY_AFFINE)
    nifti(label_file, label, _TINY_AFFINE)


_FEW = {"covid19_20": 1, "totalsegmentator": 1}  # detailed cases a split (2 where not named)


def _listed(task, complete):
  """(case id, detailed) for the cases a fixture writes: the first few of each split in full,
  the rest tiny (only where `complete`)."""
  few = _FEW.get(task, 2)
  lists = split_list(task)
  splits = lists["folds"] if "folds" in lists else [lists["train"], lists["val"]]
  detailed = {i for ids in splits for i in ids[:few]}
  ids = dict.fromkeys(i for ids in splits for i in ids)
  return [(i, i in detailed) for i in ids if complete or i in detailed]


def detailed(task):
  """The case ids a fixture writes in full (all that `complete=False` writes)."""
  return [i for i, _ in _listed(task, False)]


# BHSD: https://huggingface.co/datasets/WuBiao/BHSD (dataset card: "label_192.zip: Contains 192
# volumes with pixel-level annotations"), unpacked as torch_em's loader of that archive reads it
# (label_192/images/*.nii.gz, label_192/ground truths/*.nii.gz); classes 1-5 EDH, IPH, IVH, SAH,
# SDH (https://github.com/White65534/BHSD dataset.json). suffixless=True: the card's note "Files
# need to be suffixed nii.gz", i.e. files named without the suffix.
def write_bhsd(folder, complete=True, suffixless=False):
  root = os.path.join(folder, "label_192")
  for n, (case, full) in enumerate(_listed("bhsd", complete)):
    name = case if suffixless else f"{case}.nii.gz"
    image, label = (os.path.join(root, sub, name) for sub in ("images", "ground truths"))
    _case(image + ".tmp.nii.gz" if suffixless else image,
          label + ".tmp.nii.gz" if suffixless else label, (1, 2, 3, 4, 5), n, full)
    if suffixless:
      os.replace(image + ".tmp.nii.gz", image)
      os.replace(label + ".tmp.nii.gz", label)


# BTCV: https://www.synapse.org/#!Synapse:syn3193805/wiki/217789 (Abdomen, RawData.zip); the
# archive listing as MONAI's BTCV tutorial moves it (research-contributions SwinUNETR/BTCV
# README: "mv RawData/Training/img/ RawData/imagesTr; mv RawData/Training/label/ ...labelsTr;
# mv RawData/Testing/img/ ...imagesTs"): RawData/Training/img/img0001.nii.gz, RawData/Training/
# label/label0001.nii.gz, RawData/Testing/img/img0061.nii.gz; labels 1-13 (spleen ... left
# adrenal gland). monai=True writes MONAI's rearranged folder (imagesTr, labelsTr, imagesTs).
def write_btcv(folder, complete=True, monai=False):
  root = os.path.join(folder, "BTCV" if monai else "RawData")
  img, lab, test = (("imagesTr", "labelsTr", "imagesTs") if monai else
                    ("Training/img", "Training/label", "Testing/img"))
  for n, (case, full) in enumerate(_listed("btcv", complete)):
    number = case[len("img"):]
    _case(os.path.join(root, img, f"img{number}.nii.gz"),
          os.path.join(root, lab, f"label{number}.nii.gz"), tuple(range(1, 14)), n, full)
  nifti(os.path.join(root, test, "img0061.nii.gz"), ct(99))


# MSD: http://medicaldecathlon.com/ (dataset description, Simpson et al. 2019): TaskNN_Name/
# dataset.json, imagesTr/<name>_<n>.nii.gz, labelsTr/<name>_<n>.nii.gz, imagesTs/...; the tar
# holds macOS "._" AppleDouble files beside the data. Pancreas labels 1 pancreas, 2 cancer;
# spleen 1.
def _write_msd(folder, task, top, values, complete):
  root = os.path.join(folder, top)
  cases = _listed(task, complete)
  for n, (case, full) in enumerate(cases):
    image = os.path.join(root, "imagesTr", f"{case}.nii.gz")
    label = os.path.join(root, "labelsTr", f"{case}.nii.gz")
    _case(image, label, values, n, full)
    for file in (image, label):
      with open(os.path.join(os.path.dirname(file), "._" + os.path.basename(file)), "wb") as f:
        f.write(b"\x00\x05\x16\x07 AppleDouble")
  nifti(os.path.join(root, "imagesTs", cases[0][0].split("_")[0] + "_9999.nii.gz"), ct(98))
  with open(os.path.join(root, "dataset.json"), "w") as f:
    json.dump({"name": top.split("_")[1], "numTraining": len(cases),
               "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                            for c, _ in cases]}, f)


def write_msd07(folder, complete=True):
  _write_msd(folder, "msd07", "Task07_Pancreas", (1, 2), complete)


def write_msd09(folder, complete=True):
  _write_msd(folder, "msd09", "Task09_Spleen", (1,), complete)


# COVID-19-20: https://covid-segmentation.grand-challenge.org/Data/ (COVID-19-20_v2: Train/
# volume-covid19-A-NNNN_ct.nii.gz + _seg.nii.gz, Validation/ CT only); lesion = 1.
def write_covid19_20(folder, complete=True):
  root = os.path.join(folder, "COVID-19-20_v2")
  for n, (case, full) in enumerate(_listed("covid19_20", complete)):
    _case(os.path.join(root, "Train", f"{case}_ct.nii.gz"),
          os.path.join(root, "Train", f"{case}_seg.nii.gz"), (1,), n, full)
  nifti(os.path.join(root, "Validation", "volume-covid19-A-0004_ct.nii.gz"), ct(97))


# PARSE 2022: https://parse2022.grand-challenge.org/Dataset/ (train/PAxxxxxx/image/PAxxxxxx
# .nii.gz, train/PAxxxxxx/label/PAxxxxxx.nii.gz); pulmonary artery = 1.
def write_parse22(folder, complete=True):
  for n, (case, full) in enumerate(_listed("parse22", complete)):
    _case(os.path.join(folder, "train", case, "image", f"{case}.nii.gz"),
          os.path.join(folder, "train", case, "label", f"{case}.nii.gz"), (1,), n, full)


# SegTHOR: https://competitions.codalab.org/competitions/21145 (Trullo et al. 2019; train/
# Patient_NN/Patient_NN.nii.gz + GT.nii.gz, test/Patient_NN.nii.gz); 1 esophagus, 2 heart,
# 3 trachea, 4 aorta.
def write_segthor(folder, complete=True):
  for n, (case, full) in enumerate(_listed("segthor", complete)):
    _case(os.path.join(folder, "train", case, f"{case}.nii.gz"),
          os.path.join(folder, "train", case, "GT.nii.gz"), (1, 2, 3, 4), n, full)
  nifti(os.path.join(folder, "test", "Patient_41.nii.gz"), ct(96))


# VerSe 2020: https://github.com/anjany/verse README "Data" (labels 1-7 C1-C7, 8-19 T1-T12,
# 20-25 L1-L6, 28 T13). MICCAI challenge release (osf.io/t98fz): 01_training/, 02_validation/,
# 03_test/, a folder per subject, scans named like verse401_verse201_CT-iso.nii.gz with
# _seg.nii.gz masks, _iso-ctd.json centroids and .png previews. bids=True: the restructured
# release (dataset-verse20training.zip ...), dataset-01training/rawdata/sub-<subject>/
# sub-<subject>[_split-<scan>][_dir-<direction>]_ct.nii.gz and derivatives/sub-<subject>/
# ..._seg-vert_msk.nii.gz, ..._seg-subreg_ctd.json (the README's example; its sample
# sub-verse004_seg-vert_msk.nii.gz; the Glocker scans as sub-gl003_dir-ax).
def bids_name(stem):
  """The BIDS file prefix of a MICCAI scan stem."""
  parts = stem.lower().replace("_ct-", "_dir-").split("_")
  ids = [p for p in parts if not p.startswith("dir-")]
  direction = [p for p in parts if p.startswith("dir-")] or (["dir-ax"] if stem.startswith("GL")
                                                              else [])
  return "_".join([f"sub-{ids[0]}"] + [f"split-{i}" for i in ids[1:]] + direction)


def write_verse20(folder, complete=True, bids=False):
  lists = split_list("verse20")
  val = set(lists["val"])
  for n, (case, full) in enumerate(_listed("verse20", complete)):
    values = (20, 21, 22, 23, 24, 19, 28)
    if bids:
      name, subject = bids_name(case), "sub-" + case.split("_")[0].lower()
      dataset = os.path.join(folder, *(("dataset-verse20validation", "dataset-02validation")
                                       if case in val else
                                       ("dataset-verse20training", "dataset-01training")))
      _case(os.path.join(dataset, "rawdata", subject, f"{name}_ct.nii.gz"),
            os.path.join(dataset, "derivatives", subject, f"{name}_seg-vert_msk.nii.gz"),
            values, n, full)
      extras = [os.path.join(dataset, "derivatives", subject, f"{name}_seg-subreg_ctd.json")]
    else:
      scans = os.path.join(folder, "02_validation" if case in val else "01_training",
                           case.split("_")[0])
      _case(os.path.join(scans, f"{case}.nii.gz"), os.path.join(scans, f"{case}_seg.nii.gz"),
            values, n, full)
      extras = [os.path.join(scans, f"{case}_iso-ctd.json"), os.path.join(scans, f"{case}.png")]
    for file in extras:
      with open(file, "w") as f:
        f.write('[{"direction": ["P", "I", "R"]}, {"label": 20, "X": 1, "Y": 2, "Z": 3}]')


# TotalSegmentator v1: https://zenodo.org/record/6802614 (Totalsegmentator_dataset.zip, README:
# sNNNN/ct.nii.gz, sNNNN/segmentations/<structure>.nii.gz, one binary mask per structure, 104
# structures, meta.csv "image_id;age;gender;institute;study_type;split"). STRUCTURES: the v1
# file names, TotalSegmentator v1's class map "total" (totalsegmentator/map_to_binary.py).
STRUCTURES = (
    ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
     "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
     "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
     "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")
    + tuple(f"vertebrae_{v}" for v in ("L5", "L4", "L3", "L2", "L1"))
    + tuple(f"vertebrae_T{i}" for i in range(12, 0, -1))
    + tuple(f"vertebrae_C{i}" for i in range(7, 0, -1))
    + ("esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
       "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain",
       "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
       "small_bowel", "duodenum", "colon")
    + tuple(f"rib_left_{i}" for i in range(1, 13)) + tuple(f"rib_right_{i}" for i in range(1, 13))
    + ("humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
       "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "sacrum", "face",
       "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
       "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right",
       "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right",
       "urinary_bladder"))


def _totalseg_case(root, case, seed, full):
  shape, affine = (_SHAPE, AFFINE) if full else ((2, 2, 2), _TINY_AFFINE)
  nifti(os.path.join(root, case, "ct.nii.gz"), ct(seed, shape), affine)
  rng = np.random.default_rng(seed)
  owner = rng.integers(-40, len(STRUCTURES), shape)  # which structure a voxel is, < 0: none
  owner.flat[0] = seed % len(STRUCTURES)  # never an empty case
  for k, name in enumerate(STRUCTURES):
    nifti(os.path.join(root, case, "segmentations", f"{name}.nii.gz"),
          (owner == k).astype(np.uint8), affine)


def write_totalsegmentator(folder, complete=True):
  root = os.path.join(folder, "Totalsegmentator_dataset")
  cases = [("s0001", False)] + _listed("totalsegmentator", complete)
  for n, (case, full) in enumerate(cases):
    _totalseg_case(root, case, n, full)
  with open(os.path.join(root, "meta.csv"), "w") as f:
    f.write("image_id;age;gender;institute;study_type;split\n")
    f.writelines(f"{case};63;m;A;ct abdomen-pelvis;train\n" for case, _ in cases)


WRITERS = {"bhsd": write_bhsd, "btcv": write_btcv, "msd07": write_msd07, "msd09": write_msd09,
           "covid19_20": write_covid19_20, "parse22": write_parse22, "segthor": write_segthor,
           "verse20": write_verse20, "totalsegmentator": write_totalsegmentator}
# The authors' lists' sizes (fold 0 for COVID-19-20), as the registry's split texts say.
COUNTS = {"bhsd": {"train": 153, "val": 39, "test": 0},
          "btcv": {"train": 24, "val": 6, "test": 0},
          "msd07": {"train": 257, "val": 24, "test": 0},
          "msd09": {"train": 32, "val": 9, "test": 0},
          "covid19_20": {"train": 159, "val": 40, "test": 0},
          "parse22": {"train": 80, "val": 20, "test": 0},
          "segthor": {"train": 32, "val": 8, "test": 0},
          "verse20": {"train": 99, "val": 8, "test": 0},
          "totalsegmentator": {"train": 11, "val": 21, "test": 0}}
