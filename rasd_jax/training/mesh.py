"""The device mesh: one `data` axis over every device of every process."""

import jax
import numpy as np
from jax.sharding import Mesh


def make_mesh():
  return Mesh(np.asarray(jax.devices()), ("data",))
