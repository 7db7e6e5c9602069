//! `health --judge` and `rollback --auto` with a judge, through the binary, against a real
//! Prometheus scraping a small exporter started here: a series per version whose values change
//! on every scrape (a deterministic xorshift around a known mean).

use crate::support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{Project, Run};
use support::fake_server::{FakeResponse, FakeServer};
use support::prometheus::Prometheus;
use support::{Auth, TestRegistry};

fn run_in(p: &Project, args: &[&str]) -> Run {
    let mut c = support::cli::isolated(p.path());
    c.args(args);
    Run::of(c.output().expect("run bagboy"))
}

/// xorshift64*: a uniform value in [0, 1) per call.
fn uniform(state: &AtomicU64) -> f64 {
    let mut x = state.load(Ordering::SeqCst);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.store(x, Ordering::SeqCst);
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// The exporter: per scrape, for v1.1.0 (baseline) and v1.2.0 (candidate),
/// `judge_latency_seconds` 0.10 ± 0.01 vs 0.20 ± 0.01 (a regression), and `judge_steady`
/// 0.10 ± 0.01 on both (no difference).
fn exporter() -> FakeServer {
    let state = Arc::new(AtomicU64::new(0x9E37_79B9_7F4A_7C15));
    FakeServer::start(move |_, _| {
        let noise = || (uniform(&state) - 0.5) * 0.02;
        let body = format!(
            "# TYPE judge_latency_seconds gauge\n\
             judge_latency_seconds{{version=\"v1.1.0\"}} {}\n\
             judge_latency_seconds{{version=\"v1.2.0\"}} {}\n\
             # TYPE judge_steady gauge\n\
             judge_steady{{version=\"v1.1.0\"}} {}\n\
             judge_steady{{version=\"v1.2.0\"}} {}\n",
            0.10 + noise(),
            0.20 + noise(),
            0.10 + noise(),
            0.10 + noise(),
        );
        FakeResponse::new(200)
            .header("Content-Type", "text/plain; version=0.0.4")
            .body(body)
    })
}

fn metric(name: &str, series: &str, critical: bool, weight: f64) -> String {
    format!(
        "        - name: {name}\n          query: '{series}{{version=\"$VERSION\"}}'\n          direction: increase\n          tolerance: 0.25\n          critical: {critical}\n          weight: {weight}\n"
    )
}

fn judge_block(prom: &Prometheus, window: &str, metrics: &str) -> String {
    format!(
        "deployment:\n  rollback:\n    judge:\n      prometheus: \"{}\"\n      baseline: previous\n      window: {window}\n      pass: 95\n      marginal: 75\n      metrics:\n{metrics}",
        prom.url()
    )
}

/// v1.0.0, v1.1.0 and v1.2.0 recorded on a real registry (v1.2.0 current).
fn released(reg: &TestRegistry, repo: &str, judge: &str) -> (Project, Vec<String>) {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n{judge}",
            reg.repo(repo)
        ),
    );
    let mut digests = Vec::new();
    for v in ["v1.0.0", "v1.1.0", "v1.2.0"] {
        let d = reg.push_image(repo, v);
        reg.put_tag(repo, "latest", &d);
        digests.push(d);
        let run = run_in(&p, &["record", "--version", v]);
        assert_eq!(run.code, Some(0), "{}", run.show());
    }
    (p, digests)
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.show()))
}

#[test]
fn the_judge_against_a_real_prometheus() {
    let exp = exporter();
    let prom = Prometheus::start(&exp.host(), "judge_steady");
    let started = Instant::now();
    let reg = TestRegistry::start(Auth::None);
    let window = "15s";

    let regression = judge_block(
        &prom,
        window,
        &metric("latency", "judge_latency_seconds", true, 1.0),
    );
    let same = judge_block(&prom, window, &metric("steady", "judge_steady", true, 1.0));
    // A critical metric failing while the weighted score is 99.99: fail.
    let critical = judge_block(
        &prom,
        window,
        &format!(
            "{}{}",
            metric("steady", "judge_steady", false, 100.0),
            metric("latency", "judge_latency_seconds", true, 0.01)
        ),
    );
    // One second: two points a side, below the minimum of three.
    let small = judge_block(
        &prom,
        "1s",
        &metric("latency", "judge_latency_seconds", true, 1.0),
    );
    let (p_reg, digests) = released(&reg, "acme/regression", &regression);
    let (p_same, _) = released(&reg, "acme/same", &same);
    let (p_small, small_digests) = released(&reg, "acme/small", &small);
    let p_crit = Project::new();
    p_crit.write("bagboy.yaml", &format!("name: myapp\n{critical}"));
    p_crit.write_history(
        "deployments:\n  - version: v1.2.0\n    timestamp: \"2026-01-02T00:00:00Z\"\n    status: deployed\n  - version: v1.1.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: superseded\n",
    );

    // Let Prometheus gather a full window of scrapes.
    if let Some(wait) = Duration::from_secs(16).checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }

    // A clear regression: exit 5, and the JSON carries what the contract names.
    let run = run_in(&p_reg, &["health", "--judge", "--format", "json"]);
    assert_eq!(run.code, Some(5), "{}", run.show());
    let doc = json(&run);
    assert_eq!(doc["result"], "fail");
    assert_eq!(doc["candidate"], "v1.2.0");
    assert_eq!(doc["baseline"], "v1.1.0");
    let m = &doc["metrics"][0];
    assert_eq!(m["name"], "latency");
    assert_eq!(m["verdict"], "high");
    assert!(m["samples"]["candidate"].as_u64().unwrap() >= 10, "{m}");
    assert!(m["samples"]["baseline"].as_u64().unwrap() >= 10, "{m}");
    assert!(m["p"].as_f64().unwrap() < 0.001, "{m}");
    assert!(m["u"].is_f64(), "{m}");
    let effect = m["effect"].as_f64().unwrap();
    assert!((0.7..1.3).contains(&effect), "about +100 %: {m}");
    let [lo, hi] = [&m["interval"][0], &m["interval"][1]].map(|v| v.as_f64().unwrap());
    assert!(lo <= effect && effect <= hi, "{m}");
    for side in ["candidate", "baseline"] {
        let w = &m[side]["window"];
        assert!(w["start"].is_string() && w["end"].is_string(), "{m}");
        assert_eq!(w["step"], 1, "{m}");
    }
    assert!(doc["score"].is_number());
    let text = run_in(&p_reg, &["health", "--judge"]);
    assert_eq!(text.code, Some(5), "{}", text.show());
    assert!(text.stdout.contains("FAIL"), "{}", text.show());
    assert!(text.stdout.contains("p = "), "{}", text.show());

    // ... and rollback --auto rolls back to v1.1.0 without a prompt (critical metric).
    let run = run_in(&p_reg, &["rollback", "--auto"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(run.stdout.contains("critical"), "{}", run.show());
    assert_eq!(
        reg.tag_digest("acme/regression", "latest").as_ref(),
        Some(&digests[1]),
        "latest points at v1.1.0 again"
    );
    let history = p_reg.history();
    assert!(history.contains("rollback_of: \"v1.2.0\""), "{history}");
    assert!(history.contains("held:"), "{history}");
    assert!(
        history.contains("judge:"),
        "the judgement is recorded:\n{history}"
    );

    // No difference: exit 0; rollback --auto changes nothing.
    let run = run_in(&p_same, &["health", "--judge", "--format", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let doc = json(&run);
    assert_eq!(doc["result"], "pass");
    assert_eq!(doc["score"], 100.0);
    assert_eq!(doc["metrics"][0]["verdict"], "pass");
    let before = p_same.history_bytes();
    let run = run_in(&p_same, &["rollback", "--auto", "--format", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_eq!(json(&run)["auto"]["decision"]["decision"], "healthy");
    assert_eq!(p_same.history_bytes(), before, "nothing written");

    // Too few samples: exit 6; rollback --auto holds, nothing changed.
    let run = run_in(&p_small, &["health", "--judge", "--format", "json"]);
    assert_eq!(run.code, Some(6), "{}", run.show());
    let doc = json(&run);
    assert_eq!(doc["result"], "inconclusive");
    assert_eq!(doc["metrics"][0]["verdict"], "no_data");
    let before = p_small.history_bytes();
    let requests = reg.bagboy_requests().len();
    let run = run_in(&p_small, &["rollback", "--auto"]);
    assert_eq!(run.code, Some(6), "{}", run.show());
    assert_eq!(p_small.history_bytes(), before, "nothing written");
    assert_eq!(reg.bagboy_requests().len(), requests, "no registry request");
    assert_eq!(
        reg.tag_digest("acme/small", "latest").as_ref(),
        Some(&small_digests[2])
    );

    // A critical metric failing fails whatever the score.
    let run = run_in(&p_crit, &["health", "--judge", "--format", "json"]);
    assert_eq!(run.code, Some(5), "{}", run.show());
    let doc = json(&run);
    assert_eq!(doc["result"], "fail");
    assert!(doc["score"].as_f64().unwrap() > 99.0, "{doc}");
    assert_eq!(doc["metrics"][0]["verdict"], "pass");
    assert_eq!(doc["metrics"][1]["verdict"], "high");
    // Read-only: nothing written by health --judge.
    assert!(!p_crit.history().contains("judge"), "{}", p_crit.history());
}

#[test]
fn judge_config_errors_name_the_line_and_a_missing_judge_is_refused() {
    let p = Project::new();
    p.write("bagboy.yaml", "name: myapp\n");
    p.write_history(
        "deployments:\n  - version: v1.0.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n",
    );
    let run = run_in(&p, &["health", "--judge"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("deployment.rollback.judge"),
        "says what to add: {}",
        run.show()
    );
    for (bad, needle) in [
        ("      pass: 101\n", "bagboy.yaml:9:"),
        (
            "      marginal: 99\n",
            "`marginal` 99 must not be above `pass` 95",
        ),
        ("      window: 0s\n", "out of range"),
        ("      window: 31d\n", "not a duration"),
        ("      tolerence: 0.1\n", "unknown judge key `tolerence`"),
    ] {
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\ndeployment:\n  rollback:\n    judge:\n      prometheus: http://127.0.0.1:9\n      metrics:\n        - {{name: e, query: 'x{{v=\"$VERSION\"}}', direction: increase, tolerance: 0.2}}\n      pass: 95\n{bad}"
            ),
        );
        let run = run_in(&p, &["health", "--judge"]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.show());
        assert!(run.stderr.contains(needle), "{bad}: {}", run.show());
    }
    for (metric, needle) in [
        (
            "{name: e, query: x, direction: increase, tolerance: 0.2}",
            "$VERSION",
        ),
        (
            "{name: e, query: 'x{v=\"$VERSION\"}', direction: up, tolerance: 0.2}",
            "direction",
        ),
        (
            "{name: e, query: 'x{v=\"$VERSION\"}', direction: increase, tolerance: -1}",
            "tolerance",
        ),
        (
            "{name: e, query: 'x{v=\"$VERSION\"}', direction: increase, tolerance: \"1e999\"}",
            "tolerance",
        ),
        (
            "{name: e, query: 'x{v=\"$VERSION\"}', direction: increase, tolerance: 0.1, weight: 0}",
            "weight",
        ),
    ] {
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\ndeployment:\n  rollback:\n    judge:\n      prometheus: http://127.0.0.1:9\n      metrics:\n        - {metric}\n"
            ),
        );
        let run = run_in(&p, &["health", "--judge"]);
        assert_eq!(run.code, Some(2), "{metric}: {}", run.show());
        assert!(run.stderr.contains(needle), "{metric}: {}", run.show());
        assert!(
            run.stderr.contains("bagboy.yaml:7:"),
            "{metric}: {}",
            run.show()
        );
    }
}

#[test]
fn an_unreachable_prometheus_is_no_data_never_a_failure() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let junk = FakeServer::start(|req, _| {
        if req.target.contains("junk") {
            FakeResponse::new(200).body("{\"status\":\"success\",\"data\":[1,2")
        } else {
            FakeResponse::new(500).body("<html>oops</html>")
        }
    });
    for base in [
        format!("http://127.0.0.1:{dead}"),
        format!("http://{}", junk.host()),
    ] {
        let p = Project::new();
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\ndeployment:\n  rollback:\n    judge:\n      prometheus: \"{base}\"\n      window: 1m\n      metrics:\n        - {{name: a, query: 'junk{{v=\"$VERSION\"}}', direction: either, tolerance: 0.1}}\n        - {{name: b, query: 'other{{v=\"$VERSION\"}}', direction: either, tolerance: 0.1, critical: true}}\n"
            ),
        );
        p.write_history(
            "deployments:\n  - version: v1.2.0\n    timestamp: \"2026-01-02T00:00:00Z\"\n    status: deployed\n  - version: v1.1.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: superseded\n",
        );
        let run = run_in(&p, &["health", "--judge", "--format", "json"]);
        assert_eq!(run.code, Some(6), "{base}: {}", run.show());
        let doc = json(&run);
        assert_eq!(doc["result"], "inconclusive");
        for m in doc["metrics"].as_array().unwrap() {
            assert_eq!(m["verdict"], "no_data", "{m}");
            assert!(
                m["reason"].as_str().unwrap().contains("Prometheus at"),
                "{m}"
            );
        }
        let before = p.history_bytes();
        let run = run_in(&p, &["rollback", "--auto"]);
        assert_eq!(run.code, Some(6), "{base}: {}", run.show());
        assert_eq!(p.history_bytes(), before);
    }
}
