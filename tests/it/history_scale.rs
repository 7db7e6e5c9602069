//! Histories near the size cap: one just under 64 MiB (about 128,000 entries, more than the
//! old fixed parser budget allowed) loads and `prune --keep 100` brings it back; one over the
//! cap is refused with the command that gets it back under, which works.

use crate::support;

use std::fmt::Write as _;

use support::cli::{isolated, Project, Run};

/// `n` entries in the shape bagboy writes (two registries each), newest first.
fn history(n: usize) -> String {
    let mut s = String::with_capacity(n * 520);
    s.push_str("deployments:\n");
    for i in (1..=n).rev() {
        let status = if i == n { "deployed" } else { "superseded" };
        let _ = write!(
            s,
            "  - version: \"v1.{i}.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    commit: \"{i:040x}\"\n    status: {status}\n    packages:\n      - format: docker\n        registry: \"registry.example.com/acme/app\"\n        digest: \"sha256:{i:064x}\"\n        tags: [\"v1.{i}.0\", \"latest\", \"1.{i}\"]\n      - format: brew\n        registry: \"acme/homebrew-tap\"\n        formula: \"app\"\n        tap_commit: \"{i:040x}\"\n"
        );
    }
    s
}

fn run(p: &Project, env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut c = isolated(p.path());
    for (k, v) in env {
        c.env(k, v);
    }
    Run::of(c.args(args).output().unwrap())
}

#[test]
fn a_history_just_under_the_cap_loads_and_prunes() {
    let p = Project::new();
    let mut n = 131_000;
    let mut text = history(n);
    while text.len() as u64 >= 64 << 20 {
        n -= 200;
        text = history(n);
    }
    assert!(
        text.len() as u64 > (64 << 20) - (1 << 20),
        "{} bytes",
        text.len()
    );
    p.write_history(&text);
    drop(text);
    let r = run(&p, &[], &["versions", "prune", "--keep", "100"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let r = run(
        &p,
        &[],
        &["versions", "list", "--format", "json", "--limit", "1"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["total"], 100);
    assert_eq!(doc["current"], format!("v1.{n}.0"));
}

#[test]
fn a_history_over_the_cap_is_refused_with_the_way_back() {
    let p = Project::new();
    let text = history(3_000);
    p.write_history(&text);
    let cap = "1048576";
    let r = run(&p, &[("BAGBOY_MAX_FILE_BYTES", cap)], &["versions", "list"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains(&format!(
            "file is {} bytes, over the limit of {cap} bytes",
            text.len()
        )),
        "{}",
        r.show()
    );
    let hint = "BAGBOY_MAX_FILE_BYTES=2097152 bagboy versions prune --keep 1000";
    assert!(r.stderr.contains(hint), "{}", r.show());
    // The command the hint gives works, and the file is back under the cap.
    let r = run(
        &p,
        &[("BAGBOY_MAX_FILE_BYTES", "2097152")],
        &["versions", "prune", "--keep", "1000"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!((p.history_bytes().len() as u64) < 1 << 20);
    let r = run(
        &p,
        &[("BAGBOY_MAX_FILE_BYTES", cap)],
        &["versions", "list", "--limit", "1"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
}
