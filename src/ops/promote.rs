//! Blue-green: `promote` (traffic moved step by step to a staged release, health-checked
//! after each step, then the registries' floating tags moved as a rollback would) and the
//! instant switch a rollback plans when its target still runs on the idle environment.

use std::time::Duration;

use super::rollback::{Mode, Prepared};
use super::{fingerprint_text, Workspace};
use crate::coordinator::{self, Outcome, Request, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::events::{Event, Listener};
use crate::health::config::{Check, CheckKind, Traffic};
use crate::health::{Sample, Verdict};
use crate::history::{Deployment, History, Status, Version};
use crate::plan::{Action, Plan, RegistryPlan, Step};
use crate::registry::traffic::{self, Color, Weights};

/// The configured blue-green pair, when the strategy is blue-green.
fn blue_green(ws: &Workspace) -> Option<&Traffic> {
    (ws.config.deployment.strategy.as_deref() == Some("blue-green"))
        .then_some(ws.config.deployment.traffic.as_ref())
        .flatten()
}

/// The direct check of one environment: its `url` answers 2xx.
fn env_check(t: &Traffic, color: Color) -> Option<Check> {
    let url = t.environment(color.as_str())?.url.clone()?;
    Some(Check {
        kind: CheckKind::Http {
            url,
            expect_status: None,
        },
        timeout: Duration::from_secs(10),
        retries: 0,
    })
}

/// What the balancer says now, for `versions list`: read only from HAProxy's runtime API
/// (a `command` balancer is never run for a listing: `None`).
pub struct TrafficState {
    pub balancer: String,
    pub weights: Result<Weights, String>,
    /// The newest version recorded on blue and on green.
    pub blue_runs: Option<String>,
    pub green_runs: Option<String>,
}

impl TrafficState {
    pub fn runs(&self, c: Color) -> Option<&str> {
        match c {
            Color::Blue => self.blue_runs.as_deref(),
            Color::Green => self.green_runs.as_deref(),
        }
    }
}

/// The blue-green state for a listing; `None` without blue-green or with a `command` balancer.
pub fn traffic_state(ws: &Workspace, history: &History) -> Option<TrafficState> {
    let t = blue_green(ws)?;
    let switch = traffic::open(t);
    if switch.runs_a_program() {
        return None;
    }
    let rt = super::runtime().ok()?;
    let runs = |c: Color| newest_on(history, c).map(|d| d.version.to_string());
    Some(TrafficState {
        balancer: switch.describe(),
        weights: rt.block_on(switch.weights()).map_err(|e| e.to_string()),
        blue_runs: runs(Color::Blue),
        green_runs: runs(Color::Green),
    })
}

/// The newest entry recorded on `color`.
fn newest_on(history: &History, color: Color) -> Option<&Deployment> {
    history
        .deployments
        .iter()
        .filter(|d| d.environment() == Some(color.as_str()))
        .max_by_key(|d| d.timestamp.at())
}

/// The instant switch of a rollback: all traffic to the target's environment, planned when
/// that environment is idle, still runs the target and is healthy. Otherwise `None` and why
/// (the rollback is then registries only).
pub(crate) fn plan_switch(
    ws: &Workspace,
    history: &History,
    target_idx: usize,
    req: &Request,
    dry_run: bool,
) -> (Option<RegistryPlan>, Vec<String>) {
    let Some(t) = blue_green(ws) else {
        return (None, Vec::new());
    };
    let target = &history.deployments[target_idx];
    let no = |why: String| {
        (
            None,
            vec![format!(
                "traffic not switched: {why}; the rollback changes the registries only"
            )],
        )
    };
    if !req.registries.is_empty() && !req.registries.iter().any(|r| r == "traffic") {
        return (None, Vec::new());
    }
    let Some(color) = target.environment().and_then(Color::parse) else {
        return no(format!(
            "{} records no environment (`record --environment blue|green`)",
            target.version
        ));
    };
    let switch = traffic::open(t);
    if dry_run && switch.runs_a_program() {
        return no(format!(
            "a dry-run does not run the `command` balancer from the config (it would switch to {color} if {color} still runs {} and is healthy)",
            target.version
        ));
    }
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(e) => return no(e.to_string()),
    };
    let weights = match rt.block_on(switch.weights()) {
        Ok(w) => w,
        Err(e) => return no(format!("the balancer could not be read ({e})")),
    };
    if weights.live() == Some(color) {
        return (
            Some(traffic::switch_plan(
                &*switch,
                weights,
                color,
                format!("{color} already takes all traffic"),
            )),
            Vec::new(),
        );
    }
    match newest_on(history, color) {
        Some(d) if d.version == target.version => {}
        Some(d) => {
            return no(format!(
                "{color} now runs {}, not {}",
                d.version, target.version
            ))
        }
        None => return no(format!("nothing is recorded on {color}")),
    }
    let mut why = format!(
        "instant rollback: {color} still runs {} and is healthy",
        target.version
    );
    match env_check(t, color) {
        Some(check) => {
            let r = rt.block_on(crate::health::run_check(&check));
            if r.status != Verdict::Passing {
                return no(format!(
                    "{color} ({}) is not healthy: {}",
                    r.target, r.detail
                ));
            }
        }
        None => {
            why = format!(
                "instant rollback: {color} still runs {} (no `url` to check)",
                target.version
            )
        }
    }
    (
        Some(traffic::switch_plan(&*switch, weights, color, why)),
        Vec::new(),
    )
}

/// A promotion, computed: the plan shown (traffic steps, then the registries), the weights
/// observed, and the rollback machinery that moves the registries.
pub struct Promotion<'w> {
    samples: std::sync::Arc<std::sync::Mutex<Vec<Sample>>>,
    /// Every step, traffic first: what the user confirms.
    pub shown: Plan,
    pub color: Color,
    pub from: Weights,
    pub steps: Vec<u32>,
    pub interval: Duration,
    pub prepared: Prepared<'w>,
    pub already_live: bool,
    checks: Vec<Check>,
}

/// The tags of `current` that float (`latest`, `stable`, a major `1` shared with `target`):
/// every tag but those naming `current`'s own version or a prefix of it that `target` lacks.
fn floating(tag: &str, current: &Version, target: &Version) -> bool {
    let prefix_of = |v: &Version| {
        let bare = v.bare();
        let t = tag.strip_prefix('v').unwrap_or(tag);
        !t.is_empty()
            && t.chars().all(|c| c.is_ascii_digit() || c == '.')
            && (bare == t || bare.starts_with(&format!("{t}.")))
    };
    !prefix_of(current) || prefix_of(target)
}

pub fn prepare<'w>(
    ws: &'w Workspace,
    version: &str,
    dry_run: bool,
    listener: &dyn Listener,
) -> Result<Promotion<'w>, Error> {
    let Some(t) = blue_green(ws) else {
        return Err(Error::refused_with_hint(
            "promote needs `deployment.strategy: blue-green` and `deployment.traffic` in bagboy.yaml",
            "see docs/blue-green.md",
        ));
    };
    let access = if dry_run {
        super::Access::Preview
    } else {
        super::Access::Write
    };
    let super::Begun {
        command,
        lock,
        loaded,
    } = ws.begin("promote", access, listener)?;
    let history = &loaded.history;
    // The staged entry of V (a failed attempt to promote it leaves a `failed` entry of the
    // same version beside it), else whatever entry names V.
    let staged = history
        .deployments
        .iter()
        .enumerate()
        .filter(|(_, d)| {
            d.version.as_str() == version.trim()
                || d.version.as_str().trim_start_matches('v')
                    == version.trim().trim_start_matches('v')
        })
        .filter(|(_, d)| d.effective_status() == Some(Status::Staged))
        .max_by_key(|(_, d)| d.timestamp.at())
        .map(|(i, _)| i);
    let target_idx = match staged {
        Some(i) => i,
        None => coordinator::choose_target(history, Some(version), &ws.history_name())?,
    };
    let target = &history.deployments[target_idx];
    let Some(color) = target.environment().and_then(Color::parse) else {
        return Err(Error::refused_with_hint(
            format!("{} records no environment", target.version),
            "record the release with `bagboy record --version V --environment blue|green`",
        ));
    };
    let switch = traffic::open(t);
    let rt = super::runtime()?;
    // A dry-run runs no program from the config: with a `command` balancer the weights are
    // assumed (the other environment takes all traffic), and the plan says so.
    let assumed = dry_run && switch.runs_a_program();
    let from = if assumed {
        Weights::all_to(color.other())
    } else {
        rt.block_on(switch.weights()).map_err(|e| {
            Error::Failed(
                format!("the balancer could not be read: {e}"),
                Exit::FailedUndone,
            )
        })?
    };
    let current_idx = history.current();
    let current = current_idx.map(|c| &history.deployments[c]);
    let already_live =
        from.live() == Some(color) && current.is_some_and(|c| c.version == target.version);
    if !already_live && target.effective_status() != Some(Status::Staged) {
        let live = from.leading().map(|c| c.as_str()).unwrap_or("neither");
        if from.live() == Some(color) {
            return Err(Error::refused(format!(
                "{color} already takes all traffic, but {} is not the current release; `bagboy rollback --version {}` points the registries at it",
                target.version, target.version
            )));
        }
        return Err(Error::refused_with_hint(
            format!(
                "{} is `{}`, not staged on the idle environment ({live} is live)",
                target.version,
                target
                    .effective_status()
                    .map(|s| s.as_str())
                    .unwrap_or("without status")
            ),
            format!(
                "record it with `bagboy record --version {} --environment {color}` after deploying it there",
                target.version
            ),
        ));
    }
    if !already_live && from.live() == Some(color) {
        return Err(Error::refused(format!(
            "{color} already takes all traffic: {} cannot be promoted onto the live environment",
            target.version
        )));
    }
    // The registries: the target's tags, plus the current release's floating tags.
    let mut extended = history.clone();
    if let Some(c) = current {
        let cv = c.version.clone();
        let floating_tags: Vec<(String, Vec<String>)> = c
            .packages
            .iter()
            .map(|p| {
                (
                    p.registry.clone(),
                    p.tags
                        .iter()
                        .filter(|tag| floating(tag, &cv, &target.version))
                        .cloned()
                        .collect(),
                )
            })
            .collect();
        for p in &mut extended.deployments[target_idx].packages {
            if let Some((_, tags)) = floating_tags.iter().find(|(r, _)| *r == p.registry) {
                for tag in tags {
                    if !p.tags.contains(tag) && p.digest.is_some() {
                        p.tags.push(tag.clone());
                    }
                }
            }
        }
    }
    let req = Request {
        version: Some(version.to_string()),
        registries: Vec::new(),
        force: false,
        skip_validation: true,
    };
    let coordinator = RollbackCoordinator::new(&ws.config);
    let mut plan = rt.block_on(coordinator.plan(
        &extended,
        target_idx,
        &req,
        &ws.history_name(),
        fingerprint_text(&loaded.fingerprint),
    ))?;
    super::log_http_stats();
    plan.warnings.retain(|w| !w.contains("this rolls forward"));
    plan.operation = Some("promote".into());
    listener.on(&Event::Planned { plan: &plan });

    // The traffic steps come first in the plan that runs (journaled like every step, so
    // `recover` finishes or undoes a promotion killed half-way), and in what the user sees.
    let mut steps_rp = RegistryPlan {
        format: traffic::TRAFFIC.name.to_string(),
        registry: switch.describe(),
        steps: Vec::new(),
        notes: vec![format!(
            "each step waits {} and runs the health checks; a failing one puts the weights back ({})",
            shown_duration(t.interval),
            from.shown()
        )],
    };
    let mut prev = from;
    if !already_live {
        for p in &t.steps {
            let w = Weights::split(color, *p);
            let mut s = Step::new(Action::change(traffic::SHIFT), format!("{color} {p}%"));
            s.before = Some(prev.shown());
            s.after = Some(w.shown());
            s.data = serde_json::json!({ "before": prev.to_json(), "after": w.to_json() });
            steps_rp.steps.push(s);
            prev = w;
        }
    }
    plan.registries.insert(0, steps_rp);
    if assumed {
        plan.warnings.push(format!(
            "the `command` balancer is not run by a dry-run: the weights shown assume {} takes all traffic now",
            color.other()
        ));
    }
    let shown = plan.clone();
    let mut checks: Vec<Check> = env_check(t, color).into_iter().collect();
    checks.extend(ws.config.deployment.health_checks.iter().cloned());
    let target_ext = extended.deployments[target_idx].clone();
    let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let promoted_from = current.map(|c| c.version.to_string());
    Ok(Promotion {
        samples: samples.clone(),
        shown,
        color,
        from,
        steps: if already_live {
            Vec::new()
        } else {
            t.steps.clone()
        },
        interval: t.interval,
        already_live,
        prepared: Prepared {
            plan,
            ws,
            coordinator,
            lock,
            loaded,
            target_idx,
            command,
            mode: Mode::Promote {
                target: Box::new(target_ext),
                promoted_from,
                environment: color.as_str().to_string(),
                samples: samples.clone(),
            },
        },
        checks,
    })
}

/// What a promotion did to the traffic.
pub struct TrafficReport {
    /// Each step: percent on the promoted environment, time to set it, the health verdict.
    pub steps: Vec<(u32, Duration, Verdict)>,
    pub failed: Option<String>,
}

/// Run a promotion: the traffic steps with health checks, then the registries.
pub fn run(
    promotion: Promotion<'_>,
    listener: &dyn Listener,
) -> Result<(TrafficReport, Option<Outcome>), Error> {
    let Promotion {
        color,
        from,
        interval,
        prepared,
        checks,
        already_live,
        samples,
        ..
    } = promotion;
    let rt = super::runtime()?;
    let mut report = TrafficReport {
        steps: Vec::new(),
        failed: None,
    };
    if already_live {
        return Ok((report, None));
    }
    // Pre-promotion: the staged environment answers before it gets any traffic.
    let pre = rt.block_on(crate::health::sample(&checks[..checks.len().min(1)]));
    if !checks.is_empty() && pre.verdict() != Verdict::Passing {
        let why = failing(&pre);
        let msg = format!("{color} is not healthy before promotion ({why}); no traffic was moved");
        record_failure(&prepared, &[pre], &msg)?;
        return Err(Error::Failed(msg, Exit::FailedUndone));
    }
    samples.lock().unwrap_or_else(|p| p.into_inner()).push(pre);
    let verdicts = std::sync::Mutex::new(Vec::new());
    let gate = |step: &Step| -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        let after = traffic::Weights::from_json(&step.data["after"]);
        let (checks, samples, verdicts) = (&checks, samples.clone(), &verdicts);
        Box::pin(async move {
            tokio::time::sleep(interval).await;
            let sample = crate::health::sample(checks).await;
            let verdict = sample.verdict();
            let why = failing(&sample);
            let pct = after.map_or(0, |w| w.percent(color));
            verdicts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((pct, verdict));
            samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(sample);
            if verdict != Verdict::Passing && !checks.is_empty() {
                return Err(format!("health checks at {pct}% on {color}: {why}"));
            }
            Ok(())
        })
    };
    // Traffic, then the registries, in one journaled run: a failing health check or
    // registry step undoes every shift (the weights back at `from`) and every registry step.
    let outcome = super::rollback::execute_gated(prepared, listener, Some(&gate))?;
    let took: Vec<Duration> = outcome
        .steps
        .iter()
        .filter(|s| s.action.as_str() == traffic::SHIFT)
        .map(|s| Duration::from_millis(s.millis as u64))
        .collect();
    report.steps = verdicts
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .zip(
            took.iter()
                .copied()
                .chain(std::iter::repeat(Duration::ZERO)),
        )
        .map(|((pct, v), t)| (pct, t, v))
        .collect();
    if outcome.exit() != Exit::Success {
        report.failed = outcome.errors.first().cloned();
        tracing::warn!(
            "the promotion was undone; traffic is back at {}",
            from.shown()
        );
    }
    Ok((report, Some(outcome)))
}

fn shown_duration(d: Duration) -> String {
    if d.as_millis() % 1000 != 0 || d.is_zero() {
        format!("{} ms", d.as_millis())
    } else {
        format!("{} s", d.as_secs())
    }
}

fn failing(s: &Sample) -> String {
    let bad: Vec<String> = s
        .results
        .iter()
        .filter(|r| r.status != Verdict::Passing)
        .map(|r| format!("{} {}: {}", r.kind, r.target, r.detail))
        .collect();
    if bad.is_empty() {
        "no check".into()
    } else {
        bad.join("; ")
    }
}

/// The failed promotion, on the staged entry: the samples and a note.
fn record_failure(prepared: &Prepared<'_>, samples: &[Sample], msg: &str) -> Result<(), Error> {
    let mut history = prepared.loaded.history.clone();
    let entry = &mut history.deployments[prepared.target_idx];
    entry.health_checks = Some(super::health::as_history_node(samples));
    entry.notes = Some(super::append_note(entry.notes.as_deref(), msg));
    prepared
        .ws
        .store
        .save(&history, &prepared.loaded.fingerprint)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::floating;
    use crate::history::Version;

    #[test]
    fn floating_tags_are_the_ones_a_promotion_takes_over() {
        let (c, t) = (
            Version::parse("v1.2.0").unwrap(),
            Version::parse("v1.3.0").unwrap(),
        );
        for tag in ["latest", "stable", "1", "v1", "prod"] {
            assert!(floating(tag, &c, &t), "{tag}");
        }
        for tag in ["v1.2.0", "1.2.0", "1.2", "v1.2"] {
            assert!(!floating(tag, &c, &t), "{tag}");
        }
        let major = Version::parse("2.0.0").unwrap();
        assert!(!floating("1", &c, &major), "1 stays on the 1.x line");
    }
}
