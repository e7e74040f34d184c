import json
import sys

import numpy as np
import pytest

from rasd_jax.data import demo


@pytest.fixture(scope="module")
def brain():
  return demo.brain_tissue()


@pytest.fixture(scope="module")
def nuclei():
  return demo.nuclei()


def _fractions(label, num_classes):
  """Share of each foreground class among the foreground voxels."""
  counts = np.bincount(label.ravel(), minlength=num_classes)[1:]
  return counts / counts.sum()


def test_brain_tissue_loads_offline_with_plausible_tissue_fractions(brain):
  assert brain.image.shape == brain.label.shape == (1, 197, 233, 189)
  assert brain.image.dtype == np.float32 and brain.label.dtype == np.uint8
  assert brain.image.min() == 0.0 and brain.image.max() == 1.0
  assert brain.class_names == ("background", "grey_matter", "white_matter", "rest")
  assert set(np.unique(brain.label)) == {0, 1, 2, 3}
  np.testing.assert_allclose(np.linalg.norm(brain.affine[:3, :3], axis=0), 1.0)
  grey, white, rest = _fractions(brain.label, 4)
  assert 0.1 < grey < 0.6 and 0.1 < white < 0.6 and 0.02 < rest < 0.2
  # The rest class is mostly CSF, which is dark on T1.
  image, label = brain.image[0], brain.label[0]
  assert image[label == 3].mean() < image[label == 1].mean() < image[label == 2].mean()
  assert brain.bounds == (0, 189) and brain.instances is None


def test_nuclei_load_without_importing_stardist(nuclei):
  # Its __init__ would load csbdeep and numba (and TensorFlow where installed).
  assert "stardist" not in sys.modules and "csbdeep" not in sys.modules
  assert nuclei.image.shape == nuclei.label.shape == nuclei.instances.shape == (1, 512, 512)
  assert nuclei.image.dtype == np.float32 and nuclei.label.dtype == np.uint8
  assert nuclei.image.min() == 0.0 and nuclei.image.max() == 1.0
  assert nuclei.class_names == ("background", "nucleus")
  assert set(np.unique(nuclei.label)) == {0, 1}
  np.testing.assert_array_equal(nuclei.label, nuclei.instances > 0)
  assert len(np.unique(nuclei.instances)) - 1 > 100
  assert 0.05 < nuclei.label.mean() < 0.6


@pytest.mark.parametrize("name", ["brain", "nuclei"])
def test_split_regions_are_disjoint_in_order_and_hold_every_class(name, request):
  task = request.getfixturevalue(name)
  regions = demo.split(task)
  assert list(regions) == ["train", "val", "test"]
  bounds = [regions[n].bounds for n in regions]
  for (_, stop), (start, _) in zip(bounds, bounds[1:]):
    assert start - stop == task.gap > 0
  axis = 1 + task.split_axis
  for region in regions.values():
    start, stop = region.bounds
    assert region.image.shape[axis] == region.label.shape[axis] == stop - start > 0
    np.testing.assert_array_equal(region.label, np.take(task.label, range(start, stop), axis))
    assert set(np.unique(region.label)) == set(range(len(task.class_names)))
    # Voxel 0 of the region sits where voxel `start` of the image does.
    index = np.zeros(task.image.ndim)
    index[task.split_axis] = start
    index[-1] = 1.0
    np.testing.assert_allclose(region.affine[:, -1], task.affine @ index)
  train = regions["train"].bounds
  assert train[1] - train[0] > regions["test"].bounds[1] - regions["test"].bounds[0]


def test_split_is_deterministic_and_checks_fractions(nuclei):
  assert ({n: r.bounds for n, r in demo.split(nuclei).items()}
          == {"train": (0, 288), "val": (304, 400), "test": (416, 512)})
  with pytest.raises(ValueError, match="3 positive fractions"):
    demo.split(nuclei, (0.5, 0.5))


def test_missing_file_names_the_path_and_the_package(tmp_path, monkeypatch):
  monkeypatch.setattr(demo, "_package_dir", lambda package: str(tmp_path))
  with pytest.raises(FileNotFoundError, match="img2d.tif is missing; it ships with the stardist"):
    demo.nuclei()
  with pytest.raises(FileNotFoundError, match=r"mni_icbm152_t1.*ships with the nilearn wheel"):
    demo.brain_tissue()


def test_not_installed_package_says_how_to_install(monkeypatch):
  monkeypatch.setattr(demo.importlib.util, "find_spec", lambda package: None)
  with pytest.raises(FileNotFoundError, match="stardist wheel, which is not installed: pip"):
    demo.nuclei()


def test_write_decathlon_round_trips(tmp_path):
  """The demo task as a Decathlon folder reads back, through the readers, as the same
  samples in the same splits."""
  from rasd_jax.data import readers
  path = demo.write_decathlon("nuclei", str(tmp_path), tile=128)
  data, class_names = demo.samples_2d("nuclei", tile=128)
  listed = json.load(open(path))
  assert listed["labels"] == {str(i): c for i, c in enumerate(class_names)}
  for split, section in (("train", "training"), ("val", "validation"), ("test", "test")):
    entries = readers.load_decathlon(path, section)
    assert len(entries) == len(data[split])
    for entry, sample in zip(entries, data[split]):
      image, label, _ = readers.read_case(entry)
      np.testing.assert_array_equal(image, sample["image"])
      np.testing.assert_array_equal(label, sample["label"])
