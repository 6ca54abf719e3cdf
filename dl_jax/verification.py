"""How good an embedding is, from distances alone: pair verification and few-shot classification.

Both work for classes never seen in training. Verification says "same" when a pair's distance is
at most a threshold, chosen on one set of pairs (e.g. validation pairs of seen classes) and then
applied unchanged elsewhere. N-way one-shot classification gives each query the class of its
nearest support example.
"""

import numpy as np
from sklearn.metrics import roc_auc_score


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
  """The threshold t maximizing the accuracy of "same iff distance <= t" on these pairs (the
  midpoint between two consecutive sorted distances; ties go to the smaller t)."""
  distances, same = _check_pairs(distances, same)
  order = np.argsort(distances, kind="stable")
  d, s = distances[order], same[order]
  # Accuracy with the first k pairs called same: positives among them + negatives after them.
  correct = np.concatenate([[0], np.cumsum(s)]) + np.concatenate(
      [np.cumsum((~s)[::-1])[::-1], [0]])
  cuts = np.concatenate([[d[0] - 1.0], (d[:-1] + d[1:]) / 2, [d[-1] + 1.0]])
  return float(cuts[int(np.argmax(correct))])


def verification_accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
  distances, same = _check_pairs(distances, same)
  return float(np.mean((distances <= threshold) == same))


def verification_auc(distances: np.ndarray, same: np.ndarray) -> float:
  """Area under the ROC curve of -distance as a score for "same": threshold-free, 0.5 = chance."""
  distances, same = _check_pairs(distances, same)
  return float(roc_auc_score(same, -distances))


def one_shot_accuracy(query_embeddings: np.ndarray, support_embeddings: np.ndarray,
                      episodes: dict) -> np.ndarray:
  """Per-episode accuracy of nearest-support classification.

  `episodes` as from dl_jax.data.pairs.sample_episodes (positions into the embedded split); the
  queries are read from `query_embeddings`, the supports from `support_embeddings` (the same array
  for a shared encoder; branch a and branch b of an unshared one).
  """
  queries = np.asarray(query_embeddings, np.float64)[episodes["query"]]  # [E, Q, D]
  supports = np.asarray(support_embeddings, np.float64)[episodes["support"]]  # [E, W, D]
  distances = np.sum((queries[:, :, None, :] - supports[:, None, :, :]) ** 2, axis=-1)
  return np.mean(np.argmin(distances, axis=-1) == episodes["query_label"], axis=1)


def _check_pairs(distances, same):
  distances, same = np.asarray(distances, np.float64), np.asarray(same, bool)
  if distances.ndim != 1 or distances.shape != same.shape or len(distances) == 0:
    raise ValueError(f"distances {distances.shape} and same-flags {same.shape} must be equal, "
                     "non-empty 1-D arrays (one of each per pair).")
  return distances, same
