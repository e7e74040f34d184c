"""Paired statistics against hand-worked values and NumPy / SciPy computed independently."""

import math

import numpy as np
import pytest
from scipy import stats

from rasd_jax.evaluation import compare


def test_two_seeds_by_hand():
  # diffs 0.1, 0.3: mean 0.2, sd sqrt(0.02) = 0.1414, SE 0.1; t(0.975, 1) = 12.706.
  result = compare.paired([0.5, 0.6], [0.6, 0.9], "dice")
  np.testing.assert_allclose(result.differences, [0.1, 0.3])
  np.testing.assert_allclose([result.mean, result.sd, result.se], [0.2, 0.141421, 0.1],
                             rtol=1e-5)
  np.testing.assert_allclose([result.low, result.high], [-1.0706, 1.4706], atol=1e-4)
  np.testing.assert_allclose(result.baseline, (0.55, math.sqrt(0.005)))
  np.testing.assert_allclose(result.treated, (0.75, math.sqrt(0.045)))
  assert result.n == 2 and result.better == 2
  assert result.verdict == ("no resolved difference: +0.200, 95% CI [-1.071, +1.471] "
                            "(2/2 seeds pre-trained better)")
  # The same from the summary numbers alone (mean, SE, seeds better, seeds).
  assert compare.verdict(0.2, 0.1, 2, 2) == result.verdict
  np.testing.assert_allclose(compare.t_interval(0.2, 0.1, 2), (-1.0706, 1.4706), atol=1e-4)


def test_three_seeds_resolve_against_scipy():
  scratch, pre = [0.70, 0.72, 0.69], [0.75, 0.78, 0.73]
  result = compare.paired(scratch, pre, "dice")
  diffs = np.subtract(pre, scratch)
  # scipy's paired t-test and t interval, independently.
  test = stats.ttest_rel(pre, scratch)
  interval = stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs))
  np.testing.assert_allclose(result.mean / result.se, test.statistic)
  np.testing.assert_allclose([result.low, result.high], interval)
  assert test.pvalue < 0.05 and result.low > 0
  assert result.verdict.startswith("pre-trained better: +0.050, 95% CI [+0.")
  assert result.verdict.endswith("(3/3 seeds pre-trained better)")
  # The same numbers the other way round: scratch better.
  assert compare.paired(pre, scratch, "dice").verdict.startswith("scratch better: -0.050")


def test_lower_is_better_flips_better_not_the_difference():
  scratch, pre = [5.0, 6.0, 5.5, 6.5], [4.0, 4.5, 4.6, 5.0]  # MAE in years: pre-trained wins
  result = compare.paired(scratch, pre, "mae")
  diffs = np.subtract(pre, scratch)
  assert result.lower and result.better == 4
  np.testing.assert_allclose(result.mean, diffs.mean())
  np.testing.assert_allclose(result.se, diffs.std(ddof=1) / 2)
  half = stats.t.ppf(0.975, 3) * result.se
  np.testing.assert_allclose([result.low, result.high], [diffs.mean() - half,
                                                         diffs.mean() + half])
  assert result.high < 0 and result.verdict.startswith("pre-trained better: -1.225")
  assert compare.paired(pre, scratch, "hd95").verdict.startswith("scratch better: +1.225")
  # The same differences on a higher-is-better metric: scratch better.
  assert compare.paired(scratch, pre, "dice").verdict.startswith("scratch better: -1.225")


def test_one_seed_and_missing_values():
  result = compare.paired([0.5], [0.6], "dice")
  assert math.isclose(result.mean, 0.1) and result.n == 1
  assert all(math.isnan(v) for v in (result.sd, result.se, result.low, result.high))
  assert math.isnan(result.baseline[1])
  assert result.verdict == "+0.100 (1/1 seeds pre-trained better; too few seeds to judge)"
  # None (NaN in results.json) and inf leave their pair out; each side keeps its finite values.
  result = compare.paired([0.5, None, 0.4, 0.3], [0.6, 0.7, np.inf, 0.2], "dice")
  np.testing.assert_allclose(result.differences, [0.1, -0.1])
  np.testing.assert_allclose(result.baseline, (0.4, 0.1))
  np.testing.assert_allclose(result.treated[0], np.mean([0.6, 0.7, 0.2]))
  assert result.better == 1
  empty = compare.paired([], [], "dice")
  assert empty.n == 0 and math.isnan(empty.mean) and "too few seeds" in empty.verdict
  assert compare.spread([2.0, 4.0]) == pytest.approx((3.0, math.sqrt(2), 1.0))
  with pytest.raises(ValueError, match="one per seed on both sides; got 2 baseline and 1"):
    compare.paired([0.1, 0.2], [0.3])


def test_identical_differences():
  # No spread at all: an interval of one point, resolved unless the point is zero.
  assert compare.paired([0.5, 0.5], [0.5, 0.5]).verdict.startswith("no resolved difference")
  assert compare.paired([0.5, 0.5], [0.75, 0.75]).verdict.startswith("pre-trained better")
