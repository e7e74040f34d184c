import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from rasd_jax.data import readers

AFFINE = np.array([[1.5, 0.0, 0.0, -10.0],
                   [0.0, 1.5, 0.0, 5.0],
                   [0.0, 0.0, 3.0, 2.0],
                   [0.0, 0.0, 0.0, 1.0]])


def _nifti(path, array, affine=AFFINE):
  nib.save(nib.Nifti1Image(np.asarray(array), affine), str(path))
  return str(path)


def _json(path, data):
  path.write_text(json.dumps(data))
  return str(path)


def _volume(seed, shape=(4, 5, 3)):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@pytest.fixture
def decathlon(tmp_path):
  """A dataset.json with two 2-modality training cases and a test string entry."""
  (tmp_path / "imagesTr").mkdir()
  (tmp_path / "labelsTr").mkdir()
  for case in range(2):
    for modality in range(2):
      _nifti(tmp_path / f"imagesTr/c{case}_000{modality}.nii.gz", _volume(10 * case + modality))
    _nifti(tmp_path / f"labelsTr/c{case}.nii.gz", np.full((4, 5, 3), case, np.uint8))
  training = [{"image": [f"imagesTr/c{c}_0000.nii.gz", f"./imagesTr/c{c}_0001.nii.gz"],
               "label": f"labelsTr/c{c}.nii.gz"} for c in range(2)]
  return _json(tmp_path / "dataset.json",
               {"name": "toy", "training": training, "test": ["imagesTr/c0_0000.nii.gz"]})


def test_decathlon_paths_are_absolute_and_modalities_stack_as_channels(decathlon, tmp_path):
  entries = readers.load_decathlon(decathlon)
  assert entries[1]["image"] == [str(tmp_path / "imagesTr/c1_0000.nii.gz"),
                                 str(tmp_path / "imagesTr/c1_0001.nii.gz")]
  assert entries[1]["label"] == str(tmp_path / "labelsTr/c1.nii.gz")
  assert readers.load_decathlon(decathlon, "test") == [
      {"image": str(tmp_path / "imagesTr/c0_0000.nii.gz")}]
  image, label, affine = readers.read_case(entries[1], num_classes=2)
  assert image.dtype == np.float32 and image.shape == (2, 4, 5, 3)
  np.testing.assert_array_equal(image[0], _volume(10))
  np.testing.assert_array_equal(image[1], _volume(11))
  assert label.dtype == np.int32 and label.shape == (4, 5, 3) and (label == 1).all()
  np.testing.assert_allclose(affine, AFFINE)
  # Relative to base_dir instead of the json's folder.
  (tmp_path / "other").mkdir()
  moved = _json(tmp_path / "other/ds.json", json.loads(Path(decathlon).read_text()))
  assert readers.load_decathlon(moved, base_dir=tmp_path) == entries


def test_decathlon_errors_name_the_file(decathlon, tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.json"):
    readers.load_decathlon(tmp_path / "nope.json")
  (tmp_path / "broken.json").write_text("{oops")
  with pytest.raises(ValueError, match="cannot parse dataset json .*broken.json"):
    readers.load_decathlon(tmp_path / "broken.json")
  for name, text, kind in (("list", "[]", "list"), ("string", '"imagesTr"', "string")):
    (tmp_path / f"{name}.json").write_text(text)
    with pytest.raises(ValueError, match=f"dataset json .*{name}.json holds a JSON {kind}, "
                       "expected an object with lists such as 'training'"):
      readers.load_decathlon(tmp_path / f"{name}.json")
  with pytest.raises(ValueError, match=r"dataset.json has no list 'validation'; .*'test', "
                     r"'training'"):
    readers.load_decathlon(decathlon, "validation")
  missing = [{"image": f"imagesTr/gone{i}.nii.gz", "label": "labelsTr/c0.nii.gz"}
             for i in range(7)]
  with pytest.raises(FileNotFoundError, match=r"7 file\(s\) listed in .*holes.json .*gone0"
                     r".*gone4.nii.gz and 2 more"):
    readers.load_decathlon(_json(tmp_path / "holes.json", {"training": missing}))


def test_read_case_checks_name_the_file(tmp_path):
  image = _nifti(tmp_path / "img.nii.gz", _volume(0))
  cases = {
      "small.nii.gz": (np.zeros((4, 5, 2), np.uint8), AFFINE, "small.nii.gz has spatial shape"),
      "moved.nii.gz": (np.zeros((4, 5, 3), np.uint8), AFFINE + np.pad([[0.01]], ((0, 3), (3, 0))),
                       "moved.nii.gz and .*img.nii.gz differ in affine"),
      "big.nii.gz": (np.full((4, 5, 3), 3, np.uint8), AFFINE, r"big.nii.gz has values \[3\] "
                     r"outside \[0, 3\)"),
      "half.nii.gz": (np.full((4, 5, 3), 0.5, np.float32), AFFINE, "half.nii.gz holds non-int"),
  }
  for name, (label, affine, message) in cases.items():
    _nifti(tmp_path / name, label, affine)
    with pytest.raises(ValueError, match=message):
      readers.read_case({"image": image, "label": str(tmp_path / name)}, num_classes=3)
  nan = _volume(1)
  nan[1, 2, 0] = np.nan
  with pytest.raises(ValueError, match="nan.nii.gz has 1 NaN/Inf voxels"):
    readers.read_case(_nifti(tmp_path / "nan.nii.gz", nan))
  (tmp_path / "corrupt.nii.gz").write_bytes(b"definitely not gzip")
  with pytest.raises(ValueError, match="cannot read .*corrupt.nii.gz"):
    readers.read_case(str(tmp_path / "corrupt.nii.gz"))
  (tmp_path / "corrupt.png").write_bytes(b"\x89PNG not really")
  with pytest.raises(ValueError, match="cannot read .*corrupt.png"):
    readers.read_case(str(tmp_path / "corrupt.png"))
  with pytest.raises(FileNotFoundError, match="absent.npy"):
    readers.read_case(str(tmp_path / "absent.npy"))


def _write_dicom_series(folder, stored, spacing, origin, slope, intercept, slice_z):
  """`stored` (slices, rows, cols) int16, slice k at z = origin z + slice_z[k], written with
  file names out of slice order."""
  folder.mkdir()
  for k, name in zip(range(len(stored)), ["b.dcm", "c.dcm", "a.dcm"]):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(folder / name), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = stored.shape[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelSpacing = list(spacing)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [origin[0], origin[1], origin[2] + slice_z[k]]
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = stored[k].astype("<i2").tobytes()
    ds.save_as(str(folder / name), enforce_file_format=True)


def test_dicom_series_sorted_rescaled_with_affine(tmp_path):
  stored = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5)  # slices, rows, columns
  geometry = dict(spacing=(0.5, 0.7), origin=(10.0, 20.0, 30.0), slope=2.0, intercept=-100.0)
  _write_dicom_series(tmp_path / "series", stored, slice_z=(0.0, 2.5, 5.0), **geometry)
  image, _, affine = readers.read_case(str(tmp_path / "series"))
  assert image.shape == (1, 5, 4, 3)  # columns, rows, slices
  np.testing.assert_allclose(image[0], stored.transpose(2, 1, 0) * 2.0 - 100.0)
  # LPS -> RAS flips x and y; column step 0.7, row step 0.5, slice step 2.5.
  np.testing.assert_allclose(affine, [[-0.7, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 2.5, 30],
                                      [0, 0, 0, 1]])
  label = _nifti(tmp_path / "seg.nii.gz", np.ones((5, 4, 3), np.uint8), affine)
  assert readers.read_case({"image": str(tmp_path / "series"), "label": label})[1].sum() == 60
  _write_dicom_series(tmp_path / "gappy", stored, slice_z=(0.0, 2.5, 7.0), **geometry)
  with pytest.raises(ValueError, match="gappy has duplicate or unevenly spaced slices"):
    readers.read_case(str(tmp_path / "gappy"))
  (tmp_path / "series/junk.dcm").write_bytes(b"not dicom")
  with pytest.raises(ValueError, match="cannot read .*junk.dcm"):
    readers.read_case(str(tmp_path / "series"))


def test_npy_volumes(tmp_path):
  np.save(tmp_path / "x.npy", _volume(0).astype(np.int16))
  np.save(tmp_path / "y.npy", np.arange(60).reshape(4, 5, 3) % 2)
  image, label, affine = readers.read_case({"image": str(tmp_path / "x.npy"),
                                            "label": str(tmp_path / "y.npy")}, num_classes=2)
  assert image.shape == (1, 4, 5, 3) and label.shape == (4, 5, 3)
  np.testing.assert_array_equal(label, np.arange(60).reshape(4, 5, 3) % 2)
  np.testing.assert_array_equal(affine, np.eye(4))


def test_2d_pairs_from_json_and_folders(tmp_path):
  rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
  mask = (np.arange(42).reshape(6, 7) % 3 == 0).astype(np.uint8) * 255
  for folder in ("images", "masks"):
    (tmp_path / folder).mkdir()
  Image.fromarray(rgb).save(tmp_path / "images/a.png")
  Image.fromarray(mask).save(tmp_path / "masks/a.png")
  gray = np.arange(42, dtype=np.uint16).reshape(6, 7) * 1000
  Image.fromarray(gray).save(tmp_path / "images/b.tif")
  Image.fromarray(np.eye(6, 7, dtype=np.uint8) * 2).save(tmp_path / "masks/b.tiff")
  json_path = _json(tmp_path / "fundus.json",
                    {"training": [{"image": "images/a.png", "label": "masks/a.png"}]})
  image, label, affine = readers.read_case(readers.load_decathlon(json_path)[0])
  np.testing.assert_array_equal(image, rgb.transpose(2, 0, 1))
  np.testing.assert_array_equal(label, mask // 255)  # 0/255 -> 0/1
  np.testing.assert_array_equal(affine, np.eye(3))
  image, label, _ = readers.read_case({"image": str(tmp_path / "images/b.tif"),
                                       "label": str(tmp_path / "masks/b.tiff")}, num_classes=3)
  np.testing.assert_array_equal(image, gray[None])
  np.testing.assert_array_equal(label, np.eye(6, 7) * 2)


def test_classification_csv_and_class_folders(tmp_path):
  for cls in ("pneumonia", "normal"):
    (tmp_path / cls).mkdir()
    for i in range(2):
      Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / cls / f"{i}.png")
  (tmp_path / "normal/notes.txt").write_text("not an image")
  data = readers.load_class_folders(tmp_path)
  assert data.classes == ["normal", "pneumonia"]
  assert [(os.path.relpath(e["image"], tmp_path), e["label"]) for e in data.entries] == [
      ("normal/0.png", 0), ("normal/1.png", 0), ("pneumonia/0.png", 1), ("pneumonia/1.png", 1)]
  names = tmp_path / "names.csv"
  names.write_text("image,label\npneumonia/0.png,pneumonia\nnormal/1.png,normal\n")
  data = readers.load_classification_csv(names)
  assert data.classes == ["normal", "pneumonia"] and data.class_to_index["pneumonia"] == 1
  assert data.entries[0] == {"image": str(tmp_path / "pneumonia/0.png"), "label": 1}
  ints = tmp_path / "ints.csv"
  ints.write_text("file,grade\nnormal/0.png,2\nnormal/1.png,0\n")
  data = readers.load_classification_csv(ints, "file", "grade")
  assert data.classes == [0, 1, 2] and [e["label"] for e in data.entries] == [2, 0]
  multi = tmp_path / "multi.csv"
  multi.write_text("image,acl,meniscus\nnormal/0.png,1,0\nnormal/1.png,1,1\n")
  data = readers.load_classification_csv(multi, label_column=["acl", "meniscus"])
  assert data.classes == ["acl", "meniscus"] and data.entries[1]["label"] == [1, 1]
  with pytest.raises(ValueError, match=r"ints.csv lacks column\(s\) \['image', 'label'\]"):
    readers.load_classification_csv(ints)
  gone = tmp_path / "gone.csv"
  gone.write_text("image,label\nnormal/9.png,normal\n")
  with pytest.raises(FileNotFoundError, match=r"1 file\(s\) listed in .*gone.csv.*9.png"):
    readers.load_classification_csv(gone)


def test_4d_nifti_modalities_last_and_palette_masks(tmp_path):
  brats = np.stack([_volume(i) for i in range(4)], axis=-1)  # MSD BraTS: (x, y, z, modality)
  image, _, _ = readers.read_case(_nifti(tmp_path / "brats.nii.gz", brats))
  np.testing.assert_array_equal(image, np.moveaxis(brats, -1, 0))
  rgba = np.random.default_rng(0).integers(0, 256, (3, 4, 4), dtype=np.uint8)
  Image.fromarray(rgba).save(tmp_path / "rgba.png")
  classes = np.array([[0, 1, 2, 2], [2, 1, 0, 0], [1, 1, 1, 0]], np.uint8)
  palette = Image.fromarray(classes, mode="P")
  palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0])
  palette.save(tmp_path / "palette.png")
  image, label, _ = readers.read_case({"image": str(tmp_path / "rgba.png"),
                                       "label": str(tmp_path / "palette.png")}, num_classes=3)
  np.testing.assert_array_equal(image, rgba[..., :3].transpose(2, 0, 1))  # alpha dropped
  np.testing.assert_array_equal(label, classes)  # palette indices, not colours


def test_single_frame_dicom_file(tmp_path):
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = CTImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  path = str(tmp_path / "mammo.dicom")
  ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
  pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
  ds.RescaleSlope, ds.RescaleIntercept = 2, -1
  ds.PixelData = pixels.astype("<u2").tobytes()
  ds.save_as(path, enforce_file_format=True)
  image, label, affine = readers.read_case(path)
  np.testing.assert_array_equal(image, pixels[None] * 2.0 - 1)
  assert label is None and np.array_equal(affine, np.eye(3))
