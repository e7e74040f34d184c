"""Data on disk: medical image formats and downstream datasets."""
