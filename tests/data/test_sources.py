"""The user's own data (rasd_jax.data.sources): the modality a Decathlon dataset.json declares."""

import pytest

from rasd_jax.data import sources


@pytest.mark.parametrize("declared,group", [
    ({"0": "CT"}, "CT"), ({"0": "MRI"}, "MRI"), ({"0": "cineMRI"}, "MRI"),
    ({"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}, "MRI"),  # MSD BraTS: one group
    ({"0": "T2", "1": "ADC"}, "MRI"), ("US", "ultrasound"), ({"0": "Fundus"}, "fundus"),
    ({"0": "CT", "1": "PET"}, "unknown"),  # PET is not one of the six groups
    ({"0": "CT", "1": "MRI"}, "unknown"),  # channels of two groups
    ({"0": "spectral"}, "unknown"), (None, "unknown"), ({}, "unknown")])
def test_declared_modality(declared, group):
  listed = {} if declared is None else {"modality": declared}
  assert sources.declared_modality(listed) == group
