"""Workdirs and data on cloud storage: the jobs (pretrain, finetune, synthesize, import and
export of weights) run with --workdir=gs://... against a local GCS emulator (tests/gcs.py), write
to the bucket, resume from it, and leave nothing on the local disk; data in the bucket (a
dataset.json, registry task folders, a DICOM series) reads as its local copy; a bucket that is
missing or does not answer is one error line in bounded time."""

import io
import json
import os
import socket
import subprocess
import sys
import time

from etils import epath
import nibabel as nib
import numpy as np
from PIL import Image
import pytest
import safetensors.torch
import torch
from monai.networks.nets import UNet as MonaiUNet

from conftest import REPO_ROOT
from gcs import gcs  # noqa: F401 - the fixture

sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data"))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests", "data", "downloads"))
import test_readers  # noqa: E402  (the DICOM series writer)
import official  # noqa: E402  (every task's official-download fixture)

PRETRAIN = [f"--config={REPO_ROOT}/experiments/pretrain2d.py:runlocal", "--config.model=unet_tiny",
            "--config.synthesis.size=32", "--config.synthesis.num_labels=4",
            "--config.batch_size=2", "--config.log_every=1", "--config.total_steps=6",
            "--config.checkpoint_every=2"]
FINETUNE = [f"--config={REPO_ROOT}/experiments/finetune.py:task=custom,runlocal",
            "--config.model=unet_tiny",
            "--config.total_steps=8", "--config.eval_every_steps=4", "--config.checkpoint_every=4",
            "--config.batch_size=2", "--config.log_every=2"]


def run(cwd, env, workdir, *args):
  """run.py ARGS --workdir=WORKDIR from `cwd` (where a gs: folder would wrongly appear)."""
  result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run.py"), *args,
                           f"--workdir={workdir}"], cwd=cwd, env=env, capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def lines(path):
  return [json.loads(line) for line in epath.Path(path).read_text().splitlines()]


def remove(gcs, *names):
  """Deletes the objects `names` (relative to the bucket)."""
  from gcsfs import core
  fs = core.GCSFileSystem(endpoint_url=gcs.url, token="anon", skip_instance_cache=True)
  for name in names:
    fs.rm(f"{gcs.bucket}/{name}")


def drop_after(gcs, workdir, step):
  """A run preempted after its checkpoint of `step`: later checkpoints removed."""
  remove(gcs, *(name for name in gcs.objects(f"{workdir}/checkpoints")
                if int(name.split("/")[2]) > step))


def upload(folder, target):
  """Copies the local tree `folder` to the cloud folder `target`, file by file."""
  for parent, _, names in os.walk(folder):
    for name in names:
      relative = os.path.relpath(os.path.join(parent, name), folder).replace(os.sep, "/")
      epath.Path(f"{target}/{relative}").write_bytes(
          epath.Path(parent, name).read_bytes())


def no_local_gs(*folders):
  for folder in folders:
    assert not any("gs:" in d for _, dirs, _ in os.walk(folder) for d in dirs), folder


@pytest.mark.slow(50)
def test_pretrain_writes_and_resumes_from_the_bucket(gcs, tmp_path):
  run(tmp_path, gcs.env, f"gs://{gcs.bucket}/pre", *PRETRAIN)
  names = gcs.objects("pre")
  for name in ("config.json", "model.json", "metrics.jsonl", "checkpoints/6/commit_success.txt"):
    assert f"pre/{name}" in names
  assert any(n.startswith("pre/tensorboard/events.out.tfevents.") for n in names)
  assert sorted({n.split("/")[2] for n in names if n.startswith("pre/checkpoints/")}) == [
      "2", "4", "6"]
  uninterrupted = lines(f"gs://{gcs.bucket}/pre/metrics.jsonl")
  assert [r["step"] for r in uninterrupted] == [1, 2, 3, 4, 5, 6]

  drop_after(gcs, "pre", 4)
  out = run(tmp_path, gcs.env, f"gs://{gcs.bucket}/pre", *PRETRAIN)
  assert "resuming from the checkpoint of step 4" in out.stdout
  resumed = lines(f"gs://{gcs.bucket}/pre/metrics.jsonl")
  assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
  assert [r["loss"] for r in resumed] == pytest.approx([r["loss"] for r in uninterrupted],
                                                       rel=1e-6)
  no_local_gs(tmp_path, REPO_ROOT)


@pytest.fixture(scope="module")
def bucket_dataset(gcs):
  """A Decathlon dataset.json and its NIfTI cases in the bucket (3 training, 1 validation, 1
  test): 48x48 patches of axial slices of the brain tissue demo."""
  from rasd_jax.data import demo
  task = demo.brain_tissue()
  root = epath.Path(f"gs://{gcs.bucket}/data")
  names = []
  for i, (x, y, z) in enumerate([(60, 70, 70), (70, 100, 80), (80, 80, 90), (90, 90, 100),
                                 (100, 75, 110)]):
    box = (slice(x, x + 48), slice(y, y + 48), z)
    for folder, array in (("images", task.image[0][box].astype(np.float32)),
                          ("labels", task.label[0][box].astype(np.uint8))):
      (root / folder / f"case{i}.nii").write_bytes(
          nib.Nifti1Image(array, task.affine).to_bytes())
    names.append({"image": f"images/case{i}.nii", "label": f"labels/case{i}.nii"})
  data = {"labels": {str(i): n for i, n in enumerate(task.class_names)},
          "training": names[:3], "validation": names[3:4], "test": names[4:]}
  (root / "dataset.json").write_text(json.dumps(data))
  return str(root / "dataset.json")


def test_readers_take_bucket_paths(gcs, bucket_dataset, tmp_path):
  """load_decathlon and read_case on gs:// (a NIfTI pair, a DICOM series folder) give what
  they give on a local copy."""
  from rasd_jax.data import readers
  entries = readers.load_decathlon(bucket_dataset)
  assert entries[0]["image"] == f"gs://{gcs.bucket}/data/images/case0.nii"
  for entry in entries[:1]:
    local = {}
    for key in ("image", "label"):
      local[key] = str(tmp_path / f"{key}.nii")
      epath.Path(local[key]).write_bytes(epath.Path(entry[key]).read_bytes())
    for remote, copy in zip(readers.read_case(entry), readers.read_case(local)):
      np.testing.assert_array_equal(remote, copy)
  with pytest.raises(FileNotFoundError, match="case9.nii"):
    readers.read_case(f"gs://{gcs.bucket}/data/images/case9.nii")
  series = tmp_path / "series"
  test_readers._write_dicom_series(series, np.arange(60, dtype=np.int16).reshape(3, 4, 5),
                                   (0.5, 0.7), (10.0, 20.0, 30.0), 2.0, -100.0, (0.0, 2.5, 5.0))
  upload(series, f"gs://{gcs.bucket}/dicom/series")
  for remote, copy in zip(readers.read_case(f"gs://{gcs.bucket}/dicom/series"),
                          readers.read_case(str(series))):
    np.testing.assert_array_equal(remote, copy)


@pytest.mark.slow(50)
def test_finetune_on_bucket_data_and_workdir_resumes(gcs, bucket_dataset, tmp_path):
  w = f"gs://{gcs.bucket}/ft"
  args = [*FINETUNE, f"--config.data.json={bucket_dataset}"]
  run(tmp_path, gcs.env, w, *args)
  results = json.loads(epath.Path(f"{w}/results.json").read_text())
  assert results["split_sizes"] == {"train": 3, "val": 1, "test": 1}
  assert results["selected_step"] in (4, 8) and 0 <= results["test"]["dice"] <= 1
  names = gcs.objects("ft")
  for name in ("config.json", "model.json", "val_metrics.jsonl", "best_val.json",
               "checkpoints/8/commit_success.txt"):
    assert f"ft/{name}" in names
  assert any(n.startswith(f"ft/best/{results['selected_step']}/") for n in names)
  uninterrupted = (lines(f"{w}/metrics.jsonl"), lines(f"{w}/val_metrics.jsonl"))

  drop_after(gcs, "ft", 4)
  out = run(tmp_path, gcs.env, w, *args)
  assert "resuming from the checkpoint of step 4" in out.stdout
  resumed = (lines(f"{w}/metrics.jsonl"), lines(f"{w}/val_metrics.jsonl"))
  for before, after in zip(uninterrupted, resumed):
    assert [r["step"] for r in after] == [r["step"] for r in before]
  assert [r["loss"] for r in resumed[0]] == pytest.approx([r["loss"] for r in uninterrupted[0]],
                                                         rel=1e-5)
  assert [r["dice"] for r in resumed[1]] == pytest.approx([r["dice"] for r in uninterrupted[1]],
                                                          rel=1e-5)
  again = json.loads(epath.Path(f"{w}/results.json").read_text())
  assert again["test"]["dice"] == pytest.approx(results["test"]["dice"], rel=1e-5)
  no_local_gs(tmp_path, REPO_ROOT)


def test_missing_bucket_is_one_error_line_and_writes_nothing(gcs, tmp_path):
  before = gcs.objects()
  from ml_collections import config_dict
  from rasd_jax import workdir as workdir_lib
  with pytest.raises(ValueError, match=r"^gs://no-such-bucket \(for gs://no-such-bucket/run\) "
                                       r"does not exist or is not accessible$"):
    workdir_lib.prepare("gs://no-such-bucket/run", config_dict.ConfigDict({"a": 1}))
  assert gcs.objects() == before
  no_local_gs(tmp_path, REPO_ROOT)


def test_a_bucket_that_does_not_answer_stops_in_bounded_time(gcs, tmp_path):
  """A server that accepts connections and never answers (gcsfs would wait forever):
  RASD_STORAGE_TIMEOUT=3 stops the job with one line, before anything is written."""
  with socket.socket() as silent:
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    env = dict(gcs.env, STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
               RASD_STORAGE_TIMEOUT="3")
    start = time.monotonic()
    result = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run.py"), *PRETRAIN,
                             f"--workdir=gs://{gcs.bucket}/silent"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: cannot reach gs://{gcs.bucket} (for gs://{gcs.bucket}/silent): no answer "
      "within 3.0 s (RASD_STORAGE_TIMEOUT)")
  assert elapsed < 60, elapsed
  assert not any(n.startswith("silent/") for n in gcs.objects())
  no_local_gs(tmp_path, REPO_ROOT)


SYNTHESIZE = [f"--config={REPO_ROOT}/experiments/synthesize.py:ndim=2,size=32",
              "--config.seed=5", "--config.batch_size=2", "--config.synthesis.num_labels=4"]


def test_synthesize_writes_samples_and_montage_to_the_bucket_and_resumes(gcs, tmp_path):
  """Samples and montage in the bucket, as a local run writes them (the same bytes); a
  deleted sample is regenerated bit-identically and only its batch is redone."""
  w = f"gs://{gcs.bucket}/syn"
  run(tmp_path, gcs.env, w, *SYNTHESIZE, "--config.num=3")
  expected = [f"syn/samples/{n:04d}_{kind}.nii.gz" for n in range(3) for kind in ("image", "label")]
  assert gcs.objects("syn/samples") == expected
  assert [r["step"] for r in lines(f"{w}/metrics.jsonl")] == [0, 1]
  local = tmp_path / "local"
  run(tmp_path, gcs.env, local, *SYNTHESIZE, "--config.num=3")
  for name in expected + ["syn/montage.png"]:
    remote = epath.Path(f"gs://{gcs.bucket}/{name}").read_bytes()
    assert remote == (local / name.partition("/")[2]).read_bytes(), name
  label = nib.load(local / "samples/0002_label.nii.gz")
  assert label.shape == (32, 32) and set(np.unique(np.asarray(label.dataobj))) <= {0, 1, 2, 3}
  assert Image.open(local / "montage.png").size[0] > 2 * 32

  lost = f"{w}/samples/0002_label.nii.gz"
  before = epath.Path(lost).read_bytes()
  remove(gcs, "syn/samples/0002_label.nii.gz")
  run(tmp_path, gcs.env, w, *SYNTHESIZE, "--config.num=4")
  assert epath.Path(lost).read_bytes() == before
  assert len(gcs.objects("syn/samples")) == 8
  assert [r["step"] for r in lines(f"{w}/metrics.jsonl")] == [0, 1, 1]  # only batch 1 redone
  no_local_gs(tmp_path, REPO_ROOT)


def _in_bucket(value, local, remote):
  """`value` (entries, arrays, paths) with the local data dir's paths moved to the bucket."""
  if isinstance(value, dict):
    return {k: _in_bucket(v, local, remote) for k, v in value.items()}
  if isinstance(value, list):
    return [_in_bucket(v, local, remote) for v in value]
  if isinstance(value, str) and value.startswith(local):
    return remote + value[len(local):]
  return value


@pytest.mark.parametrize("name", ["monusac", "tg3k", "bfmr"])
def test_registry_task_data_in_the_bucket_reads_as_the_local_copy(gcs, tmp_path, name):
  """A registry task's download (image_mask_folders with one subfolder per patient, or with a
  JSON case list; class_folders) uploaded to the bucket and prepared into the bucket: the
  prepared folder lists the same cases as one prepared locally, and the finetune job's lists
  and prepared samples equal those of the local copy."""
  from experiments import finetune as finetune_experiment
  from rasd_jax.data import prepared as prepared_lib
  from rasd_jax.data import tasks
  from rasd_jax.jobs import finetune as finetune_job
  task = tasks.get(name)
  download, bucket = str(tmp_path / "download"), f"gs://{gcs.bucket}/downloads/{name}"
  official.WRITERS[name](download)
  upload(download, bucket)
  local, remote = str(tmp_path / "data"), f"gs://{gcs.bucket}/tasks/{name}"
  prepared_lib.prepare(task, download, local, progress=False)
  prepared_lib.prepare(task, bucket, remote, progress=False)
  def remote_paths(lists):  # files read in place are in the bucket, converted ones in `remote`
    return _in_bucket(_in_bucket(lists, download, bucket), local, remote)

  assert prepared_lib.load_splits(task, remote) == remote_paths(
      prepared_lib.load_splits(task, local))
  prepared = []
  for data_dir in (local, remote):
    config = finetune_experiment.get_config(f"task={name},runlocal")
    config.data.dir = data_dir
    job_task, split = finetune_job._cases(config)
    prepared.append((split, finetune_job._data(config, job_task, split)))
  (local_split, local_data), (remote_split, remote_data) = prepared
  assert local_data["train"] and local_data["val"] and local_data["test"]
  assert remote_split == remote_paths(local_split)
  for key, samples in local_data.items():
    assert len(remote_data[key] or ()) == len(samples or ()), key
    for ours, theirs in zip(remote_data[key] or (), samples or ()):
      assert sorted(ours) == sorted(theirs)
      for field in set(theirs) - {"geometry"}:
        np.testing.assert_array_equal(np.asarray(ours[field]), np.asarray(theirs[field]))
      # Where the files are (in the bucket, or converted into `remote`), and the same grid.
      for name, value in theirs.get("geometry", {}).items():
        if name in ("path", "label"):
          assert os.path.basename(ours["geometry"][name]) == os.path.basename(value), name
        else:
          np.testing.assert_array_equal(ours["geometry"][name], value, err_msg=name)
  with pytest.raises(FileNotFoundError, match=f"gs://{gcs.bucket}/tasks/none is not a prepared"):
    prepared_lib.load_splits(task, f"gs://{gcs.bucket}/tasks/none")


def test_import_and_export_weights_through_the_bucket(gcs, tmp_path):
  """A MONAI UNet checkpoint in the bucket imported into a bucket workdir, exported (format
  monai) to a bucket folder: MONAI loads the exported files strict, bit-exact its tensors."""
  from rasd_jax import models
  torch.manual_seed(0)
  net = MonaiUNet(spatial_dims=2, in_channels=2, out_channels=3, act="relu", norm="batch",
                  **models.MODELS["unet_tiny"][1]).eval()
  checkpoint = f"gs://{gcs.bucket}/weights/unet.pth"
  buffer = io.BytesIO()
  torch.save(net.state_dict(), buffer)
  epath.Path(checkpoint).write_bytes(buffer.getvalue())
  imported, out = f"gs://{gcs.bucket}/imported", f"gs://{gcs.bucket}/export"
  run(tmp_path, gcs.env, imported, f"--config={REPO_ROOT}/experiments/import_weights.py",
      f"--config.path={checkpoint}", "--config.model=unet_tiny", "--config.ndim=2")
  assert "imported/import.txt" in gcs.objects("imported")
  run(tmp_path, gcs.env, out, f"--config={REPO_ROOT}/experiments/export_weights.py:format=monai",
      f"--config.source={imported}")
  assert gcs.objects("export") == [f"export/{n}" for n in ("README.md", "card.json", "config.json",
                                                           "model.pt", "model.safetensors")]
  card = json.loads(epath.Path(f"{out}/card.json").read_text())
  assert card["made_by"] == {"job": "import_weights", "imported_from": checkpoint}
  exported = safetensors.torch.load(epath.Path(f"{out}/model.safetensors").read_bytes())
  saved = torch.load(io.BytesIO(epath.Path(f"{out}/model.pt").read_bytes()), weights_only=True)
  for state in (exported, saved):
    assert sorted(state) == sorted(net.state_dict())
    for key, value in net.state_dict().items():
      assert torch.equal(state[key], value), key
  MonaiUNet(**card["constructor"]).load_state_dict(exported, strict=True)
  no_local_gs(tmp_path, REPO_ROOT)
