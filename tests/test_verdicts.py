"""Verdicts by stated tests: the p-values and intervals are scipy's, the verdicts follow them."""

import math

import numpy as np
import pytest
from scipy import stats

from dl_jax.lab.verdicts import (NOT_SUPPORTED, PAIRED, REFUTED, SUPPORTED, WELCH, Proportion,
                                 compare)

A = [0.93, 0.94, 0.92, 0.95, 0.93]
B = [0.90, 0.93, 0.90, 0.91, 0.92]


def test_paired_test_is_the_one_sample_t_test_of_the_differences():
  c = compare(A, B, paired=True)
  diff = np.subtract(A, B)
  assert c.test == PAIRED and c.n == (5, 5)
  assert c.p == pytest.approx(stats.ttest_rel(A, B, alternative="greater").pvalue)
  half = stats.t.ppf(0.975, 4) * diff.std(ddof=1) / math.sqrt(5)
  assert c.ci == pytest.approx((diff.mean() - half, diff.mean() + half))
  assert c.verdict == SUPPORTED


def test_welch_test_and_its_interval_with_a_margin():
  a, b = [0.80, 0.82, 0.79, 0.85], [0.40, 0.45, 0.41]
  c = compare(a, b, paired=False, margin=0.3)
  assert c.test == WELCH and c.n == (4, 3)
  expected = stats.ttest_ind(np.subtract(a, 0.3), b, equal_var=False, alternative="greater")
  assert c.p == pytest.approx(expected.pvalue)
  assert c.ci[0] < np.mean(a) - np.mean(b) < c.ci[1]
  assert c.verdict == SUPPORTED
  assert compare(a, b, paired=False, margin=0.45).verdict == REFUTED  # significantly below 45


def test_the_opposite_effect_is_a_refutation_and_noise_is_neither():
  refuted = compare(B, A, paired=True)
  assert refuted.verdict == REFUTED and refuted.p_opposite < 0.05 < refuted.p
  assert f"p = {refuted.p_opposite:.2g} for the opposite effect" in refuted.describe()
  noisy = compare([0.9, 0.5, 0.95, 0.45], [0.7, 0.7, 0.7, 0.7], paired=True)
  assert noisy.verdict == NOT_SUPPORTED and 0.05 < noisy.p < 0.95


def test_pairing_matters_when_seeds_share_their_noise():
  # each seed shifts both arms alike: the paired test sees a steady +1 point, Welch sees noise
  base = np.array([0.70, 0.80, 0.75, 0.85, 0.78])
  a, b = base + np.array([0.011, 0.009, 0.010, 0.012, 0.008]), base
  assert compare(a, b, paired=True).verdict == SUPPORTED
  assert compare(a, b, paired=False).verdict == NOT_SUPPORTED


def test_one_seed_cannot_be_tested_and_says_so():
  c = compare([0.9], [0.1], paired=True)
  assert math.isnan(c.p) and c.verdict == NOT_SUPPORTED
  assert "fewer than 2 seeds" in c.describe()
  with pytest.raises(ValueError, match="one figure per seed"):
    compare([0.9, 0.8], [0.1], paired=True)


def test_identical_differences_have_no_variance_and_follow_their_sign():
  assert compare([0.8, 0.9], [0.0, 0.1], paired=True).verdict == SUPPORTED
  assert compare([0.1, 0.1], [0.1, 0.1], paired=False).verdict == NOT_SUPPORTED
  assert compare([0.0, 0.0], [0.1, 0.1], paired=False).verdict == REFUTED


def test_proportion_is_an_exact_binomial_test_with_a_clopper_pearson_interval():
  assert Proportion(1990, 2000, 0.95).verdict == SUPPORTED
  assert Proportion(1895, 2000, 0.95).verdict == NOT_SUPPORTED
  assert Proportion(1850, 2000, 0.95).verdict == REFUTED
  low, high = Proportion(1990, 2000, 0.95).ci
  assert low < 0.995 < high and (low, high) == pytest.approx(
      tuple(stats.binomtest(1990, 2000).proportion_ci(0.95, method="exact")))
  assert "1990 of 2000" in Proportion(1990, 2000, 0.95).describe()
