//! The interactive path in a real terminal (tmux): `bagboy rollback` without `--version` picks
//! a release, confirms showing `current → target` and the plan once, cancels cleanly, and a
//! Ctrl-C during the run leaves a journal that `recover` finishes. Screens are snapshots.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bagboy::registry::oci::OciLayout;
use support::cli::{text, Project};
use support::tap::TestTap;

static N: AtomicUsize = AtomicUsize::new(0);

/// A tmux server of this test's own (its own socket), one window running one command.
struct Term {
    socket: String,
}

impl Term {
    fn start(dir: &Path, env: &[(&str, String)], cmd: &str) -> Term {
        let socket = format!(
            "bagboy-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        // The shell survives a Ctrl-C meant for bagboy (a trap, not an ignore: bagboy gets the
        // default disposition back when it starts) and reports the exit code.
        let mut script = String::from("trap 'true' INT; cd '");
        script.push_str(&dir.display().to_string());
        script.push_str("' && ");
        for (k, v) in env {
            script.push_str(&format!("{k}='{v}' "));
        }
        script.push_str(cmd);
        script.push_str("; echo \"[exit $?]\"; sleep 600");
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "150",
                "-y",
                "60",
                "sh",
                "-c",
                &script,
            ])
            .status()
            .expect("tmux (apt-get install -y tmux)");
        assert!(ok.success());
        Term { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-S", "-60"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    }

    fn raw_screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-e", "-S", "-60"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(Instant::now() < deadline, "`{text}` never appeared:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["-L", &self.socket, "send-keys", "-t", "0"];
        args.extend(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

fn project() -> (Project, TestTap) {
    support::fixtures::layout_and_tap()
}

fn env(p: &Project, color: bool) -> Vec<(&'static str, String)> {
    let bin = assert_cmd::cargo::cargo_bin("bagboy");
    let mut e = vec![
        (
            "PATH",
            format!("{}:/usr/bin:/bin", bin.parent().unwrap().display()),
        ),
        ("HOME", p.path().display().to_string()),
        (
            "BAGBOY_CACHE_DIR",
            p.path().join(".cache").display().to_string(),
        ),
        ("GIT_CONFIG_GLOBAL", "/dev/null".into()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        (
            "BAGBOY_GIT_AUTHOR",
            "bagboy-test <bagboy-test@example.com>".into(),
        ),
        ("TERM", "xterm-256color".into()),
    ];
    if !color {
        e.push(("NO_COLOR", "1".into()));
    }
    e
}

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\b[0-9a-f]{40}\b", "[COMMIT]");
    s.add_filter(r"\b[0-9a-f]{10}\b", "[COMMIT]");
    s.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    s.add_filter(r"\d+ ms", "[N] ms");
    s.add_filter(r"in \d+\.\d+s", "in [T]s");
    s.add_filter(r"/tmp/[^ \n]+", "[TMP]");
    s
}

fn latest(p: &Project) -> String {
    let layout = OciLayout::open(p.path().join("oci")).unwrap();
    layout
        .resolve("latest")
        .unwrap()
        .unwrap()
        .digest
        .to_string()
}

#[test]
fn pick_then_confirm_shows_the_plan_once_and_rolls_back() {
    let (p, tap) = project();
    let before = latest(&p);
    let term = Term::start(p.path(), &env(&p, false), "bagboy rollback");
    let pick = term.wait_for("Number [default");
    settings().bind(|| insta::assert_snapshot!("tty_pick", pick));
    term.keys(&["Enter"]);
    let confirm = term.wait_for("Proceed? (roll back) [y/N]");
    assert!(confirm.contains("Roll back v1.2.0 → v1.1.0"), "{confirm}");
    settings().bind(|| insta::assert_snapshot!("tty_confirm", confirm));
    term.keys(&["y", "Enter"]);
    let done = term.wait_for("[exit ");
    assert!(done.contains("[exit 0]"), "{done}");
    assert_eq!(
        done.matches("--- a/Formula/myapp.rb").count(),
        1,
        "the diff is shown once:\n{done}"
    );
    assert!(done.contains("✓"), "progress on a terminal:\n{done}");
    assert_ne!(latest(&p), before);
    assert!(tap
        .file_in_fresh_clone("Formula/myapp.rb")
        .unwrap()
        .contains("1.1.0"));
    assert!(
        !term.raw_screen().contains("\u{1b}[32m"),
        "NO_COLOR: no color"
    );
}

#[test]
fn cancelling_changes_nothing() {
    let (p, tap) = project();
    let (before, head, history) = (latest(&p), tap.head(), p.history_bytes());
    let term = Term::start(p.path(), &env(&p, true), "bagboy rollback");
    term.wait_for("Number [default");
    term.keys(&["2", "Enter"]);
    let confirm = term.wait_for("Proceed? (roll back) [y/N]");
    assert!(confirm.contains("Roll back v1.2.0 → v1.0.0"), "{confirm}");
    assert!(
        term.raw_screen().contains("\u{1b}["),
        "colors on a terminal without NO_COLOR"
    );
    term.keys(&["n", "Enter"]);
    let done = term.wait_for("[exit ");
    assert!(
        done.contains("cancelled; nothing was changed") && done.contains("[exit 2]"),
        "{done}"
    );
    settings().bind(|| {
        insta::assert_snapshot!(
            "tty_cancel",
            done.lines().rev().take(3).collect::<Vec<_>>().join("\n")
        )
    });
    assert_eq!(
        (latest(&p), tap.head(), p.history_bytes()),
        (before, head, history)
    );
}

#[test]
fn ctrl_c_during_the_run_leaves_a_journal_that_recover_finishes() {
    let (p, tap) = project();
    // The tap's push waits, so Ctrl-C lands mid-run.
    let hook = tap.root().join("homebrew-tap.git/hooks/pre-receive");
    std::fs::write(&hook, "#!/bin/sh\nsleep 20\nexit 0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let term = Term::start(
        p.path(),
        &env(&p, false),
        "bagboy rollback --version v1.1.0 --yes",
    );
    term.wait_for("✓");
    std::thread::sleep(Duration::from_millis(300));
    term.keys(&["C-c"]);
    let done = term.wait_for("[exit ");
    assert!(!done.contains("[exit 0]"), "{done}");
    // Said on the terminal: what state things are in and what to run.
    assert!(
        done.contains("interrupted") && done.contains("bagboy recover"),
        "{done}"
    );
    let journals: Vec<_> = std::fs::read_dir(p.path().join(".bagboy/journal"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(journals.len(), 1, "the journal is kept:\n{done}");
    std::fs::remove_file(&hook).unwrap();
    let out = p.bagboy().args(["recover", "--yes"]).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("finished") || stdout.contains("undid"),
        "{stdout}"
    );
    let list = p
        .bagboy()
        .args(["versions", "list", "--format", "json"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["status"] != "rolling_back"));
}

#[test]
fn prune_asks_on_a_terminal_and_cron_does_not() {
    let (p, _tap) = project();
    let history = p.history_bytes();
    let term = Term::start(p.path(), &env(&p, false), "bagboy versions prune --keep 0");
    let ask = term.wait_for("Remove them? [y/N]");
    settings().bind(|| insta::assert_snapshot!("tty_prune", ask));
    term.keys(&["n", "Enter"]);
    let done = term.wait_for("[exit ");
    assert!(done.contains("[exit 2]"), "{done}");
    assert_eq!(p.history_bytes(), history, "nothing removed");
    // Without a terminal (cron), prune runs as told.
    let out = p
        .bagboy()
        .args(["versions", "prune", "--keep", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(text(&out).0.contains("removed v1.1.0"), "{:?}", text(&out));
}

#[test]
fn bash_completes_recorded_versions_and_configured_registries() {
    let (p, _tap) = project();
    let bin = assert_cmd::cargo::cargo_bin("bagboy");
    let dir = bin.parent().unwrap().display().to_string();
    // A real bash in a real terminal, with the script `bagboy completions bash` prints.
    let script = p.path().join("bagboy.bash");
    let out = p.bagboy().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let term = Term::start(
        p.path(),
        &[("PATH", format!("{dir}:/usr/bin:/bin"))],
        &format!(
            "bash --norc --noprofile -i -c 'source {}; PS1=\"$ \"; exec bash --norc --noprofile -i' ; true",
            script.display()
        ),
    );
    std::thread::sleep(Duration::from_millis(300));
    term.keys(&["source ", &script.display().to_string(), "Enter"]);
    term.keys(&["bagboy rollback --version v1.", "Tab", "Tab"]);
    let screen = term.wait_for("v1.0.0");
    assert!(
        screen.contains("v1.1.0") && screen.contains("v1.2.0"),
        "{screen}"
    );
    term.keys(&["C-u", "bagboy rollback --registry ", "Tab", "Tab"]);
    let screen = term.wait_for("brew");
    assert!(screen.contains("acme/homebrew-tap"), "{screen}");
}
