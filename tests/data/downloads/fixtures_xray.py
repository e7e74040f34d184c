"""Tiny copies of the X-ray and mammography downloads, in their publishers' folder and file
names, written from each dataset's public documentation (cited above each writer)."""

import csv
import os
import plistlib
import zipfile
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom import uid

_RNG = np.random.default_rng(17)


def _image(path, shape=(24, 20), mode="L", dtype=np.uint8):
  """A random grayscale (or RGB) image file, its format from the suffix; returns the array."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixels = _RNG.integers(0, np.iinfo(dtype).max, shape + ((3,) if mode == "RGB" else ()),
                         dtype=dtype)
  Image.fromarray(pixels, mode if mode == "RGB" else None).save(path)
  return pixels


def _mask(path, box, shape=(24, 20)):
  """A 0/255 mask PNG, 255 inside box (y0, y1, x0, x1); returns it as 0/1."""
  mask = np.zeros(shape, np.uint8)
  y0, y1, x0, x1 = box
  mask[y0:y1, x0:x1] = 1
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(mask * 255).save(path)
  return mask


def _csv(path, header, rows):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def xlsx(path, header, rows, sheet="Sheet1"):
  """A one-sheet Excel workbook, its header in row 1 (see workbook)."""
  workbook(path, {sheet: [header] + list(rows)})


def workbook(path, sheets):
  """A minimal Excel workbook as Excel writes it: {sheet name: rows (row n of the sheet at index
  n - 1; an empty row is left out of the XML, as Excel does)}; strings in xl/sharedStrings.xml,
  numbers in the cells."""
  main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
  rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
  strings, parts = [], {}
  for index, rows in enumerate(sheets.values(), 1):
    rows_xml = []
    for r, row in enumerate(rows, 1):
      cells = []
      for c, value in enumerate(row):
        ref = f"{chr(ord('A') + c)}{r}"
        if isinstance(value, str):
          strings.append(value)
          cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
        elif value is not None:
          cells.append(f'<c r="{ref}"><v>{value}</v></c>')
      if cells:
        rows_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    parts[f"worksheets/sheet{index}.xml"] = (
        f'<worksheet xmlns="{main}"><sheetData>{"".join(rows_xml)}</sheetData></worksheet>')
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with zipfile.ZipFile(path, "w") as book:
    book.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.'
                  'openxmlformats.org/package/2006/content-types"/>')
    book.writestr("xl/workbook.xml", f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>' + "".join(
        f'<sheet name="{escape(name)}" sheetId="{i}" r:id="rId{i}"/>'
        for i, name in enumerate(sheets, 1)) + "</sheets></workbook>")
    book.writestr("xl/_rels/workbook.xml.rels", '<Relationships xmlns="http://schemas.'
                  'openxmlformats.org/package/2006/relationships">' + "".join(
                      f'<Relationship Id="rId{i}" Type="{rel}/worksheet" Target="{target}"/>'
                      for i, target in enumerate(parts, 1)) + "</Relationships>")
    book.writestr("xl/sharedStrings.xml", f'<sst xmlns="{main}">' + "".join(
        f"<si><t>{escape(s)}</t></si>" for s in strings) + "</sst>")
    for target, xml in parts.items():
      book.writestr(f"xl/{target}", xml)


def dicom(path, shape=(40, 32), syntax=uid.ExplicitVRLittleEndian, photometric="MONOCHROME2",
          **elements):
  """A 12-bit mammogram DICOM file in transfer syntax `syntax`; returns the stored array."""
  stored = _RNG.integers(0, 4096, shape).astype(np.uint16)
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = uid.DigitalMammographyXRayImageStorageForPresentation
  meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds = FileDataset(os.path.basename(path), {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, uid.generate_uid()
  ds.Modality, ds.SamplesPerPixel, ds.PhotometricInterpretation = "MG", 1, photometric
  ds.Rows, ds.Columns = shape
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  ds.PixelData = stored.tobytes()
  for key, value in elements.items():
    setattr(ds, key, value)
  if syntax != uid.ExplicitVRLittleEndian:
    ds.compress(syntax)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ds.save_as(path, enforce_file_format=True)
  return stored


# https://lhncbc.nlm.nih.gov/LHC-downloads/downloads.html (Tuberculosis image data sets) and
# Jaeger et al., Quant Imaging Med Surg 2014;4(6):475-7: ChinaSet_AllFiles.zip holds CXR_png/
# with CHNCXR_<nnnn>_<0|1>.png (0 normal, 1 abnormal) and ClinicalReadings/ with one .txt each.
def write_shenzhen(root):
  base = os.path.join(root, "ChinaSet_AllFiles")
  for name in ("CHNCXR_0001_0", "CHNCXR_0002_0", "CHNCXR_0327_1", "CHNCXR_0328_1"):
    _image(os.path.join(base, "CXR_png", f"{name}.png"))
    os.makedirs(os.path.join(base, "ClinicalReadings"), exist_ok=True)
    with open(os.path.join(base, "ClinicalReadings", f"{name}.txt"), "w") as f:
      f.write("male 45yrs\nnormal\n" if name.endswith("0") else "female 38yrs\nPTB\n")
  with open(os.path.join(base, "CXR_png", "Thumbs.db"), "wb") as f:
    f.write(b"\0")  # Windows leaves it in the archive


# Same page and paper: NLM-MontgomeryCXRSet.zip holds MontgomerySet/ with CXR_png/
# MCUCXR_<nnnn>_<0|1>.png, ClinicalReadings/*.txt and ManualMask/leftMask/ + rightMask/, one
# binary mask per image under the image's name.
def write_montgomery(root, names=("MCUCXR_0001_0", "MCUCXR_0002_0", "MCUCXR_0104_1")):
  base = os.path.join(root, "MontgomerySet")
  masks = {}
  for i, name in enumerate(names):
    _image(os.path.join(base, "CXR_png", f"{name}.png"))
    left = _mask(os.path.join(base, "ManualMask", "leftMask", f"{name}.png"), (4, 18, 2, 8 + i))
    right = _mask(os.path.join(base, "ManualMask", "rightMask", f"{name}.png"), (5, 20, 11, 18))
    masks[name] = left | right
    os.makedirs(os.path.join(base, "ClinicalReadings"), exist_ok=True)
    with open(os.path.join(base, "ClinicalReadings", f"{name}.txt"), "w") as f:
      f.write("Patient's Sex: F\n")
  return masks


# https://www.rsna.org/rsnai/ai-image-challenge/rsna-pediatric-bone-age-challenge-2017 (the
# challenge's dataset description) and Halabi et al., Radiology 2019;290:498-503: Bone Age
# Training Set (boneage-training-dataset/<id>.png; its annotations train.csv: id, boneage,
# male), Bone Age Validation Set (Validation Dataset.csv: Image ID, male, Bone Age (months); the
# images in boneage-validation-dataset-1 and -2), Bone Age Test Set (Test Set Images/<Case
# ID>.png, Bone age ground truth.xlsx: Case ID, Sex, Ground truth bone age (months)).
def write_rsna_bone_age(root):
  train = os.path.join(root, "Bone Age Training Set")
  rows = [(1377, 180, "False"), (1378, 12, "False"), (1379, 94, "True")]
  _csv(os.path.join(train, "train.csv"), ("id", "boneage", "male"), rows)
  for image_id, _, _ in rows:
    _image(os.path.join(train, "boneage-training-dataset", f"{image_id}.png"))
  val = os.path.join(root, "Bone Age Validation Set")
  _csv(os.path.join(val, "Validation Dataset.csv"), ("Image ID", "male", "Bone Age (months)"),
       [(1386, "FALSE", 30), (12000, "TRUE", 162)])
  _image(os.path.join(val, "boneage-validation-dataset-1", "1386.png"))
  _image(os.path.join(val, "boneage-validation-dataset-2", "12000.png"))
  test = os.path.join(root, "Bone Age Test Set")
  xlsx(os.path.join(test, "Bone age ground truth.xlsx"),
       ("Case ID", "Sex", "Ground truth bone age (months)"),
       [(4360, "M", 168.934), (4361, "M", 169)])
  for case in (4360, 4361):
    _image(os.path.join(test, "Test Set Images", f"{case}.png"))
  return {"train": {1377: 180.0, 1378: 12.0, 1379: 94.0}, "val": {1386: 30.0, 12000: 162.0},
          "test": {4360: 168.934, 4361: 169.0}}


# https://www.kaggle.com/datasets/kmader/rsna-bone-age (file listing): boneage-training-dataset
# .csv (id, boneage, male), boneage-training-dataset/boneage-training-dataset/<id>.png,
# boneage-test-dataset.csv (Case ID, Sex: no bone age) and boneage-test-dataset/
# boneage-test-dataset/<id>.png.
def write_rsna_bone_age_kaggle(root):
  _csv(os.path.join(root, "boneage-training-dataset.csv"), ("id", "boneage", "male"),
       [(1377, 180, "False"), (1378, 12, "False")])
  for image_id in (1377, 1378):
    _image(os.path.join(root, "boneage-training-dataset", "boneage-training-dataset",
                        f"{image_id}.png"))
  _csv(os.path.join(root, "boneage-test-dataset.csv"), ("Case ID", "Sex"), [(4360, "M")])
  _image(os.path.join(root, "boneage-test-dataset", "boneage-test-dataset", "4360.png"))


# https://www.kaggle.com/datasets/bmadushanirodrigo/fracture-multi-region-x-ray-data: "The
# dataset is categorized into train, test, and validation folders, each containing fractured and
# non-fractured radiographic images" (Bone_Fracture_Binary_Classification/{train,val,test}/
# {fractured,not fractured}/, .jpg and .png files).
def write_bfmr(root):
  base = os.path.join(root, "Bone_Fracture_Binary_Classification",
                      "Bone_Fracture_Binary_Classification")
  for split, count in (("train", 2), ("val", 1), ("test", 1)):
    for name in ("fractured", "not fractured"):
      for i in range(count):
        suffix = ".jpg" if i % 2 == 0 else ".png"
        _image(os.path.join(base, split, name, f"{i}{suffix}"), mode="RGB")


# https://www.kaggle.com/datasets/asmaasaad/king-abdulaziz-university-mammogram-dataset and
# Alsolami et al., Data 2021;6(11):111: one folder per BI-RADS category (Birad1, Birad3, Birad4,
# Birad5), a folder per case holding its views (CC and MLO of each breast) as JPEG.
def write_kau_bcmd(root):
  for birads, case in ((1, "1"), (3, "15"), (4, "104"), (5, "210")):
    for view in ("L_CC", "R_MLO"):
      _image(os.path.join(root, "archive", f"Birad{birads}", case, f"{case}_{view}.jpg"),
             mode="RGB")


# The BI-RADS classification of each case folder (sheet, Folder #) as Description.xlsx gives it:
# Excel numbers for 1 and 2, text for the subcategories of 4.
BMCD_BIRADS = {("Normal_cases", 1): 1, ("Normal_cases", 2): 2, ("Normal_cases", 3): 1,
               ("Suspicious_cases", 1): "4a", ("Suspicious_cases", 2): 5,
               ("Suspicious_cases", 3): "4c"}
BMCD_UPPER = ("Suspicious_cases", 2)  # a folder whose files end in .DCM


# https://zenodo.org/records/5036062 ("Breast Micro-Calcifications Dataset with Precisely
# Annotated Sequential Mammograms", Loizidou et al.): 100 pairs of mammograms from two sequential
# screening rounds, "the prior and recent mammograms of CC and MLO view of each patient", normal
# (BI-RADS 1), benign (BI-RADS 2) and suspicious (BI-RADS 4-5) cases, and "for each mammogram, an
# image with precise annotation of each individual micro-calcification"; the record's files are
# Dataset.zip and Description.xlsx. Inside them, as public readers of the download spell them:
# Dataset/{Normal_cases,Suspicious_cases}/<Folder #>/{CC,MLO}_{prior,recent}.dcm (.DCM in some
# folders) beside {CC,MLO}_{prior,recent}_GT.jpg, and in Description.xlsx one sheet per folder,
# its header in row 3 ("Folder #", "Breast (Right/Left)", "BI-RADS categories for breast
# density", "BI-RADS categories for classification " with its trailing space, ...). Both files
# are saved in one folder and Dataset.zip is unpacked there.
def write_bmcd(root, birads=BMCD_BIRADS):
  """Returns {case id: stored array} of the recent images."""
  header = ["Folder #", "Age (at the time of the recent mammogram)", "Breast (Right/Left)",
            "Available mammograms", "Years between screenings",
            "BI-RADS categories for breast density", "BI-RADS categories for classification "]
  sheets = {"Normal_cases": [["Normal cases"], [], header],
            "Suspicious_cases": [["Suspicious cases"], [], header + ["Biopsy results"]]}
  stored = {}
  for (sheet, folder), value in birads.items():
    sheets[sheet].append([folder, 48 + folder, "Left" if folder % 2 else "Right", "2016-2018",
                          2, "b", value] + (["NOT AVAILABLE"] if sheet != "Normal_cases" else []))
    suffix = ".DCM" if (sheet, folder) == BMCD_UPPER else ".dcm"
    for view in ("CC", "MLO"):
      for time in ("prior", "recent"):
        name = os.path.join(root, "Dataset", sheet, str(folder), f"{view}_{time}")
        array = dicom(name + suffix, (32, 24))
        _image(f"{name}_GT.jpg", (32, 24), mode="RGB")
        if time == "recent":
          stored[f"{sheet}/{folder}/{view}_recent"] = array
  workbook(os.path.join(root, "Description.xlsx"), sheets)
  return stored


# https://github.com/LAMISDMDB/LAMISDMDB_Sample (the repository's file listing): README.md,
# "Annotated Images/imagesdataMG-PROC_<...>.png" and LAMIS-DMDB/{Benign,Malign,Nomal}/, each
# folder holding a Readme and RGB PNGs named dataMG-PROC_P<patient>_<n>_<L|R>_<CC|MLO>_<date>.png
# (the names below are the sample's own).
def write_lamis_dmdb(root):
  base = os.path.join(root, "LAMISDMDB_Sample-main")
  names = {"Benign": ("dataMG-PROC_P28_110_L_MLO_01_July_2017",
                      "dataMG-PROC_P29_44143_R_CC_30_July_2017"),
           "Malign": ("dataMG-PROC_P181_90584_L_CC_31_October_2018",
                      "dataMG-PROC_P194_41363_R_CC_08_July_2017"),
           "Nomal": ("dataMG-PROC_P20_59_L_MLO_01_October_2018",
                     "dataMG-PROC_P42_53_R_CC_03_October_2018")}
  for folder, stems in names.items():
    for stem in stems:
      _image(os.path.join(base, "LAMIS-DMDB", folder, f"{stem}.png"), mode="RGB")
    with open(os.path.join(base, "LAMIS-DMDB", folder, "Readme"), "w") as f:
      f.write(f"{folder} sample\n")
  _image(os.path.join(base, "Annotated Images",
                      "imagesdataMG-PROC_P376_572_R_CC_29_December_2018.png"), mode="RGB")
  with open(os.path.join(base, "README.md"), "w") as f:
    f.write("# LAMISDMDB\n")
  return names


# https://data.mendeley.com/datasets/fvjhtskg93/1 ("Mammogram Mastery", Aqdar et al., Data in
# Brief 2024): 745 original and 9,685 augmented JPEG images, unpacked as "Mammogram Mastery A
# Robust Dataset for Breast Cancer Detection and Medical Education/Breast Cancer Dataset/
# {Original Dataset,Augmented Dataset}/{Cancer,Non-Cancer}/". The file names are not documented:
# IMG<n>.jpg is assumed (public code reading the download keeps the names starting with IMG);
# the augmented copies' names are made up, they are there to be left out.
def write_mendeley_mammo(root):
  base = os.path.join(root, "Mammogram Mastery A Robust Dataset for Breast Cancer Detection "
                      "and Medical Education", "Breast Cancer Dataset")
  names = {"Cancer": ("IMG001.jpg", "IMG002.jpg"), "Non-Cancer": ("IMG101.jpg", "IMG102.jpg",
                                                                 "IMG103.jpg")}
  for folder, files in names.items():
    for name in files:
      _image(os.path.join(base, "Original Dataset", folder, name), mode="RGB")
      _image(os.path.join(base, "Augmented Dataset", folder, f"rotated_{name}"), mode="RGB")
  return names


# https://www.cancerimagingarchive.net/collection/cdd-cesm/ and Khaled et al., Sci Data
# 2022;9:122: folders "Low energy images of CDD-CESM" and "Subtracted images of CDD-CESM" (JPEG,
# named P<patient>_<L|R>_<DM|CM>_<CC|MLO>), and "Radiology manual annotations.xlsx" (Image_name,
# Patient_ID, Side, Type DM / CESM, ..., Pathology Classification/ Follow up: Normal, Benign,
# Malignant).
def write_cdd_cesm(root):
  base = os.path.join(root, "PKG - CDD-CESM", "CDD-CESM")
  header = ("Image_name", "Patient_ID", "Side", "Type", "Age", "Breast density (ACR)", "BIRADS",
            "Findings", "View", "Tags", "Pathology Classification/ Follow up")
  rows = [("P1_L_DM_CC", 1, "L", "DM", 46, "C", 1, "No significant lesions", "CC", "", "Normal"),
          ("P1_L_DM_MLO", 1, "L", "DM", 46, "C", 1, "No significant lesions", "MLO", "",
           "Normal"),
          ("P1_L_CM_CC", 1, "L", "CESM", 46, "C", 1, "No enhancement", "CC", "", "Normal"),
          ("P2_R_DM_CC", 2, "R", "DM", 39, "B", 3, "Oval mass", "CC", "", "Benign"),
          ("P3_L_DM_MLO", 3, "L", "DM", 61, "C", 5, "Spiculated mass", "MLO", "", "Malignant ")]
  xlsx(os.path.join(base, "Radiology manual annotations.xlsx"), header, rows, sheet="all")
  for name, *_ in rows:
    folder = "Low energy images of CDD-CESM" if "_DM_" in name else "Subtracted images of CDD-CESM"
    _image(os.path.join(base, folder, f"{name}.jpg"), mode="RGB")


def _inbreast_xml(path, rois):
  """An INbreast annotation: an Apple plist, Images[0].ROIs[] with Name and Point_px."""
  document = {"Images": [{"ImageIndex": 0, "NumberOfROIs": len(rois), "ROIs": [
      {"Name": name, "NumberOfPoints": len(points), "Point_px": [f"({x}, {y})" for x, y in points],
       "Point_mm": [f"({x * 0.07}, {y * 0.07})" for x, y in points]} for name, points in rois]}]}
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    plistlib.dump(document, f)


# Moreira et al., "INbreast: toward a full-field digital mammographic database", Acad Radiol
# 2012;19(2):236-48, and the release's README: AllDICOMs/<file id>_<patient id>_MG_<L|R>_<CC|ML>
# _ANON.dcm, AllXML/<file id>.xml (lesion contours as an Apple plist, Images > ROIs > Name,
# Point_px "(x, y)"), AllROI/, MedicalReports/, INbreast.csv. Masses: 20586908, 22614097.
def write_inbreast(root):
  base = os.path.join(root, "INbreast Release 1.0")
  images = {"20586908": ("6c613a14b80a8591", "R_CC"), "20586934": ("6c613a14b80a8591", "L_CC"),
            "22614097": ("8d0b9620c53c0268", "R_ML"), "24065530": ("d571b4ff4fd8a9d6", "L_ML"),
            "50995789": ("1e2ac4b6e3f9d1a4", "R_CC")}
  boxes = {"20586908": (3, 2, 12, 9), "22614097": (10, 20, 25, 35),  # x0, y0, x1, y1
           "24065530": (5, 5, 20, 30), "50995789": (0, 10, 8, 14)}
  masks = {}
  for file_id, (patient, view) in images.items():
    stored = dicom(os.path.join(base, "AllDICOMs", f"{file_id}_{patient}_MG_{view}_ANON.dcm"),
                   shape=(48, 32))
    masks[file_id] = np.zeros(stored.shape, np.int32)
    if file_id in boxes:
      x0, y0, x1, y1 = boxes[file_id]
      _inbreast_xml(os.path.join(base, "AllXML", f"{file_id}.xml"),
                    [("Mass", [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]),
                     ("Calcification", [(1, 1)])])
      masks[file_id][y0:y1 + 1, x0:x1 + 1] = 1
  _csv(os.path.join(base, "INbreast.csv"), ("Patient ID", "File Name", "Bi-Rads"),
       [("removed", f, 4) for f in images])
  return masks


# https://physionet.org/content/vindr-mammo/1.0.0/ and Nguyen et al., Sci Data 2023;10:277:
# images/<study_id>/<image_id>.dicom (JPEG 2000 compressed), breast-level_annotations.csv
# (study_id, series_id, image_id, laterality, view_position, height, width, breast_birads
# "BI-RADS n", breast_density, split training / test), finding_annotations.csv, metadata.csv.
def write_vindr_mammo(root):
  base = os.path.join(root, "vindr-mammo", "1.0.0")
  rows, stored = [], {}
  for study, image, birads, split in (("s1", "i11", 1, "training"), ("s1", "i12", 2, "training"),
                                      ("s2", "i21", 4, "training"), ("s3", "i31", 5, "test"),
                                      ("s3", "i32", 3, "test")):
    stored[image] = dicom(os.path.join(base, "images", study, f"{image}.dicom"),
                          syntax=uid.JPEG2000Lossless)
    rows.append((study, f"se{study}", image, "L", "CC", 40, 32, f"BI-RADS {birads}",
                 "DENSITY C", split))
  _csv(os.path.join(base, "breast-level_annotations.csv"),
       ("study_id", "series_id", "image_id", "laterality", "view_position", "height", "width",
        "breast_birads", "breast_density", "split"), rows)
  _csv(os.path.join(base, "finding_annotations.csv"), ("study_id", "image_id"), [])
  _csv(os.path.join(base, "metadata.csv"), ("Series Instance UID",), [])
  return stored


_MASS = ("patient_id", "breast_density", "left or right breast", "image view", "abnormality id",
         "abnormality type", "mass shape", "mass margins", "assessment", "pathology", "subtlety",
         "image file path", "cropped image file path", "ROI mask file path")
_CALC = ("patient_id", "breast density", "left or right breast", "image view", "abnormality id",
         "abnormality type", "calc type", "calc distribution", "assessment", "pathology",
         "subtlety", "image file path", "cropped image file path", "ROI mask file path")


def _cbis_row(kind, top, pathology):
  patient = "_".join(top.split("_")[1:3])
  side, view = top.split("_")[3:5]
  uids = "1.3.6.1.4.1.9590.100.1.2.1/1.3.6.1.4.1.9590.100.1.2.2"
  paths = (f"{top[:-2]}/{uids}/000000.dcm", f"{top}/{uids}/000000.dcm\n",
           f"{top}/{uids}/000001.dcm\n")
  shape = ("OVAL", "CIRCUMSCRIBED") if kind == "mass" else ("PLEOMORPHIC", "CLUSTERED")
  return (patient, 3, side, view, 1, kind, *shape, 4, pathology, 3, *paths)


def _cbis_folder(base, top, separate):
  """An abnormality folder as the NBIA Data Retriever writes it; returns the crop's array."""
  study = os.path.join(base, top, "07-21-2016-DDSM-NA-96009")
  if separate:
    crop = dicom(os.path.join(study, "1.000000-cropped images-12345", "1-1.dcm"), (16, 12),
                 SeriesDescription="cropped images")
    dicom(os.path.join(study, "1.000000-ROI mask images-67890", "1-1.dcm"), (48, 32),
          SeriesDescription="ROI mask images")
  else:  # crop and mask in one series, the crop not always first
    dicom(os.path.join(study, "1.000000-ROI mask images-25360", "1-1.dcm"), (48, 32),
          SeriesDescription="ROI mask images")
    crop = dicom(os.path.join(study, "1.000000-ROI mask images-25360", "1-2.dcm"), (16, 12),
                 SeriesDescription="ROI mask images")
  dicom(os.path.join(base, top[:-2], "08-07-2016-DDSM-NA-74994",
                     "1.000000-full mammogram images-24515", "1-1.dcm"), (48, 32),
        SeriesDescription="full mammogram images")
  return crop


# https://www.cancerimagingarchive.net/collection/cbis-ddsm/ and Lee et al., Sci Data 2017;4:
# 170177: the NBIA download CBIS-DDSM/<Mass|Calc>-<Training|Test>_P_<nnnnn>_<LEFT|RIGHT>_<CC|MLO>
# [_<abnormality>]/<date-study>/<series>/1-<n>.dcm, and the four case-description CSVs (mass_ /
# calc_case_description_{train,test}_set.csv; columns as above, paths of the older download).
def write_cbis_ddsm(root):
  base = os.path.join(root, "CBIS-DDSM")
  lists = {"mass_case_description_train_set.csv": (_MASS, [
               ("mass", "Mass-Training_P_00001_LEFT_CC_1", "MALIGNANT", False)]),
           "calc_case_description_train_set.csv": (_CALC, [
               ("calc", "Calc-Training_P_00005_RIGHT_CC_1", "BENIGN_WITHOUT_CALLBACK", True)]),
           "mass_case_description_test_set.csv": (_MASS, [
               ("mass", "Mass-Test_P_00016_LEFT_CC_1", "BENIGN", True)]),
           "calc_case_description_test_set.csv": (_CALC, [
               ("calc", "Calc-Test_P_00038_LEFT_CC_1", "MALIGNANT", False)])}
  crops = {}
  for name, (header, rows) in lists.items():
    _csv(os.path.join(root, name), header, [_cbis_row(k, t, p) for k, t, p, _ in rows])
    for _, top, _, separate in rows:
      crops[top] = _cbis_folder(base, top, separate)
  return crops


WRITERS = {"shenzhen": write_shenzhen, "montgomery": write_montgomery,
           "rsna_bone_age": write_rsna_bone_age, "bfmr": write_bfmr,
           "kau_bcmd": write_kau_bcmd, "bmcd": write_bmcd, "lamis_dmdb": write_lamis_dmdb,
           "mendeley_mammo": write_mendeley_mammo, "cdd_cesm": write_cdd_cesm,
           "inbreast": write_inbreast,
           "vindr_mammo": write_vindr_mammo, "cbis_ddsm": write_cbis_ddsm}
COUNTS = {"shenzhen": {"train": 4, "val": 0, "test": 0},
          "montgomery": {"train": 3, "val": 0, "test": 0},
          "rsna_bone_age": {"train": 3, "val": 2, "test": 2},
          "bfmr": {"train": 4, "val": 2, "test": 2},
          "kau_bcmd": {"train": 8, "val": 0, "test": 0},
          "bmcd": {"train": 12, "val": 0, "test": 0},
          "lamis_dmdb": {"train": 6, "val": 0, "test": 0},
          "mendeley_mammo": {"train": 5, "val": 0, "test": 0},
          "cdd_cesm": {"train": 4, "val": 0, "test": 0},
          "inbreast": {"train": 5, "val": 0, "test": 0},
          "vindr_mammo": {"train": 3, "val": 0, "test": 2},
          "cbis_ddsm": {"train": 2, "val": 0, "test": 2}}
