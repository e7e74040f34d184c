"""3D segmentation downloads: BHSD, BTCV, MSD Task07 and Task09, COVID-19-20, PARSE 2022, SegTHOR,
VerSe 2020, TotalSegmentator.

Every task here follows the authors' split list, shipped in rasd_jax/data/splitlists with the
download's own case names, so a listing names every listed case (prepare reports the ones a
partial download lacks) and never the download's other cases (unlabelled test images, cases the
authors left out). Only two downloads need a conversion: TotalSegmentator's one binary mask per
structure (merged into one label map) and BHSD archives whose files lack the .nii.gz suffix.
"""

import gzip
import re

from etils import epath
import nibabel as nib
import numpy as np

from rasd_jax.data import downloads
from rasd_jax.data.downloads import Convert, Layout, Listing, Recipe, path
from rasd_jax.data.tasks import registry


def _in_place(task, image, label):
  """A layout's cases(root) for downloads with one image and one mask file a case, named by the
  templates `image` and `label`, relative to the root: {id} the case id, {n} its trailing digits
  (BTCV's case img0001 has the mask label0001)."""
  def files(root, case_id):
    names = {"id": case_id, "n": re.search(r"\d*$", case_id).group()}
    return {"image": path(root, image.format(**names)), "label": path(root, label.format(**names))}
  return lambda root: downloads.shipped_listing(f"{task}.json",
                                                lambda case_id: files(root, case_id))


# BHSD (https://github.com/White65534/BHSD): the Hugging Face archive label_192.zip unpacks to
# label_192/images/<case>.nii.gz + label_192/ground truths/<case>.nii.gz; its card warns that
# the files may need the .nii.gz suffix added, which prepare does on a copy.


def _gzip_copy(inputs, output):
  """A suffix-less NIfTI copied to `output` (.nii.gz), compressed if it is not already."""
  data = epath.Path(inputs[0]).read_bytes()
  epath.Path(output).write_bytes(data if data[:2] == b"\x1f\x8b" else gzip.compress(data))


def _bhsd_file(root, folder, case_id, kind):
  name = f"{case_id}.nii.gz"
  if (root / folder / name).exists() or not (root / folder / case_id).exists():
    return path(root, folder, name)
  return Convert(f"{kind}/{name}", (path(root, folder, case_id),), _gzip_copy)


def _bhsd_cases(root):
  return downloads.shipped_listing("bhsd.json", lambda i: {
      "image": _bhsd_file(root, "images", i, "images"),
      "label": _bhsd_file(root, "ground truths", i, "labels")})


# VerSe 2020 (https://github.com/anjany/verse, README "Data"): the MICCAI challenge release
# names a scan by its file stem, e.g. 01_training/verse401/verse401_verse201_CT-iso.nii.gz with
# mask verse401_verse201_CT-iso_seg.nii.gz (flat or in subject folders); the restructured BIDS
# release names the same scan dataset-01training/rawdata/sub-verse401/
# sub-verse401_split-verse201_dir-iso_ct.nii.gz, its mask derivatives/sub-verse401/
# sub-verse401_split-verse201_dir-iso_seg-vert_msk.nii.gz. The authors' list uses the MICCAI
# stems and does not say which split folder (training, validation, test) holds a case: all are
# searched.
_VERSE_MICCAI = ("0?_*/*.nii.gz", "0?_*/*/*.nii.gz")
_VERSE_BIDS = ("dataset-0*/rawdata/*/*_ct.nii.gz", "*/dataset-0*/rawdata/*/*_ct.nii.gz")


def _verse_key(name):
  """(subject and split ids, scan direction or None) of a MICCAI stem or a BIDS file name: both
  releases name a scan by the same ids; the direction (CT-iso / dir-iso) tells apart what
  remains."""
  name = name.lower()
  direction = re.search(r"(?:ct|dir)-([a-z]+)", name)
  return "_".join(re.findall(r"(?:verse|gl)\d+", name)), direction and direction.group(1)


def _verse_bids(root, case_id, scans):
  ids, direction = _verse_key(case_id)
  found = [s for s in scans if _verse_key(s.rsplit("/", 1)[-1])[0] == ids]
  if len(found) > 1:
    found = [s for s in found if _verse_key(s.rsplit("/", 1)[-1])[1] == direction]
  if len(found) != 1:  # absent (a partial download) or ambiguous: reported as missing
    subject = ids.split("_")[0]
    return {"image": path(root, "*", "rawdata", f"sub-{subject}", f"sub-{subject}*_ct.nii.gz"),
            "label": path(root, "*", "derivatives", f"sub-{subject}", f"sub-{subject}*_msk.nii.gz")}
  image = found[0]
  dataset, _, subject, name = image.rsplit("/", 3)
  return {"image": image, "label": "/".join(
      (dataset, "derivatives", subject, name[:-len("_ct.nii.gz")] + "_seg-vert_msk.nii.gz"))}


def _verse_cases(root):
  scans = [p for pattern in _VERSE_MICCAI for p in downloads.glob(root, pattern)
           if not p.endswith("_seg.nii.gz")]
  stems = {p.rsplit("/", 1)[-1][:-len(".nii.gz")]: p for p in scans}

  def files(case_id):
    image = stems.get(case_id, path(root, "*", f"{case_id}.nii.gz"))
    return {"image": image, "label": image[:-len(".nii.gz")] + "_seg.nii.gz"}
  return downloads.shipped_listing("verse20.json", files)


def _verse_bids_cases(root):
  scans = [p for pattern in _VERSE_BIDS for p in downloads.glob(root, pattern)]
  return downloads.shipped_listing("verse20.json", lambda i: _verse_bids(root, i, scans))


# TotalSegmentator v1 (https://zenodo.org/record/6802614, its README): Totalsegmentator_dataset/
# sNNNN/ct.nii.gz + sNNNN/segmentations/<structure>.nii.gz, one binary mask for each of the 104
# structures, and meta.csv. The masks are merged into one label map in the registry's class
# order (TotalSegmentator v1's "total" class map; its names are the mask file names).
_TOTALSEG = registry.get("totalsegmentator").classes[1:]


def _merge_masks(inputs, output):
  """One label map from binary masks: mask k (1-based) -> value k."""
  first = nib.load(inputs[0])
  label = np.zeros(first.shape, np.uint8)
  for value, mask_path in enumerate(inputs, start=1):
    mask = nib.load(mask_path)
    if mask.shape != first.shape or not np.allclose(mask.affine, first.affine, atol=1e-3):
      raise ValueError(f"mask {mask_path} has shape {mask.shape} and affine {mask.affine.tolist()}"
                       f", not those of {inputs[0]} ({first.shape})")
    label[np.asarray(mask.dataobj) > 0] = value
  nib.save(nib.Nifti1Image(label, first.affine), output)


def _totalseg_cases(root):
  def files(case_id):
    masks = tuple(path(root, case_id, "segmentations", f"{name}.nii.gz") for name in _TOTALSEG)
    return {"image": path(root, case_id, "ct.nii.gz"),
            "label": Convert(f"labels/{case_id}.nii.gz", masks, _merge_masks)}
  return downloads.shipped_listing("totalsegmentator.json", files)


def _covid_cases(root):
  """Covid19_20_folds.json gives every training case a fold; fold k validates on it."""
  folds = downloads.shipped("covid19_20.json")["folds"]
  cases = {i: {"image": path(root, "Train", f"{i}_ct.nii.gz"),
               "label": path(root, "Train", f"{i}_seg.nii.gz")} for fold in folds for i in fold}
  return Listing(cases=cases, folds=[
      {"train": [i for j, other in enumerate(folds) if j != k for i in other], "val": fold,
       "test": None} for k, fold in enumerate(folds)])


def _msd(task, number, name, prefix):
  """A Medical Segmentation Decathlon task: TaskNN_Name/{imagesTr,labelsTr}/<case>.nii.gz."""
  return Recipe(
      task=task, page="http://medicaldecathlon.com/",
      download=f"Task{number:02d}_{name}.tar from the Medical Segmentation Decathlon (Google Drive "
               "or AWS), unpacked",
      layouts=(Layout("msd", ("dataset.json", f"imagesTr/{prefix}_*.nii.gz",
                              f"labelsTr/{prefix}_*.nii.gz"),
                      _in_place(task, "imagesTr/{id}.nii.gz", "labelsTr/{id}.nii.gz")),),
      notes="read in place from imagesTr / labelsTr (the macOS ._* files beside them ignored); "
            f"split: the authors' list (splitlists/{task}.json), its unlabelled imagesTs entries "
            "left out")


RECIPES = [
    Recipe(
        task="bhsd", page="https://github.com/White65534/BHSD",
        download="label_192.zip (192 volumes with pixel-level annotations) from "
                 "https://huggingface.co/datasets/WuBiao/BHSD, unpacked",
        layouts=(Layout("label_192", ("images/ID_*", "ground truths/ID_*"), _bhsd_cases),),
        notes="read in place (a file without the .nii.gz suffix is copied with it); split: the "
              "authors' BHSD.json (splitlists/bhsd.json), 153 train / 39 val"),
    Recipe(
        task="btcv", page="https://www.synapse.org/#!Synapse:syn3193805/wiki/217789",
        download="RawData.zip of the Multi-Atlas Labeling Beyond the Cranial Vault challenge "
                 "(Synapse, Abdomen), unpacked; or MONAI's BTCV folder (imagesTr, labelsTr)",
        layouts=(
            Layout("synapse", ("Training/img/img*.nii.gz", "Training/label/label*.nii.gz"),
                   _in_place("btcv", "Training/img/{id}.nii.gz", "Training/label/label{n}.nii.gz")),
            Layout("monai", ("imagesTr/img*.nii.gz", "labelsTr/label*.nii.gz"),
                   _in_place("btcv", "imagesTr/{id}.nii.gz", "labelsTr/label{n}.nii.gz")),
        ),
        notes="read in place; split: the authors' dataset/dataset_1.json "
              "(splitlists/btcv.json), 24 train / 6 val"),
    _msd("msd07", 7, "Pancreas", "pancreas"),
    _msd("msd09", 9, "Spleen", "spleen"),
    Recipe(
        task="covid19_20", page="https://covid-segmentation.grand-challenge.org/Data/",
        download="COVID-19-20_v2.zip of the COVID-19 Lung CT Lesion Segmentation Challenge "
                 "2020, unpacked (Train/ and Validation/)",
        layouts=(Layout("challenge", ("Train/volume-covid19-A-*_ct.nii.gz",
                                      "Train/volume-covid19-A-*_seg.nii.gz"), _covid_cases),),
        notes="read in place from Train/ (Validation/ has no masks); folds: the authors' "
              "Covid19_20_folds.json (splitlists/covid19_20.json), 5 folds, fold 0 159 / 40"),
    Recipe(
        task="parse22", page="https://parse2022.grand-challenge.org/Dataset/",
        download="the PARSE 2022 training data (train/PAxxxxxx/{image,label}), unpacked",
        layouts=(Layout("challenge", ("train/PA*/image/PA*.nii.gz", "train/PA*/label/PA*.nii.gz"),
                        _in_place("parse22", "train/{id}/image/{id}.nii.gz",
                                  "train/{id}/label/{id}.nii.gz")),),
        notes="read in place; split: the authors' Parse22.json (splitlists/parse22.json), "
              "80 train / 20 val"),
    Recipe(
        task="segthor", page="https://competitions.codalab.org/competitions/21145",
        download="train.zip of the SegTHOR challenge (train/Patient_NN/{Patient_NN,GT}.nii.gz), "
                 "unpacked",
        layouts=(Layout("challenge", ("train/Patient_*/GT.nii.gz",),
                        _in_place("segthor", "train/{id}/{id}.nii.gz", "train/{id}/GT.nii.gz")),),
        notes="read in place; split: the authors' dataset.json training[:-8] / training[-8:] "
              "(splitlists/segthor.json), Patient_01-32 train / Patient_33-40 val"),
    Recipe(
        task="verse20", page="https://github.com/anjany/verse",
        download="the VerSe'20 training, validation and test archives (dataset-verse20training"
                 ".zip, ...validation.zip, ...test.zip, or the MICCAI 2020 release from OSF), "
                 "unpacked side by side",
        layouts=(
            Layout("miccai", ("01_training/*/*_seg.nii.gz",), _verse_cases),
            Layout("miccai, flat", ("01_training/*_seg.nii.gz",), _verse_cases),
            # First: where each archive unpacked into its own folder, the folder above them.
            Layout("bids, one folder per archive", ("*/dataset-01training/rawdata",),
                   _verse_bids_cases),
            Layout("bids", ("dataset-01training/rawdata", "dataset-01training/derivatives"),
                   _verse_bids_cases),
        ),
        notes="read in place; split: the authors' VerSe.json (splitlists/verse20.json), 99 "
              "train / 8 val, named by MICCAI file stems and matched to the BIDS release by "
              "subject, split and direction; labels 1-28 as VerSe numbers the vertebrae"),
    Recipe(
        task="totalsegmentator", page="https://zenodo.org/record/6802614",
        download="Totalsegmentator_dataset.zip (v1, 104 structures) from Zenodo, unpacked",
        layouts=(Layout("v1", ("meta.csv", "s*/ct.nii.gz",
                               "s*/segmentations/heart_myocardium.nii.gz"), _totalseg_cases),),
        notes="the 104 binary masks of a case are merged into converted/labels/<case>.nii.gz in "
              "the v1 class order; split: the authors' Totalsegmentator.json "
              "(splitlists/totalsegmentator.json), 11 train / 21 val, s0970 in both"),
]
