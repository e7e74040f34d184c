"""Pathology and ultrasound downloads: GlaS, CoCaHis, TNBC, MoNuSAC, Janowczyk epithelium, CRAG,
MIDOG 2021, NuCLS, WSSS4LUAD, TN3K, TG3K, DDTI, MMOTU (segmentation and classification).

Most of these ship PNG/BMP/JPEG/TIFF pairs our readers read in place. Converted: CoCaHis (one
HDF5 file -> PNG pairs), MoNuSAC (ImageScope XML polygons -> class masks), MIDOG 2021 (patches
cut from the whole TIFF around each annotated cell), NuCLS (nucleus crops of the FOVs) and the
WSSS4LUAD validation and test labels (the classes their masks hold, as JSON files).
"""

import fnmatch
import functools
import json
import os
import re
import xml.etree.ElementTree as ET

from etils import epath
import h5py
import numpy as np
from PIL import Image, ImageDraw

from rasd_jax.data import readers
from rasd_jax.data.downloads import (Convert, Layout, Recipe, glob, listdir, one_fold, path,
                                        read_csv)
from rasd_jax.data.tasks import registry

_MIDOG_PATCH = 128  # px around a MIDOG cell centre (its boxes are 50 px, ~12.5 um)
_NUCLS_CROP = 64    # px around a NuCLS nucleus centre (most boxes are under 40 px)


# --- Shared helpers -----------------------------------------------------------------------------


def _stem(name):
  return os.path.splitext(name)[0]


def _pairs(root, images, masks, prefix="", pattern="*"):
  """{prefix + image stem: {"image", "label"}} of the images in root/images matching
  `pattern`, each with the mask of the same name in root/masks (which may be missing)."""
  return {prefix + _stem(n): {"image": path(root, images, n), "label": path(root, masks, n)}
          for n in listdir(os.path.join(root, images)) if fnmatch.fnmatchcase(n, pattern)}


@functools.lru_cache(maxsize=2)
def _rgb(file):
  """A whole RGB image, kept for the next patches of the same file: prepare makes a file's
  patches one after the other, and a MIDOG TIFF takes seconds to decode."""
  with Image.open(file) as image:
    return np.asarray(image.convert("RGB"))


def _cut(size, centre):
  """make(inputs, output) writing the size x size window of inputs[0] centred on (x, y),
  moved inside the image where the centre lies near a border (a patch is never padded)."""
  def make(inputs, output):
    image = _rgb(inputs[0])
    height, width = image.shape[:2]
    left = int(np.clip(round(centre[0]) - size // 2, 0, max(0, width - size)))
    top = int(np.clip(round(centre[1]) - size // 2, 0, max(0, height - size)))
    Image.fromarray(image[top:top + size, left:left + size]).save(output, format="PNG")
  return make


# --- GlaS -----------------------------------------------------------------------------------------


_GLAS = "Warwick QU Dataset (Released 2016_07_08)"


def _glas(root):
  # The zip's one folder; its Grade.csv names every image and its patient (the group).
  grade, patient = os.path.join(root, "Grade.csv"), {}
  if epath.Path(grade).exists():
    rows = read_csv(grade, ("name",))
    column = next((c for c in rows[0] if c.lower() == "patient id"), None)
    if column is None:
      raise ValueError(f"list {grade} lacks its 'Patient ID' column; its columns are "
                       f"{list(rows[0])}")
    patient = {row["name"]: row[column] for row in rows}
  cases, splits = {}, {"train": [], "test": []}
  for name in listdir(root):
    match = re.fullmatch(r"(train|testA|testB)_(\d+)\.bmp", name)
    if match:
      case = _stem(name)
      cases[case] = {"image": path(root, name), "label": path(root, case + "_anno.bmp"),
                     **({"group": patient[case]} if case in patient else {})}
      splits["train" if match[1] == "train" else "test"].append(case)
  return one_fold(cases, splits["train"], test=splits["test"])


# --- CoCaHis --------------------------------------------------------------------------------------


def _cocahis_export(dataset, index):
  def make(inputs, output):
    with h5py.File(inputs[0], "r") as f:
      array = np.asarray(f[dataset][index])
    if dataset.startswith("GT/"):
      array = (array > 0).astype(np.uint8)  # the majority vote is a boolean mask
    Image.fromarray(array).save(output, format="PNG")
  return make


def _cocahis(root):
  file = path(root, "CoCaHis.hdf5")
  # The HE group's attributes list, per image, its patient and its official part.
  with h5py.File(file, "r") as f:
    attrs = f["HE"].attrs
    try:
      parts, patients, numbers = (
          [v.decode() if isinstance(v, bytes) else str(v) for v in attrs[k]]
          for k in ("train_test_split", "patient_num", "image_num"))
    except KeyError as e:
      raise ValueError(f"{file}: HE has no attribute {e}") from e
  cases, splits = {}, {"train": [], "test": []}
  for i, (part, patient, number) in enumerate(zip(parts, patients, numbers)):
    if part not in splits:
      raise ValueError(f"{file}: image {i} is in part {part!r}, not train or test")
    case = f"{patient}_{number}"
    cases[case] = {"image": Convert(f"images/{case}.png", (file,), _cocahis_export("HE/raw", i)),
                   "label": Convert(f"masks/{case}.png", (file,),
                                    _cocahis_export("GT/GT_majority_vote", i)),
                   "group": patient}
    splits[part].append(case)
  return one_fold(cases, splits["train"], test=splits["test"])


# --- TNBC -----------------------------------------------------------------------------------------


def _tnbc(root):
  # Slide_xx/xx_n.png + GT_xx/xx_n.png: xx is the patient; patients 1-8 train, 9-11 test.
  cases, splits = {}, {"train": [], "test": []}
  for folder in listdir(root):
    match = re.fullmatch(r"Slide_(\d+)", folder)
    if match:
      for case, entry in _pairs(root, folder, f"GT_{match[1]}", pattern="*.png").items():
        cases[case] = {**entry, "group": match[1]}
        splits["train" if int(match[1]) <= 8 else "test"].append(case)
  return one_fold(cases, splits["train"], test=splits["test"])


# --- MoNuSAC --------------------------------------------------------------------------------------


def _monusac_mask(classes):
  """make((xml, tif), output): the ImageScope XML's polygons filled with their class index
  (the Attribute name of their Annotation; others, e.g. the test set's Ambiguous, stay 0)."""
  index = {name.lower(): i for i, name in enumerate(classes)}

  def make(inputs, output):
    xml, tif = inputs
    with Image.open(tif) as image:
      size = image.size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    try:
      annotations = ET.parse(xml).getroot().iter("Annotation")
      for annotation in annotations:
        names = [a.get("Name", "") for a in annotation.iter("Attribute")]
        value = index.get(names[0].lower(), 0) if names else 0
        for region in annotation.iter("Region"):
          points = [(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")]
          if value and len(points) >= 3:
            draw.polygon(points, fill=value)
    except (ET.ParseError, TypeError, ValueError) as e:
      raise ValueError(f"cannot read the annotation {xml}: {e}") from e
    mask.save(output, format="PNG")
  return make


def _monusac(root):
  make = _monusac_mask(registry.get("monusac").classes)
  cases, splits = {}, {"train": [], "test": []}
  for split, folder in (("train", "MoNuSAC_images_and_annotations"),
                        ("test", "MoNuSAC Testing Data and Annotations")):
    for patient in listdir(os.path.join(root, folder)):
      for xml in glob(root, f"{folder}/{patient}/*.xml"):
        case, tif = _stem(os.path.basename(xml)), xml[:-len(".xml")] + ".tif"
        cases[case] = {"image": tif, "label": Convert(f"masks/{case}.png", (xml, tif), make),
                       "group": patient}
        splits[split].append(case)
  return one_fold(cases, splits["train"], test=splits["test"])


# --- Janowczyk epithelium -------------------------------------------------------------------------


def _janowczyk(root):
  # <patient>_500_f<n>_original.tif + <patient>_500_f<n>_mask.png; 5-fold CV by patient.
  cases = {}
  for name in listdir(root):
    if name.endswith("_original.tif"):
      case = name[:-len("_original.tif")]
      cases[case] = {"image": path(root, name), "label": path(root, case + "_mask.png"),
                     "group": case.split("_")[0]}
  return one_fold(cases, cases)


# --- CRAG -----------------------------------------------------------------------------------------


def _crag(root):
  # train/{Images,Annotation}/train_n.png, valid/{Images,Annotation}/test_n.png (the test set).
  train = _pairs(root, "train/Images", "train/Annotation", pattern="*.png")
  test = _pairs(root, "valid/Images", "valid/Annotation", pattern="*.png")
  return one_fold({**train, **test}, train, test=test)


# --- MIDOG 2021 -----------------------------------------------------------------------------------

# Images 001-050 Hamamatsu XR, 051-100 Hamamatsu S360, 101-150 Aperio CS2 (labelled), 151-200
# Leica GT450 (no labels). One labelled scanner is the test set, unseen in training.
_MIDOG_TEST = range(101, 151)


def _midog(images):
  def cases(root):
    file = path(root, "MIDOG.json")
    coco = readers.read_json_object(file, "the annotations", "a COCO object")
    classes = registry.get("midog21").classes
    try:
      names = {c["id"]: c["name"] for c in coco["categories"]}
      files = {i["id"]: i["file_name"] for i in coco["images"]}
      listed, splits = {}, {"train": [], "test": []}
      for a in coco["annotations"]:
        # bbox is [x1, y1, x2, y2] (MIDOG's own convention, not COCO's width and height).
        x1, y1, x2, y2 = a["bbox"]
        name = files[a["image_id"]]
        label = classes.index("mitotic figure" if names[a["category_id"]] == "mitotic figure"
                              else "imposter")
        case, tiff = f"{_stem(name)}_{a['id']}", path(root, images, name)
        listed[case] = {"image": Convert(f"patches/{case}.png", (tiff,),
                                         _cut(_MIDOG_PATCH, ((x1 + x2) / 2, (y1 + y2) / 2))),
                        "label": label, "group": _stem(name)}
        splits["test" if int(_stem(name)) in _MIDOG_TEST else "train"].append(case)
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f"{file} is not the MIDOG 2021 COCO file: {type(e).__name__}: {e}") from e
    return one_fold(listed, splits["train"], test=splits["test"])
  return cases


# --- NuCLS ----------------------------------------------------------------------------------------

_NUCLS_CLASSES = {"tumor_any": "tumor", "nonTIL_stromal": "stromal", "sTIL": "sTIL",
                  "other_nucleus": "other"}  # AMBIGUOUS nuclei are left out


def _nucls(root):
  classes = registry.get("nucls").classes
  split_file = os.path.join(root, "train_test_splits", "fold_1_test.csv")
  test_slides = {r["slide_name"] for r in read_csv(split_file, ("slide_name",))}
  cases, splits = {}, {"train": [], "test": []}
  for name in listdir(os.path.join(root, "csv")):
    fov = _stem(name)
    if not name.endswith(".csv") or fov == "ALL_FOV_LOCATIONS":  # the FOVs' index, no nuclei
      continue
    rows = read_csv(os.path.join(root, "csv", name),
                      ("super_classification", "xmin", "ymin", "xmax", "ymax"))
    slide = fov.split("_")[0]  # TCGA-<site>-<patient>-<slide>
    image = path(root, "rgb", fov + ".png")
    for i, row in enumerate(rows):
      if row["super_classification"] not in _NUCLS_CLASSES:
        continue
      try:
        centre = ((float(row["xmin"]) + float(row["xmax"])) / 2,
                  (float(row["ymin"]) + float(row["ymax"])) / 2)
      except ValueError as e:
        raise ValueError(f"{os.path.join(root, 'csv', name)} row {i + 2}: {e}") from e
      case = f"{fov}_{i}"
      cases[case] = {"image": Convert(f"crops/{case}.png", (image,), _cut(_NUCLS_CROP, centre)),
                     "label": classes.index(_NUCLS_CLASSES[row["super_classification"]]),
                     "group": "-".join(slide.split("-")[:3])}
      splits["test" if slide in test_slides else "train"].append(case)
  return one_fold(cases, splits["train"], test=splits["test"])


# --- WSSS4LUAD ------------------------------------------------------------------------------------


# The challenge's mask palette: index 0 tumor, 1 stroma, 2 normal, 3 background.
_WSSS_PALETTE = ((0, 64, 128), (64, 128, 0), (243, 152, 0), (255, 255, 255))


def _wsss_flags(inputs, output):
  """make((mask,), output): writes the [tumor, stroma, normal] 0/1 flags of the classes a
  validation or test mask holds (the image-level label the challenge derives from it). The
  masks are palette PNGs whose indices are the classes; a copy saved as RGB is read back
  through the palette's colours."""
  mask = inputs[0]
  with Image.open(mask) as image:
    array = np.asarray(image if image.mode in ("P", "L") else image.convert("RGB"))
  if array.ndim == 3:
    indices = np.full(array.shape[:2], len(_WSSS_PALETTE), np.uint8)  # unknown colours
    for i, colour in enumerate(_WSSS_PALETTE):
      indices[(array == colour).all(axis=-1)] = i
    array = indices
  if array.max() >= len(_WSSS_PALETTE):
    raise ValueError(f"{mask}: values outside the challenge's classes 0-3 (tumor, stroma, "
                     "normal, background)")
  with open(output, "w", encoding="utf-8") as f:
    json.dump([int((array == i).any()) for i in range(3)], f)


def _wsss4luad(root):
  # Training patches carry their labels in the name: <slide>-<x>-<y>-[tumor, stroma, normal].png.
  cases = {}
  for name in listdir(os.path.join(root, "1.training")):
    match = re.fullmatch(r"(.+)-\d+-\d+-\[(\d), ?(\d), ?(\d)\]\.png", name)
    if not match:
      raise ValueError(f"{path(root, '1.training', name)}: not named "
                       "<slide>-<x>-<y>-[t, s, n].png")
    cases[_stem(name)] = {"image": path(root, "1.training", name),
                          "label": [int(v) for v in match.group(2, 3, 4)], "group": match[1]}
  # Validation and test: img/<nn>.png with mask/<nn>.png, whose classes are the label.
  splits = {"train": list(cases), "val": [], "test": []}
  for split, folder, prefix in (("val", "2.validation", "validation_"),
                                ("test", "3.testing", "testing_")):
    for name in listdir(os.path.join(root, folder, "img")):
      if name.endswith(".png"):
        case = prefix + _stem(name)
        cases[case] = {"image": path(root, folder, "img", name),
                       "label": Convert(f"labels/{case}.json", (path(root, folder, "mask", name),),
                                        _wsss_flags)}
        splits[split].append(case)
  return one_fold(cases, splits["train"], val=splits["val"], test=splits["test"])


# --- Thyroid ultrasound: TN3K, TG3K, DDTI ---------------------------------------------------------


def _tn3k(root):
  train = _pairs(root, "trainval-image", "trainval-mask", prefix="trainval_", pattern="*.jpg")
  test = _pairs(root, "test-image", "test-mask", prefix="test_", pattern="*.jpg")
  return one_fold({**train, **test}, train, test=test)


def _tg3k(root):
  file = path(root, "tg3k-trainval.json")
  lists = readers.read_json_object(file, "the list", "an object with lists 'train' and 'val'")
  if not all(isinstance(lists.get(k), list) for k in ("train", "val")):
    raise ValueError(f"{file}: expected lists 'train' and 'val' of image numbers")
  ids = {split: [f"{n:04d}" for n in lists[split]] for split in ("train", "val")}
  cases = {i: {"image": path(root, "thyroid-image", i + ".jpg"),
               "label": path(root, "thyroid-mask", i + ".jpg")}
           for split in ids.values() for i in split}
  return one_fold(cases, ids["train"], val=ids["val"])


def _ddti(images, masks):
  def cases(root):
    pairs = _pairs(root, images, masks)
    return one_fold(pairs, pairs)
  return cases


# --- MMOTU ----------------------------------------------------------------------------------------


def _mmotu_ids(root, name):
  file = os.path.join(root, name)
  try:
    lines = epath.Path(file).read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()]
  except OSError as e:
    raise ValueError(f"cannot read the list {file}: {e}") from e


def _mmotu_seg(root):
  ids = {split: _mmotu_ids(root, f"{split}.txt") for split in ("train", "val")}
  cases = {i: {"image": path(root, "images", i + ".JPG"),
               "label": path(root, "annotations", i + "_binary.PNG")}
           for split in ids.values() for i in split}
  return one_fold(cases, ids["train"], val=ids["val"])


def _mmotu_cls(root):
  num_classes = len(registry.get("mmotu_cls").classes)
  cases, ids = {}, {}
  for split in ("train", "val"):
    file = os.path.join(root, f"{split}_cls.txt")
    ids[split] = []
    for line in _mmotu_ids(root, f"{split}_cls.txt"):
      parts = line.split()
      if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= num_classes:
        raise ValueError(f"{file}: line {line!r} is not '<image file> <class 0-"
                         f"{num_classes - 1}>'")
      case = _stem(parts[0])
      cases[case] = {"image": path(root, "images", parts[0]), "label": int(parts[1])}
      ids[split].append(case)
  return one_fold(cases, ids["train"], val=ids["val"])


# --- The recipes ----------------------------------------------------------------------------------

_THYROID = "https://github.com/haifangong/TRFE-Net-for-thyroid-nodule-segmentation"
_DDTI = "https://www.kaggle.com/datasets/dasmehdixtr/ddti-thyroid-ultrasound-images"
_MMOTU = "https://github.com/cv516Buaa/MMOTU_DS2Net"
_MMOTU_DOWNLOAD = ("OTU_2d.zip (images/, annotations/, train.txt, val.txt, train_cls.txt, "
                   "val_cls.txt), linked from the MMOTU_DS2Net README")
_MMOTU_MARKERS = ("images/*.JPG", "annotations/*_binary.PNG", "train.txt", "val.txt")  # OTU_2d

RECIPES = [
    Recipe(task="glas", page="https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/",
           download=f"warwick_qu_dataset_released_2016_07_08.zip (the folder {_GLAS})",
           layouts=(Layout("warwick", ("train_*_anno.bmp", "testA_*_anno.bmp"), _glas),),
           notes="read in place; train_n = train, testA_n + testB_n = test; the instance "
                 "labels are binarised; the patient comes from Grade.csv"),
    Recipe(task="cocahis", page="https://cocahis.irb.hr/",
           download="CoCaHis.hdf5",
           layouts=(Layout("hdf5", ("CoCaHis.hdf5",), _cocahis),),
           notes="each image (HE/raw) and its majority-vote mask (GT/GT_majority_vote) is "
                 "exported to PNG; the HE attributes train_test_split and patient_num give the "
                 "split and the patient"),
    Recipe(task="tnbc", page="https://zenodo.org/record/1175282",
           download="TNBC_NucleiSegmentation.zip",
           layouts=(Layout("zenodo", ("Slide_*/*.png", "GT_*/*.png"), _tnbc),),
           notes="read in place; patients 1-8 train, 9-11 test"),
    Recipe(task="monusac", page="https://monusac-2020.grand-challenge.org/Data/",
           download="MoNuSAC_images_and_annotations.zip and MoNuSAC Testing Data and "
                    "Annotations.zip, unpacked side by side",
           layouts=(Layout("challenge", ("MoNuSAC_images_and_annotations/*/*.xml",
                                         "MoNuSAC Testing Data and Annotations/*/*.xml"),
                           _monusac),),
           notes="each image's XML polygons are filled into a class mask (1 epithelial, 2 "
                 "lymphocyte, 3 macrophage, 4 neutrophil; the test set's ambiguous regions stay "
                 "background); the .tif images are read in place"),
    Recipe(task="janowczyk_epithelium",
           page="http://www.andrewjanowczyk.com/use-case-2-epithelium-segmentation/",
           download="epi.tgz",
           layouts=(Layout("tutorial", ("*_original.tif", "*_mask.png"), _janowczyk),),
           notes="read in place; every image is training data, 5-fold CV by patient (the "
                 "file name's first number)"),
    Recipe(task="crag", page="https://warwick.ac.uk/fac/cross_fac/tia/data/mildnet/",
           download="CRAG_v2.zip (the CRAG folder)",
           layouts=(Layout("warwick", ("train/Images/*.png", "train/Annotation/*.png",
                                       "valid/Images/*.png", "valid/Annotation/*.png"), _crag),),
           notes="read in place; valid/ is the test set; the instance labels are binarised"),
    Recipe(task="midog21", page="https://zenodo.org/record/4643381",
           download="MIDOG.json and the 200 images 001.tiff-200.tiff, in one folder or "
                    "with the images in images/",
           layouts=(Layout("zenodo", ("MIDOG.json", "0*.tiff"), _midog(".")),
                    Layout("images_folder", ("MIDOG.json", "images/0*.tiff"), _midog("images"))),
           notes=f"a {_MIDOG_PATCH} px patch is cut around each annotated cell (mitotic figure "
                 "or imposter); images 101-150 (Aperio CS2) are the test set, 1-100 (Hamamatsu "
                 "XR, S360) train; the unlabelled Leica images are not used"),
    Recipe(task="nucls", page="https://sites.google.com/view/nucls/",
           download="the corrected single-rater dataset (NuCLS QC): rgb/, csv/, "
                    "train_test_splits/",
           layouts=(Layout("qc", ("rgb/*.png", "csv/*.csv", "train_test_splits/fold_1_test.csv"),
                           _nucls),),
           notes=f"a {_NUCLS_CROP} px crop is cut around each nucleus of a super-class (tumor, "
                 "stromal, sTIL, other; ambiguous ones left out); train_test_splits fold 1 "
                 "names the test slides"),
    Recipe(task="wsss4luad", page="https://wsss4luad.grand-challenge.org/",
           download="the training, validation and test archives (1.training, 2.validation, "
                    "3.testing)",
           layouts=(Layout("challenge", ("1.training/*.png", "2.validation/img",
                                         "2.validation/mask", "3.testing/img", "3.testing/mask"),
                           _wsss4luad),),
           notes="read in place; the training labels come from the file names, the validation "
                 "and test labels ([tumor, stroma, normal] present) from the classes their masks "
                 "hold (written to converted/labels)"),
    Recipe(task="tn3k", page=_THYROID,
           download="the Thyroid Dataset archive linked from the TRFE-Net README (its tn3k "
                    "folder)",
           layouts=(Layout("trfe", ("trainval-image", "trainval-mask", "test-image",
                                    "test-mask"), _tn3k),),
           notes="read in place; trainval = train, test = test"),
    Recipe(task="tg3k", page=_THYROID,
           download="the Thyroid Dataset archive linked from the TRFE-Net README (its tg3k "
                    "folder)",
           layouts=(Layout("trfe", ("thyroid-image", "thyroid-mask", "tg3k-trainval.json"),
                           _tg3k),),
           notes="read in place; tg3k-trainval.json lists the train and val image numbers"),
    Recipe(task="ddti", page=_DDTI,
           download="the DDTI folder of the Thyroid Dataset archive (1_or_data/image, "
                    "1_or_data/mask)",
           layouts=(Layout("original", ("1_or_data/image/*.PNG", "1_or_data/mask/*.PNG"),
                           _ddti("1_or_data/image", "1_or_data/mask")),
                    Layout("stage1_crops", ("p_image/*.PNG", "p_mask/*.PNG"),
                           _ddti("p_image", "p_mask")),
                    Layout("trfe", ("image/*.PNG", "mask/*.PNG"), _ddti("image", "mask"))),
           notes="read in place; every image is training data, 5-fold CV"),
    Recipe(task="mmotu_seg", page=_MMOTU, download=_MMOTU_DOWNLOAD,
           layouts=(Layout("otu_2d", _MMOTU_MARKERS, _mmotu_seg),),
           notes="read in place; the binary masks <n>_binary.PNG; train.txt / val.txt"),
    Recipe(task="mmotu_cls", page=_MMOTU, download=_MMOTU_DOWNLOAD,
           layouts=(Layout("otu_2d", _MMOTU_MARKERS + ("train_cls.txt", "val_cls.txt"),
                           _mmotu_cls),),
           notes="read in place; train_cls.txt / val_cls.txt give each image's class"),
]
