"""The 56 downstream tasks of the RaSD protocol, as plain data (schema.Task).

Values are the reference code defaults read in TASKS.md (sections 1-3) or, for tasks without a
reference folder (section 4 and the two extra tasks of section 5), the dataset's standard public
protocol, marked `inferred`. Reference defects that TASKS.md section 6 lists are not copied:
metrics follow the standard definitions of `rasd_jax.evaluation.metrics` (segmentation Dice
excludes background; fundus masks come from sigmoid probabilities > 0.5 after [0, 1] scaling;
an empty class is left out, never scored 0), and schedulers step once per iteration.
"""

import difflib

from rasd_jax.data.augmentation import Augmentation
from rasd_jax.data.tasks.schema import (MODALITY_GROUPS, SEGMENTATION_METRICS, Inference,
                                        Optimizer, Sampling, Schedule, Task)

# 3D segmentation (TASKS.md section 1): SwinUNETR-v2, the CT-T / MR-T templates.

_MSD_FILES = "imagesTr/*_0000.nii.gz + labelsTr/*.nii.gz, paths relative to the data dir"


def _msd_files(json_name, prefix):
  return {"json": json_name, "train": "training", "val": "validation",
          "image": f"imagesTr/{prefix}_{{n:03d}}_0000.nii.gz",
          "label": f"labelsTr/{prefix}_{{n:03d}}.nii.gz"}


def _ct(a_min, a_max, spacing):
  return {"template": "CT-T", "intensity": "window", "a_min": a_min, "a_max": a_max,
          "spacing": spacing}


def _mr():
  return {"template": "MR-T", "intensity": "zscore_nonzero", "spacing": None}


def _seg3d_protocol(epochs, warmup, eval_every, pos, patches, algorithm="adamw",
                    weight_decay=1e-5):
  """The 3D loop: AdamW lr 3e-4, one volume a batch cut into `patches` patches, overlap 0.75."""
  return {"optimizer": Optimizer(algorithm, lr=3e-4, weight_decay=weight_decay),
          "schedule": Schedule(epochs, warmup, eval_every),
          "sampling": Sampling(batch=1, patches_per_case=patches, pos=pos, neg=1),
          "inference": Inference(overlap=0.75)}


def _seg3d(name, title, modality, classes, split, preprocessing, roi, protocol,
           layout_notes=None, **fields):
  return Task(name=name, title=title, modality=modality, ndim=3, kind="segmentation",
              classes=("background",) + tuple(classes), in_channels=fields.pop("in_channels", 1),
              layout="decathlon_json", layout_notes=layout_notes or _MSD_FILES, split=split,
              preprocessing=preprocessing, roi=roi, metrics=SEGMENTATION_METRICS, **protocol,
              **fields)


_ABDOMEN_13 = ("spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver",
               "stomach", "aorta", "inferior vena cava", "portal and splenic vein", "pancreas",
               "right adrenal gland", "left adrenal gland")
_AMOS_15 = ("spleen", "right kidney", "left kidney", "gallbladder", "esophagus", "liver",
            "stomach", "aorta", "postcava", "pancreas", "right adrenal gland",
            "left adrenal gland", "duodenum", "bladder", "prostate/uterus")
# MM-WHS label values; the class order follows the reference code's remap.
_WHS_MAP = {205: 1, 420: 2, 500: 3, 550: 4, 600: 5, 820: 6, 850: 7}
_WHS_7 = ("LV myocardium", "left atrium", "left ventricle", "right atrium", "right ventricle",
          "ascending aorta", "pulmonary artery")
_WHS_NOTES = ("labels remapped 205,420,500,550,600,820,850 -> 1..7 (label_map); the JSON's label "
              "names disagree with that remap, the class names here follow the remap")
_VERSE_28 = (tuple(f"C{i}" for i in range(1, 8)) + tuple(f"T{i}" for i in range(1, 13))
             + tuple(f"L{i}" for i in range(1, 7)) + ("sacrum", "coccyx", "T13"))
# TotalSegmentator v1 "total" class map, labels 1..104 in order.
_TOTALSEG_104 = (
    ("spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "aorta",
     "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
     "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
     "lung_middle_lobe_right", "lung_lower_lobe_right")
    + tuple(f"vertebrae_L{i}" for i in range(5, 0, -1))
    + tuple(f"vertebrae_T{i}" for i in range(12, 0, -1))
    + tuple(f"vertebrae_C{i}" for i in range(7, 0, -1))
    + ("esophagus", "trachea", "heart_myocardium", "heart_atrium_left", "heart_ventricle_left",
       "heart_atrium_right", "heart_ventricle_right", "pulmonary_artery", "brain",
       "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right",
       "small_bowel", "duodenum", "colon")
    + tuple(f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13))
    + ("humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
       "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right", "sacrum", "face",
       "gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
       "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right", "autochthon_left",
       "autochthon_right", "iliopsoas_left", "iliopsoas_right", "urinary_bladder"))

_SEG3D = [
    _seg3d("acdc", "ACDC cardiac cine MRI", "MRI", ("RV", "MYO", "LV"),
           "ACDC.json: 160 train / 40 val (+100 test images, unused)", _mr(), (192, 192, 32),
           _seg3d_protocol(300, 5, 10, pos=1, patches=2),
           files=_msd_files("ACDC.json", "patient")),
    _seg3d("amos_mri", "AMOS abdominal MRI", "MRI", _AMOS_15,
           "AMOS_MRI.json: 48 train / 12 val (+40 test, unused)", _mr(), (192, 192, 32),
           _seg3d_protocol(300, 5, 10, pos=9, patches=2),
           notes="the reference JSON spells aorta 'arota'",
           files=_msd_files("AMOS_MRI.json", "amos")),
    _seg3d("atlas_mri", "ATLAS liver and tumour, CE-T1w MRI", "MRI", ("liver", "tumour"),
           "ATLAS-MRI.json: 45 train / 15 val", _mr(), (96, 96, 96),
           _seg3d_protocol(300, 5, 10, pos=1, patches=2),
           files=_msd_files("ATLAS-MRI.json", "im")),
    _seg3d("whs_mr", "MM-WHS whole heart, MRI", "MRI", _WHS_7,
           "MM-WHS-MRI.json: 15 train / 5 val", _mr(), (96, 96, 96),
           _seg3d_protocol(300, 5, 10, pos=1, patches=4),
           layout_notes="MM-WHS-MRI.json; images/*.nii.gz + labels/*.nii.gz",
           label_map=_WHS_MAP, notes=_WHS_NOTES,
           files={"json": "MM-WHS-MRI.json", "train": "training", "val": "validation",
                  "image": "images/mr_train_{n:04d}_image.nii.gz",
                  "label": "labels/mr_train_{n:04d}_label.nii.gz"}),
    _seg3d("brats21", "BraTS 2021 glioma, multi-parametric MRI", "MRI", ("NCR", "ED", "ET"),
           "brats21_folds.json, 5 folds; fold 0: 1000 train / 251 val", _mr(), (128, 128, 128),
           _seg3d_protocol(100, 5, 5, pos=1, patches=1), in_channels=4,
           layout_notes="brats21_folds.json: training entries with a fold each; image = the 4 "
                        "files TrainingData/BraTS2021_xxxxx/BraTS2021_xxxxx_{flair,t1ce,t1,t2}"
                        ".nii.gz in that order, label BraTS2021_xxxxx_seg.nii.gz",
           label_map={1: 1, 2: 2, 4: 3}, regions={"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)},
           notes="4-class softmax training; Dice reported on TC/WT/ET, a region absent from the "
                 "target is left out (the reference scores it 0); the reference's fp32 forward "
                 "with GradScaler and double scheduler step are not copied",
           files={"json": "brats21_folds.json", "train": "training", "fold_key": "fold", "folds": 5,
                  "image": [f"TrainingData/BraTS2021_{{n:05d}}/BraTS2021_{{n:05d}}_{m}.nii.gz"
                            for m in ("flair", "t1ce", "t1", "t2")],
                  "label": "TrainingData/BraTS2021_{n:05d}/BraTS2021_{n:05d}_seg.nii.gz"}),
    _seg3d("bhsd", "BHSD brain haemorrhage, head CT", "CT", ("EDH", "IPH", "IVH", "SAH", "SDH"),
           "BHSD.json: 153 train / 39 val", _ct(0, 100, (1.0, 1.0, 5.0)), (192, 192, 32),
           _seg3d_protocol(500, 5, 10, pos=1, patches=2),
           files=_msd_files("BHSD.json", "ID")),
    _seg3d("btcv", "BTCV multi-organ, abdominal CT", "CT", _ABDOMEN_13,
           "dataset/dataset_1.json: 24 train / 6 val (dataset_0.json is another val split)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(300, 20, 10, pos=9, patches=4),
           augmentation=Augmentation(flip_prob=0.2, rot90_prob=0.2, scale_factor=0.1,
                                     scale_prob=0.1, shift_offset=0.1, shift_prob=0.5),
           notes="reference augmentation differs from CT-T: no SpatialPad (we pad a volume "
                 "smaller than the roi, as any crop must), adds RandScaleIntensity 0.1 p0.1, "
                 "RandShiftIntensity p0.5; inferer sw_batch 2",
           files=_msd_files("dataset/dataset_1.json", "img")),
    _seg3d("chaos", "CHAOS liver, CT", "CT", ("liver",), "chaos.json: 16 train / 4 val",
           _ct(-175, 250, (1.5, 1.5, 5.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=4),
           files=_msd_files("chaos.json", "chaos")),
    _seg3d("ircadb", "3D-IRCADb liver and tumour, CT", "CT", ("liver", "liver tumor"),
           "3D-IRCADb.json: 15 train / 5 val", _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=4),
           files=_msd_files("3D-IRCADb.json", "ircadb")),
    _seg3d("msd07", "MSD Task07 pancreas and tumour, CT", "CT", ("pancreas", "cancer"),
           "dataset_panc.json: 257 train / 24 val (+139 test, unused)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=2),
           files=_msd_files("dataset_panc.json", "pancreas")),
    _seg3d("msd09", "MSD Task09 spleen, CT", "CT", ("spleen",), "spleen.json: 32 train / 9 val",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=3, patches=4),
           files=_msd_files("spleen.json", "spleen")),
    _seg3d("covid19_20", "COVID-19-20 lung lesions, chest CT", "CT", ("lesion",),
           "Covid19_20_folds.json, 5 folds, fold 0: 159 train / 40 val",
           _ct(-1000, 500, (1.25, 1.25, 5.0)), (192, 192, 32),
           _seg3d_protocol(1000, 5, 20, pos=1, patches=3),
           layout_notes="Covid19_20_folds.json; Train/volume-covid19-A-xxxx_ct.nii.gz + "
                        "Train/volume-covid19-A-xxxx_seg.nii.gz",
           notes="the reference lesion Dice (mean over cases with a lesion) equals our Dice with "
                 "empty cases left out",
           files={"json": "Covid19_20_folds.json", "train": "training", "fold_key": "fold",
                  "folds": 5, "image": "Train/volume-covid19-A-{n:04d}_ct.nii.gz",
                  "label": "Train/volume-covid19-A-{n:04d}_seg.nii.gz"}),
    _seg3d("parse22", "PARSE 2022 pulmonary artery, CTPA", "CT", ("pulmonary artery",),
           "Parse22.json: 80 train / 20 val", _ct(-1000, 500, (1.25, 1.25, 3.0)), (192, 192, 32),
           _seg3d_protocol(500, 5, 20, pos=1, patches=2, weight_decay=5e-3),
           files=_msd_files("Parse22.json", "PA")),
    _seg3d("segthor", "SegTHOR organs at risk, thoracic CT", "CT",
           ("esophagus", "heart", "trachea", "aorta"),
           "dataset.json training[:-8] / training[-8:]: 32 train / 8 val (Patient_33-40)",
           _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(1000, 5, 10, pos=3, patches=4),
           layout_notes="<data_dir>/dataset.json; imagesTr/Patient_xx.nii.gz + "
                        "labelsTr/Patient_xx_GT.nii.gz",
           files={"json": "dataset.json", "train": "training", "val_tail": 8,
                  "image": "imagesTr/Patient_{n:02d}.nii.gz",
                  "label": "labelsTr/Patient_{n:02d}_GT.nii.gz"}),
    _seg3d("whs_ct", "MM-WHS whole heart, cardiac CT", "CT", _WHS_7,
           "dataset.json: 16 train / 4 val", _ct(0, 1700, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_protocol(500, 50, 5, pos=9, patches=4, algorithm="adamw_amsgrad",
                           weight_decay=0.01),
           label_map=_WHS_MAP, augmentation=Augmentation(flip_prob=0.2, rot90_prob=0.2),
           notes=_WHS_NOTES + "; no SpatialPad or RandShiftIntensity; wd 0.01 is torch's default "
                 "(not passed); the reference scheduler counts epochs as iterations (not copied)",
           files=_msd_files("dataset.json", "ct_train")),
    _seg3d("verse20", "VerSe 2020 vertebrae, spine CT", "CT", _VERSE_28,
           "VerSe.json: 99 train / 8 val", _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=1),
           notes="VerSe labels 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 27 coccyx, 28 T13",
           files=_msd_files("VerSe.json", "verse")),
    _seg3d("totalsegmentator", "TotalSegmentator v1, 104 structures, CT", "CT", _TOTALSEG_104,
           "Totalsegmentator.json: 11 train / 21 val (case 0970 in both; +65 test)",
           _ct(-1000, 1000, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_protocol(200, 5, 200, pos=3, patches=1, weight_decay=5e-3),
           notes="class order: TotalSegmentator v1 'total' class map; one validation, at the end",
           files=_msd_files("Totalsegmentator.json", "s")),
]

# 2D fundus segmentation (section 2): RaSE_2D U-Net, green channel, 128^2 patches.


def _fundus_preprocessing():
  return {"template": "fundus", "green_channel": True, "intensity": "scale", "a_min": 0,
          "a_max": 255}


def _fundus_files(json_name, image, label):
  return {"json": json_name, "train": "training", "val": "validation", "image": image,
          "label": label}


def _fundus(name, title, target, split, lr, epochs, layout_notes, files, notes=""):
  return Task(
      name=name, title=title, modality="fundus", ndim=2, kind="segmentation",
      classes=("background", target), in_channels=1, layout="image_mask_json",
      layout_notes=layout_notes, files=files, split=split,
      preprocessing=_fundus_preprocessing(), roi=(128, 128),
      optimizer=Optimizer("adamw", lr=lr, weight_decay=1e-5), schedule=Schedule(epochs, 5, 10),
      sampling=Sampling(batch=1, patches_per_case=2, pos=1, neg=1),
      inference=Inference(overlap=0.75, output="sigmoid"),
      metrics=SEGMENTATION_METRICS,
      notes=("masks binarised > 0; prediction = sigmoid probability > 0.5 on [0, 1] inputs, Dice "
             "of the foreground only (the reference thresholds logits, skips scaling and "
             "averages in background Dice)" + (f"; {notes}" if notes else "")))


_HVDROPDB_FILES = "{Neo,RetCam} images and masks (PNG) listed in the JSON, e.g. Neo/images/<n>.png"
_HVDROPDB_NAMES = ("Neo/images/{n}.png", "Neo/masks/{n}.png")
_FUNDUS = [
    _fundus("drive", "DRIVE retinal vessels", "vessel",
            "DRIVE.json: 14 train / 6 val of the 20 official training images (test set unused)",
            2e-4, 100, "DRIVE.json; train/images/NN_training.png + label/NN_manual1.png",
            files=_fundus_files("DRIVE.json", "train/images/{n:02d}_training.png",
                                 "label/{n:02d}_manual1.png")),
    _fundus("stare", "STARE retinal vessels", "vessel", "STARE.json: 14 train / 6 val", 1e-4, 100,
            "STARE.json; train/image/im0xxx.png + masks listed in the JSON",
            notes="in_channels 1 (the green channel): the reference default of 3 does not match "
                  "the 1 channel its trainer feeds",
            files=_fundus_files("STARE.json", "train/image/im{n:04d}.png",
                                 "train/label/im{n:04d}.ah.png")),
    _fundus("hvdropdb_bv", "HVDROPDB neonatal (ROP) retinal vessels", "vessel",
            "BV.json: 60 train / 20 val (Neo + RetCam; val = Neo 31-50)", 9e-5, 300,
            "BV.json; " + _HVDROPDB_FILES,
            files=_fundus_files("BV.json", *_HVDROPDB_NAMES)),
    _fundus("hvdropdb_od", "HVDROPDB optic disc", "optic disc",
            "OD.json: 70 train / 20 val entries = 10 unique val images (Neo and RetCam 36-40, "
            "each listed twice); 41-45 unused", 8e-5, 300, "OD.json; " + _HVDROPDB_FILES,
            notes="duplicate val entries are scored once",
            files=_fundus_files("OD.json", *_HVDROPDB_NAMES)),
    _fundus("hvdropdb_ridge", "HVDROPDB ROP ridge", "ridge", "RIDGE.json: 60 train / 20 val",
            3e-4, 300, "RIDGE.json; " + _HVDROPDB_FILES,
            notes="the reference uses 2 softmax channels and squared-pred DiceCE here; we keep "
                  "the single sigmoid output of the other fundus tasks",
            files=_fundus_files("RIDGE.json", *_HVDROPDB_NAMES)),
]

# Classification with a reference folder (section 3).



def _amsgrad(lr=3e-4):
  # AdamW(amsgrad) without a weight decay passed: torch's default 0.01.
  return Optimizer("adamw_amsgrad", lr=lr, weight_decay=0.01)


_MRNET_FILES = ("MRNet-v1.0: {train,valid}-<label>.csv without a header row (name, 0/1, e.g. "
                "0000,0); volumes {train,valid}/{axial,coronal,sagittal}/<name>.npy, slices x "
                "256 x 256; image = the 3 planes [axial, coronal, sagittal] as a list (how they "
                "are combined is the pipeline's business)")
_PLANES = ("axial", "coronal", "sagittal")


# DRAC's training jitter, PIL ImageEnhance-like (its flips, lost in the reference, are kept);
# the 2D classification tasks without a reference folder reuse the DRAC loop.
_DRAC_AUGMENTATION = Augmentation(flip_prob=0.5, brightness=0.07, contrast=0.05,
                                  jitter="enhance", jitter_prob=0.5)


def _mrnet_split(folder, label):
  return {"csv": f"{folder}-{label}.csv",
          "image": [f"{folder}/{plane}/{{name}}.npy" for plane in _PLANES]}


def _mrnet(label, title, classes):
  return Task(
      name=f"mrnet_{label}", title=f"MRNet knee MRI: {title}", modality="MRI", ndim=3,
      kind="classification", classes=classes, in_channels=3, layout="npy_csv",
      layout_notes=_MRNET_FILES.replace("<label>", label),
      files={"label": "label", "fieldnames": ("name", "label"),
             "train": _mrnet_split("train", label), "val": _mrnet_split("valid", label)},
      split="official 1130 train / 120 valid (valid used as the held-out set)",
      preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                     "planes": _PLANES},
      roi=(32, 256, 256),
      augmentation=Augmentation(flip_prob=0.5, flip_axes=(0,), brightness=0.07, contrast=0.05,
                                jitter="shift"),
      optimizer=_amsgrad(), schedule=Schedule(170, 5, 5), metrics=("auc",), inferred=True,
      notes="in_channels 3: the three planes, each resized to the roi, are stacked as channels "
            "of one backbone (the reference runs one backbone per plane, concatenates, then "
            "the head); the reference trainer is missing, so the CE loss, the AUC and "
            "reporting the 3 labels as separate tasks are inferred; full 256 px slices (the "
            "reference crop assumes 512 px)")


_CLASSIFICATION = [
    Task(name="cc_ccii", title="CC-CCII COVID-19 pneumonia, chest CT", modality="CT", ndim=3,
         kind="classification", classes=("normal", "CP", "NCP"), in_channels=1, layout="npy_csv",
         layout_notes="csv/CC_CCII_fold{0,1,2}_{train,valid}.csv (zip_file, target, label, "
                      "patient_id, scan_id, n_slice...); volume <data_dir>/p{pid}-s{sid}.npy, "
                      "slices x 512 x 512 uint8; group: the patient pid of the file name",
         split="csv/CC_CCII_fold0_{train,valid}.csv: 2514 train / 1664 val scans, "
               "patient-disjoint",
         preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "crop": (384, 384), "resize": (256, 256)},
         roi=(64, 256, 256),
         augmentation=Augmentation(flip_prob=0.5, flip_axes=(0,), crop_offset=18,
                                   brightness=0.07, contrast=0.05, jitter="shift"),
         optimizer=_amsgrad(), schedule=Schedule(100, 5, 10), metrics=("accuracy",),
         notes="train crop offset +-18 px, slice-order flip p0.5, brightness +-0.07, contrast "
               "+-5%; depth: every scan resampled to 64 slices (SwinUNETR needs each axis "
               "divisible by 32; the reference keeps the scan's slice count and doubles it by "
               "concatenating the volume with itself)",
         files={"folds": 3, "image": "p{patient_id}-s{scan_id}.npy", "label": "target",
                "group": r"^p([^-/]+)-s[^/]*$",
                "train": {"csv": "csv/CC_CCII_fold{fold}_train.csv"},
                "val": {"csv": "csv/CC_CCII_fold{fold}_valid.csv"}}),
    Task(name="luna16", title="LUNA16 nodule candidate classification, chest CT", modality="CT",
         ndim=3, kind="classification", classes=("false positive", "nodule"), in_channels=1,
         layout="npy_csv",
         layout_notes="<base>/train_0.csv, train_1.csv, valid.csv, test.csv (columns label, "
                      "path: the .npy cube); cubes stored z, y, x",
         split="subsets 0-5 train, 6 val, 7-9 test (Models Genesis / Medical-SSL)",
         preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "resize": (64, 64, 64)},
         roi=(64, 64, 64),
         optimizer=Optimizer("adam", lr=1e-4, weight_decay=1e-6, schedule="constant"),
         schedule=Schedule(101, 0, 10), sampling=Sampling(batch=8, balanced=True),
         augmentation=Augmentation(),
         metrics=("auc",),
         notes="negatives resampled 1:1 each epoch; the reference's single sigmoid output is a "
               "2-class head here (same AUC); its pre-trained weights never load (DataParallel "
               "prefix) and its backbone is SwinViT v1: we load RaSE",
         files={"image": "path", "label": "label",
                "train": [{"csv": "train_0.csv"}, {"csv": "train_1.csv"}],
                "val": {"csv": "valid.csv"}, "test": {"csv": "test.csv"}}),
    _mrnet("abnormal", "abnormality", ("normal", "abnormal")),
    _mrnet("acl", "ACL tear", ("no ACL tear", "ACL tear")),
    _mrnet("meniscus", "meniscal tear", ("no meniscal tear", "meniscal tear")),
    Task(name="drac", title="DRAC22 task 3, diabetic retinopathy grading on OCTA",
         modality="OCTA", ndim=2, kind="classification", classes=("no DR", "NPDR", "PDR"),
         in_channels=3, layout="csv",
         layout_notes="csv/train.csv, csv/val.csv (image_name, DR_grade); images "
                      "Grading/Images/Train/<image_name>",
         split="csv/train.csv 499 (279/162/58) / csv/val.csv 112 (50/50/12)",
         preprocessing={"template": "2d-generic", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "resize": (256, 256)},
         roi=(256, 256),
         optimizer=_amsgrad(8e-5), schedule=Schedule(200, 3, 10), augmentation=_DRAC_AUGMENTATION,
         metrics=("auc", "accuracy"), extra_metrics=("qwk",),
         notes="macro one-vs-rest AUC; QWK is the DRAC22 challenge metric; flips p0.5 are "
               "applied (the reference loses them)",
         files={"image": "Grading/Images/Train/{image_name}", "label": "DR_grade",
                "train": {"csv": "csv/train.csv"}, "val": {"csv": "csv/val.csv"}}),
]

# Datasets without a reference folder (section 4) and the two extra tasks (section 5):
# standard public protocols, all inferred. 2D segmentation reuses the fundus loop with 256^2
# patches, 2D classification and regression the DRAC loop.


def _preprocessing_2d(modality, **fields):
  # X-ray and mammography files are often 12- or 16-bit: per-image min-max; others are 8-bit.
  intensity = ({"intensity": "minmax"} if MODALITY_GROUPS[modality] == "X-ray"
               else {"intensity": "scale", "a_min": 0, "a_max": 255})
  return {"template": "2d-generic", **intensity, **fields}


def _seg2d(name, title, modality, target, in_channels, layout, layout_notes, split, files,
           extra_metrics=(), classes=None, preprocessing=None, notes=""):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind="segmentation",
      classes=("background",) + (classes or (target,)), in_channels=in_channels, layout=layout,
      layout_notes=layout_notes, files=files, split=split,
      preprocessing=preprocessing or _preprocessing_2d(modality), roi=(256, 256),
      optimizer=Optimizer("adamw", lr=1e-4, weight_decay=1e-5), schedule=Schedule(100, 5, 10),
      sampling=Sampling(batch=1, patches_per_case=2, pos=1, neg=1),
      inference=Inference(overlap=0.75),
      metrics=SEGMENTATION_METRICS, extra_metrics=extra_metrics, inferred=True, notes=notes)


def _cls2d(name, title, modality, classes, in_channels, layout, layout_notes, split, metrics,
           files, extra_metrics=(), kind="classification", notes=""):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind=kind, classes=classes,
      in_channels=in_channels, layout=layout, layout_notes=layout_notes, files=files,
      split=split, preprocessing=_preprocessing_2d(modality, resize=(256, 256)), roi=(256, 256),
      optimizer=_amsgrad(8e-5), schedule=Schedule(200, 3, 10), augmentation=_DRAC_AUGMENTATION,
      metrics=metrics, extra_metrics=extra_metrics, inferred=True, notes=notes)


_BENIGN_MALIGNANT = ("normal", "benign", "malignant")
_MMOTU_FILES = "OTU_2d/images/*.JPG, annotations/*.PNG"
_IDRID_GRADING = "B. Disease Grading/"
_IDRID_SEG = "A. Segmentation/"
_GLAS = "Warwick QU Dataset (Released 2016_07_08)"
_INFERRED = [
    _cls2d("shenzhen", "Shenzhen chest X-ray, tuberculosis", "X-ray", ("normal", "tuberculosis"),
           1, "class_folders",
           "CXR_png/CHNCXR_nnnn_{0,1}.png: the last digit is the class (0 normal, 1 TB); "
           "sorted into CXR_png/normal/ and CXR_png/tuberculosis/",
           "662 images (326 normal / 336 TB), 5-fold CV, fold 0", ("auc", "accuracy"),
           files={"train": "CXR_png", "cv_folds": 5}),
    _seg2d("montgomery", "Montgomery County chest X-ray, lung fields", "X-ray", "lung", 1,
           "image_mask_folders",
           "MontgomerySet/CXR_png/MCUCXR_nnnn_{0,1}.png; ManualMask/leftMask + rightMask "
           "(same names) merged into ManualMask/lungMask, one mask per image",
           "138 images (80 normal / 58 TB), random 80/20 split",
           files={"train": {"images": "MontgomerySet/CXR_png",
                            "masks": "MontgomerySet/ManualMask/lungMask",
                            "pattern": ("MCUCXR_{id}.png", "MCUCXR_{id}.png")}}),
    _cls2d("rsna_bone_age", "RSNA pediatric bone age, hand X-ray", "X-ray", (), 1, "csv",
           "boneage-training-dataset.csv (id, boneage, male; the RSNA download's train.csv) "
           "and images boneage-training-dataset/<id>.png; Bone Age Validation Set/Validation "
           "Dataset.csv (Image ID, male, Bone Age (months)) with the images of its two zips "
           "boneage-validation-dataset-{1,2} extracted together into Bone Age Validation "
           "Set/boneage-validation-dataset/<Image ID>.png; Bone Age Test Set/Bone age ground "
           "truth.xlsx saved as Bone age ground truth.csv (Case ID, Sex, Ground truth bone age "
           "(months)) and images Bone Age Test Set/Test Set Images/<Case ID>.png",
           "official 12,611 train / 1,425 val / 200 test", ("mae",), kind="regression",
           notes="target in months (0-228); sex input not used",
           files={"train": {"csv": "boneage-training-dataset.csv",
                            "image": "boneage-training-dataset/{id}.png", "label": "boneage"},
                  "val": {"csv": "Bone Age Validation Set/Validation Dataset.csv",
                          "image": "Bone Age Validation Set/boneage-validation-dataset/"
                                   "{Image ID}.png",
                          "label": "Bone Age (months)"},
                  "test": {"csv": "Bone Age Test Set/Bone age ground truth.csv",
                           "image": "Bone Age Test Set/Test Set Images/{Case ID}.png",
                           "label": "Ground truth bone age (months)"}}),
    _cls2d("bfmr", "Bone fracture multi-region X-ray", "X-ray", ("fractured", "not fractured"), 1,
           "class_folders", "{train,val,test}/{fractured,not fractured}/*.jpg",
           "official Kaggle train / val / test folders (~10.6k images)", ("auc", "accuracy"),
           files={"train": "train", "val": "val", "test": "test"}),
    _cls2d("kau_bcmd", "KAU-BCMD mammography, BI-RADS category", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1, "class_folders",
           "the data dir holds one folder per BI-RADS category, named as the classes "
           "(version 1: 1416 cases, 4 views each)",
           "random 80/20 split, patient-level", ("auc", "accuracy", "macro_f1"),
           notes="class list to check against the download",
           files={"train": "."}),
    _cls2d("bmcd", "BMCD breast micro-calcifications, mammography", "mammography",
           ("benign", "malignant", "normal"), 1, "class_folders",
           "the data dir holds one folder per class: benign/, malignant/, normal/",
           "random 80/20 split, patient-level", ("auc", "accuracy"),
           files={"train": "."}),
    _cls2d("lamis_dmdb", "LAMIS-DMDB digital mammography (public sample)", "mammography",
           _BENIGN_MALIGNANT, 1, "csv", "LAMIS-DMDB.csv (image path, pathology as a class "
           "name), written from the DICOM images and the case reports",
           "random 80/20 split, patient-level",
           ("auc", "accuracy"),
           files={"train": {"csv": "LAMIS-DMDB.csv", "image": "image", "label": "pathology",
                            "label_names": "classes"}}),
    _cls2d("cdd_cesm", "CDD-CESM contrast-enhanced spectral mammography", "mammography",
           _BENIGN_MALIGNANT, 1, "csv",
           "Radiology manual annotations.xlsx saved as CSV (Image_name, Pathology Classification/ "
           "Follow up, Type); the Type DM rows: Low energy images of CDD-CESM/<Image_name>.jpg "
           "(the CESM rows, Subtracted images/, are not used); Image_name is "
           "P<patient>_<L|R>_DM_<view>: the patient is the group",
           "patient-level random 80/20 split", ("auc", "accuracy"),
           files={"train": {"csv": "Radiology manual annotations.csv",
                            "image": "Low energy images of CDD-CESM/{Image_name}.jpg",
                            "label": "Pathology Classification/ Follow up",
                            "where": {"Type": "DM"}, "group": r"/(P\d+)_[^/]*$",
                            "label_names": {"Normal": "normal", "Benign": "benign",
                                            "Malignant": "malignant"}}}),
    _cls2d("mendeley_mammo", "Mendeley mammography (fvjhtskg93), cancer vs non-cancer",
           "mammography", ("cancer", "non-cancer"), 1, "class_folders",
           "the data dir holds one folder per class: cancer/, non-cancer/",
           "random 80/20 split", ("auc", "accuracy"),
           files={"train": "."}),
    _seg2d("inbreast", "INbreast mass segmentation, mammography", "mammography", "mass", 1,
           "image_mask_folders",
           "AllDICOMs/<file id>_<patient id>_MG_<view>_ANON.dcm (the patient id, a hex hash, "
           "is the group); AllXML/<file id>.xml mass contours "
           "rasterised to MassMasks/<file id>.png, one per image (empty without a mass)",
           "410 images / 115 cases, patient-level 80/20 split",
           files={"train": {"images": "AllDICOMs", "masks": "MassMasks",
                            "pattern": ("{id}_*.dcm", "{id}.png")},
                  "group": r"^AllDICOMs/[^_/]+_([^_/]+)_MG_"}),
    _cls2d("vindr_mammo", "VinDr-Mammo BI-RADS assessment", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1, "csv",
           "breast-level_annotations.csv (study_id, image_id, breast_birads, split); images "
           "images/<study_id>/<image_id>.dicom (the study, one exam of one patient, is the "
           "group)",
           "official split column: 4,000 train / 1,000 test exams", ("auc", "macro_f1"),
           files={"csv": "breast-level_annotations.csv",
                  "image": "images/{study_id}/{image_id}.dicom", "label": "breast_birads",
                  "label_names": "classes", "group": r"^images/([^/]+)/",
                  "train": {"where": {"split": "training"}},
                  "test": {"where": {"split": "test"}}}),
    _cls2d("cbis_ddsm", "CBIS-DDSM benign vs malignant (mass and calcification ROIs)",
           "mammography", ("benign", "malignant"), 1, "csv",
           "{mass,calc}_case_description_{train,test}_set.csv (pathology, cropped image file "
           "path, e.g. Mass-Training_P_00001_LEFT_CC_1/.../000000.dcm: P_00001 is the patient, "
           "the group); BENIGN_WITHOUT_CALLBACK counts as benign",
           "official train / test CSVs", ("auc", "accuracy"),
           files={"image": "CBIS-DDSM/{cropped image file path}", "label": "pathology",
                  "label_names": {"BENIGN": "benign", "BENIGN_WITHOUT_CALLBACK": "benign",
                                  "MALIGNANT": "malignant"},
                  "group": r"_(P_\d+)_(?:LEFT|RIGHT)_",
                  "train": [{"csv": f"{kind}_case_description_train_set.csv"}
                            for kind in ("mass", "calc")],
                  "test": [{"csv": f"{kind}_case_description_test_set.csv"}
                           for kind in ("mass", "calc")]}),
    _cls2d("idrid_grading", "IDRiD diabetic retinopathy grading, fundus", "fundus",
           ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "PDR"), 3, "csv",
           "B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv "
           "(Image name, Retinopathy grade); images 1. Original Images/a. Training Set/"
           "IDRiD_nnn.jpg",
           "official 413 train / 103 test", ("accuracy", "auc"), extra_metrics=("qwk",),
           notes="the DRAC harness (named IDRiD in the reference) on colour fundus images",
           files={"label": "Retinopathy grade",
                  "train": {"csv": _IDRID_GRADING + "2. Groundtruths/a. IDRiD_Disease "
                                   "Grading_Training Labels.csv",
                            "image": _IDRID_GRADING + "1. Original Images/a. Training Set/"
                                     "{Image name}.jpg"},
                  "test": {"csv": _IDRID_GRADING + "2. Groundtruths/b. IDRiD_Disease "
                                  "Grading_Testing Labels.csv",
                           "image": _IDRID_GRADING + "1. Original Images/b. Testing Set/"
                                    "{Image name}.jpg"}}),
    _seg2d("glas", "GlaS colon gland segmentation, H&E", "pathology", "gland", 3,
           "image_mask_folders", _GLAS + "/{train,testA,testB}_n.bmp + _n_anno.bmp (instance "
           "labels, binarised)",
           "official 85 train / 80 test (A 60 + B 20)", extra_metrics=("object_f1",),
           preprocessing=_preprocessing_2d("pathology", binarize="nonzero"),
           files={"images": _GLAS, "masks": _GLAS,
                  "train": {"pattern": ("train_{id}.bmp", "train_{id}_anno.bmp")},
                  "test": [{"pattern": (f"test{part}_{{id}}.bmp",
                                        f"test{part}_{{id}}_anno.bmp")} for part in "AB"]}),
    _seg2d("cocahis", "CoCaHis colon cancer regions, H&E", "pathology", "cancer", 3,
           "image_mask_folders", "CoCaHis.hdf5 (HE/raw, GT/GT_majority_vote), its train and "
           "test parts exported to {train,test}/images/<patient>_<n>.png + "
           "{train,test}/masks/<patient>_<n>.png (<patient>: the image's patient number in the "
           "HDF5, the group)",
           "82 images / 19 patients, official 58 train / 24 test",
           files={"pattern": ("{id}.png", "{id}.png"), "group": r"/images/(\d+)_[^/]*$",
                  "train": {"images": "train/images", "masks": "train/masks"},
                  "test": {"images": "test/images", "masks": "test/masks"}}),
    _seg2d("tnbc", "TNBC nuclei segmentation, H&E", "pathology", "nucleus", 3,
           "image_mask_folders", "Slide_xx/xx_n.png + GT_xx/xx_n.png (xx: the patient, "
           "the group)",
           "50 images / 11 patients, patient-level split (patients 1-8 train, 9-11 test)",
           extra_metrics=("aji",),
           files={"pattern": ("{id}.png", "{id}.png"), "group": r"^Slide_(\d+)/",
                  "train": [{"images": f"Slide_{p:02d}", "masks": f"GT_{p:02d}"}
                            for p in range(1, 9)],
                  "test": [{"images": f"Slide_{p:02d}", "masks": f"GT_{p:02d}"}
                           for p in range(9, 12)]}),
    _seg2d("monusac", "MoNuSAC multi-class nuclei segmentation, H&E", "pathology", None, 3,
           "image_mask_folders", "MoNuSAC_images_and_annotations/<patient>/<image>.tif (the "
           "patient folder is the group), its "
           ".xml rasterised to class masks MoNuSAC_masks/<patient>/<image>.png; test: MoNuSAC "
           "Testing Data and Annotations/ + MoNuSAC_test_masks/",
           "official train / test", extra_metrics=("pq",),
           classes=("epithelial", "lymphocyte", "macrophage", "neutrophil"),
           files={"pattern": ("{id}.tif", "{id}.png"),
                  "train": {"images": "MoNuSAC_images_and_annotations/*",
                            "masks": "MoNuSAC_masks/*"},
                  "test": {"images": "MoNuSAC Testing Data and Annotations/*",
                           "masks": "MoNuSAC_test_masks/*"}}),
    _seg2d("janowczyk_epithelium", "Janowczyk tutorial: epithelium segmentation, H&E",
           "pathology", "epithelium", 3, "image_mask_folders",
           "epi/*.tif + *_mask.png (same folder, mask suffix _mask); file names start with "
           "the patient number, <patient>_..., the group",
           "42 images, 5 tutorial folds (by patient), fold 0",
           notes="one of the tutorial subsets (alternatives: nuclei, IDC, lymphoma)",
           files={"train": {"images": "epi", "masks": "epi",
                            "pattern": ("{id}.tif", "{id}_mask.png")},
                  "group": r"^epi/(\d+)_", "cv_folds": 5}),
    _seg2d("crag", "CRAG colorectal gland segmentation, H&E", "pathology", "gland", 3,
           "image_mask_folders", "{train,valid}/Images/*.png + Annotation/*.png (instance "
           "labels, binarised)", "official 173 train / 40 test", extra_metrics=("object_f1",),
           preprocessing=_preprocessing_2d("pathology", binarize="nonzero"),
           files={"pattern": ("{id}.png", "{id}.png"),
                  "train": {"images": "train/Images", "masks": "train/Annotation"},
                  "test": {"images": "valid/Images", "masks": "valid/Annotation"}}),
    _cls2d("midog21", "MIDOG 2021 mitotic figure vs imposter patches, H&E", "pathology",
           ("imposter", "mitotic figure"), 3, "csv",
           "MIDOG.json (COCO boxes) + images/*.tiff; patches around each annotated cell listed "
           "in patches/{train,test}.csv (image, label as a class name), patch files "
           "patches/<image number>_<n>.png (the image, one case, is the group)",
           "scanner-wise split (3 scanners train, 1 test)",
           ("macro_f1", "auc"), extra_metrics=("detection_f1",),
           notes="the challenge F1 is detection F1 of mitoses; ours is patch classification",
           files={"image": "image", "label": "label", "label_names": "classes",
                  "group": r"^patches/(\d+)_[^/]*$",
                  "train": {"csv": "patches/train.csv"}, "test": {"csv": "patches/test.csv"}}),
    _cls2d("nucls", "NuCLS nucleus super-class classification, H&E", "pathology",
           ("tumor", "stromal", "sTIL", "other"), 3, "csv",
           "rgb/*.png + csv/*.csv (nucleus boxes, super_classification); nucleus crops listed "
           "in crops/fold_1_{train,test}.csv (image, label as a class name), crop files "
           "crops/<FOV name>_<n>.png; the FOV name holds the TCGA patient barcode "
           "TCGA-<site>-<patient> (the group); ambiguous nuclei dropped",
           "official fold 1 (train / test slide lists)", ("macro_f1", "auc"),
           files={"image": "image", "label": "label", "label_names": "classes",
                  "group": r"(TCGA-[A-Z0-9]{2}-[A-Z0-9]{4})",
                  "train": {"csv": "crops/fold_1_train.csv"},
                  "test": {"csv": "crops/fold_1_test.csv"}}),
    _cls2d("wsss4luad", "WSSS4LUAD lung adenocarcinoma tissue types, H&E", "pathology",
           ("tumor", "stroma", "normal"), 3, "csv",
           "1.training/<slide>-<x>-<y>-[t, s, n].png (labels in the file name; the slide is "
           "the group) written to 1.training.csv (image, tumor, stroma, normal: 0/1); "
           "2.validation/img/<nn>.png and 3.testing/img/<nn>.png with their masks "
           "{2.validation,3.testing}/mask/<nn>.png (0 tumor, 1 stroma, 2 normal, 3 background): "
           "the classes present in each mask written to 2.validation.csv and 3.testing.csv "
           "(image, tumor, stroma, normal: 0/1)", "official train / val / test", ("auc",),
           kind="multilabel",
           notes="image-level multi-label classification: the challenge's mIoU scores "
                 "pixel masks (weakly supervised segmentation), which this task does not make",
           files={"label": ["tumor", "stroma", "normal"],
                  "train": {"csv": "1.training.csv", "image": "1.training/{image}",
                            "group": r"^1\.training/(.+)-\d+-\d+-\[[^/]*$"},
                  "val": {"csv": "2.validation.csv", "image": "2.validation/img/{image}"},
                  "test": {"csv": "3.testing.csv", "image": "3.testing/img/{image}"}}),
    _seg2d("tn3k", "TN3K thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "image_mask_folders", "trainval-image/*.jpg + trainval-mask/*.jpg, test-image + "
           "test-mask", "official 2,879 train / 614 test", extra_metrics=("iou",),
           preprocessing=_preprocessing_2d("ultrasound", binarize="half"),
           files={"pattern": ("{id}.jpg", "{id}.jpg"),
                  "train": {"images": "trainval-image", "masks": "trainval-mask"},
                  "test": {"images": "test-image", "masks": "test-mask"}}),
    _seg2d("tg3k", "TG3K thyroid gland segmentation, ultrasound", "ultrasound", "thyroid gland",
           1, "image_mask_folders", "thyroid-image/*.jpg + thyroid-mask/*.jpg; "
           "tg3k-trainval.json lists the split", "TRFE-Net split file tg3k-trainval.json",
           preprocessing=_preprocessing_2d("ultrasound", binarize="half"),
           files={"images": "thyroid-image", "masks": "thyroid-mask",
                  "pattern": ("{id}.jpg", "{id}.jpg"),
                  "train": {"ids": {"file": "tg3k-trainval.json", "key": "train",
                                    "format": "{:04d}"}},
                  "val": {"ids": {"file": "tg3k-trainval.json", "key": "val",
                                  "format": "{:04d}"}}}),
    _seg2d("ddti", "DDTI thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "image_mask_folders", "p_image/*.PNG + p_mask/*.PNG (the TN3K release of DDTI)",
           "637 images, 5-fold CV, fold 0",
           notes="alternative protocol: train on TN3K, test on DDTI",
           files={"train": {"images": "p_image", "masks": "p_mask",
                            "pattern": ("{id}.PNG", "{id}.PNG")}, "cv_folds": 5}),
    _seg2d("mmotu_seg", "MMOTU ovarian tumour segmentation, ultrasound", "ultrasound", "tumor",
           1, "image_mask_folders", _MMOTU_FILES + " (binary masks <n>_binary.PNG); "
           "OTU_2d/{train,val}.txt list the ids",
           "official train.txt / val.txt: 1,000 / 469", extra_metrics=("miou",),
           notes="binary tumour mask (the 9-class typed masks are the alternative)",
           files={"images": "OTU_2d/images", "masks": "OTU_2d/annotations",
                  "pattern": ("{id}.JPG", "{id}_binary.PNG"),
                  "train": {"ids": {"file": "OTU_2d/train.txt"}},
                  "val": {"ids": {"file": "OTU_2d/val.txt"}}}),
    _seg2d("idrid_lesion_seg", "IDRiD hard exudate segmentation, fundus", "fundus",
           "hard exudate", 1, "image_mask_folders",
           "A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_nn.jpg + "
           "2. All Segmentation Groundtruths/.../3. Hard Exudates/IDRiD_nn_EX.tif",
           "official 54 train / 27 test", extra_metrics=("aupr",),
           preprocessing=_fundus_preprocessing(),
           notes="one binary lesion task, on the green channel; alternatives: HE, MA, SE or "
                 "optic disc",
           files={"pattern": ("IDRiD_{id}.jpg", "IDRiD_{id}_EX.tif"),
                  "train": {"images": _IDRID_SEG + "1. Original Images/a. Training Set",
                            "masks": _IDRID_SEG + "2. All Segmentation Groundtruths/"
                                     "a. Training Set/3. Hard Exudates"},
                  "test": {"images": _IDRID_SEG + "1. Original Images/b. Testing Set",
                           "masks": _IDRID_SEG + "2. All Segmentation Groundtruths/"
                                    "b. Testing Set/3. Hard Exudates"}}),
    _cls2d("mmotu_cls", "MMOTU ovarian tumour type classification, ultrasound", "ultrasound",
           ("chocolate cyst", "serous cystadenoma", "teratoma", "theca cell tumor",
            "simple cyst", "normal ovary", "mucinous cystadenoma",
            "high grade serous cystadenocarcinoma"), 1, "csv",
           _MMOTU_FILES + "; OTU_2d/{train,val}_cls.txt (image file, class index; space "
           "separated, no header)",
           "official 1,000 / 469", ("accuracy", "macro_f1", "auc"),
           files={"image": "OTU_2d/images/{image}", "label": "label",
                  "fieldnames": ("image", "label"), "delimiter": " ",
                  "train": {"csv": "OTU_2d/train_cls.txt"},
                  "val": {"csv": "OTU_2d/val_cls.txt"}}),
]

TASKS = {task.name: task for task in _SEG3D + _FUNDUS + _CLASSIFICATION + _INFERRED}


def get(name):
  """The task called `name`; an unknown name is an error naming the closest ones."""
  if name in TASKS:
    return TASKS[name]
  close = difflib.get_close_matches(name.lower(), TASKS, n=3, cutoff=0.5)
  hint = f"did you mean {', '.join(close)}? " if close else ""
  raise ValueError(f"unknown task {name!r}: {hint}known tasks: {', '.join(sorted(TASKS))}")

