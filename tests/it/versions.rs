//! `bagboy versions list|compare|prune` and the history store, driven through the binary.

use crate::support;

use std::time::{Duration, Instant};

use support::cli::{text, Project};

#[test]
fn list_reads_both_seed_shapes() {
    for (fixture, current, versions) in [
        (
            "seed-package-status.yml",
            "v1.3.0",
            vec!["v1.3.0", "v1.2.0"],
        ),
        (
            "seed-entry-status.yml",
            "v1.3.0",
            vec!["v1.3.0", "v1.2.0", "v1.1.0", "v1.0.0"],
        ),
    ] {
        let p = Project::with_history_fixture(fixture);
        let out = p
            .bagboy()
            .args(["versions", "list", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{fixture}: {:?}", text(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["current"], current, "{fixture}");
        let got: Vec<&str> = doc["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["version"].as_str().unwrap())
            .collect();
        assert_eq!(
            got, versions,
            "{fixture}: newest first regardless of file order"
        );

        let out = p.bagboy().args(["versions", "list"]).output().unwrap();
        let (stdout, _) = text(&out);
        let first = stdout.lines().nth(1).unwrap();
        assert!(
            first.starts_with('*') && first.contains(current),
            "{stdout}"
        );
    }
}

#[test]
fn list_marks_rollbacks_and_honours_limit() {
    let p = Project::new();
    p.write_history(
        r#"deployments:
  - version: "v1.1.0"
    timestamp: "2026-03-02T00:00:00Z"
    status: deployed
    rollback_of: "v1.2.0"
  - version: "v1.2.0"
    timestamp: "2026-03-01T00:00:00Z"
    status: rolled_back_from
  - version: "v1.1.0"
    timestamp: "2026-02-01T00:00:00Z"
    status: superseded
"#,
    );
    let out = p
        .bagboy()
        .args(["versions", "list", "--limit", "2"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    let rows: Vec<&str> = stdout.lines().collect();
    assert!(
        rows[1].starts_with("*↩") && rows[1].contains("v1.1.0"),
        "{stdout}"
    );
    assert!(rows[1].contains("rollback of v1.2.0"), "{stdout}");
    assert!(
        rows[2].contains("v1.2.0") && rows[2].contains("rolled_back_from"),
        "{stdout}"
    );
    assert!(stdout.contains("(2 of 3 entries"), "{stdout}");
}

#[test]
fn compare_in_three_formats() {
    let p = Project::new();
    let a = "a".repeat(64);
    let b = "b".repeat(64);
    p.write_history(&format!(
        r#"deployments:
  - version: "v1.3.0"
    timestamp: "2026-02-01T18:00:00Z"
    commit: "abc123"
    status: deployed
    packages:
      - format: docker
        registry: "127.0.0.1:5000/acme/myapp"
        digest: "sha256:{b}"
        tags: ["v1.3.0", "latest"]
      - format: brew
        registry: "acme/homebrew-tap"
        tap_commit: "{c2}"
  - version: "v1.2.0"
    timestamp: "2026-01-15T12:00:00Z"
    commit: "def456"
    status: superseded
    packages:
      - format: docker
        registry: "127.0.0.1:5000/acme/myapp"
        digest: "sha256:{a}"
        tags: ["v1.2.0", "latest"]
      - format: brew
        registry: "acme/homebrew-tap"
        tap_commit: "{c1}"
"#,
        c1 = "1".repeat(40),
        c2 = "2".repeat(40)
    ));
    let out = p
        .bagboy()
        .args(["versions", "compare", "previous", "current"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("v1.2.0 → v1.3.0"), "{stdout}");
    assert!(stdout.contains("def456..abc123"), "{stdout}");
    assert!(stdout.contains("17d 6h"), "{stdout}");
    assert!(
        stdout.contains("sha256:aaaaaaaaaaaa → sha256:bbbbbbbbbbbb"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tags       v1.2.0, latest → v1.3.0, latest"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tap_commit 1111111111 → 2222222222"),
        "{stdout}"
    );

    let out = p
        .bagboy()
        .args([
            "versions", "compare", "v1.2.0", "v1.3.0", "--format", "json",
        ])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["seconds_between"], 1_490_400);
    assert_eq!(doc["commit_range"], "def456..abc123");
    let docker = &doc["registries"][0];
    let fields: Vec<&str> = docker["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["digest", "tags"]);

    let out = p
        .bagboy()
        .args([
            "versions", "compare", "v1.2.0", "current", "--format", "markdown",
        ])
        .output()
        .unwrap();
    let (md, _) = text(&out);
    assert!(md.contains("```diff\n--- v1.2.0\n+++ v1.3.0\n"), "{md}");
    assert!(
        md.contains(&format!("-        digest: \"sha256:{a}\"")),
        "{md}"
    );

    let out = p
        .bagboy()
        .args(["versions", "compare", "v9.9.9", "current"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("version v9.9.9 is not in the history"));
}

fn history_of(n: usize, current_at: usize) -> String {
    let mut s = String::from("deployments:\n");
    for i in 0..n {
        let status = if i == current_at {
            "deployed"
        } else {
            "superseded"
        };
        let at = time::macros::datetime!(2026-01-01 00:00 UTC) + time::Duration::hours(i as i64);
        let at = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        s.push_str(&format!(
            "  - version: \"v1.{i}.0\"\n    timestamp: \"{at}\"\n    status: {status}\n"
        ));
    }
    s
}

#[test]
fn prune_keeps_newest_and_always_current() {
    let p = Project::new();
    // The current entry is the oldest (a rollback far back): it must survive.
    p.write_history(&history_of(6, 0));
    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "2", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert!(out.status.success());
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.contains("would remove v1.3.0"));
    let before = p.history_bytes();
    assert_eq!(before, p.history_bytes(), "dry run changes nothing");

    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let out = p
        .bagboy()
        .args(["versions", "list", "--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kept: Vec<&str> = doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    assert_eq!(kept, ["v1.5.0", "v1.4.0", "v1.0.0"]);
    assert_eq!(doc["current"], "v1.0.0");

    // Idempotent and silent: cron-friendly.
    let after = p.history_bytes();
    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "2"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{:?}",
        text(&out)
    );
    assert_eq!(after, p.history_bytes());
}

#[test]
fn malformed_histories_exit_2_with_position_and_leave_file_alone() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "bad indentation",
            "deployments:\n  - version: \"v1.0.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n   status: deployed\n",
            ":4:4:",
        ),
        ("wrong type", "deployments:\n  - version: \"v1.0.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n    packages: 7\n", ":5:15: `packages` must be a list"),
        ("bad date", "deployments:\n  - version: \"v1.0.0\"\n    timestamp: \"2026-13-01\"\n    status: deployed\n", ":3:16: `timestamp` \"2026-13-01\" is not an RFC 3339"),
        (
            "two deployed",
            "deployments:\n  - version: \"v1.1.0\"\n    timestamp: \"2026-01-02T00:00:00Z\"\n    status: deployed\n  - version: \"v1.0.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n",
            ":5:5: v1.0.0 is `deployed`, but so is v1.1.0 at line 2",
        ),
        ("bad version", "deployments:\n  - version: \"one\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n", ":2:14: `version` \"one\" is not a version: it holds no digit"),
    ];
    for (name, body, expected) in cases {
        let p = Project::new();
        p.write_history(body);
        for args in [
            vec!["versions", "list"],
            vec!["versions", "prune", "--keep", "0"],
            vec!["versions", "compare", "current", "previous"],
        ] {
            let out = p.bagboy().args(&args).output().unwrap();
            let (_, stderr) = text(&out);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!(".bagboy/deployment-history.yml{expected}")),
                "{name} {args:?}: want {expected:?} in {stderr}"
            );
            assert_eq!(p.history(), body, "{name}: file must be byte-identical");
        }
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let p = Project::new();
    // `1.2` is a version (two-part); `1.2 beta` is not (a space).
    p.write_history(
        "deployments:\n  - version: 1.2 beta\n    timestamp: \"x\"\n    status: live\n",
    );
    let out = p.bagboy().args(["versions", "list"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(":2:14:") && stderr.contains(":3:16:") && stderr.contains(":4:13:"),
        "{stderr}"
    );
    assert!(stderr.contains("3 problems in"), "{stderr}");
}

#[test]
fn alias_bomb_and_huge_file_are_refused_quickly() {
    let p = Project::new();
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names: Vec<char> = ('a'..='i').collect();
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        bomb.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    p.write_history(&bomb);
    let started = Instant::now();
    let out = p.bagboy().args(["versions", "list"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("alias"), "{stderr}");
    // A functional bound (the process ends), not a benchmark: an unbounded parser would
    // expand ~387 million nodes and run out of memory.
    assert!(started.elapsed() < Duration::from_secs(30));

    let huge = p.history_path();
    let f = std::fs::File::create(&huge).unwrap();
    f.set_len(100 * 1024 * 1024).unwrap();
    let out = p.bagboy().args(["versions", "list"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("104857600 bytes, over the limit"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}

/// `/proc/self/stat` start time, as bagboy records it in the lock.
fn my_start_time() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 1..];
    after.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn lock_json(pid: u32, start: Option<u64>) -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    serde_json::json!({
        "pid": pid, "host": host, "started_at": "2026-11-22T10:00:00Z",
        "command": "bagboy rollback --version v1.1.0", "proc_start": start,
    })
    .to_string()
}

#[test]
fn held_lock_exits_4_naming_the_holder() {
    let p = Project::new();
    p.write_history(&history_of(5, 4));
    let before = p.history_bytes();
    // This test process is alive: its lock is not stale.
    let lock = p.write(
        ".bagboy/lock",
        &lock_json(std::process::id(), Some(my_start_time())),
    );
    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "1"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(
        stderr.contains("bagboy rollback --version v1.1.0"),
        "{stderr}"
    );
    assert_eq!(before, p.history_bytes());
    assert!(lock.exists(), "someone else's lock is left alone");
}

#[test]
fn stale_lock_is_taken_over_with_a_warning() {
    let p = Project::new();
    p.write_history(&history_of(5, 4));
    // A pid that is not running: spawn and reap a short process.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let lock = p.write(".bagboy/lock", &lock_json(dead, Some(1)));
    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "1"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("stale lock") && stderr.contains(&format!("pid {dead}")),
        "{stderr}"
    );
    assert!(!lock.exists(), "the lock is released after the command");
    assert_eq!(p.history().matches("version:").count(), 1);
}

#[test]
fn racing_prunes_one_proceeds_other_exits_4() {
    // Many processes started at once: whoever gets the lock proceeds; every other one
    // exits 4 and names a holder, and the file is valid at the end.
    let p = Project::new();
    p.write_history(&history_of(3000, 2999));
    let children: Vec<_> = (0..8)
        .map(|_| {
            std::process::Command::new(assert_cmd::cargo::cargo_bin("bagboy"))
                .current_dir(p.path())
                .args(["versions", "prune", "--keep", "10"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut codes = Vec::new();
    for c in children {
        let out = c.wait_with_output().unwrap();
        if out.status.code() == Some(4) {
            let (_, stderr) = text(&out);
            assert!(stderr.contains("is held by pid"), "{stderr}");
        }
        codes.push(out.status.code());
    }
    assert!(
        codes.iter().all(|c| *c == Some(0) || *c == Some(4)),
        "{codes:?}"
    );
    assert!(codes.contains(&Some(0)), "{codes:?}");
    let out = p
        .bagboy()
        .args(["versions", "list", "--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["total"], 10);
}

#[test]
fn file_edited_between_read_and_write_is_not_overwritten() {
    // A person edits the file while a command holds it in memory. The window is too short to
    // hit from outside the process deterministically, so this drives the compare-and-swap
    // through the library, the same `Store::save` every command calls.
    let p = Project::new();
    p.write_history(&history_of(5, 4));
    let store = bagboy::history::Store::new(p.history_path());
    let loaded = store.load().unwrap();
    let edited = p.history().replace("v1.0.0", "v1.0.1");
    p.write_history(&edited);
    let mut h = loaded.history.clone();
    h.deployments.truncate(1);
    let err = store.save(&h, &loaded.fingerprint).unwrap_err();
    assert!(
        matches!(err, bagboy::history::HistoryError::Changed { .. }),
        "{err}"
    );
    assert_eq!(bagboy::Error::from(err).exit() as u8, 4);
    assert_eq!(p.history(), edited, "the person's edit survives");
}

#[test]
fn round_trip_keeps_unknown_fields_and_every_value() {
    let p = Project::new();
    let src = format!(
        r#"schema: 1
deployments:
  - version: "v1.3.0"
    timestamp: "2026-02-01T18:00:00+01:00"
    commit: "abc123"
    status: deployed
    rollback_of: "v1.4.0"
    rollback_safe: false
    actor: "alice"
    notes: "hotfix: \"quoted\"\nsecond line"
    ticket: {{id: 42, url: "https://example.com/42"}}
    packages:
      - format: brew
        registry: "acme/homebrew-tap"
        status: deployed
        formula: myapp
        tap_commit: "{c}"
        bottle: true
      - format: docker
        registry: "127.0.0.1:5000/acme/myapp"
        status: deployed
        digest: "sha256:{d}"
        tags: ["v1.3.0", "latest"]
        platforms: [linux/amd64, linux/arm64]
    health_checks:
      - url: "https://api.myapp.com/health"
        status: passing
"#,
        c = "c".repeat(40),
        d = "d".repeat(64)
    );
    p.write_history(&src);
    let store = bagboy::history::Store::new(p.history_path());
    let loaded = store.load().unwrap();
    store.save(&loaded.history, &loaded.fingerprint).unwrap();
    let written = p.history();
    let again = store.load().unwrap();
    let a = bagboy::history::to_yaml(&loaded.history);
    let b = bagboy::history::to_yaml(&again.history);
    assert_eq!(a, b, "save → load → save is stable");
    for needle in [
        "schema: 1",
        "ticket:",
        "id: 42",
        "bottle: true",
        "platforms: [\"linux/amd64\", \"linux/arm64\"]",
        "rollback_safe: false",
        "\"hotfix: \\\"quoted\\\"\\nsecond line\"",
        "timestamp: \"2026-02-01T18:00:00+01:00\"",
        "status: \"passing\"",
    ] {
        assert!(written.contains(needle), "missing {needle:?} in\n{written}");
    }
    let d = &again.history.deployments[0];
    assert_eq!(d.notes.as_deref(), Some("hotfix: \"quoted\"\nsecond line"));
    assert_eq!(d.packages[1].tags, ["v1.3.0", "latest"]);
}

#[test]
fn missing_history_is_a_clear_error() {
    let p = Project::new();
    let out = p.bagboy().args(["versions", "list"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("not found") && stderr.contains("hint:"),
        "{stderr}"
    );
}

#[test]
fn config_errors_name_file_line_column() {
    let p = Project::with_history_fixture("seed-entry-status.yml");
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistries:\n  - format: dockr\n    registry: x\n  - format: docker\n    insecure: maybe\n",
    );
    let out = p.bagboy().args(["versions", "list"]).output().unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bagboy.yaml:3:13: unknown format `dockr`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bagboy.yaml:6:15: `insecure` must be true or false"),
        "{stderr}"
    );
}
