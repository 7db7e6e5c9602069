//! Crash safety through the real `bagboy` binary: injected failures at every request, SIGKILL
//! at every request and during the tap push, concurrent runs, stale locks, and secrets.
//!
//! The scenario: two Docker repositories on one real `docker-registry`, both reached through a
//! `FaultProxy` (bagboy's config names the proxy address), plus a Homebrew tap (a `file://` bare
//! repository). v1.0.0, v1.1.0 and v1.2.0 are published by test-side pushes and formula commits
//! and recorded; the rollback goes to v1.1.0. Every check of a registry's state bypasses the
//! proxy (plain HTTP to the registry, a fresh clone of the tap).
//!
//! `BAGBOY_HTTP_RETRIES=0` everywhere: one injected failure is final.
//!
//! `cargo test --test crash_safety -- --nocapture` prints the failure matrix and the kill points.

use crate::support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::Project;
use support::proxy::{Fault, FaultProxy, Seen};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry, TokenUser};

const VERSIONS: [&str; 3] = ["v1.0.0", "v1.1.0", "v1.2.0"];
const TAGS: [&str; 8] = [
    "v1.0.0", "v1.1.0", "v1.2.0", "latest", "1", "1.0", "1.1", "1.2",
];
const FORMULA: &str = "Formula/myapp.rb";
const TARGET: &str = "v1.1.0";
const ROLLBACK: [&str; 4] = ["rollback", "--version", TARGET, "--yes"];
/// How long a test waits for bagboy to reach a request.
const WAIT: Duration = Duration::from_secs(30);
/// Scenarios run on this many threads at once (each is mostly waiting on processes).
const WORKERS: usize = 3;

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

fn aliases(version: &str) -> [&'static str; 3] {
    match version {
        "v1.0.0" => ["latest", "1", "1.0"],
        "v1.1.0" => ["latest", "1", "1.1"],
        _ => ["latest", "1", "1.2"],
    }
}

/// Where a registry (or everything) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    Pre,
    Target,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            At::Pre => "pre-rollback",
            At::Target => "target",
        })
    }
}

type Snapshot = BTreeMap<&'static str, Option<String>>;

/// The result of one bagboy run.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// One project: its proxy, two repositories, a tap and a history with three releases.
struct Scenario<'r> {
    reg: &'r TestRegistry,
    proxy: FaultProxy,
    project: Project,
    tap: TestTap,
    id: usize,
    /// Repository paths on the registry.
    repos: Vec<String>,
    pre: Vec<Snapshot>,
    target: Vec<Snapshot>,
    formula_pre: String,
    /// The formula after a successful rollback, once a baseline has shown it.
    formula_target: Option<String>,
    tap_head_pre: String,
    history_pre: Vec<u8>,
    /// Timestamp of the v1.2.0 entry (the current one before the rollback).
    current_ts: String,
    env: Vec<(String, String)>,
    /// Requests the setup sent through the proxy; the rollback's request k is `base + k`.
    base: usize,
}

impl<'r> Scenario<'r> {
    fn new(reg: &'r TestRegistry) -> Scenario<'r> {
        Scenario::with_env(reg, &[])
    }

    fn with_env(reg: &'r TestRegistry, env: &[(&str, &str)]) -> Scenario<'r> {
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], reg.port())));
        let id = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let repos = vec![format!("acme/app{id}"), format!("acme/web{id}")];
        let project = Project::new();
        std::fs::create_dir_all(project.path().join("docker-config")).unwrap();
        let tap = TestTap::new();
        let mut yaml = String::from("name: myapp\nregistries:\n");
        for r in &repos {
            yaml.push_str(&format!(
                "  - format: docker\n    registry: \"{}/{r}\"\n    insecure: true\n",
                proxy.addr()
            ));
        }
        yaml.push_str(&format!(
            "  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n    formula: myapp\n",
            tap.url()
        ));
        project.write("bagboy.yaml", &yaml);
        let mut env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if env.iter().any(|(k, _)| k == "BAGBOY_REGISTRY_USERNAME") {
            // Env credentials are bound to the host bagboy talks to (the proxy).
            env.push(("BAGBOY_REGISTRY_HOST".into(), proxy.addr().to_string()));
        }
        let mut sc = Scenario {
            reg,
            proxy,
            project,
            tap,
            id,
            repos,
            pre: Vec::new(),
            target: Vec::new(),
            formula_pre: String::new(),
            formula_target: None,
            tap_head_pre: String::new(),
            history_pre: Vec::new(),
            current_ts: String::new(),
            env,
            base: 0,
        };
        let mut v110 = Vec::new();
        for v in VERSIONS {
            for r in &sc.repos {
                let digest = reg.push_image(r, v);
                for a in aliases(v) {
                    reg.put_tag(r, a, &digest);
                }
                if v == TARGET {
                    v110.push(digest);
                }
            }
            sc.tap.commit_file(
                FORMULA,
                &goreleaser_formula("myapp", v.trim_start_matches('v')),
                &format!("Brew formula update for myapp version {v}"),
            );
            sc.tap.push();
            let run = sc.run(&["record", "--version", v]);
            assert_eq!(run.code, Some(0), "record {v}: {}", run.show());
        }
        sc.pre = sc.docker_state();
        sc.target = sc
            .pre
            .iter()
            .zip(&v110)
            .map(|(snap, d)| {
                let mut t = snap.clone();
                t.insert("latest", Some(d.clone()));
                t.insert("1", Some(d.clone()));
                t
            })
            .collect();
        sc.formula_pre = sc.formula();
        sc.tap_head_pre = sc.tap.head();
        sc.history_pre = sc.project.history_bytes();
        let h = sc.history().expect("history after setup");
        sc.current_ts = h
            .iter()
            .find(|e| e["version"] == "v1.2.0")
            .and_then(|e| e["timestamp"].as_str())
            .expect("v1.2.0 recorded")
            .to_string();
        sc.base = sc.proxy.count();
        sc
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let p = self.project.path();
        let mut c = Command::new(assert_cmd::cargo::cargo_bin("bagboy"));
        c.current_dir(p)
            .args(args)
            .env_remove("BAGBOY_CONFIG")
            .env_remove("BAGBOY_HISTORY")
            .env_remove("BAGBOY_LOG")
            .env_remove("RUST_LOG")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GIT_CONFIG_COUNT")
            .env_remove("BAGBOY_REGISTRY_USERNAME")
            .env_remove("BAGBOY_REGISTRY_PASSWORD")
            .env_remove("BAGBOY_REGISTRY_HOST")
            .env("NO_COLOR", "1")
            .env("BAGBOY_CACHE_DIR", p.join(".cache"))
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("DOCKER_CONFIG", p.join("docker-config"))
            .env("BAGBOY_GIT_AUTHOR", "bagboy-test <bagboy-test@example.com>")
            .env("BAGBOY_ACTOR", "crash-test")
            .env("BAGBOY_HTTP_RETRIES", "0")
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().expect("run bagboy");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start bagboy in the background, its output going to files next to the tap.
    fn spawn(&self, args: &[&str], group: bool) -> Child {
        let n = NEXT_ID.fetch_add(1, Ordering::SeqCst);
        let out = std::fs::File::create(self.tap.root().join(format!("out-{n}"))).unwrap();
        let err = std::fs::File::create(self.tap.root().join(format!("err-{n}"))).unwrap();
        let mut c = self.cmd(args);
        c.stdout(out).stderr(err);
        if group {
            use std::os::unix::process::CommandExt as _;
            c.process_group(0);
        }
        c.spawn().expect("spawn bagboy")
    }

    /// The rollback's own requests (after the setup), numbered from 1.
    fn rollback_requests(&self) -> Vec<Seen> {
        self.proxy
            .requests()
            .into_iter()
            .filter(|s| s.n > self.base)
            .map(|mut s| {
                s.n -= self.base;
                s
            })
            .collect()
    }

    /// `METHOD path` with this scenario's repository names shortened to `app`/`web`.
    fn describe(&self, s: &Seen) -> String {
        let path = s
            .path
            .replace(&format!("acme/app{}", self.id), "app")
            .replace(&format!("acme/web{}", self.id), "web");
        let path = match path.find("sha256:") {
            Some(i) if path.len() > i + 19 => format!("{}…", &path[..i + 19]),
            _ => path,
        };
        format!("{} {path}", s.method)
    }

    fn docker_state(&self) -> Vec<Snapshot> {
        self.repos
            .iter()
            .map(|r| {
                TAGS.iter()
                    .map(|t| (*t, self.reg.tag_digest(r, t)))
                    .collect()
            })
            .collect()
    }

    fn formula(&self) -> String {
        self.tap
            .file_in_fresh_clone(FORMULA)
            .expect("formula in the tap")
    }

    /// Where every registry is; `Err` names any registry that is neither.
    fn observe(&self) -> Result<At, String> {
        let mut states = Vec::new();
        let mut problems = Vec::new();
        for (i, snap) in self.docker_state().into_iter().enumerate() {
            if snap == self.pre[i] {
                states.push(At::Pre);
            } else if snap == self.target[i] {
                states.push(At::Target);
            } else {
                let odd: Vec<String> = snap
                    .iter()
                    .map(|(t, d)| {
                        let at = if *d == self.pre[i][t] && *d == self.target[i][t] {
                            "same"
                        } else if *d == self.pre[i][t] {
                            "pre"
                        } else if *d == self.target[i][t] {
                            "target"
                        } else {
                            "elsewhere"
                        };
                        format!("{t}={at}")
                    })
                    .collect();
                problems.push(format!(
                    "{} is half rolled back: {}",
                    self.repos[i],
                    odd.join(" ")
                ));
            }
        }
        let formula = self.formula();
        let formula_target = match &self.formula_target {
            Some(t) => &formula == t,
            None => formula.contains("version \"1.1.0\"") && formula.contains("version_scheme"),
        };
        if formula == self.formula_pre {
            states.push(At::Pre);
        } else if formula_target {
            states.push(At::Target);
        } else {
            problems.push(format!("the tap's formula is neither state:\n{formula}"));
        }
        let head = self.tap.head();
        if !self.tap.is_ancestor(&self.tap_head_pre, &head) {
            problems.push(format!(
                "the tap lost {} (force-pushed?)",
                self.tap_head_pre
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("\n"));
        }
        if states.iter().all(|s| *s == At::Pre) {
            Ok(At::Pre)
        } else if states.iter().all(|s| *s == At::Target) {
            Ok(At::Target)
        } else {
            Err(format!(
                "registries disagree (docker app, docker web, tap): {states:?}"
            ))
        }
    }

    /// The history's deployments, oldest first; `Err` when the file does not parse.
    fn history(&self) -> Result<Vec<Value>, String> {
        let text = std::fs::read_to_string(self.project.history_path())
            .map_err(|e| format!("history unreadable: {e}"))?;
        let doc: Value = serde_saphyr::from_str(&text)
            .map_err(|e| format!("history does not parse (torn?): {e}\n{text}"))?;
        let mut entries = doc["deployments"]
            .as_array()
            .cloned()
            .ok_or_else(|| format!("history has no deployments list:\n{text}"))?;
        let ts = |e: &Value| {
            time::OffsetDateTime::parse(
                e["timestamp"].as_str().unwrap_or_default(),
                &time::format_description::well_known::Rfc3339,
            )
            .ok()
        };
        if let Some(bad) = entries.iter().find(|e| ts(e).is_none()) {
            return Err(format!("an entry has no RFC 3339 timestamp: {bad}"));
        }
        entries.sort_by_key(ts);
        Ok(entries)
    }

    fn journals(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.project.path().join(".bagboy/journal"))
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "jsonl"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lock_path(&self) -> PathBuf {
        self.project.path().join(".bagboy/lock")
    }

    /// The history agrees with the registries being `at`, nothing is in flight, no journal or
    /// lock is left. Returns what the rollback left in the history: `deployed`,
    /// `rollback_failed` or `no entry`.
    fn check_settled(&self, at: At) -> Result<&'static str, String> {
        let h = self.history()?;
        let text = String::from_utf8_lossy(&self.project.history_bytes()).into_owned();
        if text.contains("rolling_back") {
            return Err(format!("a rolling_back status is left:\n{text}"));
        }
        let deployed: Vec<&Value> = h.iter().filter(|e| status(e) == "deployed").collect();
        if deployed.len() != 1 {
            return Err(format!(
                "{} deployed entries (want exactly one):\n{text}",
                deployed.len()
            ));
        }
        let current = deployed[0];
        let new: Vec<&Value> = h
            .iter()
            .filter(|e| e.get("rollback_of").is_some())
            .collect();
        if !self.journals().is_empty() {
            return Err(format!("journal left: {:?}", self.journals()));
        }
        if self.lock_path().exists() {
            return Err("the lock file is left behind".into());
        }
        if h.len() < 3 || h.len() != 3 + new.len() {
            return Err(format!("unexpected entries:\n{text}"));
        }
        for (e, v) in h.iter().take(3).zip(VERSIONS) {
            if e["version"] != v {
                return Err(format!("recorded entries changed:\n{text}"));
            }
        }
        let v120 = h.iter().find(|e| e["version"] == "v1.2.0").unwrap();
        match at {
            At::Target => {
                if current["version"] != TARGET || current["rollback_of"] != "v1.2.0" {
                    return Err(format!(
                        "registries are at the target but the deployed entry is not the rollback:\n{text}"
                    ));
                }
                if status(v120) != "rolled_back_from" {
                    return Err(format!("v1.2.0 is not rolled_back_from:\n{text}"));
                }
                for e in new.iter().filter(|e| !std::ptr::eq(**e, current)) {
                    if status(e) != "rollback_failed" {
                        return Err(format!(
                            "an earlier attempt is not rollback_failed:\n{text}"
                        ));
                    }
                }
                Ok("deployed")
            }
            At::Pre => {
                if current["timestamp"].as_str() != Some(self.current_ts.as_str()) {
                    return Err(format!(
                        "registries are at the pre-rollback state but v1.2.0 is not current:\n{text}"
                    ));
                }
                if new.iter().any(|e| status(e) != "rollback_failed") {
                    return Err(format!("a new entry is not rollback_failed:\n{text}"));
                }
                match new.len() {
                    0 => {
                        if self.project.history_bytes() != self.history_pre {
                            return Err(format!(
                                "the history changed without a new entry:\n{text}"
                            ));
                        }
                        Ok("no entry")
                    }
                    1 => Ok("rollback_failed"),
                    _ => Ok("rollback_failed (several)"),
                }
            }
        }
    }

    /// Registries and history all agree, whatever the outcome was.
    fn settled(&self) -> Result<(At, &'static str), String> {
        let at = self.observe()?;
        let h = self.check_settled(at)?;
        Ok((at, h))
    }

    /// The rollback run afterwards works (or finds nothing to do) and ends at the target.
    fn rollback_again_works(&self) -> Result<(), String> {
        let run = self.run(&ROLLBACK);
        if run.code != Some(0) {
            return Err(format!("a later rollback failed: {}", run.show()));
        }
        match self.settled()? {
            (At::Target, "deployed") => Ok(()),
            other => Err(format!("a later rollback ended at {other:?}")),
        }
    }
}

fn status(e: &Value) -> &str {
    e["status"]
        .as_str()
        .or_else(|| {
            e["packages"]
                .as_array()
                .and_then(|p| p.iter().find_map(|p| p["status"].as_str()))
        })
        .unwrap_or("-")
}

/// A clean run of the scenario: how many requests the rollback makes, and the tap's target
/// formula (so later classifications compare exact content).
fn baseline(reg: &TestRegistry) -> (Vec<Seen>, String, Scenario<'_>) {
    let sc = Scenario::new(reg);
    let run = sc.run(&ROLLBACK);
    assert_eq!(run.code, Some(0), "baseline rollback: {}", run.show());
    let seen = sc.rollback_requests();
    let formula = sc.formula();
    assert_ne!(formula, sc.formula_pre);
    assert_eq!(sc.settled(), Ok((At::Target, "deployed")));
    (seen, formula, sc)
}

/// Run `job(k)` for every k on a few threads; results in k order.
fn par_map<T: Send>(ks: Vec<usize>, job: impl Fn(usize) -> T + Sync) -> Vec<(usize, T)> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(&k) = ks.get(i) else { break };
                let r = job(k);
                out.lock().unwrap().push((k, r));
            });
        }
    });
    let mut v = out.into_inner().unwrap();
    v.sort_by_key(|(k, _)| *k);
    v
}

// ---------------------------------------------------------------------------------------------
// 1. Failure matrix
// ---------------------------------------------------------------------------------------------

struct Row {
    what: String,
    code: Option<i32>,
    outcome: Result<String, String>,
}

/// Inject `fault` at every request k of the rollback (only the apply phase when `apply_only`,
/// so a second fault kind need not repeat the planning rows), a fresh scenario each.
fn failure_matrix(fault: Fault, apply_only: bool) {
    let reg = TestRegistry::start(Auth::None);
    let (seen, formula_target, _) = baseline(&reg);
    let n = seen.len();
    // Planning only reads (HEADs); the apply phase starts with the first GET of a manifest.
    let first_apply = seen.iter().find(|s| s.method != "HEAD").map_or(1, |s| s.n);
    let first_k = if apply_only { first_apply } else { 1 };
    println!("\nbaseline rollback: {n} proxied requests, apply phase from #{first_apply}");
    let rows = par_map((first_k..=n).collect(), |k| {
        let mut sc = Scenario::new(&reg);
        sc.formula_target = Some(formula_target.clone());
        sc.proxy.set_fault(sc.base + k, fault.clone());
        let run = sc.run(&ROLLBACK);
        let what = sc
            .rollback_requests()
            .iter()
            .find(|s| s.n == k)
            .map(|s| sc.describe(s))
            .unwrap_or_else(|| "(never sent)".into());
        let outcome = (|| {
            let (at, entry) = sc.settled()?;
            let want = match (at, entry) {
                (At::Target, _) => 0,
                (At::Pre, "rollback_failed") => 1,
                // Planning failed: nothing changed. Transient network failures are 1.
                (At::Pre, _) => 1,
            };
            if run.code != Some(want) {
                return Err(format!(
                    "exit {:?} does not match the outcome {at}/{entry}: {}",
                    run.code,
                    run.show()
                ));
            }
            if at == At::Pre && entry == "no entry" && !run.stderr.contains("nothing was changed") {
                return Err(format!(
                    "a planning failure does not say nothing changed: {}",
                    run.show()
                ));
            }
            Ok(format!("{at}, history: {entry}"))
        })();
        Row {
            what,
            code: run.code,
            outcome,
        }
    });
    println!("\nfailure matrix, {fault:?} at request k (BAGBOY_HTTP_RETRIES=0):");
    println!("{:>3} | {:<52} | exit | outcome", "k", "request");
    let mut failures = Vec::new();
    for (k, row) in &rows {
        let code = row.code.map_or("-".into(), |c| c.to_string());
        match &row.outcome {
            Ok(o) => println!("{k:>3} | {:<52} | {code:>4} | {o}", row.what),
            Err(e) => {
                println!("{k:>3} | {:<52} | {code:>4} | FAILED", row.what);
                failures.push(format!("k={k} ({}): {e}", row.what));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(
        rows.iter().any(|(_, r)| r
            .outcome
            .as_deref()
            .is_ok_and(|o| o.contains("rollback_failed"))),
        "no fault hit the apply phase"
    );
}

#[test]
fn failure_at_every_request_leaves_each_registry_all_or_nothing() {
    failure_matrix(Fault::Status(500), false);
}

#[test]
fn connection_reset_at_every_apply_request_leaves_each_registry_all_or_nothing() {
    failure_matrix(Fault::Reset, true);
}

/// A PUT the registry carried out whose answer was lost: bagboy cannot know it landed, so
/// compensation must put that tag back too.
#[test]
fn lost_answer_to_a_tag_put_is_compensated() {
    let reg = TestRegistry::start(Auth::None);
    let (seen, formula_target, _) = baseline(&reg);
    let puts = seen.iter().filter(|s| s.method == "PUT").count();
    assert!(puts >= 4, "{puts} PUTs in the baseline");
    let rows = par_map((1..=puts).collect(), |j| {
        let mut sc = Scenario::new(&reg);
        sc.formula_target = Some(formula_target.clone());
        let count = AtomicUsize::new(0);
        sc.proxy.set_fault_when(move |s| {
            (s.method == "PUT" && count.fetch_add(1, Ordering::SeqCst) + 1 == j)
                .then_some(Fault::Truncate)
        });
        let run = sc.run(&ROLLBACK);
        let outcome = sc.settled().and_then(|(at, entry)| {
            if (at, entry) == (At::Pre, "rollback_failed") && run.code == Some(1) {
                Ok(())
            } else {
                Err(format!("ended {at}/{entry}: {}", run.show()))
            }
        });
        (run.code, outcome)
    });
    let mut failures = Vec::new();
    for (j, (code, outcome)) in rows {
        println!("truncated answer to PUT #{j}: exit {code:?}, {outcome:?}");
        if let Err(e) = outcome {
            failures.push(format!("PUT #{j}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The tap push itself is rejected (a pre-receive hook says no): the tags moved are put back.
#[test]
fn rejected_tap_push_puts_the_tags_back() {
    let reg = TestRegistry::start(Auth::None);
    let sc = Scenario::new(&reg);
    install_hook(&sc.tap, "#!/bin/sh\necho 'tap is frozen' >&2\nexit 1\n");
    let run = sc.run(&ROLLBACK);
    assert_eq!(run.code, Some(1), "{}", run.show());
    assert_eq!(
        sc.settled(),
        Ok((At::Pre, "rollback_failed")),
        "{}",
        run.show()
    );
    std::fs::remove_file(sc.tap.remote.join("hooks/pre-receive")).unwrap();
    assert_eq!(sc.rollback_again_works(), Ok(()));
}

fn install_hook(tap: &TestTap, script: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    let hook = tap.remote.join("hooks/pre-receive");
    std::fs::write(&hook, script).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A `pre-receive` hook that holds the first push to the tap until released, then accepts or
/// rejects it; later pushes (compensation, recover) go through.
struct Gate {
    reached: PathBuf,
    release: PathBuf,
    exited: PathBuf,
}

impl Gate {
    fn install(tap: &TestTap, accept: bool) -> Gate {
        let dir = tap.root();
        let g = Gate {
            reached: dir.join("hook-reached"),
            release: dir.join("hook-release"),
            exited: dir.join("hook-exited"),
        };
        install_hook(
            tap,
            &format!(
                "#!/bin/sh\n\
                 mkdir '{once}' 2>/dev/null || exit 0\n\
                 touch '{reached}'\n\
                 while [ ! -e '{release}' ]; do sleep 0.05; done\n\
                 touch '{exited}'\n\
                 exit {code}\n",
                once = dir.join("hook-once").display(),
                reached = g.reached.display(),
                release = g.release.display(),
                exited = g.exited.display(),
                code = if accept { 0 } else { 1 },
            ),
        );
        g
    }

    fn wait_reached(&self) -> bool {
        wait_for_file(&self.reached, WAIT)
    }

    fn release(&self) {
        std::fs::write(&self.release, "").unwrap();
    }

    fn wait_exited(&self) -> bool {
        wait_for_file(&self.exited, WAIT)
    }
}

// ---------------------------------------------------------------------------------------------
// 2. SIGKILL
// ---------------------------------------------------------------------------------------------

/// Where the rollback is killed.
#[derive(Clone, Debug)]
enum KillPoint {
    /// Request k of the rollback is held; bagboy is killed while waiting for it.
    Request(usize),
    /// The j-th manifest PUT fails (500), then the first compensation request is held.
    Compensating(usize),
    /// A pre-receive hook holds the tap push; `group` kills bagboy's whole process group (git
    /// dies too), else only bagboy dies and the orphaned push is then `accept`ed or rejected.
    TapPush { group: bool, accept: bool },
}

fn wait_for_file(p: &std::path::Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Kill the rollback at `point`; returns a description of what was held.
fn kill_at(sc: &Scenario<'_>, point: &KillPoint) -> Result<String, String> {
    match point {
        KillPoint::Request(k) => {
            sc.proxy.set_fault(sc.base + k, Fault::Stall(Duration::MAX));
            let mut child = sc.spawn(&ROLLBACK, false);
            if !sc.proxy.wait_for_request(sc.base + k, WAIT) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("request {k} never came"));
            }
            child.kill().unwrap();
            child.wait().unwrap();
            let seen = sc.rollback_requests();
            Ok(seen
                .iter()
                .find(|s| s.n == *k)
                .map(|s| sc.describe(s))
                .unwrap_or_default())
        }
        KillPoint::Compensating(j) => {
            let puts = AtomicUsize::new(0);
            let failed = AtomicBool::new(false);
            let held = AtomicBool::new(false);
            let j = *j;
            sc.proxy.set_fault_when(move |s| {
                if s.method == "PUT" && puts.fetch_add(1, Ordering::SeqCst) + 1 == j {
                    failed.store(true, Ordering::SeqCst);
                    return Some(Fault::Status(500));
                }
                if failed.load(Ordering::SeqCst)
                    && s.method == "GET"
                    && s.path.contains("/manifests/sha256:")
                    && !held.swap(true, Ordering::SeqCst)
                {
                    return Some(Fault::Stall(Duration::MAX));
                }
                None
            });
            let mut child = sc.spawn(&ROLLBACK, false);
            let Some(k) = sc.proxy.wait_for_stall(WAIT) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err("compensation never started".into());
            };
            child.kill().unwrap();
            child.wait().unwrap();
            let seen = sc.proxy.requests();
            Ok(seen
                .iter()
                .find(|s| s.n == k)
                .map(|s| format!("undo {}", sc.describe(s)))
                .unwrap_or_default())
        }
        KillPoint::TapPush { group, accept } => {
            let gate = Gate::install(&sc.tap, *accept);
            let mut child = sc.spawn(&ROLLBACK, *group);
            if !gate.wait_reached() {
                let _ = child.kill();
                let _ = child.wait();
                return Err("the tap push never reached the hook".into());
            }
            let head = sc.tap.head();
            if *group {
                // SAFETY: signalling our own child's process group.
                let rc = unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                assert_eq!(rc, 0, "kill the process group");
            } else {
                child.kill().unwrap();
            }
            child.wait().unwrap();
            gate.release();
            let mut landed = false;
            if !*group {
                // The orphaned git push finishes on its own: wait for it to settle.
                assert!(gate.wait_exited(), "hook never released");
                let deadline = Instant::now() + Duration::from_secs(5);
                while *accept && Instant::now() < deadline && sc.tap.head() == head {
                    std::thread::sleep(Duration::from_millis(20));
                }
                std::thread::sleep(Duration::from_millis(200));
                landed = sc.tap.head() != head;
            }
            Ok(format!(
                "tap push held by a hook; killed {}{}",
                if *group {
                    "bagboy + git (group)"
                } else {
                    "bagboy only"
                },
                if *group {
                    String::new()
                } else if landed {
                    ", orphaned push landed".into()
                } else {
                    ", orphaned push rejected".into()
                }
            ))
        }
    }
}

/// After the kill: `recover` (twice) converges, then a rollback works.
fn recover_after(sc: &Scenario<'_>, undo: bool) -> Result<String, String> {
    let args: &[&str] = if undo {
        &["recover", "--undo", "--yes"]
    } else {
        &["recover", "--yes"]
    };
    if !sc.lock_path().exists() {
        return Err("the killed rollback left no lock behind".into());
    }
    let first = sc.run(args);
    if first.code != Some(0) {
        return Err(format!("recover failed: {}", first.show()));
    }
    if !first.stderr.contains("stale lock") {
        return Err(format!(
            "recover did not say it took over the dead process's lock: {}",
            first.show()
        ));
    }
    let (at, entry) = sc
        .settled()
        .map_err(|e| format!("{e}\nafter recover: {}", first.show()))?;
    if undo && at != At::Pre {
        return Err(format!("recover --undo left the registries at {at}"));
    }
    let bytes = sc.project.history_bytes();
    let second = sc.run(&["recover", "--yes"]);
    if second.code != Some(0) || !second.stdout.contains("nothing to recover") {
        return Err(format!("a second recover did something: {}", second.show()));
    }
    if sc.project.history_bytes() != bytes || sc.observe() != Ok(at) {
        return Err("a second recover changed something".into());
    }
    let what = first.stdout.lines().next().unwrap_or("").to_string();
    sc.rollback_again_works()?;
    Ok(format!("{what} → {at}, history: {entry}"))
}

#[test]
fn sigkill_at_every_request_and_during_the_tap_push_then_recover_converges() {
    let reg = TestRegistry::start(Auth::None);
    let (seen, formula_target, _) = baseline(&reg);
    let n = seen.len();
    let mut points: Vec<(KillPoint, bool)> = Vec::new();
    for k in 1..=n {
        // `recover --undo` on every third request, the rest are finished.
        points.push((KillPoint::Request(k), k % 3 == 0));
    }
    points.push((KillPoint::Compensating(1), false));
    points.push((KillPoint::Compensating(3), true));
    for (group, accept, undo) in [
        (true, false, false),
        (true, false, true),
        (false, true, false),
        (false, false, false),
        (false, true, true),
    ] {
        points.push((KillPoint::TapPush { group, accept }, undo));
    }
    assert!(points.len() >= 20, "only {} kill points", points.len());
    let points = Arc::new(points);
    let rows = par_map((0..points.len()).collect(), |i| {
        let (point, undo) = &points[i];
        let mut sc = Scenario::new(&reg);
        sc.formula_target = Some(formula_target.clone());
        let what = kill_at(&sc, point);
        let result = match &what {
            Ok(_) => recover_after(&sc, *undo),
            Err(e) => Err(e.clone()),
        };
        (what.unwrap_or_default(), *undo, result)
    });
    println!("\nSIGKILL points ({n} requests in a clean rollback):");
    let mut failures = Vec::new();
    for (i, (what, undo, result)) in &rows {
        let cmd = if *undo { "recover --undo" } else { "recover" };
        match result {
            Ok(r) => println!("{:>2} | {what:<60} | {cmd:<14} | {r}", i + 1),
            Err(e) => {
                println!("{:>2} | {what:<60} | {cmd:<14} | FAILED", i + 1);
                failures.push(format!("{:?} ({what}): {e}", points[*i].0));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// ---------------------------------------------------------------------------------------------
// 3. Concurrency
// ---------------------------------------------------------------------------------------------

#[test]
fn ten_concurrent_rollbacks_one_proceeds_the_others_exit_4() {
    let reg = TestRegistry::start(Auth::None);
    let sc = Scenario::new(&reg);
    // The winner's tap push is held until every other process has exited, so it holds the lock
    // while they all start (a proxy stall can only be released by its timeout, which a slow
    // machine could outlast).
    let gate = Gate::install(&sc.tap, true);
    let mut children: Vec<Child> = (0..10).map(|_| sc.spawn(&ROLLBACK, false)).collect();
    assert!(gate.wait_reached(), "no rollback reached the tap push");
    let deadline = Instant::now() + WAIT;
    let mut codes: Vec<Option<Option<i32>>> = vec![None; children.len()];
    while codes.iter().filter(|c| c.is_some()).count() < 9 && Instant::now() < deadline {
        for (c, code) in children.iter_mut().zip(codes.iter_mut()) {
            if code.is_none() {
                if let Some(status) = c.try_wait().unwrap() {
                    *code = Some(status.code());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    gate.release();
    let codes: Vec<Option<i32>> = children
        .into_iter()
        .zip(codes)
        .map(|(c, code)| code.unwrap_or_else(|| c.wait_with_output().unwrap().status.code()))
        .collect();
    let stderrs: Vec<String> = std::fs::read_dir(sc.tap.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("err-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert_eq!(
        codes.iter().filter(|c| **c == Some(0)).count(),
        1,
        "{codes:?}\n{stderrs:#?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == Some(4)).count(),
        9,
        "{codes:?}\n{stderrs:#?}"
    );
    assert_eq!(
        stderrs
            .iter()
            .filter(|e| e.contains("is held by pid"))
            .count(),
        9,
        "{stderrs:#?}"
    );
    assert_eq!(sc.settled(), Ok((At::Target, "deployed")));
}

/// A second rollback (and a `recover`) while one is applying: exit 4 naming the holder, not
/// "an earlier rollback did not finish" (its journal exists because it is running).
#[test]
fn rollback_or_recover_during_a_running_rollback_exits_4() {
    let reg = TestRegistry::start(Auth::None);
    let sc = Scenario::new(&reg);
    let gate = Gate::install(&sc.tap, true);
    let child = sc.spawn(&ROLLBACK, false);
    let pid = child.id();
    assert!(gate.wait_reached());
    assert_eq!(sc.journals().len(), 1, "the running rollback has a journal");
    for args in [&ROLLBACK[..], &["recover"], &["recover", "--undo"]] {
        let run = sc.run(args);
        assert_eq!(run.code, Some(4), "{args:?}: {}", run.show());
        assert!(
            run.stderr.contains(&format!("is held by pid {pid}")),
            "{args:?}: {}",
            run.show()
        );
    }
    gate.release();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(sc.settled(), Ok((At::Target, "deployed")));
}

// ---------------------------------------------------------------------------------------------
// 4. Stale lock
// ---------------------------------------------------------------------------------------------

#[test]
fn stale_lock_from_a_dead_process_is_taken_over_during_a_real_rollback() {
    let reg = TestRegistry::start(Auth::None);
    let sc = Scenario::new(&reg);
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    sc.project.write(
        ".bagboy/lock",
        &serde_json::json!({
            "pid": dead, "host": host, "started_at": "2026-11-22T10:00:00Z",
            "command": "bagboy rollback --version v1.1.0", "proc_start": 1,
        })
        .to_string(),
    );
    let run = sc.run(&ROLLBACK);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stderr.contains("stale lock") && run.stderr.contains(&format!("pid {dead}")),
        "{}",
        run.show()
    );
    assert_eq!(sc.settled(), Ok((At::Target, "deployed")));
}

// ---------------------------------------------------------------------------------------------
// 5. Secrets
// ---------------------------------------------------------------------------------------------

const PASSWORD: &str = "S3ntinel-registry-pw-7f3a9c";
const GITHUB_TOKEN: &str = "ghp_S3ntinelGithubToken0000000000000042";

fn secrets_never_leak(auth: Auth) {
    let reg = TestRegistry::start(auth);
    let sc = Scenario::with_env(
        &reg,
        &[
            ("BAGBOY_REGISTRY_USERNAME", "alice"),
            ("BAGBOY_REGISTRY_PASSWORD", PASSWORD),
            ("GITHUB_TOKEN", GITHUB_TOKEN),
        ],
    );
    let v = ["-vvv", "--log-format", "json"];
    let with =
        |args: &[&str]| -> Vec<String> { v.iter().chain(args).map(|s| s.to_string()).collect() };
    let mut transcripts: Vec<(String, String)> = Vec::new();
    let mut run = |what: &str, args: &[&str], want: i32| {
        let args = with(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = sc.run(&args);
        assert_eq!(r.code, Some(want), "{what}: {}", r.show());
        transcripts.push((format!("{what} stdout"), r.stdout));
        transcripts.push((format!("{what} stderr"), r.stderr));
    };
    // The setup recorded without -vvv; record again with it (a fresh release-like entry is
    // not needed: recording v1.2.0 again appends it).
    run("record", &["record", "--version", "v1.2.0"], 0);
    run(
        "dry-run",
        &["rollback", "--version", TARGET, "--dry-run"],
        0,
    );
    run("rollback", &ROLLBACK, 0);
    // A failing rollback: the first PUT fails.
    let base = sc.proxy.count();
    let puts = AtomicBool::new(false);
    sc.proxy.set_fault_when(move |s| {
        (s.method == "PUT" && !puts.swap(true, Ordering::SeqCst)).then_some(Fault::Status(500))
    });
    run(
        "failing rollback",
        &["rollback", "--version", "v1.0.0", "--yes"],
        1,
    );
    assert!(sc.proxy.count() > base);
    // An interrupted rollback, its journal captured while a write is held, then recover.
    let held = AtomicBool::new(false);
    sc.proxy.set_fault_when(move |s| {
        (s.method == "PUT" && !held.swap(true, Ordering::SeqCst))
            .then_some(Fault::Stall(Duration::MAX))
    });
    let args = with(&["rollback", "--version", "v1.0.0", "--yes"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = sc.spawn(&args, false);
    assert!(sc.proxy.wait_for_stall(WAIT).is_some(), "the PUT is held");
    let journals = sc.journals();
    assert_eq!(journals.len(), 1);
    let journal_mid = std::fs::read_to_string(&journals[0]).unwrap();
    let history_mid = sc.project.history();
    child.kill().unwrap();
    child.wait().unwrap();
    sc.proxy.clear();
    run("recover", &["recover", "--yes"], 0);
    for entry in std::fs::read_dir(sc.tap.root()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("out-") || name.starts_with("err-") {
            transcripts.push((
                format!("killed rollback {name}"),
                std::fs::read_to_string(entry.path()).unwrap(),
            ));
        }
    }
    transcripts.push(("journal (mid-run)".into(), journal_mid));
    transcripts.push(("history (mid-run)".into(), history_mid));
    transcripts.push(("history (final)".into(), sc.project.history()));
    let tap_cache = std::process::Command::new("grep")
        .args(["-r", "-l", "-a", PASSWORD])
        .arg(sc.project.path())
        .output()
        .unwrap();
    assert!(
        tap_cache.stdout.is_empty(),
        "the password is in a project file: {}",
        String::from_utf8_lossy(&tap_cache.stdout)
    );

    let mut secrets = vec![
        PASSWORD.to_string(),
        GITHUB_TOKEN.to_string(),
        support::push::basic_header("alice", PASSWORD),
        support::push::basic_header("alice", PASSWORD)
            .trim_start_matches("Basic ")
            .to_string(),
    ];
    if let Some(ts) = &reg.token_server {
        let tokens = ts.issued_tokens();
        let bagboy_tokens = ts.bagboy_requests().len();
        assert!(bagboy_tokens > 0, "bagboy fetched no token");
        for t in tokens {
            // The signature alone is as secret as the whole token.
            secrets.push(t.rsplit('.').next().unwrap().to_string());
            secrets.push(t);
        }
    }
    // Something was logged at all, so the check is not vacuous.
    assert!(
        transcripts
            .iter()
            .any(|(w, t)| w.contains("stderr") && t.lines().count() > 20),
        "-vvv logged almost nothing"
    );
    let mut leaks = Vec::new();
    for (what, text) in &transcripts {
        for s in &secrets {
            if text.contains(s.as_str()) {
                leaks.push(format!("{what} contains {}…", &s[..s.len().min(12)]));
            }
        }
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}

#[test]
fn secrets_never_appear_with_htpasswd_auth() {
    secrets_never_leak(Auth::Htpasswd {
        user: "alice".into(),
        password: PASSWORD.into(),
    });
}

#[test]
fn secrets_never_appear_with_token_auth() {
    secrets_never_leak(Auth::Token(vec![TokenUser::new(
        "alice",
        PASSWORD,
        &["pull", "push"],
    )]));
}
