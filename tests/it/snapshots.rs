//! Snapshots of what people read: the rollback preview (text and markdown) and the outcome,
//! on an OCI layout plus a Homebrew tap. Image digests are deterministic and kept; tap commit
//! ids, timings and temp paths are filtered.

use crate::support;

use support::cli::{text, Project};
use support::tap::TestTap;

fn project() -> (Project, TestTap) {
    support::fixtures::layout_and_tap()
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\b[0-9a-f]{40}\b", "[COMMIT]");
    s.add_filter(r"\b[0-9a-f]{10}\b", "[COMMIT]");
    s.add_filter(r"\d+ ms", "[N] ms");
    s.add_filter(r"in \d+\.\d+s", "in [T]s");
    s
}

#[test]
fn rollback_preview_and_outcome() {
    let (p, _tap) = project();
    let out = p.bagboy().args(["rollback", "--dry-run"]).output().unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    settings().bind(|| insta::assert_snapshot!("dry_run_text", text(&out).0));

    let out = p
        .bagboy()
        .args(["rollback", "--dry-run", "--format", "markdown"])
        .output()
        .unwrap();
    settings().bind(|| insta::assert_snapshot!("dry_run_markdown", text(&out).0));

    let out = p
        .bagboy()
        .args(["rollback", "--version", "v1.1.0", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    let (stdout, _) = text(&out);
    let outcome = &stdout[stdout.find("Rolled back").unwrap()..];
    settings().bind(|| insta::assert_snapshot!("rollback_outcome", outcome));
}

/// The words a user reads around the history: `previous` after a rollback, a missing config,
/// a bad count.
#[test]
fn wording_of_compare_record_and_counts() {
    let (p, _tap) = project();
    let out = p
        .bagboy()
        .args(["rollback", "--version", "v1.1.0", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    // `previous` is the entry just rolled back from; `target` where a bare rollback goes.
    let compare = p
        .bagboy()
        .args(["versions", "compare", "previous", "current"])
        .output()
        .unwrap();
    let (stdout, _) = text(&compare);
    let first = stdout.lines().next().unwrap_or_default().to_string();
    assert_eq!(first, "v1.2.0 → v1.1.0", "{stdout}");
    let target = p
        .bagboy()
        .args(["versions", "compare", "target", "current"])
        .output()
        .unwrap();
    assert!(
        text(&target).0.starts_with("v1.0.0 → v1.1.0"),
        "{:?}",
        text(&target)
    );

    let bare = Project::new();
    bare.write_history("deployments: []\n");
    let record = bare
        .bagboy()
        .args(["record", "--version", "v1.0.0"])
        .output()
        .unwrap();
    let limit = bare
        .bagboy()
        .args(["versions", "list", "--limit=-1"])
        .output()
        .unwrap();
    let shown = format!(
        "$ bagboy versions compare previous current\n{first}\n\n$ bagboy record --version v1.0.0   (no bagboy.yaml)\n{}\n$ bagboy versions list --limit=-1\n{}",
        text(&record).1,
        text(&limit).1
    );
    settings().bind(|| insta::assert_snapshot!("wording", shown));
}
