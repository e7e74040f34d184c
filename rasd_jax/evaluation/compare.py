"""Pre-trained against scratch, paired by seed: spreads, the t interval and the verdict.

Values are per-seed scores of one metric; the two lists of a pair are aligned by seed. The
difference of a seed is treated - baseline (pre-trained - scratch) as measured; for metrics
where lower is better (LOWER_IS_BETTER) a negative difference is the pre-trained side's win,
so "better" (the verdict, the count of seeds) flips with the metric, never the difference.
A difference is resolved when its two-sided 95% t interval (n - 1 degrees of freedom) leaves
out zero. Non-finite values (None from JSON, NaN, an infinite HD95) are left out: a pair
counts only when both of its values are finite.
"""

import dataclasses
import math

import numpy as np

LOWER_IS_BETTER = ("mae", "rmse", "hd95")
LEVEL = 0.95


def lower_is_better(metric):
  return metric in LOWER_IS_BETTER


def _finite(values):
  values = np.asarray([np.nan if v is None else v for v in values], float)
  return values[np.isfinite(values)]


def spread(values):
  """(mean, sd, se) of the finite values: sd with ddof 1, se = sd / sqrt(n); sd and se are
  NaN below two values, all three for none."""
  values = _finite(values)
  if len(values) == 0:
    return math.nan, math.nan, math.nan
  if len(values) < 2:
    return float(values.mean()), math.nan, math.nan
  sd = float(values.std(ddof=1))
  return float(values.mean()), sd, sd / math.sqrt(len(values))


def paired_differences(baseline, treated):
  """treated - baseline per seed, over the seeds where both are finite."""
  if len(baseline) != len(treated):
    raise ValueError(f"paired values need one per seed on both sides; got {len(baseline)} "
                     f"baseline and {len(treated)} treated values")
  pairs = np.asarray([[np.nan if v is None else v for v in side]
                      for side in (baseline, treated)], float).reshape(2, -1)
  keep = np.isfinite(pairs).all(axis=0)
  return [float(d) for d in pairs[1, keep] - pairs[0, keep]]


def t_interval(mean, se, n, level=LEVEL):
  """The two-sided `level` t interval of a mean of n values with standard error se, n - 1
  degrees of freedom; (NaN, NaN) below two values."""
  if n < 2 or not math.isfinite(se):
    return math.nan, math.nan
  # Imported here: scipy.stats takes ~0.5 s to import, which every job would pay at start-up.
  from scipy import stats
  half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
  return mean - half, mean + half


def fmt(value, digits=3):
  return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def signed(value, digits=3):
  return "n/a" if value is None or not math.isfinite(value) else f"{value:+.{digits}f}"


def verdict(mean, se, better, n, lower=False, names=("scratch", "pre-trained")):
  """One line on a paired difference (names[1] - names[0]) of n seeds, `better` of them in
  favour of names[1]; `lower`: the metric is lower-is-better."""
  count = f"{better}/{n} seeds {names[1]} better"
  if n < 2:
    return f"{signed(mean)} ({count}; too few seeds to judge)"
  low, high = t_interval(mean, se, n)
  text = f"{signed(mean)}, {LEVEL:.0%} CI [{signed(low)}, {signed(high)}] ({count})"
  if low <= 0 <= high:
    return f"no resolved difference: {text}"
  wins = (mean < 0) if lower else (mean > 0)
  return f"{names[1] if wins else names[0]} better: {text}"


@dataclasses.dataclass(frozen=True)
class Paired:
  """A paired comparison: each side's (mean, sd) over its finite values, and the
  differences treated - baseline of the seeds finite on both sides."""
  baseline: tuple
  treated: tuple
  differences: list
  mean: float
  sd: float
  se: float
  low: float
  high: float
  better: int
  lower: bool
  names: tuple

  @property
  def n(self):
    return len(self.differences)

  @property
  def verdict(self):
    return verdict(self.mean, self.se, self.better, self.n, self.lower, self.names)


def paired(baseline, treated, metric="", names=("scratch", "pre-trained")):
  """Paired of two per-seed lists of `metric` values (baseline, treated aligned by seed)."""
  lower = lower_is_better(metric)
  differences = paired_differences(baseline, treated)
  mean, sd, se = spread(differences)
  low, high = t_interval(mean, se, len(differences))
  better = sum((d < 0) if lower else (d > 0) for d in differences)
  return Paired(baseline=spread(baseline)[:2], treated=spread(treated)[:2],
                differences=differences, mean=mean, sd=sd, se=se, low=low, high=high,
                better=better, lower=lower, names=tuple(names))
