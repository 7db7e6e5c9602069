//! The audit trail, metrics and alerts, through the binary: the hash chain after real
//! rollbacks (one that succeeds, one that fails and is undone) and a prune; metrics read back
//! from a real Pushgateway (Debian `prometheus-pushgateway`) and from the textfile; webhook
//! bodies received by a local receiver for each format; a dead webhook that changes nothing.
//! (The Slack and PagerDuty receivers are local stand-ins: those services cannot run here.)

use crate::support;

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::{Project, Run};
use support::fake_server::{FakeResponse, FakeServer};
use support::proxy::{Fault, FaultProxy};
use support::{Auth, TestRegistry};

const PASSWORD: &str = "monitoring-S3cret-pw";
const TOKEN: &str = "ghp_MonitoringSentinelToken00000000042";
const HOOK_SECRET: &str = "T000/B000/XXXXsecretHookPath";

struct Fixture {
    _reg: TestRegistry,
    proxy: FaultProxy,
    p: Project,
    extra_env: Vec<(String, String)>,
}

impl Fixture {
    /// Three releases of one image behind a fault proxy, recorded; `monitoring` goes into
    /// bagboy.yaml as written.
    fn new(monitoring: &str) -> Fixture {
        let reg = TestRegistry::start(Auth::None);
        let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], reg.port())));
        let p = Project::new();
        std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}/acme/app\"\n    insecure: true\n{monitoring}",
                proxy.addr()
            ),
        );
        let f = Fixture {
            _reg: reg,
            proxy,
            p,
            extra_env: Vec::new(),
        };
        for v in ["v1.0.0", "v1.1.0", "v1.2.0"] {
            let d = f._reg.push_image("acme/app", v);
            f._reg.put_tag("acme/app", "latest", &d);
            let run = f.run(&["record", "--version", v]);
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        f
    }

    fn run(&self, args: &[&str]) -> Run {
        let p = self.p.path();
        let mut c = support::cli::isolated(p);
        c.args(args)
            .env("BAGBOY_ACTOR", "alice")
            // Secrets a runner holds: none may reach an audit line, a metric or a webhook.
            .env("BAGBOY_REGISTRY_USERNAME", "ci")
            .env("BAGBOY_REGISTRY_PASSWORD", PASSWORD)
            .env("BAGBOY_REGISTRY_HOST", "ghcr.io")
            .env("GITHUB_TOKEN", TOKEN)
            .env("PAGERDUTY_ROUTING_KEY", "pd-routing-key-0001");
        for (k, v) in &self.extra_env {
            c.env(k, v);
        }
        let out = c.output().expect("run bagboy");
        Run::of(out)
    }

    fn audit(&self) -> Vec<Value> {
        std::fs::read_to_string(self.p.path().join(".bagboy/audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect()
    }
}

fn no_secret(what: &str, text: &str) {
    for s in [PASSWORD, TOKEN, HOOK_SECRET, "pd-routing-key"] {
        if what.contains("pagerduty") && s == "pd-routing-key" {
            continue;
        }
        assert!(!text.contains(s), "{what} holds a secret: {text}");
    }
}

#[test]
fn the_audit_chain_covers_rollbacks_failures_and_prunes_and_catches_tampering() {
    let f = Fixture::new("");
    let run = f.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // A rollback whose tag PUT fails: undone, exit 1.
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    f.proxy.set_fault_when(move |s| {
        (s.method == "PUT" && flag.load(Ordering::SeqCst)).then_some(Fault::Status(500))
    });
    let run = f.run(&["rollback", "--version", "v1.0.0", "--yes"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    f.proxy.clear();
    let run = f.run(&["versions", "prune", "--keep", "3"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let lines = f.audit();
    let ops: Vec<(&str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["operation"].as_str().unwrap(),
                l["exit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("record", 0),
            ("record", 0),
            ("record", 0),
            ("rollback", 0),
            ("rollback", 1),
            ("prune", 0)
        ]
    );
    let ok = &lines[3];
    assert_eq!(ok["target"], "v1.1.0");
    assert_eq!(ok["current"], "v1.2.0");
    assert_eq!(ok["actor"], "alice");
    assert!(ok["plan_sha256"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(ok["steps"][0]["reference"], "latest");
    assert_eq!(lines[4]["outcome"], "failed_undone");
    assert_eq!(lines[4]["steps"][0]["ok"], false);
    // The history entry names its audit line.
    let history = f.p.history();
    let id = ok["id"].as_str().unwrap();
    assert!(
        history.contains(&format!("audit: \"{id}\"")) || history.contains(&format!("audit: {id}")),
        "{history}"
    );

    let run = f.run(&["audit", "verify"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = f.run(&["audit", "list", "--operation", "rollback"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 3, "{}", run.stdout);

    let path = f.p.path().join(".bagboy/audit.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let original: Vec<&str> = text.lines().collect();
    let check = |lines: Vec<String>, bad: usize| {
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let run = f.run(&["audit", "verify"]);
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("line {bad} ")),
            "{}",
            run.stderr
        );
    };
    let mut edited: Vec<String> = original.iter().map(|s| s.to_string()).collect();
    edited[4] = edited[4].replace("\"exit\":1", "\"exit\":0");
    check(edited, 5);
    let mut deleted: Vec<String> = original.iter().map(|s| s.to_string()).collect();
    deleted.remove(3);
    check(deleted, 4);
    let mut inserted: Vec<String> = original.iter().map(|s| s.to_string()).collect();
    inserted.insert(2, original[5].to_string());
    check(inserted, 3);
    no_secret("audit", &text);
}

struct Pushgateway {
    child: Child,
    port: u16,
}

impl Drop for Pushgateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pushgateway() -> Pushgateway {
    let bin = "/usr/bin/prometheus-pushgateway";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} missing: apt-get install -y prometheus-pushgateway"
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Dropping the guard kills and reaps it on every path, the panic below included.
    let gw = Pushgateway { child, port };
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return gw;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the Pushgateway did not start");
}

fn scrape(port: u16) -> String {
    reqwest::blocking::get(format!("http://127.0.0.1:{port}/metrics"))
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn metrics_reach_a_real_pushgateway_and_the_textfile() {
    let gw = pushgateway();
    let f = Fixture::new(&format!(
        "monitoring:\n  pushgateway: \"http://127.0.0.1:{}\"\n  textfile: metrics/bagboy.prom\n",
        gw.port
    ));
    let run = f.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let metrics = scrape(gw.port);
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains("project=\"myapp\""))
            .unwrap_or_else(|| panic!("{name} not in:\n{metrics}"))
            .to_string()
    };
    assert!(line("bagboy_rollback_total{").ends_with(" 1"), "{metrics}");
    assert!(line("bagboy_rollback_failures_total{").ends_with(" 0"));
    assert!(line("bagboy_rollback_steps{").contains("outcome=\"applied\""));
    assert!(metrics.contains("bagboy_rollback_duration_seconds{"));
    let textfile = std::fs::read_to_string(f.p.path().join("metrics/bagboy.prom")).unwrap();
    assert!(
        textfile.contains("bagboy_rollback_total{project=\"myapp\"} 1"),
        "{textfile}"
    );
    assert!(textfile.contains("# TYPE bagboy_rollback_failures_total counter"));

    // A failing rollback counts as a failure; the totals keep counting.
    f.proxy
        .set_fault_when(|s| (s.method == "PUT").then_some(Fault::Status(500)));
    let run = f.run(&["rollback", "--version", "v1.0.0", "--yes"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let metrics = scrape(gw.port);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bagboy_rollback_total{") && l.ends_with(" 2")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("bagboy_rollback_failures_total{") && l.ends_with(" 1")),
        "{metrics}"
    );
    no_secret("metrics", &metrics);
    no_secret(
        "textfile",
        &std::fs::read_to_string(f.p.path().join("metrics/bagboy.prom")).unwrap(),
    );
}

#[test]
fn webhooks_are_sent_in_each_format_and_a_dead_one_changes_nothing() {
    let receiver = FakeServer::start(|_, _| FakeResponse::new(200).body("ok"));
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://{}", receiver.host());
    let f = Fixture::new(&format!(
        "monitoring:\n  webhooks:\n    - url: \"{base}/slack/{HOOK_SECRET}\"\n      format: slack\n      events: [initiated, completed, failed]\n    - url: \"{base}/pagerduty\"\n      format: pagerduty\n    - url: \"{base}/json\"\n      format: json\n      events: [completed, failed]\n    - url: \"http://127.0.0.1:{dead}/gone\"\n      format: json\n"
    ));
    let run = f.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(
        run.code,
        Some(0),
        "a dead webhook does not fail the rollback: {}",
        run.stderr
    );
    assert!(run.stderr.contains("webhook failed"), "{}", run.stderr);
    assert!(!run.stderr.contains(HOOK_SECRET), "{}", run.stderr);
    let got: Vec<(String, Value)> = receiver
        .requests()
        .into_iter()
        .map(|r| {
            (
                r.target.clone(),
                serde_json::from_slice(&r.body).expect("JSON body"),
            )
        })
        .collect();
    let slack: Vec<&Value> = got
        .iter()
        .filter(|(t, _)| t.starts_with("/slack/"))
        .map(|(_, b)| b)
        .collect();
    assert_eq!(slack.len(), 2, "initiated and completed: {got:?}");
    assert!(
        slack[0]["text"]
            .as_str()
            .unwrap()
            .contains("rolling back v1.2.0 → v1.1.0"),
        "{:?}",
        slack[0]
    );
    assert_eq!(slack[1]["blocks"][0]["type"], "section");
    let json: Vec<&Value> = got
        .iter()
        .filter(|(t, _)| t == "/json")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["event"], "completed");
    assert_eq!(json[0]["target"], "v1.1.0");
    let pd: Vec<&Value> = got
        .iter()
        .filter(|(t, _)| t == "/pagerduty")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(pd.len(), 1, "resolve on completed only: {got:?}");
    assert_eq!(pd[0]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], "bagboy:myapp:rollback");

    // The audit says what was sent, and that the dead one failed; no URL in it.
    let audit = f.audit();
    let hooks = audit.last().unwrap()["webhooks"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        hooks
            .iter()
            .any(|h| h["ok"] == false && h["host"] == "127.0.0.1"),
        "{hooks:?}"
    );
    let text = std::fs::read_to_string(f.p.path().join(".bagboy/audit.jsonl")).unwrap();
    no_secret("audit", &text);

    // A failed rollback pages (trigger) with the same dedup key.
    f.proxy
        .set_fault_when(|s| (s.method == "PUT").then_some(Fault::Status(500)));
    let run = f.run(&["rollback", "--version", "v1.0.0", "--yes"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let last_pd: Value = receiver
        .requests()
        .into_iter()
        .filter(|r| r.target == "/pagerduty")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .next_back()
        .unwrap();
    assert_eq!(last_pd["event_action"], "trigger");
    assert_eq!(last_pd["dedup_key"], "bagboy:myapp:rollback");
    for r in receiver.requests() {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        no_secret(
            if r.target == "/pagerduty" {
                "pagerduty body"
            } else {
                "webhook body"
            },
            &body,
        );
    }
    // Dry-runs send nothing and write no audit line.
    let before = (receiver.requests().len(), f.audit().len());
    let run = f.run(&["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!((receiver.requests().len(), f.audit().len()), before);
}

#[test]
fn every_json_log_line_names_the_operation() {
    let f = Fixture::new("");
    let run = f.run(&[
        "-vv",
        "--log-format",
        "json",
        "rollback",
        "--version",
        "v1.1.0",
        "--yes",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let id = f.audit().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.starts_with('{')).collect();
    assert!(!lines.is_empty(), "{}", run.stderr);
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["spans"][0]["op"].as_str(), Some(id.as_str()), "{l}");
        no_secret("log line", l);
    }
    assert!(
        run.stderr.contains("\"name\":\"step\""),
        "a span per step: {}",
        run.stderr
    );
}
