//! Resuming an interrupted rollback from its journal: finish it (re-applying is idempotent)
//! or undo it, with the same step runner as a rollback.

use serde::Serialize;

use super::RollbackCoordinator;
use crate::events::Listener;
use crate::journal::{Journal, Phase, StepState};
use crate::plan::StepId;
use crate::registry::UndoState;

/// What `bagboy recover` did.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
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

impl RollbackCoordinator<'_> {
    /// Finish the journaled rollback, or undo it when it was already failing (or `undo`).
    /// Returns the result with what was done and what went wrong.
    pub(crate) async fn resume(
        &self,
        journal: &Journal,
        undo: bool,
        listener: &dyn Listener,
    ) -> (Recovered, Vec<String>, Vec<String>) {
        let data = journal.snapshot();
        let plan = data.plan().clone();
        let mut actions = Vec::new();
        let mut errors = Vec::new();
        let mut undo_mode = undo
            || data.phase == Phase::Undoing
            || data.steps.iter().any(|s| {
                matches!(
                    s.state,
                    StepState::Failed | StepState::Undone | StepState::UndoFailed
                )
            });

        if !undo_mode {
            // Re-applying is idempotent (same manifest bytes; a tap already at the content is
            // left alone), so every step not known to be applied is applied again.
            let todo: Vec<StepId> = data
                .steps
                .iter()
                .filter(|s| s.state != StepState::Applied)
                .map(|s| s.id())
                .collect();
            // Traffic steps one at a time and in order (a promotion's shifts build on each
            // other), then every registry.
            let (traffic, rest): (Vec<StepId>, Vec<StepId>) =
                todo.into_iter().partition(|(r, _)| {
                    plan.registries[*r].format == crate::registry::traffic::TRAFFIC.name
                });
            let mut run = super::run::ApplyRun::default();
            for id in traffic
                .iter()
                .map(|id| vec![*id])
                .chain(std::iter::once(rest))
            {
                if id.is_empty() {
                    continue;
                }
                let one = self.apply_steps(&plan, &id, journal, listener).await;
                run.reports.extend(one.reports);
                if !one.errors.is_empty() {
                    run.errors.extend(one.errors);
                    break;
                }
            }
            for r in run.reports.iter().filter(|r| r.ok) {
                actions.push(format!("applied {} {}", r.registry, r.reference));
            }
            if !run.errors.is_empty() {
                errors.extend(run.errors);
                undo_mode = true;
            }
        }

        let mut stuck = false;
        if undo_mode {
            let _ = journal.set_phase(Phase::Undoing);
            let todo: Vec<(StepId, UndoState)> = journal
                .snapshot()
                .steps
                .iter()
                .rev()
                .filter(|s| !matches!(s.state, StepState::Pending | StepState::Undone))
                .map(|s| {
                    // An undo record means the step landed; without one it may have.
                    let state = match &s.undo {
                        Some(u) => UndoState::Known(u.clone()),
                        None => UndoState::Unknown,
                    };
                    (s.id(), state)
                })
                .collect();
            for (id, err) in self.undo_steps(&plan, &todo, journal, listener).await {
                let Some((rp, step)) = plan.step(id) else {
                    continue;
                };
                match err {
                    None => actions.push(format!("undid {} {}", rp.registry, step.reference)),
                    Some(e) => {
                        errors.push(format!("undo of {} {}: {e}", rp.registry, step.reference));
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
        (result, actions, errors)
    }
}
