import json
import subprocess
import sys

from conftest import REPO_ROOT


def test_synthesis_bench_prints_one_json_line():
  result = subprocess.run(
      [sys.executable, "-m", "rasd_jax.bench", "synthesis", "--ndim", "2", "--size", "32",
       "--batch", "2", "--set", "channels=2"],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  figures = json.loads(lines[0])
  for key in ("ndim", "size", "batch", "devices", "compile_s", "ms_per_sample",
              "samples_per_s", "peak_rss_mb"):
    assert key in figures
  assert figures["channels"] == 2 and figures["ms_per_sample"] > 0
  assert abs(figures["samples_per_s"] * figures["ms_per_sample"] - 1000) < 1
