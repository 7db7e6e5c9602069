//! The coordinator and the operations with in-memory fake backends: compensation order,
//! partial failure, uncertain steps, recover decisions and write-back, without a server.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::*;
use crate::config::RegistryConfig;
use crate::events::{Event, Listener, Silent};
use crate::history::{Package, Status, Store, Version};
use crate::journal::{Header, Journal, StepState, JOURNAL_FORMAT};
use crate::ops::Workspace;
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{BackendError, BoxFuture, PlanOutcome, UndoState};

/// A fake backend error, classified as the test says.
#[derive(Debug)]
struct FakeError {
    landed: bool,
}

impl std::fmt::Display for FakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.landed {
            "answer lost"
        } else {
            "refused"
        })
    }
}
impl std::error::Error for FakeError {}
impl BackendError for FakeError {
    fn may_have_landed(&self) -> bool {
        self.landed
    }
    fn is_input(&self) -> bool {
        false
    }
}

/// How a fake registry misbehaves.
#[derive(Clone, Default)]
struct Faults {
    /// `apply` of this reference fails; `(lands anyway, says it may have landed)`.
    apply: BTreeMap<String, (bool, bool)>,
    /// `undo` of this reference fails.
    undo: Vec<String>,
}

/// Tags → digests in memory; every call is logged as `<op> <registry> <ref>`.
struct Fake {
    name: String,
    tags: Mutex<BTreeMap<String, String>>,
    faults: Faults,
    log: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn log(&self, op: &str, reference: &str) {
        self.log
            .lock()
            .unwrap()
            .push(format!("{op} {} {reference}", self.name));
    }
}

impl Registry for Fake {
    fn format(&self) -> &str {
        "fake"
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(async move {
            let pkg = input
                .target_package
                .cloned()
                .unwrap_or_else(|| Package::new("fake", &self.name));
            let digest = pkg.digest.clone().unwrap_or_default();
            let tags = self.tags.lock().unwrap();
            let steps = pkg
                .tags
                .iter()
                .map(|t| {
                    let live = tags.get(t).cloned();
                    let mut s = Step::new(
                        if live.as_deref() == Some(digest.as_str()) {
                            Action::unchanged()
                        } else {
                            Action::change("move_tag")
                        },
                        t,
                    );
                    s.before = live;
                    s.after = Some(digest.clone());
                    s
                })
                .collect();
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: "fake".into(),
                    registry: self.name.clone(),
                    steps,
                    notes: Vec::new(),
                },
                refusals: Vec::new(),
                warnings: Vec::new(),
            })
        })
    }
    fn apply<'a>(
        &'a self,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistryError>> {
        Box::pin(async move {
            self.log("apply", &step.reference);
            if let Some((lands, says)) = self.faults.apply.get(&step.reference) {
                if *lands {
                    self.tags
                        .lock()
                        .unwrap()
                        .insert(step.reference.clone(), step.after.clone().unwrap());
                }
                return Err(FakeError { landed: *says }.into());
            }
            self.tags
                .lock()
                .unwrap()
                .insert(step.reference.clone(), step.after.clone().unwrap());
            Ok(serde_json::json!({ "before": step.before }))
        })
    }
    fn undo<'a>(
        &'a self,
        step: &'a Step,
        state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let kind = match state {
                UndoState::Known(_) => "undo",
                UndoState::Unknown => "undo?",
            };
            self.log(kind, &step.reference);
            if self.faults.undo.contains(&step.reference) {
                return Err(FakeError { landed: false }.into());
            }
            let mut tags = self.tags.lock().unwrap();
            match &step.before {
                Some(b) => tags.insert(step.reference.clone(), b.clone()),
                None => tags.remove(&step.reference),
            };
            Ok(())
        })
    }
    fn observe_release<'a>(
        &'a self,
        _version: &'a Version,
    ) -> BoxFuture<'a, Result<crate::registry::Observation, RegistryError>> {
        Box::pin(async move {
            let tags = self.tags.lock().unwrap();
            let mut p = Package::new("fake", &self.name);
            p.digest = tags.get("latest").cloned();
            p.tags = tags.keys().cloned().collect();
            Ok(p.into())
        })
    }
    fn vet<'a>(
        &'a self,
        step: &'a Step,
        _undo: Option<&'a serde_json::Value>,
        recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let known = |d: &Option<String>| d.is_none() || recorded.iter().any(|p| &p.digest == d);
            if known(&step.after) && known(&step.before) {
                Ok(())
            } else {
                Err("unrecorded digest".into())
            }
        })
    }

    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Option<Package> {
        let mut p = target
            .cloned()
            .unwrap_or_else(|| Package::new("fake", &self.name));
        p.tags = plan.steps.iter().map(|s| s.reference.clone()).collect();
        Some(p)
    }
}

/// Two fake registries, `a` (tags x, y, z) and `b` (tag w), at release 2; the history has
/// releases 1 and 2 with every tag recorded.
struct World {
    dir: tempfile::TempDir,
    config: Config,
    fakes: Vec<Arc<Fake>>,
    log: Arc<Mutex<Vec<String>>>,
}

impl World {
    fn new(faults: &[(&str, Faults)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let regs = [("a", vec!["x", "y", "z"]), ("b", vec!["w"])];
        let mut config = Config::default();
        let mut fakes = Vec::new();
        let mut yaml = String::from("deployments:\n");
        for (v, ts, status) in [
            ("v1.0.0", "2026-01-01T00:00:00Z", "superseded"),
            ("v2.0.0", "2026-02-01T00:00:00Z", "deployed"),
        ] {
            yaml.push_str(&format!(
                "  - version: {v}\n    timestamp: \"{ts}\"\n    status: {status}\n    packages:\n"
            ));
            for (name, tags) in &regs {
                yaml.push_str(&format!(
                    "      - format: fake\n        registry: {name}\n        digest: \"sha256:{}\"\n        tags: [{}]\n",
                    digest(v).trim_start_matches("sha256:"),
                    tags.join(", ")
                ));
            }
        }
        for (name, tags) in &regs {
            config.registries.push(RegistryConfig::new("fake", name));
            fakes.push(Arc::new(Fake {
                name: name.to_string(),
                tags: Mutex::new(
                    tags.iter()
                        .map(|t| (t.to_string(), digest("v2.0.0")))
                        .collect(),
                ),
                faults: faults
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, f)| f.clone())
                    .unwrap_or_default(),
                log: log.clone(),
            }));
        }
        std::fs::create_dir_all(dir.path().join(".bagboy")).unwrap();
        std::fs::write(dir.path().join(".bagboy/deployment-history.yml"), yaml).unwrap();
        World {
            dir,
            config,
            fakes,
            log,
        }
    }

    fn coordinator(&self) -> RollbackCoordinator<'_> {
        let fakes = self.fakes.clone();
        RollbackCoordinator::with_opener(
            &self.config,
            Box::new(move |cfg| {
                let f = fakes.iter().find(|f| f.name == cfg.registry).unwrap();
                Ok(f.clone() as Arc<dyn Registry>)
            }),
        )
    }

    fn workspace(&self) -> Workspace {
        Workspace::new(
            self.config.clone(),
            Store::new(self.dir.path().join(".bagboy/deployment-history.yml")),
        )
    }

    fn tags(&self, name: &str) -> BTreeMap<String, String> {
        self.fakes
            .iter()
            .find(|f| f.name == name)
            .unwrap()
            .tags
            .lock()
            .unwrap()
            .clone()
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn all_at(&self, v: &str) -> bool {
        ["a", "b"]
            .iter()
            .all(|n| self.tags(n).values().all(|d| *d == digest(v)))
    }

    /// Rollback to v1.0.0 through the operations layer.
    fn rollback(&self, ws: &Workspace) -> Outcome {
        let req = Request {
            version: Some("v1.0.0".into()),
            ..Request::default()
        };
        let prepared =
            crate::ops::rollback::prepare_with(ws, self.coordinator(), &req, false, None, &Silent)
                .unwrap();
        crate::ops::rollback::execute(prepared, &Silent).unwrap()
    }
}

fn digest(v: &str) -> String {
    let c = match v {
        "v1.0.0" => '1',
        _ => '2',
    };
    format!("sha256:{}", c.to_string().repeat(64))
}

fn faults_apply(reference: &str, lands: bool, says: bool) -> Faults {
    Faults {
        apply: [(reference.to_string(), (lands, says))]
            .into_iter()
            .collect(),
        undo: Vec::new(),
    }
}

/// Sequential runs make the undo order exact.
fn sequential(w: &mut World) {
    w.config.rollback.concurrency = 1;
}

#[test]
fn a_rollback_applies_every_step_and_writes_back() {
    let mut w = World::new(&[]);
    sequential(&mut w);
    let ws = w.workspace();
    let outcome = w.rollback(&ws);
    assert_eq!(outcome.kind, OutcomeKind::RolledBack);
    assert!(w.all_at("v1.0.0"));
    assert_eq!(
        w.log(),
        ["apply a x", "apply a y", "apply a z", "apply b w"]
    );
    let h = ws.store.load().unwrap().history;
    let current = &h.deployments[h.current().unwrap()];
    assert_eq!(current.version.as_str(), "v1.0.0");
    assert_eq!(current.rollback_of.as_deref(), Some("v2.0.0"));
    let old = h
        .deployments
        .iter()
        .find(|d| d.version.as_str() == "v2.0.0")
        .unwrap();
    assert_eq!(old.effective_status(), Some(Status::RolledBackFrom));
    assert!(crate::journal::unfinished(&ws.store.state_dir()).is_empty());
    assert!(!ws.store.lock_path().exists());

    // Again: everything matches, nothing is applied, nothing written.
    let bytes = std::fs::read(ws.store.path()).unwrap();
    let again = w.rollback(&ws);
    assert_eq!(again.kind, OutcomeKind::AlreadyCurrent);
    assert_eq!(w.log().len(), 4);
    assert_eq!(std::fs::read(ws.store.path()).unwrap(), bytes);
}

#[test]
fn a_failed_step_undoes_the_applied_ones_in_reverse_order() {
    let mut w = World::new(&[("b", faults_apply("w", false, false))]);
    sequential(&mut w);
    let ws = w.workspace();
    let outcome = w.rollback(&ws);
    assert_eq!(outcome.kind, OutcomeKind::FailedUndone, "{outcome:?}");
    assert_eq!(
        w.log(),
        [
            "apply a x",
            "apply a y",
            "apply a z",
            "apply b w",
            // `w` was refused (cannot have landed): not undone.
            "undo a z",
            "undo a y",
            "undo a x",
        ]
    );
    assert!(w.all_at("v2.0.0"), "every tag is back");
    let h = ws.store.load().unwrap().history;
    assert_eq!(
        h.deployments[h.current().unwrap()].version.as_str(),
        "v2.0.0"
    );
    assert!(h
        .deployments
        .iter()
        .any(|d| d.effective_status() == Some(Status::RollbackFailed)));
    assert!(crate::journal::unfinished(&ws.store.state_dir()).is_empty());
}

#[test]
fn a_step_that_may_have_landed_is_undone_as_unknown() {
    // The PUT's answer was lost after the registry acted.
    let mut w = World::new(&[("a", faults_apply("y", true, true))]);
    sequential(&mut w);
    let ws = w.workspace();
    let outcome = w.rollback(&ws);
    assert_eq!(outcome.kind, OutcomeKind::FailedUndone);
    assert_eq!(w.log(), ["apply a x", "apply a y", "undo? a y", "undo a x"]);
    assert!(w.all_at("v2.0.0"));
}

#[test]
fn an_undo_that_fails_leaves_the_journal_for_recover() {
    let mut w = World::new(&[(
        "a",
        Faults {
            apply: [("z".to_string(), (false, false))].into_iter().collect(),
            undo: vec!["x".into()],
        },
    )]);
    sequential(&mut w);
    let ws = w.workspace();
    let outcome = w.rollback(&ws);
    assert_eq!(outcome.kind, OutcomeKind::Partial);
    assert_eq!(outcome.exit(), crate::Exit::Partial);
    let journals = crate::journal::unfinished(&ws.store.state_dir());
    assert_eq!(journals.len(), 1);
    let data = Journal::open(&journals[0]).unwrap().snapshot();
    let state = |r: &str| {
        let idx = data.plan().registries[0]
            .steps
            .iter()
            .position(|s| s.reference == r)
            .unwrap();
        data.step((0, idx)).unwrap().state
    };
    assert_eq!(state("x"), StepState::UndoFailed);
    assert_eq!(state("y"), StepState::Undone);
    assert_eq!(state("z"), StepState::Failed);
    // The history still says rolling_back: a new rollback is refused until recover.
    let req = Request {
        version: Some("v1.0.0".into()),
        ..Request::default()
    };
    let err = crate::ops::rollback::prepare_with(&ws, w.coordinator(), &req, false, None, &Silent)
        .err()
        .unwrap();
    assert!(err.to_string().contains("did not finish"), "{err}");
}

/// A journal as a run killed after `applied` steps would leave it.
fn interrupted(w: &World, ws: &Workspace, applied: usize, failed: bool) -> std::path::PathBuf {
    interrupted_with(w, ws, applied, failed, |_| {})
}

fn interrupted_with(
    w: &World,
    ws: &Workspace,
    applied: usize,
    failed: bool,
    edit: impl FnOnce(&mut crate::plan::Plan),
) -> std::path::PathBuf {
    let loaded = ws.store.load().unwrap();
    let rt = crate::ops::runtime().unwrap();
    let coord = w.coordinator();
    let mut plan = rt
        .block_on(coord.plan(&loaded.history, 0, &Request::default(), "h", None))
        .unwrap();
    edit(&mut plan);
    let changing = plan.changing_steps();
    let j = Journal::create(
        &ws.store.state_dir(),
        Header {
            journal: JOURNAL_FORMAT,
            id: "1-1".into(),
            started_at: "2026-03-01T00:00:00Z".into(),
            pid: 1,
            command: "bagboy rollback".into(),
            entry_timestamp: "2026-03-01T00:00:00Z".into(),
            plan: plan.clone(),
            steps: changing.clone(),
        },
    )
    .unwrap();
    for (i, id) in changing.iter().enumerate() {
        let (rp, step) = plan.step(*id).unwrap();
        let fake = w.fakes.iter().find(|f| f.name == rp.registry).unwrap();
        if i < applied {
            j.record(*id, StepState::Started, None, None).unwrap();
            fake.tags
                .lock()
                .unwrap()
                .insert(step.reference.clone(), step.after.clone().unwrap());
            j.record(*id, StepState::Applied, Some(serde_json::json!({})), None)
                .unwrap();
        } else if i == applied {
            j.record(*id, StepState::Started, None, None).unwrap();
            if failed {
                j.record(*id, StepState::Failed, None, Some("boom".into()))
                    .unwrap();
            }
            break;
        }
    }
    j.path().to_path_buf()
}

#[test]
fn recover_finishes_an_interrupted_rollback() {
    let mut w = World::new(&[]);
    sequential(&mut w);
    let ws = w.workspace();
    interrupted(&w, &ws, 2, false);
    let report = crate::ops::recover::recover_with(&ws, w.coordinator(), false, &Silent).unwrap();
    assert_eq!(report.result, Recovered::Finished, "{report:?}");
    // Only the steps not known to be applied were applied again.
    assert_eq!(w.log(), ["apply a z", "apply b w"]);
    assert!(w.all_at("v1.0.0"));
    assert!(crate::journal::unfinished(&ws.store.state_dir()).is_empty());
}

#[test]
fn recover_undoes_a_rollback_that_was_failing() {
    let mut w = World::new(&[]);
    sequential(&mut w);
    let ws = w.workspace();
    interrupted(&w, &ws, 2, true);
    let report = crate::ops::recover::recover_with(&ws, w.coordinator(), false, &Silent).unwrap();
    assert_eq!(report.result, Recovered::Undone, "{report:?}");
    assert_eq!(w.log(), ["undo? a z", "undo a y", "undo a x"]);
    assert!(w.all_at("v2.0.0"));
}

#[test]
fn recover_undo_on_request() {
    let mut w = World::new(&[]);
    sequential(&mut w);
    let ws = w.workspace();
    interrupted(&w, &ws, 1, false);
    let report = crate::ops::recover::recover_with(&ws, w.coordinator(), true, &Silent).unwrap();
    assert_eq!(report.result, Recovered::Undone);
    assert_eq!(w.log(), ["undo? a y", "undo a x"]);
    assert!(w.all_at("v2.0.0"));
}

#[test]
fn events_reach_every_listener_in_order() {
    struct Seen(Mutex<Vec<String>>);
    impl Listener for Seen {
        fn on(&self, e: &Event<'_>) {
            let s = match e {
                Event::Started { .. } => "started".to_string(),
                Event::Planned { .. } => "planned".to_string(),
                Event::StepStarted { step, .. } => format!("start {}", step.reference),
                Event::StepFinished { step, .. } => format!("done {}", step.reference),
                Event::Finished { outcome, .. } => format!("finished {:?}", outcome.kind),
                _ => "other".to_string(),
            };
            self.0.lock().unwrap().push(s);
        }
    }
    let mut w = World::new(&[]);
    sequential(&mut w);
    w.fakes.truncate(1);
    w.config.registries.truncate(1);
    let ws = w.workspace();
    let seen = Seen(Mutex::new(Vec::new()));
    let req = Request {
        version: Some("v1.0.0".into()),
        registries: vec!["a".into()],
        force: false,
        skip_validation: false,
    };
    let p =
        crate::ops::rollback::prepare_with(&ws, w.coordinator(), &req, false, None, &seen).unwrap();
    crate::ops::rollback::execute(p, &seen).unwrap();
    assert_eq!(
        *seen.0.lock().unwrap(),
        [
            "started",
            "planned",
            "start x",
            "done x",
            "start y",
            "done y",
            "start z",
            "done z",
            "finished RolledBack"
        ]
    );
}

#[test]
fn recover_refuses_a_forged_journal_and_touches_nothing() {
    let mut w = World::new(&[]);
    sequential(&mut w);
    let ws = w.workspace();
    let evil = format!("sha256:{}", "e".repeat(64));
    interrupted_with(&w, &ws, 0, false, |plan| {
        plan.registries[0].steps[0].after = Some(evil.clone());
    });
    let before = (
        w.tags("a"),
        w.tags("b"),
        std::fs::read(ws.store.path()).unwrap(),
    );
    let err = crate::ops::recover::recover_with(&ws, w.coordinator(), false, &Silent)
        .expect_err("refused");
    assert_eq!(err.exit(), crate::Exit::Usage, "{err}");
    assert!(err.to_string().contains("unrecorded digest"), "{err}");
    assert!(w.log().is_empty(), "no registry call: {:?}", w.log());
    assert_eq!(
        (
            w.tags("a"),
            w.tags("b"),
            std::fs::read(ws.store.path()).unwrap()
        ),
        before
    );
}
