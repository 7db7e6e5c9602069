//! `format: npm` against a real npm registry (Verdaccio): record three releases of a package
//! family, roll back through the binary, read the dist-tags and `deprecated` fields back.

use crate::support;

use std::net::SocketAddr;

use serde_json::Value;
use support::cli::{Project, Run};
use support::fake_server::{FakeResponse, FakeServer};
use support::npm::TestNpm;
use support::proxy::{Fault, FaultProxy};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

fn run(p: &Project, npmrc: &std::path::Path, args: &[&str]) -> Run {
    let out = support::cli::isolated(p.path())
        .args(args)
        .env("NPM_CONFIG_USERCONFIG", npmrc)
        .output()
        .unwrap();
    Run::of(out)
}

fn family() -> Vec<String> {
    let mut names = vec!["myapp".to_string()];
    for arch in [
        "linux-x64",
        "linux-arm64",
        "darwin-x64",
        "darwin-arm64",
        "win32-x64",
    ] {
        names.push(format!("@acme/myapp-{arch}"));
    }
    for n in 1..=5 {
        names.push(format!("myapp-plugin-{n}"));
    }
    names
}

fn publish_all(npm: &TestNpm, names: &[String], v: &str) {
    std::thread::scope(|s| {
        for n in names {
            s.spawn(move || npm.publish(n, v));
        }
    });
}

#[test]
fn a_family_of_packages_is_rolled_back_and_the_bad_version_deprecated() {
    let npm = TestNpm::start();
    let p = Project::new();
    let names = family();
    let list = names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: npm\n    registry: \"{}\"\n    packages: [{list}]\n    dist_tags: [latest]\n    deprecate_bad: true\n    deprecate_message: \"broken; use {{target}}\"\n",
            npm.url()
        ),
    );
    let rc = npm.npmrc(p.path());
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        publish_all(&npm, &names, v);
        let r = run(&p, &rc, &["record", "--version", &format!("v{v}")]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    assert!(p.history().contains("integrity:"), "{}", p.history());

    // A dry-run changes nothing.
    let dry = run(
        &p,
        &rc,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let steps = plan["registries"][0]["steps"].as_array().unwrap();
    assert_eq!(
        steps
            .iter()
            .filter(|s| s["action"] == "move_dist_tag")
            .count(),
        names.len()
    );
    assert_eq!(
        steps.iter().filter(|s| s["action"] == "deprecate").count(),
        names.len()
    );
    assert!(
        dry.stdout.contains("broken; use 1.1.0"),
        "the exact message is in the plan"
    );
    // Eleven packages alike: one note for all of them.
    let notes = plan["registries"][0]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0]
        .as_str()
        .unwrap()
        .starts_with("who this reaches (each of myapp, @acme/myapp-linux-x64,"));
    for n in &names {
        assert_eq!(npm.dist_tag(n, "latest").as_deref(), Some("1.2.0"));
    }

    let r = run(&p, &rc, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    for n in &names {
        assert_eq!(npm.dist_tag(n, "latest").as_deref(), Some("1.1.0"), "{n}");
        assert_eq!(
            npm.deprecated(n, "1.2.0").as_deref(),
            Some("broken; use 1.1.0"),
            "{n}"
        );
        assert_eq!(npm.deprecated(n, "1.1.0"), None);
    }
    // Again: nothing to do.
    let again = run(&p, &rc, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stdout.contains("already current"), "{}", again.stdout);
    // Rolling forward to 1.2.0 un-deprecates it.
    let fwd = run(
        &p,
        &rc,
        &["rollback", "--version", "v1.2.0", "--yes", "--force"],
    );
    assert_eq!(fwd.code, Some(0), "{}\n{}", fwd.stdout, fwd.stderr);
    assert_eq!(npm.deprecated("myapp", "1.2.0"), None);
    assert_eq!(npm.dist_tag("myapp", "latest").as_deref(), Some("1.2.0"));
}

#[test]
fn a_token_written_for_another_host_is_never_sent() {
    let npm = TestNpm::start();
    let other = FakeServer::start(|_, _| FakeResponse::new(404));
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: npm\n    registry: \"http://{}/\"\n    packages: [myapp]\n",
            other.host()
        ),
    );
    // The checkout's own .npmrc (anyone's, on a PR) names the attacker's server: never read.
    p.write(
        ".npmrc",
        &format!("//{}/:_authToken=from-the-checkout\n", other.host()),
    );
    let rc = npm.npmrc(p.path());
    let r = run(&p, &rc, &["record", "--version", "v1.0.0"]);
    assert_ne!(r.code, Some(0));
    assert!(!other.requests().is_empty(), "the server was asked");
    assert!(
        other
            .requests()
            .iter()
            .all(|q| q.header("authorization").is_none()),
        "no token went to a host it was not written for"
    );
    assert!(!r.stderr.contains(&npm.token));
}

#[test]
fn docker_homebrew_and_npm_together_are_all_put_back_when_npm_fails() {
    let npm = TestNpm::start();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], npm.port)));
    let reg = TestRegistry::start(Auth::None);
    let tap = TestTap::new();
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n  - format: npm\n    registry: \"http://{}/\"\n    packages: [myapp, \"@acme/myapp-linux-x64\"]\nrollback:\n  concurrency: 1\n",
            reg.repo("acme/app"),
            tap.url(),
            proxy.addr()
        ),
    );
    let rc = p.path().join("user.npmrc");
    std::fs::write(
        &rc,
        format!("//{}/:_authToken={}\n", proxy.addr(), npm.token),
    )
    .unwrap();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let d = reg.push_image("acme/app", &format!("v{v}"));
        reg.put_tag("acme/app", "latest", &d);
        tap.commit_file(
            "Formula/myapp.rb",
            &goreleaser_formula("myapp", v),
            &format!("myapp {v}"),
        );
        tap.push();
        publish_all(&npm, &["myapp".into(), "@acme/myapp-linux-x64".into()], v);
        let r = run(&p, &rc, &["record", "--version", &format!("v{v}")]);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
    }
    let latest = reg.tag_digest("acme/app", "latest");
    let head = tap.head();
    // The scoped package's dist-tag write is refused (a token without publish rights on it).
    proxy.set_fault_when(|s| {
        (s.method == "PUT" && s.path.contains("myapp-linux-x64")).then_some(Fault::Status(403))
    });
    let r = run(&p, &rc, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        reg.tag_digest("acme/app", "latest"),
        latest,
        "docker put back"
    );
    assert!(
        tap.file_in_fresh_clone("Formula/myapp.rb")
            .unwrap()
            .contains("1.2.0"),
        "tap put back"
    );
    assert_ne!(
        tap.head(),
        head,
        "by a restoring commit, never a force-push"
    );
    assert!(tap.is_ancestor(&head, &tap.head()));
    assert_eq!(
        npm.dist_tag("myapp", "latest").as_deref(),
        Some("1.2.0"),
        "npm put back"
    );
    assert!(p.history().contains("rollback_failed"), "{}", p.history());
}

fn one_package(npm: &TestNpm, extra: &str) -> (Project, std::path::PathBuf) {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: npm\n    registry: \"{}\"\n    packages: [myapp]\n    deprecate_bad: true\n{extra}rollback:\n  concurrency: 1\n",
            npm.url()
        ),
    );
    let rc = npm.npmrc(p.path());
    (p, rc)
}

fn record(p: &Project, rc: &std::path::Path, v: &str) {
    let r = run(p, rc, &["record", "--version", v]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
}

fn step<'a>(plan: &'a Value, reference: &str) -> &'a Value {
    plan["registries"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["reference"] == reference)
        .unwrap_or_else(|| panic!("no step {reference} in {plan:#}"))
}

/// A consumer project that resolved `myapp@^1.1.0` into its lockfile before the rollback.
fn locked_consumer(npm: &TestNpm) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("package.json"),
        r#"{ "name": "locked", "version": "1.0.0", "private": true }"#,
    )
    .unwrap();
    npm.npm(dir.path(), &["install", "myapp@^1.1.0"]);
    assert!(dir.path().join("package-lock.json").exists());
    dir
}

fn installed(dir: &std::path::Path) -> String {
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("node_modules/myapp/package.json")).unwrap(),
    )
    .unwrap();
    m["version"].as_str().unwrap().to_string()
}

#[test]
fn a_configured_tag_on_the_bad_version_moves_and_npm_installs_the_target() {
    let npm = TestNpm::start();
    let (p, rc) = one_package(&npm, "    dist_tags: [latest, next]\n");
    npm.publish("myapp", "1.0.0");
    record(&p, &rc, "v1.0.0");
    npm.publish("myapp", "1.1.0");
    npm.set_dist_tag("myapp", "next", "1.1.0");
    npm.set_dist_tag("myapp", "beta", "1.1.0");
    npm.set_dist_tag("myapp", "legacy", "1.0.0");
    record(&p, &rc, "v1.1.0");
    let locked = locked_consumer(&npm);

    let dry = run(
        &p,
        &rc,
        &[
            "rollback",
            "--version",
            "v1.0.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    assert_eq!(step(&plan, "myapp@latest")["action"], "move_dist_tag");
    // 1.0.0 never carried `next`; it is configured and points at the version deprecated here.
    let next = step(&plan, "myapp@next");
    assert_eq!(next["action"], "move_dist_tag", "{next}");
    assert_eq!(next["after"], "1.0.0");
    assert!(
        next["detail"]
            .as_str()
            .unwrap()
            .contains("1.0.0 never carried it, but 1.1.0 is deprecated by this rollback"),
        "{next}"
    );
    // Not configured, on the bad version: named, left in place, and why.
    let beta = step(&plan, "myapp@beta");
    assert_eq!(beta["action"], "left_in_place", "{beta}");
    assert_eq!(beta["before"], "1.1.0");
    assert!(beta["detail"]
        .as_str()
        .unwrap()
        .contains("add `beta` to `dist_tags`"));
    assert_eq!(step(&plan, "myapp@1.1.0")["action"], "deprecate");
    let steps = plan["registries"][0]["steps"].as_array().unwrap();
    assert!(
        steps.iter().all(|s| s["reference"] != "myapp@legacy"),
        "a tag on neither side is not the plan's business"
    );
    let note = plan["registries"][0]["notes"][0].as_str().unwrap();
    for says in [
        "who this reaches (myapp):",
        "a fresh `npm install myapp` and ranges 1.0.0 satisfies (`^1.0.0`) get 1.0.0",
        "a range 1.0.0 does not satisfy (`^1.1.0`) gets its newest non-deprecated version, else 1.1.0 with a deprecation warning",
        "existing lockfiles keep 1.1.0: `npm ci` and `npm install` install it without a warning",
        "`myapp@latest`, `myapp@next` get 1.0.0",
        "`myapp@beta` and other tags are untouched",
    ] {
        assert!(note.contains(says), "{says:?} not in {note}");
    }
    for format in ["text", "markdown"] {
        let out = run(
            &p,
            &rc,
            &[
                "rollback",
                "--version",
                "v1.0.0",
                "--dry-run",
                "--format",
                format,
            ],
        );
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert!(out.stdout.contains("who this reaches"), "{}", out.stdout);
        assert!(out.stdout.contains("myapp@beta"), "{}", out.stdout);
    }
    let text = run(&p, &rc, &["rollback", "--version", "v1.0.0", "--dry-run"]);
    assert!(text.stdout.contains("leave"), "{}", text.stdout);

    let r = run(&p, &rc, &["rollback", "--version", "v1.0.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);

    // What consumers see, through the real npm CLI.
    let work = tempfile::tempdir().unwrap();
    let (tags, _) = npm.npm(work.path(), &["view", "myapp", "dist-tags", "--json"]);
    let tags: Value = serde_json::from_str(&tags).unwrap();
    assert_eq!(tags["latest"], "1.0.0", "{tags}");
    assert_eq!(tags["next"], "1.0.0", "{tags}");
    assert_eq!(tags["beta"], "1.1.0", "{tags}");
    assert_eq!(tags["legacy"], "1.0.0", "{tags}");
    for spec in ["myapp", "myapp@next", "myapp@^1.0.0"] {
        let (v, stderr) = npm.install(spec);
        assert_eq!(v, "1.0.0", "{spec}");
        assert!(!stderr.contains("deprecated"), "{spec}: {stderr}");
    }
    for spec in ["myapp@^1.1.0", "myapp@beta"] {
        let (v, stderr) = npm.install(spec);
        assert_eq!(v, "1.1.0", "{spec}");
        assert!(
            stderr.contains("deprecated myapp@1.1.0: broken; use 1.0.0"),
            "{spec}: {stderr}"
        );
    }
    // A lockfile keeps the bad version, and npm says nothing about it.
    std::fs::remove_dir_all(locked.path().join("node_modules")).unwrap();
    let (_, stderr) = npm.npm(locked.path(), &["ci"]);
    assert_eq!(installed(locked.path()), "1.1.0");
    assert!(!stderr.contains("deprecated"), "{stderr}");
}

#[test]
fn successive_rollbacks_refresh_bagboys_own_deprecation_messages() {
    let npm = TestNpm::start();
    let (p, rc) = one_package(&npm, "");
    // Someone else's deprecation, in words bagboy never writes: never touched.
    npm.publish("myapp", "0.9.0");
    let work = tempfile::tempdir().unwrap();
    npm.npm(
        work.path(),
        &[
            "deprecate",
            "myapp@0.9.0",
            "use 1.1.0 or later",
            "--userconfig",
            rc.to_str().unwrap(),
        ],
    );
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        npm.publish("myapp", v);
        record(&p, &rc, &format!("v{v}"));
    }
    let view = |v: &str| {
        let (out, _) = npm.npm(work.path(), &["view", &format!("myapp@{v}"), "deprecated"]);
        out.trim().to_string()
    };

    let r = run(&p, &rc, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(view("1.2.0"), "broken; use 1.1.0");

    let dry = run(
        &p,
        &rc,
        &[
            "rollback",
            "--version",
            "v1.0.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.stderr);
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let refresh = step(&plan, "myapp@1.2.0");
    assert_eq!(refresh["action"], "deprecate");
    assert_eq!(refresh["before"], "broken; use 1.1.0");
    assert_eq!(refresh["after"], "broken; use 1.0.0");
    assert!(refresh["detail"].as_str().unwrap().contains("refreshed"));
    let steps = plan["registries"][0]["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["reference"] != "myapp@0.9.0"));

    let r = run(&p, &rc, &["rollback", "--version", "v1.0.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(view("1.1.0"), "broken; use 1.0.0");
    assert_eq!(view("1.2.0"), "broken; use 1.0.0");
    assert_eq!(view("0.9.0"), "use 1.1.0 or later");
    assert_eq!(view("1.0.0"), "");
    let (v, stderr) = npm.install("myapp@^1.1.0");
    assert_eq!(
        v, "1.2.0",
        "every version in range is deprecated: the newest"
    );
    assert!(stderr.contains("broken; use 1.0.0"), "{stderr}");
}

#[test]
fn moved_tags_and_refreshed_messages_are_put_back_when_a_later_step_fails() {
    let npm = TestNpm::start();
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], npm.port)));
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: npm\n    registry: \"http://{}/\"\n    packages: [myapp]\n    dist_tags: [latest, next]\n    deprecate_bad: true\nrollback:\n  concurrency: 1\n",
            proxy.addr()
        ),
    );
    let rc = p.path().join("user.npmrc");
    std::fs::write(
        &rc,
        format!("//{}/:_authToken={}\n", proxy.addr(), npm.token),
    )
    .unwrap();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        npm.publish("myapp", v);
        npm.set_dist_tag("myapp", "next", v);
        record(&p, &rc, &format!("v{v}"));
    }
    let r = run(&p, &rc, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        npm.deprecated("myapp", "1.2.0").as_deref(),
        Some("broken; use 1.1.0")
    );
    // The second rollback moves both tags, deprecates 1.1.0, then fails re-wording 1.2.0.
    let writes = std::sync::atomic::AtomicUsize::new(0);
    proxy.set_fault_when(move |s| {
        let document = s.method == "PUT" && !s.path.contains("dist-tags");
        (document && writes.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1)
            .then_some(Fault::Status(500))
    });
    let r = run(&p, &rc, &["rollback", "--version", "v1.0.0", "--yes"]);
    assert!(
        r.stderr.contains("myapp@1.2.0") || r.stdout.contains("myapp@1.2.0"),
        "{}\n{}",
        r.stdout,
        r.stderr
    );
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    proxy.set_fault_when(|_| None);
    assert_eq!(npm.dist_tag("myapp", "latest").as_deref(), Some("1.1.0"));
    assert_eq!(npm.dist_tag("myapp", "next").as_deref(), Some("1.1.0"));
    assert_eq!(npm.deprecated("myapp", "1.1.0"), None);
    assert_eq!(
        npm.deprecated("myapp", "1.2.0").as_deref(),
        Some("broken; use 1.1.0")
    );
    assert!(p.history().contains("rollback_failed"), "{}", p.history());
}
