//! The `RollbackCoordinator`: choose the target, plan every registry, execute with
//! compensation, and write the outcome to the history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use crate::config::{Config, RegistryConfig};
use crate::error::{Error, Exit};
use crate::history::{Deployment, History, Loaded, Package, Status, Store, Timestamp, Version};
use crate::journal::{self, Journal, JournalData, JournalStep, Phase, StepState};
use crate::plan::{Plan, Release, Step, PLAN_SCHEMA};
use crate::registry::{self, PlanInput, Registry, RegistryError, Undo};

/// What the user asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Target version; `None` = the default target (contract rules).
    pub version: Option<String>,
    /// `--registry` filters: a format name or a registry identity.
    pub registries: Vec<String>,
    pub force: bool,
}

/// Progress callbacks; the library never prints.
pub trait Reporter: Send + Sync {
    fn step_started(&self, _registry: &str, _step: &Step) {}
    fn step_finished(
        &self,
        _registry: &str,
        _step: &Step,
        _elapsed: Duration,
        _error: Option<&str>,
    ) {
    }
    fn undo_finished(&self, _registry: &str, _step: &Step, _error: Option<&str>) {}
}

/// `recover` reports through its own summary.
struct NoProgress;
impl Reporter for NoProgress {}

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub registry: String,
    pub reference: String,
    pub action: crate::plan::Action,
    pub millis: u128,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub undone: bool,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Every registry is at the target; the history says so.
    RolledBack,
    /// Nothing to do: every registry already matched and the target is current.
    AlreadyCurrent,
    /// A step failed and every applied step was undone.
    FailedUndone,
    /// A step failed and some undo failed too: manual work (`bagboy recover`).
    Partial,
}

#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub kind: OutcomeKind,
    pub steps: Vec<StepReport>,
    pub millis: u128,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// Set when the journal was kept for `bagboy recover`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
}

impl Outcome {
    pub fn exit(&self) -> Exit {
        match self.kind {
            OutcomeKind::RolledBack | OutcomeKind::AlreadyCurrent => Exit::Success,
            OutcomeKind::FailedUndone => Exit::FailedUndone,
            OutcomeKind::Partial => Exit::Partial,
        }
    }
}

pub struct RollbackCoordinator<'a> {
    config: &'a Config,
    store: &'a Store,
    backends: Mutex<HashMap<String, Arc<dyn Registry>>>,
}

fn release(d: &Deployment) -> Release {
    Release {
        version: d.version.to_string(),
        timestamp: d.timestamp.to_string(),
        status: d.effective_status().map(|s| s.to_string()),
        commit: d.commit.clone(),
    }
}

/// Who is doing this, for the history's `actor`.
pub fn actor() -> Option<String> {
    ["BAGBOY_ACTOR", "GITHUB_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

fn errors_to_error(what: &str, errors: Vec<(String, RegistryError)>) -> Error {
    let input = errors.iter().all(|(_, e)| e.is_input());
    let mut lines = vec![format!(
        "{what} failed for {} registr{}:",
        errors.len(),
        if errors.len() == 1 { "y" } else { "ies" }
    )];
    for (name, e) in &errors {
        let mut msg = format!("  {name}: {e}");
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let m = s.to_string();
            if !msg.contains(&m) {
                msg.push_str(&format!(": {m}"));
            }
            src = s.source();
        }
        lines.push(msg);
    }
    let exit = if input {
        Exit::Usage
    } else {
        Exit::FailedUndone
    };
    let mut msg = lines.join("\n");
    msg.push_str("\nnothing was changed");
    Error::Failed(msg, exit)
}

impl<'a> RollbackCoordinator<'a> {
    pub fn new(config: &'a Config, store: &'a Store) -> Self {
        RollbackCoordinator {
            config,
            store,
            backends: Mutex::new(HashMap::new()),
        }
    }

    fn backend(&self, cfg: &RegistryConfig) -> Result<Arc<dyn Registry>, RegistryError> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(&cfg.registry) {
            return Ok(b.clone());
        }
        let b = registry::open(cfg, self.config)?;
        map.insert(cfg.registry.clone(), b.clone());
        Ok(b)
    }

    fn backend_named(&self, name: &str) -> Option<Arc<dyn Registry>> {
        self.backends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// Pick the target entry: `--version`, or the contract's default.
    pub fn choose_target(&self, history: &History, version: Option<&str>) -> Result<usize, Error> {
        match version {
            Some(v) => {
                let parsed = Version::parse(v).map_err(|e| {
                    Error::refused(format!("--version {v} is not a semver version: {e}"))
                })?;
                history.find_target(&parsed).ok_or_else(|| {
                    Error::refused_with_hint(
                        format!("version {v} is not in {}", self.store.path().display()),
                        "see the recorded versions with `bagboy versions list`",
                    )
                })
            }
            None => history.default_target().ok_or_else(|| {
                Error::refused_with_hint(
                    "there is no earlier good version to roll back to",
                    "name one with --version (and --force for failed or unsafe entries)",
                )
            }),
        }
    }

    /// The registries taking part: configured ones and those the target recorded, filtered.
    fn registries_for(
        &self,
        target: &Deployment,
        filters: &[String],
    ) -> Result<Vec<RegistryConfig>, Error> {
        let mut out: Vec<RegistryConfig> = self.config.registries.clone();
        for p in &target.packages {
            if out.iter().any(|r| r.registry == p.registry) {
                continue;
            }
            match registry::default_config(p) {
                Some(cfg) => {
                    tracing::warn!(
                        "{} is recorded for {} but not configured in bagboy.yaml; using defaults",
                        p.registry,
                        target.version
                    );
                    out.push(cfg);
                }
                None => tracing::warn!(
                    "{} ({}) has a format bagboy cannot roll back; skipped",
                    p.registry,
                    p.format
                ),
            }
        }
        if !filters.is_empty() {
            for f in filters {
                if !out
                    .iter()
                    .any(|r| r.registry == *f || r.format.as_str() == f)
                {
                    let known: Vec<String> = out
                        .iter()
                        .map(|r| format!("{} ({})", r.registry, r.format))
                        .collect();
                    return Err(Error::refused(format!(
                        "--registry {f} matches no registry; known: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            }
            out.retain(|r| {
                filters
                    .iter()
                    .any(|f| r.registry == *f || r.format.as_str() == f)
            });
        }
        if out.is_empty() {
            return Err(Error::refused_with_hint(
                "no registries to roll back",
                "add `registries:` to bagboy.yaml, or record packages in the history",
            ));
        }
        Ok(out)
    }

    /// Observe every registry and compute the plan. Reads only.
    pub async fn plan(
        &self,
        history: &History,
        target_idx: usize,
        req: &Request,
    ) -> Result<Plan, Error> {
        let target = &history.deployments[target_idx];
        let current_idx = history.current();
        let current = current_idx.map(|i| &history.deployments[i]);
        let mut refusals = Vec::new();
        let mut warnings = Vec::new();
        let status = target.effective_status();
        if let Some(s) = status.filter(|s| s.is_failure()) {
            refusals.push(format!(
                "{} is marked `{s}`; rolling back to it needs --force",
                target.version
            ));
        }
        if target.rollback_safe == Some(false) {
            refusals.push(format!(
                "{} is marked `rollback_safe: false`; rolling back to it needs --force",
                target.version
            ));
        }
        if current.is_some_and(|c| c.version > target.version) {
            // The normal case, nothing to say.
        } else if let Some(c) = current.filter(|c| c.version < target.version) {
            warnings.push(format!(
                "{} is newer than the current {}: this rolls forward",
                target.version, c.version
            ));
        }
        let cfgs = self.registries_for(target, &req.registries)?;
        let mut errors = Vec::new();
        let mut backends = Vec::new();
        for cfg in &cfgs {
            match self.backend(cfg) {
                Ok(b) => backends.push(b),
                Err(e) => errors.push((cfg.registry.clone(), e)),
            }
        }
        let futures = backends.iter().map(|b| {
            let input = PlanInput {
                target,
                target_package: target.package(b.name()),
                current,
                current_package: current.and_then(|c| c.package(b.name())),
                settings: &self.config.rollback,
            };
            async move { (b.name().to_string(), b.plan(input).await) }
        });
        let results = futures_util::future::join_all(futures).await;
        let mut registries = Vec::new();
        for (name, r) in results {
            match r {
                Ok(o) => {
                    refusals.extend(o.refusals);
                    warnings.extend(o.warnings);
                    registries.push(o.plan);
                }
                Err(e) => errors.push((name, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors_to_error("planning", errors));
        }
        if req.force && !refusals.is_empty() {
            warnings.extend(refusals.drain(..).map(|r| format!("forced: {r}")));
        }
        Ok(Plan {
            schema: PLAN_SCHEMA,
            history: self.store.path().display().to_string(),
            current: current.map(release),
            target: release(target),
            partial: !req.registries.is_empty(),
            force: req.force,
            registries,
            refusals,
            warnings,
        })
    }

    /// Execute a plan computed from `loaded` (the caller holds the lock).
    pub async fn execute(
        &self,
        plan: &Plan,
        loaded: &Loaded,
        target_idx: usize,
        command: &str,
        reporter: &dyn Reporter,
    ) -> Result<Outcome, Error> {
        let started = Instant::now();
        if !plan.refusals.is_empty() {
            return Err(Error::refused_with_hint(
                plan.refusals.join("\n"),
                "nothing was changed; --force overrides these checks",
            ));
        }
        let history = &loaded.history;
        let target = &history.deployments[target_idx];
        let current_idx = history.current();
        let same_version =
            current_idx.is_some_and(|c| history.deployments[c].version == target.version);
        if plan.is_noop() && same_version {
            return Ok(Outcome {
                kind: OutcomeKind::AlreadyCurrent,
                steps: Vec::new(),
                millis: started.elapsed().as_millis(),
                errors: Vec::new(),
                journal: None,
            });
        }

        // 1. The history says an operation is in flight before any registry changes.
        let mut entry = Deployment::new(target.version.clone(), Status::RollingBack);
        entry.timestamp = later_than(history);
        entry.commit = target.commit.clone();
        entry.rollback_of = current_idx
            .filter(|_| !same_version)
            .map(|c| history.deployments[c].version.to_string());
        entry.actor = actor();
        if plan.partial {
            let names: Vec<&str> = plan
                .registries
                .iter()
                .map(|r| r.registry.as_str())
                .collect();
            entry.notes = Some(format!("partial rollback: {}", names.join(", ")));
        } else if same_version {
            entry.notes =
                Some("re-applied: registries had drifted from the recorded release".into());
        }
        entry.packages = plan
            .registries
            .iter()
            .filter_map(|rp| {
                let b = self.backend_named(&rp.registry)?;
                let mut p = b.restored_package(rp, target.package(&rp.registry));
                p.status = Some(Status::RollingBack);
                Some(p)
            })
            .collect();
        let mut working = history.clone();
        working.deployments.push(entry.clone());
        let fingerprint = self.store.save(&working, &loaded.fingerprint)?;
        let entry_pos = working.deployments.len() - 1;

        let state_dir = self.store.state_dir();
        let changing = plan.changing_steps();
        let journal = Journal::create(
            &state_dir,
            JournalData {
                id: format!(
                    "{}-{}",
                    entry.timestamp.at().unix_timestamp(),
                    std::process::id()
                ),
                started_at: entry.timestamp.to_string(),
                pid: std::process::id(),
                command: command.to_string(),
                phase: Phase::Applying,
                entry_timestamp: entry.timestamp.to_string(),
                plan: plan.clone(),
                steps: changing
                    .iter()
                    .map(|(r, s)| JournalStep {
                        registry: *r,
                        step: *s,
                        state: StepState::Pending,
                        undo: None,
                        error: None,
                    })
                    .collect(),
            },
        )
        .map_err(|e| {
            // Nothing has touched a registry yet: take the in-flight entry back out.
            let restored = self.store.save(history, &fingerprint).is_ok();
            Error::Failed(
                format!(
                    "{e}; nothing was changed in any registry{}",
                    if restored {
                        ""
                    } else {
                        " (the history keeps a rolling_back entry: `bagboy recover` clears it)"
                    }
                ),
                Exit::FailedUndone,
            )
        })?;

        // 2. Apply.
        let run = self.apply_all(plan, &changing, &journal, reporter).await;
        let mut reports = run.reports;
        let apply_failed = !run.errors.is_empty();
        let mut errors = run.errors;

        // 3. Compensate.
        let mut undo_failed = false;
        if apply_failed {
            let _ = journal.set_phase(Phase::Undoing);
            // A failed step may still have reached the registry (the answer to a PUT or a push
            // can be lost after the server acted), so it is undone too, with no undo record:
            // each backend's undo then checks first (a tag still at its observed digest, a tap
            // file not at our content, is left alone), as `recover` relies on.
            let mut touched: Vec<(usize, usize, Undo)> = run.applied;
            touched.extend(
                run.failed
                    .iter()
                    .map(|(r, s)| (*r, *s, serde_json::Value::Null)),
            );
            touched.reverse();
            for (r, s, err) in self.undo_steps(plan, &touched, &journal, reporter).await {
                let rp = &plan.registries[r];
                let step = &rp.steps[s];
                if let Some(report) = reports
                    .iter_mut()
                    .find(|x| x.registry == rp.registry && x.reference == step.reference)
                {
                    report.undone = err.is_none();
                }
                if let Some(e) = err {
                    undo_failed = true;
                    errors.push(format!("undo of {} {}: {e}", rp.registry, step.reference));
                }
            }
        }

        // 4. Write the outcome back.
        let kind = if !apply_failed {
            OutcomeKind::RolledBack
        } else if undo_failed {
            OutcomeKind::Partial
        } else {
            OutcomeKind::FailedUndone
        };
        let mut final_history = working.clone();
        match kind {
            OutcomeKind::RolledBack => {
                let e = &mut final_history.deployments[entry_pos];
                e.set_status(Status::Deployed);
                for p in &mut e.packages {
                    p.status = Some(Status::Deployed);
                }
                if let Some(c) = current_idx {
                    let status = if same_version {
                        Status::Superseded
                    } else {
                        Status::RolledBackFrom
                    };
                    let old = &mut final_history.deployments[c];
                    if plan.partial {
                        // Only the rolled-back registries left the old release; the package
                        // statuses say which, the entry stops being current.
                        old.status = Some(status);
                        for p in &mut old.packages {
                            if plan.registries.iter().any(|r| r.registry == p.registry) {
                                p.status = Some(status);
                            }
                        }
                    } else {
                        old.set_status(status);
                    }
                }
            }
            OutcomeKind::FailedUndone => {
                let e = &mut final_history.deployments[entry_pos];
                e.set_status(Status::RollbackFailed);
                let note = format!("rollback failed and was undone: {}", errors.join("; "));
                e.notes = Some(match &e.notes {
                    Some(n) => format!("{n}; {note}"),
                    None => note,
                });
            }
            // Leave `rolling_back`: the journal is the record until `recover` resolves it.
            OutcomeKind::Partial | OutcomeKind::AlreadyCurrent => {}
        }
        let mut journal_kept = None;
        if kind == OutcomeKind::Partial {
            journal_kept = Some(journal.path().display().to_string());
        } else {
            match self.store.save(&final_history, &fingerprint) {
                Ok(_) => {
                    let _ = journal.finish();
                }
                Err(e) => {
                    errors.push(format!("the registries are in their final state but the history could not be updated: {e}"));
                    journal_kept = Some(journal.path().display().to_string());
                    return Ok(Outcome {
                        kind: OutcomeKind::Partial,
                        steps: reports,
                        millis: started.elapsed().as_millis(),
                        errors,
                        journal: journal_kept,
                    });
                }
            }
        }
        reports.sort_by(|a, b| (&a.registry, &a.reference).cmp(&(&b.registry, &b.reference)));
        Ok(Outcome {
            kind,
            steps: reports,
            millis: started.elapsed().as_millis(),
            errors,
            journal: journal_kept,
        })
    }

    /// Undo `steps` in the order given, journaling each result; returns each step's error.
    async fn undo_steps(
        &self,
        plan: &Plan,
        steps: &[(usize, usize, Undo)],
        journal: &Journal,
        reporter: &dyn Reporter,
    ) -> Vec<(usize, usize, Option<String>)> {
        let mut out = Vec::new();
        for (r, s, undo) in steps {
            let rp = &plan.registries[*r];
            let step = &rp.steps[*s];
            let Some(b) = self.backend_named(&rp.registry) else {
                continue;
            };
            let err = b.undo(step, undo).await.err().map(|e| e.to_string());
            reporter.undo_finished(&rp.registry, step, err.as_deref());
            let state = if err.is_some() {
                StepState::UndoFailed
            } else {
                StepState::Undone
            };
            let _ = journal.record(*r, *s, state, None, err.clone());
            out.push((*r, *s, err));
        }
        out
    }

    async fn apply_all(
        &self,
        plan: &Plan,
        changing: &[(usize, usize)],
        journal: &Journal,
        reporter: &dyn Reporter,
    ) -> ApplyRun {
        let mut run = ApplyRun::default();
        // Fetch what the steps need first: a registry that cannot serve the target's manifest
        // fails here, before anything anywhere has changed.
        for (r, rp) in plan.registries.iter().enumerate() {
            if !changing.iter().any(|(x, _)| *x == r) {
                continue;
            }
            let Some(b) = self.backend_named(&rp.registry) else {
                run.errors.push(format!("{}: no backend", rp.registry));
                continue;
            };
            if let Err(e) = b.prepare(&rp.steps).await {
                run.errors.push(format!("{}: {e}", rp.registry));
            }
        }
        if !run.errors.is_empty() {
            return run;
        }
        let limit = self.config.rollback.concurrency.max(1);
        let mut queue = changing.iter().copied();
        let mut in_flight = FuturesUnordered::new();
        let launch = |r: usize, s: usize| {
            let rp = &plan.registries[r];
            let step = &rp.steps[s];
            let backend = self.backend_named(&rp.registry);
            reporter.step_started(&rp.registry, step);
            let _ = journal.record(r, s, StepState::Started, None, None);
            async move {
                let t = Instant::now();
                let res = match backend {
                    Some(b) => b.apply(step).await,
                    None => Err(RegistryError::Invalid {
                        registry: rp.registry.clone(),
                        message: "no backend".into(),
                    }),
                };
                (r, s, res, t.elapsed())
            }
        };
        let mut failed = false;
        loop {
            while !failed && in_flight.len() < limit {
                match queue.next() {
                    Some((r, s)) => in_flight.push(launch(r, s)),
                    None => break,
                }
            }
            let Some((r, s, res, elapsed)) = in_flight.next().await else {
                break;
            };
            let rp = &plan.registries[r];
            let step = &rp.steps[s];
            let err = res.as_ref().err().map(|e| e.to_string());
            reporter.step_finished(&rp.registry, step, elapsed, err.as_deref());
            run.reports.push(StepReport {
                registry: rp.registry.clone(),
                reference: step.reference.clone(),
                action: step.action,
                millis: elapsed.as_millis(),
                ok: err.is_none(),
                error: err.clone(),
                undone: false,
            });
            match res {
                Ok(undo) => {
                    let _ = journal.record(r, s, StepState::Applied, Some(undo.clone()), None);
                    run.applied.push((r, s, undo));
                }
                Err(e) => {
                    let _ = journal.record(r, s, StepState::Failed, None, Some(e.to_string()));
                    if e.may_have_landed() {
                        run.failed.push((r, s));
                    }
                    run.errors
                        .push(format!("{} {}: {e}", rp.registry, step.reference));
                    // Stop launching; steps already sent finish and are undone with the rest.
                    failed = true;
                }
            }
        }
        run
    }
}

#[derive(Default)]
struct ApplyRun {
    applied: Vec<(usize, usize, Undo)>,
    /// Steps that returned an error after which the registry may still have changed.
    failed: Vec<(usize, usize)>,
    errors: Vec<String>,
    reports: Vec<StepReport>,
}

/// Now, or just after the newest entry when clocks disagree, so the new entry sorts first.
fn later_than(history: &History) -> Timestamp {
    let now = Timestamp::now();
    let newest = history.deployments.iter().map(|d| d.timestamp.at()).max();
    match newest {
        Some(n) if n >= now.at() => {
            let t = n + time::Duration::seconds(1);
            let raw = t
                .to_offset(time::UtcOffset::UTC)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| now.to_string());
            Timestamp::parse(&raw).unwrap_or(now)
        }
        _ => now,
    }
}

/// `bagboy record`: observe the configured registries for `version` and append it as deployed.
pub async fn observe_release(config: &Config, version: &Version) -> Result<Vec<Package>, Error> {
    if config.registries.is_empty() {
        return Err(Error::refused_with_hint(
            "no registries configured to observe",
            "add `registries:` to bagboy.yaml",
        ));
    }
    let mut errors = Vec::new();
    let mut backends = Vec::new();
    for cfg in &config.registries {
        match registry::open(cfg, config) {
            Ok(b) => backends.push(b),
            Err(e) => errors.push((cfg.registry.clone(), e)),
        }
    }
    let results = futures_util::future::join_all(
        backends
            .iter()
            .map(|b| async move { (b.name().to_string(), b.observe_release(version).await) }),
    )
    .await;
    let mut packages = Vec::new();
    for (name, r) in results {
        match r {
            Ok(p) => packages.push(p),
            Err(e) => errors.push((name, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors_to_error("observing", errors));
    }
    Ok(packages)
}

/// Append a deployed entry for a release and supersede the previous current one.
pub fn record_entry(history: &mut History, mut entry: Deployment) {
    if let Some(c) = history.current() {
        history.deployments[c].set_status(Status::Superseded);
    }
    entry.timestamp = later_than(history);
    history.deployments.push(entry);
}

/// Unfinished operations that block a new rollback.
pub fn unfinished_journals(store: &Store) -> Vec<std::path::PathBuf> {
    journal::unfinished(&store.state_dir())
}

/// What `bagboy recover` did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Recovered {
    /// Nothing was unfinished.
    Nothing,
    /// The interrupted rollback was completed; the target is deployed.
    Finished,
    /// The interrupted rollback was undone; the previous release is current again.
    Undone,
    /// Undo failed again: the journal is kept, manual work needed.
    Stuck,
}

#[derive(Clone, Debug, Serialize)]
pub struct RecoverReport {
    pub journal: Option<String>,
    pub result: Recovered,
    pub target: Option<String>,
    pub actions: Vec<String>,
    pub errors: Vec<String>,
}

impl<'a> RollbackCoordinator<'a> {
    fn config_for(&self, rp: &crate::plan::RegistryPlan) -> RegistryConfig {
        self.config
            .find_registry(&rp.registry)
            .cloned()
            .unwrap_or_else(|| RegistryConfig {
                format: rp.format,
                registry: rp.registry.clone(),
                insecure: false,
                move_tags: Vec::new(),
                remote: None,
                branch: None,
                formula: None,
                loc: Default::default(),
            })
    }

    /// Finish or undo the oldest unfinished rollback (the caller holds the lock).
    pub async fn recover(&self, force_undo: bool) -> Result<RecoverReport, Error> {
        let Some(path) = unfinished_journals(self.store).into_iter().next() else {
            return self.recover_orphans();
        };
        let journal =
            Journal::open(&path).map_err(|e| Error::Failed(e.to_string(), Exit::Partial))?;
        let data = journal.snapshot();
        let plan = &data.plan;
        let mut actions = Vec::new();
        let mut errors = Vec::new();
        for rp in &plan.registries {
            if let Err(e) = self.backend(&self.config_for(rp)) {
                return Err(errors_to_error(
                    "opening registries for recovery",
                    vec![(rp.registry.clone(), e)],
                ));
            }
        }
        let mut undo_mode = force_undo
            || data.phase == Phase::Undoing
            || data.steps.iter().any(|s| {
                matches!(
                    s.state,
                    StepState::Failed | StepState::Undone | StepState::UndoFailed
                )
            });

        if !undo_mode {
            // Re-applying is idempotent (same manifest bytes; a tap already at the content is
            // left alone), so every step not known to be applied is simply applied.
            'finish: for rp_idx in 0..plan.registries.len() {
                let rp = &plan.registries[rp_idx];
                let Some(b) = self.backend_named(&rp.registry) else {
                    continue;
                };
                if let Err(e) = b.prepare(&rp.steps).await {
                    errors.push(format!("{}: {e}", rp.registry));
                    undo_mode = true;
                    break 'finish;
                }
                for js in data.steps.iter().filter(|s| s.registry == rp_idx) {
                    if js.state == StepState::Applied {
                        continue;
                    }
                    let step = &rp.steps[js.step];
                    match b.apply(step).await {
                        Ok(undo) => {
                            let _ = journal.record(
                                js.registry,
                                js.step,
                                StepState::Applied,
                                Some(undo),
                                None,
                            );
                            actions.push(format!("applied {} {}", rp.registry, step.reference));
                        }
                        Err(e) => {
                            let _ = journal.record(
                                js.registry,
                                js.step,
                                StepState::Failed,
                                None,
                                Some(e.to_string()),
                            );
                            errors.push(format!("{} {}: {e}", rp.registry, step.reference));
                            undo_mode = true;
                            break 'finish;
                        }
                    }
                }
            }
        }

        let mut stuck = false;
        if undo_mode {
            let _ = journal.set_phase(Phase::Undoing);
            let todo: Vec<(usize, usize, Undo)> = journal
                .snapshot()
                .steps
                .iter()
                .rev()
                .filter(|js| !matches!(js.state, StepState::Pending | StepState::Undone))
                .map(|js| (js.registry, js.step, js.undo.clone().unwrap_or_default()))
                .collect();
            for (r, s, err) in self.undo_steps(plan, &todo, &journal, &NoProgress).await {
                let rp = &plan.registries[r];
                let reference = &rp.steps[s].reference;
                match err {
                    None => actions.push(format!("undid {} {reference}", rp.registry)),
                    Some(e) => {
                        errors.push(format!("undo of {} {reference}: {e}", rp.registry));
                        stuck = true;
                    }
                }
            }
        }
        let result = if stuck {
            Recovered::Stuck
        } else if undo_mode {
            Recovered::Undone
        } else {
            Recovered::Finished
        };
        if !stuck {
            self.write_recovered(&data, result == Recovered::Finished, &errors)?;
            let _ = journal.finish();
        }
        Ok(RecoverReport {
            journal: Some(path.display().to_string()),
            result,
            target: Some(plan.target.version.clone()),
            actions,
            errors,
        })
    }

    /// Record the outcome of a recovered operation in the history.
    fn write_recovered(
        &self,
        data: &JournalData,
        finished: bool,
        errors: &[String],
    ) -> Result<(), Error> {
        let loaded = self.store.load()?;
        let mut h = loaded.history.clone();
        let plan = &data.plan;
        let pos = h.deployments.iter().position(|d| {
            d.timestamp.as_str() == data.entry_timestamp
                && d.version.as_str() == plan.target.version
        });
        let pos = match pos {
            Some(p) => p,
            None => {
                // The entry was written before the journal; if a person removed it, recreate it.
                let version = Version::parse(&plan.target.version).map_err(|e| {
                    Error::Failed(format!("journal names a bad version: {e}"), Exit::Partial)
                })?;
                let mut e = Deployment::new(version, Status::RollingBack);
                e.rollback_of = plan.current.as_ref().map(|c| c.version.clone());
                e.commit = plan.target.commit.clone();
                h.deployments.push(e);
                h.deployments.len() - 1
            }
        };
        if finished {
            let previous = h.current().filter(|c| *c != pos);
            let e = &mut h.deployments[pos];
            e.set_status(Status::Deployed);
            for p in &mut e.packages {
                p.status = Some(Status::Deployed);
            }
            e.notes = Some(append_note(
                e.notes.as_deref(),
                "interrupted; finished by `bagboy recover`",
            ));
            if let Some(c) = previous {
                h.deployments[c].set_status(Status::RolledBackFrom);
            }
        } else {
            let e = &mut h.deployments[pos];
            e.set_status(Status::RollbackFailed);
            let mut note = "interrupted; undone by `bagboy recover`".to_string();
            if !errors.is_empty() {
                note.push_str(&format!(" after: {}", errors.join("; ")));
            }
            e.notes = Some(append_note(e.notes.as_deref(), &note));
        }
        self.store.save(&h, &loaded.fingerprint)?;
        Ok(())
    }

    /// `rolling_back` entries with no journal: the run died before touching any registry.
    fn recover_orphans(&self) -> Result<RecoverReport, Error> {
        let loaded = self.store.load()?;
        let mut h = loaded.history.clone();
        let mut actions = Vec::new();
        for d in &mut h.deployments {
            if d.effective_status() == Some(Status::RollingBack) {
                d.set_status(Status::RollbackFailed);
                d.notes = Some(append_note(
                    d.notes.as_deref(),
                    "interrupted before any registry was changed; marked by `bagboy recover`",
                ));
                actions.push(format!(
                    "marked the interrupted rollback to {} as rollback_failed",
                    d.version
                ));
            }
        }
        if actions.is_empty() {
            return Ok(RecoverReport {
                journal: None,
                result: Recovered::Nothing,
                target: None,
                actions,
                errors: Vec::new(),
            });
        }
        self.store.save(&h, &loaded.fingerprint)?;
        Ok(RecoverReport {
            journal: None,
            result: Recovered::Undone,
            target: None,
            actions,
            errors: Vec::new(),
        })
    }
}

fn append_note(existing: Option<&str>, note: &str) -> String {
    match existing {
        Some(n) if !n.is_empty() => format!("{n}; {note}"),
        _ => note.to_string(),
    }
}
