"""Evaluation: downstream metrics."""
