"""Tiny copies of the pathology and ultrasound downloads, in their publishers' folder and file
names (each writer cites the documentation its layout comes from). Images are 16-32 px (MIDOG's
whole-slide TIFFs a little larger, so that a patch fits), labels hold the values the real data
holds. WRITERS: {task: fn(folder) -> the dataset's own folder}; COUNTS: what prepare reports."""

import json
import os

import h5py
import numpy as np
from PIL import Image

_RNG = np.random.default_rng(17)


def _rgb(shape=(24, 28)):
  return _RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)


def _save(array, *parts, **kwargs):
  file = os.path.join(*parts)
  os.makedirs(os.path.dirname(file), exist_ok=True)
  image = array if isinstance(array, Image.Image) else Image.fromarray(array)
  image.save(file, **kwargs)
  return file


def _blob(shape=(24, 28), value=255):
  mask = np.zeros(shape, np.uint8)
  mask[5:14, 6:17] = value
  return mask


def _text(text, *parts):
  file = os.path.join(*parts)
  os.makedirs(os.path.dirname(file), exist_ok=True)
  with open(file, "w", encoding="utf-8") as f:
    f.write(text)


# GlaS (https://warwick.ac.uk/fac/cross_fac/tia/data/glascontest/download/): the zip holds one
# folder "Warwick QU Dataset (Released 2016_07_08)" with train_n.bmp / testA_n.bmp / testB_n.bmp,
# their instance annotations <name>_anno.bmp (0 background, 1..k one gland each) and Grade.csv
# (name, patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)).
def glas(folder):
  root = os.path.join(folder, "Warwick QU Dataset (Released 2016_07_08)")
  rows = ["name,patient ID,grade (GlaS),grade (Sirinukunwattana et al. 2015)"]
  for name, patient in (("train_1", 1), ("train_2", 1), ("train_3", 2), ("testA_1", 3),
                        ("testA_2", 4), ("testB_1", 5)):
    _save(_rgb(), root, name + ".bmp")
    anno = np.zeros((24, 28), np.uint8)
    anno[2:9, 3:10], anno[12:20, 14:25] = 1, 2
    _save(anno, root, name + "_anno.bmp")
    rows.append(f"{name},{patient},benign,adenomatous")
  _text("\n".join(rows) + "\n", root, "Grade.csv")
  return root


# CoCaHis (https://cocahis.irb.hr/): one file CoCaHis.hdf5; HE/raw (and the stain-normalised
# HE/sn1, HE/sn2) hold the RGB images, GT/GT1..GT7 the annotators' masks and
# GT/GT_majority_vote their vote; the HE group's attributes patient_num, image_num and
# train_test_split ("train" / "test") describe each image.
def cocahis(folder):
  os.makedirs(folder, exist_ok=True)
  images = np.stack([_rgb() for _ in range(5)])
  votes = np.zeros((5, 24, 28), bool)
  for i in range(5):
    votes[i, 3 + i:12 + i, 4:20] = True
  with h5py.File(os.path.join(folder, "CoCaHis.hdf5"), "w") as f:
    he = f.create_group("HE")
    for key in ("raw", "sn1", "sn2"):
      he.create_dataset(key, data=images)
    he.attrs["patient_num"] = np.array(["1", "1", "2", "3", "3"], dtype=h5py.string_dtype())
    he.attrs["image_num"] = np.array(["1", "2", "1", "1", "2"], dtype=h5py.string_dtype())
    he.attrs["train_test_split"] = np.array(["train", "train", "train", "test", "test"],
                                            dtype=h5py.string_dtype())
    gt = f.create_group("GT")
    gt.create_dataset("GT_majority_vote", data=votes)
    for k in range(1, 8):
      gt.create_dataset(f"GT{k}", data=votes)
  return folder


# TNBC (https://zenodo.org/record/1175282): TNBC_NucleiSegmentation.zip unpacks to
# TNBC_NucleiSegmentation/Slide_xx/xx_n.png (xx: one of 11 patients) and GT_xx/xx_n.png, the
# binary nucleus masks (0/255).
def tnbc(folder):
  root = os.path.join(folder, "TNBC_NucleiSegmentation")
  for patient, n in (("01", 1), ("01", 2), ("02", 1), ("09", 1), ("11", 1)):
    _save(_rgb(), root, f"Slide_{patient}", f"{patient}_{n}.png")
    _save(_blob(), root, f"GT_{patient}", f"{patient}_{n}.png")
  return root


MONUSAC_RECTS = {"Epithelial": (2, 3, 9, 8), "Lymphocyte": (12, 2, 16, 6),
                 "Macrophage": (3, 12, 8, 18), "Neutrophil": (14, 14, 20, 19),
                 "Ambiguous": (20, 2, 24, 6)}  # x0, y0, x1, y1 of one region each


def _monusac_xml(names):
  annotations = []
  for i, name in enumerate(names, 1):
    x0, y0, x1, y1 = MONUSAC_RECTS[name]
    vertices = "".join(f'<Vertex X="{x}" Y="{y}" Z="0"/>'
                       for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1)))
    annotations.append(
        f'<Annotation Id="{i}" ReadOnly="0" LineColor="65280" Visible="1">'
        f'<Attributes><Attribute Name="{name}" Id="0" Value=""/></Attributes>'
        '<Regions><RegionAttributeHeaders/>'
        f'<Region Id="1" Type="0" Zoom="1" Selected="0"><Attributes/>'
        f'<Vertices>{vertices}</Vertices></Region></Regions><Plots/></Annotation>')
  return f'<?xml version="1.0"?><Annotations MicronsPerPixel="0.25">{"".join(annotations)}' \
         '</Annotations>'


# MoNuSAC (https://monusac-2020.grand-challenge.org/Data/ and the organisers' mask code,
# https://github.com/ruchikaverma-iitg/MoNuSAC): MoNuSAC_images_and_annotations/<patient>/
# <patient>_<n>.svs, .tif and .xml (Aperio ImageScope: one Annotation per cell type, named by
# its Attribute, its Regions' Vertices the nuclei outlines); the test zip MoNuSAC Testing Data
# and Annotations/ has the same layout and also marks Ambiguous regions.
def monusac(folder):
  cases = {("MoNuSAC_images_and_annotations", "TCGA-5P-A9K0-01Z-00-DX1", 1):
           ("Epithelial", "Lymphocyte"),
           ("MoNuSAC_images_and_annotations", "TCGA-5P-A9K0-01Z-00-DX1", 2): ("Macrophage",),
           ("MoNuSAC_images_and_annotations", "TCGA-55-1594-01Z-00-DX1", 3):
           ("Neutrophil", "Epithelial"),
           ("MoNuSAC Testing Data and Annotations", "TCGA-2Z-A9JG-01Z-00-DX1", 1):
           ("Lymphocyte", "Ambiguous"),
           ("MoNuSAC Testing Data and Annotations", "TCGA-69-A59K-01Z-00-DX1", 2):
           ("Epithelial", "Macrophage", "Neutrophil")}
  for (part, patient, n), names in cases.items():
    _save(_rgb(), folder, part, patient, f"{patient}_{n}.tif")
    _text(_monusac_xml(names), folder, part, patient, f"{patient}_{n}.xml")
    _text("not a slide", folder, part, patient, f"{patient}_{n}.svs")
  return folder


# Janowczyk epithelium (http://www.andrewjanowczyk.com/use-case-2-epithelium-segmentation/):
# epi.tgz unpacks into epi/: 42 images <patient>_500_f<n>_original.tif with their binary masks
# <patient>_500_f<n>_mask.png (0/255); "a base is for example 12750 in
# 12750_500_f00003_original.tif" (the tutorial's patch extraction code).
def janowczyk_epithelium(folder):
  root = os.path.join(folder, "epi")
  for name in ("8865_500_f00003", "8865_500_f00012", "10262_500_f00182", "12750_500_f00003",
               "12750_500_f00041"):
    _save(_rgb(), root, name + "_original.tif")
    _save(_blob(), root, name + "_mask.png")
  return root


# CRAG (https://warwick.ac.uk/fac/cross_fac/tia/data/mildnet/): CRAG_v2 holds CRAG/train/
# {Images,Annotation,Overlay}/train_n.png and CRAG/valid/{...}/test_n.png (173 / 40); the
# annotations are instance labels (0 background, one id a gland).
def crag(folder):
  root = os.path.join(folder, "CRAG")
  for part, name in (("train", "train_1"), ("train", "train_2"), ("train", "train_3"),
                     ("valid", "test_1"), ("valid", "test_2")):
    _save(_rgb(), root, part, "Images", name + ".png")
    anno = np.zeros((24, 28), np.uint8)
    anno[1:8, 2:12], anno[14:22, 10:26] = 1, 7
    _save(anno, root, part, "Annotation", name + ".png")
    _save(_rgb(), root, part, "Overlay", name + ".png")
  return root


MIDOG_SHAPE = (150, 170)  # rows, columns of the whole images (a 128 px patch fits)
MIDOG_CELLS = {1: [(1, (20, 30)), (2, (160, 140))], 51: [(1, (80, 70))],
               101: [(2, (5, 140)), (1, (90, 75))]}  # image: [(category, (x, y) centre)]


# MIDOG 2021 (https://zenodo.org/record/4643381 and the challenge's reference code): the 200
# training images 001.tiff-200.tiff (001-050 Hamamatsu XR, 051-100 Hamamatsu S360, 101-150
# Aperio CS2, 151-200 Leica GT450, unlabelled) and MIDOG.json, COCO style: images {id,
# file_name, width, height}, categories 1 "mitotic figure" and 2 "hard negative", annotations
# {bbox [x1, y1, x2, y2] 50 px around the cell, category_id, image_id, id}.
def midog21(folder):
  os.makedirs(folder, exist_ok=True)
  coco = {"images": [], "annotations": [],
          "categories": [{"id": 1, "name": "mitotic figure"}, {"id": 2, "name": "hard negative"}]}
  next_id = 1
  for image in (1, 51, 101, 151):
    name = f"{image:03d}.tiff"
    _save(_rgb(MIDOG_SHAPE), folder, name)
    coco["images"].append({"id": image, "file_name": name, "width": MIDOG_SHAPE[1],
                           "height": MIDOG_SHAPE[0]})
    for category, (x, y) in MIDOG_CELLS.get(image, []):
      coco["annotations"].append({"bbox": [x - 25, y - 25, x + 25, y + 25],
                                  "category_id": category, "image_id": image, "id": next_id,
                                  "labels": 1})
      next_id += 1
  _text(json.dumps(coco), folder, "MIDOG.json")
  return folder


NUCLS_SHAPE = (72, 80)  # a FOV is larger than the 64 px crop, as the real ones (~300 px) are
NUCLS_FOVS = {
    "TCGA-A1-A0SP-DX1_id-5ea4095addda5f8398977ebc_left-7053_top-53967_bottom-54000_right-7090":
    [("tumor_any", (4, 5, 14, 16)), ("sTIL", (40, 30, 50, 40)), ("AMBIGUOUS", (2, 20, 8, 28))],
    "TCGA-E2-A1B0-DX1_id-5ea40a88ddda5f839899b1ee_left-1000_top-2000_bottom-2030_right-1036":
    [("nonTIL_stromal", (10, 10, 18, 20)), ("other_nucleus", (25, 2, 32, 9))],
    "TCGA-A2-A0CM-DX1_id-5ea40b1fddda5f83989a0a3d_left-5000_top-6000_bottom-6040_right-5040":
    [("tumor_any", (6, 6, 16, 16)), ("nonTIL_stromal", (30, 20, 38, 30))]}


# NuCLS (https://sites.google.com/view/nucls/ and its README): the corrected single-rater
# dataset holds rgb/<fov>.png, mask/<fov>.png, visualization/, csv/<fov>.csv (one nucleus a
# row: raw_classification, main_classification, super_classification (tumor_any,
# nonTIL_stromal, sTIL, other_nucleus, AMBIGUOUS), type, xmin, ymin, xmax, ymax, coords_x,
# coords_y), csv/ALL_FOV_LOCATIONS.csv, and train_test_splits/fold_<k>_{train,test}.csv
# (slide_name); <fov> starts with the slide name TCGA-<site>-<patient>-DX1.
def nucls(folder):
  header = ("raw_classification,main_classification,super_classification,type,xmin,ymin,"
            "xmax,ymax,coords_x,coords_y")
  for fov, nuclei in NUCLS_FOVS.items():
    _save(_rgb(NUCLS_SHAPE), folder, "rgb", fov + ".png")
    _save(np.zeros((*NUCLS_SHAPE, 3), np.uint8), folder, "mask", fov + ".png")
    rows = [header] + [f"x,x,{c},rectangle,{x0},{y0},{x1},{y1},\"{x0},{x1}\",\"{y0},{y1}\""
                       for c, (x0, y0, x1, y1) in nuclei]
    _text("\n".join(rows) + "\n", folder, "csv", fov + ".csv")
  _text("fovname,slide_name,xmin,ymin,xmax,ymax\n", folder, "csv", "ALL_FOV_LOCATIONS.csv")
  _text("slide_name,hospital\nTCGA-A1-A0SP-DX1,A1\nTCGA-A2-A0CM-DX1,A2\n", folder,
        "train_test_splits", "fold_1_train.csv")
  _text("slide_name,hospital\nTCGA-E2-A1B0-DX1,E2\n", folder, "train_test_splits",
        "fold_1_test.csv")
  return folder


WSSS4LUAD_PALETTE = [0, 64, 128, 64, 128, 0, 243, 152, 0, 255, 255, 255]
WSSS4LUAD_MASKS = {("2.validation", "00"): (0, 1), ("2.validation", "01"): (2,),
                   ("3.testing", "00"): (0, 2), ("3.testing", "01"): (0, 1, 2)}  # classes held


# WSSS4LUAD (https://wsss4luad.grand-challenge.org/, its Dataset page): 1.training/
# <slide>-<x>-<y>-[a, b, c].png (a, b, c: tumor, stroma, normal present, 0/1; 10,091
# patches); 2.validation/{img,mask,background-mask}/nn.png (40: 00.png-39.png) and 3.testing/
# likewise (80); the masks are palette PNGs, index 0 tumor (0, 64, 128), 1 stroma (64, 128, 0),
# 2 normal (243, 152, 0), 3 background (255, 255, 255).
def wsss4luad(folder):
  for name in ("436219-7159-48057-[1, 0, 0].png", "436219-7159-48281-[1, 1, 0].png",
               "436291-4599-17505-[0, 1, 1].png", "1023469-11488-29436-[0, 0, 1].png"):
    _save(_rgb(), folder, "1.training", name)
  regions = ((slice(2, 10), slice(3, 12)), (slice(14, 20), slice(15, 25)),
             (slice(12, 22), slice(1, 8)))
  for (part, n), held in WSSS4LUAD_MASKS.items():
    _save(_rgb(), folder, part, "img", n + ".png")
    classes = np.full((24, 28), 3, np.uint8)
    for value in held:
      classes[regions[value]] = value
    mask = Image.fromarray(classes, mode="P")
    mask.putpalette(WSSS4LUAD_PALETTE)
    _save(mask, folder, part, "mask", n + ".png")
    _save((classes == 3).astype(np.uint8) * 255, folder, part, "background-mask", n + ".png")
  return folder


def _jpeg_mask(*parts):
  return _save(_blob(), *parts, quality=75)


# TN3K (the TRFE-Net README, https://github.com/haifangong/TRFE-Net-for-thyroid-nodule-
# segmentation, and the dataset card on Hugging Face haifan-gong/TN3K): tn3k/trainval-image/
# nnnn.jpg + trainval-mask/nnnn.jpg (2879), test-image + test-mask (614), label4trainval.csv,
# label4test.csv, tn3k-trainval-fold<k>.json; masks are JPEGs of 0/255.
def tn3k(folder):
  root = os.path.join(folder, "Thyroid Dataset", "tn3k")
  for part, count in (("trainval", 3), ("test", 2)):
    for n in range(count):
      _save(_rgb(), root, f"{part}-image", f"{n:04d}.jpg", quality=90)
      _jpeg_mask(root, f"{part}-mask", f"{n:04d}.jpg")
    _text("".join(f"{n:04d}.jpg,{n % 2}\n" for n in range(count)), root,
          f"label4{part}.csv")
  _text(json.dumps({"train": [0, 1], "val": [2]}), root, "tn3k-trainval-fold0.json")
  return root


# TG3K (the TRFE-Net code, dataloaders/tg3k.py): tg3k/thyroid-image/nnnn.jpg,
# thyroid-mask/nnnn.jpg and tg3k-trainval.json {"train": [image numbers], "val": [...]}.
def tg3k(folder):
  root = os.path.join(folder, "Thyroid Dataset", "tg3k")
  for n in range(5):
    _save(_rgb(), root, "thyroid-image", f"{n:04d}.jpg", quality=90)
    _jpeg_mask(root, "thyroid-mask", f"{n:04d}.jpg")
  _text(json.dumps({"train": [0, 1, 2], "val": [3, 4]}), root, "tg3k-trainval.json")
  return root


# DDTI (https://www.kaggle.com/datasets/dasmehdixtr/ddti-thyroid-ultrasound-images, the
# "Thyroid Dataset" bundle): DDTI dataset/DDTI/1_or_data/image/<n>.PNG + 1_or_data/mask/<n>.PNG
# (0/255) with category.csv (ID, CATE), and the cropped 2_preprocessed_data/stage1/p_image,
# p_mask.
def ddti(folder):
  root = os.path.join(folder, "DDTI dataset", "DDTI")
  for n in (1, 2, 3, 10):
    _save(_rgb()[..., 0], root, "1_or_data", "image", f"{n}.PNG")
    _save(_blob(), root, "1_or_data", "mask", f"{n}.PNG")
    _save(_rgb((16, 16))[..., 0], root, "2_preprocessed_data", "stage1", "p_image", f"{n}.PNG")
    _save(_blob((16, 16)), root, "2_preprocessed_data", "stage1", "p_mask", f"{n}.PNG")
  _text("ID,CATE\n1,0\n2,1\n3,0\n10,1\n", root, "1_or_data", "category.csv")
  return root


# MMOTU (https://github.com/cv516Buaa/MMOTU_DS2Net README): OTU_2d/images/<n>.JPG,
# annotations/<n>.PNG (colour masks), <n>_binary.PNG (tumour 255), train.txt / val.txt (one
# image id a line), train_cls.txt / val_cls.txt ("<n>.JPG <class 0-7>" a line).
def mmotu(folder):
  root = os.path.join(folder, "OTU_2d")
  labels = {"1": 0, "2": 3, "5": 7, "8": 1, "13": 5}
  for n in labels:
    _save(_rgb(), root, "images", n + ".JPG", format="JPEG", quality=90)
    colour = np.zeros((24, 28, 3), np.uint8)
    colour[_blob() > 0] = (64, 0, 128)
    _save(colour, root, "annotations", n + ".PNG")
    _save(_blob(), root, "annotations", n + "_binary.PNG")
  _text("1\n2\n5\n", root, "train.txt")
  _text("8\n13\n", root, "val.txt")
  _text("".join(f"{n}.JPG {labels[n]}\n" for n in ("1", "2", "5")), root, "train_cls.txt")
  _text("".join(f"{n}.JPG {labels[n]}\n" for n in ("8", "13")), root, "val_cls.txt")
  return root


WRITERS = {"glas": glas, "cocahis": cocahis, "tnbc": tnbc, "monusac": monusac,
           "janowczyk_epithelium": janowczyk_epithelium, "crag": crag, "midog21": midog21,
           "nucls": nucls, "wsss4luad": wsss4luad, "tn3k": tn3k, "tg3k": tg3k, "ddti": ddti,
           "mmotu_seg": mmotu, "mmotu_cls": mmotu}

COUNTS = {"glas": {"train": 3, "val": 0, "test": 3},
          "cocahis": {"train": 3, "val": 0, "test": 2},
          "tnbc": {"train": 3, "val": 0, "test": 2},
          "monusac": {"train": 3, "val": 0, "test": 2},
          "janowczyk_epithelium": {"train": 5, "val": 0, "test": 0},
          "crag": {"train": 3, "val": 0, "test": 2},
          "midog21": {"train": 3, "val": 0, "test": 2},
          "nucls": {"train": 4, "val": 0, "test": 2},
          "wsss4luad": {"train": 4, "val": 2, "test": 2},
          "tn3k": {"train": 3, "val": 0, "test": 2},
          "tg3k": {"train": 3, "val": 2, "test": 0},
          "ddti": {"train": 4, "val": 0, "test": 0},
          "mmotu_seg": {"train": 3, "val": 2, "test": 0},
          "mmotu_cls": {"train": 3, "val": 2, "test": 0}}
