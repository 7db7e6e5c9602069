//! Homebrew tap backend against real git repositories: plan, apply, undo, conflicts and refusals.

use crate::support;

use bagboy::registry::homebrew::{
    version_scheme, with_version_scheme, Author, Kind, RestoreRequest, Tap, TapError, TapSpec,
};
use secrecy::SecretString;
use support::tap::{cask, goreleaser_formula, TestTap};

const FORMULA: &str = "Formula/myapp.rb";
const CASK: &str = "Casks/myapp-gui.rb";

struct History {
    tap: TestTap,
    readme: String,
    v100: String,
    v110: String,
    v120: String,
}

/// Formula 1.0.0 → 1.1.0 → 1.2.0 and a cask 1.0.0 → 1.2.0, all pushed.
fn history() -> History {
    let tap = TestTap::new();
    let readme = tap.commit_file("README.md", "# acme tap\n", "init");
    let v100 = tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.0.0"),
        "myapp 1.0.0",
    );
    tap.commit_file(CASK, &cask("myapp-gui", "1.0.0"), "myapp-gui 1.0.0");
    let v110 = tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.1.0"),
        "myapp 1.1.0",
    );
    let v120 = tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.2.0"),
        "myapp 1.2.0",
    );
    tap.commit_file(CASK, &cask("myapp-gui", "1.2.0"), "myapp-gui 1.2.0");
    tap.push();
    History {
        tap,
        readme,
        v100,
        v110,
        v120,
    }
}

fn open(t: &TestTap) -> Tap {
    Tap::open(&spec(t), &t.cache_dir()).expect("open tap")
}

fn spec(t: &TestTap) -> TapSpec {
    TapSpec {
        registry: "acme/homebrew-tap".into(),
        remote: Some(t.url()),
        branch: None,
    }
}

fn author() -> Author {
    Author {
        name: "Release Bot".into(),
        email: "bot@example.com".into(),
    }
}

fn request(name: &str, version: &str) -> RestoreRequest {
    RestoreRequest {
        name: name.into(),
        target_commit: None,
        target_version: version.into(),
        current_version: None,
        bump_version_scheme: true,
        prefer: None,
    }
}

#[test]
fn formula_rollback_bumps_version_scheme_and_is_idempotent() {
    let h = history();
    let before = h.tap.log();
    let old_head = h.tap.head();
    let tap = open(&h.tap);

    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");
    assert_eq!(plan.kind, Kind::Formula);
    assert_eq!(plan.path, FORMULA);
    assert_eq!(plan.base_commit, old_head);
    assert_eq!(plan.target_commit, h.v110);
    assert!(!plan.unchanged);
    assert_eq!(plan.version_scheme, Some((None, 1)));
    assert!(plan
        .diff
        .starts_with("--- a/Formula/myapp.rb\n+++ b/Formula/myapp.rb\n"));
    assert!(plan.diff.contains("+  version_scheme 1\n"), "{}", plan.diff);
    assert!(
        plan.notes.iter().any(|n| n.contains("version_scheme >= 1")),
        "{:?}",
        plan.notes
    );

    let applied = tap
        .apply(&plan, "myapp: roll back to 1.1.0 (from 1.2.0)", &author())
        .expect("apply");
    assert_eq!(applied.parent, old_head);
    assert_eq!(h.tap.head(), applied.commit);

    let restored = h.tap.file_in_fresh_clone(FORMULA).expect("formula");
    assert_eq!(
        restored,
        with_version_scheme(&goreleaser_formula("myapp", "1.1.0"), 1).unwrap()
    );
    assert!(restored.contains("  license \"MIT\"\n  version_scheme 1\n\n  on_macos do\n"));
    let after = h.tap.log();
    assert_eq!(after.len(), before.len() + 1, "exactly one new commit");
    assert_eq!(&after[1..], &before[..]);
    for c in [&h.v100, &h.v110, &h.v120, &old_head] {
        assert!(h.tap.is_ancestor(c, &applied.commit), "history kept");
    }
    assert_eq!(
        h.tap.author_of(&applied.commit),
        "Release Bot <bot@example.com>|Release Bot <bot@example.com>"
    );
    // The cask is untouched.
    assert_eq!(
        h.tap.file_in_fresh_clone(CASK).as_deref(),
        Some(cask("myapp-gui", "1.2.0").as_str())
    );

    // A second run (fresh process, same cache) sees nothing to do.
    let tap = open(&h.tap);
    let mut again = request("myapp", "1.1.0");
    again.current_version = Some("1.2.0".into());
    let plan2 = tap.plan_restore(&again).expect("second plan");
    assert!(plan2.unchanged, "{}", plan2.diff);
    assert!(plan2.diff.is_empty());
    let noop = tap.apply(&plan2, "again", &author()).expect("no-op apply");
    assert!(noop.is_noop());
    assert_eq!(h.tap.log(), after);

    // Same with the recorded release commit as target, or with the current version unknown:
    // the scheme already raised is neither raised again nor lowered.
    let mut recorded = again.clone();
    recorded.target_commit = Some(h.v110.clone());
    assert!(tap.plan_restore(&recorded).expect("plan").unchanged);
    recorded.current_version = None;
    assert!(tap.plan_restore(&recorded).expect("plan").unchanged);
    let mut unknown = request("myapp", "1.1.0");
    unknown.bump_version_scheme = false;
    assert!(tap.plan_restore(&unknown).expect("plan").unchanged);
    assert_eq!(h.tap.log(), after);
}

#[test]
fn rollback_below_an_existing_scheme_goes_one_higher() {
    let tap = TestTap::new();
    tap.commit_file(
        FORMULA,
        &with_version_scheme(&goreleaser_formula("myapp", "1.0.0"), 2).unwrap(),
        "1.0.0",
    );
    let v110 = tap.commit_file(
        FORMULA,
        &with_version_scheme(&goreleaser_formula("myapp", "1.1.0"), 2).unwrap(),
        "1.1.0",
    );
    tap.commit_file(
        FORMULA,
        &with_version_scheme(&goreleaser_formula("myapp", "1.2.0"), 3).unwrap(),
        "1.2.0",
    );
    tap.push();
    let t = open(&tap);
    let mut req = request("myapp", "v1.1.0");
    req.target_commit = Some(v110);
    let plan = t.plan_restore(&req).expect("plan");
    assert_eq!(plan.version_scheme, Some((Some(3), 4)));
    assert_eq!(version_scheme(&plan.desired), Some(4));
    assert_eq!(plan.desired.matches("version_scheme").count(), 1);
}

#[test]
fn no_bump_when_disabled_or_rolling_forward() {
    let h = history();
    let tap = open(&h.tap);
    let mut off = request("myapp", "1.1.0");
    off.bump_version_scheme = false;
    let plan = tap.plan_restore(&off).expect("plan");
    assert_eq!(plan.version_scheme, None);
    assert_eq!(plan.desired, goreleaser_formula("myapp", "1.1.0"));

    let mut forward = request("myapp", "1.1.0");
    forward.current_version = Some("1.0.0".into());
    let plan = tap.plan_restore(&forward).expect("plan");
    assert_eq!(plan.version_scheme, None);
}

#[test]
fn cask_rollback_has_no_version_scheme() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap
        .plan_restore(&request("myapp-gui", "1.0.0"))
        .expect("plan");
    assert_eq!(plan.kind, Kind::Cask);
    assert_eq!(plan.path, CASK);
    assert_eq!(plan.version_scheme, None);
    assert!(
        plan.notes.iter().any(|n| n.contains("casks")),
        "{:?}",
        plan.notes
    );
    tap.apply(
        &plan,
        "myapp-gui: roll back to 1.0.0 (from 1.2.0)",
        &author(),
    )
    .expect("apply");
    assert_eq!(
        h.tap.file_in_fresh_clone(CASK).as_deref(),
        Some(cask("myapp-gui", "1.0.0").as_str())
    );
}

#[test]
fn unrelated_push_between_plan_and_apply_is_kept() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");

    let theirs = h
        .tap
        .commit_file("Formula/other.rb", "class Other < Formula\nend\n", "other");
    h.tap.push();

    let applied = tap
        .apply(&plan, "myapp: roll back", &author())
        .expect("apply");
    assert_eq!(applied.parent, theirs, "rebuilt on the new head");
    assert!(h.tap.is_ancestor(&theirs, &applied.commit));
    let fresh = h.tap.clone_fresh();
    assert!(fresh.join("Formula/other.rb").exists());
    assert_eq!(
        std::fs::read_to_string(fresh.join(FORMULA)).ok(),
        Some(plan.desired.clone())
    );
}

#[test]
fn push_race_on_other_files_is_rebuilt_once() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");
    // Committed but not pushed: the hook pushes it while our push is in flight.
    let theirs = h
        .tap
        .commit_file("Formula/other.rb", "class Other < Formula\nend\n", "other");
    h.tap.race_next_push();

    let applied = tap
        .apply(&plan, "myapp: roll back", &author())
        .expect("apply");
    assert!(h.tap.raced(), "the race happened");
    assert_eq!(applied.parent, theirs);
    assert_eq!(h.tap.head(), applied.commit);
    assert_eq!(h.tap.log().len(), 8, "6 + theirs + ours");
}

#[test]
fn push_race_on_the_formula_is_a_conflict() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");
    let theirs = h.tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.2.1"),
        "myapp 1.2.1",
    );
    h.tap.race_next_push();

    let err = tap.apply(&plan, "myapp: roll back", &author()).unwrap_err();
    assert!(h.tap.raced(), "the race happened");
    assert!(
        matches!(&err, TapError::Conflict { their_commit, .. } if *their_commit == theirs),
        "{err:?}"
    );
    assert_eq!(h.tap.head(), theirs, "remote holds only their commit");
}

#[test]
fn formula_changed_between_plan_and_apply_is_a_conflict() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");

    let theirs = h.tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.2.1"),
        "myapp 1.2.1",
    );
    h.tap.push();

    let err = tap.apply(&plan, "myapp: roll back", &author()).unwrap_err();
    match &err {
        TapError::Conflict {
            tap,
            path,
            their_commit,
        } => {
            assert_eq!(tap, "acme/homebrew-tap");
            assert_eq!(path, FORMULA);
            assert_eq!(their_commit, &theirs);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(err.to_string().contains(FORMULA));
    assert_eq!(h.tap.head(), theirs, "remote untouched");
}

#[test]
fn undo_restores_the_pre_rollback_tree() {
    let h = history();
    let tap = open(&h.tap);
    let before = h.tap.head();
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");
    let applied = tap
        .apply(&plan, "myapp: roll back", &author())
        .expect("apply");
    let undone = tap
        .undo(&applied, "myapp: undo roll back", &author())
        .expect("undo");
    assert_eq!(h.tap.head(), undone);
    assert_eq!(h.tap.tree_of(&undone), h.tap.tree_of(&before));
    assert!(h.tap.is_ancestor(&applied.commit, &undone), "no rewrite");
    // Undo again: already back, nothing pushed.
    let again = tap.undo(&applied, "again", &author()).expect("undo again");
    assert_eq!(again, undone);
    assert_eq!(h.tap.head(), undone);
}

#[test]
fn undo_refuses_when_the_formula_changed_since() {
    let h = history();
    let tap = open(&h.tap);
    let plan = tap.plan_restore(&request("myapp", "1.1.0")).expect("plan");
    let applied = tap.apply(&plan, "roll back", &author()).expect("apply");
    h.tap.sync();
    let theirs = h.tap.commit_file(
        FORMULA,
        &goreleaser_formula("myapp", "1.3.0"),
        "myapp 1.3.0",
    );
    h.tap.push();
    let err = tap.undo(&applied, "undo", &author()).unwrap_err();
    assert!(matches!(err, TapError::Conflict { .. }), "{err:?}");
    assert_eq!(h.tap.head(), theirs);
}

#[test]
fn find_commit_for_version_finds_the_newest_declaring_commit() {
    let h = history();
    let tap = open(&h.tap);
    let find = |v| {
        tap.find_commit_for_version("myapp", v, None)
            .expect("search")
            .map(|(c, _)| c)
    };
    assert_eq!(find("1.0.0"), Some(h.v100.clone()));
    assert_eq!(find("v1.1.0"), Some(h.v110.clone()));
    assert_eq!(find("1.2.0"), Some(h.v120.clone()));
    assert_eq!(find("2.0.0"), None);
    assert_eq!(tap.head().expect("head"), h.tap.head());
    let loc = tap.locate("myapp-gui", None, None).expect("locate cask");
    assert_eq!((loc.kind, loc.path.as_str()), (Kind::Cask, CASK));
    assert_eq!(
        tap.file_at(&h.v100, FORMULA).expect("file_at"),
        Some(goreleaser_formula("myapp", "1.0.0"))
    );
    assert_eq!(tap.file_at(&h.readme, FORMULA).expect("file_at"), None);
}

#[test]
fn sharded_and_url_only_formulas_are_found() {
    let tap = TestTap::new();
    let c = tap.commit_file(
        "Formula/t/tool.rb",
        "class Tool < Formula\n  url \"https://example.com/tool-0.9.1.tar.gz\"\n  sha256 \"ab\"\nend\n",
        "tool 0.9.1",
    );
    tap.push();
    let t = open(&tap);
    assert_eq!(
        t.locate("tool", None, None).expect("locate").path,
        "Formula/t/tool.rb"
    );
    assert_eq!(
        t.find_commit_for_version("tool", "0.9.1", None)
            .expect("find")
            .map(|(c, _)| c),
        Some(c)
    );
}

#[test]
fn refusals_change_nothing() {
    let h = history();
    let tap = open(&h.tap);
    let head = h.tap.head();

    for bad in ["a/b", "..", "../x", ""] {
        let err = tap.plan_restore(&request(bad, "1.1.0")).unwrap_err();
        assert!(
            matches!(err, TapError::InvalidName { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains("invalid formula or cask name"));
    }

    let mut at_readme = request("myapp", "1.1.0");
    at_readme.target_commit = Some(h.readme.clone());
    let err = tap.plan_restore(&at_readme).unwrap_err().to_string();
    assert!(
        err.contains("myapp") && err.contains(&h.readme) && err.contains("acme/homebrew-tap"),
        "{err}"
    );

    let err = tap
        .plan_restore(&request("myapp", "9.9.9"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "formula myapp has no version 9.9.9 in tap acme/homebrew-tap"
    );

    let mut bogus = request("myapp", "1.1.0");
    bogus.target_commit = Some("--upload-pack=evil".into());
    assert!(matches!(
        tap.plan_restore(&bogus).unwrap_err(),
        TapError::InvalidCommit { .. }
    ));
    bogus.target_commit = Some("deadbeefdeadbeef".into());
    assert!(matches!(
        tap.plan_restore(&bogus).unwrap_err(),
        TapError::NoCommit { .. }
    ));

    assert_eq!(h.tap.head(), head);
}

#[test]
fn unresolvable_tap_is_a_clear_error() {
    let cache = tempfile::tempdir().expect("tempdir");
    let spec = TapSpec {
        registry: "acme/homebrew-missing".into(),
        remote: Some("file:///nonexistent/homebrew-missing.git".into()),
        branch: None,
    };
    let err = Tap::open(&spec, cache.path()).unwrap_err();
    assert!(matches!(err, TapError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("acme/homebrew-missing"), "{msg}");
    assert!(
        msg.contains("file:///nonexistent/homebrew-missing.git"),
        "{msg}"
    );
}

#[test]
fn missing_branch_is_a_clear_error() {
    let h = history();
    let mut s = spec(&h.tap);
    s.branch = Some("release".into());
    let err = Tap::open(&s, &h.tap.cache_dir()).unwrap_err().to_string();
    assert!(err.contains("no branch `release`"), "{err}");
}

#[test]
fn token_and_url_credentials_never_reach_errors() {
    let cache = tempfile::tempdir().expect("tempdir");
    let token = SecretString::from("ghp_TOPSECRET0123456789");
    let spec = TapSpec {
        registry: "acme/homebrew-tap".into(),
        // Port 9 (discard) on loopback: refused at once, no network needed.
        remote: Some("https://bot:hunter2pass@127.0.0.1:9/acme/homebrew-tap.git".into()),
        branch: None,
    };
    let err = Tap::open_with_token(&spec, cache.path(), Some(&token)).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("ghp_TOPSECRET"), "{shown}");
    assert!(!shown.contains("hunter2pass"), "{shown}");
    assert!(
        shown.contains("https://***@127.0.0.1:9/acme/homebrew-tap.git"),
        "{shown}"
    );
}

#[test]
fn corrupt_cache_is_recloned() {
    let h = history();
    drop(open(&h.tap));
    // The cache is keyed by the tap's name and a hash of its remote URL.
    let cached = std::fs::read_dir(h.tap.cache_dir().join("taps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.is_dir()
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("acme_homebrew-tap-")
        })
        .expect("one cache directory");
    assert!(
        cached.join("HEAD").exists(),
        "cache at {}",
        cached.display()
    );
    std::fs::remove_dir_all(cached.join("objects")).expect("corrupt");
    std::fs::write(cached.join("HEAD"), "garbage").expect("corrupt");
    let tap = open(&h.tap);
    assert_eq!(tap.head().expect("head"), h.tap.head());
}
