//! One test per exit code of docs/exit-codes.md, through the binary (3 needs an undo that
//! fails too: `tests/homebrew_tap.rs` and `tests/crash_safety.rs` play it).

use crate::support;

use std::net::TcpListener;

use support::cli::{isolated, Project, Run};
use support::{Auth, TestRegistry};

fn run(p: &Project, args: &[&str]) -> Run {
    Run::of(isolated(p.path()).args(args).output().unwrap())
}

/// A project with a Docker registry and two recorded releases.
fn recorded() -> (TestRegistry, Project) {
    let reg = TestRegistry::start(Auth::None);
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: app\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n",
            reg.repo("acme/app")
        ),
    );
    for v in ["v1.0.0", "v1.1.0"] {
        let d = reg.push_image("acme/app", v);
        reg.put_tag("acme/app", "latest", &d);
        let r = run(&p, &["record", "--version", v]);
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    (reg, p)
}

/// A loopback port nothing listens on.
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[test]
fn exit_0_success() {
    let (_reg, p) = recorded();
    assert_eq!(run(&p, &["rollback", "--dry-run"]).code, Some(0));
    assert_eq!(run(&p, &["rollback", "--yes"]).code, Some(0));
}

#[test]
fn exit_1_a_registry_or_tap_that_cannot_be_reached() {
    let (_reg, p) = recorded();
    let before = p.history();
    // The tap's remote does not exist: a failure outside bagboy, nothing changed.
    let gone = p.path().join("no-such-tap.git");
    let cfg = std::fs::read_to_string(p.path().join("bagboy.yaml")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "{cfg}  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"file://{}\"\n",
            gone.display()
        ),
    );
    let r = run(&p, &["rollback", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert_eq!(p.history(), before);
    // A registry that does not answer.
    p.write(
        "bagboy.yaml",
        &format!(
            "name: app\nregistries:\n  - format: docker\n    registry: \"127.0.0.1:{}/acme/app\"\n    insecure: true\n",
            dead_port()
        ),
    );
    let r = run(&p, &["record", "--version", "v1.2.0"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert_eq!(p.history(), before);
}

#[test]
fn exit_2_input_that_can_be_fixed() {
    let (_reg, p) = recorded();
    let before = p.history();
    for args in [
        &["rollback", "--version", "v9.9.9", "--dry-run"][..],
        &["rollback", "--yes", "--version", "v1.0.O"][..],
    ] {
        let r = run(&p, args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.show());
    }
    p.write("bagboy.yaml", "name: app\nregistries: [oops\n");
    let r = run(&p, &["rollback", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("bagboy.yaml:"), "{}", r.show());
    assert_eq!(p.history(), before);
}

#[test]
fn exit_4_another_bagboy_holds_the_lock() {
    let (_reg, p) = recorded();
    // A live process on this host holds it: this test's own pid.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    p.write(
        ".bagboy/lock",
        &format!(
            "{{\"pid\":{},\"host\":\"{host}\",\"started_at\":\"2026-01-01T00:00:00Z\",\"command\":\"bagboy rollback\"}}",
            std::process::id()
        ),
    );
    let before = p.history();
    let r = run(&p, &["rollback", "--yes"]);
    assert_eq!(r.code, Some(4), "{}", r.show());
    assert_eq!(p.history(), before);
}

#[test]
fn exit_5_and_6_health() {
    let (_reg, p) = recorded();
    let failing = support::fake_server::FakeServer::start(|_, _| {
        support::fake_server::FakeResponse::new(500)
    });
    p.write(
        "bagboy.yaml",
        &format!(
            "name: app\ndeployment:\n  health_checks:\n    - url: \"http://{}/health\"\n",
            failing.host()
        ),
    );
    assert_eq!(run(&p, &["health"]).code, Some(5));
    // Coloured when asked (or on a terminal): red for the failing check and the verdict.
    let coloured = run(&p, &["--color", "always", "health"]);
    assert!(coloured.stdout.contains("\x1b[31m"), "{}", coloured.show());
    assert!(!run(&p, &["health"]).stdout.contains('\x1b'));
    p.write(
        "bagboy.yaml",
        &format!(
            "name: app\ndeployment:\n  health_checks:\n    - prometheus: \"http://127.0.0.1:{}\"\n      query: up\n      max: 1\n",
            dead_port()
        ),
    );
    assert_eq!(run(&p, &["health"]).code, Some(6));
}
