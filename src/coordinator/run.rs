//! The step runner shared by a rollback and `recover`: prepare, apply with bounded
//! concurrency, stop at the first failure, and undo in reverse order. Every transition is
//! journaled before bagboy goes on and emitted as an event.

use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use super::RollbackCoordinator;
use crate::error::Exit;
use crate::events::{Event, Listener};
use crate::journal::{Journal, Phase, StepState};
use crate::plan::{Action, Plan, StepId};
use crate::registry::{RegistryError, UndoState};

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub registry: String,
    pub reference: String,
    pub action: Action,
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
    /// Stopped before any change by what the user can fix (a token without the rights a
    /// step needs, found while preparing): exit 2, not 1.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
}

impl Outcome {
    pub fn exit(&self) -> Exit {
        match self.kind {
            OutcomeKind::RolledBack | OutcomeKind::AlreadyCurrent => Exit::Success,
            OutcomeKind::FailedUndone if self.refused => Exit::Usage,
            OutcomeKind::FailedUndone => Exit::FailedUndone,
            OutcomeKind::Partial => Exit::Partial,
        }
    }
}

/// What applying some steps did.
#[derive(Default)]
pub(crate) struct ApplyRun {
    pub applied: Vec<(StepId, serde_json::Value)>,
    /// Steps that returned an error after which the registry may still have changed.
    pub uncertain: Vec<StepId>,
    pub errors: Vec<String>,
    pub reports: Vec<StepReport>,
    /// Preparing failed, only for reasons the user can fix, before any step ran.
    pub refused: bool,
}

/// Run between a promotion's traffic steps: waits, checks health, and says whether to go on
/// (`Err(why)` stops the run and undoes every step taken).
pub type Gate<'a> = &'a (dyn Fn(&crate::plan::Step) -> futures_util::future::BoxFuture<'a, Result<(), String>>
         + Sync);

/// What executing a plan did to the registries (the history is the caller's).
pub(crate) struct Execution {
    pub kind: OutcomeKind,
    pub reports: Vec<StepReport>,
    pub errors: Vec<String>,
    /// Stopped before any change for a reason the user can fix.
    pub refused: bool,
}

impl RollbackCoordinator<'_> {
    /// Apply every changing step of `plan`; on a failure undo every step that landed or may
    /// have. The journal already holds the plan; each transition is appended to it.
    pub(crate) async fn execute(
        &self,
        plan: &Plan,
        journal: &Journal,
        listener: &dyn Listener,
        gate: Option<Gate<'_>>,
    ) -> Execution {
        // Traffic first (an instant blue-green switch, or a promotion's shifts one at a time
        // with the gate after each), alone; then every registry.
        let (first, rest): (Vec<StepId>, Vec<StepId>) =
            plan.changing_steps().into_iter().partition(|(r, _)| {
                plan.registries[*r].format == crate::registry::traffic::TRAFFIC.name
            });
        let mut run = match gate {
            None => self.apply_steps(plan, &first, journal, listener).await,
            Some(gate) => {
                let mut run = ApplyRun::default();
                for id in &first {
                    let one = self.apply_steps(plan, &[*id], journal, listener).await;
                    run.applied.extend(one.applied);
                    run.uncertain.extend(one.uncertain);
                    run.reports.extend(one.reports);
                    if !one.errors.is_empty() {
                        run.errors.extend(one.errors);
                        run.refused = one.refused && run.applied.is_empty();
                        break;
                    }
                    if let Some((rp, step)) = plan.step(*id) {
                        if let Err(why) = gate(step).await {
                            run.errors
                                .push(format!("{} {}: {why}", rp.registry, step.reference));
                            break;
                        }
                    }
                }
                run
            }
        };
        if run.errors.is_empty() && !rest.is_empty() {
            let more = self.apply_steps(plan, &rest, journal, listener).await;
            run.applied.extend(more.applied);
            run.uncertain.extend(more.uncertain);
            run.errors.extend(more.errors);
            run.reports.extend(more.reports);
            run.refused = more.refused && run.applied.is_empty() && run.uncertain.is_empty();
        }
        let mut reports = run.reports;
        let mut errors = run.errors;
        if errors.is_empty() {
            return Execution {
                kind: OutcomeKind::RolledBack,
                reports,
                errors,
                refused: false,
            };
        }
        let _ = journal.set_phase(Phase::Undoing);
        // A failed step may still have reached the registry (the answer to a PUT or a push
        // can be lost after the server acted), so it is undone too, as `Unknown`: each
        // backend's undo then checks first and leaves an untouched registry alone.
        let mut touched: Vec<(StepId, UndoState)> = run
            .applied
            .into_iter()
            .map(|(id, u)| (id, UndoState::Known(u)))
            .collect();
        touched.extend(run.uncertain.iter().map(|id| (*id, UndoState::Unknown)));
        touched.reverse();
        let mut undo_failed = false;
        for (id, err) in self.undo_steps(plan, &touched, journal, listener).await {
            let Some((rp, step)) = plan.step(id) else {
                continue;
            };
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
        Execution {
            kind: if undo_failed {
                OutcomeKind::Partial
            } else {
                OutcomeKind::FailedUndone
            },
            refused: run.refused && !undo_failed,
            reports,
            errors,
        }
    }

    /// Prepare the registries `ids` touch, then apply `ids` with bounded concurrency; after
    /// the first failure no new step is launched (those in flight finish).
    pub(crate) async fn apply_steps(
        &self,
        plan: &Plan,
        ids: &[StepId],
        journal: &Journal,
        listener: &dyn Listener,
    ) -> ApplyRun {
        let mut run = ApplyRun::default();
        // Fetch what the steps need first: a registry that cannot serve the target's manifest
        // fails here, before anything anywhere has changed.
        let limit = self.config.rollback.concurrency.max(1);
        let mut backends = Vec::new();
        let mut failures: Vec<Option<String>> = Vec::new();
        for (r, rp) in plan.registries.iter().enumerate() {
            let (backend, failure) = if !ids.iter().any(|(x, _)| *x == r) {
                (None, None)
            } else {
                match self.backend_for(rp) {
                    Ok(b) => (Some(b), None),
                    Err(e) => (None, Some(format!("{}: {e}", rp.registry))),
                }
            };
            backends.push(backend);
            failures.push(failure);
        }
        // Registries are prepared side by side, at most `concurrency` at once; failures are
        // still reported in plan order.
        let prepared: Vec<(usize, Result<(), RegistryError>)> = futures_util::stream::iter(
            backends
                .iter()
                .enumerate()
                .filter_map(|(r, b)| b.as_ref().map(|b| (r, b))),
        )
        .map(|(r, b)| async move { (r, b.prepare(&plan.registries[r].steps).await) })
        .buffered(limit)
        .collect()
        .await;
        // Failures that are the user's to fix (a token without the rights, a backend that
        // cannot be opened from the config) make the run a refusal: nothing has changed.
        let mut input = failures.iter().all(|f| f.is_none());
        for (r, res) in prepared {
            if let Err(e) = res {
                input &= e.is_input();
                failures[r] = Some(e.named(&plan.registries[r].registry));
            }
        }
        run.errors.extend(failures.into_iter().flatten());
        if !run.errors.is_empty() {
            run.refused = input;
            return run;
        }
        let mut queue = ids.iter().copied();
        let mut in_flight = FuturesUnordered::new();
        // Journal records not yet on disk: the results of finished steps. They go to disk with
        // the next steps' starts in one fdatasync (group commit), and always before the runner
        // waits again or returns: a step's start is durable before its request is sent, a
        // result before anything else happens.
        let mut pending: Vec<(StepId, StepState, Option<serde_json::Value>, Option<String>)> =
            Vec::new();
        let launch = |id: StepId| {
            let rp = &plan.registries[id.0];
            let step = &rp.steps[id.1];
            let backend = backends[id.0].clone();
            let span =
                tracing::info_span!("step", registry = %rp.registry, reference = %step.reference);
            tracing::Instrument::instrument(
                async move {
                    let t = Instant::now();
                    let res = match backend {
                        Some(b) => b.apply(step).await,
                        None => Err(RegistryError::Invalid {
                            registry: rp.registry.clone(),
                            message: "no backend".into(),
                        }),
                    };
                    (id, res, t.elapsed())
                },
                span,
            )
        };
        let mut failed = false;
        let mut finished = Vec::new();
        loop {
            let mut starting = Vec::new();
            while !failed && in_flight.len() + starting.len() < limit {
                match queue.next() {
                    Some(id) => starting.push(id),
                    None => break,
                }
            }
            for id in &starting {
                let rp = &plan.registries[id.0];
                listener.on(&Event::StepStarted {
                    registry: &rp.registry,
                    step: &rp.steps[id.1],
                });
                pending.push((*id, StepState::Started, None, None));
            }
            let _ = journal.record_all(std::mem::take(&mut pending));
            for id in starting {
                in_flight.push(launch(id));
            }
            // Wait for one step, then take every other one already finished.
            let Some(first) = in_flight.next().await else {
                break;
            };
            finished.push(first);
            while let Some(Some(more)) = futures_util::FutureExt::now_or_never(in_flight.next()) {
                finished.push(more);
            }
            for (id, res, elapsed) in finished.drain(..) {
                let rp = &plan.registries[id.0];
                let step = &rp.steps[id.1];
                let err = res.as_ref().err().map(|e| e.to_string());
                listener.on(&Event::StepFinished {
                    registry: &rp.registry,
                    step,
                    elapsed,
                    error: err.as_deref(),
                });
                run.reports
                    .push(report(&rp.registry, step, elapsed, err.clone()));
                match res {
                    Ok(undo) => {
                        pending.push((id, StepState::Applied, Some(undo.clone()), None));
                        run.applied.push((id, undo));
                    }
                    Err(e) => {
                        pending.push((id, StepState::Failed, None, Some(e.to_string())));
                        if e.may_have_landed() {
                            run.uncertain.push(id);
                        }
                        run.errors.push(format!(
                            "{} {}: {}",
                            rp.registry,
                            step.reference,
                            e.detail(&rp.registry)
                        ));
                        failed = true;
                    }
                }
            }
        }
        let _ = journal.record_all(pending);
        run
    }

    /// Undo `steps` in the order given, journaling each result; returns each step's error.
    pub(crate) async fn undo_steps(
        &self,
        plan: &Plan,
        steps: &[(StepId, UndoState)],
        journal: &Journal,
        listener: &dyn Listener,
    ) -> Vec<(StepId, Option<String>)> {
        let mut out = Vec::new();
        for (id, state) in steps {
            let Some((rp, step)) = plan.step(*id) else {
                continue;
            };
            let err = match self.backend_for(rp) {
                Ok(b) => b.undo(step, state).await.err().map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            listener.on(&Event::UndoFinished {
                registry: &rp.registry,
                step,
                error: err.as_deref(),
            });
            let new_state = if err.is_some() {
                StepState::UndoFailed
            } else {
                StepState::Undone
            };
            let _ = journal.record(*id, new_state, None, err.clone());
            out.push((*id, err));
        }
        out
    }
}

fn report(
    registry: &str,
    step: &crate::plan::Step,
    elapsed: Duration,
    error: Option<String>,
) -> StepReport {
    StepReport {
        registry: registry.to_string(),
        reference: step.reference.clone(),
        action: step.action.clone(),
        millis: elapsed.as_millis(),
        ok: error.is_none(),
        error,
        undone: false,
    }
}
