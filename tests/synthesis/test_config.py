import pytest

from rasd_jax.config import parse_arg

from conftest import spec_of


def test_defaults_follow_the_reference():
  s3, s2 = spec_of(3, 128), spec_of(2, 512)
  assert (s3.num_labels, s3.flow_max_std, s3.label_grids, s3.flow_grids) == (8, 8.0, (8, 4), (16, 8, 4))
  assert (s2.num_labels, s2.flow_max_std) == (16, 32.0)
  assert s3.gamma_range == (0.5, 1.5) and s3.noise_std_range == (0.05, 0.4)
  assert s3.bias_fwhm_range == (16.0, 32.0) and s3.blur_sigma_range == (0.0, 1.0)
  assert (s3.warp_stride, s2.warp_stride, spec_of(2, 1024).warp_stride) == (1, 2, 4)
  assert not s3.acquisition_artefacts and s3.std_range == (0.0, 0.0)
  assert spec_of(3, 32).num_labels == 2  # auto K never drops below 2


@pytest.mark.parametrize("fields, needle", [
    (dict(ndim=4), "synthesis.ndim = 4 is not allowed: 2 or 3"),
    (dict(num_labels=1), "synthesis.num_labels = 1 is not allowed: an integer in [2, 255]"),
    (dict(gamma_range=(1.5, 0.5)), "synthesis.gamma_range = (1.5, 0.5) is not allowed: a finite (min, max) pair with min <= max"),
    (dict(size=12), "synthesis.size = 12 is not allowed: an integer >= 16, the largest noise grid"),
    (dict(flow_grids=(16, 1)), "synthesis.flow_grids"),
    (dict(zero_background_prob=1.5), "synthesis.zero_background_prob = 1.5 is not allowed: a probability"),
    (dict(gamma_range=(0.0, 1.0)), "synthesis.gamma_range = (0.0, 1.0) is not allowed: a (min, max) pair with min >= 0.001"),
    (dict(warp_stride=-1), "synthesis.warp_stride = -1"),
])
def test_impossible_configs_are_refused_with_the_field_and_allowed_values(fields, needle):
  with pytest.raises(ValueError) as error:
    spec_of(**fields)
  assert needle in str(error.value)


def test_config_is_hashable_and_static():
  assert hash(spec_of()) == hash(spec_of())


def test_parse_arg_types_and_unknown_names():
  arg = parse_arg("ndim=2,size=64,runlocal", ndim=3, size=0, runlocal=False)
  assert (arg.ndim, arg.size, arg.runlocal) == (2, 64, True)
  with pytest.raises(ValueError, match="unknown config argument 'sise'.*Did you mean 'size'"):
    parse_arg("sise=3", ndim=3, size=0)
  with pytest.raises(ValueError, match="ndim='x': expected int"):
    parse_arg("ndim=x", ndim=3)
