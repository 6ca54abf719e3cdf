"""What fit reports beside its state: every split's figures and the gaps between them, the
curves of metrics.jsonl, and a fingerprint of the parameters."""

import numpy as np

from dl_jax.data import Dataset
from dl_jax.train.state import TrainState, tree_digest


def final_figures(evaluate_split, state: TrainState, dataset: Dataset) -> dict:
  """Loss and accuracy on every split, and the generalization gaps between them.
  `evaluate_split(state, split)` gives a split's mean metrics."""
  figures = {name: evaluate_split(state, split) for name, split in dataset.splits().items()}
  def gap(split, other, metric):  # a float, or a per-seed list
    return np.subtract(figures[split][metric], figures[other][metric]).tolist()
  figures["gap"] = {"train_test_accuracy": gap("train", "test", "accuracy"),
                    "test_train_loss": gap("test", "train", "loss")}
  if "val" in figures:
    figures["gap"]["train_val_accuracy"] = gap("train", "val", "accuracy")
  return figures


def evaluation_curves(lines: list[dict]) -> dict:
  """The evaluations during training from metrics.jsonl's lines: curves["step"],
  curves["train_seconds"] (training time up to the evaluation in the process that ran it) and
  curves[split][metric], one entry per evaluation (a per-seed list each for stacked seeds)."""
  curves = {"step": [], "train_seconds": []}
  for line in (line for line in lines if "train_seconds" in line):
    curves["step"].append(line["step"])
    curves["train_seconds"].append(line["train_seconds"])
    for key, value in line.items():
      if "/" in key:
        split, metric = key.split("/", 1)
        curves.setdefault(split, {}).setdefault(metric, []).append(value)
  return curves


def training_curves(lines: list[dict]) -> dict:
  """The logged training metrics from metrics.jsonl's lines: curves["step"] and curves[metric],
  each point the mean over the steps since the previous one (per-seed lists for stacked seeds)."""
  curves = {"step": []}
  for line in (line for line in lines if any(key.startswith("train/") for key in line)):
    curves["step"].append(line["step"])
    for key, value in line.items():
      if key.startswith("train/"):
        curves.setdefault(key[len("train/"):], []).append(value)
  return curves


def params_fingerprint(params) -> str:
  """A short hash of every parameter's bytes: equal fingerprints mean bit-identical parameters."""
  return tree_digest(params)[:16]
