//! `health --judge` (read-only: the candidate against its baseline, judged) and the judge as a
//! decider of `rollback --auto`.

use super::Workspace;
use crate::error::Error;
use crate::health::judge::{self, Baseline, JudgeReport, MetricVerdict, Outcome};
use crate::health::{Decision, Severity};
use crate::history::{History, Status, Version};
use crate::yaml::{Node, Value};

/// The configured judge, or exit 2 saying what to add.
pub fn configured(ws: &Workspace) -> Result<&judge::Judge, Error> {
    ws.config.deployment.judge.as_ref().ok_or_else(|| {
        Error::refused_with_hint(
            "no judge is configured",
            "add `deployment.rollback.judge:` to bagboy.yaml (prometheus, baseline, window, pass, \
             marginal, metrics with name, query using $VERSION, direction, tolerance); see docs/health.md",
        )
    })
}

/// The baseline of the entry at `candidate`: `--baseline`, else the configured version, else
/// the newest earlier entry that is not failed, rollback_failed or rolled back from.
fn baseline(
    history: &History,
    candidate: usize,
    configured: &Baseline,
    asked: Option<&str>,
) -> Result<String, Error> {
    let named = match (asked, configured) {
        (Some(v), _) => Some(v.to_string()),
        (None, Baseline::Version(v)) => Some(v.clone()),
        (None, Baseline::Previous) => None,
    };
    if let Some(v) = named {
        let parsed = Version::parse(&v)
            .map_err(|e| Error::refused(format!("baseline {v} is not a version: {e}")))?;
        // As recorded, when recorded (`1.1.0` asked, `v1.1.0` recorded: the series say v1.1.0).
        return Ok(history
            .find_version(&parsed)
            .map(|i| history.deployments[i].version.to_string())
            .unwrap_or_else(|| parsed.to_string()));
    }
    let cand = &history.deployments[candidate];
    history
        .newest_first()
        .into_iter()
        .map(|i| &history.deployments[i])
        .find(|d| {
            d.timestamp.at() <= cand.timestamp.at()
                && d.version != cand.version
                && !d.effective_status().is_some_and(|s| {
                    s.is_failure() || s == Status::RolledBackFrom || s == Status::RollingBack
                })
        })
        .map(|d| d.version.to_string())
        .ok_or_else(|| {
            Error::refused_with_hint(
                format!(
                    "{} has no earlier good release to compare with",
                    cand.version
                ),
                "name one with --baseline V (or `baseline:` in the judge's config)",
            )
        })
}

/// Judge the entry at `candidate` (read-only).
pub fn judge_entry(
    ws: &Workspace,
    history: &History,
    candidate: usize,
    asked_baseline: Option<&str>,
) -> Result<JudgeReport, Error> {
    let j = configured(ws)?;
    let base = baseline(history, candidate, &j.baseline, asked_baseline)?;
    let cand = history.deployments[candidate].version.to_string();
    if Version::parse(&base).ok().as_ref() == Some(&history.deployments[candidate].version) {
        return Err(Error::refused(format!(
            "the baseline {base} is the release being judged"
        )));
    }
    let rt = super::runtime()?;
    Ok(rt.block_on(judge::run(j, &cand, &base)))
}

/// `bagboy health --judge`: the current release (or `version`) against its baseline. Writes
/// nothing.
pub fn judge(
    ws: &Workspace,
    version: Option<&str>,
    asked_baseline: Option<&str>,
) -> Result<JudgeReport, Error> {
    configured(ws)?;
    let loaded = ws.store.load()?;
    let idx = super::health::entry_index(&loaded.history, version)?;
    judge_entry(ws, &loaded.history, idx, asked_baseline)
}

/// The judge's result as a decision of `rollback --auto`: fail triggers (critical when a
/// critical metric failed, high otherwise); marginal and too little data are inconclusive
/// (hold); pass is healthy. Missing data never triggers.
pub fn decision(report: &JudgeReport) -> Decision {
    let reasons: Vec<String> = report
        .reasons
        .iter()
        .map(|r| format!("judge: {r}"))
        .collect();
    match report.result {
        Outcome::Fail => {
            let critical = report.metrics.iter().any(|m| {
                m.critical && matches!(m.verdict, MetricVerdict::High | MetricVerdict::Low)
            });
            Decision::Trigger {
                severity: if critical {
                    Severity::Critical
                } else {
                    Severity::High
                },
                reasons,
            }
        }
        Outcome::Marginal | Outcome::Inconclusive => Decision::Inconclusive { reasons },
        Outcome::Pass => Decision::Healthy { reasons },
    }
}

/// Two deciders' decisions as one: a high or critical trigger wins (the worse severity),
/// then inconclusive, then a low trigger, then healthy. Reasons of both are kept.
pub fn combine(a: Decision, b: Decision) -> Decision {
    fn parts(d: Decision) -> (u8, Option<Severity>, Vec<String>) {
        match d {
            Decision::Trigger { severity, reasons } if severity >= Severity::High => {
                (3, Some(severity), reasons)
            }
            Decision::Inconclusive { reasons } => (2, None, reasons),
            Decision::Trigger { severity, reasons } => (1, Some(severity), reasons),
            Decision::Healthy { reasons } => (0, None, reasons),
        }
    }
    let (ra, sa, mut reasons) = parts(a);
    let (rb, sb, more) = parts(b);
    reasons.extend(more);
    let rank = ra.max(rb);
    let severity = [(ra, sa), (rb, sb)]
        .into_iter()
        .filter(|(r, _)| *r == rank)
        .filter_map(|(_, s)| s)
        .max();
    match (rank, severity) {
        (3 | 1, Some(severity)) => Decision::Trigger { severity, reasons },
        (2, _) => Decision::Inconclusive { reasons },
        _ => Decision::Healthy { reasons },
    }
}

/// The judgement as a history node (`judge:` on the entry rolled back from).
pub fn as_history_node(report: &JudgeReport, at: &str) -> Node {
    let num = |v: Option<f64>| match v {
        Some(v) => Node::str(format!("{v:.6}")),
        None => Node::new(Value::Null),
    };
    let metrics = report
        .metrics
        .iter()
        .map(|m| {
            Node::new(Value::Map(vec![
                (Node::str("name"), Node::str(m.name.as_str())),
                (
                    Node::str("verdict"),
                    crate::yaml::word(match m.verdict {
                        MetricVerdict::Pass => "pass",
                        MetricVerdict::High => "high",
                        MetricVerdict::Low => "low",
                        MetricVerdict::NoData => "no_data",
                    }),
                ),
                (Node::str("p"), num(m.p)),
                (Node::str("effect"), num(m.effect)),
            ]))
        })
        .collect();
    Node::new(Value::Map(vec![
        (Node::str("baseline"), Node::str(report.baseline.as_str())),
        (Node::str("judged_at"), Node::str(at)),
        (
            Node::str("result"),
            crate::yaml::word(match report.result {
                Outcome::Pass => "pass",
                Outcome::Marginal => "marginal",
                Outcome::Fail => "fail",
                Outcome::Inconclusive => "inconclusive",
            }),
        ),
        (Node::str("score"), num(report.score)),
        (Node::str("metrics"), Node::new(Value::Seq(metrics))),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trig(s: Severity) -> Decision {
        Decision::Trigger {
            severity: s,
            reasons: vec!["t".into()],
        }
    }

    #[test]
    fn a_trigger_beats_inconclusive_which_beats_healthy() {
        let inc = || Decision::Inconclusive {
            reasons: vec!["i".into()],
        };
        let ok = || Decision::Healthy {
            reasons: Vec::new(),
        };
        assert!(matches!(
            combine(trig(Severity::High), trig(Severity::Critical)),
            Decision::Trigger {
                severity: Severity::Critical,
                ..
            }
        ));
        assert!(matches!(
            combine(inc(), trig(Severity::High)),
            Decision::Trigger { .. }
        ));
        assert!(matches!(
            combine(trig(Severity::Low), inc()),
            Decision::Inconclusive { .. }
        ));
        assert!(matches!(
            combine(ok(), trig(Severity::Low)),
            Decision::Trigger {
                severity: Severity::Low,
                ..
            }
        ));
        assert!(matches!(combine(ok(), ok()), Decision::Healthy { .. }));
    }
}
