"""The notebooks are stored executed (by notebooks/execute.py, at the sizes of their parameter
cells), so that their figures and tables show without running them; and they run end to end (at
tiny sizes) from the installed package, as a user runs them: `pip install .` into a fresh virtual
environment, then each notebook, its stored outputs removed, in a Jupyter kernel of that
environment's python, from a folder outside the repository and without PYTHONPATH."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib

import jupyter_client
import nbclient  # a requirement: the notebooks are never skipped
import nbformat
import pytest

from conftest import REPO_ROOT

NOTEBOOKS = os.path.join(REPO_ROOT, "notebooks")
NAMES = ("synthesis_explorer.ipynb", "pretraining.ipynb", "finetune.ipynb")
# All that building the package reads: what the notebooks need must be in a wheel built from these.
PACKAGE_SOURCES = ("pyproject.toml", "README.md", "rasd_jax", "experiments")
KERNEL = "rasd-jax-venv"
# Appended to each notebook run: where the kernel found the package, and its surroundings.
WHERE = """\
import json, os, sysconfig
import experiments, rasd_jax
print(json.dumps({"rasd_jax": rasd_jax.__file__, "experiments": list(experiments.__path__),
                  "site": sysconfig.get_paths()["purelib"], "cwd": os.getcwd(),
                  "PYTHONPATH": os.environ.get("PYTHONPATH")}))"""


def _version():
  with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]["version"]


def _copy_sources(dest):
  """Copies PACKAGE_SOURCES of the repository into the new folder `dest`; returns it."""
  os.makedirs(dest)
  for name in PACKAGE_SOURCES:
    path = os.path.join(REPO_ROOT, name)
    if os.path.isdir(path):
      shutil.copytree(path, os.path.join(dest, name), ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(path, os.path.join(dest, name))
  return dest


def _venv(root):
  """A fresh virtual environment in root/venv that sees this python's packages
  (--system-site-packages: pip finds every dependency installed, nothing is downloaded) and a
  kernel spec manager whose kernel KERNEL is the environment's python: (its prefix, its
  site-packages folder, the spec manager)."""
  prefix = os.path.join(root, "venv")
  subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", prefix],
                 check=True)
  python = os.path.join(prefix, "bin", "python")
  kernels = os.path.join(root, "kernels")
  os.makedirs(os.path.join(kernels, KERNEL))
  with open(os.path.join(kernels, KERNEL, "kernel.json"), "w") as f:
    json.dump({"argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
               "display_name": "rasd_jax venv", "language": "python"}, f)
  site = os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                      "site-packages")
  return prefix, site, jupyter_client.kernelspec.KernelSpecManager(kernel_dirs=[kernels])


def _assert_rasd_jax_alone(site):
  """pip added rasd_jax (and the job configs) to the environment and nothing else: every
  dependency was satisfied as installed, none replaced or added."""
  assert sorted(os.listdir(site)) == ["experiments", "rasd_jax", f"rasd_jax-{_version()}.dist-info"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  """_venv's environment with rasd_jax installed by `pip install .`, offline: no index, and the
  build uses this python's setuptools rather than downloading it into an isolated build
  environment. The build runs in a copy of the sources, so nothing is written into the
  repository (no build/ or *.egg-info there for a later build to pick stale files from)."""
  root = tmp_path_factory.mktemp("install")
  venv = _venv(root)
  prefix, site, _ = venv
  env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
  result = subprocess.run(
      [os.path.join(prefix, "bin", "python"), "-m", "pip", "install", "--no-index",
       "--no-build-isolation", "."],
      cwd=_copy_sources(os.path.join(root, "source")), env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  _assert_rasd_jax_alone(site)
  return venv


def _stored(name):
  """notebooks/<name> as stored (with its outputs), checked: its first code cell the install
  cell, and no cell changes the import path."""
  nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
  nbformat.validate(nb)
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  assert 'importlib.util.find_spec("rasd_jax") is None' in code[0].source, (
      f"the first code cell does not install rasd_jax where it is missing:\n{code[0].source}")
  for cell in code:
    assert "sys.path" not in cell.source, f"a cell changes the import path:\n{cell.source}"
  return nb


def _notebook(name):
  """notebooks/<name> (_stored) with its stored outputs removed, ready to run."""
  nb = _stored(name)
  for cell in nb.cells:
    if cell.cell_type == "code":
      cell.outputs, cell.execution_count = [], None
  return nb


def _parameter_cell(nb, keys):
  """The one code cell of `nb` that assigns every name of `keys`."""
  defines = [cell for cell in nb.cells if cell.cell_type == "code" and all(
      re.search(rf"^{key}\s*=", cell.source, re.MULTILINE) for key in keys)]
  assert len(defines) == 1, f"{len(defines)} code cells define all of {list(keys)}"
  return defines[0]


def _run(nb, venv, cwd, monkeypatch):
  """Executes `nb` in a kernel of `venv` started in the folder `cwd` (outside the repository),
  without PYTHONPATH; asserts that no cell failed and that the kernel imported rasd_jax and
  experiments from the environment's site-packages, not from the repository. Returns the outputs
  of each of its code cells."""
  assert os.path.commonpath([str(cwd), REPO_ROOT]) != REPO_ROOT
  nb.cells.append(nbformat.v4.new_code_cell(WHERE))
  monkeypatch.delenv("PYTHONPATH", raising=False)  # conftest sets it for the other tests
  _, site, spec_manager = venv
  manager = jupyter_client.manager.AsyncKernelManager(kernel_name=KERNEL,
                                                      kernel_spec_manager=spec_manager)
  client = nbclient.NotebookClient(nb, km=manager, timeout=600,
                                   resources={"metadata": {"path": str(cwd)}})
  try:
    client.execute()  # Raises CellExecutionError if a cell raises.
  finally:  # The client does not stop a kernel whose manager it was given.
    nbclient.util.run_sync(manager.shutdown_kernel)(now=True)

  outputs = [cell.outputs for cell in nb.cells if cell.cell_type == "code"]
  errors = [out for cell in outputs for out in cell if out.output_type == "error"]
  assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
  where = json.loads(_stdout(outputs[-1]))
  assert where == {"rasd_jax": os.path.join(site, "rasd_jax", "__init__.py"),
                   "experiments": [os.path.join(site, "experiments")], "site": site,
                   "cwd": str(cwd), "PYTHONPATH": None}, where
  return outputs[:-1]


def _execute(name, parameters, venv, cwd, monkeypatch):
  """Runs notebooks/<name> (_run), with the code cell that defines the names of `parameters` (a
  dict) reduced to those assignments; returns the outputs of its code cells, in order. The
  install cell must do nothing: the package is installed."""
  nb = _notebook(name)
  _parameter_cell(nb, parameters).source = "\n".join(
      f"{key} = {value!r}" for key, value in parameters.items())
  outputs = _run(nb, venv, cwd, monkeypatch)
  assert not outputs[0], f"the install cell did something: {outputs[0]}"
  return [out for cell in outputs for out in cell]


def test_install_cell_installs_where_missing(tmp_path, monkeypatch):
  """The install cell (the same in every notebook) installs rasd_jax from the git repository
  REPO, here a local one holding the sources, into an environment that lacks it; with no GPU
  (no nvidia-smi on PATH) it asks for no jax extra, so pip keeps the installed CPU jax."""
  installs = {next(c for c in _notebook(name).cells if c.cell_type == "code").source
              for name in NAMES}
  assert len(installs) == 1, "the notebooks' install cells differ"
  repo = _copy_sources(os.path.join(tmp_path, "repo"))
  git = dict(os.environ, GIT_CONFIG_GLOBAL=os.devnull, GIT_CONFIG_NOSYSTEM="1")
  for command in (["init", "-q"], ["add", "-A"],
                  ["-c", "user.name=rasd", "-c", "user.email=rasd@localhost", "commit", "-q",
                   "-m", "sources"]):
    subprocess.run(["git", *command], cwd=repo, env=git, check=True)
  url = f"file://localhost{repo}"  # A PEP 508 URL names a host.
  install, count = re.subn(r'^REPO = "[^"]*"', f'REPO = "{url}"', installs.pop(),
                           flags=re.MULTILINE)
  assert count == 1, "the install cell does not define REPO once"

  bin_dir = os.path.join(tmp_path, "bin")  # git alone on PATH
  os.makedirs(bin_dir)
  os.symlink(shutil.which("git"), os.path.join(bin_dir, "git"))
  # IPython's %pip runs through $SHELL, or "sh" looked up on PATH where SHELL is unset (as in CI).
  monkeypatch.setenv("SHELL", shutil.which("sh"))
  monkeypatch.setenv("PATH", bin_dir)
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("PIP_NO_BUILD_ISOLATION", "0")  # pip reads "0" as --no-build-isolation
  venv = _venv(tmp_path)
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(install),
                                       nbformat.v4.new_code_cell("print(repr(extra))")])
  outputs = _run(nb, venv, tmp_path, monkeypatch)
  assert _stdout(outputs[1]) == "''\n"
  _, site, _ = venv
  _assert_rasd_jax_alone(site)
  with open(os.path.join(site, f"rasd_jax-{_version()}.dist-info", "direct_url.json")) as f:
    origin = json.load(f)
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=git, capture_output=True,
                        text=True, check=True).stdout.strip()
  assert (origin["url"], origin["vcs_info"]["vcs"], origin["vcs_info"]["commit_id"]) == (
      url, "git", head), origin


def _images(outputs):
  return [out for out in outputs if out.output_type in ("display_data", "execute_result")
          and "image/png" in out.get("data", {})]


def _stdout(outputs):
  return "".join(out.text for out in outputs
                 if out.output_type == "stream" and out.name == "stdout")


def _check_synthesis_explorer(outputs, parameters):
  """The montages and tables of synthesis_explorer.ipynb, run with `parameters`."""
  assert len(_images(outputs)) == 6, "expected 6 montages"
  text = _stdout(outputs)
  batch, size_2d, size_3d = (parameters[key] for key in ("BATCH", "SIZE_2D", "SIZE_3D"))
  assert f"'image': (({batch}, {size_2d}, {size_2d}, 1), 'float32')" in text, text
  assert f"'label': ({batch}, {size_3d}, {size_3d}, {size_3d})" in text, text
  # The comparison table: a row per configuration.
  assert re.search(r"^config +labels_present +boundary_fraction", text, re.MULTILINE), text
  for name in ("reference", "clean", "strong bias", "high noise", "artefacts", "multi-contrast"):
    assert re.search(rf"^{name} +\d", text, re.MULTILINE), text


def _check_pretraining(outputs, parameters):
  """The figures and lines of pretraining.ipynb, run with `parameters`."""
  size, steps = parameters["SIZE"], parameters["STEPS"]
  # Training curves, then the features of a synthetic sample and of the MRI slice.
  assert len(_images(outputs)) == 3, "expected 3 figures"
  text = _stdout(outputs)
  assert f"{steps} logged steps, last {steps}: loss " in text, text
  # Trained and untrained network, on the synthetic sample and on the MRI slice.
  assert text.count(f"feature image shape ({size}, {size}, 3)") == 4, text
  assert f"pre-trained ({steps} steps): proto_acc" in text, text
  assert f"resized to ({size}, {size})" in text, text


def _check_finetune(outputs, parameters):
  """The figures and tables of finetune.ipynb, run with `parameters`."""
  # The data split, the validation curves, the test predictions.
  assert len(_images(outputs)) == 3, "expected 3 figures"
  text = _stdout(outputs)
  assert f"; {parameters['FINETUNE_STEPS']} fine-tuning steps per run" in text, text
  assert re.search(r"^init +probe +selected step +val Dice +test Dice +test HD95 +test NSD$",
                   text, re.MULTILINE), text
  for name, probe in (("scratch", False), ("pre-trained", False), ("linear probe", True)):
    assert re.search(rf"^{name} +{probe} +\d+ +\d\.\d{{3}} +\d\.\d{{3}}", text, re.MULTILINE), text
    assert re.search(rf"^{name}: step \d+, test Dice \d\.\d{{3}} \(results.json: ", text,
                     re.MULTILINE), text
  assert "no drive download found in " in text and "drive.grand-challenge.org" in text, text
  # The split lists ship inside the installed package.
  assert "split list: 14 train / 6 val, from Downstream/DRIVE/DRIVE.json" in text, text


# Per notebook: the check of its outputs, and the parameters that the check reads.
CHECKS = {"synthesis_explorer.ipynb": (_check_synthesis_explorer, ("SIZE_2D", "SIZE_3D", "BATCH")),
          "pretraining.ipynb": (_check_pretraining, ("SIZE", "STEPS")),
          "finetune.ipynb": (_check_finetune, ("FINETUNE_STEPS",))}


@pytest.mark.parametrize("name", NAMES)
def test_stored_executed(name):
  """notebooks/<name> is stored as `python notebooks/execute.py` leaves it: run top to bottom in
  one kernel (its code cells numbered 1, 2, ... in order), without an error, the install cell
  doing nothing, and showing the figures and tables of a run at the values of its parameter
  cell."""
  nb = _stored(name)
  code = [cell for cell in nb.cells if cell.cell_type == "code"]
  counts = [cell.execution_count for cell in code]
  assert counts == list(range(1, len(code) + 1)), (
      f"{name} is not stored as run top to bottom (execution counts {counts}): "
      f"python notebooks/execute.py {name.removesuffix('.ipynb')}")
  outputs = [out for cell in code for out in cell.outputs]
  errors = [out for out in outputs if out.output_type == "error"]
  assert not errors, [f"{e.ename}: {e.evalue}" for e in errors]
  assert not code[0].outputs, f"the install cell did something: {code[0].outputs}"
  check, keys = CHECKS[name]
  parameters = {}
  exec(_parameter_cell(nb, keys).source, parameters)  # plain assignments
  check(outputs, parameters)


def test_synthesis_explorer_runs(installed, tmp_path, monkeypatch):
  parameters = dict(SIZE_2D=32, SIZE_3D=32, BATCH=2)
  outputs = _execute("synthesis_explorer.ipynb", parameters, installed, tmp_path, monkeypatch)
  _check_synthesis_explorer(outputs, parameters)


@pytest.mark.slow(90)
def test_pretraining_runs(installed, tmp_path, monkeypatch):
  parameters = dict(MODEL="unet_tiny", SIZE=32, STEPS=4, BATCH=2, WORKDIR="run")
  outputs = _execute("pretraining.ipynb", parameters, installed, tmp_path, monkeypatch)

  # A relative WORKDIR is under the working folder.
  workdir = os.path.join(tmp_path, "run")
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    metrics = [json.loads(line) for line in f if line.strip()]
  steps = parameters["STEPS"]
  assert [m["step"] for m in metrics] == list(range(1, steps + 1))
  assert os.path.isdir(os.path.join(workdir, "checkpoints", str(steps)))
  _check_pretraining(outputs, parameters)


@pytest.mark.slow(90)
def test_finetune_runs(installed, tmp_path, monkeypatch):
  parameters = dict(MODEL="unet_tiny", ROI=32, PRETRAIN_STEPS=4, FINETUNE_STEPS=6, EVAL_EVERY=3,
                    WORKDIR="run")
  outputs = _execute("finetune.ipynb", parameters, installed, tmp_path, monkeypatch)

  workdir = os.path.join(tmp_path, "run")
  with open(os.path.join(workdir, "nuclei_decathlon", "dataset.json")) as f:
    dataset = json.load(f)
  assert [len(dataset[k]) for k in ("training", "validation", "test")] == [2, 2, 2]
  steps = parameters["FINETUNE_STEPS"]
  runs = {"scratch": ("scratch", False), "pre-trained": (os.path.join(workdir, "pretrain"), False),
          "linear_probe": (os.path.join(workdir, "pretrain"), True)}
  for name, (init, probe) in runs.items():
    with open(os.path.join(workdir, name, "results.json")) as f:
      results = json.load(f)
    assert (results["init"], results["probe"], results["total_steps"]) == (init, probe, steps)
    with open(os.path.join(workdir, name, "val_metrics.jsonl")) as f:
      assert [json.loads(line)["step"] for line in f if line.strip()] == [3, 6], name
  assert os.path.exists(os.path.join(workdir, "pre-trained", "transfer.txt"))
  _check_finetune(outputs, parameters)
