"""rasd_jax: RaSD synthetic pre-training of medical image foundation models in JAX."""

import os

# The one XLA flag the package sets, before JAX starts a backend (XLA reads XLA_FLAGS then;
# importing rasd_jax after the first JAX computation of a process leaves it out). On a CPU,
# XLA 0.10 runs convolutions through YNNPACK on one thread whatever the cores; without it
# they run through Eigen on all of them (README, "Benchmarks": 4-31% off the training steps
# measured there, on 2 cores; where several processes share the cores it costs instead). GPUs
# and TPUs ignore it. A value of the same flag in XLA_FLAGS is kept as is.
CPU_CONVOLUTION_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
if CPU_CONVOLUTION_FLAG.partition("=")[0] not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = " ".join(
      filter(None, [os.environ.get("XLA_FLAGS"), CPU_CONVOLUTION_FLAG]))

from rasd_jax.training.weights import load_model  # noqa: E402 -- after the flag

__all__ = ["load_model"]
