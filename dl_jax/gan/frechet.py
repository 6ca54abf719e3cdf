"""The Fréchet distance between Gaussians fitted to two sets of features (FID-style, Heusel et
al. 2017), computed in float64 numpy with symmetric eigendecompositions only.

d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^1/2 S_b S_a^1/2)^1/2).
The matrix S_a^1/2 S_b S_a^1/2 is symmetric positive semi-definite with the same eigenvalues as
S_a S_b, so the trace of its square root is a sum of square roots of eigenvalues: no general matrix
square root, no complex round-off to discard.
"""

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [d] and covariance [d, d] (unbiased) of features [n, d], in float64."""
  features = np.asarray(features, dtype=np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"gaussian_stats needs features [n, d] with n >= 2; got shape "
                     f"{features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric PSD matrix (round-off negatives clipped to 0)."""
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(stats_a: tuple[np.ndarray, np.ndarray],
                     stats_b: tuple[np.ndarray, np.ndarray]) -> float:
  """The squared Fréchet (2-Wasserstein) distance between N(mu_a, S_a) and N(mu_b, S_b)."""
  (mu_a, cov_a), (mu_b, cov_b) = stats_a, stats_b
  if mu_a.shape != mu_b.shape or cov_a.shape != cov_b.shape:
    raise ValueError(f"the two Gaussians live in different spaces: means {mu_a.shape} and "
                     f"{mu_b.shape}; extract both feature sets with the same model")
  root_a = _psd_sqrt(cov_a)
  middle = root_a @ cov_b @ root_a
  cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
