"""Fundus and OCTA downloads: DRIVE, STARE, HVDROPDB (vessels, optic disc, ridge), DRAC 2022
grading, IDRiD (grading and lesion segmentation).

Images are read in place where our readers take them; what they do not take is converted:
STARE's gzip-compressed PPMs, IDRiD's red-on-black lesion TIFFs. The
authors' split lists (DRIVE, STARE, HVDROPDB, DRAC) are shipped in rasd_jax/data/splitlists.
"""

import gzip
import io

from etils import epath
import numpy as np
from PIL import Image

from rasd_jax.data import downloads
from rasd_jax.data.downloads import (Convert, Layout, Listing, Recipe, glob, listdir, path,
                                        shipped, shipped_listing)


# --- Conversions: what our readers cannot read as downloaded ---------------------------------


def _open_image(source):
  """The Pillow image of `source` (gzip-compressed where it ends in .gz), loaded; a ValueError
  naming the file where it is unreadable."""
  try:
    data = epath.Path(source).read_bytes()
    if source.endswith(".gz"):
      data = gzip.decompress(data)
    image = Image.open(io.BytesIO(data))
    image.load()
  except Exception as e:  # Pillow and gzip raise many kinds for a corrupt file
    raise ValueError(f"cannot read {source} (unreadable or corrupt): {type(e).__name__}: "
                     f"{e}") from e
  return image


def _write_png(array, output):
  epath.Path(output).parent.mkdir(parents=True, exist_ok=True)
  with epath.Path(output).open("wb") as f:
    Image.fromarray(array).save(f, format="PNG")


def _as_png(mode):
  """A Convert make: the one input re-saved as PNG in Pillow `mode` ("RGB" image, "L" mask:
  values kept, so a 0/255 mask still reads as 0/1)."""
  def make(inputs, output):
    _write_png(np.asarray(_open_image(inputs[0]).convert(mode)), output)
  return make


def _red_mask(inputs, output):
  """IDRiD lesion masks are RGB TIFFs with the lesion drawn in red: a grey 0/1 PNG of it."""
  rgb = np.asarray(_open_image(inputs[0]).convert("RGB"))
  _write_png((rgb[..., 0] > 0).astype(np.uint8), output)


# --- Shared listing helpers --------------------------------------------------------------------


def _child(folder, name):
  """`folder`/`name`, matched case-insensitively among its entries (releases differ in
  capitals: HVDROPDB's Retcam_ and RetCam_); `name` itself where none matches."""
  for entry in listdir(folder):
    if entry.lower() == name.lower():
      return path(folder, entry)
  return path(folder, name)


def _class_index(csv_path, row, column, num_classes):
  value = row[column]
  if not value.isdigit() or int(value) >= num_classes:
    raise ValueError(f"{csv_path}: {column!r} of {row} is {value!r}, expected a class index "
                     f"0-{num_classes - 1}")
  return int(value)


# --- DRIVE ---------------------------------------------------------------------------------------


def _drive_cases(root):
  return shipped_listing("drive.json", lambda n: {
      "image": path(root, "training", "images", f"{n}_training.tif"),
      "label": path(root, "training", "1st_manual", f"{n}_manual1.gif")})


_DRIVE = Recipe(
    task="drive", page="https://drive.grand-challenge.org/DRIVE/",
    download="the DRIVE data set (training/ and test/; DRIVE.zip or training.zip), unpacked: "
             "training/{images,1st_manual,mask}",
    layouts=(Layout("DRIVE.zip", ("training/images/*_training.tif",
                                  "training/1st_manual/*_manual1.gif"), _drive_cases),),
    notes="reads the training TIFFs and the 1st_manual GIF masks in place; "
          "the authors' DRIVE.json split (14 train / 6 val of the 20 training images) is "
          "shipped; the test set is not used")


# --- STARE ---------------------------------------------------------------------------------------


def _stare_file(root, name):
  """`name` at the root or one folder below it (stare-images.tar and labels-ah.tar unpacked
  side by side, or each into a folder of its own); at the root where it is nowhere."""
  found = glob(root, name) + glob(root, f"*/{name}")
  return found[0] if found else path(root, name)


def _stare_cases(root):
  # Our readers take no .ppm.gz: image and Hoover's labels are decompressed to PNG.
  return shipped_listing("stare.json", lambda n: {
      "image": Convert(f"images/{n}.png", (_stare_file(root, f"{n}.ppm.gz"),), _as_png("RGB")),
      "label": Convert(f"masks/{n}.ah.png", (_stare_file(root, f"{n}.ah.ppm.gz"),),
                       _as_png("L"))})


_STARE_IMAGE, _STARE_LABEL = "im0???.ppm.gz", "im0???.ah.ppm.gz"
_STARE = Recipe(
    task="stare", page="https://cecas.clemson.edu/~ahoover/stare/probing/index.html",
    download="stare-images.tar (the 20 images) and labels-ah.tar (Adam Hoover's hand labels), "
             "unpacked into one folder (or each into a folder of its own)",
    layouts=(Layout("archives unpacked side by side", (_STARE_IMAGE,), _stare_cases),
             Layout("one folder per archive", (f"*/{_STARE_IMAGE}", f"*/{_STARE_LABEL}"),
                    _stare_cases)),
    notes="the .ppm.gz images and labels-ah labels are decompressed to PNG; the authors' "
          "STARE.json split (14 train / 6 val) is shipped")


# --- HVDROPDB ------------------------------------------------------------------------------------

_HVDROPDB_PAGE = "https://data.mendeley.com/datasets/xw5xc7xrmp/3"
_HVDROPDB_DOWNLOAD = ("HVDROPDB_RetCam_Neo_Segmentation.zip (Mendeley Data), unpacked: "
                      "HVDROPDB_RetCam_Neo_Segmentation/HVDROPDB-{BV,OD,RIDGE}")


def _hvdropdb(task, folder, target, json_name, notes):
  """One HVDROPDB structure: <folder>/<Camera>_<target>_{images,masks}/<n>.png, the camera Neo
  or RetCam (Retcam in HVDROPDB-OD); case <Camera>_<n>."""
  def cases(root):
    def case(name):
      camera, n = name.split("_")
      images, masks = (_child(path(root, folder), f"{camera}_{target}_{kind}")
                       for kind in ("images", "masks"))
      return {"image": path(images, f"{n}.png"), "label": path(masks, f"{n}.png")}
    return shipped_listing(json_name, case)
  markers = tuple(f"{folder}/Neo_{target}_{kind}/*.png" for kind in ("images", "masks"))
  return Recipe(task=task, page=_HVDROPDB_PAGE, download=_HVDROPDB_DOWNLOAD,
                layouts=(Layout("HVDROPDB_RetCam_Neo_Segmentation.zip", markers, cases),),
                notes="reads the PNGs in place (masks: 0/255, grey or RGB with equal channels); "
                      + notes)


# --- DRAC 2022 -----------------------------------------------------------------------------------

_DRAC_CSV = "2. Groundtruths/a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv"


def _drac_cases(root):
  lists = shipped("drac.json")
  cases, fold = {}, {"test": None}
  for split in ("train", "val"):
    # The list holds the ids by grade; cases are listed in the order of their names.
    for grade, ids in lists[split].items():
      for n in ids:
        cases[n] = {"image": path(root, "1. Original Images", "a. Training Set", f"{n}.png"),
                    "label": int(grade)}
    fold[split] = sorted(n for ids in lists[split].values() for n in ids)
  return Listing(cases, [fold])


_DRAC = Recipe(
    task="drac", page="https://drac22.grand-challenge.org/",
    download="C. Diabetic Retinopathy Grading.zip (the training set of task C), unpacked",
    layouts=(Layout("C. Diabetic Retinopathy Grading.zip",
                    ("1. Original Images/a. Training Set/*.png", _DRAC_CSV), _drac_cases),),
    notes="reads the official training PNGs in place; the authors' csv/train.csv and "
          "csv/val.csv (499 / 112 of the 611 training images, with their grades) are shipped; "
          "the test set has no public labels")


# --- IDRiD ---------------------------------------------------------------------------------------

_IDRID_PAGE = "https://idrid.grand-challenge.org/"
_IDRID_SPLITS = (("train", "a. Training Set"), ("test", "b. Testing Set"))


_GRADING_CSV = "2. Groundtruths/{letter}. IDRiD_Disease Grading_{name} Labels.csv"


def _idrid_grading_cases(root):
  cases, fold = {}, {"val": None}
  for (split, folder), letter, name in zip(_IDRID_SPLITS, "ab", ("Training", "Testing")):
    csv_path = path(root, _GRADING_CSV.format(letter=letter, name=name))
    fold[split] = []
    for row in downloads.read_csv(csv_path, ("Image name", "Retinopathy grade")):
      # Both sets number their images from IDRiD_001: the split prefixes the case id.
      case = f"{split}_{row['Image name']}"
      if case in cases:
        raise ValueError(f"{csv_path}: image {row['Image name']!r} is listed twice")
      cases[case] = {"image": path(root, "1. Original Images", folder,
                                   f"{row['Image name']}.jpg"),
                     "label": _class_index(csv_path, row, "Retinopathy grade", 5)}
      fold[split].append(case)
  return Listing(cases, [fold])


_IDRID_GRADING = Recipe(
    task="idrid_grading", page=_IDRID_PAGE,
    download="B. Disease Grading.zip (IEEE DataPort, Indian Diabetic Retinopathy Image "
             "Dataset), unpacked",
    layouts=(Layout("B. Disease Grading", (
        "1. Original Images/a. Training Set/IDRiD_*.jpg",
        _GRADING_CSV.format(letter="a", name="Training")), _idrid_grading_cases),),
    notes="reads the JPEGs in place; the official training (413) and testing (103) label CSVs "
          "are the train and test lists")

_LESION = "3. Hard Exudates"


def _idrid_lesion_cases(root):
  cases, fold = {}, {"val": None}
  for split, folder in _IDRID_SPLITS:
    fold[split] = []
    # Every image of the segmentation set has a hard exudate mask (the set's page); an
    # image without one is reported missing by prepare, not scored as empty.
    for image in glob(root, f"1. Original Images/{folder}/IDRiD_*.jpg"):
      case = epath.Path(image).stem
      mask = path(root, "2. All Segmentation Groundtruths", folder, _LESION, f"{case}_EX.tif")
      cases[case] = {"image": image,
                     "label": Convert(f"masks/{case}_EX.png", (mask,), _red_mask)}
      fold[split].append(case)
  return Listing(cases, [fold])


_IDRID_LESION = Recipe(
    task="idrid_lesion_seg", page=_IDRID_PAGE,
    download="A. Segmentation.zip (IEEE DataPort, Indian Diabetic Retinopathy Image Dataset), "
             "unpacked",
    layouts=(Layout("A. Segmentation", (
        "1. Original Images/a. Training Set/IDRiD_*.jpg",
        f"2. All Segmentation Groundtruths/a. Training Set/{_LESION}/IDRiD_*_EX.tif"),
        _idrid_lesion_cases),),
    notes="reads the JPEGs in place; the red hard exudate (EX) TIFF masks are converted to grey "
          "0/1 PNGs; the official training (54) and testing (27) sets are the train and test "
          "lists")

RECIPES = [
    _DRIVE, _STARE,
    _hvdropdb("hvdropdb_bv", "HVDROPDB-BV", "Vessels", "hvdropdb_bv.json",
              "the authors' BV.json split (60 train / 20 val: Neo and RetCam 1-30 / 31-40) is "
              "shipped"),
    _hvdropdb("hvdropdb_od", "HVDROPDB-OD", "OpticDisc", "hvdropdb_od.json",
              "the authors' OD.json split (70 train / 10 val: Neo and RetCam 1-35 / 36-40; "
              "their validation list names each image twice) is shipped"),
    _hvdropdb("hvdropdb_ridge", "HVDROPDB-RIDGE", "Ridge", "hvdropdb_ridge.json",
              "the authors' RIDGE.json split (60 train / 20 val: Neo and RetCam 1-30 / 31-40) "
              "is shipped"),
    _DRAC, _IDRID_GRADING, _IDRID_LESION,
]
