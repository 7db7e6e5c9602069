//! `recover`: finish or undo the oldest interrupted rollback from its journal, and write the
//! result to the history.

use super::{append_note, Workspace};
use crate::coordinator::{RecoverReport, Recovered, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::events::{Event, Listener};
use crate::history::{Deployment, Status, Version};
use crate::journal::{self, Journal, JournalData, StepState};

/// What `recover` will do, shown before it does it.
#[derive(Clone, Debug, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No journal and no interrupted entry.
    Nothing,
    /// Apply the steps not known to have landed; if one fails, undo them all.
    Finish,
    /// Undo every step that landed or may have.
    Undo,
    /// Interrupted before any registry changed: only the history is corrected.
    MarkInterrupted,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PlannedAction {
    pub registry: String,
    pub reference: String,
    /// `apply` or `undo`.
    pub action: &'static str,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Preview {
    pub journal: Option<String>,
    pub target: Option<String>,
    pub mode: Mode,
    pub steps: Vec<PlannedAction>,
    /// `rolling_back` entries corrected when there is no journal.
    pub entries: Vec<String>,
}

/// A recovery checked and ready, holding the lock.
pub struct Prepared<'w> {
    pub preview: Preview,
    ws: &'w Workspace,
    coordinator: RollbackCoordinator<'w>,
    lock: crate::history::Lock,
    journal: Option<Journal>,
    undo: bool,
}

/// Under the lock: read the oldest unfinished journal, check every step against the history
/// and the config (a journal is input: a forged one is refused, exit 2), and say what will
/// be done.
pub fn prepare<'w>(
    ws: &'w Workspace,
    undo: bool,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    prepare_with(ws, RollbackCoordinator::new(&ws.config), undo, listener)
}

/// [`prepare`] with a given coordinator (fake backends, in tests).
pub fn prepare_with<'w>(
    ws: &'w Workspace,
    coordinator: RollbackCoordinator<'w>,
    undo: bool,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    let super::Begun { lock, loaded, .. } =
        ws.begin("recover", super::Access::Recover, listener)?;
    let Some(lock) = lock else {
        return Err(Error::refused("recover needs the lock"));
    };
    let Some(path) = journal::unfinished(&ws.store.state_dir())
        .into_iter()
        .next()
    else {
        let entries: Vec<String> = loaded
            .history
            .deployments
            .iter()
            .filter(|d| d.effective_status() == Some(Status::RollingBack))
            .map(|d| format!("{} ({})", d.version, d.timestamp))
            .collect();
        let mode = if entries.is_empty() {
            Mode::Nothing
        } else {
            Mode::MarkInterrupted
        };
        return Ok(Prepared {
            preview: Preview {
                journal: None,
                target: None,
                mode,
                steps: Vec::new(),
                entries,
            },
            ws,
            coordinator,
            lock,
            journal: None,
            undo,
        });
    };
    let journal = Journal::open(&path).map_err(|e| Error::Failed(e.to_string(), Exit::Partial))?;
    let data = journal.snapshot();
    let rt = super::runtime()?;
    let problems = rt.block_on(vet(ws, &coordinator, &data, &loaded.history));
    if !problems.is_empty() {
        return Err(Error::Failed(
            format!(
                "journal {} holds steps bagboy would not plan from the history and config; nothing was changed:\n  {}",
                path.display(),
                problems.join("\n  ")
            ),
            Exit::Usage,
        ));
    }
    let plan = data.plan();
    let undo_mode = undo
        || data.phase == crate::journal::Phase::Undoing
        || data.steps.iter().any(|s| {
            matches!(
                s.state,
                StepState::Failed | StepState::Undone | StepState::UndoFailed
            )
        });
    let list: Vec<&crate::journal::JournalStep> = if undo_mode {
        data.steps
            .iter()
            .rev()
            .filter(|s| !matches!(s.state, StepState::Pending | StepState::Undone))
            .collect()
    } else {
        data.steps
            .iter()
            .filter(|s| s.state != StepState::Applied)
            .collect()
    };
    let mut steps = Vec::new();
    for js in list {
        if let Some((rp, step)) = plan.step(js.id()) {
            let (from, to) = if undo_mode {
                (step.after.clone(), step.before.clone())
            } else {
                (step.before.clone(), step.after.clone())
            };
            steps.push(PlannedAction {
                registry: rp.registry.clone(),
                reference: step.reference.clone(),
                action: if undo_mode { "undo" } else { "apply" },
                from,
                to,
            });
        }
    }
    Ok(Prepared {
        preview: Preview {
            journal: Some(path.display().to_string()),
            target: Some(plan.target.version.clone()),
            mode: if undo_mode { Mode::Undo } else { Mode::Finish },
            steps,
            entries: Vec::new(),
        },
        ws,
        coordinator,
        lock,
        journal: Some(journal),
        undo,
    })
}

/// Every reason the journal's steps are not ones bagboy would plan (empty: all are).
async fn vet(
    ws: &Workspace,
    coordinator: &RollbackCoordinator<'_>,
    data: &JournalData,
    history: &crate::history::History,
) -> Vec<String> {
    let plan = data.plan();
    let mut problems = Vec::new();
    if !history.deployments.iter().any(|d| {
        d.version.as_str() == plan.target.version && d.timestamp.as_str() == plan.target.timestamp
    }) {
        problems.push(format!(
            "its target {} ({}) is not an entry of the history",
            plan.target.version, plan.target.timestamp
        ));
    }
    if data.header.steps != plan.changing_steps() {
        problems.push("its step list is not the plan's changing steps".into());
    }
    for (r, rp) in plan.registries.iter().enumerate() {
        let balancer = rp.format == crate::registry::traffic::TRAFFIC.name;
        match ws.config.find_registry(&rp.registry) {
            Some(cfg) if cfg.format == rp.format => {}
            // The balancer is configured under `deployment.traffic`; `backend_for` below
            // accepts only that one.
            None if balancer => {}
            _ => {
                problems.push(format!(
                    "{} ({}) is not a registry configured in bagboy.yaml",
                    rp.registry, rp.format
                ));
                continue;
            }
        }
        let backend = match coordinator.backend_for(rp) {
            Ok(b) => b,
            Err(e) => {
                problems.push(format!("{}: {e}", rp.registry));
                continue;
            }
        };
        let recorded: Vec<&crate::history::Package> = history
            .deployments
            .iter()
            .filter_map(|d| d.package(&rp.registry))
            .collect();
        for (i, step) in rp.steps.iter().enumerate() {
            if !step.action.changes() {
                continue;
            }
            let undo = data.step((r, i)).and_then(|s| s.undo.as_ref());
            if let Err(why) = backend
                .vet(step, undo, &recorded, &plan.target.version)
                .await
            {
                problems.push(format!("{} {}: {why}", rp.registry, step.reference));
            }
        }
    }
    problems
}

/// Carry out a prepared recovery and write the result to the history.
pub fn run(prepared: Prepared<'_>, listener: &dyn Listener) -> Result<RecoverReport, Error> {
    let Prepared {
        preview,
        ws,
        coordinator,
        lock,
        journal,
        undo,
    } = prepared;
    let report = match journal {
        None if preview.mode == Mode::Nothing => RecoverReport {
            journal: None,
            result: Recovered::Nothing,
            target: None,
            actions: Vec::new(),
            errors: Vec::new(),
        },
        None => recover_orphans(ws)?,
        Some(journal) => {
            let data = journal.snapshot();
            let rt = super::runtime()?;
            let (result, actions, errors) =
                rt.block_on(coordinator.resume(&journal, undo, listener));
            super::log_http_stats();
            let path = journal.path().display().to_string();
            if result != Recovered::Stuck {
                write_recovered(ws, &data, result == Recovered::Finished, &errors)?;
                let _ = journal.finish();
            }
            RecoverReport {
                journal: Some(path),
                result,
                target: Some(data.plan().target.version.clone()),
                actions,
                errors,
            }
        }
    };
    drop(lock);
    listener.on(&Event::Recovered { report: &report });
    Ok(report)
}

/// [`prepare`] then [`run`], without asking (tests, automation).
pub fn recover_with(
    ws: &Workspace,
    coordinator: RollbackCoordinator<'_>,
    undo: bool,
    listener: &dyn Listener,
) -> Result<RecoverReport, Error> {
    run(prepare_with(ws, coordinator, undo, listener)?, listener)
}

/// Record the outcome of a recovered operation in the history.
fn write_recovered(
    ws: &Workspace,
    data: &JournalData,
    finished: bool,
    errors: &[String],
) -> Result<(), Error> {
    let loaded = ws.store.load()?;
    let mut h = loaded.history.clone();
    let plan = data.plan();
    let pos = h.deployments.iter().position(|d| {
        d.timestamp.as_str() == data.header.entry_timestamp
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
    let promotion = plan.operation.as_deref() == Some("promote");
    if finished {
        let previous = h.current().filter(|c| *c != pos);
        if promotion {
            // The staged entry is replaced by the deployed one.
            for d in &mut h.deployments {
                if d.effective_status() == Some(Status::Staged)
                    && d.version.as_str() == plan.target.version
                {
                    d.set_status(Status::Superseded);
                }
            }
        }
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
            h.deployments[c].set_status(if promotion {
                Status::Superseded
            } else {
                Status::RolledBackFrom
            });
        }
    } else {
        let e = &mut h.deployments[pos];
        e.set_status(if promotion {
            Status::Failed
        } else {
            Status::RollbackFailed
        });
        let mut note = "interrupted; undone by `bagboy recover`".to_string();
        if !errors.is_empty() {
            note.push_str(&format!(" after: {}", errors.join("; ")));
        }
        e.notes = Some(append_note(e.notes.as_deref(), &note));
    }
    ws.store.save(&h, &loaded.fingerprint)?;
    Ok(())
}

/// `rolling_back` entries with no journal: the run died before touching any registry.
fn recover_orphans(ws: &Workspace) -> Result<RecoverReport, Error> {
    let loaded = ws.store.load()?;
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
    ws.store.save(&h, &loaded.fingerprint)?;
    Ok(RecoverReport {
        journal: None,
        result: Recovered::Undone,
        target: None,
        actions,
        errors: Vec::new(),
    })
}
