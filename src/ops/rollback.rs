//! `rollback` (and the execution half of `apply`): plan under the lock, then the rolling_back
//! entry, the journal, the coordinator's run, and the outcome written back.

use std::time::Instant;

use super::{append_note, fingerprint_text, later_than, Workspace};
use crate::coordinator::{self, Outcome, OutcomeKind, Request, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::events::{Event, Listener};
use crate::history::{Deployment, History, Loaded, Lock, Status};
use crate::journal::{Header, Journal, JOURNAL_FORMAT};
use crate::plan::Plan;

/// How the target is chosen when `--version` is absent.
pub type Picker<'a> = &'a dyn Fn(&History) -> Result<Option<usize>, Error>;

/// What executing writes back: a rollback's entry, or a blue-green promotion's.
pub enum Mode {
    Rollback,
    Promote {
        /// The staged entry, with the floating tags it takes over.
        target: Box<Deployment>,
        promoted_from: Option<String>,
        environment: String,
        /// The health samples taken between traffic steps: a failed promotion records them on
        /// the staged entry.
        samples: std::sync::Arc<std::sync::Mutex<Vec<crate::health::Sample>>>,
    },
}

/// A computed plan, with what executing it needs: the lock (unless a dry run), the history
/// as read under it, and the target entry.
pub struct Prepared<'w> {
    pub plan: Plan,
    pub(crate) ws: &'w Workspace,
    pub(crate) coordinator: RollbackCoordinator<'w>,
    pub(crate) lock: Option<Lock>,
    pub(crate) loaded: Loaded,
    pub(crate) target_idx: usize,
    pub(crate) command: String,
    pub(crate) mode: Mode,
}

impl Prepared<'_> {
    /// Executing would change nothing: the target is current and every registry matches it.
    pub fn already_current(&self) -> bool {
        self.plan.is_noop() && self.plan.targets_current()
    }
}

/// Compute the rollback plan. Not a dry run: the lock is taken first and held until
/// [`execute`], so the history planned from is the one written back.
pub fn prepare<'w>(
    ws: &'w Workspace,
    req: &Request,
    dry_run: bool,
    pick: Option<Picker<'_>>,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    prepare_with(
        ws,
        RollbackCoordinator::new(&ws.config),
        req,
        dry_run,
        pick,
        listener,
    )
}

/// [`prepare`] with a given coordinator (fake backends, in tests).
pub fn prepare_with<'w>(
    ws: &'w Workspace,
    coordinator: RollbackCoordinator<'w>,
    req: &Request,
    dry_run: bool,
    pick: Option<Picker<'_>>,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    let access = if dry_run {
        super::Access::Preview
    } else {
        super::Access::Write
    };
    let super::Begun {
        command,
        lock,
        loaded,
    } = ws.begin("rollback", access, listener)?;
    let mut extra_refusals = Vec::new();
    let mut extra_warnings = Vec::new();
    if lock.is_some() {
        // Checked by `begin`.
    } else if let Some(h) = crate::history::lock::holder_of(&ws.store.lock_path())
        .ok()
        .flatten()
        .filter(|h| !crate::history::lock::holder_is_gone(h))
    {
        extra_warnings.push(format!(
            "another bagboy holds the lock now (pid {} on {}: `{}`): this preview may be out of date when it ends",
            h.pid, h.host, h.command
        ));
    } else if let Err(e) = ws.check_settled(&loaded.history) {
        // A preview lists every problem instead of stopping at the first.
        extra_refusals.push(match e.hint() {
            Some(h) => format!("{e} ({h})"),
            None => e.to_string(),
        });
    }
    let target_idx = match (&req.version, pick) {
        (None, Some(pick)) => match pick(&loaded.history)? {
            Some(i) => i,
            None => coordinator::choose_target(&loaded.history, None, &ws.history_name())?,
        },
        (v, _) => coordinator::choose_target(&loaded.history, v.as_deref(), &ws.history_name())?,
    };
    let rt = super::runtime()?;
    let mut plan = rt.block_on(coordinator.plan(
        &loaded.history,
        target_idx,
        req,
        &ws.history_name(),
        fingerprint_text(&loaded.fingerprint),
    ))?;
    super::log_http_stats();
    add_traffic(ws, &mut plan, &loaded.history, target_idx, req, dry_run);
    super::validate::validate(
        ws,
        &coordinator,
        &mut plan,
        &loaded.history,
        target_idx,
        req,
        dry_run,
    );
    plan.refusals.extend(extra_refusals);
    plan.warnings.extend(extra_warnings);
    listener.on(&Event::Planned { plan: &plan });
    Ok(Prepared {
        plan,
        ws,
        coordinator,
        lock,
        loaded,
        target_idx,
        command,
        mode: Mode::Rollback,
    })
}

/// Blue-green: the instant switch goes first in the plan (the step runner runs traffic steps
/// before any other), or a warning says why there is none.
pub(crate) fn add_traffic(
    ws: &Workspace,
    plan: &mut Plan,
    history: &History,
    target_idx: usize,
    req: &Request,
    dry_run: bool,
) {
    let (rp, warnings) = super::promote::plan_switch(ws, history, target_idx, req, dry_run);
    if let Some(rp) = rp {
        plan.registries.insert(0, rp);
    }
    plan.warnings.extend(warnings);
}

/// Execute a prepared plan: in-flight entry, journal, run, compensation, write-back.
pub fn execute(prepared: Prepared<'_>, listener: &dyn Listener) -> Result<Outcome, Error> {
    execute_gated(prepared, listener, None)
}

/// [`execute`] with a gate between traffic steps (a promotion's health checks).
pub(crate) fn execute_gated(
    prepared: Prepared<'_>,
    listener: &dyn Listener,
    gate: Option<coordinator::Gate<'_>>,
) -> Result<Outcome, Error> {
    let started = Instant::now();
    let Prepared {
        plan,
        ws,
        coordinator,
        lock,
        loaded,
        target_idx,
        command,
        mode,
    } = prepared;
    if lock.is_none() {
        return Err(Error::refused("a dry-run plan cannot be executed"));
    }
    if !plan.refusals.is_empty() {
        return Err(Error::refused_with_hint(
            plan.refusals.join("\n"),
            "nothing was changed; --force overrides these checks",
        ));
    }
    let history = &loaded.history;
    let target = match &mode {
        Mode::Promote { target, .. } => &**target,
        Mode::Rollback => &history.deployments[target_idx],
    };
    let current_idx = history.current();
    let same_version =
        current_idx.is_some_and(|c| history.deployments[c].version == target.version);
    if plan.is_noop() && same_version {
        let outcome = Outcome {
            kind: OutcomeKind::AlreadyCurrent,
            steps: Vec::new(),
            millis: started.elapsed().as_millis(),
            errors: Vec::new(),
            journal: None,
            refused: false,
        };
        listener.on(&Event::Finished {
            plan: &plan,
            outcome: &outcome,
        });
        drop(lock);
        return Ok(outcome);
    }

    // 1. The history says an operation is in flight before any registry changes.
    let mut entry = Deployment::new(target.version.clone(), Status::RollingBack);
    entry.timestamp = later_than(history);
    entry.commit = target.commit.clone();
    entry.rollback_of = current_idx
        .filter(|_| !same_version)
        .map(|c| history.deployments[c].version.to_string());
    entry.actor = super::actor();
    // The target runs where it was recorded (blue-green).
    if let Some(env) = target.environment() {
        entry.set_extra("environment", crate::yaml::word(env));
    }
    if let Mode::Promote {
        promoted_from,
        environment,
        ..
    } = &mode
    {
        entry.rollback_of = None;
        if let Some(p) = promoted_from {
            entry.set_extra("promoted_from", crate::yaml::Node::str(p.as_str()));
        }
        entry.notes = Some(format!("promoted: all traffic on {environment}"));
    }
    // The audit line of this operation carries the same id.
    entry.extra.push((
        "audit".into(),
        crate::yaml::Node::str(super::operation_id()),
    ));
    if plan.partial {
        let names: Vec<&str> = plan
            .registries
            .iter()
            .map(|r| r.registry.as_str())
            .collect();
        entry.notes = Some(format!("partial rollback: {}", names.join(", ")));
    } else if same_version {
        entry.notes = Some("re-applied: registries had drifted from the recorded release".into());
    }
    entry.packages = coordinator
        .restored_packages(&plan, target)
        .into_iter()
        .map(|mut p| {
            p.status = Some(Status::RollingBack);
            p
        })
        .collect();
    let mut working = history.clone();
    working.deployments.push(entry.clone());
    let fingerprint = ws.store.save(&working, &loaded.fingerprint)?;
    let entry_pos = working.deployments.len() - 1;

    let header = Header {
        journal: JOURNAL_FORMAT,
        id: format!(
            "{}-{}",
            entry.timestamp.at().unix_timestamp(),
            std::process::id()
        ),
        started_at: entry.timestamp.to_string(),
        pid: std::process::id(),
        command,
        entry_timestamp: entry.timestamp.to_string(),
        plan: plan.clone(),
        steps: plan.changing_steps(),
    };
    let journal = Journal::create(&ws.store.state_dir(), header).map_err(|e| {
        // Nothing has touched a registry yet: take the in-flight entry back out.
        let restored = ws.store.save(history, &fingerprint).is_ok();
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

    // 2. Apply, compensating on failure.
    let rt = super::runtime()?;
    let run = rt.block_on(coordinator.execute(&plan, &journal, listener, gate));
    super::log_http_stats();
    let mut errors = run.errors;
    let mut reports = run.reports;

    // 3. Write the outcome back.
    let mut final_history = working;
    match run.kind {
        OutcomeKind::RolledBack => {
            let e = &mut final_history.deployments[entry_pos];
            e.set_status(Status::Deployed);
            for p in &mut e.packages {
                p.status = Some(Status::Deployed);
            }
            let promoting = matches!(mode, Mode::Promote { .. });
            if promoting {
                // The staged entry is replaced by the deployed one.
                final_history.deployments[target_idx].set_status(Status::Superseded);
            }
            if let Some(c) = current_idx {
                let status = if same_version || promoting {
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
            let what = match mode {
                Mode::Promote { .. } => {
                    e.set_status(Status::Failed);
                    "promotion"
                }
                Mode::Rollback => {
                    e.set_status(Status::RollbackFailed);
                    "rollback"
                }
            };
            let note = if run.refused {
                format!("{what} stopped before any change: {}", errors.join("; "))
            } else {
                format!("{what} failed and was undone: {}", errors.join("; "))
            };
            e.notes = Some(append_note(e.notes.as_deref(), &note));
            if let Mode::Promote { samples, .. } = &mode {
                let samples = samples.lock().unwrap_or_else(|p| p.into_inner());
                let staged = &mut final_history.deployments[target_idx];
                staged.health_checks = Some(super::health::as_history_node(&samples));
                let note = format!(
                    "promotion of {} stopped: {}",
                    staged.version,
                    errors.join("; ")
                );
                staged.notes = Some(append_note(staged.notes.as_deref(), &note));
            }
        }
        // Leave `rolling_back`: the journal is the record until `recover` resolves it.
        OutcomeKind::Partial | OutcomeKind::AlreadyCurrent => {}
    }
    if run.refused {
        // Stopped before any registry changed: the history is put back as it was read (the
        // audit line still says what was tried).
        final_history = history.clone();
    }
    let mut kind = run.kind;
    let mut journal_kept = None;
    if kind == OutcomeKind::Partial {
        journal_kept = Some(journal.path().display().to_string());
    } else {
        match ws.store.save(&final_history, &fingerprint) {
            Ok(_) => {
                let _ = journal.finish();
            }
            Err(e) => {
                errors.push(format!(
                    "the registries are in their final state but the history could not be updated: {e}"
                ));
                journal_kept = Some(journal.path().display().to_string());
                kind = OutcomeKind::Partial;
            }
        }
    }
    drop(lock);
    // In the order the runner launched them: the plan's order (traffic first), not by name.
    let position = |registry: &str, reference: &str| {
        plan.registries
            .iter()
            .enumerate()
            .find_map(|(r, rp)| {
                (rp.registry == registry)
                    .then(|| rp.steps.iter().position(|s| s.reference == reference))
                    .flatten()
                    .map(|i| (r, i))
            })
            .unwrap_or((usize::MAX, usize::MAX))
    };
    reports.sort_by_key(|r| position(&r.registry, &r.reference));
    let outcome = Outcome {
        kind,
        steps: reports,
        millis: started.elapsed().as_millis(),
        errors,
        journal: journal_kept,
        refused: run.refused,
    };
    listener.on(&Event::Finished {
        plan: &plan,
        outcome: &outcome,
    });
    Ok(outcome)
}
