"""Tiny copies of the fundus group's official downloads, in their publishers' folder and file
names, written from each dataset's public documentation (cited above each writer).

`WRITERS[task](root)` writes one into `root` and returns {path relative to root: the mask it
holds as 0/1 numpy array} for the masks the task scores, so that tests can check what prepare
made of them; `COUNTS[task]` is what prepare must report for it. Where the task follows the
authors' split list (shipped in rasd_jax/data/splitlists), every listed case is written, each
a few pixels, so that the list is complete; the other tasks get a few cases a split.
"""

import csv
import gzip
import io
import os

import numpy as np
from PIL import Image

from rasd_jax.data import downloads

SHAPE = (18, 20)  # rows, columns: small, and not square so that a transposition shows


def _rng(name):
  return np.random.default_rng(sum(name.encode()) * 7919 + len(name))


def _rgb(name, shape=SHAPE):
  return _rng(name).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _grey(name, shape=SHAPE):
  return _rng(name).integers(0, 256, shape, dtype=np.uint8)


def _mask(name, shape=SHAPE):
  """A 0/1 mask with both values, a function of `name`."""
  mask = (_rng("mask " + name).random(shape) < 0.3).astype(np.uint8)
  mask[0, 0], mask[-1, -1] = 1, 0
  return mask


def _save(root, relative, array, **params):
  """`array` saved by Pillow at root/relative in the format its suffix names (.gz: that
  format, gzip-compressed, as STARE's files)."""
  target = os.path.join(root, relative)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  name = relative.removesuffix(".gz")
  buffer = io.BytesIO()
  fmt = {".tif": "TIFF", ".gif": "GIF", ".ppm": "PPM", ".png": "PNG", ".jpg": "JPEG"}
  Image.fromarray(array).save(buffer, format=fmt[os.path.splitext(name)[1]], **params)
  data = buffer.getvalue()
  with open(target, "wb") as f:
    f.write(gzip.compress(data) if relative.endswith(".gz") else data)


def _write_csv(root, relative, header, rows):
  target = os.path.join(root, relative)
  os.makedirs(os.path.dirname(target), exist_ok=True)
  with open(target, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def _listed(task):
  lists = downloads.shipped(f"{task}.json")
  return lists["train"] + lists["val"]


# DRIVE (https://drive.grand-challenge.org/DRIVE/; the archive as described at
# https://git.ete.moe/mehrnia/Awesome-Medical-Dataset/blob/main/resources/DRIVE.md): DRIVE/
# holds training/ and test/; training/images/NN_training.tif (RGB, 8 bits a channel, NN 21-40),
# training/1st_manual/NN_manual1.gif (the vessel segmentation, 0/255) and
# training/mask/NN_training_mask.gif (the field of view); test/images/NN_test.tif and
# test/mask/NN_test_mask.gif for NN 01-20.
def write_drive(root):
  masks = {}
  for n in range(21, 41):
    _save(root, f"DRIVE/training/images/{n}_training.tif", _rgb(f"drive {n}"))
    mask = _mask(f"drive {n}")
    _save(root, f"DRIVE/training/1st_manual/{n}_manual1.gif", mask * 255)
    _save(root, f"DRIVE/training/mask/{n}_training_mask.gif", np.full(SHAPE, 255, np.uint8))
    masks[f"DRIVE/training/1st_manual/{n}_manual1.gif"] = mask
  for n in range(1, 4):
    _save(root, f"DRIVE/test/images/{n:02d}_test.tif", _rgb(f"drive test {n}"))
    _save(root, f"DRIVE/test/mask/{n:02d}_test_mask.gif", np.full(SHAPE, 255, np.uint8))
  return masks


# STARE (https://cecas.clemson.edu/~ahoover/stare/probing/index.html): stare-images.tar holds
# the 20 hand-labelled images im0001.ppm.gz ... im0324.ppm.gz (gzip-compressed PPM, 700 x 605
# RGB) and labels-ah.tar Adam Hoover's labels im0001.ah.ppm.gz ... (vessels white on black);
# labels-vk.tar the second observer's, imNNNN.vk.ppm.gz. Here each archive unpacked into a
# folder named after it (`folders`), or the images at the top with labels-ah/ beside them.
def write_stare(root, folders=False):
  images = "stare-images/" if folders else ""
  masks = {}
  for n in _listed("stare"):
    _save(root, f"STARE/{images}{n}.ppm.gz", _rgb(f"stare {n}"))
    mask = _mask(f"stare {n}")
    _save(root, f"STARE/labels-ah/{n}.ah.ppm.gz", np.repeat(mask[..., None] * 255, 3, axis=-1))
    _save(root, f"STARE/labels-vk/{n}.vk.ppm.gz", np.repeat(mask[..., None] * 255, 3, axis=-1))
    masks[f"STARE/labels-ah/{n}.ah.ppm.gz"] = mask
  return masks


# HVDROPDB (https://data.mendeley.com/datasets/xw5xc7xrmp/3, Data in Brief,
# https://doi.org/10.1016/j.dib.2023.109839; the archive's listing as read by torch_em's
# hvdropdb loader): HVDROPDB_RetCam_Neo_Segmentation.zip holds HVDROPDB-BV/, HVDROPDB-OD/ and
# HVDROPDB-RIDGE/, each with <Camera>_<structure>_images/<n>.png and
# <Camera>_<structure>_masks/<n>.png, the structure Vessels, OpticDisc or Ridge and the camera
# Neo or RetCam (spelt Retcam in HVDROPDB-OD); 50 images a camera; the masks are RGB PNGs with
# the same value in every channel.
def _write_hvdropdb(root, folder, structure, retcam):
  masks = {}
  base = f"HVDROPDB_RetCam_Neo_Segmentation/{folder}"
  for camera in ("Neo", retcam):
    for n in range(1, 51):
      key = f"{folder} {camera} {n}"
      _save(root, f"{base}/{camera}_{structure}_images/{n}.png", _rgb(key))
      mask = _mask(key)
      relative = f"{base}/{camera}_{structure}_masks/{n}.png"
      _save(root, relative, np.repeat(mask[..., None] * 255, 3, axis=-1))
      masks[relative] = mask
  return masks


def write_hvdropdb_bv(root):
  return _write_hvdropdb(root, "HVDROPDB-BV", "Vessels", "RetCam")


def write_hvdropdb_od(root):
  return _write_hvdropdb(root, "HVDROPDB-OD", "OpticDisc", "Retcam")


def write_hvdropdb_ridge(root):
  return _write_hvdropdb(root, "HVDROPDB-RIDGE", "Ridge", "RetCam")


# DRAC 2022 task C (https://drac22.grand-challenge.org/; the folder names as the challenge's
# archive unpacks and its participants' code reads them): "C. Diabetic Retinopathy Grading/"
# holds "1. Original Images/a. Training Set/NNN.png" (611 grey OCTA images) and
# "b. Testing Set/", and "2. Groundtruths/a. DRAC2022_ Diabetic Retinopathy Grading_Training
# Labels.csv" with the columns "image name" (NNN.png) and "DR grade" (0, 1, 2). The training
# images are the ones the shipped list names, each with its grade there.
def write_drac(root):
  base = "C. Diabetic Retinopathy Grading"
  lists = downloads.shipped("drac.json")
  rows = sorted((f"{n}.png", int(grade)) for split in ("train", "val")
                for grade, ids in lists[split].items() for n in ids)
  for name, _ in rows:
    _save(root, f"{base}/1. Original Images/a. Training Set/{name}", _grey(name, (4, 4)))
  for n in range(1, 3):
    _save(root, f"{base}/1. Original Images/b. Testing Set/{n:03d}.png", _grey(f"t{n}", (4, 4)))
  _write_csv(root, f"{base}/2. Groundtruths/a. DRAC2022_ Diabetic Retinopathy Grading_Training "
             "Labels.csv", ("image name", "DR grade"), rows)
  return {}


# IDRiD (https://idrid.grand-challenge.org/, IEEE DataPort "Indian Diabetic Retinopathy Image
# Dataset (IDRiD)"): "B. Disease Grading/" holds "1. Original Images/a. Training Set/
# IDRiD_001.jpg" ... (413) and "b. Testing Set/IDRiD_001.jpg" ... (103: both sets number from
# 001), and "2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv" and "b. IDRiD_Disease
# Grading_Testing Labels.csv": columns "Image name" (no suffix), "Retinopathy grade" (0-4),
# "Risk of macular edema " (0-2; the training file's header ends in a space), the training
# file with empty trailing columns.
GRADES = {"train": (0, 2, 4, 1, 3), "test": (3, 0, 2)}


def write_idrid_grading(root):
  base = "B. Disease Grading"
  for split, folder, letter, name in (("train", "a. Training Set", "a", "Training"),
                                      ("test", "b. Testing Set", "b", "Testing")):
    rows = []
    for i, grade in enumerate(GRADES[split], 1):
      image = f"IDRiD_{i:03d}"
      _save(root, f"{base}/1. Original Images/{folder}/{image}.jpg", _rgb(f"{split} {image}"))
      rows.append((image, grade, i % 3) + (("", "", "") if split == "train" else ()))
    header = (("Image name", "Retinopathy grade", "Risk of macular edema ", "", "", "")
              if split == "train" else ("Image name", "Retinopathy grade", "Risk of macular edema"))
    _write_csv(root, f"{base}/2. Groundtruths/{letter}. IDRiD_Disease Grading_{name} Labels.csv",
               header, rows)
  return {}


# IDRiD segmentation (same pages): "A. Segmentation/" holds "1. Original Images/a. Training
# Set/IDRiD_01.jpg" ... IDRiD_54 and "b. Testing Set/IDRiD_55.jpg" ... IDRiD_81, and "2. All
# Segmentation Groundtruths/{a. Training Set,b. Testing Set}/" with "1. Microaneurysms",
# "2. Haemorrhages", "3. Hard Exudates", "4. Soft Exudates", "5. Optic Disc", each mask
# IDRiD_NN_<MA,HE,EX,SE,OD>.tif, the lesion drawn in red on black (RGB TIFF); every image has
# hard exudate masks, soft exudates only some (40 of 81).
LESION_IMAGES = {"train": (1, 2, 3, 4), "test": (55, 56)}


def write_idrid_lesion_seg(root):
  base = "A. Segmentation"
  masks = {}
  lesions = ("1. Microaneurysms/MA", "3. Hard Exudates/EX", "4. Soft Exudates/SE",
             "5. Optic Disc/OD")
  for split, folder in (("train", "a. Training Set"), ("test", "b. Testing Set")):
    for n in LESION_IMAGES[split]:
      case = f"IDRiD_{n:02d}"
      _save(root, f"{base}/1. Original Images/{folder}/{case}.jpg", _rgb(case))
      for lesion in lesions:
        if lesion.endswith("SE") and n % 2:
          continue  # no soft exudate mask for this image
        subfolder, code = lesion.split("/")
        mask = _mask(f"{case} {code}")
        red = np.zeros((*SHAPE, 3), np.uint8)
        red[..., 0] = mask * 255
        relative = (f"{base}/2. All Segmentation Groundtruths/{folder}/{subfolder}/"
                    f"{case}_{code}.tif")
        _save(root, relative, red)
        masks[relative] = mask
  return masks


WRITERS = {"drive": write_drive, "stare": write_stare, "hvdropdb_bv": write_hvdropdb_bv,
           "hvdropdb_od": write_hvdropdb_od, "hvdropdb_ridge": write_hvdropdb_ridge,
           "drac": write_drac, "idrid_grading": write_idrid_grading,
           "idrid_lesion_seg": write_idrid_lesion_seg}

COUNTS = {"drive": {"train": 14, "val": 6, "test": 0},
          "stare": {"train": 14, "val": 6, "test": 0},
          "hvdropdb_bv": {"train": 60, "val": 20, "test": 0},
          "hvdropdb_od": {"train": 70, "val": 10, "test": 0},
          "hvdropdb_ridge": {"train": 60, "val": 20, "test": 0},
          "drac": {"train": 499, "val": 112, "test": 0},
          "idrid_grading": {"train": len(GRADES["train"]), "val": 0, "test": len(GRADES["test"])},
          "idrid_lesion_seg": {"train": len(LESION_IMAGES["train"]), "val": 0,
                               "test": len(LESION_IMAGES["test"])}}
