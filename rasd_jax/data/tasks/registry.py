"""The 56 downstream tasks of the RaSD protocol, as plain data (schema.Task).

Values are the reference code defaults or, for tasks without reference code (and MRNet,
whose trainer is missing), the dataset's standard public protocol, marked `inferred`; each
task's values, split and departures are listed in docs/protocol.md. Reference defects are not
copied: metrics follow the standard definitions of `rasd_jax.evaluation.metrics` (segmentation
Dice excludes background; fundus masks come from sigmoid probabilities > 0.5 after [0, 1]
scaling; an empty class is left out, never scored 0), and schedulers step once per iteration.
"""

import difflib

from rasd_jax.data.augmentation import Augmentation
from rasd_jax.data.tasks.schema import (MODALITY_GROUPS, SEGMENTATION_METRICS, Inference,
                                        Optimizer, Sampling, Schedule, Task)

# 3D segmentation (reference code): SwinUNETR-v2, the CT-T / MR-T templates.

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


def _seg3d(name, title, modality, classes, split, preprocessing, roi, protocol, **fields):
  return Task(name=name, title=title, modality=modality, ndim=3, kind="segmentation",
              classes=("background",) + tuple(classes), in_channels=fields.pop("in_channels", 1),
              split=split, preprocessing=preprocessing, roi=roi, metrics=SEGMENTATION_METRICS,
              **protocol, **fields)


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
           _seg3d_protocol(300, 5, 10, pos=1, patches=2)),
    _seg3d("amos_mri", "AMOS abdominal MRI", "MRI", _AMOS_15,
           "AMOS_MRI.json: 48 train / 12 val (+40 test, unused)", _mr(), (192, 192, 32),
           _seg3d_protocol(300, 5, 10, pos=9, patches=2),
           notes="the reference JSON spells aorta 'arota'"),
    _seg3d("atlas_mri", "ATLAS liver and tumour, CE-T1w MRI", "MRI", ("liver", "tumour"),
           "ATLAS-MRI.json: 45 train / 15 val", _mr(), (96, 96, 96),
           _seg3d_protocol(300, 5, 10, pos=1, patches=2)),
    _seg3d("whs_mr", "MM-WHS whole heart, MRI", "MRI", _WHS_7,
           "MM-WHS-MRI.json: 15 train / 5 val", _mr(), (96, 96, 96),
           _seg3d_protocol(300, 5, 10, pos=1, patches=4),
           label_map=_WHS_MAP, notes=_WHS_NOTES),
    _seg3d("brats21", "BraTS 2021 glioma, multi-parametric MRI", "MRI", ("NCR", "ED", "ET"),
           "brats21_folds.json, 5 folds; fold 0: 1000 train / 251 val", _mr(), (128, 128, 128),
           _seg3d_protocol(100, 5, 5, pos=1, patches=1), in_channels=4, official_folds=5,
           label_map={1: 1, 2: 2, 4: 3}, regions={"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)},
           notes="4-class softmax training; Dice reported on TC/WT/ET, a region absent from the "
                 "target is left out (the reference scores it 0); the reference's fp32 forward "
                 "with GradScaler and double scheduler step are not copied"),
    _seg3d("bhsd", "BHSD brain haemorrhage, head CT", "CT", ("EDH", "IPH", "IVH", "SAH", "SDH"),
           "BHSD.json: 153 train / 39 val", _ct(0, 100, (1.0, 1.0, 5.0)), (192, 192, 32),
           _seg3d_protocol(500, 5, 10, pos=1, patches=2)),
    _seg3d("btcv", "BTCV multi-organ, abdominal CT", "CT", _ABDOMEN_13,
           "dataset/dataset_1.json: 24 train / 6 val (dataset_0.json is another val split)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(300, 20, 10, pos=9, patches=4),
           augmentation=Augmentation(flip_prob=0.2, rot90_prob=0.2, scale_factor=0.1,
                                     scale_prob=0.1, shift_offset=0.1, shift_prob=0.5),
           notes="reference augmentation differs from CT-T: no SpatialPad (we pad a volume "
                 "smaller than the roi, as any crop must), adds RandScaleIntensity 0.1 p0.1, "
                 "RandShiftIntensity p0.5; inferer sw_batch 2"),
    _seg3d("chaos", "CHAOS liver, CT", "CT", ("liver",), "chaos.json: 16 train / 4 val",
           _ct(-175, 250, (1.5, 1.5, 5.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=4)),
    _seg3d("ircadb", "3D-IRCADb liver and tumour, CT", "CT", ("liver", "liver tumor"),
           "3D-IRCADb.json: 15 train / 5 val", _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=4)),
    _seg3d("msd07", "MSD Task07 pancreas and tumour, CT", "CT", ("pancreas", "cancer"),
           "dataset_panc.json: 257 train / 24 val (+139 test, unused)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=2)),
    _seg3d("msd09", "MSD Task09 spleen, CT", "CT", ("spleen",), "spleen.json: 32 train / 9 val",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=3, patches=4)),
    _seg3d("covid19_20", "COVID-19-20 lung lesions, chest CT", "CT", ("lesion",),
           "Covid19_20_folds.json, 5 folds, fold 0: 159 train / 40 val",
           _ct(-1000, 500, (1.25, 1.25, 5.0)), (192, 192, 32),
           _seg3d_protocol(1000, 5, 20, pos=1, patches=3), official_folds=5,
           notes="the reference lesion Dice (mean over cases with a lesion) equals our Dice with "
                 "empty cases left out"),
    _seg3d("parse22", "PARSE 2022 pulmonary artery, CTPA", "CT", ("pulmonary artery",),
           "Parse22.json: 80 train / 20 val", _ct(-1000, 500, (1.25, 1.25, 3.0)), (192, 192, 32),
           _seg3d_protocol(500, 5, 20, pos=1, patches=2, weight_decay=5e-3)),
    _seg3d("segthor", "SegTHOR organs at risk, thoracic CT", "CT",
           ("esophagus", "heart", "trachea", "aorta"),
           "dataset.json training[:-8] / training[-8:]: 32 train / 8 val (Patient_33-40)",
           _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(1000, 5, 10, pos=3, patches=4)),
    _seg3d("whs_ct", "MM-WHS whole heart, cardiac CT", "CT", _WHS_7,
           "dataset.json: 16 train / 4 val", _ct(0, 1700, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_protocol(500, 50, 5, pos=9, patches=4, algorithm="adamw_amsgrad",
                           weight_decay=0.01),
           label_map=_WHS_MAP, augmentation=Augmentation(flip_prob=0.2, rot90_prob=0.2),
           notes=_WHS_NOTES + "; no SpatialPad or RandShiftIntensity; wd 0.01 is torch's default "
                 "(not passed); the reference scheduler counts epochs as iterations (not copied)"),
    _seg3d("verse20", "VerSe 2020 vertebrae, spine CT", "CT", _VERSE_28,
           "VerSe.json: 99 train / 8 val", _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_protocol(500, 5, 10, pos=1, patches=1),
           notes="VerSe labels 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 27 coccyx, 28 T13"),
    _seg3d("totalsegmentator", "TotalSegmentator v1, 104 structures, CT", "CT", _TOTALSEG_104,
           "Totalsegmentator.json: 11 train / 21 val (case 0970 in both; +65 test)",
           _ct(-1000, 1000, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_protocol(200, 5, 200, pos=3, patches=1, weight_decay=5e-3),
           notes="class order: TotalSegmentator v1 'total' class map; one validation, at the end"),
]

# 2D fundus segmentation (reference code): RaSE_2D U-Net, green channel, 128^2 patches.


def _fundus_preprocessing():
  return {"template": "fundus", "green_channel": True, "intensity": "scale", "a_min": 0,
          "a_max": 255}


def _fundus(name, title, target, split, lr, epochs, notes=""):
  return Task(
      name=name, title=title, modality="fundus", ndim=2, kind="segmentation",
      classes=("background", target), in_channels=1, split=split,
      preprocessing=_fundus_preprocessing(), roi=(128, 128),
      optimizer=Optimizer("adamw", lr=lr, weight_decay=1e-5), schedule=Schedule(epochs, 5, 10),
      sampling=Sampling(batch=1, patches_per_case=2, pos=1, neg=1),
      inference=Inference(overlap=0.75, output="sigmoid"),
      metrics=SEGMENTATION_METRICS,
      notes=("masks binarised > 0; prediction = sigmoid probability > 0.5 on [0, 1] inputs, Dice "
             "of the foreground only (the reference thresholds logits, skips scaling and "
             "averages in background Dice)" + (f"; {notes}" if notes else "")))


_FUNDUS = [
    _fundus("drive", "DRIVE retinal vessels", "vessel",
            "DRIVE.json: 14 train / 6 val of the 20 official training images (test set unused)",
            2e-4, 100),
    _fundus("stare", "STARE retinal vessels", "vessel", "STARE.json: 14 train / 6 val", 1e-4, 100,
            notes="in_channels 1 (the green channel): the reference default of 3 does not match "
                  "the 1 channel its trainer feeds"),
    _fundus("hvdropdb_bv", "HVDROPDB neonatal (ROP) retinal vessels", "vessel",
            "BV.json: 60 train / 20 val (Neo and RetCam 1-30 / 31-40)", 9e-5, 300),
    _fundus("hvdropdb_od", "HVDROPDB optic disc", "optic disc",
            "OD.json: 70 train / 20 val entries = 10 unique val images (Neo and RetCam 36-40, "
            "each listed twice); 41-45 unused", 8e-5, 300,
            notes="duplicate val entries are scored once"),
    _fundus("hvdropdb_ridge", "HVDROPDB ROP ridge", "ridge", "RIDGE.json: 60 train / 20 val",
            3e-4, 300, notes="the reference uses 2 softmax channels and squared-pred DiceCE here; "
                             "we keep the single sigmoid output of the other fundus tasks"),
]

# Classification with a reference folder.


def _amsgrad(lr=3e-4):
  # AdamW(amsgrad) without a weight decay passed: torch's default 0.01.
  return Optimizer("adamw_amsgrad", lr=lr, weight_decay=0.01)


_PLANES = ("axial", "coronal", "sagittal")


# DRAC's training jitter, PIL ImageEnhance-like (its flips, lost in the reference, are kept);
# the 2D classification tasks without a reference folder reuse the DRAC loop.
_DRAC_AUGMENTATION = Augmentation(flip_prob=0.5, brightness=0.07, contrast=0.05,
                                  jitter="enhance", jitter_prob=0.5)


def _mrnet(label, title, classes):
  return Task(
      name=f"mrnet_{label}", title=f"MRNet knee MRI: {title}", modality="MRI", ndim=3,
      kind="classification", classes=classes, in_channels=3,
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
         kind="classification", classes=("normal", "CP", "NCP"), in_channels=1,
         split="csv/CC_CCII_fold{0,1,2}_{train,valid}.csv, 3 folds; fold 0: 2514 train / 1664 "
               "val scans, patient-disjoint", official_folds=3,
         preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "crop": (384, 384), "resize": (256, 256)},
         roi=(64, 256, 256),
         augmentation=Augmentation(flip_prob=0.5, flip_axes=(0,), crop_offset=18,
                                   brightness=0.07, contrast=0.05, jitter="shift"),
         optimizer=_amsgrad(), schedule=Schedule(100, 5, 10), metrics=("accuracy",),
         notes="train crop offset +-18 px, slice-order flip p0.5, brightness +-0.07, contrast "
               "+-5%; depth: every scan resampled to 64 slices (SwinUNETR needs each axis "
               "divisible by 32; the reference keeps the scan's slice count and doubles it by "
               "concatenating the volume with itself)"),
    Task(name="luna16", title="LUNA16 nodule candidate classification, chest CT", modality="CT",
         ndim=3, kind="classification", classes=("false positive", "nodule"), in_channels=1,
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
               "prefix) and its backbone is SwinViT v1: we load RaSE"),
    _mrnet("abnormal", "abnormality", ("normal", "abnormal")),
    _mrnet("acl", "ACL tear", ("no ACL tear", "ACL tear")),
    _mrnet("meniscus", "meniscal tear", ("no meniscal tear", "meniscal tear")),
    Task(name="drac", title="DRAC22 task 3, diabetic retinopathy grading on OCTA",
         modality="OCTA", ndim=2, kind="classification", classes=("no DR", "NPDR", "PDR"),
         in_channels=3, split="csv/train.csv 499 (279/162/58) / csv/val.csv 112 (50/50/12)",
         preprocessing={"template": "2d-generic", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "resize": (256, 256)},
         roi=(256, 256),
         optimizer=_amsgrad(8e-5), schedule=Schedule(200, 3, 10), augmentation=_DRAC_AUGMENTATION,
         metrics=("auc", "accuracy"), extra_metrics=("qwk",),
         notes="macro one-vs-rest AUC; QWK is the DRAC22 challenge metric; flips p0.5 are "
               "applied (the reference loses them)"),
]

# Datasets without a reference folder, and the second tasks of IDRiD and MMOTU:
# standard public protocols, all inferred. 2D segmentation reuses the fundus loop with 256^2
# patches, 2D classification and regression the DRAC loop.


def _preprocessing_2d(modality, **fields):
  # X-ray and mammography files are often 12- or 16-bit: per-image min-max; others are 8-bit.
  intensity = ({"intensity": "minmax"} if MODALITY_GROUPS[modality] == "X-ray"
               else {"intensity": "scale", "a_min": 0, "a_max": 255})
  return {"template": "2d-generic", **intensity, **fields}


def _seg2d(name, title, modality, target, in_channels, split, extra_metrics=(), classes=None,
           preprocessing=None, notes="", cv_folds=None):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind="segmentation",
      classes=("background",) + (classes or (target,)), in_channels=in_channels, split=split,
      preprocessing=preprocessing or _preprocessing_2d(modality), roi=(256, 256),
      optimizer=Optimizer("adamw", lr=1e-4, weight_decay=1e-5), schedule=Schedule(100, 5, 10),
      sampling=Sampling(batch=1, patches_per_case=2, pos=1, neg=1),
      inference=Inference(overlap=0.75),
      metrics=SEGMENTATION_METRICS, extra_metrics=extra_metrics, inferred=True, notes=notes,
      cv_folds=cv_folds)


def _cls2d(name, title, modality, classes, in_channels, split, metrics, extra_metrics=(),
           kind="classification", notes="", cv_folds=None):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind=kind, classes=classes,
      in_channels=in_channels, split=split,
      preprocessing=_preprocessing_2d(modality, resize=(256, 256)), roi=(256, 256),
      optimizer=_amsgrad(8e-5), schedule=Schedule(200, 3, 10), augmentation=_DRAC_AUGMENTATION,
      metrics=metrics, extra_metrics=extra_metrics, inferred=True, notes=notes,
      cv_folds=cv_folds)


_BENIGN_MALIGNANT = ("normal", "benign", "malignant")
_INFERRED = [
    _cls2d("shenzhen", "Shenzhen chest X-ray, tuberculosis", "X-ray", ("normal", "tuberculosis"),
           1, "662 images (326 normal / 336 TB), 5-fold CV, fold 0", ("auc", "accuracy"),
           cv_folds=5),
    _seg2d("montgomery", "Montgomery County chest X-ray, lung fields", "X-ray", "lung", 1,
           "138 images (80 normal / 58 TB), random 80/20 split"),
    _cls2d("rsna_bone_age", "RSNA pediatric bone age, hand X-ray", "X-ray", (), 1,
           "official 12,611 train / 1,425 val / 200 test", ("mae",), kind="regression",
           notes="target in months (0-228); sex input not used"),
    _cls2d("bfmr", "Bone fracture multi-region X-ray", "X-ray", ("fractured", "not fractured"), 1,
           "official Kaggle train / val / test folders (~10.6k images)", ("auc", "accuracy")),
    _cls2d("kau_bcmd", "KAU-BCMD mammography, BI-RADS category", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1, "random 80/20 split, patient-level",
           ("auc", "accuracy", "macro_f1"),
           notes="the download holds folders for BI-RADS 1, 3, 4 and 5 only: class BI-RADS 2 "
                 "stays empty"),
    _cls2d("bmcd", "BMCD breast micro-calcifications, mammography", "mammography",
           ("normal", "benign", "suspicious"), 1, "random 80/20 split, patient-level",
           ("auc", "accuracy"),
           notes="classes from the BI-RADS assessment of Description.xlsx (1 normal, 2 benign, "
                 "4a-5 suspicious): the download has biopsy results for too few cases to tell "
                 "malignant from benign"),
    _cls2d("lamis_dmdb", "LAMIS-DMDB digital mammography (public sample)", "mammography",
           _BENIGN_MALIGNANT, 1, "random 80/20 split, patient-level", ("auc", "accuracy")),
    _cls2d("cdd_cesm", "CDD-CESM contrast-enhanced spectral mammography", "mammography",
           _BENIGN_MALIGNANT, 1, "patient-level random 80/20 split", ("auc", "accuracy")),
    _cls2d("mendeley_mammo", "Mendeley mammography (fvjhtskg93), cancer vs non-cancer",
           "mammography", ("cancer", "non-cancer"), 1, "random 80/20 split", ("auc", "accuracy")),
    _seg2d("inbreast", "INbreast mass segmentation, mammography", "mammography", "mass", 1,
           "410 images / 115 cases, patient-level 80/20 split"),
    _cls2d("vindr_mammo", "VinDr-Mammo BI-RADS assessment", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1,
           "official split column: 4,000 train / 1,000 test exams", ("auc", "macro_f1")),
    _cls2d("cbis_ddsm", "CBIS-DDSM benign vs malignant (mass and calcification ROIs)",
           "mammography", ("benign", "malignant"), 1, "official train / test CSVs",
           ("auc", "accuracy")),
    _cls2d("idrid_grading", "IDRiD diabetic retinopathy grading, fundus", "fundus",
           ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "PDR"), 3,
           "official 413 train / 103 test", ("accuracy", "auc"), extra_metrics=("qwk",),
           notes="the DRAC harness (named IDRiD in the reference) on colour fundus images"),
    _seg2d("glas", "GlaS colon gland segmentation, H&E", "pathology", "gland", 3,
           "official 85 train / 80 test (A 60 + B 20)", extra_metrics=("object_f1",),
           preprocessing=_preprocessing_2d("pathology", binarize="nonzero")),
    _seg2d("cocahis", "CoCaHis colon cancer regions, H&E", "pathology", "cancer", 3,
           "82 images / 19 patients, official 58 train / 24 test"),
    _seg2d("tnbc", "TNBC nuclei segmentation, H&E", "pathology", "nucleus", 3,
           "50 images / 11 patients, patient-level split (patients 1-8 train, 9-11 test)",
           extra_metrics=("aji",)),
    _seg2d("monusac", "MoNuSAC multi-class nuclei segmentation, H&E", "pathology", None, 3,
           "official train / test", extra_metrics=("pq",),
           classes=("epithelial", "lymphocyte", "macrophage", "neutrophil")),
    _seg2d("janowczyk_epithelium", "Janowczyk tutorial: epithelium segmentation, H&E",
           "pathology", "epithelium", 3, "42 images, 5 tutorial folds (by patient), fold 0",
           notes="one of the tutorial subsets (alternatives: nuclei, IDC, lymphoma)",
           cv_folds=5),
    _seg2d("crag", "CRAG colorectal gland segmentation, H&E", "pathology", "gland", 3,
           "official 173 train / 40 test", extra_metrics=("object_f1",),
           preprocessing=_preprocessing_2d("pathology", binarize="nonzero")),
    _cls2d("midog21", "MIDOG 2021 mitotic figure vs imposter patches, H&E", "pathology",
           ("imposter", "mitotic figure"), 3,
           "scanner-wise split: the labelled images of the Hamamatsu XR and S360 scanners (1-100) "
           "train, of the Aperio CS2 (101-150) test (the fourth scanner has no labels)",
           ("macro_f1", "auc"), extra_metrics=("detection_f1",),
           notes="the challenge F1 is detection F1 of mitoses; ours is patch classification"),
    _cls2d("nucls", "NuCLS nucleus super-class classification, H&E", "pathology",
           ("tumor", "stromal", "sTIL", "other"), 3, "official fold 1 (train / test slide lists)",
           ("macro_f1", "auc")),
    _cls2d("wsss4luad", "WSSS4LUAD lung adenocarcinoma tissue types, H&E", "pathology",
           ("tumor", "stroma", "normal"), 3, "official train / val / test", ("auc",),
           kind="multilabel",
           notes="image-level multi-label classification: the challenge's mIoU scores "
                 "pixel masks (weakly supervised segmentation), which this task does not make"),
    _seg2d("tn3k", "TN3K thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "official 2,879 train / 614 test", extra_metrics=("iou",),
           preprocessing=_preprocessing_2d("ultrasound", binarize="half")),
    _seg2d("tg3k", "TG3K thyroid gland segmentation, ultrasound", "ultrasound", "thyroid gland",
           1, "TRFE-Net split file tg3k-trainval.json",
           preprocessing=_preprocessing_2d("ultrasound", binarize="half")),
    _seg2d("ddti", "DDTI thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "637 images, 5-fold CV, fold 0",
           notes="alternative protocol: train on TN3K, test on DDTI", cv_folds=5),
    _seg2d("mmotu_seg", "MMOTU ovarian tumour segmentation, ultrasound", "ultrasound", "tumor",
           1, "official train.txt / val.txt: 1,000 / 469", extra_metrics=("miou",),
           notes="binary tumour mask (the 9-class typed masks are the alternative)"),
    _seg2d("idrid_lesion_seg", "IDRiD hard exudate segmentation, fundus", "fundus",
           "hard exudate", 1, "official 54 train / 27 test", extra_metrics=("aupr",),
           preprocessing=_fundus_preprocessing(),
           notes="one binary lesion task, on the green channel; alternatives: HE, MA, SE or "
                 "optic disc"),
    _cls2d("mmotu_cls", "MMOTU ovarian tumour type classification, ultrasound", "ultrasound",
           ("chocolate cyst", "serous cystadenoma", "teratoma", "theca cell tumor",
            "simple cyst", "normal ovary", "mucinous cystadenoma",
            "high grade serous cystadenocarcinoma"), 1, "official 1,000 / 469",
           ("accuracy", "macro_f1", "auc")),
]

TASKS = {task.name: task for task in _SEG3D + _FUNDUS + _CLASSIFICATION + _INFERRED}


def get(name):
  """The task called `name`; an unknown name is an error naming the closest ones."""
  if name in TASKS:
    return TASKS[name]
  close = difflib.get_close_matches(name.lower(), TASKS, n=3, cutoff=0.5)
  hint = f"did you mean {', '.join(close)}? " if close else ""
  raise ValueError(f"unknown task {name!r}: {hint}known tasks: {', '.join(sorted(TASKS))}")

