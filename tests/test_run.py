"""run.py's command-line mistakes, as users make them, and its help: `python run.py ...` in a
subprocess.

Each mistake is caught while the flags and the config are parsed: one `error: ...` line on
stderr, a non-zero exit, no traceback, and no workdir.
"""

import glob
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
from experiments import finetune
from rasd_jax import jobs
from rasd_jax.data import tasks


def registry_message(name):
  with pytest.raises(ValueError) as error:
    tasks.get(name)
  return str(error.value)


@pytest.mark.parametrize("args, needles", [
    # A misspelt override key, at the top and one level down: the closest key is named.
    (["--config=experiments/pretrain2d.py:runlocal", "--config.totl_steps=5"],
     ["unknown config key 'totl_steps'", 'Did you mean "total_steps"']),
    (["--config=experiments/synthesize.py", "--config.synthsis.size=32"],
     ["unknown config key 'synthsis'", 'Did you mean "synthesis"']),
    # A value of the wrong type: the flag and the value.
    (["--config=experiments/pretrain2d.py:runlocal", "--config.total_steps=abc"],
     ["--config.total_steps=abc", "invalid literal for int()"]),
    (["--config=experiments/pretrain2d.py:runlcal"],
     ["unknown config argument 'runlcal'", "Did you mean 'runlocal'?"]),
    (["--config=experiments/finetune.py:task=btvc"], [registry_message("btvc")]),
    (["--config=experiments/pretrain4d.py"],
     ["No such file or directory", "experiments/pretrain4d.py"]),
    (["--config=experiments/pretrain4d.py", "--help"],
     ["No such file or directory", "experiments/pretrain4d.py"]),
    (["--config=experiments/synthesize.py", "stray"], ["unexpected arguments: ['stray']"]),
    # A SwinUNETR option on a U-Net, and an unknown attention: before the workdir exists.
    (["--config=experiments/pretrain2d.py:runlocal", "--config.remat=True"],
     ["model 'unet_small' takes no option ['remat']"]),
    (["--config=experiments/pretrain3d.py:runlocal", "--config.attention=flash"],
     ["attention = 'flash'", "('einsum', 'xla', 'cudnn')"]),
])
def test_mistake_is_one_error_line(tmp_path, args, needles):
  workdir = tmp_path / "w"
  out = subprocess.run([sys.executable, "run.py", *args, f"--workdir={workdir}"],
                       cwd=REPO_ROOT, capture_output=True, text=True)
  lines = [line for line in out.stderr.splitlines() if line.strip()]
  assert out.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), out.stderr
  for needle in needles:
    assert needle in lines[0]
  assert not workdir.exists()


def test_without_workdir_a_job_writes_to_runs_named_after_its_config(tmp_path):
  """No --workdir: runs/<config name>[_<args>] under the current folder, said in the first
  line."""
  out = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "run.py"),
                        f"--config={REPO_ROOT}/experiments/synthesize.py:ndim=2,size=32",
                        "--config.num=2"], cwd=tmp_path, capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  workdir = os.path.join("runs", "synthesize_ndim=2_size=32")
  assert out.stdout.splitlines()[0] == f"workdir {workdir} (no --workdir given)"
  assert len(os.listdir(tmp_path / workdir / "samples")) == 4  # image and label of 2 samples


def test_missing_config_is_one_error_line():
  out = subprocess.run([sys.executable, "run.py"], cwd=REPO_ROOT, capture_output=True,
                       text=True)
  assert out.returncode != 0 and out.stderr.strip().splitlines() == [
      "error: flag --config=None: Flag --config must have a value other than None."]


def run_help(*args):
  """stdout of `python run.py ARGS`, which must exit 0 and write nothing to stderr."""
  out = subprocess.run([sys.executable, "run.py", *args], cwd=REPO_ROOT, capture_output=True,
                       text=True)
  assert out.returncode == 0 and not out.stderr, out.stderr[-3000:]
  return out.stdout


def leaves(tree, prefix=""):
  """{dotted key: value} of a nested dict."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(leaves(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def test_help_lists_every_job_with_its_config_files():
  """Every job of rasd_jax.jobs, each config file under its job with the first line of its
  docstring, and the flags."""
  text = run_help("--help")
  assert text.startswith("usage: python run.py --config=experiments/FILE.py[:ARGS]")
  for job in jobs.JOBS:
    assert re.search(rf"^  {job} +experiments/\w+\.py$", text, re.M), job
  # The pretrain job's two files, whose config.job is set in experiments/common.py.
  assert re.search(r"^  pretrain +experiments/pretrain2d.py\n.*\n +experiments/pretrain3d.py$",
                   text, re.M)
  for path in glob.glob(os.path.join(REPO_ROOT, "experiments", "*.py")):
    if "def get_config(" in open(path).read():
      name = os.path.basename(path)
      assert re.search(rf" experiments/{name}\n +\S", text), name
  assert "  Fine-tune on a downstream task, from scratch or from a pre-training workdir.\n" in text
  for flag in ("--config", "--config.KEY=VALUE", "--workdir", "--coordinator_address",
               "--num_processes", "--process_id"):
    assert f"\n  {flag} " in text, flag


def test_config_help_lists_arguments_and_every_field_with_its_value():
  """The docstring, the arguments with their defaults, and every field as the config (and
  the overrides given) make it."""
  text = run_help("--config=experiments/finetune.py:task=btcv", "--config.seed=7", "--help")
  assert text.startswith("usage: python run.py --config=experiments/finetune.py[:ARGS] ")
  assert "\nFine-tune on a downstream task, from scratch or from a pre-training workdir.\n" in text
  assert "\njob: finetune\n" in text
  assert "\n  task = 'btcv'  (default '')\n  runlocal = False\n  model = ''\n" in text
  config = finetune.get_config("task=btcv")
  assert f"\n  optim.lr = {config.optim.lr!r}\n" in text
  config.seed = 7
  fields = text.split("fields for these arguments (--config.KEY=VALUE sets one):\n")[1]
  fields = fields.split("\n\n")[0].splitlines()
  assert fields == [f"  {key} = {value!r}" for key, value in sorted(
      leaves(config.to_dict()).items())]


def test_help_of_a_config_that_needs_an_argument_says_which():
  """finetune.py without task=NAME: its arguments, and what it needs instead of the fields
  (-h is --help)."""
  text = run_help("--config=experiments/finetune.py", "-h")
  assert "\n  task = ''\n  runlocal = False\n  model = ''\n" in text
  assert "fields: not listed, because:\n  finetune.py needs task=NAME" in text
