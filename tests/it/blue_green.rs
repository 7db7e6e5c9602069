//! Blue-green with a real HAProxy on loopback in front of two app servers that answer with
//! their version: `promote` moves traffic step by step (200 requests then all reach the new
//! environment), a health failure at 50% puts the weights back (exit 1), and `rollback`
//! switches back in one step before the registry steps. Dry-runs change no weight. The same
//! with the `command` balancer (a script driving the same HAProxy).

use crate::support;

use std::path::Path;

use bagboy::registry::oci::OciLayout;
use support::cli::{isolated, Project, Run};
use support::haproxy::{App, TestHaproxy};

struct World {
    p: Project,
    hp: TestHaproxy,
    blue: App,
    green: App,
    layout: OciLayout,
    digests: std::collections::BTreeMap<&'static str, String>,
}

fn run(dir: &Path, args: &[&str]) -> Run {
    Run::of(isolated(dir).args(args).output().unwrap())
}

/// blue runs v1.2.0 (live, recorded deployed), green runs v1.3.0 (recorded staged); the OCI
/// layout's `latest` is on v1.2.0.
fn world(balancer: impl Fn(&TestHaproxy, &Path) -> String) -> World {
    let blue = App::start("v1.2.0");
    let green = App::start("v1.3.0");
    let hp = TestHaproxy::start(&blue, &green);
    let p = Project::new();
    let layout = OciLayout::init(p.path().join("oci")).unwrap();
    let traffic = balancer(&hp, p.path());
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: oci-layout\n    registry: oci\ndeployment:\n  strategy: blue-green\n  traffic:\n{traffic}    blue:  {{server: blue,  url: \"{}\"}}\n    green: {{server: green, url: \"{}\"}}\n    steps: [25, 50, 75, 100]\n    interval: \"50ms\"\n",
            blue.health_url(),
            green.health_url()
        ),
    );
    let mut digests = std::collections::BTreeMap::new();
    for (v, env) in [("1.2.0", "blue"), ("1.3.0", "green")] {
        let m = layout
            .add_image(
                &format!("v{v}"),
                format!("{{\"version\":\"{v}\"}}").as_bytes(),
                format!("layer {v}").as_bytes(),
            )
            .unwrap();
        if v == "1.2.0" {
            layout.set_tag("latest", &m.descriptor()).unwrap();
            digests.insert("v1.2.0", m.digest.to_string());
        } else {
            digests.insert("v1.3.0", m.digest.to_string());
        }
        let r = run(
            p.path(),
            &[
                "record",
                "--version",
                &format!("v{v}"),
                "--environment",
                env,
            ],
        );
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    World {
        p,
        hp,
        blue,
        green,
        layout,
        digests,
    }
}

fn haproxy(hp: &TestHaproxy, _: &Path) -> String {
    format!("    haproxy: \"{}\"\n    backend: app\n", hp.api_address())
}

/// A script in front of the same HAProxy: `get` prints the weights, `set C N` sets one.
fn script(hp: &TestHaproxy, dir: &Path) -> String {
    let path = dir.join("switch.sh");
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\nset -euo pipefail\napi() {{ exec 3<>/dev/tcp/127.0.0.1/{}; echo \"$1\" >&3; cat <&3; exec 3>&-; }}\n\
             case \"$1\" in\n  get) for c in blue green; do echo \"$c $(api \"get weight app/$c\" | cut -d' ' -f1 | head -1)\"; done ;;\n  \
             set) out=$(api \"set server app/$2 weight $3\" | tr -d '\\n'); [ -z \"$out\" ] || {{ echo \"$out\" >&2; exit 1; }} ;;\n  \
             *) exit 2 ;;\nesac\n",
            hp.api
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("    command: \"{}\"\n", path.display())
}

fn latest(w: &World) -> Option<String> {
    w.layout
        .resolve("latest")
        .unwrap()
        .map(|d| d.digest.to_string())
}

fn promote_then_instant_rollback(w: World, dry_runs_observe: bool) {
    assert_eq!(w.hp.weights(), (100, 0));
    let h = w.p.history();
    assert!(h.contains("status: staged"), "{h}");

    let list = run(w.p.path(), &["versions", "list"]);
    assert_eq!(list.code, Some(0), "{}", list.show());
    assert!(list.stdout.contains("ENV"), "{}", list.show());
    if dry_runs_observe {
        assert!(
            list.stdout.contains("blue live (100%, runs v1.2.0)")
                && list.stdout.contains("green idle (0%, runs v1.3.0)"),
            "{}",
            list.show()
        );
        // A dry-run shows every step with its weights and changes none.
        let dry = run(w.p.path(), &["promote", "--version", "v1.3.0", "--dry-run"]);
        assert_eq!(dry.code, Some(0), "{}", dry.show());
        for step in ["green 25%", "green 50%", "green 75%", "green 100%"] {
            assert!(dry.stdout.contains(step), "{}", dry.show());
        }
        assert!(
            dry.stdout.contains("blue 75% / green 25%") && dry.stdout.contains("latest"),
            "{}",
            dry.show()
        );
        assert_eq!(w.hp.weights(), (100, 0));
    }

    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("traffic to green: 25%"), "{}", r.show());
    assert!(r.stdout.contains("promoted from v1.2.0"), "{}", r.show());
    assert_eq!(w.hp.weights(), (0, 100));
    let spread = w.hp.spread(200);
    assert_eq!(spread.get("v1.3.0"), Some(&200), "{spread:?}");
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.3.0"].as_str()));
    let h = w.p.history();
    assert!(h.contains("promoted_from: \"v1.2.0\""), "{h}");
    let list = run(w.p.path(), &["versions", "list", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["current"], "v1.3.0");
    assert_eq!(doc["deployments"][0]["environment"], "green");

    // The rollback: blue still runs v1.2.0 and is healthy, so traffic switches back first.
    if dry_runs_observe {
        let dry = run(
            w.p.path(),
            &["rollback", "--version", "v1.2.0", "--dry-run"],
        );
        assert_eq!(dry.code, Some(0), "{}", dry.show());
        let sw = dry
            .stdout
            .find("traffic → blue")
            .unwrap_or_else(|| panic!("{}", dry.show()));
        let tag = dry
            .stdout
            .find("latest")
            .unwrap_or_else(|| panic!("{}", dry.show()));
        assert!(sw < tag, "the switch comes first: {}", dry.show());
        assert_eq!(w.hp.weights(), (0, 100));
    }
    let r = run(w.p.path(), &["rollback", "--version", "v1.2.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("traffic → blue") && r.stdout.contains("switched"),
        "the switch and its time are reported: {}",
        r.show()
    );
    assert_eq!(w.hp.weights(), (100, 0));
    let spread = w.hp.spread(200);
    assert_eq!(spread.get("v1.2.0"), Some(&200), "{spread:?}");
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.2.0"].as_str()));
    // The balancer is not a registry of a release: no entry records it, and the next rollback
    // (forward again, to v1.3.0 still running on green) plans and runs.
    assert!(
        !w.p.history().contains("format: traffic"),
        "{}",
        w.p.history()
    );
    let r = run(w.p.path(), &["rollback", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(w.hp.weights(), (0, 100));
    drop((w.blue, w.green));
}

#[test]
fn haproxy_promote_moves_all_traffic_and_rollback_switches_back_in_one_step() {
    promote_then_instant_rollback(world(haproxy), true);
}

#[test]
fn command_balancer_promote_and_rollback_have_the_same_outcomes() {
    promote_then_instant_rollback(world(script), false);
}

#[test]
fn haproxy_health_failure_at_50_percent_restores_the_weights_and_exits_1() {
    let w = world(haproxy);
    // Health requests to green: 1 before promotion, 1 after 25%, the 3rd after 50% fails.
    w.green.fail_health_from(3);
    let before = w.p.history();
    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains("at 50% on green")
            && r.stderr.contains("traffic is back at blue 100% / green 0%"),
        "{}",
        r.show()
    );
    assert_eq!(w.hp.weights(), (100, 0));
    assert_eq!(w.hp.spread(200).get("v1.2.0"), Some(&200));
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.2.0"].as_str()));
    // Recorded on the staged entry: the failing samples and why.
    let h = w.p.history();
    assert_ne!(h, before);
    assert!(
        h.contains("status: failing") && h.contains("promotion of v1.3.0 stopped"),
        "{h}"
    );
    assert!(
        h.contains("status: staged"),
        "still staged, still not live: {h}"
    );

    // Unhealthy before any traffic moved: exit 1, nothing changed.
    w.green.fail_health_from(1);
    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(r.stderr.contains("no traffic was moved"), "{}", r.show());
    assert_eq!(w.hp.weights(), (100, 0));
}

#[test]
fn haproxy_rollback_falls_back_to_registries_only_when_the_old_environment_is_unhealthy() {
    let w = world(haproxy);
    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    w.blue.fail_health_from(1);
    let r = run(w.p.path(), &["rollback", "--version", "v1.2.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("traffic not switched") && r.stdout.contains("not healthy"),
        "{}",
        r.show()
    );
    assert_eq!(w.hp.weights(), (0, 100), "traffic left on green");
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.2.0"].as_str()));
    // Promote refuses what is not staged, and a release on the live environment.
    let r = run(w.p.path(), &["promote", "--version", "v1.2.0", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
}

/// A registry step that fails after the instant switch: the switch is undone like any step
/// (traffic back on green), exit 1.
#[test]
fn haproxy_switch_is_compensated_when_a_registry_step_fails() {
    use support::tap::{goreleaser_formula, TestTap};
    let blue = App::start("v1.2.0");
    let green = App::start("v1.3.0");
    let hp = TestHaproxy::start(&blue, &green);
    let tap = TestTap::new();
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\ndeployment:\n  strategy: blue-green\n  traffic:\n    haproxy: \"{}\"\n    backend: app\n    blue:  {{server: blue,  url: \"{}\"}}\n    green: {{server: green, url: \"{}\"}}\n    steps: [50, 100]\n    interval: \"10ms\"\n",
            tap.url(),
            hp.api_address(),
            blue.health_url(),
            green.health_url()
        ),
    );
    for (v, env) in [("1.2.0", "blue"), ("1.3.0", "green")] {
        tap.commit_file(
            "Formula/myapp.rb",
            &goreleaser_formula("myapp", v),
            &format!("myapp {v}"),
        );
        tap.push();
        let r = run(
            p.path(),
            &[
                "record",
                "--version",
                &format!("v{v}"),
                "--environment",
                env,
            ],
        );
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    let r = run(p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(hp.weights(), (0, 100));
    // The tap refuses every push from now on.
    let hook = tap.root().join("remote.git/hooks/pre-receive");
    let hook = if hook.parent().unwrap().exists() {
        hook
    } else {
        std::fs::read_dir(tap.root())
            .unwrap()
            .map(|e| e.unwrap().path().join("hooks/pre-receive"))
            .find(|h| h.parent().unwrap().exists())
            .expect("the tap's bare repository")
    };
    std::fs::write(&hook, "#!/bin/sh\necho 'protected branch' >&2\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let head = tap.head();
    let r = run(p.path(), &["rollback", "--version", "v1.2.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert_eq!(
        hp.weights(),
        (0, 100),
        "the switch was undone: {}",
        r.show()
    );
    assert_eq!(hp.spread(50).get("v1.3.0"), Some(&50));
    assert_eq!(tap.head(), head);
    assert!(p.history().contains("rollback_failed"));
}

/// `deployment.traffic` mistakes are named with file, line and column; a backend name that
/// would smuggle a second runtime API command is refused before anything connects.
#[test]
fn traffic_config_errors_name_file_line_column() {
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        "name: myapp\ndeployment:\n  strategy: blue-green\n  traffic:\n    haproxy: \"127.0.0.1:1\"\n    backend: \"app\\nset server app/blue weight 0\"\n    blue: {server: blue}\n    green: {server: \"green x\"}\n    steps: [50, 25]\n",
    );
    let r = run(p.path(), &["versions", "list"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    for want in [
        "bagboy.yaml:6:14: `traffic.backend` must be an HAProxy backend name",
        "bagboy.yaml:8:12: `green.server` must be a server name",
        "bagboy.yaml:9:17: `steps` are rising percentages",
        "bagboy.yaml:9:12: `steps` must end at 100",
    ] {
        assert!(r.stderr.contains(want), "{want}: {}", r.show());
    }
    p.write(
        "bagboy.yaml",
        "name: myapp\ndeployment:\n  strategy: blue-green\n  traffic:\n    haproxy: \"127.0.0.1:1\"\n    command: \"./x\"\n    blue: {server: blue}\n    green: {server: green}\n",
    );
    let r = run(p.path(), &["versions", "list"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("not both"), "{}", r.show());
}

/// `promote` killed after its first traffic step, and the weights left split.
fn killed_mid_shift(w: &World) {
    let cfg = std::fs::read_to_string(w.p.path().join("bagboy.yaml")).unwrap();
    w.p.write(
        "bagboy.yaml",
        &cfg.replace("interval: \"50ms\"", "interval: \"5s\""),
    );
    let mut child = isolated(w.p.path())
        .args(["promote", "--version", "v1.3.0", "--yes"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while w.hp.weights() != (75, 25) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the first shift never landed: {:?}",
            w.hp.weights()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(w.hp.weights(), (75, 25), "killed half-way: traffic split");
    w.p.write("bagboy.yaml", &cfg);
}

#[test]
fn a_promotion_killed_mid_shift_is_undone_or_finished_by_recover() {
    let w = world(haproxy);
    killed_mid_shift(&w);
    // Any other writing command refuses until the promotion is resolved.
    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("bagboy recover"), "{}", r.show());
    // recover --undo: the weights back where they were, the registries untouched.
    let r = run(w.p.path(), &["recover", "--undo", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("green 25%"),
        "the journal named the shift: {}",
        r.show()
    );
    assert_eq!(w.hp.weights(), (100, 0));
    assert_eq!(w.hp.spread(100).get("v1.2.0"), Some(&100));
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.2.0"].as_str()));
    let h = w.p.history();
    assert!(
        h.contains("status: staged") && h.contains("status: failed"),
        "{h}"
    );

    // Killed again; this time recover finishes it: all traffic and `latest` on v1.3.0.
    killed_mid_shift(&w);
    let r = run(w.p.path(), &["recover", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(w.hp.weights(), (0, 100));
    assert_eq!(w.hp.spread(100).get("v1.3.0"), Some(&100));
    assert_eq!(latest(&w).as_deref(), Some(w.digests["v1.3.0"].as_str()));
    let list = run(w.p.path(), &["versions", "list", "--format", "json"]);
    assert_eq!(list.code, Some(0), "{}", list.show());
    let doc: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let current: Vec<&serde_json::Value> = doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["status"] == "deployed")
        .collect();
    assert_eq!(current.len(), 1, "{doc:#}");
    assert_eq!(current[0]["version"], "v1.3.0");
    drop((w.blue, w.green));
}

/// Traffic through HAProxy and the registry's `latest` name the same release (or the test
/// says which disagree).
fn agree(w: &World, version: &str, what: &str) {
    let spread = w.hp.spread(50);
    assert_eq!(
        spread.get(version),
        Some(&50),
        "{what}: traffic {spread:?}, expected all on {version}"
    );
    assert_eq!(
        latest(w).as_deref(),
        Some(w.digests[version].as_str()),
        "{what}: `latest` is not {version}"
    );
}

#[test]
fn blue_green_as_a_sequence_traffic_and_registries_never_disagree() {
    let mut w = world(haproxy);
    agree(&w, "v1.2.0", "recorded");
    let r = run(w.p.path(), &["promote", "--version", "v1.3.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    agree(&w, "v1.3.0", "promote v1.3.0");
    let r = run(w.p.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    agree(&w, "v1.2.0", "rollback");
    // Again: nothing older is good, so it refuses; it never rolls forward onto v1.3.0.
    let dry = run(w.p.path(), &["rollback", "--dry-run"]);
    assert!(!dry.stdout.contains("→ v1.3.0"), "{}", dry.show());
    let r = run(w.p.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("no earlier good version"), "{}", r.show());
    agree(&w, "v1.2.0", "second rollback");
    // The next release goes to green (idle again) and is promoted.
    *w.green.version.lock().unwrap() = "v1.4.0".into();
    let m = w
        .layout
        .add_image("v1.4.0", b"{\"version\":\"1.4.0\"}", b"layer 1.4.0")
        .unwrap();
    w.digests.insert("v1.4.0", m.digest.to_string());
    let r = run(
        w.p.path(),
        &["record", "--version", "v1.4.0", "--environment", "green"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("staged"), "{}", r.show());
    agree(&w, "v1.2.0", "record v1.4.0 on green");
    let r = run(w.p.path(), &["promote", "--version", "v1.4.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    agree(&w, "v1.4.0", "promote v1.4.0");
    // And rolled back once more: to v1.2.0 on blue, in one switch.
    let r = run(w.p.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    agree(&w, "v1.2.0", "rollback from v1.4.0");
    drop((w.blue, w.green));
}
