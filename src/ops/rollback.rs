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
    let command = super::command_line();
    listener.on(&Event::Started {
        id: super::operation_id(),
        operation: "rollback",
        command: &command,
    });
    let lock = if dry_run {
        None
    } else {
        Some(ws.lock(&command)?)
    };
    let loaded = ws.store.load()?;
    let mut extra_refusals = Vec::new();
    let mut extra_warnings = Vec::new();
    if lock.is_some() {
        ws.check_settled(&loaded.history)?;
    } else if ws.store.lock_path().exists() {
        extra_warnings.push(
            "another bagboy holds the lock now (a rollback may be running): this preview may be out of date when it ends".to_string(),
        );
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
    })
}

/// Execute a prepared plan: in-flight entry, journal, run, compensation, write-back.
pub fn execute(prepared: Prepared<'_>, listener: &dyn Listener) -> Result<Outcome, Error> {
    let started = Instant::now();
    let Prepared {
        plan,
        ws,
        coordinator,
        lock,
        loaded,
        target_idx,
        command,
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
    let target = &history.deployments[target_idx];
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
    let run = rt.block_on(coordinator.execute(&plan, &journal, listener));
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
            e.notes = Some(append_note(e.notes.as_deref(), &note));
        }
        // Leave `rolling_back`: the journal is the record until `recover` resolves it.
        OutcomeKind::Partial | OutcomeKind::AlreadyCurrent => {}
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
    reports.sort_by(|a, b| (&a.registry, &a.reference).cmp(&(&b.registry, &b.reference)));
    let outcome = Outcome {
        kind,
        steps: reports,
        millis: started.elapsed().as_millis(),
        errors,
        journal: journal_kept,
    };
    listener.on(&Event::Finished {
        plan: &plan,
        outcome: &outcome,
    });
    Ok(outcome)
}
