"""Weights in and out of rasd_jax: checkpoint files of PyTorch, MONAI and nnU-Net."""
