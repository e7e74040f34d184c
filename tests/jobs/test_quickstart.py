"""The quickstart job end to end through run.py (subprocesses), at its `tiny` size."""

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

CONFIG = "experiments/quickstart.py:tiny"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(workdir):
  result = subprocess.run(
      [sys.executable, "run.py", f"--config={CONFIG}", f"--workdir={workdir}"],
      cwd=REPO_ROOT, capture_output=True, text=True)
  if result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return result.stdout


@pytest.mark.slow(120)
def test_runs_report_and_resume(tmp_path):
  from experiments import quickstart as quickstart_config
  from rasd_jax.jobs import quickstart
  config = quickstart_config.get_config("tiny")
  planned = quickstart.planned_runs(config)
  assert len(planned) == 12  # 2 tasks x (2 amounts + 1 probe amount) x 2 inits x 1 seed

  run(tmp_path)
  runs = tmp_path / "runs.jsonl"
  lines = runs.read_text().splitlines()
  records = [json.loads(line) for line in lines]
  assert sorted(quickstart.run_key(r) for r in records) == sorted(planned)
  for r in records:
    assert 0 <= r["test_dice"] <= 1 and 0 <= r["val_dice"] <= 1
    assert [step for step, _ in r["curve"]] == [2, 4]
    assert r["selected_step"] in (2, 4)
  assert (tmp_path / "pretrain" / "checkpoints").is_dir()
  report = (tmp_path / "report.md").read_text()
  for heading in ("## Setup", "### brain: fine-tuning", "### nuclei: fine-tuning",
                  "### brain: probe", "### nuclei: probe", "## Learning curves",
                  "## Wall time", "## Where there is and is not a difference"):
    assert heading in report
  # A row per amount of labels: mean ± sd per init, the paired difference, seeds positive.
  rows = [line for line in report.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
  assert any(line.count("±") == 3 and "/1 |" in line for line in rows)
  assert (tmp_path / "report.png").read_bytes()[:8] == PNG_SIGNATURE

  # An interrupted job: the last run is lost; a rerun does it alone and keeps the others.
  runs.write_text("\n".join(lines[:-1]) + "\n")
  stdout = run(tmp_path)
  assert f"{len(planned) - 1} runs already in" in stdout and "; 1 to do" in stdout
  rerun = runs.read_text().splitlines()
  assert rerun[:-1] == lines[:-1] and len(rerun) == len(planned)
  assert quickstart.run_key(json.loads(rerun[-1])) == quickstart.run_key(records[-1])
  assert "## Where there is and is not a difference" in (tmp_path / "report.md").read_text()


def _record(init, n, seed, dice, probe=False):
  return {"task": "brain", "init": init, "train_images": n, "seed": seed, "probe": probe,
          "test_dice": dice, "test_dice_per_class": {"gm": dice}, "curve": [[10, dice]],
          "selected_step": 10, "val_dice": dice, "split_sizes": {}, "seconds": 1.0}


def test_report_statistics_by_hand():
  """The report's table row and verdict for 3 seeds, worked out by hand: scratch 0.70,
  0.74, 0.72 (mean 0.72, sd 0.02), pre-trained 0.75, 0.76, 0.78 (mean 0.7633, sd 0.01528);
  differences 0.05, 0.02, 0.06: mean 0.04333, sd 0.02082, SE 0.01202; t(0.975, 2) = 4.3027,
  half-width 0.05171: CI [-0.00838, +0.09504], which holds zero -> not resolved. With a
  fourth seed (0.73 -> 0.78, diff 0.05) the differences 0.05, 0.02, 0.06, 0.05 have mean
  0.045, SE 0.008660, t(0.975, 3) = 3.1824: CI [+0.01744, +0.07256] -> pre-trained better."""
  from rasd_jax.jobs import quickstart
  scratch, pre = [0.70, 0.74, 0.72, 0.73], [0.75, 0.76, 0.78, 0.78]
  records = [_record("scratch", 4, s, d) for s, d in enumerate(scratch[:3])]
  records += [_record("pretrained", 4, s, d) for s, d in enumerate(pre[:3])]
  lines, verdicts = quickstart._comparison_table(records, "brain", False)
  assert lines[2] == ("| 4 | 0.720 ± 0.020 | 0.763 ± 0.015 | +0.043 ± 0.012 | 3/3 | "
                      "0: +0.050, 1: +0.020, 2: +0.060 |")
  assert verdicts == ["- brain, 4 tiles: no resolved difference: +0.043, 95% CI "
                      "[-0.008, +0.095] (3/3 seeds pre-trained better)"]
  records += [_record("scratch", 4, 3, scratch[3]), _record("pretrained", 4, 3, pre[3])]
  _, verdicts = quickstart._comparison_table(records, "brain", False)
  assert verdicts == ["- brain, 4 tiles: pre-trained better: +0.045, 95% CI "
                      "[+0.017, +0.073] (4/4 seeds pre-trained better)"]
  # Probe rows compare with the random network; a lower pre-trained score is named so:
  # differences -0.20, -0.21, -0.21: mean -0.20667, sd 0.005774, SE 0.003333, half-width
  # 4.3027 x 0.003333 = 0.01434.
  probes = [_record("scratch", 4, s, d, True) for s, d in enumerate([0.8, 0.82, 0.81])]
  probes += [_record("pretrained", 4, s, d, True) for s, d in enumerate([0.6, 0.61, 0.6])]
  _, verdicts = quickstart._comparison_table(probes, "brain", True)
  assert verdicts[0].startswith("- brain, probe, 4 tiles: random network better: "
                                "-0.207, 95% CI [-0.221, -0.192]")
