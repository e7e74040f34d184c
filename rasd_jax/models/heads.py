"""A pre-trained network with a new output layer for a downstream task.

`Downstream(backbone, head)`: the backbone maps (B, *spatial, C_in) to dense features
(B, *spatial, F); the head is a linear layer on the feature axis, applied per voxel (dense:
segmentation, a 1x1 convolution) or after the mean over the spatial axes (pooled:
classification and regression). `head=None` keeps the backbone's own last layer (made with
the task's N outputs), the reference protocol's choice. Weights transfer into `backbone` by
name (training.transfer), so its variable names are the pre-training network's.
"""

from flax import nnx


class Downstream(nnx.Module):

  def __init__(self, backbone, head, pooled):
    self.backbone = backbone
    self.head = head
    self.pooled = pooled

  def __call__(self, x):
    y = self.backbone(x)
    if self.pooled:
      y = y.mean(axis=tuple(range(1, y.ndim - 1)))
    return y if self.head is None else self.head(y)
