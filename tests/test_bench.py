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
  assert abs(figures["samples_per_s"] * figures["ms_per_sample"] / 1000 - 1) < 0.005


def test_compiled_flops_equal_a_hand_count():
  """Two valid 3x3 convolutions with bias and a ReLU between: 2 flops per multiply-add, 1
  per bias add and per ReLU; forward, and forward plus the weight gradients."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from rasd_jax import bench

  class Net(nnx.Module):
    def __init__(self, rngs):
      self.a = nnx.Conv(1, 8, (3, 3), padding="VALID", rngs=rngs)
      self.b = nnx.Conv(8, 4, (3, 3), padding="VALID", rngs=rngs)

    def __call__(self, x):
      return self.b(jax.nn.relu(self.a(x)))

  graphdef, params = nnx.split(Net(nnx.Rngs(0)))
  x = jnp.ones((2, 20, 20, 1))
  first, second = 2 * 18 * 18, 2 * 16 * 16  # output positions of each convolution
  forward = (2 * first * 9 * 1 * 8 + first * 8        # conv a, its bias
             + first * 8                               # relu
             + 2 * second * 9 * 8 * 4 + second * 4)   # conv b, its bias
  f = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  assert bench.program_flops(f.lower(params, x)) == forward

  # Gradient of a sum of squares: the forward products, conv b's input and weight gradients
  # (two products the size of conv b), conv a's weight gradient (its input's is not needed),
  # plus elementwise work (bias gradients, the ReLU's mask, the squares).
  grad = jax.jit(jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) ** 2)))
  flops = bench.program_flops(grad.lower(params, x))
  products = 2 * first * 9 * 8 * 2 + 2 * second * 9 * 8 * 4 * 3
  assert products < flops < products * 1.1


def test_pretrain_bench_reports_flops_and_no_mfu_on_cpu():
  result = subprocess.run(
      [sys.executable, "-m", "rasd_jax.bench", "pretrain", "--ndim", "2", "--size", "32",
       "--model", "unet_tiny", "--batch", "2"],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  figures = json.loads(result.stdout.strip().splitlines()[-1])
  assert figures["flops"] > 0 and figures["mfu"] is None and figures["peak_flops"] is None
  assert abs(figures["flops_per_s"] * figures["step_s"] / figures["flops"] - 1) < 0.01
  assert figures["remat"] is False and figures["attention"] == "einsum"


def test_finetune_step_bench_times_the_fine_tuning_step():
  """The fine-tuning step of DRIVE's protocol: one sigmoid output, the reference's dropout in
  the 2D U-Net (the float32 step only: each dtype is a compile)."""
  result = subprocess.run(
      [sys.executable, "-m", "rasd_jax.bench", "finetune_step", "--task", "drive", "--model",
       "unet_tiny", "--size", "16", "--batch", "2", "--compute-dtype", "float32"],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  figures = json.loads(result.stdout.strip().splitlines()[-1])
  assert (figures["output"], figures["num_outputs"], figures["dropout"]) == ("sigmoid", 1, 0.15)
  assert figures["roi"] == [16, 16] and figures["float32_step_s"] > 0
  assert "bfloat16_step_s" not in figures


def test_step_vs_torch_times_both_steps_of_one_network():
  """Our step and MONAI's UNet in PyTorch, same network, batch and loss: figures that agree
  with each other, and PyTorch's FLOP count within the range of XLA's count of our program
  (ours adds the generator, the elementwise operations and the polyphase zero taps)."""
  result = subprocess.run(
      [sys.executable, "-m", "rasd_jax.bench", "step_vs_torch", "--ndim", "2", "--size", "32",
       "--model", "unet_tiny", "--batch", "2", "--no-torch-compile"],
      cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  lines = result.stdout.strip().splitlines()
  assert len(lines) == 1
  figures = json.loads(lines[0])
  assert figures["monai_network"] == "UNet" and figures["torch_device"] != ""
  assert figures["ours_step_s"] > 0 and figures["torch_step_s"] > 0
  assert abs(figures["speedup"] * figures["ours_step_s"] / figures["torch_step_s"] - 1) < 0.01
  assert figures["model_flops"] < figures["ours_program_flops"] < 3 * figures["model_flops"]
  assert abs(figures["ours_model_flops_per_s"] * figures["ours_step_s"]
             / figures["model_flops"] - 1) < 0.01
  assert figures["ours_mfu"] is None and figures["torch_mfu"] is None  # no CPU peak
  assert "torch_compile_step_s" not in figures and "speedup_vs_torch_compile" not in figures
  for key in ("jax", "torch", "monai", "device_kind", "torch_threads", "synthesis_fraction"):
    assert key in figures


def test_peak_table_matches_device_kinds():
  from rasd_jax import bench
  assert bench.peak_flops("NVIDIA H200", "bfloat16") == 989e12
  assert bench.peak_flops("NVIDIA H100 80GB HBM3", "float32") == 494e12
  assert bench.peak_flops("TPU v5 lite", "bfloat16") == 197e12
  assert bench.peak_flops("TPU v5p", "bfloat16") == 459e12
  assert bench.peak_flops("cpu", "bfloat16") is None


def test_accelerator_check_prints_a_line_per_case_within_its_budget(tmp_path):
  out = tmp_path / "check.jsonl"
  result = subprocess.run(
      [sys.executable, "bench/accelerator_check.py", "--quick", "--out", str(out),
       "--cases", "synthesis2d,agreement"], cwd=REPO_ROOT, capture_output=True, text=True,
      check=True)
  lines = [json.loads(line) for line in result.stdout.splitlines()]
  assert [line["case"] for line in lines] == ["synthesis2d", "agreement"]
  assert lines[0]["bench"] == "synthesis" and lines[0]["size"] == 64  # --quick sizes
  assert lines[1]["backends"] == ["cpu", "cpu"] and lines[1]["label_equal"] == 1.0
  assert out.read_text().splitlines() == result.stdout.splitlines()
  skipped = subprocess.run(
      [sys.executable, "bench/accelerator_check.py", "--quick", "--budget", "0.5",
       "--cases", "swin3d_bf16"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
  assert json.loads(skipped.stdout)["error"] == "skipped: budget"


def test_side_by_side_names_a_missing_reference(tmp_path):
  result = subprocess.run([sys.executable, "bench/side_by_side.py", "--reference",
                           str(tmp_path)], cwd=REPO_ROOT, capture_output=True, text=True)
  assert result.returncode != 0
  assert f"--reference '{tmp_path}': no {tmp_path}/pretrain/train_RaSD/utils/" in result.stderr
