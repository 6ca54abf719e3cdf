"""Summaries over seeds, as every experiment reports them: mean ± std."""

import numpy as np


def mean_std(values) -> dict:
  """{'mean', 'std', 'values'} of per-seed figures (population std: the seeds are all there is)."""
  values = np.asarray(values, dtype=float)
  return {"mean": float(values.mean()), "std": float(values.std()), "values": values.tolist()}


def percent(stat: dict, unit: str = "%") -> str:
  """A mean_std of fractions as '87.2 ± 0.1%'."""
  return f"{100 * stat['mean']:.1f} ± {100 * stat['std']:.1f}{unit}"
