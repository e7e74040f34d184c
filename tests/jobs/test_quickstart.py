"""The quickstart job end to end through run.py (subprocesses), at its `tiny` size."""

import json
import subprocess
import sys

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
