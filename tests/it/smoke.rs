//! `run_smoke_tests` against a real Docker Engine API (`podman system service`), with images
//! the test builds from Debian's static busybox and pushes to a real `docker-registry`: an HTTP
//! probe that passes, a command that fails (the rollback is refused, nothing changed), and the
//! container removed afterwards. When the engine cannot run containers on this machine, the
//! test says why and skips only this part.

use crate::support;

use support::cli::{isolated, Project, Run};
use support::podman::Podman;
use support::{Auth, TestRegistry};

#[test]
fn smoke_tests_start_the_target_image_through_the_engine_api() {
    let reg = TestRegistry::start(Auth::None);
    let podman = match Podman::start(&reg.host()) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED (smoke tests only): {why}");
            return;
        }
    };
    let repo = reg.repo("acme/app");
    let httpd = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"];
    let d11 = podman
        .build_and_push(&format!("{repo}:v1.1.0"), &httpd)
        .expect("build v1.1.0");
    if let Err(why) = podman.can_run(&format!("{repo}:v1.1.0")) {
        eprintln!("SKIPPED (smoke tests only): containers cannot start here: {why}");
        return;
    }
    reg.put_tag("acme/app", "latest", &d11);
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    let config = |validation: &str| {
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\ndeployment:\n  rollback:\n    validation:\n      - run_smoke_tests: {validation}\n"
            ),
        );
    };
    config("true");
    let run = |args: &[&str]| {
        Run::of(
            isolated(p.path())
                .env("DOCKER_HOST", podman.docker_host())
                .args(args)
                .output()
                .unwrap(),
        )
    };
    assert_eq!(run(&["record", "--version", "v1.1.0"]).code, Some(0));
    let d12 = podman
        .build_and_push(&format!("{repo}:v1.2.0"), &httpd)
        .expect("build v1.2.0");
    reg.put_tag("acme/app", "latest", &d12);
    assert_eq!(run(&["record", "--version", "v1.2.0"]).code, Some(0));

    // A dry-run starts nothing and says so.
    let r = run(&["rollback", "--dry-run"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("a dry-run starts no container"),
        "{}",
        r.show()
    );
    assert!(podman.containers().is_empty());

    // A failing command: refused, nothing changed, the container removed.
    config("{command: [\"/bin/busybox\", \"sh\", \"-c\", \"echo broken config >&2; exit 3\"], timeout: \"30s\"}");
    let history = p.history_bytes();
    let r = run(&["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("smoke test of")
            && r.stderr.contains("exited 3")
            && r.stderr.contains("broken config"),
        "{}",
        r.show()
    );
    assert_eq!(reg.tag_digest("acme/app", "latest"), Some(d12.clone()));
    assert_eq!(p.history_bytes(), history);
    assert!(podman.containers().is_empty(), "{:?}", podman.containers());

    // An HTTP probe on the published port: passes, the rollback runs.
    config("{http: {port: 8080, path: /index.html}, timeout: \"30s\"}");
    let r = run(&["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("passed  smoke_test")
            && r.stdout.contains("/index.html on 8080/tcp answered 200"),
        "{}",
        r.show()
    );
    assert!(
        r.stdout.contains(&format!("{repo}@{d11}")),
        "pulled by digest: {}",
        r.show()
    );
    assert_eq!(reg.tag_digest("acme/app", "latest"), Some(d11));
    assert!(podman.containers().is_empty(), "{:?}", podman.containers());
}
