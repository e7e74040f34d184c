"""The downstream task registry: the 56 tasks of the RaSD protocol as plain data.

Values are the reference code defaults read in TASKS.md (sections 1-3) or, for tasks without a
reference folder (section 4 and the two extra tasks of section 5), the dataset's standard public
protocol, marked `inferred`. Reference defects that TASKS.md section 6 lists are not copied:
metrics follow the standard definitions of `rasd_jax.evaluation.metrics` (segmentation Dice
excludes background; fundus masks come from sigmoid probabilities > 0.5 after [0, 1] scaling;
an empty class is left out, never scored 0), and schedulers step once per iteration.

Conventions:
- roi: the patch (segmentation) or network input (classification) size, in array axis order
  after loading (x, y, z for NIfTI in RAS; as stored for .npy and 2D images). None: the size of
  the volume along that axis is kept (a variable slice count).
- metrics: names of the values `rasd_jax.evaluation.metrics` returns for the task's kind;
  metrics[0] selects the best checkpoint. extra_metrics: standard metrics of the dataset that
  that module does not compute yet (QWK, object F1, AJI, PQ, mIoU, AUPR, ...).
- classes: segmentation starts with "background"; regression has none.
- label_map: label value on disk -> class index, where the files do not hold 0..C-1; it lists
  every value but 0 (background), and any other value on disk is an error.
- regions: evaluation regions as unions of class indices (BraTS TC/WT/ET).
- preprocessing: template ("CT-T", "MR-T", "fundus", "2d-generic", "npy"), intensity
  ("window": clip a_min..a_max and map to 0..1; "scale": map a_min..a_max to 0..1 without
  clipping; "zscore_nonzero": per channel over nonzero voxels; "minmax": per image to 0..1),
  spacing (mm; None keeps the native grid), green_channel, crop, resize, planes.
- optim: optimizer, lr, weight_decay, epochs, warmup_epochs (linear warmup from 0, then cosine
  to 0, stepped per iteration; LUNA16's schedule is constant), val_every, batch, amp;
  segmentation adds pos, neg and num_samples (RandCropByPosNegLabel: patches per volume) and
  overlap (sliding-window inference).
"""

import dataclasses
import difflib

# Layout name -> the `rasd_jax.data.readers` function that lists its cases.
LAYOUTS = {
    "decathlon_json": "load_decathlon",      # MSD dataset.json: training/validation {image, label}
    "image_mask_json": "load_decathlon",     # 2D image/mask pairs listed in the same JSON form
    "image_mask_folders": "pairs_from_folders",  # 2D images and masks matched by file stem
    "csv": "load_classification_csv",        # CSV of image path and label column(s)
    "npy_csv": "load_classification_csv",    # CSV of labels naming .npy volumes
    "class_folders": "load_class_folders",   # one folder per class
}
KINDS = ("segmentation", "classification", "multilabel", "regression")
# Modality -> the paper's six modality groups (mammography counts as X-ray, OCTA as fundus).
MODALITY_GROUPS = {
    "CT": "CT", "MRI": "MRI", "X-ray": "X-ray", "mammography": "X-ray", "fundus": "fundus",
    "OCTA": "fundus", "pathology": "pathology", "ultrasound": "ultrasound",
}
# Kind -> the metric names `rasd_jax.evaluation.metrics` returns for it.
METRICS = {
    "segmentation": ("dice", "hd95", "nsd"),
    "classification": ("accuracy", "balanced_accuracy", "macro_f1", "auc"),
    "multilabel": ("auc",),
    "regression": ("mae", "rmse"),
}
SEGMENTATION_METRICS = METRICS["segmentation"]


@dataclasses.dataclass(frozen=True)
class Task:
  """One downstream task; see the module docstring for the conventions of each field."""
  name: str
  title: str
  modality: str
  ndim: int
  kind: str
  classes: tuple
  in_channels: int
  layout: str
  layout_notes: str
  split: str
  preprocessing: dict
  roi: tuple
  optim: dict
  metrics: tuple
  extra_metrics: tuple = ()
  label_map: dict = None
  regions: dict = None
  inferred: bool = False
  notes: str = ""

  def __post_init__(self):
    choices = {"modality": MODALITY_GROUPS, "kind": METRICS, "layout": LAYOUTS, "ndim": (2, 3)}
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        self._fail(f"{field} {getattr(self, field)!r} is not one of {', '.join(map(str, allowed))}")
    if len(self.roi) != self.ndim:
      self._fail(f"roi {self.roi} does not have ndim = {self.ndim} sizes")
    if self.in_channels < 1:
      self._fail(f"in_channels must be >= 1, got {self.in_channels}")
    if self.kind == "segmentation" and self.classes[:1] != ("background",):
      self._fail(f"segmentation classes must start with 'background', got {self.classes[:3]}")
    if (self.kind == "regression") != (not self.classes):
      self._fail(f"only regression has no classes; kind {self.kind}, classes {self.classes}")
    unknown = set(self.metrics) - set(METRICS[self.kind])
    if not self.metrics or unknown:
      self._fail(f"metrics {self.metrics}: {self.kind} metrics are {METRICS[self.kind]}; list "
                 "others as extra_metrics")

  def _fail(self, message):
    raise ValueError(f"task {self.name!r}: {message}")

  @property
  def modality_group(self):
    return MODALITY_GROUPS[self.modality]

  @property
  def num_classes(self):
    return len(self.classes)


# 3D segmentation (TASKS.md section 1): SwinUNETR-v2, the CT-T / MR-T templates.

_MSD_FILES = "imagesTr/*_0000.nii.gz + labelsTr/*.nii.gz, paths relative to the data dir"


def _ct(a_min, a_max, spacing):
  return {"template": "CT-T", "intensity": "window", "a_min": a_min, "a_max": a_max,
          "spacing": spacing}


def _mr():
  return {"template": "MR-T", "intensity": "zscore_nonzero", "spacing": None}


def _seg3d_optim(epochs, warmup, val_every, pos, num_samples, **changes):
  optim = {"optimizer": "adamw", "lr": 3e-4, "weight_decay": 1e-5, "epochs": epochs,
           "warmup_epochs": warmup, "val_every": val_every, "batch": 1, "amp": True, "pos": pos,
           "neg": 1, "num_samples": num_samples, "overlap": 0.75}
  optim.update(changes)
  return optim


def _seg3d(name, title, modality, classes, split, preprocessing, roi, optim, layout_notes=None,
           **fields):
  return Task(name=name, title=title, modality=modality, ndim=3, kind="segmentation",
              classes=("background",) + tuple(classes), in_channels=fields.pop("in_channels", 1),
              layout="decathlon_json", layout_notes=layout_notes or _MSD_FILES, split=split,
              preprocessing=preprocessing, roi=roi, optim=optim, metrics=SEGMENTATION_METRICS,
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
           _seg3d_optim(300, 5, 10, pos=1, num_samples=2)),
    _seg3d("amos_mri", "AMOS abdominal MRI", "MRI", _AMOS_15,
           "AMOS_MRI.json: 48 train / 12 val (+40 test, unused)", _mr(), (192, 192, 32),
           _seg3d_optim(300, 5, 10, pos=9, num_samples=2),
           notes="the reference JSON spells aorta 'arota'"),
    _seg3d("atlas_mri", "ATLAS liver and tumour, CE-T1w MRI", "MRI", ("liver", "tumour"),
           "ATLAS-MRI.json: 45 train / 15 val", _mr(), (96, 96, 96),
           _seg3d_optim(300, 5, 10, pos=1, num_samples=2)),
    _seg3d("whs_mr", "MM-WHS whole heart, MRI", "MRI", _WHS_7,
           "MM-WHS-MRI.json: 15 train / 5 val", _mr(), (96, 96, 96),
           _seg3d_optim(300, 5, 10, pos=1, num_samples=4),
           layout_notes="MM-WHS-MRI.json; images/*.nii.gz + labels/*.nii.gz",
           label_map=_WHS_MAP, notes=_WHS_NOTES),
    _seg3d("brats21", "BraTS 2021 glioma, multi-parametric MRI", "MRI", ("NCR", "ED", "ET"),
           "brats21_folds.json, 5 folds; fold 0: 1000 train / 251 val", _mr(), (128, 128, 128),
           _seg3d_optim(100, 5, 5, pos=1, num_samples=1), in_channels=4,
           layout_notes="brats21_folds.json (a fold per entry); image = the 4 files "
                        "BraTS2021_xxxxx_{flair,t1ce,t1,t2}.nii.gz in that order, label "
                        "BraTS2021_xxxxx_seg.nii.gz",
           label_map={1: 1, 2: 2, 4: 3}, regions={"TC": (1, 3), "WT": (1, 2, 3), "ET": (3,)},
           notes="4-class softmax training; Dice reported on TC/WT/ET, a region absent from the "
                 "target is left out (the reference scores it 0); the reference's fp32 forward "
                 "with GradScaler and double scheduler step are not copied"),
    _seg3d("bhsd", "BHSD brain haemorrhage, head CT", "CT", ("EDH", "IPH", "IVH", "SAH", "SDH"),
           "BHSD.json: 153 train / 39 val", _ct(0, 100, (1.0, 1.0, 5.0)), (192, 192, 32),
           _seg3d_optim(500, 5, 10, pos=1, num_samples=2)),
    _seg3d("btcv", "BTCV multi-organ, abdominal CT", "CT", _ABDOMEN_13,
           "dataset/dataset_1.json: 24 train / 6 val (dataset_0.json is another val split)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(300, 20, 10, pos=9, num_samples=4),
           notes="reference augmentation differs from CT-T: no SpatialPad, adds "
                 "RandScaleIntensity 0.1 p0.1, RandShiftIntensity p0.5; inferer sw_batch 2"),
    _seg3d("chaos", "CHAOS liver, CT", "CT", ("liver",), "chaos.json: 16 train / 4 val",
           _ct(-175, 250, (1.5, 1.5, 5.5)), (96, 96, 96),
           _seg3d_optim(500, 5, 10, pos=1, num_samples=4)),
    _seg3d("ircadb", "3D-IRCADb liver and tumour, CT", "CT", ("liver", "liver tumor"),
           "3D-IRCADb.json: 15 train / 5 val", _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(500, 5, 10, pos=1, num_samples=4)),
    _seg3d("msd07", "MSD Task07 pancreas and tumour, CT", "CT", ("pancreas", "cancer"),
           "dataset_panc.json: 257 train / 24 val (+139 test, unused)",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(500, 5, 10, pos=1, num_samples=2)),
    _seg3d("msd09", "MSD Task09 spleen, CT", "CT", ("spleen",), "spleen.json: 32 train / 9 val",
           _ct(-175, 250, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(500, 5, 10, pos=3, num_samples=4)),
    _seg3d("covid19_20", "COVID-19-20 lung lesions, chest CT", "CT", ("lesion",),
           "Covid19_20_folds.json, 5 folds, fold 0: 159 train / 40 val",
           _ct(-1000, 500, (1.25, 1.25, 5.0)), (192, 192, 32),
           _seg3d_optim(1000, 5, 20, pos=1, num_samples=3),
           layout_notes="Covid19_20_folds.json; Train/volume-covid19-A-xxxx_ct.nii.gz + "
                        "Train/volume-covid19-A-xxxx_seg.nii.gz",
           notes="the reference lesion Dice (mean over cases with a lesion) equals our Dice with "
                 "empty cases left out"),
    _seg3d("parse22", "PARSE 2022 pulmonary artery, CTPA", "CT", ("pulmonary artery",),
           "Parse22.json: 80 train / 20 val", _ct(-1000, 500, (1.25, 1.25, 3.0)), (192, 192, 32),
           _seg3d_optim(500, 5, 20, pos=1, num_samples=2, weight_decay=5e-3)),
    _seg3d("segthor", "SegTHOR organs at risk, thoracic CT", "CT",
           ("esophagus", "heart", "trachea", "aorta"),
           "dataset.json training[:-8] / training[-8:]: 32 train / 8 val (Patient_33-40)",
           _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(1000, 5, 10, pos=3, num_samples=4),
           layout_notes="<data_dir>/dataset.json; imagesTr/Patient_xx.nii.gz + "
                        "labelsTr/Patient_xx_GT.nii.gz"),
    _seg3d("whs_ct", "MM-WHS whole heart, cardiac CT", "CT", _WHS_7,
           "dataset.json: 16 train / 4 val", _ct(0, 1700, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_optim(500, 50, 5, pos=9, num_samples=4, optimizer="adamw_amsgrad",
                        weight_decay=0.01, amp=False),
           label_map=_WHS_MAP,
           notes=_WHS_NOTES + "; no SpatialPad or RandShiftIntensity; wd 0.01 is torch's default "
                 "(not passed); the reference scheduler counts epochs as iterations (not copied)"),
    _seg3d("verse20", "VerSe 2020 vertebrae, spine CT", "CT", _VERSE_28,
           "VerSe.json: 99 train / 8 val", _ct(-1000, 500, (1.5, 1.5, 1.5)), (96, 96, 96),
           _seg3d_optim(500, 5, 10, pos=1, num_samples=1),
           notes="VerSe labels 1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 27 coccyx, 28 T13"),
    _seg3d("totalsegmentator", "TotalSegmentator v1, 104 structures, CT", "CT", _TOTALSEG_104,
           "Totalsegmentator.json: 11 train / 21 val (case 0970 in both; +65 test)",
           _ct(-1000, 1000, (1.5, 1.5, 1.5)), (64, 64, 64),
           _seg3d_optim(200, 5, 200, pos=3, num_samples=1, weight_decay=5e-3),
           notes="class order: TotalSegmentator v1 'total' class map; one validation, at the end"),
]

# 2D fundus segmentation (section 2): RaSE_2D U-Net, green channel, 128^2 patches.


def _fundus_preprocessing():
  return {"template": "fundus", "green_channel": True, "intensity": "scale", "a_min": 0,
          "a_max": 255}


def _fundus(name, title, target, split, lr, epochs, layout_notes, notes=""):
  return Task(
      name=name, title=title, modality="fundus", ndim=2, kind="segmentation",
      classes=("background", target), in_channels=1, layout="image_mask_json",
      layout_notes=layout_notes, split=split,
      preprocessing=_fundus_preprocessing(), roi=(128, 128),
      optim={"optimizer": "adamw", "lr": lr, "weight_decay": 1e-5, "epochs": epochs,
             "warmup_epochs": 5, "val_every": 10, "batch": 1, "amp": True, "pos": 1, "neg": 1,
             "num_samples": 2, "overlap": 0.75},
      metrics=SEGMENTATION_METRICS,
      notes=("masks binarised > 0; prediction = sigmoid probability > 0.5 on [0, 1] inputs, Dice "
             "of the foreground only (the reference thresholds logits, skips scaling and "
             "averages in background Dice)" + (f"; {notes}" if notes else "")))


_HVDROPDB_FILES = "{Neo,RetCam} images and masks (PNG) listed in the JSON"
_FUNDUS = [
    _fundus("drive", "DRIVE retinal vessels", "vessel",
            "DRIVE.json: 14 train / 6 val of the 20 official training images (test set unused)",
            2e-4, 100, "DRIVE.json; train/images/NN_training.png + label/NN_manual1.png"),
    _fundus("stare", "STARE retinal vessels", "vessel", "STARE.json: 14 train / 6 val", 1e-4, 100,
            "STARE.json; train/image/im0xxx.png + masks listed in the JSON",
            notes="in_channels 1 (the green channel): the reference default of 3 does not match "
                  "the 1 channel its trainer feeds"),
    _fundus("hvdropdb_bv", "HVDROPDB neonatal (ROP) retinal vessels", "vessel",
            "BV.json: 60 train / 20 val (Neo + RetCam; val = Neo 31-50)", 9e-5, 300,
            "BV.json; " + _HVDROPDB_FILES),
    _fundus("hvdropdb_od", "HVDROPDB optic disc", "optic disc",
            "OD.json: 70 train / 20 val entries = 10 unique val images (Neo and RetCam 36-40, "
            "each listed twice); 41-45 unused", 8e-5, 300, "OD.json; " + _HVDROPDB_FILES,
            notes="duplicate val entries are scored once"),
    _fundus("hvdropdb_ridge", "HVDROPDB ROP ridge", "ridge", "RIDGE.json: 60 train / 20 val",
            3e-4, 300, "RIDGE.json; " + _HVDROPDB_FILES,
            notes="the reference uses 2 softmax channels and squared-pred DiceCE here; we keep "
                  "the single sigmoid output of the other fundus tasks"),
]

# Classification with a reference folder (section 3).

_AMSGRAD = {"optimizer": "adamw_amsgrad", "lr": 3e-4, "weight_decay": 0.01, "warmup_epochs": 5,
            "batch": 1}
_MRNET_FILES = ("csv/{train,valid}-<label>.csv (c, name, target); volumes "
                "<data_dir>/<c>/{axial,coronal,sagittal}/<name>.npy, slices x 256 x 256, "
                "c = train or valid")


def _mrnet(label, title, classes):
  return Task(
      name=f"mrnet_{label}", title=f"MRNet knee MRI: {title}", modality="MRI", ndim=3,
      kind="classification", classes=classes, in_channels=1, layout="npy_csv",
      layout_notes=_MRNET_FILES.replace("<label>", label),
      split="official 1130 train / 120 valid (valid used as the held-out set)",
      preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                     "planes": ("axial", "coronal", "sagittal")},
      roi=(None, 256, 256),
      optim=dict(_AMSGRAD, epochs=170, val_every=5, amp=True), metrics=("auc",), inferred=True,
      notes="one backbone per plane (3 planes -> concat -> head); the reference trainer is "
            "missing, so the CE loss, the AUC and reporting the 3 labels as separate tasks are "
            "inferred; full 256 px slices (the reference crop assumes 512 px)")


_CLASSIFICATION = [
    Task(name="cc_ccii", title="CC-CCII COVID-19 pneumonia, chest CT", modality="CT", ndim=3,
         kind="classification", classes=("normal", "CP", "NCP"), in_channels=1, layout="npy_csv",
         layout_notes="csv/CC_CCII_fold{0,1,2}_{train,valid}.csv (zip_file, target, label, "
                      "patient_id, scan_id, n_slice...); volume <data_dir>/p{pid}-s{sid}.npy, "
                      "slices x 512 x 512 uint8",
         split="csv/CC_CCII_fold0_{train,valid}.csv: 2514 train / 1664 val scans, "
               "patient-disjoint",
         preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "crop": (384, 384), "resize": (256, 256)},
         roi=(None, 256, 256),
         optim=dict(_AMSGRAD, epochs=100, val_every=10, amp=False), metrics=("accuracy",),
         notes="train crop offset +-18 px, slice-order flip p0.5, brightness +-0.07, contrast "
               "+-5%; depth = the scan's slice count (the reference doubles it by concatenating "
               "the volume with itself)"),
    Task(name="luna16", title="LUNA16 nodule candidate classification, chest CT", modality="CT",
         ndim=3, kind="classification", classes=("false positive", "nodule"), in_channels=1,
         layout="npy_csv",
         layout_notes="<base>/train_0.csv, train_1.csv, valid.csv, test.csv (label, npy path); "
                      "cubes stored z, y, x",
         split="subsets 0-5 train, 6 val, 7-9 test (Models Genesis / Medical-SSL)",
         preprocessing={"template": "npy", "intensity": "scale", "a_min": 0, "a_max": 255,
                        "resize": (64, 64, 64)},
         roi=(64, 64, 64),
         optim={"optimizer": "adam", "lr": 1e-4, "weight_decay": 1e-6, "epochs": 101,
                "warmup_epochs": 0, "schedule": "constant", "val_every": 10, "batch": 8,
                "amp": True, "balanced_sampling": True, "seed": 111},
         metrics=("auc",),
         notes="negatives resampled 1:1 each epoch; the reference's single sigmoid output is a "
               "2-class head here (same AUC); its pre-trained weights never load (DataParallel "
               "prefix) and its backbone is SwinViT v1: we load RaSE"),
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
         optim=dict(_AMSGRAD, lr=8e-5, warmup_epochs=3, epochs=200, val_every=10, amp=True),
         metrics=("auc", "accuracy"), extra_metrics=("qwk",),
         notes="macro one-vs-rest AUC; QWK is the DRAC22 challenge metric; flips p0.5 are "
               "applied (the reference loses them)"),
]

# Datasets without a reference folder (section 4) and the two extra tasks (section 5):
# standard public protocols, all inferred. 2D segmentation reuses the fundus loop with 256^2
# patches, 2D classification and regression the DRAC loop.


def _preprocessing_2d(modality, **fields):
  # X-ray and mammography files are often 12- or 16-bit: per-image min-max; others are 8-bit.
  intensity = ({"intensity": "minmax"} if MODALITY_GROUPS[modality] == "X-ray"
               else {"intensity": "scale", "a_min": 0, "a_max": 255})
  return {"template": "2d-generic", **intensity, **fields}


def _seg2d(name, title, modality, target, in_channels, layout, layout_notes, split,
           extra_metrics=(), classes=None, preprocessing=None, notes=""):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind="segmentation",
      classes=("background",) + (classes or (target,)), in_channels=in_channels, layout=layout,
      layout_notes=layout_notes, split=split,
      preprocessing=preprocessing or _preprocessing_2d(modality), roi=(256, 256),
      optim={"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-5, "epochs": 100,
             "warmup_epochs": 5, "val_every": 10, "batch": 1, "amp": True, "pos": 1, "neg": 1,
             "num_samples": 2, "overlap": 0.75},
      metrics=SEGMENTATION_METRICS, extra_metrics=extra_metrics, inferred=True, notes=notes)


def _cls2d(name, title, modality, classes, in_channels, layout, layout_notes, split, metrics,
           extra_metrics=(), kind="classification", notes=""):
  return Task(
      name=name, title=title, modality=modality, ndim=2, kind=kind, classes=classes,
      in_channels=in_channels, layout=layout, layout_notes=layout_notes, split=split,
      preprocessing=_preprocessing_2d(modality, resize=(256, 256)), roi=(256, 256),
      optim=dict(_AMSGRAD, lr=8e-5, warmup_epochs=3, epochs=200, val_every=10, amp=True),
      metrics=metrics, extra_metrics=extra_metrics, inferred=True, notes=notes)


_BENIGN_MALIGNANT = ("normal", "benign", "malignant")
_MMOTU_FILES = "OTU_2d/images/*.JPG, annotations/*.PNG"
_INFERRED = [
    _cls2d("shenzhen", "Shenzhen chest X-ray, tuberculosis", "X-ray", ("normal", "tuberculosis"),
           1, "class_folders",
           "CXR_png/CHNCXR_nnnn_{0,1}.png: the last digit is the class (0 normal, 1 TB); "
           "sorted into normal/ and tuberculosis/",
           "662 images (326 normal / 336 TB), 5-fold CV, fold 0", ("auc", "accuracy")),
    _seg2d("montgomery", "Montgomery County chest X-ray, lung fields", "X-ray", "lung", 1,
           "image_mask_folders",
           "CXR_png/MCUCXR_nnnn_{0,1}.png; ManualMask/leftMask + ManualMask/rightMask merged "
           "into one mask per image",
           "138 images (80 normal / 58 TB), random 80/20 split"),
    _cls2d("rsna_bone_age", "RSNA pediatric bone age, hand X-ray", "X-ray", (), 1, "csv",
           "boneage-training-dataset.csv (id, boneAge, male); images "
           "boneage-training-dataset/<id>.png",
           "official 12,611 train / 1,425 val / 200 test", ("mae",), kind="regression",
           notes="target in months (0-228); sex input not used"),
    _cls2d("bfmr", "Bone fracture multi-region X-ray", "X-ray", ("fractured", "not fractured"), 1,
           "class_folders", "{train,val,test}/{fractured,not fractured}/*.jpg",
           "official Kaggle train / val / test folders (~10.6k images)", ("auc", "accuracy")),
    _cls2d("kau_bcmd", "KAU-BCMD mammography, BI-RADS category", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1, "class_folders",
           "one folder per BI-RADS category (version 1: 1416 cases, 4 views each)",
           "random 80/20 split, patient-level", ("auc", "accuracy", "macro_f1"),
           notes="class list to check against the download"),
    _cls2d("bmcd", "BMCD breast micro-calcifications, mammography", "mammography",
           ("benign", "malignant", "normal"), 1, "class_folders",
           "one folder per class: benign/, malignant/, normal/ (classes sorted, as the reader)",
           "random 80/20 split, patient-level", ("auc", "accuracy")),
    _cls2d("lamis_dmdb", "LAMIS-DMDB digital mammography (public sample)", "mammography",
           _BENIGN_MALIGNANT, 1, "csv", "a CSV of image path and pathology (from the DICOM "
           "images and the case reports)", "random 80/20 split, patient-level",
           ("auc", "accuracy")),
    _cls2d("cdd_cesm", "CDD-CESM contrast-enhanced spectral mammography", "mammography",
           _BENIGN_MALIGNANT, 1, "csv",
           "Radiology manual annotations.xlsx saved as CSV (Image_name, Pathology Classification/ "
           "Follow up); images Low energy images of CDD-CESM/*.jpg and Subtracted images/*.jpg",
           "patient-level random 80/20 split", ("auc", "accuracy")),
    _cls2d("mendeley_mammo", "Mendeley mammography (fvjhtskg93), cancer vs non-cancer",
           "mammography", ("cancer", "non-cancer"), 1, "class_folders",
           "one folder per class", "random 80/20 split", ("auc", "accuracy")),
    _seg2d("inbreast", "INbreast mass segmentation, mammography", "mammography", "mass", 1,
           "image_mask_folders",
           "AllDICOMs/*.dcm; AllXML/*.xml mass contours rasterised to one mask per image",
           "410 images / 115 cases, patient-level 80/20 split"),
    _cls2d("vindr_mammo", "VinDr-Mammo BI-RADS assessment", "mammography",
           tuple(f"BI-RADS {i}" for i in range(1, 6)), 1, "csv",
           "breast-level_annotations.csv (study_id, image_id, breast_birads, split); images "
           "images/<study_id>/<image_id>.dicom",
           "official split column: 4,000 train / 1,000 test exams", ("auc", "macro_f1")),
    _cls2d("cbis_ddsm", "CBIS-DDSM benign vs malignant (mass and calcification ROIs)",
           "mammography", ("benign", "malignant"), 1, "csv",
           "{mass,calc}_case_description_{train,test}_set.csv (pathology, cropped image file "
           "path); BENIGN_WITHOUT_CALLBACK counts as benign",
           "official train / test CSVs", ("auc", "accuracy")),
    _cls2d("idrid_grading", "IDRiD diabetic retinopathy grading, fundus", "fundus",
           ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "PDR"), 3, "csv",
           "B. Disease Grading/2. Groundtruths/a. IDRiD_Disease Grading_Training Labels.csv "
           "(Image name, Retinopathy grade); images 1. Original Images/a. Training Set/"
           "IDRiD_nnn.jpg",
           "official 413 train / 103 test", ("accuracy", "auc"), extra_metrics=("qwk",),
           notes="the DRAC harness (named IDRiD in the reference) on colour fundus images"),
    _seg2d("glas", "GlaS colon gland segmentation, H&E", "pathology", "gland", 3,
           "image_mask_folders", "Warwick_QU_Dataset/{train,testA,testB}_n.bmp + _n_anno.bmp "
           "(instance labels, binarised)",
           "official 85 train / 80 test (A 60 + B 20)", extra_metrics=("object_f1",)),
    _seg2d("cocahis", "CoCaHis colon cancer regions, H&E", "pathology", "cancer", 3,
           "image_mask_folders", "CoCaHis.hdf5 (HE/raw, GT/GT_majority_vote) exported to image "
           "and mask PNGs", "82 images / 19 patients, official 58 train / 24 test"),
    _seg2d("tnbc", "TNBC nuclei segmentation, H&E", "pathology", "nucleus", 3,
           "image_mask_folders", "Slide_xx/xx_n.png + GT_xx/xx_n.png",
           "50 images / 11 patients, patient-level split (patients 1-8 train, 9-11 test)",
           extra_metrics=("aji",)),
    _seg2d("monusac", "MoNuSAC multi-class nuclei segmentation, H&E", "pathology", None, 3,
           "image_mask_folders", "MoNuSAC_images_and_annotations/<patient>/<image>.tif + .xml "
           "rasterised to class masks",
           "official train / test", extra_metrics=("pq",),
           classes=("epithelial", "lymphocyte", "macrophage", "neutrophil")),
    _seg2d("janowczyk_epithelium", "Janowczyk tutorial: epithelium segmentation, H&E",
           "pathology", "epithelium", 3, "image_mask_folders",
           "epi/*.tif + *_mask.png (same folder, mask suffix _mask)",
           "42 images, 5 tutorial folds, fold 0",
           notes="one of the tutorial subsets (alternatives: nuclei, IDC, lymphoma)"),
    _seg2d("crag", "CRAG colorectal gland segmentation, H&E", "pathology", "gland", 3,
           "image_mask_folders", "{train,valid}/Images/*.png + Annotation/*.png (instance "
           "labels, binarised)", "official 173 train / 40 test", extra_metrics=("object_f1",)),
    _cls2d("midog21", "MIDOG 2021 mitotic figure vs imposter patches, H&E", "pathology",
           ("imposter", "mitotic figure"), 3, "csv",
           "MIDOG.json (COCO boxes) + images/*.tiff; patches around each annotated cell listed "
           "in a CSV (image, label)", "scanner-wise split (3 scanners train, 1 test)",
           ("macro_f1", "auc"), extra_metrics=("detection_f1",),
           notes="the challenge F1 is detection F1 of mitoses; ours is patch classification"),
    _cls2d("nucls", "NuCLS nucleus super-class classification, H&E", "pathology",
           ("tumor", "stromal", "sTIL", "other"), 3, "csv",
           "rgb/*.png + csv/*.csv (nucleus boxes, super_classification); nucleus crops listed "
           "in a CSV (image, label); ambiguous nuclei dropped",
           "official fold 1 (train / test slide lists)", ("macro_f1", "auc")),
    _cls2d("wsss4luad", "WSSS4LUAD lung adenocarcinoma tissue types, H&E", "pathology",
           ("tumor", "stroma", "normal"), 3, "csv",
           "1.training/*-[t, s, n].png (labels in the file name) written to a CSV with one 0/1 "
           "column per class", "official train / val / test", ("auc",),
           extra_metrics=("miou",), kind="multilabel"),
    _seg2d("tn3k", "TN3K thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "image_mask_folders", "trainval-image/*.jpg + trainval-mask/*.jpg, test-image + "
           "test-mask", "official 2,879 train / 614 test", extra_metrics=("iou",)),
    _seg2d("tg3k", "TG3K thyroid gland segmentation, ultrasound", "ultrasound", "thyroid gland",
           1, "image_mask_folders", "thyroid-image/*.jpg + thyroid-mask/*.jpg; "
           "tg3k-trainval.json lists the split", "TRFE-Net split file tg3k-trainval.json"),
    _seg2d("ddti", "DDTI thyroid nodule segmentation, ultrasound", "ultrasound", "nodule", 1,
           "image_mask_folders", "p_image/*.PNG + p_mask/*.PNG (the TN3K release of DDTI)",
           "637 images, 5-fold CV, fold 0",
           notes="alternative protocol: train on TN3K, test on DDTI"),
    _seg2d("mmotu_seg", "MMOTU ovarian tumour segmentation, ultrasound", "ultrasound", "tumor",
           1, "image_mask_folders", _MMOTU_FILES + " (binary masks)",
           "official train.txt / val.txt: 1,000 / 469", extra_metrics=("miou",),
           notes="binary tumour mask (the 9-class typed masks are the alternative)"),
    _seg2d("idrid_lesion_seg", "IDRiD hard exudate segmentation, fundus", "fundus",
           "hard exudate", 1, "image_mask_folders",
           "A. Segmentation/1. Original Images/{a. Training Set,b. Testing Set}/IDRiD_nn.jpg + "
           "2. All Segmentation Groundtruths/.../3. Hard Exudates/IDRiD_nn_EX.tif",
           "official 54 train / 27 test", extra_metrics=("aupr",),
           preprocessing=_fundus_preprocessing(),
           notes="one binary lesion task, on the green channel; alternatives: HE, MA, SE or "
                 "optic disc"),
    _cls2d("mmotu_cls", "MMOTU ovarian tumour type classification, ultrasound", "ultrasound",
           ("chocolate cyst", "serous cystadenoma", "teratoma", "theca cell tumor",
            "simple cyst", "normal ovary", "mucinous cystadenoma",
            "high grade serous cystadenocarcinoma"), 1, "csv",
           _MMOTU_FILES + "; train_cls.txt / val_cls.txt (image, class index)",
           "official 1,000 / 469", ("accuracy", "macro_f1", "auc")),
]

TASKS = {task.name: task for task in _SEG3D + _FUNDUS + _CLASSIFICATION + _INFERRED}


def get(name):
  """The task called `name`; an unknown name is an error naming the closest ones."""
  if name in TASKS:
    return TASKS[name]
  close = difflib.get_close_matches(name.lower(), TASKS, n=3, cutoff=0.5)
  hint = f"did you mean {', '.join(close)}? " if close else ""
  raise ValueError(f"unknown task {name!r}: {hint}known tasks: {', '.join(sorted(TASKS))}")
