"""X-ray and mammography downloads: Shenzhen, Montgomery, RSNA bone age, BFMR, KAU-BCMD, BMCD,
LAMIS-DMDB (its public sample), CDD-CESM, Mendeley mammography, INbreast, VinDr-Mammo, CBIS-DDSM.

None of these tasks has an authors' split list: each follows the download's own train / val /
test lists where it has them and otherwise lists every case as "train" (splits.make_splits holds
cases out by patient, `group`). Mammograms are read in place as the DICOM files the archives
ship (readers decode the compressed transfer syntaxes and invert MONOCHROME1).
"""

import io
import os
import plistlib
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile

from etils import epath
import numpy as np
from PIL import Image, ImageDraw
import pydicom

from rasd_jax.data import downloads
from rasd_jax.data import readers
from rasd_jax.data.downloads import Convert, Layout, Recipe, one_fold, read_csv

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


# --- Lists: CSV and Excel ----------------------------------------------------------------------


def _rows_with(path, rows, columns):
  """`rows` (dicts) after checking that every name in `columns` is a column; cells stripped."""
  have = list(rows[0]) if rows else []
  missing = [c for c in columns if c not in have]
  if not rows or missing:
    raise ValueError(f"{path}: expected the columns {list(columns)}, missing {missing} (its "
                     f"columns: {have}); is it the file the publisher distributes?")
  return [{k: (v or "").strip() if isinstance(v, str) or v is None else v for k, v in r.items()}
          for r in rows]


_XLSX = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
         "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
         "rel": "http://schemas.openxmlformats.org/package/2006/relationships"}


def _cell_column(reference):
  """0-based column of a cell reference such as "AB12"."""
  index = 0
  for letter in re.match(r"[A-Z]+", reference).group():
    index = index * 26 + ord(letter) - ord("A") + 1
  return index - 1


def _xlsx_rows(path, sheet=0):
  """The rows of one sheet of an .xlsx (the first, or the one named `sheet`) as lists of cell
  texts, row n of the sheet at index n - 1 (Excel leaves empty rows out of the XML: they are
  []): the workbook is a zip of XML parts (ECMA-376), read here with the standard library
  instead of a spreadsheet package for the few small lists that come as Excel files."""
  with zipfile.ZipFile(io.BytesIO(epath.Path(path).read_bytes())) as book:
    workbook = ET.fromstring(book.read("xl/workbook.xml"))
    sheets = workbook.findall("m:sheets/m:sheet", _XLSX)
    chosen = (sheets[sheet] if isinstance(sheet, int) else
              next((s for s in sheets if s.get("name") == sheet), None))
    if chosen is None:
      raise ValueError(f"no sheet {sheet!r} (sheets: {[s.get('name') for s in sheets]})")
    relations = ET.fromstring(book.read("xl/_rels/workbook.xml.rels"))
    target = next(r.get("Target") for r in relations.findall("rel:Relationship", _XLSX)
                  if r.get("Id") == chosen.get(f"{{{_XLSX['r']}}}id"))
    part = target.lstrip("/") if target.startswith("/") else "xl/" + target
    shared = []
    if "xl/sharedStrings.xml" in book.namelist():
      shared = ["".join(t.text or "" for t in item.iter(f"{{{_XLSX['m']}}}t"))
                for item in ET.fromstring(book.read("xl/sharedStrings.xml"))]
    rows = []
    for row in ET.fromstring(book.read(part)).iter(f"{{{_XLSX['m']}}}row"):
      cells = {}
      for cell in row.findall("m:c", _XLSX):
        kind, value = cell.get("t"), cell.find("m:v", _XLSX)
        if kind == "inlineStr":
          text = "".join(t.text or "" for t in cell.iter(f"{{{_XLSX['m']}}}t"))
        elif value is None:
          continue
        elif kind == "s":
          text = shared[int(value.text)]
        else:  # a number (Excel keeps 5 as "5", 5.5 as "5.5"), a formula's string, a boolean
          text = value.text or ""
          text = text[:-2] if re.fullmatch(r"-?\d+\.0", text) else text
        cells[_cell_column(cell.get("r"))] = text
      number = int(row.get("r") or len(rows) + 1)
      rows += [[] for _ in range(number - 1 - len(rows))]
      rows.append([cells.get(i, "") for i in range(max(cells, default=-1) + 1)])
  return rows


def _xlsx_table(path, columns, sheet=0):
  """[(sheet row number, row dict)] of an .xlsx sheet below its header row: the first row
  holding every name in `columns` (a title may stand above it), else the first row; empty rows
  left out, cells stripped (see _read_csv)."""
  with readers.reading(path):
    table = _xlsx_rows(path, sheet)
  start = next((i for i, r in enumerate(table) if set(columns) <= {c.strip() for c in r}), 0)
  header = [h.strip() for h in table[start]] if table else []
  numbered = [(number, dict(zip(header, r + [""] * (len(header) - len(r)))))
              for number, r in enumerate(table[start + 1:], start + 2) if any(r)]
  rows = _rows_with(path, [r for _, r in numbered], columns)
  return [(number, row) for (number, _), row in zip(numbered, rows)]


def _read_xlsx(path, columns, sheet=0):
  """The rows of an .xlsx sheet below its header row, as dicts (see _xlsx_table)."""
  return [row for _, row in _xlsx_table(path, columns, sheet)]


# --- Small shared pieces -----------------------------------------------------------------------


def _lookup(names, value, where):
  """The class index of `value` (a label as the list spells it), else ValueError naming
  `where` (the file and line)."""
  if value not in names:
    raise ValueError(f"{where}: label {value!r} is not one of {sorted(names)}")
  return names[value]


def _images_below(folder, depth=3):
  """{file stem: path} of the image files in `folder` and up to `depth` - 1 levels below it (an
  archive unpacked into a folder of its own name, or two zips unpacked side by side)."""
  found = {}
  for level in range(depth):
    for path in downloads.glob(folder, "/".join(["*"] * (level + 1))):
      if path.lower().endswith(_IMAGE_SUFFIXES):
        found.setdefault(os.path.splitext(os.path.basename(path))[0], path)
  return found


# --- Shenzhen and Montgomery (NLM chest X-ray sets) ---------------------------------------------


def _nlm_cases(root, prefix):
  """{stem: (path, class)} of CXR_png/<prefix>_<nnnn>_<0|1>.png: the last digit is the class
  (0 normal, 1 tuberculosis); a PNG named otherwise is an error naming it."""
  cases = {}
  for path in downloads.glob(root, "CXR_png/*.png"):
    stem = os.path.basename(path)[:-4]
    match = re.fullmatch(rf"{prefix}_\d+_([01])", stem)
    if match is None:
      raise ValueError(f"{path}: expected a name {prefix}_<number>_<0 normal|1 TB>.png")
    cases[stem] = (path, int(match.group(1)))
  return cases


def _shenzhen(root):
  return one_fold({stem: {"image": path, "label": label}
                    for stem, (path, label) in _nlm_cases(root, "CHNCXR").items()})


def _merge_masks(inputs, output):
  """One lung mask (0/255) from the left and right lung masks of an image."""
  left, right = (np.asarray(Image.open(p).convert("L")) for p in inputs)
  if left.shape != right.shape:
    raise ValueError(f"{inputs[0]} ({left.shape}) and {inputs[1]} ({right.shape}) differ in "
                     "size: not the two masks of one image")
  Image.fromarray(((left > 0) | (right > 0)).astype(np.uint8) * 255).save(output)


def _montgomery(root):
  """MontgomerySet/ (the archive's folder): each image's lung mask merged from its two."""
  masks = downloads.path(root, "ManualMask")
  return one_fold({
      stem: {"image": path,
             "label": Convert(f"lungMask/{stem}.png",
                              (downloads.path(masks, "leftMask", f"{stem}.png"),
                               downloads.path(masks, "rightMask", f"{stem}.png")), _merge_masks)}
      for stem, (path, _) in _nlm_cases(root, "MCUCXR").items()})


# --- RSNA pediatric bone age -------------------------------------------------------------------


def _bone_age_cases(split, rows, path, id_column, label_column, images, folder):
  """{split_id: {image, label}}: the image named <id>.png found in `images`, or (missing) the
  place it should be in `folder`."""
  cases = {}
  for line, row in enumerate(rows, 2):
    image_id = row[id_column]
    try:
      label = float(row[label_column])
    except ValueError:
      raise ValueError(f"{path} line {line}: {label_column!r} {row[label_column]!r} is not a "
                       "number of months") from None
    cases[f"{split}_{image_id}"] = {
        "image": images.get(image_id, downloads.path(folder, f"{image_id}.png")), "label": label}
  return cases


def _first_existing(root, names, what):
  for name in names:
    if epath.Path(root, name).exists():
      return downloads.path(root, name)
  raise ValueError(f"{root}: no {what} ({' or '.join(names)})")


def _bone_age_rsna(root):
  """The RSNA challenge's three archives unpacked side by side."""
  train_dir = downloads.path(root, "Bone Age Training Set")
  train_csv = _first_existing(train_dir, ("train.csv", "boneage-training-dataset.csv"),
                              "training list")
  cases = _bone_age_cases("train", read_csv(train_csv, ("id", "boneage")), train_csv, "id",
                          "boneage", _images_below(train_dir),
                          downloads.path(train_dir, "boneage-training-dataset"))
  val_dir = downloads.path(root, "Bone Age Validation Set")
  val_csv = downloads.path(val_dir, "Validation Dataset.csv")
  val = _bone_age_cases("val", read_csv(val_csv, ("Image ID", "Bone Age (months)")), val_csv,
                        "Image ID", "Bone Age (months)", _images_below(val_dir), val_dir)
  test, test_dir = {}, downloads.path(root, "Bone Age Test Set")
  truth = downloads.glob(test_dir, "Bone age ground truth.*")
  if truth:  # the test set is a separate, later download
    columns = ("Case ID", "Ground truth bone age (months)")
    rows = (_read_xlsx(truth[0], columns) if truth[0].endswith(".xlsx") else
            read_csv(truth[0], columns))
    test = _bone_age_cases("test", rows, truth[0], *columns, _images_below(test_dir),
                           downloads.path(test_dir, "Test Set Images"))
  return one_fold({**cases, **val, **test}, list(cases), list(val), list(test) or None)


def _bone_age_kaggle(root):
  """Kaggle's copy: the training set only carries labels (its test CSV has none)."""
  train_csv = downloads.path(root, "boneage-training-dataset.csv")
  folder = downloads.path(root, "boneage-training-dataset")
  return one_fold(_bone_age_cases("train", read_csv(train_csv, ("id", "boneage")), train_csv,
                                   "id", "boneage", _images_below(folder), folder))


# --- Class folders: BFMR, KAU-BCMD, LAMIS-DMDB, Mendeley mammography ---------------------------


def _class_folders(root, classes):
  """{"<folder>/<file>": {"image", "label"}} of the image files directly in each class folder
  (`classes`: {folder relative to root: class index}); other files (readmes) are left out."""
  cases = {}
  for folder, index in classes.items():
    for path in downloads.glob(root, f"{folder}/*"):
      if path.lower().endswith(_IMAGE_SUFFIXES):
        cases[f"{folder}/{os.path.basename(path)}"] = {"image": path, "label": index}
  return cases


def _bfmr(root):
  cases, folds = {}, {}
  for split in ("train", "val", "test"):
    found = _class_folders(root, {f"{split}/fractured": 0, f"{split}/not fractured": 1})
    cases.update(found)
    folds[split] = list(found)
  return one_fold(cases, **folds)


def _kau_bcmd(root):
  """Birad<n>/<case folder>/*.jpg: class BI-RADS n (index n - 1), the case folder (one woman's
  four views) the group."""
  cases = {}
  for path in downloads.glob(root, "Birad*/*/*"):
    relative = os.path.relpath(path, root)
    folder, case, _ = relative.split(os.sep)
    match = re.fullmatch(r"Birad([1-5])", folder)
    if match and path.lower().endswith(_IMAGE_SUFFIXES):
      cases[relative.replace(os.sep, "/")] = {"image": path, "label": int(match.group(1)) - 1,
                                              "group": f"{folder}/{case}"}
  return one_fold(cases)


# The sample's folders as published ("Nomal" sic); "Normal" too, should the spelling be fixed.
_LAMIS_CLASSES = {"Nomal": 0, "Normal": 0, "Benign": 1, "Malign": 2}


def _lamis_dmdb(root):
  """LAMIS-DMDB/<class>/dataMG-PROC_P<patient>_<image>_<side>_<view>_<date>.png: the patient is
  the group where the name gives it."""
  cases = _class_folders(root, _LAMIS_CLASSES)
  for case_id, case in cases.items():
    match = re.match(r"dataMG-PROC_(P\d+)_", os.path.basename(case_id))
    if match:
      case["group"] = match.group(1)
  return one_fold(cases)


def _mendeley_mammo(root):
  """Breast Cancer Dataset/Original Dataset/{Cancer,Non-Cancer}: the augmented copies beside it
  are left out (variants of the same images would leak across a random split)."""
  return one_fold(_class_folders(root, {"Original Dataset/Cancer": 0,
                                         "Original Dataset/Non-Cancer": 1}))


# --- BMCD (Breast Micro-Calcifications Dataset) ------------------------------------------------

_BMCD_SHEETS = ("Normal_cases", "Suspicious_cases")  # sheet = case folder of Dataset.zip
_BMCD_FOLDER, _BMCD_LABEL = "Folder #", "BI-RADS categories for classification"
# The sheet's classification is that of the recent mammograms (the priors have none of their
# own): 1 normal, 2 benign, 4a-5 suspicious; the record describes no other category (no BI-RADS
# 3), so another value is an error.
_BMCD_CLASSES = {"1": 0, "2": 1, "4a": 2, "4b": 2, "4c": 2, "5": 2}


def _bmcd_image(folder, view):
  """The recent `view` DICOM of a case folder: <view>_recent.dcm, in some folders .DCM (the
  .dcm path, missing, where neither is there)."""
  found = [p for p in downloads.glob(folder, f"{view}_recent.*") if p.lower().endswith(".dcm")]
  return found[0] if found else downloads.path(folder, f"{view}_recent.dcm")


def _bmcd(root):
  """Description.xlsx (one row per case folder in each of its two sheets) and the unpacked
  Dataset.zip: beside the sheet (any folder name) or the sheet's own folder. The recent CC and
  MLO images of each listed folder are the cases, the folder (with its sheet: both number
  from 1) the group."""
  sheet = downloads.path(root, "Description.xlsx")
  data = [os.path.dirname(p) for p in (downloads.glob(root, "Normal_cases")
                                       or downloads.glob(root, "*/Normal_cases"))]
  if len(data) != 1:
    raise ValueError(f"{root}: expected one unpacked Dataset.zip (Normal_cases and "
                     f"Suspicious_cases) beside Description.xlsx, found {data}")
  cases = {}
  for name in _BMCD_SHEETS:
    for number, row in _xlsx_table(sheet, (_BMCD_FOLDER, _BMCD_LABEL), name):
      folder = row[_BMCD_FOLDER]
      if not folder:  # not a case (public readers of the sheet drop such rows)
        continue
      where = f"{sheet} sheet {name} row {number}"
      if not re.fullmatch(r"\d+", folder) or f"{name}/{folder}/CC_recent" in cases:
        raise ValueError(f"{where}: {_BMCD_FOLDER!r} {folder!r} is not a new folder number")
      label = _lookup(_BMCD_CLASSES, row[_BMCD_LABEL].lower(), where)
      for view in ("CC", "MLO"):
        cases[f"{name}/{folder}/{view}_recent"] = {
            "image": _bmcd_image(downloads.path(data[0], name, folder), view), "label": label,
            "group": f"{name}/{folder}"}
  return one_fold(cases)


# --- CDD-CESM ----------------------------------------------------------------------------------

_CESM_LABEL = "Pathology Classification/ Follow up"
_CESM_CLASSES = {"Normal": 0, "Benign": 1, "Malignant": 2}


def _cdd_cesm(root):
  """The low-energy (Type DM) rows of the annotation sheet; P<patient>_... is the group."""
  sheet = downloads.glob(root, "Radiology manual annotations.*")[0]
  columns = ("Image_name", "Type", _CESM_LABEL)
  rows = _read_xlsx(sheet, columns) if sheet.endswith(".xlsx") else read_csv(sheet, columns)
  cases = {}
  for line, row in enumerate(rows, 2):
    if row["Type"] != "DM":
      continue
    name = row["Image_name"]
    match = re.match(r"(P\d+)_", name)
    if match is None or name in cases:
      raise ValueError(f"{sheet} line {line}: Image_name {name!r} is not a new "
                       "P<patient>_<L|R>_DM_<view> name")
    cases[name] = {"image": downloads.path(root, "Low energy images of CDD-CESM", f"{name}.jpg"),
                   "label": _lookup(_CESM_CLASSES, row[_CESM_LABEL], f"{sheet} line {line}"),
                   "group": match.group(1)}
  return one_fold(cases)


# --- INbreast ----------------------------------------------------------------------------------


def _inbreast_mask(inputs, output):
  """The mass ROIs of an INbreast XML (an Apple plist: Images[0].ROIs[], each with a Name and
  its contour Point_px as "(x, y)" strings) filled into a 0/255 mask of the DICOM's size; no
  XML (no finding), an empty mask."""
  header = pydicom.dcmread(inputs[0], stop_before_pixels=True)
  mask = Image.new("L", (int(header.Columns), int(header.Rows)), 0)
  if len(inputs) > 1:
    with open(inputs[1], "rb") as f:
      document = plistlib.load(f)
    draw = ImageDraw.Draw(mask)
    for image in document["Images"]:
      for roi in image["ROIs"]:
        if roi.get("Name") != "Mass":
          continue
        points = [tuple(float(v) for v in p.strip("() ").split(",")) for p in roi["Point_px"]]
        if len(points) > 2:
          draw.polygon(points, fill=255, outline=255)
  mask.save(output)


def _inbreast(root):
  cases = {}
  for path in downloads.glob(root, "AllDICOMs/*.dcm"):
    match = re.fullmatch(r"(\d+)_([0-9a-f]+)_MG_.*\.dcm", os.path.basename(path))
    if match is None:
      raise ValueError(f"{path}: expected a name <file id>_<patient id>_MG_<view>_ANON.dcm")
    file_id, patient = match.groups()
    xml = downloads.path(root, "AllXML", f"{file_id}.xml")
    inputs = (path, xml) if epath.Path(xml).exists() else (path,)
    cases[file_id] = {"image": path, "group": patient,
                      "label": Convert(f"MassMasks/{file_id}.png", inputs, _inbreast_mask)}
  return one_fold(cases)


# --- VinDr-Mammo -------------------------------------------------------------------------------


def _vindr_mammo(root):
  table = downloads.path(root, "breast-level_annotations.csv")
  rows = read_csv(table, ("study_id", "image_id", "breast_birads", "split"))
  classes = {f"BI-RADS {i}": i - 1 for i in range(1, 6)}
  cases, folds = {}, {"training": [], "test": []}
  for line, row in enumerate(rows, 2):
    if row["split"] not in folds:
      raise ValueError(f"{table} line {line}: split {row['split']!r} is not training or test")
    cases[row["image_id"]] = {
        "image": downloads.path(root, "images", row["study_id"], f"{row['image_id']}.dicom"),
        "label": _lookup(classes, row["breast_birads"], f"{table} line {line}"),
        "group": row["study_id"]}
    folds[row["split"]].append(row["image_id"])
  return one_fold(cases, train=folds["training"], test=folds["test"])


# --- CBIS-DDSM ---------------------------------------------------------------------------------

_CBIS_LISTS = {"train": ("mass_case_description_train_set.csv",
                         "calc_case_description_train_set.csv"),
               "test": ("mass_case_description_test_set.csv",
                        "calc_case_description_test_set.csv")}
_CBIS_CLASSES = {"BENIGN": 0, "BENIGN_WITHOUT_CALLBACK": 0, "MALIGNANT": 1}


def _copy_cropped(inputs, output):
  """The cropped ROI image of one CBIS-DDSM abnormality folder, copied as it is: the folder
  holds it beside the ROI mask (series "cropped images" and "ROI mask images", or both in one
  series), told apart by SeriesDescription, else as the smaller image (a mask has the size of
  the whole mammogram)."""
  files = downloads.glob(inputs[0], "*/*/*.dcm")  # <study>/<series>/<file>
  if not files:
    raise ValueError(f"{inputs[0]} holds no DICOM file")
  headers = {f: pydicom.dcmread(f, stop_before_pixels=True) for f in files}
  cropped = [f for f, h in headers.items()
             if "cropped" in str(h.get("SeriesDescription", "")).lower()]
  chosen = cropped[0] if len(cropped) == 1 else min(
      files, key=lambda f: int(headers[f].Rows) * int(headers[f].Columns))
  shutil.copyfile(chosen, output)


def _cbis_ddsm(root):
  """The four case-description CSVs name each abnormality by its top folder (their deeper path
  is the old NBIA download's, not what the NBIA Data Retriever writes); the image is the
  cropped ROI in CBIS-DDSM/<top folder>/."""
  cases, folds = {}, {}
  for split, names in _CBIS_LISTS.items():
    folds[split] = []
    for name in names:
      table = downloads.path(root, name)
      if not epath.Path(table).exists():
        raise ValueError(f"{table} is missing: download the four case-description CSVs of "
                         "CBIS-DDSM beside its CBIS-DDSM folder")
      for line, row in enumerate(read_csv(
          table, ("patient_id", "pathology", "cropped image file path")), 2):
        top = row["cropped image file path"].replace("\\", "/").split("/")[0].strip('"')
        if not top or top in cases:
          raise ValueError(f"{table} line {line}: cropped image file path "
                           f"{row['cropped image file path']!r} names no new abnormality folder")
        folder = downloads.path(root, "CBIS-DDSM", top)
        named = [p for p in downloads.glob(folder, "*/*/*.dcm")
                 if "cropped images" in os.path.basename(os.path.dirname(p))]
        image = (named[0] if len(named) == 1 else
                 Convert(f"cropped/{top}.dcm", (folder,), _copy_cropped))
        cases[top] = {"image": image,
                      "label": _lookup(_CBIS_CLASSES, row["pathology"], f"{table} line {line}"),
                      "group": row["patient_id"]}
        folds[split].append(top)
  return one_fold(cases, **folds)


_NLM = "https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html#tuberculosis-image-data-sets"
RECIPES = [
    Recipe("shenzhen", _NLM,
           "ChinaSet_AllFiles.zip (the NLM Shenzhen chest X-ray set)",
           (Layout("nlm", ("CXR_png/CHNCXR_*.png",), _shenzhen),),
           "read in place; the class is the last digit of CHNCXR_nnnn_{0,1}.png (0 normal, 1 TB); "
           "no split list: every image is train (5-fold CV)"),
    Recipe("montgomery", _NLM,
           "NLM-MontgomeryCXRSet.zip (MontgomerySet: CXR_png, ManualMask)",
           (Layout("nlm", ("CXR_png/MCUCXR_*.png", "ManualMask/leftMask",
                           "ManualMask/rightMask"), _montgomery),),
           "converts ManualMask/leftMask + rightMask (same names) into one lung mask per image; "
           "no split list: every image is train"),
    Recipe("rsna_bone_age",
           "https://www.rsna.org/rsnai/ai-image-challenge/rsna-pediatric-bone-age-challenge-2017",
           "Bone Age Training Set.zip (+ its annotations, train.csv), Bone Age Validation Set.zip "
           "(its two zips boneage-validation-dataset-1/2 unpacked inside it), Bone Age Test "
           "Set.zip; or Kaggle's rsna-bone-age",
           (Layout("rsna", ("Bone Age Training Set",
                            "Bone Age Validation Set/Validation Dataset.csv"), _bone_age_rsna),
            Layout("kaggle", ("boneage-training-dataset.csv", "boneage-training-dataset"),
                   _bone_age_kaggle)),
           "read in place, the official train / val / test lists (test: Bone age ground "
           "truth.xlsx); Kaggle's copy labels only its training set (val and test held out)"),
    Recipe("bfmr",
           "https://www.kaggle.com/datasets/bmadushanirodrigo/fracture-multi-region-x-ray-data",
           "Kaggle's fracture-multi-region-x-ray-data archive "
           "(Bone_Fracture_Binary_Classification)",
           (Layout("kaggle", ("train/fractured", "train/not fractured", "val", "test"), _bfmr),),
           "read in place; the official train / val / test folders"),
    Recipe("kau_bcmd",
           "https://www.kaggle.com/datasets/asmaasaad/king-abdulaziz-university-mammogram-dataset",
           "Kaggle's king-abdulaziz-university-mammogram-dataset archive (Birad1, Birad3, Birad4, "
           "Birad5)",
           (Layout("kaggle", ("Birad1", "Birad5"), _kau_bcmd),),
           "read in place; class from the Birad<n> folder, the case folder is the group; the "
           "download has no BI-RADS 2 folder; every image is train"),
    Recipe("bmcd", "https://zenodo.org/records/5036062",
           "Dataset.zip and Description.xlsx of Zenodo record 5036062 (Breast Micro-Calcifications "
           "Dataset), both in one folder, Dataset.zip unpacked there (Dataset/Normal_cases, "
           "Dataset/Suspicious_cases)",
           (Layout("zenodo", ("Description.xlsx", "*/Normal_cases/*/CC_recent.*",
                              "*/Suspicious_cases/*/CC_recent.*"), _bmcd),
            Layout("sheet in the dataset folder", ("Description.xlsx", "Normal_cases/*/CC_recent.*",
                                                   "Suspicious_cases/*/CC_recent.*"), _bmcd)),
           "read in place: the recent CC and MLO DICOMs of each case folder that Description.xlsx "
           "lists (sheets Normal_cases, Suspicious_cases), the class from its BI-RADS "
           "classification (1 normal, 2 benign, 4a-5 suspicious); the prior images (no "
           "classification of their own) and the annotation JPEGs are left out; the case folder "
           "is the group; every image is train"),
    Recipe("lamis_dmdb", "https://github.com/LAMISDMDB/LAMISDMDB_Sample",
           "the public sample of LAMIS-DMDB: the LAMISDMDB_Sample repository (its LAMIS-DMDB "
           "folder: Benign, Malign, Nomal)",
           (Layout("github sample", ("Benign/dataMG-PROC_*", "Malign/dataMG-PROC_*"),
                   _lamis_dmdb),),
           "read in place; class from the folder (Nomal normal, Benign benign, Malign "
           "malignant), the P<patient> of the file name is the group; every image is train. The "
           "full database (DICOM, from its authors on request) has no recipe: its layout is not "
           "published"),
    Recipe("mendeley_mammo", "https://data.mendeley.com/datasets/fvjhtskg93/1",
           "Mendeley Data fvjhtskg93 (Mammogram Mastery), its folder Breast Cancer Dataset",
           (Layout("mendeley", ("Original Dataset/Cancer", "Original Dataset/Non-Cancer"),
                   _mendeley_mammo),),
           "read in place: the Original Dataset images only (class from the Cancer / Non-Cancer "
           "folder), not the Augmented Dataset made from them; the download names no patient, "
           "so the held-out split is by image; every image is train"),
    Recipe("cdd_cesm", "https://www.cancerimagingarchive.net/collection/cdd-cesm/",
           "CDD-CESM from TCIA: the JPEG images (Low energy images of CDD-CESM) and Radiology "
           "manual annotations.xlsx",
           (Layout("tcia", ("Low energy images of CDD-CESM", "Radiology manual annotations.*"),
                   _cdd_cesm),),
           "read in place; the Type DM rows of the annotation sheet (read from the .xlsx), "
           "label Normal / Benign / Malignant; every image is train"),
    Recipe("inbreast", "https://www.kaggle.com/datasets/ramanathansp20/inbreast-dataset",
           "INbreast Release 1.0 (AllDICOMs, AllXML), from its authors on request",
           (Layout("release", ("AllDICOMs/*.dcm", "AllXML"), _inbreast),),
           "converts the mass contours of AllXML/<file id>.xml into MassMasks/<file id>.png "
           "(empty without an XML); DICOMs read in place; every image is train"),
    Recipe("vindr_mammo", "https://physionet.org/content/vindr-mammo/1.0.0/",
           "vindr-mammo 1.0.0 from PhysioNet (images/, breast-level_annotations.csv)",
           (Layout("physionet", ("breast-level_annotations.csv", "images"), _vindr_mammo),),
           "read in place (JPEG 2000 DICOMs); the split column: training / test"),
    Recipe("cbis_ddsm", "https://www.cancerimagingarchive.net/collection/cbis-ddsm/",
           "CBIS-DDSM from TCIA (the NBIA Data Retriever's CBIS-DDSM folder) and its four "
           "case-description CSVs beside it",
           (Layout("tcia", ("CBIS-DDSM", "*_case_description_*_set.csv"), _cbis_ddsm),),
           "the cropped ROI of each abnormality, found by its top folder; where a folder's "
           "names do not say which file is the crop, it is copied into converted/cropped; the "
           "official train / test CSVs"),
]
