"""Draws activations' tables and figures from its results (experiments/activations.py runs it)."""

import os

import numpy as np

from dl_jax.plots import save_figure, subplots
from dl_jax.stats import plus_minus

CHANCE = 0.1  # both datasets have 10 balanced classes
STALLED = 2 * CHANCE  # a net whose mean test accuracy stays below this did not train


def _pm(record: dict, key: str) -> str:
  return plus_minus({"mean": record["mean"][key], "std": record["std"][key]})


def _geo(record: dict, step: int, key: str = "first_last_ratio") -> str:
  value = record["geomean"][str(step)][key]
  return "n/a (0/0)" if value is None else f"{value:.2g}"


def markdown_report(results: dict) -> str:
  """The setup, the headline table for the deepest nets, then every depth x activation x init."""
  config = results["config"]
  first, last = results["probe_steps"][0], results["probe_steps"][-1]
  setup = [
      "# Vanishing gradients: depth x activation x initialization", "",
      f"Plain MLPs, width {config['width']}, {config['optimizer']} lr {config['learning_rate']} "
      f"({config['schedule']}, {config['warmup_steps']} warmup steps), batch "
      f"{config['batch_size']}, {config['steps']} steps, seeds {results['seeds']}; wall time "
      f"{results['wall_seconds']:.0f} s. Depth counts Dense layers, the output layer included. "
      f"Accuracy in %, mean ± std over seeds. g1, gL: first- and last-layer kernel-gradient norms "
      f"on {config['probe_examples']} fixed training examples; g1/gL their ratio (geometric means "
      f"over seeds), at step {first} (init) and step {last}. Chance is {100 * CHANCE:.0f}%; "
      f"'stalled' means mean test accuracy < {100 * STALLED:.0f}%.", ""]
  return "\n".join(setup + headline_table(results) + _grid_tables(results)) + "\n"


def headline_table(results: dict) -> list[str]:
  """Every figure of the deepest nets: accuracies, gap, gradient sizes at init and at the end."""
  first, last = results["probe_steps"][0], results["probe_steps"][-1]
  deepest = max(results["config"]["depths"])
  lines = [f"## Depth {deepest}", "",
           "| dataset | activation | init | train | val | test | gap (train-test) | "
           f"g1 step {first} | gL step {first} | g1/gL step {first} | g1/gL step {last} | trains |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in (r for r in results["runs"] if r["depth"] == deepest):
    val = _pm(r, "val") if "val" in r["mean"] else "-"
    lines.append(f"| {r['dataset']} | {r['activation']} | {r['init']} | {_pm(r, 'train')} | {val} "
                 f"| {_pm(r, 'test')} | {_pm(r, 'train_test')} | {_geo(r, first, 'first_layer')} | "
                 f"{_geo(r, first, 'last_layer')} | {_geo(r, first)} | {_geo(r, last)} | "
                 f"{'yes' if r['trains'] else 'stalled'} |")
  return lines


def _grid_tables(results: dict) -> list[str]:
  """Per dataset: test accuracy and g1/gL at init for every depth x activation x init."""
  config, first, lines = results["config"], results["probe_steps"][0], []
  for dataset in config["datasets"]:
    lines += ["", f"## {dataset}: test accuracy % (g1/gL at init)", "",
              "| depth | activation | " + " | ".join(config["inits"]) + " |",
              "|---|---|" + "---|" * len(config["inits"])]
    for depth in config["depths"]:
      for activation in config["activations"]:
        cells = [_find(results["runs"], dataset, depth, activation, init)
                 for init in config["inits"]]
        lines.append(f"| {depth} | {activation} | " + " | ".join(
            f"{_pm(r, 'test')} ({_geo(r, first)})" for r in cells) + " |")
  return lines


def _find(runs: list[dict], dataset: str, depth: int, activation: str, init: str) -> dict:
  return next(r for r in runs if (r["dataset"], r["depth"], r["activation"], r["init"])
              == (dataset, depth, activation, init))


def save_plots(results: dict, directory: str) -> list[str]:
  """Per dataset: gradient-norm profiles of the deepest nets, and test-accuracy heatmaps."""
  paths = []
  for dataset in results["config"]["datasets"]:
    paths.append(plot_gradient_profiles(results, dataset, directory))
    paths.append(plot_accuracy_heatmaps(results, dataset, directory))
  return paths


_FLOOR = 1e-30  # zero norms (underflow) drawn here, so a log axis still shows the line
_MARKERS = "ovs^Dx*+"  # overlapping lines stay distinguishable


def plot_gradient_profiles(results: dict, dataset: str, directory: str) -> str:
  """Kernel-gradient norm per layer (log) of the deepest nets: a panel per init, a line per
  activation; the top row at initialization, the bottom row at the end of training."""
  config, steps = results["config"], (results["probe_steps"][0], results["probe_steps"][-1])
  deepest, inits = max(config["depths"]), config["inits"]
  fig, axes = subplots(2, len(inits), figsize=(4.2 * len(inits), 7), squeeze=False,
                           sharey="row")
  for row, step in enumerate(steps):
    for col, init in enumerate(inits):
      ax = axes[row][col]
      for activation, marker in zip(config["activations"], _MARKERS):
        norms = _find(results["runs"], dataset, deepest, activation, init)["grad_norms"][str(step)]
        norms = np.maximum(np.array(norms, dtype=float), _FLOOR)  # [seed, layer]
        ax.semilogy(np.arange(1, norms.shape[1] + 1), np.exp(np.log(norms).mean(0)),
                    label=activation, marker=marker, markersize=4, alpha=0.8)
      ax.set(title=f"{init} init, step {step}", xlabel="layer (1 = input)")
      ax.grid(alpha=0.3, which="both")
    axes[row][0].set_ylabel("kernel-gradient norm")
  axes[0][-1].legend(fontsize=8)
  fig.suptitle(f"{dataset}: per-layer gradient norms, depth {deepest} (geometric mean over seeds; "
               f"0 drawn at {_FLOOR:g})")
  return save_figure(fig, os.path.join(directory, f"gradient_norms_{dataset}.png"))


def plot_accuracy_heatmaps(results: dict, dataset: str, directory: str) -> str:
  """Mean test accuracy, depth x activation, one panel per init."""
  config = results["config"]
  depths, activations, inits = config["depths"], config["activations"], config["inits"]
  fig, axes = subplots(1, len(inits), figsize=(4.2 * len(inits), 0.5 * len(depths) + 2.5),
                           squeeze=False)
  for ax, init in zip(axes[0], inits):
    grid = np.array([[_find(results["runs"], dataset, d, a, init)["mean"]["test"]
                      for a in activations] for d in depths])
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(grid):
      ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=8,
              color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(activations)), activations, rotation=45, ha="right")
    ax.set_yticks(range(len(depths)), depths)
    ax.set(title=f"{init} init", ylabel="depth (Dense layers)")
  fig.suptitle(f"{dataset}: test accuracy (%)")
  return save_figure(fig, os.path.join(directory, f"accuracy_{dataset}.png"))


def summary(results: dict) -> str:
  """What the command prints: the headline figures."""
  return "\n".join(headline_table(results))
