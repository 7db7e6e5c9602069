//! Every parser of untrusted input, fed random and mutated bytes on the stable toolchain: no
//! input panics it (the `fuzz/` targets run the same entry points under libFuzzer, with a
//! nightly toolchain). Inputs: `bagboy.yaml` (every block), the history, a saved plan, a
//! journal, `WWW-Authenticate` and `Link` headers, durations.

use proptest::prelude::*;

const CONFIG: &str = "name: app\nhistory: .bagboy/h.yml\nregistries:\n  - format: docker\n    registry: 127.0.0.1:5000/a/b\n    insecure: true\n    move_tags: [latest]\n  - format: brew\n    registry: acme/tap\n    formula: app\n  - format: npm\n    registry: https://npm.example.com\n    packages: [app]\n    dist_tags: [latest, next]\n    deprecate_bad: true\nrollback:\n  version_scheme_bump: true\n  concurrency: 4\nhistory_remote:\n  url: file:///x.git\n  lease: 10m\nmonitoring:\n  webhooks:\n    - url: https://hooks.example.com/x\n      format: slack\n      events: [failed]\n  pushgateway: http://127.0.0.1:9091\n  textfile: metrics/bagboy.prom\ndeployment:\n  strategy: blue-green\n  health_checks:\n    - url: http://127.0.0.1:1/health\n      timeout: 2s\n      retries: 2\n    - prometheus: http://127.0.0.1:9090\n      query: up\n      max: 0.05\n  traffic:\n    haproxy: 127.0.0.1:9999\n    backend: app\n    blue: {server: blue, url: \"http://127.0.0.1:1\"}\n    green: {server: green, url: \"http://127.0.0.1:2\"}\n    steps: [25, 50, 100]\n    interval: 1s\n  rollback:\n    auto_trigger:\n      - health_check_failures: 3\n      - error_rate_threshold: 5%\n      - response_time_threshold: 2s\n    validation:\n      - verify_dependencies: true\n      - check_backwards_compatibility: {dir: migrations}\n";

const PLAN: &str = r#"{"schema":2,"history":".bagboy/deployment-history.yml","history_sha256":"sha256:00","current":{"version":"v1.2.0","timestamp":"2026-01-02T00:00:00Z","status":"deployed","commit":null},"target":{"version":"v1.1.0","timestamp":"2026-01-01T00:00:00Z","status":"superseded","commit":null},"partial":false,"force":false,"registries":[{"format":"docker","registry":"r/a","steps":[{"action":"move_tag","reference":"latest","before":"sha256:1","after":"sha256:2"}],"notes":[]}],"refusals":[],"warnings":[]}"#;

fn journal_text() -> String {
    format!(
        "{{\"journal\":2,\"id\":\"1-1\",\"started_at\":\"2026-03-01T00:00:00Z\",\"pid\":1,\"command\":\"bagboy rollback\",\"entry_timestamp\":\"2026-03-01T00:00:00Z\",\"plan\":{PLAN},\"steps\":[[0,0]]}}\n{{\"step\":[0,0],\"state\":\"applied\",\"undo\":{{}}}}\n"
    )
}

/// A seed with some bytes replaced, inserted or removed, or cut short.
fn mutated(seed: String) -> impl Strategy<Value = Vec<u8>> {
    let len = seed.len().max(1);
    (
        proptest::collection::vec((0..len, any::<u8>(), 0u8..4), 1..8),
        0..=len,
    )
        .prop_map(move |(edits, cut)| {
            let mut b = seed.clone().into_bytes();
            for (at, byte, how) in edits {
                let at = at.min(b.len().saturating_sub(1));
                match how {
                    0 if !b.is_empty() => b[at] = byte,
                    1 => b.insert(at, byte),
                    2 if !b.is_empty() => {
                        b.remove(at);
                    }
                    _ => b.insert(at, b"{}[]:,\"\n-0%"[byte as usize % 11]),
                }
            }
            if cut < b.len() && cut % 3 == 0 {
                b.truncate(cut);
            }
            b
        })
}

fn input(seed: String) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        mutated(seed),
        proptest::collection::vec(any::<u8>(), 0..256),
    ]
}

fn file(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).expect("write");
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn config(bytes in input(CONFIG.to_string())) {
        let dir = tempfile::tempdir().unwrap();
        let _ = crate::config::Config::load(&file(&dir, "bagboy.yaml", &bytes));
    }

    #[test]
    fn saved_plan(bytes in input(PLAN.to_string())) {
        let dir = tempfile::tempdir().unwrap();
        if let Ok(plan) = crate::ops::apply::read_plan(&file(&dir, "plan.json", &bytes)) {
            let _ = plan.changing_steps();
            let _ = crate::ops::apply::compare(&plan, &plan);
        }
    }

    #[test]
    fn journal(bytes in input(journal_text())) {
        let dir = tempfile::tempdir().unwrap();
        if let Ok(j) = crate::journal::Journal::open(&file(&dir, "j.jsonl", &bytes)) {
            let data = j.snapshot();
            let plan = data.plan();
            for id in plan.changing_steps() {
                let _ = data.step(id);
            }
        }
    }

    #[test]
    fn www_authenticate(s in "[ -~]{0,200}") {
        let _ = crate::registry::oci::Challenge::parse_all(&s);
        let seeded = format!("Bearer realm=\"https://a/t\",service=\"r\",scope=\"{s}\", Basic realm={s}");
        let _ = crate::registry::oci::Challenge::parse_all(&seeded);
    }

    #[test]
    fn link(s in "[ -~]{0,200}") {
        let _ = crate::registry::oci::next_link(&s);
        let _ = crate::registry::oci::next_link(&format!("<{s}>; rel=\"next\", <x>;{s}"));
    }

    #[test]
    fn durations(s in "[0-9.]{0,40}(ms|s|m|h|)") {
        let _ = crate::health::parse_duration(&s);
    }
}

/// The seeds reach the deep end of each parser (a seed that fails early would only fuzz its
/// first lines).
#[test]
fn seeds_parse() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = crate::config::Config::load(&file(&dir, "bagboy.yaml", CONFIG.as_bytes()));
    assert!(cfg.is_ok(), "{:?}", cfg.err().map(|e| e.to_string()));
    let plan = crate::ops::apply::read_plan(&file(&dir, "plan.json", PLAN.as_bytes()));
    assert!(plan.is_ok(), "{:?}", plan.err().map(|e| e.to_string()));
    let j = crate::journal::Journal::open(&file(&dir, "j.jsonl", journal_text().as_bytes()));
    assert!(j.is_ok(), "{:?}", j.err().map(|e| e.to_string()));
}
