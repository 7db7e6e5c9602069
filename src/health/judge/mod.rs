//! The statistical judge (`deployment.rollback.judge`): each metric of the candidate release
//! against a baseline release over a window, Mann-Whitney U and the Hodges-Lehmann shift per
//! metric, a weighted score, and a result (Kayenta's canary judge, in bagboy's terms).

mod config;
mod prometheus;
pub mod stats;

use std::time::Duration;

use serde::Serialize;

pub use config::parse;
pub use prometheus::{fetch, Window};

/// A side needs at least this many finite samples to be judged; fewer is "no data".
pub const MIN_SAMPLES: usize = 3;

/// `deployment.rollback.judge`.
#[derive(Clone, Debug, PartialEq)]
pub struct Judge {
    /// Prometheus base URL (`/api/v1/query_range` is joined to it).
    pub prometheus: String,
    pub baseline: Baseline,
    pub window: Duration,
    /// Score at or above: pass (0..=100).
    pub pass: f64,
    /// Score at or above (and below `pass`): marginal, hold (0..=`pass`).
    pub marginal: f64,
    /// Significance level of each metric's test (default 0.05; the interval is at 1 − alpha).
    pub alpha: f64,
    pub metrics: Vec<Metric>,
}

/// What the candidate is compared against.
#[derive(Clone, Debug, PartialEq)]
pub enum Baseline {
    /// The newest earlier history entry that is not failed, rollback_failed or rolled back from.
    Previous,
    /// A version, as recorded.
    Version(String),
}

/// Which change of a metric is bad.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    pub name: String,
    /// PromQL with `$VERSION` standing for the version judged.
    pub query: String,
    pub direction: Direction,
    /// Relative effect allowed (0.25: a 25 % shift of the baseline's median).
    pub tolerance: f64,
    /// A critical metric failing fails the whole judgement; one without data makes it
    /// inconclusive.
    pub critical: bool,
    pub weight: f64,
}

impl Metric {
    /// The query for one version: `$VERSION` replaced by the version string as recorded.
    pub fn query_for(&self, version: &str) -> String {
        self.query.replace("$VERSION", version)
    }
}

/// One metric's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricVerdict {
    Pass,
    /// Significantly higher than the baseline by more than the tolerance.
    High,
    /// Significantly lower than the baseline by more than the tolerance.
    Low,
    /// A side had fewer than `MIN_SAMPLES` values, or could not be read.
    NoData,
}

/// The whole judgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// Hold: exit 6, nothing changed.
    Marginal,
    Fail,
    /// Too little data to decide (a critical metric without data, or no metric with data).
    Inconclusive,
}

/// One side's sample and the window it was read over.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub version: String,
    pub query: String,
    pub window: Window,
    #[serde(skip)]
    pub values: Vec<f64>,
    /// Why there are no values (Prometheus unreachable, bad answer, no series).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Sample counts per side.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Counts {
    pub candidate: usize,
    pub baseline: usize,
}

/// One metric judged.
#[derive(Clone, Debug, Serialize)]
pub struct MetricResult {
    pub name: String,
    pub direction: Direction,
    pub tolerance: f64,
    pub critical: bool,
    pub weight: f64,
    pub samples: Counts,
    /// Mann-Whitney U of the candidate (pairs where the candidate is higher, ties ½).
    pub u: Option<f64>,
    /// Two-sided p-value.
    pub p: Option<f64>,
    pub method: Option<stats::Method>,
    /// Relative effect: Hodges-Lehmann shift / |median(baseline)|. `null` with `shift` set
    /// when the baseline's median is 0 and the shift is not (an unbounded relative change).
    pub effect: Option<f64>,
    /// The effect's confidence interval at 1 − alpha, relative like `effect`.
    pub interval: Option<[Option<f64>; 2]>,
    /// The Hodges-Lehmann shift in the metric's own unit, and its interval.
    pub shift: Option<f64>,
    pub shift_interval: Option<[f64; 2]>,
    pub baseline_median: Option<f64>,
    pub verdict: MetricVerdict,
    pub reason: String,
    pub candidate: Side,
    pub baseline: Side,
}

/// The judgement of a candidate against a baseline.
#[derive(Clone, Debug, Serialize)]
pub struct JudgeReport {
    pub candidate: String,
    pub baseline: String,
    pub prometheus: String,
    pub alpha: f64,
    pub pass: f64,
    pub marginal: f64,
    pub metrics: Vec<MetricResult>,
    /// 100 · Σ weights passing / Σ weights with data; `null` when no metric has data.
    pub score: Option<f64>,
    pub result: Outcome,
    pub reasons: Vec<String>,
}

/// A relative change, ±∞ when the baseline is 0 and the change is not, mapped to `None`
/// for JSON (which has no infinity).
fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn relative(shift: f64, scale: f64) -> f64 {
    if shift == 0.0 {
        0.0
    } else if scale == 0.0 {
        shift.signum() * f64::INFINITY
    } else {
        shift / scale
    }
}

/// Judge one metric from its two sides.
pub fn judge_metric(metric: &Metric, alpha: f64, candidate: Side, baseline: Side) -> MetricResult {
    let mut r = MetricResult {
        name: metric.name.clone(),
        direction: metric.direction,
        tolerance: metric.tolerance,
        critical: metric.critical,
        weight: metric.weight,
        samples: Counts {
            candidate: candidate.values.len(),
            baseline: baseline.values.len(),
        },
        u: None,
        p: None,
        method: None,
        effect: None,
        interval: None,
        shift: None,
        shift_interval: None,
        baseline_median: None,
        verdict: MetricVerdict::NoData,
        reason: String::new(),
        candidate,
        baseline,
    };
    let short = [("candidate", &r.candidate), ("baseline", &r.baseline)]
        .into_iter()
        .find(|(_, s)| s.values.len() < MIN_SAMPLES);
    if let Some((which, side)) = short {
        r.reason = match &side.error {
            Some(e) => format!("{which} {}: {e}", side.version),
            None => format!(
                "{which} {}: {} sample(s), at least {MIN_SAMPLES} needed",
                side.version,
                side.values.len()
            ),
        };
        return r;
    }
    let (c, b) = (&r.candidate.values, &r.baseline.values);
    let (Some(mw), Some(shift), Some(med)) = (
        stats::mann_whitney(c, b),
        stats::hodges_lehmann(c, b, alpha),
        stats::median(b),
    ) else {
        r.reason = "the samples could not be compared".into();
        return r;
    };
    let scale = med.abs();
    let effect = relative(shift.estimate, scale);
    r.u = Some(mw.u);
    r.p = Some(mw.p);
    r.method = Some(mw.method);
    r.effect = finite(effect);
    r.interval = Some([
        finite(relative(shift.low, scale)),
        finite(relative(shift.high, scale)),
    ]);
    r.shift = finite(shift.estimate);
    r.shift_interval = finite(shift.low)
        .zip(finite(shift.high))
        .map(|(l, h)| [l, h]);
    r.baseline_median = Some(med);
    let significant = mw.p < alpha;
    let high = significant
        && effect > metric.tolerance
        && matches!(metric.direction, Direction::Increase | Direction::Either);
    let low = significant
        && effect < -metric.tolerance
        && matches!(metric.direction, Direction::Decrease | Direction::Either);
    let pct = |v: f64| {
        if v.is_finite() {
            format!("{:+.1} %", v * 100.0)
        } else {
            format!("{v:+} (baseline median 0)")
        }
    };
    (r.verdict, r.reason) = if high || low {
        (
            if high {
                MetricVerdict::High
            } else {
                MetricVerdict::Low
            },
            format!(
                "{} by {} (tolerance {:.1} %), p = {:.3e} < {alpha}",
                if high { "higher" } else { "lower" },
                pct(effect),
                metric.tolerance * 100.0,
                mw.p
            ),
        )
    } else if !significant {
        (
            MetricVerdict::Pass,
            format!("no significant difference (p = {:.3} ≥ {alpha})", mw.p),
        )
    } else {
        (
            MetricVerdict::Pass,
            format!(
                "{} within the tolerance of {:.1} % in the bad direction",
                pct(effect),
                metric.tolerance * 100.0
            ),
        )
    };
    r
}

/// Score and overall result (Kayenta's rules): a critical metric failing fails; a critical
/// metric without data, or no metric with data, is inconclusive; otherwise the score against
/// `pass` and `marginal`.
pub fn score(judge: &Judge, metrics: &[MetricResult]) -> (Option<f64>, Outcome, Vec<String>) {
    let with_data: Vec<&MetricResult> = metrics
        .iter()
        .filter(|m| m.verdict != MetricVerdict::NoData)
        .collect();
    let total: f64 = with_data.iter().map(|m| m.weight).sum();
    let passing: f64 = with_data
        .iter()
        .filter(|m| m.verdict == MetricVerdict::Pass)
        .map(|m| m.weight)
        .sum();
    // `+ 0.0`: an empty sum is −0.0, which would print as "-0.0".
    let score = (total > 0.0).then(|| 100.0 * passing / total + 0.0);
    let mut reasons: Vec<String> = metrics
        .iter()
        .filter(|m| m.verdict != MetricVerdict::Pass)
        .map(|m| {
            format!(
                "{}{}: {}",
                m.name,
                if m.critical { " (critical)" } else { "" },
                m.reason
            )
        })
        .collect();
    let critical_failing = metrics
        .iter()
        .any(|m| m.critical && matches!(m.verdict, MetricVerdict::High | MetricVerdict::Low));
    let critical_missing = metrics
        .iter()
        .any(|m| m.critical && m.verdict == MetricVerdict::NoData);
    let outcome = match score {
        _ if critical_failing => Outcome::Fail,
        _ if critical_missing => Outcome::Inconclusive,
        None => Outcome::Inconclusive,
        Some(s) if s >= judge.pass => Outcome::Pass,
        Some(s) if s >= judge.marginal => Outcome::Marginal,
        Some(_) => Outcome::Fail,
    };
    if let Some(s) = score {
        reasons.push(format!(
            "score {s:.1} (pass at {}, marginal at {})",
            judge.pass, judge.marginal
        ));
    }
    (score, outcome, reasons)
}

/// Query every metric for both versions (concurrently) and judge them.
pub async fn run(judge: &Judge, candidate: &str, baseline: &str) -> JudgeReport {
    let window = Window::ending_now(judge.window);
    let sides = futures_util::future::join_all(judge.metrics.iter().map(|m| async move {
        let (c, b) = futures_util::future::join(
            fetch(
                &judge.prometheus,
                &m.query_for(candidate),
                candidate,
                window,
            ),
            fetch(&judge.prometheus, &m.query_for(baseline), baseline, window),
        )
        .await;
        judge_metric(m, judge.alpha, c, b)
    }))
    .await;
    let (score, result, reasons) = score(judge, &sides);
    JudgeReport {
        candidate: candidate.to_string(),
        baseline: baseline.to_string(),
        prometheus: prometheus::shown(&judge.prometheus),
        alpha: judge.alpha,
        pass: judge.pass,
        marginal: judge.marginal,
        metrics: sides,
        score,
        result,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(values: &[f64]) -> Side {
        Side {
            version: "v1".into(),
            query: "q".into(),
            window: Window::ending_now(Duration::from_secs(60)),
            values: values.to_vec(),
            error: None,
        }
    }

    fn metric(direction: Direction, critical: bool, weight: f64) -> Metric {
        Metric {
            name: "m".into(),
            query: "x{version=\"$VERSION\"}".into(),
            direction,
            tolerance: 0.25,
            critical,
            weight,
        }
    }

    fn judge() -> Judge {
        Judge {
            prometheus: "http://127.0.0.1:9090".into(),
            baseline: Baseline::Previous,
            window: Duration::from_secs(600),
            pass: 95.0,
            marginal: 75.0,
            alpha: 0.05,
            metrics: Vec::new(),
        }
    }

    const BASE: [f64; 10] = [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01, 0.99, 1.03];

    #[test]
    fn verdicts_follow_direction_significance_and_tolerance() {
        let doubled: Vec<f64> = BASE.iter().map(|v| v * 2.0).collect();
        let r = judge_metric(
            &metric(Direction::Increase, false, 1.0),
            0.05,
            side(&doubled),
            side(&BASE),
        );
        assert_eq!(r.verdict, MetricVerdict::High, "{}", r.reason);
        assert!(r.effect.unwrap() > 0.9);
        // The same change is fine when only a decrease is bad.
        let r = judge_metric(
            &metric(Direction::Decrease, false, 1.0),
            0.05,
            side(&doubled),
            side(&BASE),
        );
        assert_eq!(r.verdict, MetricVerdict::Pass);
        let halved: Vec<f64> = BASE.iter().map(|v| v / 2.0).collect();
        let r = judge_metric(
            &metric(Direction::Either, false, 1.0),
            0.05,
            side(&halved),
            side(&BASE),
        );
        assert_eq!(r.verdict, MetricVerdict::Low);
        // Significant but within tolerance: +10 %.
        let up10: Vec<f64> = BASE.iter().map(|v| v * 1.1).collect();
        let r = judge_metric(
            &metric(Direction::Increase, false, 1.0),
            0.05,
            side(&up10),
            side(&BASE),
        );
        assert_eq!(r.verdict, MetricVerdict::Pass, "{}", r.reason);
        let r = judge_metric(
            &metric(Direction::Increase, false, 1.0),
            0.05,
            side(&[1.0, 2.0]),
            side(&BASE),
        );
        assert_eq!(r.verdict, MetricVerdict::NoData);
        assert!(r.reason.contains("2 sample(s)"), "{}", r.reason);
    }

    #[test]
    fn a_zero_baseline_median_makes_any_significant_shift_unbounded() {
        let zeros = [0.0; 10];
        let some: Vec<f64> = (1..=10).map(|i| i as f64 / 100.0).collect();
        let r = judge_metric(
            &metric(Direction::Increase, false, 1.0),
            0.05,
            side(&some),
            side(&zeros),
        );
        assert_eq!(r.verdict, MetricVerdict::High);
        assert_eq!(r.effect, None);
        assert!(r.shift.unwrap() > 0.0);
        let r = judge_metric(
            &metric(Direction::Increase, false, 1.0),
            0.05,
            side(&zeros),
            side(&zeros),
        );
        assert_eq!(r.verdict, MetricVerdict::Pass);
        assert_eq!(r.effect, Some(0.0));
    }

    fn result(verdict: MetricVerdict, critical: bool, weight: f64) -> MetricResult {
        let mut r = judge_metric(
            &metric(Direction::Increase, critical, weight),
            0.05,
            side(&BASE),
            side(&BASE),
        );
        r.verdict = verdict;
        r
    }

    #[test]
    fn score_and_outcome() {
        use MetricVerdict::*;
        let j = judge();
        let (s, o, _) = score(&j, &[result(Pass, false, 1.0), result(Pass, true, 1.0)]);
        assert_eq!((s, o), (Some(100.0), Outcome::Pass));
        // 3 of 4 by weight: 75, marginal.
        let (s, o, _) = score(&j, &[result(Pass, false, 3.0), result(High, false, 1.0)]);
        assert_eq!((s, o), (Some(75.0), Outcome::Marginal));
        let (_, o, _) = score(&j, &[result(Pass, false, 1.0), result(Low, false, 1.0)]);
        assert_eq!(o, Outcome::Fail);
        let (s, _, _) = score(&j, &[result(High, false, 1.0)]);
        assert!(s.is_some_and(|s| s == 0.0 && s.is_sign_positive()), "{s:?}");
        // A critical metric failing fails however high the score.
        let (s, o, _) = score(&j, &[result(Pass, false, 100.0), result(High, true, 0.01)]);
        assert!(s.unwrap() > 99.0);
        assert_eq!(o, Outcome::Fail);
        // No data: on a critical metric inconclusive; on every metric inconclusive.
        let (_, o, _) = score(&j, &[result(Pass, false, 1.0), result(NoData, true, 1.0)]);
        assert_eq!(o, Outcome::Inconclusive);
        let (s, o, _) = score(&j, &[result(NoData, false, 1.0)]);
        assert_eq!((s, o), (None, Outcome::Inconclusive));
        // A non-critical metric without data is left out of the score.
        let (s, o, _) = score(&j, &[result(Pass, false, 1.0), result(NoData, false, 1.0)]);
        assert_eq!((s, o), (Some(100.0), Outcome::Pass));
    }

    #[test]
    fn version_is_substituted_as_recorded() {
        let m = metric(Direction::Increase, false, 1.0);
        assert_eq!(m.query_for("v1.2.0"), "x{version=\"v1.2.0\"}");
    }
}
