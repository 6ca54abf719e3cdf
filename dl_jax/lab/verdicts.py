"""Verdicts on claims by stated statistical tests, never by a threshold on a mean.

A claim says an effect exceeds a margin: "A beats B" is mean(A - B) > 0; "B is no worse than A by
more than a point" is mean(B - A) > -0.01. `compare` tests it one-sided at alpha = 0.05:

- seeds paired (the same seeds on both sides, so each pair shares its data order and split): the
  paired t-test on the per-seed differences (`scipy.stats.ttest_1samp` of A - B against the margin);
- otherwise Welch's t-test (`scipy.stats.ttest_ind`, unequal variances) of A - margin against B.

Three verdicts: **supported** when H0 "effect <= margin" is rejected; **refuted** when the opposite,
H0 "effect >= margin", is rejected (the data say the effect lies on the wrong side of the margin);
**not supported** otherwise. The report shows the effect, its two-sided 95% confidence interval and
the one-sided p-value. With fewer than 2 figures a side (or 2 pairs) nothing can be tested and the
verdict is "not supported"; when every difference is the same number the t statistic is infinite,
and the verdict follows the sign of effect - margin (p = 0 on that side), as the limit says.
"""

import dataclasses
import math

import numpy as np
from scipy import stats

ALPHA = 0.05
SUPPORTED, NOT_SUPPORTED, REFUTED = "supported", "not supported", "refuted"
PAIRED, WELCH = "paired t", "Welch t"


@dataclasses.dataclass(frozen=True)
class Comparison:
  """The outcome of one one-sided test of "effect > margin"."""
  test: str            # PAIRED or WELCH
  n: tuple[int, int]   # figures on each side
  effect: float        # mean(A - B) (paired) or mean(A) - mean(B)
  ci: tuple[float, float]  # two-sided 95% confidence interval of the effect
  p: float             # one-sided p-value of H0 "effect <= margin" (nan: too few figures)
  p_opposite: float    # one-sided p-value of H0 "effect >= margin"
  margin: float = 0.0
  alpha: float = ALPHA

  @property
  def verdict(self) -> str:
    if self.p < self.alpha:
      return SUPPORTED
    if self.p_opposite < self.alpha:
      return REFUTED
    return NOT_SUPPORTED

  def describe(self, scale: float = 100.0, unit: str = " points") -> str:
    """'+18.9 points [95% CI +17.1, +20.7], paired t, n = 5, p = 0.0001' (effect x scale)."""
    low, high = (scale * bound for bound in self.ci)
    ci = "n/a" if math.isnan(low) else f"{low:+.1f}, {high:+.1f}"
    n = f"n = {self.n[0]}" if self.test == PAIRED else f"n = {self.n[0]} vs {self.n[1]}"
    p = format_p(self.p)
    if self.verdict == REFUTED:  # the test that decided it is the opposite one
      p = f"{format_p(self.p_opposite)} for the opposite effect"
    return f"{scale * self.effect:+.1f}{unit} [95% CI {ci}], {self.test}, {n}, {p}"


def format_p(p: float) -> str:
  """'p = 0.013', 'p < 0.0001', or why there is no p-value."""
  if math.isnan(p):
    return "no p-value (fewer than 2 seeds)"
  return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def compare(a, b, paired: bool, margin: float = 0.0, alpha: float = ALPHA) -> Comparison:
  """Tests "mean(a) - mean(b) > margin" one-sided; paired needs a[i] and b[i] from one seed."""
  a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
  if paired:
    if a.shape != b.shape:
      raise ValueError(f"a paired test needs one figure per seed on each side, got {a.size} and "
                       f"{b.size}")
    return _paired(a - b, margin, alpha)
  return _welch(a, b, margin, alpha)


def _paired(diff: np.ndarray, margin: float, alpha: float) -> Comparison:
  n, effect = (diff.size, diff.size), float(diff.mean()) if diff.size else math.nan
  if diff.size < 2:
    return Comparison(PAIRED, n, effect, (math.nan, math.nan), math.nan, math.nan, margin, alpha)
  if np.all(diff == diff[0]):
    return _constant(PAIRED, n, effect, margin, alpha)
  greater = stats.ttest_1samp(diff, margin, alternative="greater").pvalue
  less = stats.ttest_1samp(diff, margin, alternative="less").pvalue
  ci = stats.ttest_1samp(diff, margin).confidence_interval(0.95)  # of mean(diff) itself
  return Comparison(PAIRED, n, effect, (float(ci.low), float(ci.high)),
                    float(greater), float(less), margin, alpha)


def _welch(a: np.ndarray, b: np.ndarray, margin: float, alpha: float) -> Comparison:
  n = (a.size, b.size)
  effect = float(a.mean() - b.mean()) if a.size and b.size else math.nan
  if min(n) < 2:
    return Comparison(WELCH, n, effect, (math.nan, math.nan), math.nan, math.nan, margin, alpha)
  if a.var() == 0 and b.var() == 0:
    return _constant(WELCH, n, effect, margin, alpha)
  test = lambda alternative: stats.ttest_ind(a - margin, b, equal_var=False,
                                             alternative=alternative)
  ci = test("two-sided").confidence_interval(0.95)  # of effect - margin
  return Comparison(WELCH, n, effect, (float(ci.low) + margin, float(ci.high) + margin),
                    float(test("greater").pvalue), float(test("less").pvalue), margin, alpha)


def _constant(test: str, n, effect: float, margin: float, alpha: float) -> Comparison:
  """Every difference equal: no sampling variance, so the effect is known exactly."""
  return Comparison(test, n, effect, (effect, effect), 0.0 if effect > margin else 1.0,
                    0.0 if effect < margin else 1.0, margin, alpha)


@dataclasses.dataclass(frozen=True)
class Proportion:
  """A one-sided exact binomial test of "the success rate exceeds `target`" over examples."""
  successes: int
  trials: int
  target: float
  alpha: float = ALPHA

  @property
  def result(self):
    return stats.binomtest(self.successes, self.trials, self.target, alternative="greater")

  @property
  def p(self) -> float:
    return float(self.result.pvalue)

  @property
  def p_opposite(self) -> float:
    return float(stats.binomtest(self.successes, self.trials, self.target,
                                 alternative="less").pvalue)

  @property
  def ci(self) -> tuple[float, float]:
    """Two-sided 95% Clopper-Pearson interval of the rate."""
    interval = stats.binomtest(self.successes, self.trials).proportion_ci(0.95, method="exact")
    return float(interval.low), float(interval.high)

  @property
  def verdict(self) -> str:
    return SUPPORTED if self.p < self.alpha else REFUTED if self.p_opposite < self.alpha else \
        NOT_SUPPORTED

  def describe(self) -> str:
    low, high = self.ci
    return (f"{self.successes} of {self.trials} ({100 * self.successes / self.trials:.2f}%) [95% "
            f"CI {100 * low:.2f}, {100 * high:.2f}], exact binomial vs {100 * self.target:g}%, "
            f"{format_p(self.p)}")
