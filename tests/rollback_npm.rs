//! `format: npm` against a real npm registry (Verdaccio): record three releases of a package
//! family, roll back through the binary, read the dist-tags and `deprecated` fields back.

mod support;

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
    assert!(plan["registries"][0]["notes"][0]
        .as_str()
        .unwrap()
        .contains("new installs"));
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
