"""DICOM files as archives ship them: compressed transfer syntaxes, MONOCHROME1, the Modality LUT
and the VOI LUT (read through rasd_jax.data.readers)."""

import gdcm
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom import uid
import pytest

from rasd_jax.data import readers

_ROWS, _COLUMNS = 48, 40  # not square: a transposed read fails; JPEG 2000 needs >= 32 px


def _stored(bits=12, seed=0):
  """A 12-bit mammogram-like array covering the whole stored range."""
  values = np.random.default_rng(seed).integers(0, 1 << bits, (_ROWS, _COLUMNS))
  values[0, 0], values[-1, -1] = 0, (1 << bits) - 1
  return values.astype(np.uint16)


def _dataset(stored, photometric="MONOCHROME2", **elements):
  """An uncompressed digital mammography image holding `stored` (uint16, 12 bits stored)."""
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = uid.DigitalMammographyXRayImageStorageForPresentation
  meta.MediaStorageSOPInstanceUID = uid.generate_uid()
  meta.TransferSyntaxUID = uid.ExplicitVRLittleEndian
  ds = FileDataset("mammo", {}, file_meta=meta, preamble=b"\0" * 128)
  ds.SOPClassUID = meta.MediaStorageSOPClassUID
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.Modality = "MG"
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = photometric
  ds.Rows, ds.Columns = stored.shape
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
  ds.PixelData = stored.tobytes()
  for key, value in elements.items():
    setattr(ds, key, value)
  return ds


def _jpeg_lossless(source, target):
  """JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 SV1), the syntax of
  many archives' mammograms: pydicom has no encoder for it, GDCM does."""
  reader = gdcm.ImageReader()
  reader.SetFileName(str(source))
  assert reader.Read()
  change = gdcm.ImageChangeTransferSyntax()
  change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
  change.SetInput(reader.GetImage())
  assert change.Change()
  writer = gdcm.ImageWriter()
  writer.SetFileName(str(target))
  writer.SetFile(reader.GetFile())
  writer.SetImage(change.GetOutput())
  assert writer.Write()


def _write(tmp_path, ds, syntax):
  """`ds` saved in transfer syntax `syntax`; the path of the file."""
  path = tmp_path / f"{syntax.keyword}.dcm"
  if syntax == uid.JPEGLosslessSV1:
    ds.save_as(tmp_path / "raw.dcm", enforce_file_format=True)
    _jpeg_lossless(tmp_path / "raw.dcm", path)
  else:
    if syntax != uid.ExplicitVRLittleEndian:
      ds.compress(syntax)  # pydicom's own encoders (RLE natively, pyjpegls, pylibjpeg-openjpeg)
    ds.save_as(path, enforce_file_format=True)
  assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == syntax
  return path


@pytest.mark.parametrize("syntax", [uid.RLELossless, uid.JPEGLSLossless, uid.JPEG2000Lossless,
                                    uid.JPEGLosslessSV1])
def test_compressed_syntaxes_decode_to_the_stored_values(tmp_path, syntax):
  stored = _stored()
  image, _, affine = readers.read_case(str(_write(tmp_path, _dataset(stored), syntax)))
  assert image.shape == (1, _ROWS, _COLUMNS) and image.dtype == np.float32
  np.testing.assert_array_equal(image[0], stored)
  np.testing.assert_array_equal(affine, np.eye(3))


def test_monochrome1_is_inverted_after_the_modality_lut(tmp_path):
  stored = _stored()
  ds = _dataset(stored, "MONOCHROME1", RescaleSlope=2, RescaleIntercept=-100)
  image, _, _ = readers.read_case(str(_write(tmp_path, ds, uid.JPEG2000Lossless)))
  # The stored range 0..4095 maps to -100..8090; inverted within it, value v reads
  # -100 + 8090 - v: the darkest stored value is the brightest.
  np.testing.assert_array_equal(image[0], 7990.0 - (2.0 * stored - 100.0))
  assert image[0, 0, 0] == 8090 and image[0, -1, -1] == -100


def test_monochrome2_rescale_slope_and_intercept(tmp_path):
  stored = _stored()
  ds = _dataset(stored, RescaleSlope=0.5, RescaleIntercept=10, RescaleType="US")
  image, _, _ = readers.read_case(str(_write(tmp_path, ds, uid.RLELossless)))
  np.testing.assert_array_equal(image[0], 0.5 * stored + 10)


def test_voi_lut_and_window_are_not_applied(tmp_path):
  """A window is a display choice that clips: the reader keeps every value."""
  stored = _stored()
  voi = pydicom.Dataset()
  voi.LUTDescriptor = [256, 1000, 8]
  voi.add_new("LUTData", "US", list(range(256)))
  ds = _dataset(stored, WindowCenter=2000, WindowWidth=500, VOILUTSequence=Sequence([voi]))
  image, _, _ = readers.read_case(str(_write(tmp_path, ds, uid.ExplicitVRLittleEndian)))
  np.testing.assert_array_equal(image[0], stored)
  assert image.min() == 0 and image.max() == 4095  # far outside the window 1750..2250


def test_corrupt_compressed_pixels_name_the_file(tmp_path):
  path = _write(tmp_path, _dataset(_stored()), uid.JPEG2000Lossless)
  ds = pydicom.dcmread(path)
  ds.PixelData = ds.PixelData[:len(ds.PixelData) // 3]  # a truncated download
  ds.save_as(path)
  with pytest.raises(ValueError, match="JPEG2000Lossless.dcm"):
    readers.read_case(str(path))


def test_compressed_series_folder(tmp_path):
  """A CT series whose slices are RLE compressed reads as its uncompressed values."""
  folder = tmp_path / "series"
  folder.mkdir()
  stored = [_stored(seed=z) for z in range(3)]
  for z, pixels in enumerate(stored):
    ds = _dataset(pixels, RescaleSlope=1, RescaleIntercept=-1024, PixelSpacing=[0.7, 0.8],
                  ImageOrientationPatient=[1, 0, 0, 0, 1, 0],
                  ImagePositionPatient=[0, 0, 2.5 * z])
    ds.compress(uid.RLELossless)
    ds.save_as(folder / f"{z}.dcm", enforce_file_format=True)
  image, _, _ = readers.read_case(str(folder))
  expected = np.stack([s.T for s in stored], axis=-1) - 1024.0
  np.testing.assert_array_equal(image[0], expected)
