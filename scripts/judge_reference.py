#!/usr/bin/env python3
"""Reference values for the judge's statistics (src/health/judge/stats.rs), from scipy.

Run: python3 scripts/judge_reference.py   (needs scipy and numpy: pip install scipy)

Prints, per fixed input, what the Rust unit tests assert: scipy.stats.mannwhitneyu(candidate,
baseline, alternative="two-sided", method="auto") -> U of the candidate and the p-value (and
which method scipy's "auto" chose), the Hodges-Lehmann shift (median of every pairwise
difference candidate - baseline) and the distribution-free 95 % interval
(D(k), D(N+1-k)) with k = floor(N/2 - z_0.975 * sqrt(n1 n2 (n1+n2+1) / 12)), at least 1.
"""

import math

import numpy as np
import scipy
from scipy import stats
from scipy.stats._mannwhitneyu import _mwu_choose_method

CASES = {
    # A clear shift upward (n = 12 each, no ties: normal approximation by scipy's rule).
    "clear_shift": (
        [13.894, 12.993, 12.187, 12.346, 12.867, 11.919, 13.511, 13.936, 11.514, 13.969, 12.389, 12.747],
        [9.12, 9.726, 10.463, 9.317, 9.084, 9.94, 7.672, 11.367, 10.862, 10.658, 10.146, 10.916],
    ),
    # The same sample on both sides.
    "equal": (
        [0.04, 0.05, 0.03, 0.06, 0.045, 0.052, 0.038, 0.041, 0.047, 0.05],
        [0.04, 0.05, 0.03, 0.06, 0.045, 0.052, 0.038, 0.041, 0.047, 0.05],
    ),
    # Heavy ties: three distinct values.
    "heavy_ties": (
        [1, 2, 2, 3, 3, 3, 3, 2, 3, 3, 2, 3, 1, 3, 3],
        [1, 1, 2, 1, 2, 2, 1, 3, 1, 2, 1, 2, 2, 1, 1, 2],
    ),
    # Small samples without ties: exact distribution.
    "small_exact": (
        [1.2, 1.35, 1.5, 1.42, 1.07, 1.61, 1.39],
        [1.091, 1.078, 1.342, 1.074, 1.089],
    ),
    # One small side (3) against 12, no ties: still exact by scipy's rule.
    "exact_unbalanced": (
        [10.5, 11.2, 9.9],
        [9.12, 9.726, 10.463, 9.317, 9.084, 9.94, 7.672, 11.367, 10.862, 10.658, 10.146, 10.916],
    ),
    # n = 30 each, some ties: normal approximation with tie and continuity correction.
    "n30_asymptotic": (
        [0.061, 0.042, 0.052, 0.044, 0.04, 0.071, 0.067, 0.048, 0.05, 0.042, 0.058, 0.063, 0.065, 0.04, 0.042,
         0.028, 0.045, 0.046, 0.031, 0.03, 0.056, 0.041, 0.051, 0.045, 0.038, 0.047, 0.051, 0.046, 0.04, 0.045],
        [0.036, 0.033, 0.033, 0.039, 0.025, 0.049, 0.023, 0.038, 0.041, 0.027, 0.034, 0.032, 0.027, 0.028, 0.059,
         0.054, 0.036, 0.044, 0.045, 0.047, 0.049, 0.044, 0.027, 0.047, 0.017, 0.045, 0.035, 0.033, 0.051, 0.029],
    ),
}


def interval(c, b, alpha=0.05):
    d = np.sort(np.subtract.outer(np.asarray(c, float), np.asarray(b, float)).ravel())
    n1, n2 = len(c), len(b)
    n = n1 * n2
    z = stats.norm.ppf(1 - alpha / 2)
    k = math.floor(n / 2 - z * math.sqrt(n1 * n2 * (n1 + n2 + 1) / 12))
    k = min(max(k, 1), (n + 1) // 2)
    return d[k - 1], d[n - k]


def main():
    print(f"# scipy {scipy.__version__}, numpy {np.__version__}")
    print(f"# z_0.975 = {stats.norm.ppf(0.975)!r}")
    for name, (c, b) in CASES.items():
        res = stats.mannwhitneyu(c, b, alternative="two-sided", method="auto")
        all_values = list(c) + list(b)
        ties = len(set(all_values)) < len(all_values)
        method = _mwu_choose_method(len(c), len(b), ties)
        hl = float(np.median(np.subtract.outer(np.asarray(c, float), np.asarray(b, float))))
        lo, hi = interval(c, b)
        print(
            f"{name}: method={method} u={float(res.statistic)!r} p={float(res.pvalue)!r} "
            f"hl={hl!r} low={float(lo)!r} high={float(hi)!r} median_baseline={float(np.median(b))!r}"
        )


if __name__ == "__main__":
    main()
