"""Summaries over seeds, as every experiment reports them: mean ± sample std."""

import numpy as np


def mean_std(values) -> dict:
  """{'mean', 'std', 'values'} of per-seed figures; std is the sample std (ddof=1), 0 for one."""
  values = np.asarray(values, dtype=float)
  std = values.std(ddof=1) if values.size > 1 else 0.0
  return {"mean": float(values.mean()), "std": float(std), "values": values.tolist()}


def plus_minus(stat: dict, scale: float = 100, digits: int = 1) -> str:
  """A {'mean', 'std'} (e.g. a mean_std) as '87.2 ± 0.1': both times `scale`, `digits` decimals."""
  return f"{scale * stat['mean']:.{digits}f} ± {scale * stat['std']:.{digits}f}"


def percent(stat: dict, unit: str = "%") -> str:
  """A mean_std of fractions as '87.2 ± 0.1%' ('87.2%' for one figure)."""
  if len(stat.get("values", ())) == 1:
    return f"{100 * stat['mean']:.1f}{unit}"
  return plus_minus(stat) + unit
