//! `history_remote`: one history on a git branch for every machine. Two clones of a project
//! ("machines", each with its own cache and lock) share a bare repository over `file://`:
//! writes land one after the other as fast-forward commits, a second writer exits 4 naming the
//! holder while the first holds the lease, and a SIGKILLed holder's lease is taken over once
//! it expires.

use crate::support;

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bagboy::registry::oci::OciLayout;
use support::cli::{isolated, Project, Run};
use support::tap::git;

struct Shared {
    _root: tempfile::TempDir,
    remote: PathBuf,
    layout_dir: PathBuf,
    layout: OciLayout,
}

fn shared() -> Shared {
    let root = tempfile::tempdir().unwrap();
    let remote = root.path().join("history.git");
    std::fs::create_dir_all(&remote).unwrap();
    git(&remote, &["init", "--bare", "-q"]);
    let layout_dir = root.path().join("oci");
    let layout = OciLayout::init(&layout_dir).unwrap();
    Shared {
        _root: root,
        remote,
        layout_dir,
        layout,
    }
}

fn machine(s: &Shared, extra: &str) -> Project {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: oci-layout\n    registry: \"{}\"\n{extra}history_remote:\n  url: \"file://{}\"\n  branch: bagboy/history\n  lease: \"2s\"\n",
            s.layout_dir.display(),
            s.remote.display()
        ),
    );
    p
}

fn release(s: &Shared, v: &str) {
    let m = s
        .layout
        .add_image(v, format!("{{\"v\":\"{v}\"}}").as_bytes(), v.as_bytes())
        .unwrap();
    s.layout.set_tag("latest", &m.descriptor()).unwrap();
}

fn run(dir: &Path, args: &[&str]) -> Run {
    Run::of(isolated(dir).args(args).output().unwrap())
}

fn branch_history(s: &Shared) -> String {
    git(
        &s.remote,
        &["show", "bagboy/history:deployment-history.yml"],
    )
}

#[test]
fn two_machines_share_one_history_through_a_branch() {
    let s = shared();
    let a = machine(&s, "");
    let b = machine(&s, "");
    release(&s, "v1.0.0");
    let r = run(a.path(), &["record", "--version", "v1.0.0"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    release(&s, "v1.1.0");
    let r = run(b.path(), &["record", "--version", "v1.1.0"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    // Both records are on the branch, in two fast-forward commits (never a force-push).
    let h = branch_history(&s);
    assert!(h.contains("v1.0.0") && h.contains("v1.1.0"), "{h}");
    assert!(h.contains("status: superseded"), "B read A's write: {h}");
    let log = git(&s.remote, &["rev-list", "--first-parent", "bagboy/history"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    // A reads the branch, not its stale local file.
    let r = run(a.path(), &["versions", "list", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(doc["current"], "v1.1.0", "{}", r.show());
    // A rollback from A lands on the branch too.
    let r = run(a.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(branch_history(&s).contains("rollback_of: \"v1.1.0\""));
    // The lease was released: its branch says free.
    let lease = git(&s.remote, &["show", "bagboy/history-lease:lease.json"]);
    assert!(lease.contains("\"state\": \"free\""), "{lease}");
}

/// A server that accepts connections and never answers: a writer planning against it holds
/// the lease for as long as the test wants.
fn blackhole() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    (l, port)
}

#[test]
fn a_second_machine_exits_4_while_the_first_holds_the_lease_and_takes_over_a_dead_one() {
    let s = shared();
    let (_hole, port) = blackhole();
    // A also has an npm registry that never answers: its `record` hangs holding the lease.
    let a = machine(
        &s,
        &format!(
            "  - format: npm\n    registry: \"http://127.0.0.1:{port}/\"\n    packages: [myapp]\n"
        ),
    );
    let b = machine(&s, "");
    release(&s, "v1.0.0");
    let mut holder = isolated(a.path())
        .args(["record", "--version", "v1.0.0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let lease = std::process::Command::new("git")
            .arg("--git-dir")
            .arg(&s.remote)
            .args(["show", "bagboy/history-lease:lease.json"])
            .output()
            .unwrap();
        if String::from_utf8_lossy(&lease.stdout).contains("\"state\": \"held\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first machine never took the lease"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = run(b.path(), &["record", "--version", "v1.0.0"]);
    assert_eq!(r.code, Some(4), "{}", r.show());
    assert!(
        r.stderr.contains(&format!("leased by pid {}", holder.id()))
            && r.stderr.contains(&s.remote.display().to_string()),
        "names the holder and where: {}",
        r.show()
    );
    // SIGKILL: no release, no renewal. Until the lease expires B still waits ...
    holder.kill().unwrap();
    let _ = holder.wait();
    let mut err = String::new();
    let _ = holder.stderr.take().unwrap().read_to_string(&mut err);
    let r = run(b.path(), &["record", "--version", "v1.0.0"]);
    assert_eq!(r.code, Some(4), "{}", r.show());
    // ... then takes it over.
    std::thread::sleep(Duration::from_millis(2600));
    let r = run(b.path(), &["record", "--version", "v1.0.0"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stderr.contains("taking over the shared history's lease"),
        "{}",
        r.show()
    );
    assert!(branch_history(&s).contains("v1.0.0"));
}

#[test]
fn a_branch_moved_by_someone_else_is_not_overwritten() {
    let s = shared();
    let a = machine(&s, "");
    release(&s, "v1.0.0");
    assert_eq!(
        run(a.path(), &["record", "--version", "v1.0.0"]).code,
        Some(0)
    );
    // A person pushes to the branch between bagboy's read and its write: simulated by a
    // history rewritten on the branch while bagboy holds its local copy. The next write
    // reads the branch again, so it includes the person's change.
    let work = tempfile::tempdir().unwrap();
    git(
        work.path(),
        &[
            "clone",
            "-q",
            "-b",
            "bagboy/history",
            &format!("file://{}", s.remote.display()),
            "c",
        ],
    );
    let c = work.path().join("c");
    let h = std::fs::read_to_string(c.join("deployment-history.yml")).unwrap();
    std::fs::write(
        c.join("deployment-history.yml"),
        h.replace("deployments:", "# edited by a person\ndeployments:"),
    )
    .unwrap();
    git(
        &c,
        &[
            "-c",
            "user.name=p",
            "-c",
            "user.email=p@x",
            "commit",
            "-qam",
            "hand edit",
        ],
    );
    git(&c, &["push", "-q", "origin", "bagboy/history"]);
    release(&s, "v1.1.0");
    let r = run(a.path(), &["record", "--version", "v1.1.0"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let log = git(&s.remote, &["log", "--format=%s", "bagboy/history"]);
    assert!(
        log.contains("hand edit"),
        "the person's commit is kept: {log}"
    );
    assert_eq!(log.lines().count(), 3, "{log}");
}
