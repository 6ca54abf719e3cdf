"""Mode coverage of generated samples, read off a classifier's predictions."""

import numpy as np


def class_coverage(probabilities: np.ndarray, min_fraction: float = 0.05) -> dict:
  """From class probabilities [n, classes]: the fraction of samples predicted as each class, the
  mean confidence (top probability), how many classes appear at all, and whether every class
  holds at least `min_fraction` of the samples (a collapsed generator draws a few modes only)."""
  probabilities = np.asarray(probabilities)
  if probabilities.ndim != 2:
    raise ValueError(f"class_coverage needs probabilities [n, classes]; got {probabilities.shape}")
  num_classes = probabilities.shape[1]
  counts = np.bincount(probabilities.argmax(axis=1), minlength=num_classes)
  fractions = counts / len(probabilities)
  return {"fractions": fractions.tolist(), "mean_confidence": float(probabilities.max(1).mean()),
          "classes_generated": int(np.count_nonzero(counts)),
          "min_fraction": float(fractions.min()),
          "all_classes_above_min": bool(fractions.min() >= min_fraction)}
