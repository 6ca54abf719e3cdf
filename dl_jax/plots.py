"""Figures that experiments save into `workdir/plots/` (matplotlib, no screen needed)."""

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402


def plot_mean_std_curves(curves: Mapping[str, tuple[Sequence[int], np.ndarray]], path: str,
                         ylabel: str, title: str, xlabel: str = "step") -> str:
  """One line per label: the mean over seeds with a ±1 std band.

  curves[label] = (steps, values[evaluation, seed]).
  """
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for label, (steps, values) in curves.items():
    values = np.asarray(values, dtype=float).reshape(len(steps), -1)
    mean, std = values.mean(axis=1), values.std(axis=1)
    ax.plot(steps, mean, label=label)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return save_figure(fig, path)


def save_figure(fig, path: str) -> str:
  """Saves and closes `fig`, creating the folder; returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
