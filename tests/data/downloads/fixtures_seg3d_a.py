"""Tiny copies of the official downloads of the seg3d_a tasks, in their publishers' folder and
file names (each writer cites the documentation it follows), with tiny volumes.

The authors' split lists name every case of ACDC, AMOS MRI, ATLAS, MM-WHS, CHAOS and IRCADb: the
writers write each listed case (small, 2-8 voxels a side) so that prepare finds a complete
download. BraTS 2021 lists 1251 cases: its writer writes BRATS_IDS (3 listed cases of each fold)
and the test restricts the shipped list to them (COUNTS follow from that).
"""

import io
import json
import os
import zipfile

import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from rasd_jax.data import downloads

# A realistic scanner affine: 1.25 x 1.25 mm in-plane, 5 mm slices, axes flipped and rotated.
AFFINE = np.array([[-1.25, 0.0, 0.0, 90.0],
                   [0.0, -1.2, 0.4, 120.5],
                   [0.0, 0.25, 4.9, -60.0],
                   [0.0, 0.0, 0.0, 1.0]])
SHAPE = (6, 5, 4)


def _rng(name):
  return np.random.default_rng(sum(map(ord, name)))


def nifti(path, data, affine=AFFINE):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  nib.save(nib.Nifti1Image(data, affine), path)


def image_and_label(image_path, label_path, values, name, shape=SHAPE):
  """An MR/CT-like float image and a label holding every value of `values` (and 0)."""
  rng = _rng(name)
  nifti(image_path, rng.normal(100, 20, shape).astype(np.float32))
  label = np.zeros(shape, np.uint16)
  flat = label.reshape(-1)
  flat[1:len(values) + 1] = values
  nifti(label_path, rng.permutation(flat).reshape(shape))


def _ids(split_list):
  lists = downloads.shipped(split_list)
  return lists["train"] + lists["val"]


# ACDC, https://www.creatis.insa-lyon.fr/Challenge/acdc/databases.html and the dataset's
# README: database/training/patientNNN/ holds Info.cfg (ED, ES, Group, Height, NbFrame, Weight),
# patientNNN_4d.nii.gz and the ED and ES frames patientNNN_frameXX.nii.gz with their masks
# patientNNN_frameXX_gt.nii.gz (0 background, 1 RV, 2 myocardium, 3 LV); database/testing/ holds
# patients 101-150 the same way.
def acdc(root):
  frames = {}
  for name in _ids("acdc.json"):
    frames.setdefault(name.split("_")[0], []).append(name)
  for patient, names in list(frames.items()) + [("patient101", ["patient101_frame01"])]:
    folder = os.path.join(root, "database", "testing" if patient == "patient101" else "training",
                          patient)
    os.makedirs(folder)
    numbers = sorted(int(n[-2:]) for n in names)
    with open(os.path.join(folder, "Info.cfg"), "w") as f:
      f.write(f"ED: {numbers[0]}\nES: {numbers[-1]}\nGroup: NOR\nHeight: 184.0\nNbFrame: 30\n"
              "Weight: 95.0\n")
    for name in names:
      image_and_label(os.path.join(folder, f"{name}.nii.gz"),
                      os.path.join(folder, f"{name}_gt.nii.gz"), (1, 2, 3), name)
    nifti(os.path.join(folder, f"{patient}_4d.nii.gz"), np.zeros((4, 4, 2, 3), np.int16))


# AMOS 2022, https://amos22.grand-challenge.org/ and https://zenodo.org/records/7262581
# (amos22.zip): amos22/ holds dataset.json and imagesTr, labelsTr, imagesVa, labelsVa, imagesTs
# of amos_NNNN.nii.gz; ids 0001-0500 are CT, above 500 MRI; labels 0-15 (1 spleen ... 15
# prostate/uterus). The training set's 40 MRI cases (the others are in the validation set), as
# a public nnU-Net 5-fold split of AMOS's imagesTr lists them:
AMOS_TR_MRI = ("0507 0508 0510 0514 0517 0518 0522 0530 0532 0538 0540 0541 0548 0551 0554 0555 "
               "0557 0558 0570 0571 0578 0580 0582 0583 0584 0585 0586 0587 0588 0589 0590 0591 "
               "0592 0593 0594 0595 0596 0597 0599 0600").split()


def amos_mri(root):
  base = os.path.join(root, "amos22")
  listed = {"training": [], "validation": []}
  for name in _ids("amos_mri.json") + ["amos_0001", "amos_0008"]:  # and two CT cases
    where = "Tr" if name[5:] in AMOS_TR_MRI or name == "amos_0001" else "Va"
    image_and_label(os.path.join(base, f"images{where}", f"{name}.nii.gz"),
                    os.path.join(base, f"labels{where}", f"{name}.nii.gz"), range(1, 16), name)
    listed["training" if where == "Tr" else "validation"].append(
        {"image": f"./images{where}/{name}.nii.gz", "label": f"./labels{where}/{name}.nii.gz"})
  nifti(os.path.join(base, "imagesTs", "amos_0501.nii.gz"), np.zeros((4, 4, 2), np.float32))
  with open(os.path.join(base, "dataset.json"), "w") as f:
    json.dump({"name": "AMOS", "labels": {"0": "background", "1": "spleen"}, **listed}, f)


# ATLAS 2023, https://atlas-challenge.u-bourgogne.fr/ (atlas-train-dataset-1.0.1.zip):
# atlas-train-dataset-1.0.1/train/imagesTr/imN.nii.gz and labelsTr/lbN.nii.gz, N = 0-59;
# labels 0 background, 1 liver, 2 tumour.
def atlas_mri(root):
  base = os.path.join(root, "atlas-train-dataset-1.0.1", "train")
  for name in _ids("atlas_mri.json"):
    image_and_label(os.path.join(base, "imagesTr", f"{name}.nii.gz"),
                    os.path.join(base, "labelsTr", f"lb{name[2:]}.nii.gz"), (1, 2), name)


# MM-WHS 2017, https://zmiclab.github.io/zxh/0/mmwhs/ (data page): mr_train.zip / ct_train.zip
# unpack to mr_train/ and ct_train/ holding {mr,ct}_train_1001 ... 1020 _image.nii.gz and
# _label.nii.gz; labels 205 LV myocardium, 420 LA, 500 LV, 550 RA, 600 RV, 820 ascending aorta,
# 850 pulmonary artery.
WHS_VALUES = (205, 420, 500, 550, 600, 820, 850)


def whs(modality):
  def write(root):
    folder = os.path.join(root, "MM-WHS 2017 Dataset", f"{modality}_train")
    for name in _ids(f"whs_{modality}.json"):
      image_and_label(os.path.join(folder, f"{name}_image.nii.gz"),
                      os.path.join(folder, f"{name}_label.nii.gz"), WHS_VALUES, name)
  return write


# BraTS 2021, https://www.synapse.org/#!Synapse:syn25829067 and the challenge paper
# (arXiv 2107.02314): RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021/BraTS2021_NNNNN/
# BraTS2021_NNNNN_{flair,t1,t1ce,t2,seg}.nii.gz; labels 1 necrotic core, 2 oedema, 4 enhancing.
BRATS_IDS = [ids[:3] for ids in downloads.shipped("brats21.json")["folds"]]


def brats21(root, training_data_level=False):
  base = os.path.join(root, "RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021",
                      *(["TrainingData"] if training_data_level else []))
  for name in (n for fold in BRATS_IDS for n in fold):
    folder = os.path.join(base, name)
    for channel in ("flair", "t1", "t1ce", "t2"):
      nifti(os.path.join(folder, f"{name}_{channel}.nii.gz"),
            _rng(name + channel).normal(300, 50, SHAPE).astype(np.float32))
    label = np.zeros(SHAPE, np.uint8)
    label[1, 1:4, 1:3] = np.array([[1], [2], [4]])
    nifti(os.path.join(folder, f"{name}_seg.nii.gz"), label)


def dicom_slice(path, pixels, position, orientation=(1, 0, 0, 0, 1, 0), spacing=(0.7, 0.8),
                intercept=-1024.0):
  """One CT slice (uint16 pixels, rescaled by `intercept`) with its geometry."""
  meta = pydicom.dataset.FileMetaDataset()
  meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
  meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
  meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
  ds = pydicom.dataset.FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
  ds.Modality = "CT"
  ds.Rows, ds.Columns = pixels.shape
  ds.ImagePositionPatient = [float(v) for v in position]
  ds.ImageOrientationPatient = [float(v) for v in orientation]
  ds.PixelSpacing = [float(v) for v in spacing]
  ds.SliceThickness = 2.5
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
  ds.RescaleSlope, ds.RescaleIntercept = 1.0, intercept
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ds.save_as(path, enforce_file_format=True)


def ct_slices(name, count, rows=12, columns=10):
  """`count` CT slices of (rows, columns) pixels and the z position of each, slice k highest
  first (CHAOS names its files from the top of the volume down)."""
  rng = _rng(name)
  return [(rng.integers(900, 1300, (rows, columns)), (-150.0, 80.0, 40.0 - 2.5 * k))
          for k in range(count)]


# CHAOS, https://chaos.grand-challenge.org/Data/ (CHAOS_Train_Sets.zip) and the organisers'
# evaluation code (github.com/emrekavur/CHAOS-evaluation, Data_3D/): Train_Sets/CT/N/DICOM_anon/
# i0000,0000b.dcm ... and Train_Sets/CT/N/Ground/liver_GT_000.png ..., one 8-bit PNG a slice,
# liver 255, paired with the DICOM files by name order; Train_Sets/MR/N/ holds the MRI part.
def chaos(root):
  base = os.path.join(root, "CHAOS_Train_Sets", "Train_Sets")
  for name in _ids("chaos.json"):
    slices = ct_slices(f"chaos{name}", 4)
    for k, (pixels, position) in enumerate(slices):
      dicom_slice(os.path.join(base, "CT", name, "DICOM_anon", f"i{k:04d},0000b.dcm"), pixels,
                  position)
      mask = np.zeros(pixels.shape, np.uint8)
      mask[2:4 + k, 3:6] = 255  # the liver grows from slice to slice: the order shows
      os.makedirs(os.path.join(base, "CT", name, "Ground"), exist_ok=True)
      Image.fromarray(mask).save(os.path.join(base, "CT", name, "Ground",
                                              f"liver_GT_{k:03d}.png"))
  os.makedirs(os.path.join(base, "MR", "1", "T2SPIR", "DICOM_anon"))


# 3D-IRCADb-01, https://www.ircad.fr/research/data-sets/liver-segmentation-3d-ircadb-01/
# (3Dircadb1.zip): 3Dircadb1/3Dircadb1.N/ holds PATIENT_DICOM.zip (PATIENT_DICOM/image_0 ...,
# DICOM files without a suffix), MASKS_DICOM.zip (MASKS_DICOM/<structure>/image_0 ..., one
# series a structure: liver, livertumor01, livertumor02, bone, portalvein, ...; 3Dircadb1.7 names
# its tumour "tumor"), LABELLED_DICOM.zip and MESHES_VTK.zip. IRCADB_UNZIPPED: patients whose
# zips the user unpacked in place.
IRCADB_UNZIPPED = ("3Dircadb1.15", "3Dircadb1.3")


def _ircadb_series(folder, name):
  """{relative path: DICOM bytes} of one patient: PATIENT_DICOM and MASKS_DICOM."""
  files = {}
  slices = ct_slices(name, 3, rows=10, columns=8)[::-1]  # image_0 the lowest slice here
  tumours = {"3Dircadb1.7": ["tumor"], "3Dircadb1.1": ["livertumor01", "livertumor02"]}.get(
      name, ["livertumor1"])
  masks = {"liver": (slice(1, 7), slice(1, 6)), "bone": (slice(8, 10), slice(0, 8)),
           tumours[0]: (slice(2, 4), slice(2, 4))}
  if len(tumours) > 1:
    masks[tumours[1]] = (slice(5, 6), slice(1, 3))
  for k, (pixels, position) in enumerate(slices):
    for series, values in [("PATIENT_DICOM", pixels)] + [
        (f"MASKS_DICOM/{s}", 255 * _box(pixels.shape, box, k))
        for s, box in masks.items()]:
      path = os.path.join(folder, "tmp.dcm")
      dicom_slice(path, values, position, intercept=0.0 if "MASKS" in series else -1024.0)
      with open(path, "rb") as f:
        files[f"{series}/image_{k}"] = f.read()
      os.remove(path)
  return files


def _box(shape, box, k):
  mask = np.zeros(shape, np.uint16)
  if k > 0:  # nothing in the lowest slice
    mask[box] = 1
  return mask


def ircadb(root):
  base = os.path.join(root, "3Dircadb1")
  for name in _ids("ircadb.json"):
    folder = os.path.join(base, name)
    os.makedirs(folder)
    files = _ircadb_series(folder, name)
    for archive in ("PATIENT_DICOM", "MASKS_DICOM"):
      if name in IRCADB_UNZIPPED:
        for relative, data in files.items():
          if relative.startswith(archive):
            os.makedirs(os.path.dirname(os.path.join(folder, relative)), exist_ok=True)
            with open(os.path.join(folder, relative), "wb") as f:
              f.write(data)
        continue
      buffer = io.BytesIO()
      with zipfile.ZipFile(buffer, "w") as z:
        for relative, data in files.items():
          if relative.startswith(archive):
            z.writestr(relative, data)
      with open(os.path.join(folder, f"{archive}.zip"), "wb") as f:
        f.write(buffer.getvalue())
    with zipfile.ZipFile(os.path.join(folder, "MESHES_VTK.zip"), "w") as z:
      z.writestr("MESHES_VTK/liver.vtk", "# vtk DataFile Version 3.0\n")


WRITERS = {"acdc": acdc, "amos_mri": amos_mri, "atlas_mri": atlas_mri, "whs_mr": whs("mr"),
           "whs_ct": whs("ct"), "brats21": brats21, "chaos": chaos, "ircadb": ircadb}
COUNTS = {"acdc": {"train": 160, "val": 40, "test": 0},
          "amos_mri": {"train": 48, "val": 12, "test": 0},
          "atlas_mri": {"train": 45, "val": 15, "test": 0},
          "whs_mr": {"train": 15, "val": 5, "test": 0},
          "whs_ct": {"train": 16, "val": 4, "test": 0},
          "brats21": {"train": 12, "val": 3, "test": 0},  # BRATS_IDS, fold 0
          "chaos": {"train": 16, "val": 4, "test": 0},
          "ircadb": {"train": 15, "val": 5, "test": 0}}
