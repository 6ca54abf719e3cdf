"""Summaries over seeds, as every experiment reports them: mean ± std."""

import numpy as np


def mean_std(values) -> dict:
  """{'mean', 'std', 'values'} of per-seed figures (population std: the seeds are all there is)."""
  values = np.asarray(values, dtype=float)
  return {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}


def percent(stat: dict, unit: str = "%") -> str:
  """A mean_std of fractions as '87.2 ± 0.1%'."""
  return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}{unit}"


def difference(a, b) -> dict:
  """mean(a) - mean(b) over seeds, and its standard error (Welch: each side's sample variance / n;
  a side with one seed contributes no variance, so one seed each is judged on the margin alone)."""
  a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
  var = lambda x: x.var(ddof=1) / x.size if x.size > 1 else 0.0
  return {"mean": float(a.mean() - b.mean()), "se": float(np.sqrt(var(a) + var(b)))}


def exceeds(a, b, margin: float = 0.0) -> bool:
  """True when a's mean beats b's by more than `margin` and by more than two standard errors."""
  diff = difference(a, b)
  return diff["mean"] > max(margin, 2 * diff["se"])
