//! The Homebrew rollback, end to end through the real `bagboy` binary: a real git tap (bare
//! repository + a work clone acting as the release pipeline / "someone else") and, where the
//! issue asks for it, a real `docker-registry`.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use support::cli::{git_processes, text, Project};
use support::tap::{cask, git, goreleaser_formula, TestTap};
use support::{Auth, TestRegistry, TokenUser};

const FORMULA: &str = "Formula/myapp.rb";
const CASK: &str = "Casks/myapp.rb";
const TAP: &str = "acme/homebrew-tap";
const IMAGE: &str = "acme/myapp";
const VERSIONS: [&str; 3] = ["v1.0.0", "v1.1.0", "v1.2.0"];

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A project, its tap, and the tap commits that published each version.
struct Fixture {
    project: Project,
    tap: TestTap,
    /// `(version, tap commit that published it)`, oldest first.
    published: Vec<(String, String)>,
    /// Environment every bagboy command of this fixture gets.
    env: Vec<(String, String)>,
}

impl Fixture {
    fn new() -> Fixture {
        let project = Project::new();
        std::fs::create_dir_all(project.path().join("docker-config")).unwrap();
        Fixture {
            project,
            tap: TestTap::new(),
            published: Vec::new(),
            env: Vec::new(),
        }
    }

    fn with_env(mut self, k: &str, v: &str) -> Fixture {
        self.env.push((k.into(), v.into()));
        self
    }

    /// `bagboy` isolated from the developer's git/docker configuration and credentials.
    fn bagboy(&self) -> Command {
        let mut c = self.project.bagboy();
        c.env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("DOCKER_CONFIG", self.project.path().join("docker-config"))
            .env("BAGBOY_GIT_AUTHOR", "bagboy-test <bagboy-test@example.com>")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GIT_CONFIG_COUNT")
            .env_remove("BAGBOY_REGISTRY_USERNAME")
            .env_remove("BAGBOY_REGISTRY_PASSWORD");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.bagboy().args(args).output().expect("run bagboy")
    }

    /// Runs and requires exit `code`; returns (stdout, stderr).
    fn expect(&self, code: i32, args: &[&str]) -> (String, String) {
        let o = self.run(args);
        let (out, err) = text(&o);
        assert_eq!(
            o.status.code(),
            Some(code),
            "bagboy {args:?}: expected exit {code}\n--- stdout\n{out}\n--- stderr\n{err}"
        );
        (out, err)
    }

    fn config(&self, registries: &[String]) {
        self.project.write(
            "bagboy.yaml",
            &format!("name: myapp\nregistries:\n{}", registries.concat()),
        );
    }

    fn brew_registry(&self) -> String {
        brew_entry(&self.tap.url())
    }

    /// Commit `content` at `path` in the work clone and push it, like a release pipeline.
    fn publish_file(&mut self, path: &str, version: &str, content: &str) -> String {
        let commit = self.tap.commit_file(
            path,
            content,
            &format!("Brew formula update for myapp version {version}"),
        );
        self.tap.push();
        self.published.push((version.into(), commit.clone()));
        commit
    }

    fn publish_formula(&mut self, version: &str) -> String {
        let content = goreleaser_formula("myapp", version.trim_start_matches('v'));
        self.publish_file(FORMULA, version, &content)
    }

    fn record(&self, version: &str) -> (String, String) {
        self.expect(0, &["record", "--version", version])
    }

    fn commit_of(&self, version: &str) -> String {
        self.published
            .iter()
            .find(|(v, _)| v == version)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("{version} was not published"))
    }

    /// `git ls-remote` of the tap: every ref and where it points.
    fn remote_refs(&self) -> String {
        git(self.tap.root(), &["ls-remote", &self.tap.url()])
    }

    fn history(&self) -> Vec<Value> {
        history_entries(&self.project)
    }

    fn message_of(&self, commit: &str) -> String {
        git(&self.tap.remote, &["log", "-1", "--format=%B", commit])
    }

    fn parents_of(&self, commit: &str) -> Vec<String> {
        git(&self.tap.remote, &["log", "-1", "--format=%P", commit])
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn files_changed(&self, commit: &str) -> Vec<String> {
        git(
            &self.tap.remote,
            &["diff-tree", "--no-commit-id", "--name-only", "-r", commit],
        )
        .lines()
        .map(str::to_owned)
        .collect()
    }

    fn journals(&self) -> Vec<PathBuf> {
        std::fs::read_dir(self.project.path().join(".bagboy/journal"))
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

fn brew_entry(url: &str) -> String {
    format!("  - format: brew\n    registry: {TAP}\n    remote: \"{url}\"\n    branch: main\n")
}

fn docker_entry(repo: &str) -> String {
    format!("  - format: docker\n    registry: {repo}\n    insecure: true\n")
}

/// Formula fixture: 1.0.0 → 1.1.0 → 1.2.0 published and each recorded right after publishing.
fn formula_fixture() -> Fixture {
    let mut f = Fixture::new();
    f.config(&[f.brew_registry()]);
    for v in VERSIONS {
        f.publish_formula(v);
        f.record(v);
    }
    f
}

/// Deployments, newest first (by parsed timestamp, as the contract orders them).
fn history_entries(p: &Project) -> Vec<Value> {
    let doc: Value = serde_saphyr::from_str(&p.history()).expect("history parses as YAML");
    let mut entries = doc["deployments"]
        .as_array()
        .expect("deployments list")
        .clone();
    let ts = |e: &Value| {
        time::OffsetDateTime::parse(
            e["timestamp"].as_str().expect("timestamp"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("RFC 3339 timestamp")
    };
    entries.sort_by_key(|e| std::cmp::Reverse(ts(e)));
    entries
}

fn status(e: &Value) -> &str {
    e["status"].as_str().unwrap_or("-")
}

fn version(e: &Value) -> &str {
    e["version"].as_str().unwrap_or("-")
}

fn brew_package(e: &Value) -> &Value {
    e["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["format"] == "brew"))
        .unwrap_or_else(|| panic!("entry has no brew package: {e}"))
}

/// The newest non-rollback entry of `v`.
fn release_entry<'a>(h: &'a [Value], v: &str) -> &'a Value {
    h.iter()
        .find(|e| version(e) == v && e.get("rollback_of").is_none_or(Value::is_null))
        .unwrap_or_else(|| panic!("no entry for {v} in {h:#?}"))
}

fn deployed(h: &[Value]) -> Vec<&Value> {
    h.iter().filter(|e| status(e) == "deployed").collect()
}

/// `content` with `version_scheme n` where Homebrew's ComponentsOrder puts it: after
/// `license` (the last of desc/homepage/url/version/sha256/license in these formulas), before
/// the `on_macos`/`on_linux` blocks.
fn with_scheme_after_license(content: &str, n: u32) -> String {
    let anchor = "  license \"MIT\"\n";
    assert_eq!(content.matches(anchor).count(), 1);
    content.replace(anchor, &format!("{anchor}  version_scheme {n}\n"))
}

/// `+`/`-` lines of a unified diff, without the file headers.
fn changed_lines(diff: &str) -> Vec<String> {
    diff.lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(str::to_owned)
        .collect()
}

/// Test-side image publish: a fresh image under the version tag, `latest` moved onto it.
fn publish_image(reg: &TestRegistry, version: &str) -> String {
    let digest = reg.push_image(IMAGE, version);
    reg.put_tag(IMAGE, "latest", &digest);
    digest
}

// ---------------------------------------------------------------------------------------------
// 1. Rollback to v1.1.0: the restored formula, the commit, the history; then idempotent.
// ---------------------------------------------------------------------------------------------

#[test]
fn formula_rollback_restores_1_1_0_with_version_scheme_and_is_idempotent() {
    let f = formula_fixture();
    let before_log = f.tap.log();
    let old_head = f.tap.head();

    let (out, err) = f.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);

    // The formula in a fresh clone: the 1.1.0 content plus the bump, in ComponentsOrder.
    let expected = with_scheme_after_license(&goreleaser_formula("myapp", "1.1.0"), 1);
    assert_eq!(
        f.tap.file_in_fresh_clone(FORMULA).as_deref(),
        Some(expected.as_str()),
        "stdout:\n{out}\nstderr:\n{err}"
    );

    // Exactly one new commit, on top of the old head (no force-push), touching only the formula.
    let log = f.tap.log();
    assert_eq!(log.len(), before_log.len() + 1, "one new commit: {log:?}");
    assert_eq!(&log[1..], &before_log[..], "old history kept as is");
    let new = &log[0];
    assert_eq!(f.parents_of(new), vec![old_head.clone()]);
    for (_, c) in &f.published {
        assert!(f.tap.is_ancestor(c, new), "{c} is still an ancestor");
    }
    assert_eq!(
        f.message_of(new).trim_end(),
        "myapp: roll back to v1.1.0 (from v1.2.0)"
    );
    assert_eq!(f.files_changed(new), vec![FORMULA.to_string()]);
    assert_eq!(
        f.tap.author_of(new),
        "bagboy-test <bagboy-test@example.com>|bagboy-test <bagboy-test@example.com>"
    );
    // The plan said why the scheme was raised.
    assert!(
        out.contains("version_scheme"),
        "plan mentions version_scheme:\n{out}"
    );

    // History: a new deployed v1.1.0 entry that is a rollback of v1.2.0; v1.2.0 rolled back from.
    let h = f.history();
    let newest = &h[0];
    assert_eq!(version(newest), "v1.1.0");
    assert_eq!(status(newest), "deployed");
    assert_eq!(newest["rollback_of"], "v1.2.0");
    let pkg = brew_package(newest);
    assert_eq!(pkg["registry"], TAP);
    assert_eq!(pkg["status"], "deployed");
    assert_eq!(pkg["formula"], "myapp");
    assert_eq!(status(release_entry(&h, "v1.2.0")), "rolled_back_from");
    assert_eq!(status(release_entry(&h, "v1.1.0")), "superseded");
    assert_eq!(deployed(&h).len(), 1, "exactly one deployed entry: {h:#?}");
    assert_eq!(h.len(), 4);
    assert!(f.journals().is_empty(), "journal removed after success");

    // A second run: nothing to do, no new commit, history untouched.
    let refs = f.remote_refs();
    let hist = f.project.history_bytes();
    let (out, _) = f.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert!(
        out.contains("already current") && out.contains("nothing to do"),
        "second run says there is nothing to do:\n{out}"
    );
    assert_eq!(f.remote_refs(), refs, "no new commit");
    assert_eq!(f.project.history_bytes(), hist, "history not rewritten");

    // Forward again to v1.2.0: its content, and the scheme is kept (never lowered), or users
    // who took the 1.1.0 downgrade would never be offered 1.2.0 again.
    f.expect(0, &["rollback", "--version", "v1.2.0", "--yes"]);
    assert_eq!(
        f.tap.file_in_fresh_clone(FORMULA).as_deref(),
        Some(with_scheme_after_license(&goreleaser_formula("myapp", "1.2.0"), 1).as_str())
    );
    assert_eq!(
        f.message_of(&f.tap.head()).trim_end(),
        "myapp: roll back to v1.2.0 (from v1.1.0)"
    );
    let h = f.history();
    assert_eq!((version(&h[0]), status(&h[0])), ("v1.2.0", "deployed"));
    assert_eq!(deployed(&h).len(), 1);
}

#[test]
fn cask_rollback_restores_the_file_without_version_scheme_and_says_why() {
    let mut f = Fixture::new();
    f.config(&[f.brew_registry()]);
    for v in VERSIONS {
        f.publish_file(CASK, v, &cask("myapp", v.trim_start_matches('v')));
        f.record(v);
    }
    let before_log = f.tap.log();

    // Dry run first: the plan says why there is no version_scheme.
    let (plan, _) = f.expect(0, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert!(plan.contains(CASK), "{plan}");
    assert!(
        plan.contains("casks have no version_scheme"),
        "the plan explains the missing bump:\n{plan}"
    );
    assert!(!plan.contains("+  version_scheme"), "{plan}");

    let (out, err) = f.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert!(out.contains("casks have no version_scheme"), "{out}");
    let restored = f.tap.file_in_fresh_clone(CASK);
    assert_eq!(
        restored.as_deref(),
        Some(cask("myapp", "1.1.0").as_str()),
        "stderr:\n{err}"
    );
    assert!(!restored.unwrap().contains("version_scheme"));
    assert!(
        f.tap.file_in_fresh_clone(FORMULA).is_none(),
        "no formula appeared"
    );
    let log = f.tap.log();
    assert_eq!(log.len(), before_log.len() + 1);
    assert_eq!(&log[1..], &before_log[..]);
    assert_eq!(
        f.message_of(&log[0]).trim_end(),
        "myapp: roll back to v1.1.0 (from v1.2.0)"
    );
    let h = f.history();
    assert_eq!(version(&h[0]), "v1.1.0");
    assert_eq!(status(&h[0]), "deployed");
    assert_eq!(status(release_entry(&h, "v1.2.0")), "rolled_back_from");
}

// ---------------------------------------------------------------------------------------------
// 2. --dry-run in every format: the diff, and nothing changes.
// ---------------------------------------------------------------------------------------------

/// A tap's questions are batched and remembered for the run (issue 30): opening the cache is
/// five processes (is it ours, its origin, the remote's branches, fetch, head), the plan a few
/// more. Before the batching this dry-run started 28.
#[test]
fn dry_run_on_a_tap_starts_few_git_processes() {
    let f = formula_fixture();
    let (_, err) = f.expect(0, &["-vv", "rollback", "--dry-run"]);
    let n = git_processes(&err);
    assert!(n <= 12, "a tap dry-run started {n} git processes:\n{err}");
}

#[test]
fn dry_run_prints_the_diff_in_every_format_and_changes_nothing() {
    let f = formula_fixture();
    let refs = f.remote_refs();
    let hist = f.project.history_bytes();
    let expect_lines = [
        "-  version \"1.2.0\"",
        "+  version \"1.1.0\"",
        "+  version_scheme 1",
    ];

    // text
    let (out, _) = f.expect(0, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert!(out.contains("--- a/Formula/myapp.rb"), "{out}");
    assert!(out.contains("+++ b/Formula/myapp.rb"), "{out}");
    assert!(out.contains("@@ "), "hunk header:\n{out}");
    for l in expect_lines {
        assert!(out.contains(l), "text diff has `{l}`:\n{out}");
    }
    assert!(out.contains("v1.2.0 → v1.1.0"), "{out}");

    // json
    let (out, _) = f.expect(
        0,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    let plan: Value = serde_json::from_str(&out).expect("dry-run json parses");
    let steps: Vec<&Value> = plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["steps"].as_array().unwrap())
        .collect();
    assert_eq!(steps.len(), 1, "{plan:#}");
    let step = steps[0];
    assert_eq!(step["action"], "restore_file");
    assert_eq!(step["reference"], FORMULA);
    let diff = step["diff"].as_str().expect("diff in json");
    assert!(
        diff.starts_with("--- a/Formula/myapp.rb\n+++ b/Formula/myapp.rb\n"),
        "{diff}"
    );
    for l in expect_lines {
        assert!(diff.lines().any(|x| x == l), "json diff has `{l}`:\n{diff}");
    }
    let json_diff = diff.to_owned();

    // markdown: a fenced ```diff block holding the same diff
    let (out, _) = f.expect(
        0,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "markdown",
        ],
    );
    let fence = out
        .find("```diff\n")
        .unwrap_or_else(|| panic!("no ```diff fence:\n{out}"));
    let body = &out[fence + "```diff\n".len()..];
    let end = body.find("\n```").expect("closing fence");
    assert_eq!(&body[..=end], json_diff, "markdown diff = json diff");

    // Nothing changed anywhere.
    assert_eq!(f.remote_refs(), refs, "dry run pushed nothing");
    assert_eq!(f.project.history_bytes(), hist, "dry run wrote no history");
    assert!(f.journals().is_empty());

    // And what the dry run showed is what the real run commits.
    f.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    let committed = git(&f.tap.remote, &["diff", "main~1", "main", "--", FORMULA]);
    assert_eq!(changed_lines(&committed), changed_lines(&json_diff));
}

// ---------------------------------------------------------------------------------------------
// 3. Docker + brew: Docker's PUT is denied after planning succeeded; the tap is compensated.
// ---------------------------------------------------------------------------------------------

/// Brew + docker where docker's tag PUT is denied. `concurrency: None` = bagboy's default
/// (every changing step in flight at once); `Some(1)` runs the steps one by one in config order
/// (brew first), so the tap is pushed strictly before the docker PUT is even sent.
/// Returns (stdout, stderr) of the failed rollback.
fn docker_fails_after_tap(concurrency: Option<usize>, format: &str) -> (String, String) {
    let reg = TestRegistry::start(Auth::Token(TokenUser::defaults()));
    // `reader` may pull (plan and prepare succeed) but not push (the tag PUT fails).
    let mut f = Fixture::new()
        .with_env("BAGBOY_REGISTRY_HOST", &reg.host())
        .with_env("BAGBOY_REGISTRY_USERNAME", "reader")
        .with_env("BAGBOY_REGISTRY_PASSWORD", "reader-password");
    f.config(&[f.brew_registry(), docker_entry(&reg.repo(IMAGE))]);
    if let Some(n) = concurrency {
        let cfg = std::fs::read_to_string(f.project.path().join("bagboy.yaml")).unwrap();
        f.project.write(
            "bagboy.yaml",
            &format!("{cfg}rollback:\n  concurrency: {n}\n"),
        );
    }
    let mut digests = Vec::new();
    for v in VERSIONS {
        digests.push(publish_image(&reg, v));
        f.publish_formula(v);
        f.record(v);
    }
    let pre_head = f.tap.head();
    let pre_tree = f.tap.tree_of(&pre_head);
    let pre_log = f.tap.log();
    assert_eq!(
        reg.tag_digest(IMAGE, "latest").as_deref(),
        Some(digests[2].as_str())
    );

    let (out, err) = f.expect(
        1,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--yes",
            "--format",
            format,
        ],
    );

    // Docker: nothing moved.
    assert_eq!(
        reg.tag_digest(IMAGE, "latest").as_deref(),
        Some(digests[2].as_str()),
        "latest still at v1.2.0"
    );
    // The tap: the rollback commit, then a restoring commit whose tree is the pre-rollback tree.
    let log = f.tap.log();
    let report = format!("tap log {log:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(
        log.len(),
        pre_log.len() + 2,
        "the tap step was applied and then undone by a restoring commit (+0 commits would mean \
         the tap step never ran before the docker failure stopped launching)\n{report}"
    );
    assert_eq!(&log[2..], &pre_log[..], "no force-push\n{report}");
    let (restoring, rollback) = (&log[0], &log[1]);
    assert_eq!(
        f.message_of(rollback).trim_end(),
        "myapp: roll back to v1.1.0 (from v1.2.0)"
    );
    assert_eq!(f.parents_of(restoring), vec![rollback.clone()]);
    assert_eq!(f.files_changed(restoring), vec![FORMULA.to_string()]);
    assert_eq!(f.tap.tree_of(restoring), pre_tree, "{report}");
    assert_eq!(
        f.tap.file_in_fresh_clone(FORMULA).as_deref(),
        Some(goreleaser_formula("myapp", "1.2.0").as_str())
    );
    assert!(err.contains("failed and was undone"), "{report}");
    assert!(
        err.contains("latest"),
        "the error names the failed tag:\n{report}"
    );

    // History: the attempt is rollback_failed, v1.2.0 still the deployed one.
    let h = f.history();
    assert_eq!(version(&h[0]), "v1.1.0");
    assert_eq!(status(&h[0]), "rollback_failed", "{:#?}", h[0]);
    assert_eq!(h[0]["rollback_of"], "v1.2.0");
    assert_eq!(status(release_entry(&h, "v1.2.0")), "deployed");
    assert_eq!(status(release_entry(&h, "v1.1.0")), "superseded");
    assert_eq!(deployed(&h).len(), 1);
    assert!(
        f.journals().is_empty(),
        "journal removed: the history is the record"
    );
    (out, err)
}

#[test]
fn docker_failure_with_the_tap_push_in_flight_is_compensated() {
    // Default concurrency: both changing steps are launched together. Observed: the docker PUT
    // fails first (~10 ms), the tap push completes after that (~150 ms), and is undone.
    let (out, _) = docker_fails_after_tap(None, "text");
    assert!(out.contains("applied, undone"), "{out}");
    assert!(out.contains("FAILED"), "{out}");
}

#[test]
fn docker_failure_after_the_tap_was_pushed_is_compensated() {
    // concurrency 1, brew configured first: the tap push has finished before docker starts.
    let (out, _) = docker_fails_after_tap(Some(1), "json");
    let v: Value = serde_json::from_str(&out).expect("outcome json");
    assert_eq!(v["outcome"]["kind"], "failed_undone", "{v:#}");
    let steps = v["outcome"]["steps"].as_array().unwrap();
    let brew = steps
        .iter()
        .find(|s| s["registry"] == TAP)
        .expect("brew step");
    let docker = steps
        .iter()
        .find(|s| s["registry"] != TAP)
        .expect("docker step");
    assert_eq!(
        (brew["ok"].as_bool(), brew["undone"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(docker["ok"], false);
    assert_eq!(docker["reference"], "latest");
}

// ---------------------------------------------------------------------------------------------
// 4. Someone pushes to the tap between plan and apply.
// ---------------------------------------------------------------------------------------------

#[test]
fn unrelated_push_during_the_rollback_is_kept_and_built_upon() {
    let f = formula_fixture();
    let pre_log = f.tap.log();
    // Their commit: an unrelated file, pushed by the hook when bagboy's push arrives.
    let theirs = f
        .tap
        .commit_file("README.md", "# acme tap\n", "docs: readme");
    f.tap.race_next_push();

    let (out, err) = f.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert!(f.tap.raced(), "the race hook ran");

    let log = f.tap.log();
    assert_eq!(log.len(), pre_log.len() + 2, "{log:?}\n{out}\n{err}");
    assert_eq!(log[1], theirs, "their commit is kept");
    assert_eq!(
        f.parents_of(&log[0]),
        vec![theirs.clone()],
        "bagboy rebuilt on their commit"
    );
    assert_eq!(&log[2..], &pre_log[..]);
    let clone = f.tap.clone_fresh();
    assert_eq!(
        std::fs::read_to_string(clone.join("README.md")).unwrap(),
        "# acme tap\n"
    );
    assert_eq!(
        std::fs::read_to_string(clone.join(FORMULA)).unwrap(),
        with_scheme_after_license(&goreleaser_formula("myapp", "1.1.0"), 1)
    );
    assert_eq!(
        f.message_of(&log[0]).trim_end(),
        "myapp: roll back to v1.1.0 (from v1.2.0)"
    );
    let h = f.history();
    assert_eq!(status(&h[0]), "deployed");
    assert_eq!(status(release_entry(&h, "v1.2.0")), "rolled_back_from");
}

#[test]
fn push_to_the_formula_during_the_rollback_stops_it_and_nothing_stays_changed() {
    // With a docker registry too, so "nothing changed anywhere" covers an undone tag move.
    let reg = TestRegistry::start(Auth::None);
    let mut f = Fixture::new();
    f.config(&[f.brew_registry(), docker_entry(&reg.repo(IMAGE))]);
    let mut digests = Vec::new();
    for v in VERSIONS {
        digests.push(publish_image(&reg, v));
        f.publish_formula(v);
        f.record(v);
    }
    let pre_log = f.tap.log();
    // Their commit changes the formula itself (a hotfix), pushed when bagboy's push arrives.
    let hotfix = goreleaser_formula("myapp", "1.2.0").replace("Rolls releases back", "Hotfix");
    let theirs = f.tap.commit_file(FORMULA, &hotfix, "myapp: hotfix desc");
    f.tap.race_next_push();

    let (out, err) = f.expect(1, &["rollback", "--version", "v1.1.0", "--yes"]);
    let report = format!("stdout:\n{out}\nstderr:\n{err}");
    assert!(f.tap.raced(), "the race hook ran");

    // The tap: their commit is the head, nothing of bagboy's was pushed.
    assert_eq!(f.tap.head(), theirs, "{report}");
    let log = f.tap.log();
    assert_eq!(log.len(), pre_log.len() + 1, "{report}");
    assert_eq!(&log[1..], &pre_log[..]);
    assert_eq!(
        f.tap.file_in_fresh_clone(FORMULA).as_deref(),
        Some(hotfix.as_str())
    );
    assert!(
        err.contains("Formula/myapp.rb") && err.contains("changed by commit"),
        "the error names the conflict:\n{report}"
    );
    // Docker: whatever was moved is back.
    assert_eq!(
        reg.tag_digest(IMAGE, "latest").as_deref(),
        Some(digests[2].as_str()),
        "{report}"
    );
    assert_eq!(
        reg.tag_digest(IMAGE, "v1.2.0").as_deref(),
        Some(digests[2].as_str())
    );
    assert_eq!(
        reg.tag_digest(IMAGE, "v1.1.0").as_deref(),
        Some(digests[1].as_str())
    );
    // `latest` really was moved and put back (not merely never touched).
    let puts: Vec<_> = reg
        .bagboy_requests()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/manifests/latest"))
        .collect();
    assert_eq!(puts.len(), 2, "apply + undo of latest: {puts:?}\n{report}");
    assert!(out.contains("applied, undone"), "{report}");
    // History.
    let h = f.history();
    assert_eq!(status(&h[0]), "rollback_failed", "{report}");
    assert_eq!(h[0]["rollback_of"], "v1.2.0");
    assert_eq!(status(release_entry(&h, "v1.2.0")), "deployed");
    assert_eq!(deployed(&h).len(), 1);
}

// ---------------------------------------------------------------------------------------------
// 5. Bad input: a clear error, exit 2, nothing changed.
// ---------------------------------------------------------------------------------------------

/// Runs a rollback that must be refused as bad input, and checks nothing changed.
fn assert_refused(f: &Fixture, args: &[&str], must_mention: &[&str]) -> String {
    let refs = f.remote_refs();
    let hist = f.project.history_bytes();
    let (out, err) = f.expect(2, args);
    for m in must_mention {
        assert!(
            err.contains(m),
            "error mentions `{m}`:\nstderr:\n{err}\nstdout:\n{out}"
        );
    }
    assert!(err.contains("error:"), "{err}");
    assert_eq!(f.remote_refs(), refs, "tap unchanged");
    assert_eq!(f.project.history_bytes(), hist, "history unchanged");
    assert!(f.journals().is_empty(), "no journal");
    err
}

#[test]
fn formula_names_with_a_path_are_refused() {
    for (bad, reason) in [
        ("foo/bar", "path separator"),
        ("../myapp", "must"),
        ("myapp..rb", "`..`"),
    ] {
        let mut f = Fixture::new();
        f.config(&[f.brew_registry()]);
        for v in VERSIONS {
            f.publish_formula(v);
            f.record(v);
        }
        // The configured formula name goes bad after the releases were recorded.
        f.project.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n{}    formula: \"{bad}\"\n",
                f.brew_registry()
            ),
        );
        for extra in [&["--yes"][..], &["--dry-run"][..]] {
            let mut args = vec!["rollback", "--version", "v1.1.0"];
            args.extend_from_slice(extra);
            assert_refused(&f, &args, &[bad, reason, "bagboy.yaml"]);
        }
        // Recording with it is refused too.
        let hist = f.project.history_bytes();
        let (_, err) = f.expect(2, &["record", "--version", "v1.2.0"]);
        assert!(err.contains(bad), "{err}");
        assert_eq!(f.project.history_bytes(), hist);
    }
}

#[test]
fn project_name_with_a_path_is_refused_as_formula_name() {
    let mut f = Fixture::new();
    f.publish_formula("v1.0.0");
    f.project.write(
        "bagboy.yaml",
        &format!("name: \"../myapp\"\nregistries:\n{}", f.brew_registry()),
    );
    let (_, err) = f.expect(2, &["record", "--version", "v1.0.0"]);
    assert!(err.contains("../myapp"), "{err}");
    assert!(!f.project.history_path().exists());
}

#[test]
fn a_target_tap_commit_without_the_formula_is_refused() {
    let mut f = Fixture::new();
    f.config(&[f.brew_registry()]);
    let bare = f.tap.commit_file("README.md", "# acme tap\n", "initial");
    f.tap.push();
    for v in VERSIONS {
        f.publish_formula(v);
        f.record(v);
    }
    // Point v1.1.0's tap_commit at the commit that has no formula.
    let recorded = f.commit_of("v1.1.0");
    let text = f.project.history();
    assert_eq!(text.matches(&recorded).count(), 1, "{text}");
    f.project.write_history(&text.replace(&recorded, &bare));

    let err = assert_refused(
        &f,
        &["rollback", "--version", "v1.1.0", "--yes"],
        &[&bare, "neither a formula nor a cask"],
    );
    assert!(err.contains("myapp"), "{err}");
    assert_refused(
        &f,
        &["rollback", "--version", "v1.1.0", "--dry-run"],
        &[&bare],
    );

    // A tap_commit that is not in the tap at all is bad input as well.
    let ghost = "0123456789abcdef0123456789abcdef01234567";
    f.project.write_history(&text.replace(&recorded, ghost));
    assert_refused(&f, &["rollback", "--version", "v1.1.0", "--yes"], &[ghost]);
}

#[test]
fn an_unreachable_tap_fails_with_exit_1_and_changes_nothing() {
    let f = formula_fixture();
    f.config(&[brew_entry("file:///nonexistent/tap.git")]);
    // A failure outside bagboy (docs/exit-codes.md): exit 1, nothing changed, the URL named.
    for args in [
        &["rollback", "--version", "v1.1.0", "--yes"][..],
        &["rollback", "--version", "v1.1.0", "--dry-run"][..],
    ] {
        let refs = f.remote_refs();
        let hist = f.project.history_bytes();
        let (_, err) = f.expect(1, args);
        assert!(
            err.contains("file:///nonexistent/tap.git"),
            "{args:?}: {err}"
        );
        assert_eq!(f.remote_refs(), refs);
        assert_eq!(f.project.history_bytes(), hist);
    }
    let hist = f.project.history_bytes();
    let (_, err) = f.expect(1, &["record", "--version", "v1.2.0"]);
    assert!(err.contains("file:///nonexistent/tap.git"), "{err}");
    assert_eq!(f.project.history_bytes(), hist);
}

// ---------------------------------------------------------------------------------------------
// 6. `bagboy record` observes the tap.
// ---------------------------------------------------------------------------------------------

#[test]
fn record_stores_the_commit_whose_formula_declares_the_version() {
    let mut f = Fixture::new();
    f.config(&[f.brew_registry()]);
    f.publish_formula("v1.0.0");
    f.publish_formula("v1.1.0");
    // Unrelated tap activity after 1.1.0: head is not the 1.1.0 commit any more.
    f.tap
        .commit_file("README.md", "# acme tap\n", "docs: readme");
    f.tap.push();
    f.publish_formula("v1.2.0");
    f.tap.commit_file(
        "Formula/other.rb",
        &goreleaser_formula("other", "9.9.9"),
        "other 9.9.9",
    );
    f.tap.push();

    // Record out of publishing order, as a late `record` in CI would.
    let (out, _) = f.record("v1.1.0");
    assert!(out.contains(&f.commit_of("v1.1.0")[..10]), "{out}");
    f.record("v1.0.0");
    f.record("v1.2.0");

    let h = f.history();
    for v in VERSIONS {
        let pkg = brew_package(release_entry(&h, v));
        assert_eq!(pkg["tap_commit"], f.commit_of(v).as_str(), "{v}: {pkg}");
        assert_eq!(pkg["formula"], "myapp");
        assert_eq!(pkg["registry"], TAP);
        let content = git(
            &f.tap.remote,
            &["show", &format!("{}:{FORMULA}", f.commit_of(v))],
        );
        assert!(content.contains(&format!("version \"{}\"", &v[1..])));
    }
    assert_eq!(status(&h[0]), "deployed");
    assert_eq!(version(&h[0]), "v1.2.0");
    assert_eq!(deployed(&h).len(), 1);

    // A version the tap never declared is refused and records nothing.
    let hist = f.project.history_bytes();
    let (_, err) = f.expect(2, &["record", "--version", "v9.9.9"]);
    assert!(err.contains("9.9.9"), "{err}");
    assert_eq!(f.project.history_bytes(), hist);
}

// ---------------------------------------------------------------------------------------------
// 7. GITHUB_TOKEN never leaks.
// ---------------------------------------------------------------------------------------------

const SENTINEL: &str = "ghp_bagboySENTINELx9Q2v7Lk3Zr8Wm4Tn6Yp1Hs5";

fn assert_no_secret(what: &str, haystack: &[u8]) {
    use base64::Engine as _;
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{SENTINEL}"));
    let s = String::from_utf8_lossy(haystack);
    assert!(!s.contains(SENTINEL), "{what} contains GITHUB_TOKEN:\n{s}");
    assert!(
        !s.contains(&basic),
        "{what} contains the token as Basic auth:\n{s}"
    );
    assert!(
        !s.contains("x9Q2v7Lk3Zr8Wm4Tn6Yp1Hs5"),
        "{what} contains part of the token"
    );
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn github_token_never_reaches_output_history_or_journal() {
    let mut f = Fixture::new();
    // The tap is configured as `acme/homebrew-tap` (GitHub), so bagboy really configures the
    // token for git; git's insteadOf (passed through the environment) sends it to the local tap.
    let rewrite = |target: &str| {
        vec![
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            (
                "GIT_CONFIG_KEY_0".to_string(),
                format!("url.{target}.insteadOf"),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_string(),
                format!("https://github.com/{TAP}.git"),
            ),
        ]
    };
    f.env.push(("GITHUB_TOKEN".into(), SENTINEL.into()));
    f.env.extend(rewrite(&f.tap.url()));
    f.config(&[format!(
        "  - format: brew\n    registry: {TAP}\n    branch: main\n"
    )]);

    // Capture the journal while a rollback runs: the tap's pre-receive hook copies it.
    let captured = f.project.path().join("captured-journal");
    let journal_dir = f.project.path().join(".bagboy/journal");

    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |f: &Fixture, code: i32, args: &[&str]| {
        let o = f.run(args);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {:?}", text(&o));
        outputs.push((format!("stdout of {args:?}"), o.stdout));
        outputs.push((format!("stderr of {args:?}"), o.stderr));
    };
    for v in VERSIONS {
        f.publish_formula(v);
        run(&f, 0, &["-vvv", "record", "--version", v]);
    }
    for format in ["text", "json", "markdown"] {
        run(
            &f,
            0,
            &[
                "-vvv",
                "rollback",
                "--version",
                "v1.1.0",
                "--dry-run",
                "--format",
                format,
            ],
        );
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let hook = f.tap.remote.join("hooks/pre-receive");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nmkdir -p '{c}' && cp '{j}'/*.jsonl '{c}/' 2>/dev/null\nexit 0\n",
                c = captured.display(),
                j = journal_dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    run(
        &f,
        0,
        &[
            "-vvv",
            "--log-format",
            "json",
            "rollback",
            "--version",
            "v1.1.0",
            "--yes",
        ],
    );
    run(&f, 0, &["-vvv", "rollback", "--version", "v1.1.0", "--yes"]);
    run(&f, 0, &["versions", "list", "--format", "json"]);
    // Failures print git's stderr and the tap URL: still no token.
    let mut broken = Fixture {
        project: Project::new(),
        tap: TestTap::new(),
        published: Vec::new(),
        env: Vec::new(),
    };
    broken.env.push(("GITHUB_TOKEN".into(), SENTINEL.into()));
    broken.env.extend(rewrite("file:///nonexistent/tap.git"));
    std::fs::create_dir_all(broken.project.path().join("docker-config")).unwrap();
    broken.project.write(
        "bagboy.yaml",
        &std::fs::read_to_string(f.project.path().join("bagboy.yaml")).unwrap(),
    );
    broken.project.write_history(&f.project.history());
    // Unreachable: a failure outside bagboy, exit 1 (docs/exit-codes.md).
    run(
        &broken,
        1,
        &["-vvv", "rollback", "--version", "v1.2.0", "--yes"],
    );
    run(&broken, 1, &["-vvv", "record", "--version", "v1.2.0"]);

    // The rollback really went through GitHub-style config, and the journal was captured.
    assert_eq!(
        f.tap.file_in_fresh_clone(FORMULA).as_deref(),
        Some(with_scheme_after_license(&goreleaser_formula("myapp", "1.1.0"), 1).as_str())
    );
    let mut journals = Vec::new();
    all_files(&captured, &mut journals);
    assert!(!journals.is_empty(), "the hook captured the journal");
    let journal = std::fs::read_to_string(&journals[0]).unwrap();
    assert!(journal.contains("Formula/myapp.rb"), "{journal}");
    let stderr_all: String = outputs
        .iter()
        .filter(|(w, _)| w.starts_with("stderr"))
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(stderr_all.contains("running git"), "-vvv logs git commands");
    assert!(stderr_all.contains("github.com"), "errors name the tap URL");

    for (what, bytes) in &outputs {
        assert_no_secret(what, bytes);
    }
    for dir in [f.project.path(), broken.project.path()] {
        let mut files = Vec::new();
        all_files(dir, &mut files);
        for file in files {
            assert_no_secret(&file.display().to_string(), &std::fs::read(&file).unwrap());
        }
    }
    let tap_log = git(
        &f.tap.remote,
        &["log", "--format=%H %an %ae %cn %ce%n%B", "main"],
    );
    assert_no_secret("tap commits", tap_log.as_bytes());
}
