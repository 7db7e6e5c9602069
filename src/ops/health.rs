//! `health` (run the checks once, optionally record them) and `rollback --auto` (sample,
//! decide, and hand a rollback to the last known-good release to the caller to confirm).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::rollback::{self, Prepared};
use super::Workspace;
use crate::coordinator::Request;
use crate::error::{Error, Exit};
use crate::events::Listener;
use crate::health::{self, AutoTrigger, Decision, Sample, Severity, Verdict};
use crate::history::{Deployment, History, Status, Version};
use crate::yaml::{Node, Scalar, ScalarKind, Value};

fn scalar(kind: ScalarKind, text: impl Into<String>) -> Node {
    Node::new(Value::Scalar(Scalar {
        kind,
        text: text.into(),
    }))
}

/// Samples as the history's `health_checks:` list (one item per check of the last round,
/// with how many rounds failed).
pub fn as_history_node(samples: &[Sample]) -> Node {
    let Some(last) = samples.last() else {
        return Node::new(Value::Seq(Vec::new()));
    };
    let items = last
        .results
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let failed = samples
                .iter()
                .filter(|s| {
                    s.results
                        .get(i)
                        .is_some_and(|x| x.status == Verdict::Failing)
                })
                .count();
            let status = match r.status {
                Verdict::Passing => "passing",
                Verdict::Failing => "failing",
                Verdict::Inconclusive => "inconclusive",
            };
            let mut fields = vec![
                (Node::str(r.kind), Node::str(r.target.as_str())),
                (Node::str("status"), crate::yaml::word(status)),
                (Node::str("checked_at"), Node::str(last.at.as_str())),
                (Node::str("detail"), Node::str(r.detail.as_str())),
            ];
            if let Some(ms) = r.latency_ms {
                fields.push((
                    Node::str("latency_ms"),
                    scalar(ScalarKind::Int, ms.to_string()),
                ));
            }
            if samples.len() > 1 {
                fields.push((
                    Node::str("failed_rounds"),
                    scalar(ScalarKind::Str, format!("{failed} of {}", samples.len())),
                ));
            }
            Node::new(Value::Map(fields))
        })
        .collect();
    Node::new(Value::Seq(items))
}

/// Whether an entry's recorded checks all passed (`None`: nothing recorded).
fn recorded_passing(d: &Deployment) -> Option<bool> {
    let Some(Node {
        value: Value::Seq(items),
        ..
    }) = &d.health_checks
    else {
        return None;
    };
    if items.is_empty() {
        return None;
    }
    Some(items.iter().all(|i| {
        i.entries()
            .and_then(|mut e| e.find(|(k, _, _)| *k == "status"))
            .and_then(|(_, _, v)| v.as_scalar())
            .is_some_and(|s| s.text == "passing")
    }))
}

#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    pub version: String,
    pub samples: Vec<Sample>,
    pub verdict: Verdict,
    pub recorded: bool,
}

impl HealthReport {
    pub fn exit(&self) -> Exit {
        match self.verdict {
            Verdict::Passing => Exit::Success,
            Verdict::Failing => Exit::Unhealthy,
            Verdict::Inconclusive => Exit::Inconclusive,
        }
    }
}

pub(super) fn entry_index(history: &History, version: Option<&str>) -> Result<usize, Error> {
    match version {
        Some(v) => {
            let parsed = Version::parse(v)
                .map_err(|e| Error::refused(format!("--version {v} is not a version: {e}")))?;
            history
                .find_version(&parsed)
                .ok_or_else(|| Error::refused(format!("version {v} is not in the history")))
        }
        None => history
            .current()
            .ok_or_else(|| Error::refused("no release is deployed: name one with --version")),
    }
}

fn checks_configured(ws: &Workspace) -> Result<(), Error> {
    if ws.config.deployment.health_checks.is_empty() {
        return Err(Error::refused_with_hint(
            "no health checks are configured",
            "add `deployment.health_checks:` to bagboy.yaml (url, command, prometheus or datadog)",
        ));
    }
    Ok(())
}

/// `bagboy health`: every check once against the current release (or `version`).
pub fn health(
    ws: &Workspace,
    version: Option<&str>,
    record: bool,
    listener: &dyn Listener,
) -> Result<HealthReport, Error> {
    checks_configured(ws)?;
    let loaded = ws.store.load()?;
    let idx = entry_index(&loaded.history, version)?;
    let v = loaded.history.deployments[idx].version.to_string();
    let rt = super::runtime()?;
    let s = rt.block_on(health::sample(&ws.config.deployment.health_checks));
    let verdict = s.verdict();
    let samples = vec![s];
    if record {
        let super::Begun { lock, loaded, .. } =
            ws.begin("health", super::Access::Write, listener)?;
        let idx = entry_index(&loaded.history, Some(&v))?;
        let mut h = loaded.history.clone();
        h.deployments[idx].health_checks = Some(as_history_node(&samples));
        ws.store.save(&h, &loaded.fingerprint)?;
        drop(lock);
    }
    Ok(HealthReport {
        version: v,
        samples,
        verdict,
        recorded: record,
    })
}

/// What `rollback --auto` found.
#[derive(Debug, Serialize)]
pub struct AutoReport {
    pub current: String,
    pub samples: Vec<Sample>,
    pub decision: Decision,
    /// The last known-good release a rollback goes to.
    pub target: Option<String>,
    /// The statistical judge's verdict, when `deployment.rollback.judge` is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub judge: Option<crate::health::judge::JudgeReport>,
}

impl AutoReport {
    /// Whether the rollback goes ahead without asking: a critical trigger (the release is
    /// down; waiting for a person costs more than the rollback). A high one asks on a
    /// terminal and needs `--yes` elsewhere.
    pub fn without_asking(&self) -> bool {
        matches!(
            self.decision,
            Decision::Trigger {
                severity: Severity::Critical,
                ..
            }
        )
    }
}

/// How `rollback --auto` samples.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub watch: Option<Duration>,
    pub interval: Duration,
}

/// Sample the current release over the window and decide. On a critical or high trigger the
/// rollback to the last known-good release is prepared (lock held, plan computed), with the
/// triggering samples and a hold written onto the bad entry when it runs.
pub fn auto<'w>(
    ws: &'w Workspace,
    window: Window,
    dry_run: bool,
    listener: &dyn Listener,
) -> Result<(AutoReport, Option<Prepared<'w>>), Error> {
    let judging = ws.config.deployment.judge.is_some();
    if !judging {
        checks_configured(ws)?;
    }
    let loaded = ws.store.load()?;
    let current_idx = entry_index(&loaded.history, None)?;
    let current = loaded.history.deployments[current_idx].version.to_string();
    let triggers = &ws.config.deployment.auto_trigger;
    let consecutive = triggers
        .iter()
        .find_map(|t| match t {
            AutoTrigger::HealthCheckFailures(n) => Some(*n as usize),
            _ => None,
        })
        .unwrap_or(3);
    let rounds = match window.watch {
        _ if ws.config.deployment.health_checks.is_empty() => 0,
        Some(w) => (w.as_millis() / window.interval.as_millis().max(1)) as usize + 1,
        None => consecutive.max(1),
    };
    let rt = super::runtime()?;
    // A preview runs no program from the config: `command:` checks are left out (and said).
    let checks: Vec<crate::health::config::Check> = ws
        .config
        .deployment
        .health_checks
        .iter()
        .filter(|c| {
            !(dry_run && matches!(c.kind, crate::health::config::CheckKind::Command { .. }))
        })
        .cloned()
        .collect();
    let skipped = ws.config.deployment.health_checks.len() - checks.len();
    let mut samples = Vec::new();
    let started = Instant::now();
    for i in 0..rounds {
        if i > 0 {
            let next = window.interval * i as u32;
            if let Some(wait) = next.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        samples.push(rt.block_on(health::sample(&checks)));
        // Argo's failure limit: once it is reached, more samples change nothing.
        let tail_failing = samples
            .iter()
            .rev()
            .take_while(|s| s.verdict() == Verdict::Failing)
            .count();
        if tail_failing >= consecutive {
            break;
        }
    }
    let mut decision = if samples.is_empty() {
        Decision::Healthy {
            reasons: Vec::new(),
        }
    } else {
        health::decide(&samples, triggers)
    };
    // The judge is one more decider, over the window that ends now (after the sampling).
    let judged = if judging {
        let r = super::judge::judge_entry(ws, &loaded.history, current_idx, None)?;
        decision = super::judge::combine(decision, super::judge::decision(&r));
        Some(r)
    } else {
        None
    };
    if skipped > 0 {
        let (Decision::Healthy { reasons }
        | Decision::Inconclusive { reasons }
        | Decision::Trigger { reasons, .. }) = &mut decision;
        {
            reasons.push(format!(
                "{skipped} `command` check(s) not run: a dry-run runs no program from the config"
            ));
        }
    }
    let mut report = AutoReport {
        current: current.clone(),
        samples,
        decision,
        target: None,
        judge: judged,
    };
    let (severity, reasons) = match &report.decision {
        Decision::Trigger { severity, reasons } if *severity >= Severity::High => {
            (*severity, reasons.clone())
        }
        _ => return Ok((report, None)),
    };
    let target = last_known_good(&loaded.history, current_idx).ok_or_else(|| {
        Error::refused_with_hint(
            format!("{current} is unhealthy, but no earlier release is known to be good"),
            "roll back by hand with `bagboy rollback --version V`",
        )
    })?;
    let target_version = loaded.history.deployments[target].version.to_string();
    report.target = Some(target_version.clone());
    let req = Request {
        version: Some(target_version),
        ..Request::default()
    };
    let mut prepared = rollback::prepare(ws, &req, dry_run, None, listener)?;
    // The evidence and the hold go on the bad entry in the same write that starts the
    // rollback: even if the rollback fails, automation cannot promote it again.
    if let Some(c) = prepared.loaded.history.current() {
        let bad = &mut prepared.loaded.history.deployments[c];
        if !report.samples.is_empty() {
            bad.health_checks = Some(as_history_node(&report.samples));
        }
        if let Some(j) = &report.judge {
            bad.extra.retain(|(k, _)| k != "judge");
            bad.extra.push((
                "judge".into(),
                super::judge::as_history_node(j, crate::history::Timestamp::now().as_str()),
            ));
        }
        bad.extra.retain(|(k, _)| k != "held");
        bad.extra.push((
            "held".into(),
            Node::str(format!("{severity:?} trigger: {}", reasons.join("; ")).to_lowercase()),
        ));
    }
    Ok((report, Some(prepared)))
}

/// The newest entry before `current` that is not failed, not rolled back from, not unsafe,
/// not held, and whose recorded checks (if any) passed; an entry with passing checks wins over
/// one with none recorded.
fn last_known_good(history: &History, current: usize) -> Option<usize> {
    let cur = &history.deployments[current];
    let candidates: Vec<usize> = history
        .newest_first()
        .into_iter()
        .filter(|i| *i != current)
        .filter(|i| {
            let d = &history.deployments[*i];
            d.timestamp.at() <= cur.timestamp.at()
                && d.version != cur.version
                && !d.effective_status().is_some_and(|s| {
                    s.is_failure() || s == Status::RolledBackFrom || s == Status::RollingBack
                })
                && d.rollback_safe != Some(false)
                && !d.extra.iter().any(|(k, _)| k == "held")
                && recorded_passing(d) != Some(false)
        })
        .collect();
    candidates
        .iter()
        .copied()
        .find(|i| recorded_passing(&history.deployments[*i]) == Some(true))
        .or_else(|| candidates.first().copied())
}

/// Whether `version` is held by an automated rollback (record refuses it without --force).
pub fn held(history: &History, version: &Version) -> Option<String> {
    history
        .deployments
        .iter()
        .filter(|d| &d.version == version)
        .find_map(|d| {
            d.extra
                .iter()
                .find(|(k, _)| k == "held")
                .map(|(_, v)| v.as_scalar().map(|s| s.text.clone()).unwrap_or_default())
        })
}
