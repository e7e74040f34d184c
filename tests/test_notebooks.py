"""The notebooks run end to end (at tiny sizes) in a fresh Jupyter kernel."""

import json
import os
import re

import nbclient  # a requirement: the notebooks are never skipped
import nbformat

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(REPO_ROOT, "notebooks")


def _execute(name, parameters, monkeypatch):
  """Runs notebooks/<name> with its first code cell replaced by `parameters` (a dict of
  the names that cell must define); returns the outputs of its code cells, in order."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  nbformat.validate(nb)
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  assert all(not cell.outputs and cell.execution_count is None for cell in code), (
      "the notebook is stored with outputs")

  params = code[0]
  for key in parameters:
    assert re.search(rf"^{key}\s*=", params.source, re.MULTILINE), (
        f"the first code cell does not define {key}:\n{params.source}")
  params.source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())

  # The kernel inherits this environment: make `rasd_jax` importable there whatever its
  # working directory.
  path = os.environ.get("PYTHONPATH", "")
  if REPO_ROOT not in path.split(os.pathsep):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [REPO_ROOT, path])))

  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": REPO_ROOT}})
  client.execute()  # Raises CellExecutionError if a cell raises.

  outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
  errors = [out for out in outputs if out.output_type == "error"]
  assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
  return outputs


def _images(outputs):
  return [out for out in outputs if out.output_type in ("display_data", "execute_result")
          and "image/png" in out.get("data", {})]


def _stdout(outputs):
  return "".join(out.text for out in outputs
                 if out.output_type == "stream" and out.name == "stdout")


def test_synthesis_explorer_runs(monkeypatch):
  outputs = _execute("synthesis_explorer.ipynb", dict(SIZE_2D=32, SIZE_3D=32, BATCH=2),
                     monkeypatch)
  assert _images(outputs), "no cell displayed an image"


def test_pretraining_runs(monkeypatch, tmp_path):
  workdir = str(tmp_path / "run")
  steps = 4
  outputs = _execute("pretraining.ipynb", dict(MODEL="unet_tiny", SIZE=32, STEPS=steps,
                                               BATCH=2, WORKDIR=workdir), monkeypatch)

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    metrics = [json.loads(line) for line in f if line.strip()]
  assert [m["step"] for m in metrics] == list(range(1, steps + 1))
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(steps)))

  # Training curves, then the features of a synthetic sample and of the MRI slice.
  assert len(_images(outputs)) == 3, "expected 3 figures"
  text = _stdout(outputs)
  # Trained and untrained network, on the synthetic sample and on the MRI slice.
  assert text.count("feature image shape (32, 32, 3)") == 4, text
  assert f"pre-trained ({steps} steps): proto_acc" in text, text
  assert "resized to (32, 32)" in text, text


def test_finetune_runs(monkeypatch, tmp_path):
  workdir = str(tmp_path / "run")
  steps = 6
  outputs = _execute("finetune.ipynb", dict(MODEL="unet_tiny", ROI=32, PRETRAIN_STEPS=4,
                                            FINETUNE_STEPS=steps, EVAL_EVERY=3,
                                            WORKDIR=workdir), monkeypatch)

  with open(os.path.join(workdir, "nuclei_decathlon", "dataset.json")) as f:
    dataset = json.load(f)
  assert [len(dataset[k]) for k in ("training", "validation", "test")] == [2, 2, 2]
  runs = {"scratch": ("scratch", False), "pre-trained": (os.path.join(workdir, "pretrain"), False),
          "linear_probe": (os.path.join(workdir, "pretrain"), True)}
  for name, (init, probe) in runs.items():
    with open(os.path.join(workdir, name, "results.json")) as f:
      results = json.load(f)
    assert (results["init"], results["probe"], results["total_steps"]) == (init, probe, steps)
    with open(os.path.join(workdir, name, "val_metrics.jsonl")) as f:
      assert [json.loads(line)["step"] for line in f if line.strip()] == [3, 6], name
  assert os.path.exists(os.path.join(workdir, "pre-trained", "transfer.txt"))

  # The data split, the validation curves, the test predictions.
  assert len(_images(outputs)) == 3, "expected 3 figures"
  text = _stdout(outputs)
  assert re.search(r"^init +probe +selected step +val Dice +test Dice +test HD95 +test NSD$",
                   text, re.MULTILINE), text
  for name, probe in (("scratch", False), ("pre-trained", False), ("linear probe", True)):
    assert re.search(rf"^{name} +{probe} +\d+ +\d\.\d{{3}} +\d\.\d{{3}}", text, re.MULTILINE), text
    assert re.search(rf"^{name}: step \d+, test Dice \d\.\d{{3}} \(results.json: ", text,
                     re.MULTILINE), text
  assert "expects the image_mask_json layout" in text, text
