//! `recover`: finish or undo the oldest interrupted rollback from its journal, and write the
//! result to the history.

use super::{append_note, Workspace};
use crate::coordinator::{errors_to_error, RecoverReport, Recovered, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::events::{Event, Listener};
use crate::history::{Deployment, Status, Version};
use crate::journal::{self, Journal, JournalData};

pub fn recover(
    ws: &Workspace,
    undo: bool,
    listener: &dyn Listener,
) -> Result<RecoverReport, Error> {
    recover_with(ws, RollbackCoordinator::new(&ws.config), undo, listener)
}

/// [`recover`] with a given coordinator (fake backends, in tests).
pub fn recover_with(
    ws: &Workspace,
    coordinator: RollbackCoordinator<'_>,
    undo: bool,
    listener: &dyn Listener,
) -> Result<RecoverReport, Error> {
    let command = super::command_line();
    listener.on(&Event::Started { command: &command });
    let lock = ws.lock(&command)?;
    let report = match journal::unfinished(&ws.store.state_dir())
        .into_iter()
        .next()
    {
        None => recover_orphans(ws)?,
        Some(path) => {
            let journal =
                Journal::open(&path).map_err(|e| Error::Failed(e.to_string(), Exit::Partial))?;
            let data = journal.snapshot();
            // Every registry must open before anything is touched.
            for rp in &data.plan().registries {
                if let Err(e) = coordinator.backend_for(rp) {
                    return Err(errors_to_error(
                        "opening registries for recovery",
                        vec![(rp.registry.clone(), e)],
                    ));
                }
            }
            let rt = super::runtime()?;
            let (result, actions, errors) =
                rt.block_on(coordinator.resume(&journal, undo, listener));
            super::log_http_stats();
            if result != Recovered::Stuck {
                write_recovered(ws, &data, result == Recovered::Finished, &errors)?;
                let _ = journal.finish();
            }
            RecoverReport {
                journal: Some(path.display().to_string()),
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
