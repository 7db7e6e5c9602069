//! A pull request's checkout is hostile input: its `bagboy.yaml`, history and `.bagboy/` are
//! written by anyone, and the servers they name may be the attacker's. Each test plays one
//! attack through the real binary against loopback servers that record what they receive,
//! and checks the safe outcome (contract, "Untrusted checkouts"; issue: hostile input).

use crate::support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::Project;
use support::fake_server::{FakeResponse, FakeServer};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

const PASSWORD: &str = "s3cret-Runner-Password";
const FORMULA: &str = "Formula/myapp.rb";

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {:?} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.took, self.stdout, self.stderr
        )
    }
}

/// A checkout on a CI runner: the runner's credentials in the environment.
struct Checkout {
    p: Project,
    env: Vec<(String, String)>,
}

impl Checkout {
    fn new(config: &str) -> Checkout {
        let p = Project::new();
        p.write("bagboy.yaml", config);
        std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
        Checkout { p, env: Vec::new() }
    }

    fn env(mut self, k: &str, v: &str) -> Checkout {
        self.env.push((k.into(), v.into()));
        self
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let p = self.p.path();
        let mut c = support::cli::isolated(p);
        c.args(args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, args: &[&str]) -> Run {
        let t = Instant::now();
        let out = self.cmd(args).output().expect("run bagboy");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            took: t.elapsed(),
        }
    }
}

/// A history with two releases of one docker registry.
fn docker_history(registry: &str, d1: &str, d2: &str) -> String {
    format!(
        "deployments:\n  - version: v1.1.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: superseded\n    packages:\n      - format: docker\n        registry: \"{registry}\"\n        digest: \"{d1}\"\n        tags: [v1.1.0, latest]\n  - version: v1.2.0\n    timestamp: \"2026-02-01T00:00:00Z\"\n    status: deployed\n    packages:\n      - format: docker\n        registry: \"{registry}\"\n        digest: \"{d2}\"\n        tags: [v1.2.0, latest]\n"
    )
}

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn authorizations(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_string))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Credentials go only to the host they are bound to.
// ---------------------------------------------------------------------------------------------

#[test]
fn env_credentials_never_reach_a_server_the_checkout_names() {
    // The attacker's "registry" asks for Basic credentials on everything.
    let evil = FakeServer::start(|_, _| {
        FakeResponse::new(401).header("WWW-Authenticate", "Basic realm=\"steal\"")
    });
    let repo = format!("{}/acme/app", evil.host());
    let c = Checkout::new(&format!(
        "name: app\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n"
    ))
    .env("BAGBOY_REGISTRY_USERNAME", "ci")
    .env("BAGBOY_REGISTRY_PASSWORD", PASSWORD)
    .env("BAGBOY_REGISTRY_HOST", "ghcr.io");
    c.p.write_history(&docker_history(&repo, &digest('1'), &digest('2')));
    // Docker's config.json holds credentials for another host too.
    let auth = base64_encode(&format!("ci:{PASSWORD}"));
    c.p.write(
        "docker-config/config.json",
        &format!("{{\"auths\":{{\"ghcr.io\":{{\"auth\":\"{auth}\"}}}}}}"),
    );
    let run = c.run(&["rollback", "--dry-run", "--format", "markdown"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(!evil.requests().is_empty(), "the server was asked");
    assert_eq!(
        authorizations(&evil),
        Vec::<String>::new(),
        "no credential sent"
    );
    // The message does not claim credentials were rejected: none were sent.
    assert!(!run.stderr.contains("rejected"), "{}", run.show());
    assert!(
        run.stderr.contains("no credentials found"),
        "{}",
        run.show()
    );
    assert!(!run.stderr.contains(PASSWORD) && !run.stdout.contains(PASSWORD));
}

#[test]
fn credentials_do_not_follow_a_redirect_to_another_host() {
    let thief = std::sync::Arc::new(FakeServer::start(|_, _| FakeResponse::new(404)));
    let thief_host = thief.host();
    // The bound registry answers the challenge, then redirects the authenticated request.
    let reg = FakeServer::start(move |req, _| {
        if req.header("authorization").is_none() {
            FakeResponse::new(401).header("WWW-Authenticate", "Basic realm=\"reg\"")
        } else {
            FakeResponse::new(307).header(
                "Location",
                &format!("http://{thief_host}/v2/acme/app/manifests/v1.2.0"),
            )
        }
    });
    let repo = format!("{}/acme/app", reg.host());
    let c = Checkout::new(&format!(
        "name: app\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n"
    ))
    .env("BAGBOY_REGISTRY_USERNAME", "ci")
    .env("BAGBOY_REGISTRY_PASSWORD", PASSWORD)
    .env("BAGBOY_REGISTRY_HOST", &reg.host());
    c.p.write_history(&docker_history(&repo, &digest('1'), &digest('2')));
    let run = c.run(&["rollback", "--dry-run"]);
    assert_ne!(run.code, Some(0), "{}", run.show());
    assert!(
        !authorizations(&reg).is_empty(),
        "the bound host got its credentials"
    );
    assert!(
        thief.requests().is_empty(),
        "the redirect to another host was not followed: {:?}",
        thief.requests()
    );
}

#[test]
fn a_token_realm_body_is_never_echoed() {
    let realm = FakeServer::start(|_, _| {
        FakeResponse::new(403).body(
            "internal: aws_access_key_id=AKIAIOSFODNN7EXAMPLE aws_secret=wJalrXUtnFEMI/K7MDENG",
        )
    });
    let realm_url = format!("http://{}/token", realm.host());
    let reg = FakeServer::start(move |_, _| {
        FakeResponse::new(401).header(
            "WWW-Authenticate",
            &format!("Bearer realm=\"{realm_url}\",service=\"reg\""),
        )
    });
    let repo = format!("{}/acme/app", reg.host());
    let c = Checkout::new(&format!(
        "name: app\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n"
    ));
    c.p.write_history(&docker_history(&repo, &digest('1'), &digest('2')));
    let run = c.run(&["rollback", "--dry-run"]);
    assert_ne!(run.code, Some(0), "{}", run.show());
    assert!(!realm.requests().is_empty(), "the realm was asked");
    assert!(
        !run.stderr.contains("AKIA") && !run.stderr.contains("wJalr"),
        "{}",
        run.show()
    );
}

// ---------------------------------------------------------------------------------------------
// 2. A journal is input: recover checks it and shows it before doing it.
// ---------------------------------------------------------------------------------------------

/// A real registry with v1.1.0 and v1.2.0 recorded, and a plan for rolling back to v1.1.0.
struct Recorded {
    reg: TestRegistry,
    c: Checkout,
    plan: Value,
    evil: String,
}

fn recorded() -> Recorded {
    let reg = TestRegistry::start(Auth::None);
    let repo = reg.repo("acme/app");
    let c = Checkout::new(&format!(
        "name: app\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n"
    ));
    for v in ["v1.1.0", "v1.2.0"] {
        let d = reg.push_image("acme/app", v);
        reg.put_tag("acme/app", "latest", &d);
        let run = c.run(&["record", "--version", v]);
        assert_eq!(run.code, Some(0), "{}", run.show());
    }
    // An image the attacker pushed and the history never recorded.
    let evil = reg.push_image("acme/app", "evil");
    let run = c.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let plan: Value = serde_json::from_str(&run.stdout).unwrap();
    Recorded { reg, c, plan, evil }
}

fn write_journal(c: &Checkout, plan: &Value) {
    let steps: Vec<Value> = plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .flat_map(|(r, rp)| {
            rp["steps"]
                .as_array()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, s)| {
                    !matches!(s["action"].as_str(), Some("unchanged" | "left_in_place"))
                })
                .map(move |(i, _)| serde_json::json!([r, i]))
                .collect::<Vec<_>>()
        })
        .collect();
    let header = serde_json::json!({
        "journal": 2, "id": "1-1", "started_at": "2026-03-01T00:00:00Z", "pid": 1,
        "command": "bagboy rollback", "entry_timestamp": "2026-03-01T00:00:00Z",
        "plan": plan, "steps": steps,
    });
    c.p.write(
        ".bagboy/journal/1-1.jsonl",
        &format!("{}\n", serde_json::to_string(&header).unwrap()),
    );
}

#[test]
fn recover_refuses_a_forged_journal_and_changes_nothing() {
    let r = recorded();
    let mut plan = r.plan.clone();
    let latest = plan["registries"][0]["steps"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["reference"] == "latest")
        .unwrap();
    latest["after"] = Value::String(r.evil.clone());
    latest["action"] = Value::String("move_tag".into());
    write_journal(&r.c, &plan);
    let history = r.c.p.history_bytes();
    let before = r.reg.tag_digest("acme/app", "latest");
    let run = r.c.run(&["recover", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("would not plan")
            && run.stderr.contains("not a digest the history records"),
        "{}",
        run.show()
    );
    assert_eq!(r.reg.tag_digest("acme/app", "latest"), before);
    assert_eq!(r.c.p.history_bytes(), history);
}

#[test]
fn recover_shows_what_it_will_do_and_asks() {
    let r = recorded();
    write_journal(&r.c, &r.plan);
    let before = r.reg.tag_digest("acme/app", "latest");
    // No terminal, no --yes: the steps are shown, nothing is done.
    let run = r.c.run(&["recover"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stdout.contains("apply") && run.stdout.contains("latest"),
        "{}",
        run.show()
    );
    assert_eq!(r.reg.tag_digest("acme/app", "latest"), before);
    // A genuine journal, confirmed: finished.
    let run = r.c.run(&["recover", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let v110 = r.plan["registries"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["reference"] == "latest")
        .unwrap()["after"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.reg.tag_digest("acme/app", "latest"), Some(v110));
}

// ---------------------------------------------------------------------------------------------
// 3, 4. No symlinks, devices or FIFOs; every read bounded.
// ---------------------------------------------------------------------------------------------

#[test]
fn planted_links_devices_and_fifos_are_refused_quickly() {
    let c = Checkout::new("name: app\n");
    let victim = c.p.path().join("victim.txt");
    std::fs::write(&victim, "keep me").unwrap();
    let bagboy_dir = c.p.path().join(".bagboy");
    std::fs::create_dir_all(&bagboy_dir).unwrap();
    let history = bagboy_dir.join("deployment-history.yml");

    // The history is a symlink (to a victim, to /dev/zero), or a FIFO.
    std::os::unix::fs::symlink(&victim, &history).unwrap();
    let run = c.run(&["versions", "prune", "--keep", "1"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("symlink"), "{}", run.show());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    std::fs::remove_file(&history).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &history).unwrap();
    let run = c.run(&["versions", "list"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.took < Duration::from_secs(10), "{}", run.show());
    std::fs::remove_file(&history).unwrap();
    mkfifo(&history);
    let run = c.run(&["rollback", "--dry-run"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("FIFO"), "{}", run.show());
    assert!(
        run.took < Duration::from_secs(10),
        "no hang: {}",
        run.show()
    );
    std::fs::remove_file(&history).unwrap();

    // The lock is a FIFO or a link to the victim.
    std::fs::write(
        &history,
        "deployments:\n  - version: v1.0.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n",
    )
    .unwrap();
    let lock = bagboy_dir.join("lock");
    mkfifo(&lock);
    let run = c.run(&["versions", "prune", "--keep", "1"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.took < Duration::from_secs(10),
        "no hang: {}",
        run.show()
    );
    std::fs::remove_file(&lock).unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let run = c.run(&["record", "--version", "v1.1.0"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
    std::fs::remove_file(&lock).unwrap();

    // `.bagboy` itself points elsewhere.
    let elsewhere = c.p.path().join("elsewhere");
    std::fs::rename(&bagboy_dir, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &bagboy_dir).unwrap();
    let run = c.run(&["versions", "prune", "--keep", "1"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("symlink"), "{}", run.show());

    // Nothing was written outside the checkout's own files.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep me");
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success());
}

#[test]
fn an_oci_layout_pointing_at_a_device_is_refused() {
    let c =
        Checkout::new("name: app\nregistries:\n  - format: oci-layout\n    registry: ./layout\n");
    let layout = c.p.path().join("layout");
    std::fs::create_dir_all(&layout).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", layout.join("index.json")).unwrap();
    let run = c.run(&["record", "--version", "v1.0.0"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.took < Duration::from_secs(10), "{}", run.show());
}

// ---------------------------------------------------------------------------------------------
// 5. Output injection.
// ---------------------------------------------------------------------------------------------

#[test]
fn values_cannot_inject_terminal_escapes_ci_commands_or_markdown() {
    let reg = TestRegistry::start(Auth::None);
    let repo = reg.repo("acme/app");
    let d1 = reg.push_image("acme/app", "v1.1.0");
    let d2 = reg.push_image("acme/app", "v1.2.0");
    reg.put_tag("acme/app", "latest", &d2);
    let tap = TestTap::new();
    let mut evil_formula = goreleaser_formula("myapp", "1.1.0");
    evil_formula
        .push_str("# ```\n# </details><img src=\"https://evil.example/p.png\"> @acme/security\n");
    let c1 = tap.commit_file(FORMULA, &evil_formula, "1.1.0");
    tap.push();
    let c2 = tap.commit_file(FORMULA, &goreleaser_formula("myapp", "1.2.0"), "1.2.0");
    tap.push();
    let c = Checkout::new(&format!(
        "name: myapp\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
        tap.url()
    ));
    let evil = r#"abc\u001b]0;pwned\u0007\u001b[31m\r\n::set-output name=approved::true\n</details><img src=x> @acme/team | ## Approved"#;
    c.p.write_history(&format!(
        "deployments:\n  - version: v1.1.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    commit: \"{evil}\"\n    notes: \"{evil}\"\n    status: superseded\n    packages:\n      - format: docker\n        registry: \"{repo}\"\n        digest: \"{d1}\"\n        tags: [v1.1.0, latest]\n      - format: brew\n        registry: acme/homebrew-tap\n        formula: myapp\n        tap_commit: \"{c1}\"\n  - version: v1.2.0\n    timestamp: \"2026-02-01T00:00:00Z\"\n    commit: \"{evil}\"\n    status: deployed\n    packages:\n      - format: docker\n        registry: \"{repo}\"\n        digest: \"{d2}\"\n        tags: [v1.2.0, latest]\n      - format: brew\n        registry: acme/homebrew-tap\n        formula: myapp\n        tap_commit: \"{c2}\"\n"
    ));
    let control = |s: &str| s.chars().any(|ch| ch.is_control() && ch != '\n');
    for args in [
        &["rollback", "--dry-run"][..],
        &["versions", "list"],
        &["versions", "compare", "v1.1.0", "v1.2.0"],
    ] {
        let run = c.run(args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.show());
        for out in [&run.stdout, &run.stderr] {
            assert!(
                !control(out),
                "{args:?}: a control character reached the output: {out:?}"
            );
            assert!(
                !out.lines().any(|l| l.trim_start().starts_with("::")),
                "{args:?}: a line starts a CI command: {out}"
            );
        }
    }
    for args in [
        &["rollback", "--dry-run", "--format", "markdown"][..],
        &[
            "versions", "compare", "v1.1.0", "v1.2.0", "--format", "markdown",
        ],
    ] {
        let run = c.run(args);
        assert_eq!(run.code, Some(0), "{args:?}: {}", run.show());
        let md = &run.stdout;
        assert!(!control(md), "{md:?}");
        // A formula's own lines are inside a fenced code block, where they are only text.
        let prose = outside_fences(md);
        let md = &prose;
        assert!(!md.contains("<img"), "{args:?}: raw HTML: {md}");
        assert!(!md.contains("@acme/team"), "{args:?}: a mention: {md}");
        assert!(
            md.matches("</details>").count() == md.matches("<details>").count(),
            "{args:?}: a value closed a <details>: {md}"
        );
        assert!(
            !md.lines()
                .any(|l| l.starts_with("## Approved") || l.starts_with("::")),
            "{md}"
        );
        if args[0] == "rollback" {
            // The formula's own ``` line stays inside a longer fence.
            assert!(run.stdout.contains("````diff"), "{}", run.stdout);
            assert!(
                run.stdout.contains("</details><img"),
                "the diff keeps the line as text"
            );
        }
    }
}

/// Markdown with its fenced code blocks and code spans removed: what GitHub renders as
/// markdown and HTML rather than as literal text.
fn outside_fences(md: &str) -> String {
    without_code_spans(&without_fences(md))
}

/// A code span opens with a run of n backticks and closes with the next run of exactly n.
fn without_code_spans(md: &str) -> String {
    let chars: Vec<char> = md.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    let run_at = |i: usize| chars[i..].iter().take_while(|c| **c == '`').count();
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut closed = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    closed = Some(j + m);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match closed {
            Some(end) => {
                out.push_str("CODE");
                i = end;
            }
            None => {
                out.extend(std::iter::repeat_n('`', n));
                i += n;
            }
        }
    }
    out
}

/// Markdown with its fenced code blocks removed (a fence closes only with a run of backticks
/// at least as long as the one that opened it).
fn without_fences(md: &str) -> String {
    let mut out = String::new();
    let mut open: Option<usize> = None;
    for line in md.lines() {
        let ticks = line.chars().take_while(|c| *c == '`').count();
        match open {
            None if ticks >= 3 => open = Some(ticks),
            Some(n) if ticks >= n && line.trim_end().chars().all(|c| c == '`') => open = None,
            None => {
                out.push_str(line);
                out.push('\n');
            }
            Some(_) => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// 6. The tap cache is keyed by remote and locked.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_dry_run_against_another_remote_cannot_redirect_a_real_push() {
    let real = TestTap::new();
    let evil = TestTap::new();
    for t in [&real, &evil] {
        for v in ["1.1.0", "1.2.0"] {
            t.commit_file(FORMULA, &goreleaser_formula("myapp", v), v);
            t.push();
        }
    }
    let config = |url: &str| {
        format!("name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{url}\"\n    branch: main\n")
    };
    let c = Checkout::new(&config(&real.url()));
    for v in ["v1.1.0", "v1.2.0"] {
        let run = c.run(&["record", "--version", v]);
        assert_eq!(run.code, Some(0), "{}", run.show());
    }
    // A PR's dry-run, same cache directory, the attacker's remote.
    let pr = Checkout::new(&config(&evil.url()));
    pr.p.write_history(&c.p.history());
    let mut pr_cmd = pr.cmd(&["rollback", "--version", "v1.1.0", "--dry-run"]);
    pr_cmd.env("BAGBOY_CACHE_DIR", c.p.path().join(".cache"));
    assert!(pr_cmd.output().unwrap().status.code().is_some());
    let (real_head, evil_head) = (real.head(), evil.head());
    let run = c.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_ne!(real.head(), real_head, "the real tap got the rollback");
    assert_eq!(evil.head(), evil_head, "the attacker's tap got nothing");
}

// ---------------------------------------------------------------------------------------------
// 7. git: timeouts, protocols, options.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_silent_remote_times_out_and_leaves_no_git_behind() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().flatten() {
            held.push(s);
        }
    });
    let url = format!("http://127.0.0.1:{port}/acme/homebrew-tap.git");
    let c = Checkout::new(&format!(
        "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{url}\"\n"
    ))
    .env("BAGBOY_TIMEOUT_SECS", "2");
    c.p.write_history(&format!(
        "deployments:\n  - version: v1.1.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: superseded\n    packages:\n      - format: brew\n        registry: acme/homebrew-tap\n        tap_commit: \"{a}\"\n  - version: v1.2.0\n    timestamp: \"2026-02-01T00:00:00Z\"\n    status: deployed\n",
        a = "a".repeat(40)
    ));
    let run = c.run(&["rollback", "--dry-run"]);
    assert_ne!(run.code, Some(0), "{}", run.show());
    assert!(run.took < Duration::from_secs(30), "{}", run.show());
    assert!(run.stderr.contains("no progress"), "{}", run.show());
    std::thread::sleep(Duration::from_millis(300));
    let left = Command::new("pgrep")
        .args(["-f", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "git processes left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
}

#[test]
fn dangerous_remotes_are_refused() {
    for remote in [
        "fd::3",
        "ext::sh -c touch% /tmp/bagboy-pwned",
        "--upload-pack=touch /tmp/x",
    ] {
        let c = Checkout::new(&format!(
            "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{remote}\"\n"
        ))
        .env("BAGBOY_TIMEOUT_SECS", "5");
        let run = c.run(&["record", "--version", "v1.0.0"]);
        assert_eq!(run.code, Some(2), "{remote}: {}", run.show());
        assert!(
            run.took < Duration::from_secs(15),
            "{remote}: {}",
            run.show()
        );
    }
    assert!(!Path::new("/tmp/bagboy-pwned").exists());
}

// ---------------------------------------------------------------------------------------------
// 8. Tag paging is bounded.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_tag_list_that_loops_is_cut_short() {
    let d = digest('7');
    let loops = FakeServer::start(move |req, _| {
        if req.target.contains("/tags/list") {
            FakeResponse::new(200)
                .header("Content-Type", "application/json")
                .header("Link", "</v2/acme/app/tags/list?n=1&last=a>; rel=\"next\"")
                .body(r#"{"name":"acme/app","tags":["a"]}"#)
        } else {
            FakeResponse::new(200)
                .header("Docker-Content-Digest", &d)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .header("Content-Length", "2")
        }
    });
    let repo = format!("{}/acme/app", loops.host());
    let c = Checkout::new(&format!(
        "name: app\nregistries:\n  - format: docker\n    registry: \"{repo}\"\n    insecure: true\n"
    ));
    let run = c.run(&["record", "--version", "v1.0.0"]);
    assert_ne!(run.code, Some(0), "{}", run.show());
    assert!(run.stderr.contains("loops"), "{}", run.show());
    let pages = loops
        .requests()
        .iter()
        .filter(|r| r.target.contains("/tags/list"))
        .count();
    assert!(pages <= 3, "{pages} pages requested");
}

// ---------------------------------------------------------------------------------------------
// 10. A lock from another host has a way out.
// ---------------------------------------------------------------------------------------------

#[test]
fn a_lock_from_a_vanished_runner_can_be_broken() {
    let c = Checkout::new("name: app\n");
    c.p.write_history(
        "deployments:\n  - version: v1.0.0\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n  - version: v1.1.0\n    timestamp: \"2026-01-02T00:00:00Z\"\n    status: superseded\n",
    );
    c.p.write(
        ".bagboy/lock",
        r#"{"pid": 4242, "host": "runner-that-is-gone", "started_at": "2026-01-01T00:00:00Z", "command": "bagboy rollback"}"#,
    );
    let run = c.run(&["versions", "prune", "--keep", "1"]);
    assert_eq!(run.code, Some(4), "{}", run.show());
    assert!(
        run.stderr.contains("bagboy unlock") && !run.stderr.contains("takes the lock over"),
        "{}",
        run.show()
    );
    let run = c.run(&["unlock"]);
    assert_eq!(run.code, Some(2), "asks first: {}", run.show());
    assert!(c.p.path().join(".bagboy/lock").exists());
    let run = c.run(&["unlock", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(!c.p.path().join(".bagboy/lock").exists());
    let run = c.run(&["versions", "prune", "--keep", "1"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "pr")
        .env("GIT_AUTHOR_EMAIL", "pr@example.com")
        .env("GIT_COMMITTER_NAME", "pr")
        .env("GIT_COMMITTER_EMAIL", "pr@example.com")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Every file under `dir` (but the cache) with its bytes: what a dry-run must leave as it was.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if rel == ".cache" {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.insert(rel, std::fs::read(&p).unwrap());
            } else {
                out.insert(rel, Vec::new());
            }
        }
    }
    out
}

#[test]
fn a_shared_history_never_reaches_a_file_before_it_is_parsed_nor_in_a_dry_run() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join(".bashrc");
    std::fs::write(&victim, "# the runner's own file\n").unwrap();
    // The PR ships a bare repository whose history branch holds the attacker's bytes.
    let c = Checkout::new("name: app\n");
    let work = c.p.path().join("payload-src");
    std::fs::create_dir_all(&work).unwrap();
    git_in(&work, &["init", "-q", "-b", "bagboy/history"]);
    std::fs::write(
        work.join("deployment-history.yml"),
        "echo pwned # not a history\n",
    )
    .unwrap();
    git_in(&work, &["add", "."]);
    git_in(&work, &["commit", "-qm", "payload"]);
    git_in(
        c.p.path(),
        &["clone", "-q", "--bare", "payload-src", "payload.git"],
    );
    std::fs::remove_dir_all(&work).unwrap();

    // 1. `history:` outside the project: refused at its line before anything is fetched.
    c.p.write(
        "bagboy.yaml",
        &format!(
            "name: app\nhistory: {}\nhistory_remote:\n  url: ./payload.git\n",
            victim.display()
        ),
    );
    let before = snapshot(c.p.path());
    let run = c.run(&["rollback", "--dry-run"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(
        run.stderr.contains("bagboy.yaml:2:") && run.stderr.contains("--history"),
        "{}",
        run.show()
    );
    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        "# the runner's own file\n"
    );
    for escape in ["../outside.yml", "a/../../outside.yml"] {
        c.p.write("bagboy.yaml", &format!("name: app\nhistory: {escape}\n"));
        let run = c.run(&["versions", "list"]);
        assert_eq!(run.code, Some(2), "{escape}: {}", run.show());
    }

    // 2. Inside the project: a dry-run reads the branch in memory; the bad bytes are an error
    //    naming the file, and no local copy is written.
    c.p.write(
        "bagboy.yaml",
        "name: app\nhistory_remote:\n  url: ./payload.git\n",
    );
    let before_inside = snapshot(c.p.path());
    for args in [
        &["rollback", "--dry-run"][..],
        &["versions", "list"][..],
        &["rollback", "--dry-run", "--format", "json"][..],
    ] {
        let run = c.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.show());
        assert!(
            run.stderr.contains("deployment-history.yml"),
            "{}",
            run.show()
        );
    }
    assert_eq!(
        snapshot(c.p.path()),
        before_inside,
        "nothing written outside the cache"
    );
    assert!(!c.p.history_path().exists());
    drop(before);
}

#[test]
fn a_checkouts_repository_config_never_runs_a_command() {
    let c = Checkout::new("name: app\n");
    let marker = c.p.path().join("pwned");
    // The PR's repository: one commit, and a config that would run a command on a lazy fetch
    // of any missing object (a promisor remote over ext::), and through fsmonitor and hooks.
    let repo = c.p.path().join("app");
    std::fs::create_dir_all(repo.join("migrations")).unwrap();
    git_in(&repo, &["init", "-q"]);
    std::fs::write(
        repo.join("migrations/001_init.up.sql"),
        "create table t();\n",
    )
    .unwrap();
    std::fs::write(repo.join("migrations/001_init.down.sql"), "drop table t;\n").unwrap();
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-qm", "one"]);
    let head = git_in(&repo, &["rev-parse", "HEAD"]);
    let cmd = format!("touch {}", marker.display());
    for (k, v) in [
        ("core.repositoryformatversion", "1".to_string()),
        ("extensions.partialClone", "origin".into()),
        ("remote.origin.promisor", "true".into()),
        // git's ext:: splits on spaces; `% ` is a literal space.
        (
            "remote.origin.url",
            format!("ext::sh -c touch% {}", marker.display()),
        ),
        ("protocol.ext.allow", "always".into()),
        ("core.fsmonitor", cmd.clone()),
        ("core.sshCommand", cmd.clone()),
        ("core.pager", cmd.clone()),
    ] {
        git_in(&repo, &["config", k, &v]);
    }
    // The history names a commit the repository lacks: git would fetch it lazily.
    let missing = "0123456789abcdef0123456789abcdef01234567";
    let reg = TestRegistry::start(Auth::None);
    let image = reg.repo("acme/app");
    let d1 = reg.push_image("acme/app", "v1.1.0");
    let d2 = reg.push_image("acme/app", "v1.2.0");
    reg.put_tag("acme/app", "latest", &d2);
    c.p.write(
        "bagboy.yaml",
        &format!(
            "name: app\nregistries:\n  - format: docker\n    registry: \"{image}\"\n    insecure: true\ndeployment:\n  rollback:\n    validation:\n      - check_backwards_compatibility: {{repo: app}}\n"
        ),
    );
    c.p.write_history(&format!(
        "deployments:\n- version: v1.2.0\n  timestamp: 2026-02-02T00:00:00Z\n  commit: {head}\n  status: deployed\n  packages:\n  - format: docker\n    registry: \"{image}\"\n    digest: \"{d2}\"\n    tags: [v1.2.0, latest]\n- version: v1.1.0\n  timestamp: 2026-02-01T00:00:00Z\n  commit: {missing}\n  status: superseded\n  packages:\n  - format: docker\n    registry: \"{image}\"\n    digest: \"{d1}\"\n    tags: [v1.1.0, latest]\n"
    ));
    let before = snapshot(c.p.path());
    let run = c.run(&["rollback", "--dry-run"]);
    assert!(
        !marker.exists(),
        "a command from the checkout's git config ran: {}",
        run.show()
    );
    // The commit cannot be found: said, not fetched.
    assert!(
        run.stdout.contains(missing) || run.stderr.contains(missing),
        "{}",
        run.show()
    );
    assert_eq!(
        snapshot(c.p.path()),
        before,
        "the dry-run wrote nothing outside the cache"
    );
}

#[test]
fn record_refuses_while_an_interrupted_rollback_is_unfinished() {
    let r = recorded();
    // A rollback killed half-way leaves its journal (and holds no lock any more).
    write_journal(&r.c, &r.plan);
    let history = r.c.p.history_bytes();
    let d = r.reg.push_image("acme/app", "v1.3.0");
    r.reg.put_tag("acme/app", "latest", &d);
    for args in [
        &["record", "--version", "v1.3.0"][..],
        &["versions", "prune", "--keep", "1", "--yes"][..],
    ] {
        let run = r.c.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.show());
        assert!(run.stderr.contains("bagboy recover"), "{}", run.show());
        assert_eq!(r.c.p.history_bytes(), history, "{args:?} wrote nothing");
    }
}

#[test]
fn out_of_range_config_values_are_refused_at_their_line() {
    let c = Checkout::new("name: app\n");
    c.p.write_history(
        "deployments:\n- version: v1.1.0\n  timestamp: 2026-02-01T00:00:00Z\n  status: deployed\n",
    );
    let cases = [
        (
            "      - error_rate_threshold: \"-5%\"\n",
            "error_rate_threshold",
        ),
        (
            "      - error_rate_threshold: \"500%\"\n",
            "error_rate_threshold",
        ),
        (
            "      - health_check_failures: 0\n",
            "health_check_failures",
        ),
        (
            "      - response_time_threshold: \"99999999999999999999s\"\n",
            "response_time_threshold",
        ),
    ];
    for (trigger, key) in cases {
        c.p.write(
            "bagboy.yaml",
            &format!("name: app\ndeployment:\n  health_checks:\n    - command: \"true\"\n  rollback:\n    auto_trigger:\n{trigger}"),
        );
        for args in [&["rollback", "--dry-run"][..], &["health"][..]] {
            let run = c.run(args);
            assert_eq!(run.code, Some(2), "{trigger} {args:?}: {}", run.show());
            assert!(
                run.stderr.contains("bagboy.yaml:7:") && run.stderr.contains(key),
                "{}",
                run.show()
            );
        }
    }
    let checks = [
        (
            "    - url: http://127.0.0.1:9/\n      retries: -1\n",
            "retries",
        ),
        (
            "    - url: http://127.0.0.1:9/\n      retries: 4000000000\n",
            "retries",
        ),
        (
            "    - url: http://127.0.0.1:9/\n      timeout: \"99999999999999999999s\"\n",
            "timeout",
        ),
    ];
    for (check, key) in checks {
        c.p.write(
            "bagboy.yaml",
            &format!("name: app\ndeployment:\n  health_checks:\n{check}"),
        );
        let run = c.run(&["health"]);
        assert_eq!(run.code, Some(2), "{check}: {}", run.show());
        assert!(
            run.stderr.contains(key) && run.stderr.contains("bagboy.yaml:"),
            "{}",
            run.show()
        );
    }
    for (block, key) in [
        ("monitoring:\n  textfile: \"\"\n", "textfile"),
        ("history_remote:\n  url: ./h.git\n  lease: \"99999999999999999999s\"\n", "lease"),
        ("deployment:\n  strategy: blue-green\n  traffic:\n    command: \"true\"\n    blue: {server: b, url: \"http://127.0.0.1:1\"}\n    green: {server: g, url: \"http://127.0.0.1:2\"}\n    interval: \"99999999999999999999s\"\n", "interval"),
    ] {
        c.p.write("bagboy.yaml", &format!("name: app\n{block}"));
        let run = c.run(&["rollback", "--dry-run"]);
        assert_eq!(run.code, Some(2), "{block}: {}", run.show());
        assert!(run.stderr.contains(key), "{}", run.show());
    }
}

/// The refs of a bare repository, to tell that nothing was pushed to it.
fn refs(git_dir: &Path) -> String {
    git_in(
        git_dir,
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

#[test]
fn every_read_only_command_writes_sends_and_runs_nothing_with_every_feature_configured() {
    use support::tap::goreleaser_formula;
    let reg = TestRegistry::start(Auth::None);
    let tap = TestTap::new();
    let hooks = FakeServer::start(|_, _| FakeResponse::new(200));
    let apps = FakeServer::start(|_, _| FakeResponse::new(200));
    let outside = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let shared = outside.path().join("history.git");
    std::fs::create_dir_all(&shared).unwrap();
    git_in(&shared, &["init", "--bare", "-q"]);
    // A cargo registry behind a proxy that sees every request, and the user's cargo home
    // (under HOME) holding its token.
    let (cargo_reg, cargo_proxy) = support::cargo_registry::behind_proxy();
    let cargo_index = support::cargo_registry::proxied_index(&cargo_proxy);
    cargo_reg.cargo_home_for(home.path(), Some(&cargo_reg.token), &cargo_index);
    let c = Checkout::new("name: myapp\n")
        .env("HOME", &home.path().display().to_string())
        .env(
            "CARGO_HOME",
            &home.path().join("cargo-home").display().to_string(),
        );
    let markers = [
        c.p.path().join("ran-health-command"),
        c.p.path().join("ran-balancer"),
    ];
    // The balancer: a script that says blue is live, and leaves a mark whenever it runs.
    let balancer = c.p.write(
        "switch.sh",
        &format!(
            "#!/bin/sh\ntouch {}\n[ \"$1\" = get ] && printf 'blue 100\\ngreen 0\\n'\nexit 0\n",
            markers[1].display()
        ),
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&balancer, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // A repository for the migrations check.
    let repo = c.p.path().join("app");
    std::fs::create_dir_all(repo.join("migrations")).unwrap();
    git_in(&repo, &["init", "-q"]);
    std::fs::write(repo.join("migrations/001.up.sql"), "create table t();\n").unwrap();
    std::fs::write(repo.join("migrations/001.down.sql"), "drop table t;\n").unwrap();
    git_in(&repo, &["add", "."]);
    git_in(&repo, &["commit", "-qm", "one"]);
    let commit = git_in(&repo, &["rev-parse", "HEAD"]);
    let image = reg.repo("acme/app");
    let config = format!(
        "name: myapp\nregistries:\n  - format: docker\n    registry: \"{image}\"\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{tap}\"\n    branch: main\n  - format: cargo\n    registry: \"{cargo_index}\"\n    crates: [myapp]\n\
         history_remote:\n  url: \"file://{shared}\"\n\
         monitoring:\n  webhooks:\n    - url: \"http://{hooks}/hook\"\n      format: json\n  pushgateway: \"http://{hooks}\"\n  textfile: metrics/bagboy.prom\n\
         deployment:\n  strategy: blue-green\n  health_checks:\n    - command: \"touch {health}\"\n    - url: \"http://{apps}/health\"\n  traffic:\n    command: \"{balancer}\"\n    blue: {{server: blue, url: \"http://{apps}/blue\"}}\n    green: {{server: green, url: \"http://{apps}/green\"}}\n    steps: [50, 100]\n  rollback:\n    auto_trigger:\n      - health_check_failures: 1\n    validation:\n      - verify_dependencies: true\n      - check_backwards_compatibility: {{repo: app}}\n",
        tap = tap.url(),
        shared = shared.display(),
        hooks = hooks.host(),
        apps = apps.host(),
        health = markers[0].display(),
        balancer = balancer.display(),
    );
    c.p.write("bagboy.yaml", &config);
    for (v, env) in [("v1.0.0", "blue"), ("v1.1.0", "blue"), ("v1.2.0", "green")] {
        let d = reg.push_image("acme/app", v);
        if env == "blue" {
            reg.put_tag("acme/app", "latest", &d);
        }
        tap.commit_file(
            FORMULA,
            &goreleaser_formula("myapp", v.trim_start_matches('v')),
            &format!("myapp {v}"),
        );
        tap.push();
        cargo_reg.publish("myapp", v.trim_start_matches('v'), &[]);
        let run = c.run(&[
            "record",
            "--version",
            v,
            "--commit",
            &commit,
            "--environment",
            env,
        ]);
        assert_eq!(run.code, Some(0), "record {v}: {}", run.show());
    }
    let _ = c.run(&["audit", "verify"]);
    for m in &markers {
        let _ = std::fs::remove_file(m);
    }
    let project = snapshot(c.p.path());
    let home_before = snapshot(home.path());
    let (shared_refs, tap_refs) = (refs(&shared), refs(&tap.root().join("homebrew-tap.git")));
    let hooks_before = hooks.requests().len();
    let writes = |r: &TestRegistry| {
        r.requests()
            .into_iter()
            .filter(|q| !matches!(q.method.as_str(), "GET" | "HEAD"))
            .count()
    };
    let reg_writes = writes(&reg);
    let cargo_writes = || {
        cargo_proxy
            .requests()
            .iter()
            .filter(|q| !matches!(q.method.as_str(), "GET" | "HEAD"))
            .count()
    };
    let cargo_writes_before = cargo_writes();

    let commands: [&[&str]; 12] = [
        &["check"],
        &["check", "--format", "json"],
        &["rollback", "--dry-run"],
        &["rollback", "--dry-run", "--format", "json"],
        &["rollback", "--dry-run", "--format", "markdown"],
        &[
            "rollback",
            "--dry-run",
            "--version",
            "v1.0.0",
            "--registry",
            "docker",
        ],
        &["promote", "--version", "v1.2.0", "--dry-run"],
        &["versions", "list"],
        &["versions", "list", "--format", "json"],
        &["versions", "compare", "v1.0.0", "v1.1.0"],
        &["versions", "prune", "--keep", "1", "--dry-run"],
        &["audit", "verify"],
    ];
    for args in commands {
        let run = c.run(args);
        // verify_dependencies cannot download the formula's GitHub URLs here: the rollback
        // previews are computed and refused (exit 2), which is what they should be.
        // `check` reports what it finds (the formula URLs above, say) with exit 2.
        let check_report = args[0] == "check" && run.code == Some(2) && !run.stdout.is_empty();
        let refused_preview = args[0] == "rollback"
            && run.code == Some(2)
            && run.stdout.contains("v1.0.0")
            && run.stdout.to_lowercase().contains("refus");
        assert!(
            run.code == Some(0) || refused_preview || check_report,
            "{args:?}: {}",
            run.show()
        );
        assert_eq!(
            snapshot(c.p.path()),
            project,
            "{args:?} wrote into the project"
        );
        assert_eq!(
            snapshot(home.path()),
            home_before,
            "{args:?} wrote into HOME"
        );
        for m in &markers {
            assert!(
                !m.exists(),
                "{args:?} ran a configured command ({})",
                m.display()
            );
        }
        assert_eq!(
            hooks.requests().len(),
            hooks_before,
            "{args:?} sent a webhook or metrics"
        );
        assert_eq!(writes(&reg), reg_writes, "{args:?} wrote to the registry");
        assert_eq!(
            cargo_writes(),
            cargo_writes_before,
            "{args:?} yanked or unyanked a crate"
        );
        assert_eq!(
            refs(&shared),
            shared_refs,
            "{args:?} pushed to the shared history"
        );
        assert_eq!(
            refs(&tap.root().join("homebrew-tap.git")),
            tap_refs,
            "{args:?} pushed to the tap"
        );
    }
    // The dry-runs computed their plans (the preview is the point).
    let run = c.run(&["rollback", "--dry-run", "--format", "json"]);
    let plan: Value =
        serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("{}", run.show()));
    assert_eq!(plan["target"]["version"], "v1.0.0", "{plan:#}");
    let cargo = plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["format"] == "cargo")
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert!(
        cargo["steps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["action"] == "yank"),
        "the cargo plan yanks (and the dry-run did not): {cargo:#}"
    );
    let promote = c.run(&["promote", "--version", "v1.2.0", "--dry-run"]);
    assert_eq!(promote.code, Some(0), "{}", promote.show());
    assert!(
        promote.stdout.contains("green 50%") && promote.stdout.contains("not run by a dry-run"),
        "{}",
        promote.show()
    );
}
