//! Health checks and `rollback --auto` through the binary, against real servers: HTTP
//! endpoints that pass, fail, time out and answer slowly; commands; a real Prometheus (Debian
//! `prometheus`) scraping a small exporter started here; DataDog against a mock server (the
//! only stand-in: DataDog cannot run here, so those tests are named `mock_datadog_*`).

use crate::support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{Project, Run};
use support::fake_server::{FakeResponse, FakeServer};
use support::{Auth, TestRegistry};

fn run_in(p: &Project, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = support::cli::isolated(p.path());
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run bagboy");
    Run::of(out)
}

/// A project with one recorded release and the given health checks.
fn project(checks: &str) -> Project {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!("name: myapp\ndeployment:\n  health_checks:\n{checks}"),
    );
    p.write_history(
        "deployments:\n  - version: v1.0.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n",
    );
    p
}

fn endpoint(status: u16, delay: Duration) -> FakeServer {
    FakeServer::start(move |_, _| {
        std::thread::sleep(delay);
        FakeResponse::new(status).body("ok")
    })
}

#[test]
fn the_seed_deployment_block_loads_as_written() {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        r#"name: myapp
deployment:
  strategy: "blue-green"
  health_checks:
    - url: "https://api.myapp.com/health"
      timeout: "30s"
      retries: 3
    - command: "curl -f http://localhost:8080/ready"
      timeout: "10s"
  
  rollback:
    auto_trigger:
      - health_check_failures: 3
      - error_rate_threshold: "5%"
      - response_time_threshold: "2s"
    
    validation:
      - run_smoke_tests: true
      - verify_dependencies: true
      - check_backwards_compatibility: true
"#,
    );
    p.write_history("deployments: []\n");
    let run = run_in(&p, &[], &["versions", "list"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        !run.stderr.contains("unknown"),
        "no key is unknown: {}",
        run.show()
    );
}

#[test]
fn health_exits_0_5_6_for_passing_failing_and_inconclusive_checks() {
    let ok = endpoint(200, Duration::ZERO);
    let bad = endpoint(503, Duration::ZERO);
    let slow = endpoint(200, Duration::from_millis(1500));
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let p = project(&format!(
        "    - url: \"http://{}/health\"\n      timeout: \"2s\"\n    - command: \"true\"\n",
        ok.host()
    ));
    let run = run_in(&p, &[], &["health", "--format", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["verdict"], "passing");
    assert!(doc["samples"][0]["results"][0]["latency_ms"].is_u64());

    for (checks, what) in [
        (
            format!(
                "    - url: \"http://{}/health\"\n      retries: 2\n",
                bad.host()
            ),
            "503",
        ),
        (
            format!(
                "    - url: \"http://{}/health\"\n      timeout: \"300ms\"\n",
                slow.host()
            ),
            "timed out",
        ),
        ("    - command: \"sh -c 'exit 3'\"\n".to_string(), "exit"),
        (
            "    - command: \"sleep 5\"\n      timeout: \"300ms\"\n".to_string(),
            "timed out",
        ),
    ] {
        let p = project(&checks);
        let t = Instant::now();
        let run = run_in(&p, &[], &["health"]);
        assert_eq!(run.code, Some(5), "{checks}: {}", run.show());
        assert!(run.stdout.contains(what), "{checks}: {}", run.show());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{checks}: bounded by the timeout"
        );
    }
    assert_eq!(bad.requests().len(), 3, "retries: 2 means three attempts");

    // Prometheus down, a command that does not exist: inconclusive, not failing.
    let p = project(&format!(
        "    - prometheus: \"http://127.0.0.1:{dead}\"\n      query: up\n      max: 1\n"
    ));
    let run = run_in(&p, &[], &["health"]);
    assert_eq!(run.code, Some(6), "{}", run.show());
    let p = project("    - command: \"/nonexistent/bagboy-probe\"\n");
    let run = run_in(&p, &[], &["health"]);
    assert_eq!(run.code, Some(6), "{}", run.show());

    // --record writes the results onto the entry.
    let p = project(&format!("    - url: \"http://{}/health\"\n", ok.host()));
    let run = run_in(&p, &[], &["health", "--record"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(p.history().contains("status: passing"), "{}", p.history());
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_real_prometheus_query_over_an_exporters_series() {
    let exporter = FakeServer::start(|_, _| {
        FakeResponse::new(200)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body("# TYPE app_error_ratio gauge\napp_error_ratio{service=\"myapp\"} 0.2\n")
    });
    let prom = support::prometheus::Prometheus::start(&exporter.host(), "app_error_ratio");
    let check = |max: &str| {
        project(&format!(
            "    - prometheus: \"http://127.0.0.1:{}\"\n      query: 'max(app_error_ratio{{service=\"myapp\"}})'\n      max: {max}\n",
            prom.port
        ))
    };
    let run = run_in(&check("0.05"), &[], &["health", "--format", "json"]);
    assert_eq!(run.code, Some(5), "{}", run.show());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["samples"][0]["results"][0]["value"], 0.2);
    let run = run_in(&check("0.5"), &[], &["health"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    // A series that does not exist: inconclusive.
    let p = project(&format!(
        "    - prometheus: \"http://127.0.0.1:{}\"\n      query: no_such_series\n      max: 1\n",
        prom.port
    ));
    let run = run_in(&p, &[], &["health"]);
    assert_eq!(run.code, Some(6), "{}", run.show());
}

#[test]
fn mock_datadog_query_is_judged_and_its_keys_sent_only_to_it() {
    let dd = FakeServer::start(|req, _| {
        if req.header("dd-api-key") != Some("dd-api-0001") {
            return FakeResponse::new(403);
        }
        FakeResponse::new(200).header("Content-Type", "application/json").body(
            r#"{"status":"ok","series":[{"metric":"errors","pointlist":[[1700000000000,0.01],[1700000060000,0.09]]}]}"#,
        )
    });
    let p = project(
        "    - datadog: \"avg:trace.http.request.errors{service:myapp}\"\n      max: 0.05\n",
    );
    let env = [
        ("BAGBOY_DATADOG_URL", format!("http://{}", dd.host())),
        ("DD_API_KEY", "dd-api-0001".to_string()),
        ("DD_APP_KEY", "dd-app-0001".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let run = run_in(&p, &env, &["health"]);
    assert_eq!(
        run.code,
        Some(5),
        "the last point 0.09 is above 0.05: {}",
        run.show()
    );
    let req = &dd.requests()[0];
    assert!(req.target.contains("query=avg%3Atrace"), "{}", req.target);
    assert_eq!(req.header("dd-application-key"), Some("dd-app-0001"));
    assert!(!run.stdout.contains("dd-api-0001") && !run.stderr.contains("dd-api-0001"));
    // Without keys: inconclusive.
    let run = run_in(
        &p,
        &[("BAGBOY_DATADOG_URL", &format!("http://{}", dd.host()))],
        &["health"],
    );
    assert_eq!(run.code, Some(6), "{}", run.show());
}

/// Three releases on a real registry, recorded, and checks against a switchable endpoint.
struct Auto {
    reg: TestRegistry,
    p: Project,
    healthy: Arc<AtomicBool>,
    _endpoint: FakeServer,
    digests: Vec<String>,
}

fn auto(extra_checks: &str) -> Auto {
    let reg = TestRegistry::start(Auth::None);
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = healthy.clone();
    let endpoint = FakeServer::start(move |_, _| {
        FakeResponse::new(if flag.load(Ordering::SeqCst) {
            200
        } else {
            503
        })
    });
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\ndeployment:\n  health_checks:\n    - url: \"http://{}/health\"\n      timeout: \"2s\"\n{extra_checks}  rollback:\n    auto_trigger:\n      - health_check_failures: 3\n",
            reg.repo("acme/app"),
            endpoint.host()
        ),
    );
    let mut digests = Vec::new();
    for v in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        let d = reg.push_image("acme/app", v);
        reg.put_tag("acme/app", "latest", &d);
        digests.push(d);
        let run = run_in(&p, &[], &["record", "--version", v]);
        assert_eq!(run.code, Some(0), "{}", run.show());
    }
    Auto {
        reg,
        p,
        healthy,
        _endpoint: endpoint,
        digests,
    }
}

#[test]
fn auto_rolls_back_to_the_last_known_good_release_after_three_failures_and_holds_the_bad_one() {
    let a = auto("");
    a.healthy.store(false, Ordering::SeqCst);
    // A preview first: the decision and the plan, and nothing changes.
    let before = a.p.history();
    let latest = a.reg.tag_digest("acme/app", "latest");
    let dry = run_in(
        &a.p,
        &[],
        &["rollback", "--auto", "--dry-run", "--interval", "100ms"],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    assert!(
        dry.stdout.contains("critical") && dry.stdout.contains("nothing was changed"),
        "{}",
        dry.show()
    );
    assert_eq!(a.p.history(), before);
    assert_eq!(a.reg.tag_digest("acme/app", "latest"), latest);
    let run = run_in(&a.p, &[], &["rollback", "--auto", "--interval", "100ms"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(run.stdout.contains("critical"), "{}", run.show());
    assert_eq!(
        a.reg.tag_digest("acme/app", "latest").as_ref(),
        Some(&a.digests[1])
    );
    let list = run_in(&a.p, &[], &["versions", "list", "--format", "json"]);
    let doc: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["current"], "v1.1.0");
    let history = a.p.history();
    assert!(
        history.contains("status: failing"),
        "samples recorded:\n{history}"
    );
    assert!(
        history.contains("held:"),
        "the bad version is held:\n{history}"
    );
    assert!(history.contains("failed_rounds: \"3 of 3\""), "{history}");
    // Automation cannot re-promote it.
    let run = run_in(&a.p, &[], &["record", "--version", "v1.2.0"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("held"), "{}", run.show());
    let run = run_in(&a.p, &[], &["record", "--version", "v1.2.0", "--force"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
}

#[test]
fn auto_does_nothing_when_healthy() {
    let a = auto("");
    let history = a.p.history_bytes();
    let before = a.reg.bagboy_requests().len();
    let run = run_in(
        &a.p,
        &[],
        &[
            "rollback",
            "--auto",
            "--interval",
            "50ms",
            "--format",
            "json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.show());
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(doc["auto"]["decision"]["decision"], "healthy");
    assert_eq!(doc["auto"]["samples"].as_array().unwrap().len(), 3);
    assert_eq!(a.p.history_bytes(), history, "nothing written");
    assert_eq!(
        a.reg.bagboy_requests().len(),
        before,
        "no registry request at all"
    );
}

#[test]
fn auto_is_inconclusive_and_changes_nothing_when_prometheus_is_unreachable() {
    let dead = free_port();
    let a = auto(&format!(
        "    - prometheus: \"http://127.0.0.1:{dead}\"\n      query: up\n      max: 1\n"
    ));
    let history = a.p.history_bytes();
    let run = run_in(&a.p, &[], &["rollback", "--auto", "--interval", "50ms"]);
    assert_eq!(run.code, Some(6), "{}", run.show());
    assert_eq!(a.p.history_bytes(), history);
    assert_eq!(
        a.reg.tag_digest("acme/app", "latest").as_ref(),
        Some(&a.digests[2])
    );
}
