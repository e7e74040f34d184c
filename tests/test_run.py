"""run.py's command-line mistakes, as users make them: `python run.py ...` in a subprocess.

Each mistake is caught while the flags and the config are parsed: one `error: ...` line on
stderr, a non-zero exit, no traceback, and no workdir.
"""

import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT
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
