//! Health checks and the automated-rollback decision: HTTP endpoints, commands, Prometheus
//! and DataDog queries sampled over a window, judged against `auto_trigger` thresholds.
//!
//! A check that cannot be evaluated (Prometheus down, an empty result, a command that does not
//! exist) is *inconclusive*: never a pass and never a failure.

pub mod config;
pub mod judge;
mod run;

use std::time::Duration;

use serde::Serialize;

pub use config::{AutoTrigger, Check, CheckKind, Deployment};
pub use run::{run_check, sample};

/// What one check said once.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passing,
    Failing,
    Inconclusive,
}

#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `url`, `command`, `prometheus`, `datadog`.
    pub kind: &'static str,
    /// What was checked (URL without credentials, command, query).
    pub target: String,
    pub status: Verdict,
    /// Latency of an HTTP check, or the query's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    pub detail: String,
}

/// One round of every check.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    pub at: String,
    pub results: Vec<CheckResult>,
}

impl Sample {
    /// A round fails when a check fails, is inconclusive when none fails but one could not
    /// be evaluated, and passes otherwise.
    pub fn verdict(&self) -> Verdict {
        if self.results.iter().any(|r| r.status == Verdict::Failing) {
            Verdict::Failing
        } else if self
            .results
            .iter()
            .any(|r| r.status == Verdict::Inconclusive)
        {
            Verdict::Inconclusive
        } else {
            Verdict::Passing
        }
    }
}

/// How bad a trigger is (seed 004): critical rolls back without a prompt, high asks on a
/// terminal (`--yes` otherwise), low only warns.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    High,
    Critical,
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Nothing triggered.
    Healthy { reasons: Vec<String> },
    /// Too little could be evaluated to decide: nothing is changed (exit 6).
    Inconclusive { reasons: Vec<String> },
    /// A threshold was crossed.
    Trigger {
        severity: Severity,
        reasons: Vec<String>,
    },
}

/// After this many consecutive inconclusive rounds the analysis stops as inconclusive
/// (Argo Rollouts' `consecutiveErrorLimit` default).
pub const CONSECUTIVE_ERROR_LIMIT: usize = 4;

/// Judge the samples against the triggers.
pub fn decide(samples: &[Sample], triggers: &[AutoTrigger]) -> Decision {
    let triggers: Vec<AutoTrigger> = if triggers.is_empty() {
        // Without `auto_trigger`, three consecutive failing rounds (or every round, when
        // fewer were taken) trigger.
        vec![AutoTrigger::HealthCheckFailures(3)]
    } else {
        triggers.to_vec()
    };
    let verdicts: Vec<Verdict> = samples.iter().map(Sample::verdict).collect();
    let evaluated: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.verdict() != Verdict::Inconclusive)
        .collect();
    let mut fired: Vec<(Severity, String)> = Vec::new();
    let mut notes = Vec::new();
    for t in &triggers {
        match t {
            AutoTrigger::HealthCheckFailures(n) => {
                let (mut run, mut best) = (0usize, 0usize);
                for v in &verdicts {
                    match v {
                        Verdict::Failing => {
                            run += 1;
                            best = best.max(run);
                        }
                        Verdict::Passing => run = 0,
                        // An inconclusive round neither breaks nor extends a failing run.
                        Verdict::Inconclusive => {}
                    }
                }
                let need = (*n as usize).max(1);
                if best >= need {
                    fired.push((
                        Severity::Critical,
                        format!("{best} consecutive failing health-check rounds (limit {n})"),
                    ));
                } else if best > 0 {
                    notes.push(format!("{best} failing round(s), below the limit of {n}"));
                }
            }
            AutoTrigger::ErrorRate(max) => {
                // A Prometheus or DataDog check that returns a rate is judged by its own
                // `max`; here the share of failing rounds.
                if !evaluated.is_empty() {
                    let failed = evaluated
                        .iter()
                        .filter(|s| s.verdict() == Verdict::Failing)
                        .count();
                    let rate = failed as f64 / evaluated.len() as f64;
                    if rate > *max {
                        fired.push((
                            Severity::High,
                            format!(
                                "error rate {:.1} % over {} rounds, above {:.1} %",
                                rate * 100.0,
                                evaluated.len(),
                                max * 100.0
                            ),
                        ));
                    }
                }
            }
            AutoTrigger::ResponseTime(limit) => {
                let mut lat: Vec<u64> = samples
                    .iter()
                    .flat_map(|s| &s.results)
                    .filter(|r| r.kind == "url")
                    .filter_map(|r| r.latency_ms)
                    .collect();
                if !lat.is_empty() {
                    lat.sort_unstable();
                    let idx = ((lat.len() as f64) * 0.95).ceil() as usize;
                    let p95 = lat[idx.clamp(1, lat.len()) - 1];
                    if Duration::from_millis(p95) > *limit {
                        fired.push((
                            Severity::High,
                            format!("p95 response time {p95} ms, above {} ms", limit.as_millis()),
                        ));
                    }
                }
            }
        }
    }
    if let Some(sev) = fired.iter().map(|(s, _)| *s).max() {
        return Decision::Trigger {
            severity: sev,
            reasons: fired.into_iter().map(|(_, r)| r).collect(),
        };
    }
    let mut run = 0;
    let mut worst = 0;
    for v in &verdicts {
        if *v == Verdict::Inconclusive {
            run += 1;
            worst = worst.max(run);
        } else {
            run = 0;
        }
    }
    if evaluated.is_empty() || worst >= CONSECUTIVE_ERROR_LIMIT {
        let mut reasons: Vec<String> = samples
            .iter()
            .flat_map(|s| &s.results)
            .filter(|r| r.status == Verdict::Inconclusive)
            .map(|r| format!("{} {}: {}", r.kind, r.target, r.detail))
            .collect();
        reasons.dedup();
        return Decision::Inconclusive { reasons };
    }
    if !notes.is_empty() {
        return Decision::Trigger {
            severity: Severity::Low,
            reasons: notes,
        };
    }
    Decision::Healthy { reasons: notes }
}

/// `"30s"`, `"500ms"`, `"2m"`, `"1h"`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((s, ""), |i| (&s[..i], &s[i..]));
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    };
    // Out of what a Duration holds is not a duration (never a panic).
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(v: Verdict, latency: u64) -> Sample {
        Sample {
            at: String::new(),
            results: vec![CheckResult {
                kind: "url",
                target: "x".into(),
                status: v,
                latency_ms: Some(latency),
                value: None,
                detail: String::new(),
            }],
        }
    }

    #[test]
    fn three_consecutive_failures_are_critical() {
        use Verdict::*;
        let s: Vec<Sample> = [Passing, Failing, Failing, Inconclusive, Failing]
            .into_iter()
            .map(|v| round(v, 10))
            .collect();
        let d = decide(&s, &[AutoTrigger::HealthCheckFailures(3)]);
        assert!(
            matches!(
                d,
                Decision::Trigger {
                    severity: Severity::Critical,
                    ..
                }
            ),
            "{d:?}"
        );
        let ok: Vec<Sample> = [Passing, Failing, Passing]
            .into_iter()
            .map(|v| round(v, 10))
            .collect();
        assert!(matches!(
            decide(&ok, &[AutoTrigger::HealthCheckFailures(3)]),
            Decision::Trigger {
                severity: Severity::Low,
                ..
            }
        ));
    }

    #[test]
    fn rates_latency_and_inconclusive_rounds() {
        use Verdict::*;
        let slow: Vec<Sample> = (0..10)
            .map(|i| round(Passing, if i == 9 { 3000 } else { 50 }))
            .collect();
        let d = decide(&slow, &[AutoTrigger::ResponseTime(Duration::from_secs(2))]);
        assert!(
            matches!(
                d,
                Decision::Trigger {
                    severity: Severity::High,
                    ..
                }
            ),
            "{d:?}"
        );
        let some: Vec<Sample> = (0..10)
            .map(|i| round(if i < 2 { Failing } else { Passing }, 5))
            .collect();
        assert!(matches!(
            decide(&some, &[AutoTrigger::ErrorRate(0.05)]),
            Decision::Trigger {
                severity: Severity::High,
                ..
            }
        ));
        let unknown: Vec<Sample> = (0..2).map(|_| round(Inconclusive, 5)).collect();
        assert!(matches!(
            decide(&unknown, &[]),
            Decision::Inconclusive { .. }
        ));
        let healthy: Vec<Sample> = (0..3).map(|_| round(Passing, 5)).collect();
        assert!(matches!(decide(&healthy, &[]), Decision::Healthy { .. }));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5x"), None);
    }
}
