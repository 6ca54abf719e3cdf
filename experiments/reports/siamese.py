"""Draws siamese's tables and figures from its results (experiments/siamese.py runs it)."""

import os

import numpy as np

from dl_jax.plots import plot_mean_std_curves, save_figure, subplots
from dl_jax.stats import plus_minus


# ---- reports -----------------------------------------------------------------------------------

def _pm(figure: dict) -> str:
  return plus_minus(figure)


def headline_table(results: dict) -> list[str]:
  """Unseen-class figures first (the point of the experiment), then seen test and train."""
  lines = ["| model | params | one-shot 5-way, unseen 5-9 | verification, unseen | AUC, unseen | "
           "one-shot, seen test 0-4 | verification, seen test | one-shot, train | "
           "verification, train |", "|---|---|---|---|---|---|---|---|---|"]
  for name, v in results["variants"].items():
    lines.append(f"| {name} | {v['num_params']:,} | {_pm(v['test_unseen']['one_shot'])} | "
                 f"{_pm(v['test_unseen']['verification'])} | {_pm(v['test_unseen']['auc'])} | "
                 f"{_pm(v['test_seen']['one_shot'])} | {_pm(v['test_seen']['verification'])} | "
                 f"{_pm(v['train']['one_shot'])} | {_pm(v['train']['verification'])} |")
  return lines


def gap_table(results: dict) -> list[str]:
  lines = ["| model | val verification | one-shot gap train - seen test | train - unseen | "
           "verification gap train - seen test | train - unseen | threshold |",
           "|---|---|---|---|---|---|---|"]
  for name, v in results["variants"].items():
    gaps = v["gap"]
    lines.append(f"| {name} | {_pm(v['val']['verification'])} | "
                 f"{_pm(gaps['train_minus_test_seen']['one_shot'])} | "
                 f"{_pm(gaps['train_minus_test_unseen']['one_shot'])} | "
                 f"{_pm(gaps['train_minus_test_seen']['verification'])} | "
                 f"{_pm(gaps['train_minus_test_unseen']['verification'])} | "
                 f"{v['threshold']['mean']:.3g} ± {v['threshold']['std']:.2g} |")
  return lines


def markdown_report(results: dict) -> str:
  c = results["config"]
  sizes = results["eval_set_sizes"]
  setup = [
      "# Parameter sharing: siamese encoder, seen digits 0-4, unseen 5-9", "",
      f"MLP encoder {int(np.prod(results['dataset']['input_shape']))}-"
      f"{'-'.join(map(str, c['widths']))}-{c['embedding_dim']} ({c['loss']} "
      f"loss, margin {c['margin']}), {c['optimizer']} lr {c['learning_rate']} ({c['schedule']}), "
      f"{c['batch_size']} {'pairs' if c['loss'] == 'contrastive' else 'triplets'} per step, "
      f"{c['steps']} steps, seeds {c['seeds']}; wall time {results['wall_seconds']:.0f} s. "
      f"Trained on digits of classes {c['seen_classes']} only ({sizes['train']} training "
      f"digits). In %, mean ± std over seeds. Verification: {c['eval_pairs']} balanced pairs per "
      f"set, 'same' iff distance <= a threshold chosen per model on the validation pairs of seen "
      f"classes ({sizes['val']} held-out digits), applied unchanged everywhere. One-shot: "
      f"{c['episodes']} seeded {c['ways']}-way episodes, one support and {c['queries']} queries "
      f"per class, nearest support wins. Sets: train = training digits (seen), seen test = test "
      f"digits of {c['seen_classes']} ({sizes['test_seen']}), unseen = test digits of "
      f"{c['unseen_classes']} ({sizes['test_unseen']}). 'pixels' = Euclidean distance on raw "
      "pixels (nearest neighbour), deterministic, so its std is 0. Chance: 50% verification, "
      f"{100 / c['ways']:.0f}% one-shot.", ""]
  return "\n".join(setup + headline_table(results) + ["", "## Generalization gaps", ""]
                   + gap_table(results)) + "\n"


def summary(results: dict) -> str:
  """What the command prints: the headline figures."""
  return "\n".join(headline_table(results))


def save_plots(results: dict, directory: str) -> list[str]:
  return [plot_training_curves(results, directory), plot_accuracy_bars(results, directory)]


def plot_training_curves(results: dict, directory: str) -> str:
  """Training loss per variant, mean ± std over seeds."""
  curves = {name: (v["curves"]["step"], np.asarray(v["curves"]["loss"]))
            for name, v in results["variants"].items() if "curves" in v}
  return plot_mean_std_curves(curves, os.path.join(directory, "training_loss.png"),
                              ylabel=f"{results['config']['loss']} loss (training batch)",
                              title="siamese training loss, mean ± std over seeds")


def plot_accuracy_bars(results: dict, directory: str) -> str:
  """One-shot and verification accuracy per model on train, seen test and unseen test."""
  sets = ("train", "test_seen", "test_unseen")
  names = list(results["variants"])
  fig, axes = subplots(1, 2, figsize=(12, 4.5))
  for ax, metric in zip(axes, ("one_shot", "verification")):
    for i, name in enumerate(names):
      v = results["variants"][name]
      means = [100 * v[s][metric]["mean"] for s in sets]
      stds = [100 * v[s][metric]["std"] for s in sets]
      ax.bar(np.arange(len(sets)) + (i - (len(names) - 1) / 2) * 0.8 / len(names), means,
             0.8 / len(names), yerr=stds, label=name, capsize=3)
    ax.set_xticks(range(len(sets)), ["train (0-4)", "seen test (0-4)", "unseen test (5-9)"])
    ax.set(ylabel="accuracy (%)", title=metric.replace("_", "-"), ylim=(0, 100))
    ax.grid(alpha=0.3, axis="y")
  axes[0].legend(fontsize=8)
  return save_figure(fig, os.path.join(directory, "accuracy.png"))
