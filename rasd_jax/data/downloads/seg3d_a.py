"""3D segmentation downloads: ACDC, AMOS (MRI), ATLAS (liver MRI), MM-WHS (MRI and CT), BraTS 2021,
CHAOS (CT), 3D-IRCADb.

Each task follows the authors' split list, shipped in rasd_jax/data/splitlists with the
download's own case names. The NIfTI downloads are read in place; CHAOS (DICOM series + PNG
slice masks) and 3D-IRCADb (zipped DICOM series, one mask series per structure) are converted
to a NIfTI image and a NIfTI label on the image's grid.
"""

import contextlib
import os
import re
import tempfile
import zipfile

from etils import epath
import nibabel as nib
import numpy as np
import pydicom
from PIL import Image

from rasd_jax.data import downloads
from rasd_jax.data import readers
from rasd_jax.data.downloads import Convert, Layout, Listing, Recipe

# 3D-IRCADb mask folders of liver tumours: livertumor, livertumor01, livertumors, ...; patient
# 3Dircadb1.7 names its tumour folder "tumor".
_IRCADB_TUMOUR = re.compile(r"^(liver)?tumou?r", re.IGNORECASE)


# --- NIfTI downloads, read in place --------------------------------------------------------------


def _acdc(root):
  def case(name):  # patientNNN_frameXX, in database/training/patientNNN/
    folder = name.split("_")[0]
    return {"image": downloads.path(root, "training", folder, f"{name}.nii.gz"),
            "label": downloads.path(root, "training", folder, f"{name}_gt.nii.gz")}
  # No "group": the authors' list puts the two frames of 30 patients in train and val; a
  # group would move those 30 frames out of training (splits.make_splits), not 160 / 40.
  return downloads.shipped_listing("acdc.json", case)


def _amos_mri(root):
  in_va = set(downloads.shipped("amos_mri.json")["in_va"])

  def case(name):
    # The list says which AMOS 2022 set (training Tr, validation Va) holds a case; a copy that
    # holds it in the other set is followed.
    sets = ("Va", "Tr") if name in in_va else ("Tr", "Va")
    found = [s for s in sets if epath.Path(downloads.path(root, f"labels{s}",
                                                              f"{name}.nii.gz")).exists()]
    where = (found or sets)[0]
    return {"image": downloads.path(root, f"images{where}", f"{name}.nii.gz"),
            "label": downloads.path(root, f"labels{where}", f"{name}.nii.gz")}
  return downloads.shipped_listing("amos_mri.json", case)


def _atlas_mri(root):
  return downloads.shipped_listing("atlas_mri.json", lambda name: {
      "image": downloads.path(root, "imagesTr", f"{name}.nii.gz"),
      "label": downloads.path(root, "labelsTr", f"lb{name[2:]}.nii.gz")})


def _whs(modality, title, split):
  """The recipe of one MM-WHS 2017 training set: <modality>_train/<modality>_train_NNNN_
  {image,label}.nii.gz, read in place."""
  folder = f"{modality}_train"

  def cases(root):
    return downloads.shipped_listing(f"whs_{modality}.json", lambda name: {
        "image": downloads.path(root, folder, f"{name}_image.nii.gz"),
        "label": downloads.path(root, folder, f"{name}_label.nii.gz")})
  return Recipe(
      f"whs_{modality}", "https://zmiclab.github.io/zxh/0/mmwhs/",
      f"the MM-WHS 2017 {title} training data ({folder}.zip: {folder}/)",
      (Layout(f"MM-WHS {folder}", (f"{folder}/{folder}_*_image.nii.gz",
                                   f"{folder}/{folder}_*_label.nii.gz"), cases),),
      f"reads {folder}_NNNN_{{image,label}}.nii.gz in place (labels 205 ... 850, mapped by the "
      f"task's label_map); {split} ({_SPLIT_NOTE})")


def _brats21(root):
  folds = downloads.shipped("brats21.json")["folds"]

  def case(name):
    files = [downloads.path(root, name, f"{name}_{m}.nii.gz")
             for m in ("flair", "t1ce", "t1", "t2")]
    return {"image": files, "label": downloads.path(root, name, f"{name}_seg.nii.gz")}
  return Listing(cases={i: case(i) for fold in folds for i in fold},
                 folds=[{"train": [i for j, other in enumerate(folds) if j != k for i in other],
                         "val": list(fold), "test": None} for k, fold in enumerate(folds)])


# --- DICOM downloads, converted -----------------------------------------------------------------


def _series_order(folder):
  """The file names of DICOM series `folder` in the order readers.load_dicom_series stacks
  its slices (sorted names, then stable along the slice normal)."""
  names = readers.listdir(folder)
  heads = []
  for name in names:
    with readers.reading(os.path.join(folder, name)):
      heads.append(pydicom.dcmread(os.path.join(folder, name), stop_before_pixels=True))
  orientation = np.asarray(heads[0].ImageOrientationPatient, float)
  normal = np.cross(orientation[:3], orientation[3:])
  along = [np.asarray(h.ImagePositionPatient, float) @ normal for h in heads]
  return [names[i] for i in np.argsort(along, kind="stable")]


def _save(volume, affine, output, dtype):
  image = nib.Nifti1Image(volume.astype(dtype), affine)
  image.set_qform(affine, code=1)
  image.set_sform(affine, code=1)
  nib.save(image, output)


def _save_label(slices, names, affine, output):
  """Writes the label of a DICOM series from its mask slices ({file name: (rows, columns)}),
  stacked in the order `names` (_series_order) with the voxel axes (column, row, slice) that
  readers.load_dicom_series gives the image."""
  volume = np.stack([slices[name].T for name in names], axis=-1)
  _save(volume, affine, output, np.uint8)


@contextlib.contextmanager
def _unzipped(path):
  """The folder `path`, or a temporary folder holding the zip file `path` unpacked (its single
  top folder, where it has one): 3D-IRCADb ships its series zipped."""
  if os.path.isdir(path):
    yield path
    return
  with tempfile.TemporaryDirectory() as folder:
    try:
      with zipfile.ZipFile(path) as archive:
        archive.extractall(folder)
    except (zipfile.BadZipFile, OSError) as e:
      raise ValueError(f"cannot unpack {path} (corrupt or incomplete zip): {e}") from e
    top = downloads.listdir(folder)
    yield (os.path.join(folder, top[0]) if len(top) == 1
           and os.path.isdir(os.path.join(folder, top[0])) else folder)


def _dicom_image(inputs, output):
  """Convert.make: the DICOM series (folder or zip) inputs[0] as a NIfTI image, CT values in
  int16 where they are integers."""
  with _unzipped(inputs[0]) as folder:
    volume, affine = readers.load_dicom_series(folder)
  integral = np.array_equal(volume, np.round(volume)) and np.abs(volume).max() < 2 ** 15
  _save(volume[0], affine, output, np.int16 if integral else np.float32)


def _chaos_label(inputs, output):
  """Convert.make: CHAOS CT liver masks (Ground/*.png) as a NIfTI label on the grid of the
  DICOM series (DICOM_anon). The CHAOS evaluation code pairs the k-th PNG with the k-th DICOM
  file, both sorted by name ("the orientation of the slices is determined by order of image
  names NOT by position tags"), and a PNG's rows and columns are the DICOM pixel rows and
  columns; any non-zero pixel is liver."""
  dicom, ground = inputs
  names, masks = readers.listdir(dicom), downloads.glob(ground, "*.png")
  if len(masks) != len(names):
    raise ValueError(f"{ground} holds {len(masks)} masks but {dicom} {len(names)} slices")
  _, affine = readers.load_dicom_series(dicom)
  shape = pydicom.dcmread(os.path.join(dicom, names[0]), stop_before_pixels=True)
  slices = {}
  for name, mask in zip(names, masks):
    with readers.reading(mask):
      with Image.open(mask) as png:
        pixels = np.asarray(png)
    if pixels.shape != (shape.Rows, shape.Columns):
      raise ValueError(f"mask {mask} has pixels {pixels.shape}, not the ({shape.Rows}, "
                       f"{shape.Columns}) grey pixels of its DICOM slice")
    slices[name] = pixels > 0
  _save_label(slices, _series_order(dicom), affine, output)


def _ircadb_label(inputs, output):
  """Convert.make: 3D-IRCADb label 1 liver, 2 tumour (the union of the liver tumour masks)
  from the MASKS_DICOM series, paired with PATIENT_DICOM slice by file name (image_k)."""
  with _unzipped(inputs[0]) as patient, _unzipped(inputs[1]) as masks:
    names = _series_order(patient)
    _, affine = readers.load_dicom_series(patient)
    structures = downloads.listdir(masks)
    if "liver" not in structures:
      raise ValueError(f"{inputs[1]} has no liver mask (structures: {structures})")
    slices = {name: 0 for name in names}
    for value, structure in [(1, "liver")] + [(2, s) for s in structures
                                              if _IRCADB_TUMOUR.match(s)]:
      for name in names:
        path = os.path.join(masks, structure, name)
        with readers.reading(f"{inputs[1]}: {structure}/{name}"):
          pixels = pydicom.dcmread(path).pixel_array
        slices[name] = np.where(pixels > 0, value, slices[name])
    _save_label(slices, names, affine, output)


def _chaos(root):
  def case(name):
    dicom, ground = (downloads.path(root, "CT", name, f) for f in ("DICOM_anon", "Ground"))
    return {"image": Convert(f"nifti/chaos_ct_{name}_image.nii.gz", (dicom,), _dicom_image),
            "label": Convert(f"nifti/chaos_ct_{name}_label.nii.gz", (dicom, ground), _chaos_label)}
  return downloads.shipped_listing("chaos.json", case)


def _ircadb(root):
  def series(name, what):  # the unzipped folder where the user unzipped it, else the zip
    folder = downloads.path(root, name, what)
    return folder if epath.Path(folder).is_dir() else folder + ".zip"

  def case(name):
    patient, masks = series(name, "PATIENT_DICOM"), series(name, "MASKS_DICOM")
    return {"image": Convert(f"nifti/{name}_image.nii.gz", (patient,), _dicom_image),
            "label": Convert(f"nifti/{name}_label.nii.gz", (patient, masks), _ircadb_label)}
  return downloads.shipped_listing("ircadb.json", case)


_SPLIT_NOTE = "the authors' split list, shipped with the download's case names"

RECIPES = [
    Recipe("acdc", "https://www.creatis.insa-lyon.fr/Challenge/acdc/databases.html",
           "the ACDC database (training/ and testing/ folders, one patientNNN folder each)",
           (Layout("ACDC database", ("training/patient*/patient*_frame*_gt.nii.gz",),
                   _acdc),),
           "reads the ED/ES frames patientNNN_frameXX.nii.gz and their _gt masks in place; "
           f"ACDC.json 160 / 40 frames ({_SPLIT_NOTE})"),
    Recipe("amos_mri", "https://amos22.grand-challenge.org/",
           "amos22.zip (Zenodo record 7262581 or 7155725): imagesTr, labelsTr, imagesVa, "
           "labelsVa, dataset.json",
           (Layout("AMOS 2022 (amos22/)", ("imagesTr/amos_*.nii.gz", "labelsTr/amos_*.nii.gz"),
                   _amos_mri),),
           "reads the MRI cases (ids 0500+) of the training and validation sets in place; "
           f"AMOS_MRI.json 48 / 12 ({_SPLIT_NOTE})"),
    Recipe("atlas_mri", "https://atlas-challenge.u-bourgogne.fr/",
           "atlas-train-dataset-1.0.1.zip (train/imagesTr, train/labelsTr)",
           (Layout("ATLAS 2023 training set", ("imagesTr/im*.nii.gz", "labelsTr/lb*.nii.gz"),
                   _atlas_mri),),
           f"reads imN.nii.gz / lbN.nii.gz in place; ATLAS-MRI.json 45 / 15 ({_SPLIT_NOTE})"),
    _whs("mr", "MR", "MM-WHS-MRI.json 15 / 5"),
    _whs("ct", "CT", "WHS-CT dataset.json 16 / 4"),
    Recipe("brats21", "https://www.synapse.org/#!Synapse:syn25829067",
           "BraTS2021_Training_Data.tar (RSNA_ASNR_MICCAI_BraTS2021_TrainingData_16July2021/, "
           "with or without a TrainingData/ folder above the cases)",
           (Layout("BraTS 2021 training data", ("BraTS2021_*/BraTS2021_*_seg.nii.gz",
                                                "BraTS2021_*/BraTS2021_*_flair.nii.gz"),
                   _brats21),),
           "reads the flair, t1ce, t1, t2 channels and the seg mask in place; "
           f"brats21_folds.json, 5 folds, fold 0 1000 / 251 ({_SPLIT_NOTE})"),
    Recipe("chaos", "https://chaos.grand-challenge.org/Data/",
           "CHAOS_Train_Sets.zip (Zenodo record 3431873): Train_Sets/CT/N/{DICOM_anon,Ground}",
           (Layout("CHAOS training sets", ("CT/*/DICOM_anon", "CT/*/Ground/*.png"), _chaos),),
           "converts each CT DICOM series to NIfTI and its liver PNG masks (k-th mask = k-th "
           f"DICOM file by name) to a NIfTI label; chaos.json 16 / 4 ({_SPLIT_NOTE})"),
    Recipe("ircadb", "https://www.ircad.fr/research/data-sets/liver-segmentation-3d-ircadb-01/",
           "3Dircadb1.zip: 3Dircadb1.N/PATIENT_DICOM.zip and MASKS_DICOM.zip (zipped or "
           "unzipped)",
           (Layout("3D-IRCADb-01", ("3Dircadb1.*/PATIENT_DICOM*", "3Dircadb1.*/MASKS_DICOM*"),
                   _ircadb),),
           "converts PATIENT_DICOM to NIfTI and MASKS_DICOM to a NIfTI label (1 liver, 2 the "
           f"union of the liver tumour masks); 3D-IRCADb.json 15 / 5 ({_SPLIT_NOTE})"),
]
