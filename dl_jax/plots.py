"""Figures that experiments save into `workdir/plots/` (matplotlib, no screen needed).

Figures are made with matplotlib's object API (`matplotlib.figure.Figure`), not pyplot: no
backend is chosen, no global state changes, and matplotlib is imported only when a plot is drawn.
"""

import os
from typing import Mapping, Sequence

import numpy as np


def subplots(nrows: int = 1, ncols: int = 1, figsize=None, **kwargs):
  """(figure, axes) like `pyplot.subplots`, for a figure that is only ever saved to a file."""
  from matplotlib.figure import Figure

  fig = Figure(figsize=figsize)
  return fig, fig.subplots(nrows, ncols, **kwargs)


def colour_cycle() -> list[str]:
  """matplotlib's default line colours, in order."""
  import matplotlib

  return matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]


def plot_mean_std_curves(curves: Mapping[str, tuple[Sequence[int], np.ndarray]], path: str,
                         ylabel: str, title: str, xlabel: str = "step") -> str:
  """One line per label: the mean over seeds with a ±1 std band.

  curves[label] = (steps, values[evaluation, seed]).
  """
  fig, ax = subplots(figsize=(7, 4.5))
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
  """Saves `fig` as a file, creating the folder; returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  return path
