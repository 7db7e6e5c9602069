//! The judge's statistics: the two-sided Mann-Whitney U test (exact or normal approximation,
//! chosen as `scipy.stats.mannwhitneyu(method="auto")` chooses), the Hodges-Lehmann shift and
//! its distribution-free confidence interval. Reference values: `scripts/judge_reference.py`.
//!
//! Every function takes finite samples (the caller drops NaN and infinities) and never panics.

/// How the p-value was computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The exact null distribution of U (no ties, the smaller sample has at most 8 values).
    Exact,
    /// The normal approximation with tie and continuity correction.
    Asymptotic,
}

/// The outcome of a two-sided Mann-Whitney U test of `x` against `y`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannWhitney {
    /// U of the first sample: the number of pairs `(x_i, y_j)` with `x_i > y_j`, ties counting ½
    /// (what scipy returns as the statistic).
    pub u: f64,
    /// Two-sided p-value.
    pub p: f64,
    pub method: Method,
}

/// scipy's rule (`_mwu_choose_method`, scipy 1.7 and later): exact when one sample has at most
/// this many values and there are no ties; the normal approximation otherwise.
pub const EXACT_MAX: usize = 8;

/// The two-sided Mann-Whitney U test; `None` when a sample is empty.
pub fn mann_whitney(x: &[f64], y: &[f64]) -> Option<MannWhitney> {
    let (n1, n2) = (x.len(), y.len());
    if n1 == 0 || n2 == 0 {
        return None;
    }
    let (ranks, tie_term) = ranks(x.iter().chain(y).copied().collect());
    let r1: f64 = ranks[..n1].iter().sum();
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let u1 = r1 - n1f * (n1f + 1.0) / 2.0;
    let u2 = n1f * n2f - u1;
    let u = u1.max(u2);
    let exact = (n1 <= EXACT_MAX || n2 <= EXACT_MAX) && tie_term == 0.0;
    if exact {
        // Without ties U is a whole number; the counts fit in u128 for any sample the
        // judge collects with the smaller side at most 8 (else: the approximation).
        if let Some(sf) = exact_sf(u.round() as usize, n1.min(n2), n1.max(n2)) {
            return Some(MannWhitney {
                u: u1,
                p: (2.0 * sf).clamp(0.0, 1.0),
                method: Method::Exact,
            });
        }
    }
    let n = n1f + n2f;
    let s = (n1f * n2f / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)))).sqrt();
    let p = if s > 0.0 && s.is_finite() {
        let z = (u - n1f * n2f / 2.0 - 0.5) / s;
        (2.0 * normal_sf(z)).clamp(0.0, 1.0)
    } else {
        // Every value equal: no evidence of any difference.
        1.0
    };
    Some(MannWhitney {
        u: u1,
        p,
        method: Method::Asymptotic,
    })
}

/// Average ranks (1-based) of `values` in their order, and the tie term Σ(t³ − t).
fn ranks(values: Vec<f64>) -> (Vec<f64>, f64) {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let mut ranks = vec![0.0; values.len()];
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && values[order[j]] == values[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) share the average of ranks i+1..=j.
        let avg = (i + 1 + j) as f64 / 2.0;
        for k in &order[i..j] {
            ranks[*k] = avg;
        }
        let t = (j - i) as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    (ranks, tie_term)
}

/// P(U ≥ k) under the null hypothesis for samples of sizes `m` ≤ `n` without ties, from the
/// counts of U's values: the coefficients of the Gaussian binomial `[m+n choose m]_q`, built as
/// ∏ᵢ (1 − q^(n+i)) / (1 − q^i). `None` when the counts would not fit in 128 bits.
fn exact_sf(k: usize, m: usize, n: usize) -> Option<f64> {
    let deg = m.checked_mul(n)?;
    if deg > 1 << 22 {
        return None;
    }
    let mut c = vec![0i128; deg + 1];
    c[0] = 1;
    for i in 1..=m {
        // Multiply by (1 − q^(n+i)), high to low so each term reads the old coefficient.
        let shift = n + i;
        for j in (shift..=deg).rev() {
            c[j] = c[j].checked_sub(c[j - shift])?;
        }
        // Divide by (1 − q^i): exact (the quotient is `[n+i choose i]_q`), a running sum.
        for j in i..=deg {
            c[j] = c[j].checked_add(c[j - i])?;
        }
    }
    let mut total: u128 = 0;
    let mut upper: u128 = 0;
    for (u, count) in c.iter().enumerate() {
        let count = u128::try_from(*count).ok()?;
        total = total.checked_add(count)?;
        if u >= k {
            upper = upper.checked_add(count)?;
        }
    }
    if total == 0 {
        return None;
    }
    Some(upper as f64 / total as f64)
}

/// The Hodges-Lehmann estimate of the shift of `x` against `y` (the median of every pairwise
/// difference `x_i − y_j`) and its distribution-free confidence interval at level 1 − `alpha`:
/// the order statistics `D(k)` and `D(N+1−k)` of the N = n₁n₂ differences, with
/// k = ⌊N/2 − z₁₋α/₂ · √(n₁n₂(n₁+n₂+1)/12)⌋ (at least 1; rounding down keeps the coverage at
/// or above the level asked).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shift {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

pub fn hodges_lehmann(x: &[f64], y: &[f64], alpha: f64) -> Option<Shift> {
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let mut xs = x.to_vec();
    let mut ys = y.to_vec();
    xs.sort_by(f64::total_cmp);
    ys.sort_by(f64::total_cmp);
    let d = Differences { x: &xs, y: &ys };
    let n = (xs.len() as u128) * (ys.len() as u128);
    let estimate = if n % 2 == 1 {
        d.kth(n.div_ceil(2))
    } else {
        (d.kth(n / 2) + d.kth(n / 2 + 1)) / 2.0
    };
    let (n1, n2) = (xs.len() as f64, ys.len() as f64);
    let z = normal_quantile(1.0 - alpha / 2.0);
    let sigma = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    let k = ((n as f64) / 2.0 - z * sigma).floor();
    let k = if k.is_finite() && k >= 1.0 {
        (k as u128).min(n.div_ceil(2))
    } else {
        1
    };
    Some(Shift {
        estimate: estimate + 0.0,
        low: d.kth(k) + 0.0,
        high: d.kth(n + 1 - k) + 0.0,
    })
}

/// The pairwise differences `x_i − y_j` of two sorted samples, never materialised: the k-th
/// smallest is found by bisection over the ordered bit patterns of f64, counting the
/// differences at or below a value in O(n₁ + n₂). Exact, and linear in memory.
struct Differences<'a> {
    x: &'a [f64],
    y: &'a [f64],
}

impl Differences<'_> {
    /// How many differences are ≤ `t`. Rounded subtraction is monotone in each argument, so
    /// for each x_i the qualifying y_j are a suffix, and its start only moves right.
    fn count_at_most(&self, t: f64) -> u128 {
        let mut j = 0;
        let mut count: u128 = 0;
        for xi in self.x {
            while j < self.y.len() && xi - self.y[j] > t {
                j += 1;
            }
            count += (self.y.len() - j) as u128;
        }
        count
    }

    /// The k-th smallest difference, 1-based (k is clamped to 1..=N).
    fn kth(&self, k: u128) -> f64 {
        let (Some(x0), Some(xn), Some(y0), Some(yn)) =
            (self.x.first(), self.x.last(), self.y.first(), self.y.last())
        else {
            return f64::NAN;
        };
        let mut lo = ordered(x0 - yn);
        let mut hi = ordered(xn - y0);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.count_at_most(unordered(mid)) >= k {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        unordered(lo)
    }
}

/// f64 → u64 preserving order (negative numbers flipped below the positive ones).
fn ordered(v: f64) -> u64 {
    let b = v.to_bits();
    if b >> 63 == 1 {
        !b
    } else {
        b | 1 << 63
    }
}

fn unordered(k: u64) -> f64 {
    if k >> 63 == 1 {
        f64::from_bits(k & !(1 << 63))
    } else {
        f64::from_bits(!k)
    }
}

/// The median; `None` for an empty sample.
pub fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    })
}

/// P(Z > z) for a standard normal Z.
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function to about 1e-15 relative: the positive-term series of erf
/// below 2.5, the continued fraction of erfc above (Lentz's method).
pub fn erfc(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x < 0.0 {
        return 2.0 - erfc(-x);
    }
    if x == f64::INFINITY {
        return 0.0;
    }
    let two_over_sqrt_pi = 2.0 / std::f64::consts::PI.sqrt();
    if x < 2.5 {
        // erf x = 2/√π · e^(−x²) · Σ 2ⁿ x^(2n+1) / (1·3·…·(2n+1)); every term positive.
        let x2 = x * x;
        let mut term = x;
        let mut sum = x;
        let mut n = 0.0;
        while term > sum * 1e-17 && n < 200.0 {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        return 1.0 - two_over_sqrt_pi * (-x2).exp() * sum;
    }
    // erfc x = e^(−x²)/√π · 1/(x + (1/2)/(x + 1/(x + (3/2)/(x + …)))).
    let tiny = 1e-300;
    let mut f = x;
    let mut c = x;
    let mut d = 0.0;
    for i in 1..500 {
        let a = i as f64 / 2.0;
        d = x + a * d;
        d = if d.abs() < tiny { tiny } else { d };
        c = x + a / c;
        c = if c.abs() < tiny { tiny } else { c };
        d = 1.0 / d;
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < 1e-16 {
            break;
        }
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / f
}

/// The standard normal quantile: Acklam's rational approximation polished by two Newton steps
/// on `normal_sf` (full double precision in the range the judge uses).
pub fn normal_quantile(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let low = 0.02425;
    let mut x = if p < low {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - low {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    for _ in 0..2 {
        // Φ(x) − p, with Φ(x) = 1 − sf(x); the density's reciprocal is the Newton step.
        let err = (1.0 - normal_sf(x)) - p;
        let density = (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        if density > 0.0 {
            x -= err / density;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    //! Reference values printed by `python3 scripts/judge_reference.py` (scipy 1.17.1,
    //! numpy 2.4.6): 1e-9 for exact p-values and order statistics, 1e-6 for approximations.
    use super::*;

    const SHIFT_C: [f64; 12] = [
        13.894, 12.993, 12.187, 12.346, 12.867, 11.919, 13.511, 13.936, 11.514, 13.969, 12.389,
        12.747,
    ];
    const SHIFT_B: [f64; 12] = [
        9.12, 9.726, 10.463, 9.317, 9.084, 9.94, 7.672, 11.367, 10.862, 10.658, 10.146, 10.916,
    ];
    const EQUAL: [f64; 10] = [
        0.04, 0.05, 0.03, 0.06, 0.045, 0.052, 0.038, 0.041, 0.047, 0.05,
    ];
    const TIES_C: [f64; 15] = [1., 2., 2., 3., 3., 3., 3., 2., 3., 3., 2., 3., 1., 3., 3.];
    const TIES_B: [f64; 16] = [
        1., 1., 2., 1., 2., 2., 1., 3., 1., 2., 1., 2., 2., 1., 1., 2.,
    ];
    const SMALL_C: [f64; 7] = [1.2, 1.35, 1.5, 1.42, 1.07, 1.61, 1.39];
    const SMALL_B: [f64; 5] = [1.091, 1.078, 1.342, 1.074, 1.089];
    const UNBALANCED_C: [f64; 3] = [10.5, 11.2, 9.9];
    const N30_C: [f64; 30] = [
        0.061, 0.042, 0.052, 0.044, 0.04, 0.071, 0.067, 0.048, 0.05, 0.042, 0.058, 0.063, 0.065,
        0.04, 0.042, 0.028, 0.045, 0.046, 0.031, 0.03, 0.056, 0.041, 0.051, 0.045, 0.038, 0.047,
        0.051, 0.046, 0.04, 0.045,
    ];
    const N30_B: [f64; 30] = [
        0.036, 0.033, 0.033, 0.039, 0.025, 0.049, 0.023, 0.038, 0.041, 0.027, 0.034, 0.032, 0.027,
        0.028, 0.059, 0.054, 0.036, 0.044, 0.045, 0.047, 0.049, 0.044, 0.027, 0.047, 0.017, 0.045,
        0.035, 0.033, 0.051, 0.029,
    ];

    struct Reference {
        method: Method,
        u: f64,
        p: f64,
        hl: f64,
        low: f64,
        high: f64,
    }

    fn close(what: &str, got: f64, want: f64, tol: f64) {
        assert!(
            (got - want).abs() <= tol,
            "{what}: got {got:e}, scipy says {want:e} (tolerance {tol:e})"
        );
    }

    fn check(name: &str, c: &[f64], b: &[f64], r: Reference) {
        let mw = mann_whitney(c, b).unwrap();
        assert_eq!(mw.method, r.method, "{name}");
        close(&format!("{name} u"), mw.u, r.u, 1e-9);
        let tol = match r.method {
            Method::Exact => 1e-9,
            Method::Asymptotic => 1e-6,
        };
        close(&format!("{name} p"), mw.p, r.p, tol);
        let s = hodges_lehmann(c, b, 0.05).unwrap();
        close(&format!("{name} hl"), s.estimate, r.hl, 1e-9);
        close(&format!("{name} low"), s.low, r.low, 1e-9);
        close(&format!("{name} high"), s.high, r.high, 1e-9);
    }

    #[test]
    fn a_clear_shift_matches_scipy() {
        check(
            "clear_shift",
            &SHIFT_C,
            &SHIFT_B,
            Reference {
                method: Method::Asymptotic,
                u: 144.0,
                p: 3.6584553538971e-05,
                hl: 2.8614999999999995,
                low: 2.0409999999999986,
                high: 3.7470000000000017,
            },
        );
        close("median", median(&SHIFT_B).unwrap(), 10.043, 1e-12);
    }

    #[test]
    fn equal_samples_match_scipy() {
        check(
            "equal",
            &EQUAL,
            &EQUAL,
            Reference {
                method: Method::Asymptotic,
                u: 50.0,
                p: 1.0,
                hl: 0.0,
                low: -0.009000000000000001,
                high: 0.009000000000000001,
            },
        );
    }

    #[test]
    fn heavy_ties_match_scipy() {
        check(
            "heavy_ties",
            &TIES_C,
            &TIES_B,
            Reference {
                method: Method::Asymptotic,
                u: 193.5,
                p: 0.002211652624547447,
                hl: 1.0,
                low: 0.0,
                high: 2.0,
            },
        );
    }

    #[test]
    fn small_samples_use_the_exact_distribution_as_scipy() {
        check(
            "small_exact",
            &SMALL_C,
            &SMALL_B,
            Reference {
                method: Method::Exact,
                u: 29.0,
                p: 0.07323232323232323,
                hl: 0.272,
                low: -0.008000000000000007,
                high: 0.42599999999999993,
            },
        );
        check(
            "exact_unbalanced",
            &UNBALANCED_C,
            &SHIFT_B,
            Reference {
                method: Method::Exact,
                u: 24.0,
                p: 0.44835164835164837,
                hl: 0.5510000000000002,
                low: -0.8670000000000009,
                high: 2.1159999999999997,
            },
        );
        // Complete separation of 5 and 7: p = 2 / C(12, 5).
        let mw = mann_whitney(&[10.0, 11.0, 12.0, 13.0, 14.0], &SMALL_C).unwrap();
        close("separated", mw.p, 2.0 / 792.0, 1e-12);
    }

    #[test]
    fn thirty_each_uses_the_normal_approximation_as_scipy() {
        check(
            "n30_asymptotic",
            &N30_C,
            &N30_B,
            Reference {
                method: Method::Asymptotic,
                u: 667.5,
                p: 0.0013244440996668572,
                hl: 0.009999999999999997,
                low: 0.0040000000000000036,
                high: 0.015000000000000003,
            },
        );
    }

    #[test]
    fn normal_functions_match_scipy() {
        for (z, sf) in [
            (0.1, 0.460172162722971),
            (1.0, 0.15865525393145707),
            (2.0, 0.022750131948179195),
            (2.4, 0.008197535924596131),
            (2.6, 0.004661188023718747),
            (3.0, 0.0013498980316300933),
            (5.0, 2.866515718791933e-07),
            (8.0, 6.22096057427174e-16),
        ] {
            let got = normal_sf(z);
            assert!(
                ((got - sf) / sf).abs() < 1e-12,
                "sf({z}) = {got:e}, scipy {sf:e}"
            );
        }
        close("z_0.975", normal_quantile(0.975), 1.959963984540054, 1e-12);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert!(mann_whitney(&[], &[1.0]).is_none());
        assert!(hodges_lehmann(&[1.0], &[], 0.05).is_none());
        let one = mann_whitney(&[1.0], &[1.0]).unwrap();
        assert_eq!(one.p, 1.0);
        let huge = hodges_lehmann(&[f64::MAX, -f64::MAX], &[-f64::MAX], 0.05).unwrap();
        assert!(huge.estimate.is_infinite() || huge.estimate.is_finite());
        // The exact path with a large side stays in 128 bits or falls back.
        let big: Vec<f64> = (0..5000).map(f64::from).collect();
        let mw = mann_whitney(&[-1.0, -2.0, -3.0], &big).unwrap();
        assert!(mw.p > 0.0 && mw.p <= 1.0);
    }
}
