//! `format: cargo` against a real cargo registry (kellnr): publish a crate family with the real
//! `cargo publish`, record, roll back through the binary, and check the effect where cargo users
//! see it: the sparse index and `cargo generate-lockfile` in a fresh project.

use crate::support;

use std::path::Path;

use bagboy::registry::oci::OciLayout;
use serde_json::Value;
use support::cargo_registry::{behind_proxy, locked, resolve, TestCargoRegistry};
use support::cli::{Project, Run};
use support::proxy::Fault;

const CORE: &str = "acme-core";
const CLI: &str = "acme-cli";

fn run(p: &Project, home: &Path, args: &[&str]) -> Run {
    let out = support::cli::isolated(p.path())
        .args(args)
        .env("CARGO_HOME", home)
        .env_remove("CARGO_REGISTRY_TOKEN")
        .env_remove("CARGO_REGISTRIES_KELLNR_TOKEN")
        .output()
        .unwrap();
    Run::of(out)
}

/// `acme-core` and `acme-cli` (which depends on `acme-core = "1"`) at `v`.
fn publish_family(reg: &TestCargoRegistry, v: &str) {
    reg.publish(CORE, v, &[]);
    reg.publish(CLI, v, &[(CORE, "1")]);
}

/// A project with an OCI layout and the crate family on `index` (the registry, or a proxy in
/// front of it with `api`), three releases recorded; v1.2.0 is current.
fn project(reg: &TestCargoRegistry, index: &str) -> (Project, std::path::PathBuf, OciLayout) {
    let p = Project::new();
    let layout = OciLayout::init(p.path().join("oci")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: acme\nregistries:\n  - format: oci-layout\n    registry: oci\n  - format: cargo\n    registry: \"{index}\"\n    crates: [{CORE}, {CLI}]\nrollback:\n  concurrency: 1\n"
        ),
    );
    let home = reg.cargo_home_for(p.path(), Some(&reg.token), index);
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        let m = layout
            .add_image(
                &format!("v{v}"),
                format!("{{\"version\":\"{v}\"}}").as_bytes(),
                format!("layer {v}").as_bytes(),
            )
            .unwrap();
        layout.set_tag("latest", &m.descriptor()).unwrap();
        publish_family(reg, v);
        let r = run(&p, &home, &["record", "--version", &format!("v{v}")]);
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    (p, home, layout)
}

fn latest(layout: &OciLayout) -> String {
    layout
        .resolve("latest")
        .unwrap()
        .unwrap()
        .digest
        .to_string()
}

fn version_of(locked: &[(String, String)], name: &str) -> String {
    locked
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("{name} not in {locked:?}"))
}

#[test]
fn a_crate_family_is_yanked_and_fresh_resolutions_get_the_target() {
    let reg = TestCargoRegistry::start();
    let (p, home, layout) = project(&reg, &reg.index());
    assert!(p.history().contains("cksum: \"sha256:"), "{}", p.history());
    let consumer = tempfile::tempdir().unwrap();
    let before = resolve(&reg, consumer.path(), &[(CLI, "1")]).unwrap();
    assert_eq!(version_of(&before, CLI), "1.2.0");
    assert_eq!(version_of(&before, CORE), "1.2.0");

    // The dry-run reads the index, shows the yanks and who they reach, and changes nothing.
    let dry = run(
        &p,
        &home,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let cargo = plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["format"] == "cargo")
        .unwrap();
    let yanks: Vec<&str> = cargo["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "yank")
        .map(|s| s["reference"].as_str().unwrap())
        .collect();
    assert_eq!(yanks, [format!("{CORE}@1.2.0"), format!("{CLI}@1.2.0")]);
    let notes = cargo["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "one note for both crates: {notes:?}");
    assert!(
        notes[0].as_str().unwrap().contains("get 1.1.0"),
        "{notes:?}"
    );
    assert!(!reg.yanked(CORE, "1.2.0") && !reg.yanked(CLI, "1.2.0"));

    let r = run(&p, &home, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(!r.stdout.contains(&reg.token) && !r.stderr.contains(&reg.token));
    assert!(reg.yanked(CORE, "1.2.0") && reg.yanked(CLI, "1.2.0"));
    assert!(!reg.yanked(CORE, "1.1.0") && !reg.yanked(CORE, "1.0.0"));
    assert_eq!(
        latest(&layout),
        layout
            .resolve("v1.1.0")
            .unwrap()
            .unwrap()
            .digest
            .to_string()
    );

    // What cargo users see: a fresh resolution gets 1.1.0 of both; a lockfile made before
    // keeps 1.2.0.
    let after = resolve(&reg, consumer.path(), &[(CLI, "1")]).unwrap();
    assert_eq!(version_of(&after, CLI), "1.1.0", "{after:?}");
    assert_eq!(version_of(&after, CORE), "1.1.0", "{after:?}");
    let old = consumer
        .path()
        .read_dir()
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|d| version_of(&locked(d), CLI) == "1.2.0")
        .expect("the consumer resolved before the rollback");
    let home_old = reg.cargo_home(&old, None);
    let fetch = reg.cargo(&home_old, &old).arg("fetch").output().unwrap();
    assert!(
        fetch.status.success(),
        "a locked yanked version still builds: {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    assert_eq!(version_of(&locked(&old), CLI), "1.2.0");
    // ... until `cargo update`, which moves it to the target, as the plan's note says.
    let update = reg.cargo(&home_old, &old).arg("update").output().unwrap();
    assert!(update.status.success(), "{update:?}");
    assert_eq!(version_of(&locked(&old), CLI), "1.1.0");
    let note = notes[0].as_str().unwrap();
    assert!(
        note.contains(
            "keeps building with it, without a warning, until `cargo update` moves it to 1.1.0"
        ) && note.contains("`cargo install <crate>@1.2.0` fails"),
        "{note}"
    );
    // `cargo install` of the yanked version fails.
    let install = reg
        .cargo(&home_old, &old)
        .args([
            "install",
            "--registry",
            "kellnr",
            &format!("{CLI}@1.2.0"),
            "--root",
        ])
        .arg(consumer.path().join("installed"))
        .output()
        .unwrap();
    assert!(!install.status.success());
    assert!(
        String::from_utf8_lossy(&install.stderr).contains("yanked"),
        "{}",
        String::from_utf8_lossy(&install.stderr)
    );

    // Again: nothing to do.
    let again = run(&p, &home, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(again.code, Some(0), "{}", again.show());
    assert!(again.stdout.contains("already current"), "{}", again.show());

    // Rolling forward to 1.2.0 unyanks it (a yanked target is unyanked first).
    let fwd = run(
        &p,
        &home,
        &["rollback", "--version", "v1.2.0", "--yes", "--force"],
    );
    assert_eq!(fwd.code, Some(0), "{}", fwd.show());
    assert!(!reg.yanked(CORE, "1.2.0") && !reg.yanked(CLI, "1.2.0"));
    let fwd_lock = resolve(&reg, consumer.path(), &[(CLI, "1")]).unwrap();
    assert_eq!(version_of(&fwd_lock, CLI), "1.2.0");

    // Rolling back to 1.0.0 yanks every recorded version above it, 1.1.0 and 1.2.0.
    let two = run(
        &p,
        &home,
        &["rollback", "--version", "v1.0.0", "--yes", "--force"],
    );
    assert_eq!(two.code, Some(0), "{}", two.show());
    for v in ["1.1.0", "1.2.0"] {
        assert!(reg.yanked(CORE, v) && reg.yanked(CLI, v), "{v}");
    }
    let lock = resolve(&reg, consumer.path(), &[(CLI, "1")]).unwrap();
    assert_eq!(version_of(&lock, CLI), "1.0.0");

    // versions list shows what was recorded per crate.
    let list = run(&p, &home, &["versions", "list"]);
    assert_eq!(list.code, Some(0), "{}", list.show());
    assert!(list.stdout.contains("cargo sparse+http"), "{}", list.stdout);
}

#[test]
fn the_second_crates_yank_fails_and_every_registry_is_put_back() {
    let (reg, proxy) = behind_proxy();
    let index = format!("sparse+http://{}/api/v1/crates/", proxy.addr());
    let (p, home, layout) = project(&reg, &index);
    let before = latest(&layout);
    proxy.set_fault_when(|s| {
        (s.method == "DELETE" && s.path.contains(CLI)).then_some(Fault::Status(500))
    });
    let r = run(&p, &home, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stderr.contains(CLI),
        "the failure names the crate: {}",
        r.show()
    );
    // The first crate's yank landed and was undone; the layout's tag is back.
    assert!(
        proxy
            .requests()
            .iter()
            .any(|s| s.method == "DELETE" && s.path.contains(&format!("{CORE}/1.2.0/yank"))),
        "the first crate was yanked"
    );
    assert!(!reg.yanked(CORE, "1.2.0") && !reg.yanked(CLI, "1.2.0"));
    assert_eq!(latest(&layout), before);
    let consumer = tempfile::tempdir().unwrap();
    let lock = resolve(&reg, consumer.path(), &[(CLI, "1")]).unwrap();
    assert_eq!(version_of(&lock, CLI), "1.2.0");
    assert_eq!(version_of(&lock, CORE), "1.2.0");
    assert!(p.history().contains("rollback_failed"), "{}", p.history());
}

#[test]
fn a_token_that_may_not_yank_stops_before_anything_changes() {
    let reg = TestCargoRegistry::start();
    let (p, home, layout) = project(&reg, &reg.index());
    let before = latest(&layout);
    // Another user's token: it reads and publishes, but owns none of the family.
    let theirs = reg.user_token("mallory");
    assert_eq!(reg.cargo_home(p.path(), Some(&theirs)), home);
    let r = run(&p, &home, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("may not yank")
            && r.stderr.contains("credentials.toml [registries.kellnr]"),
        "names the problem and where the token came from: {}",
        r.show()
    );
    assert!(!r.stderr.contains(&theirs) && !r.stdout.contains(&theirs));
    assert_eq!(latest(&layout), before, "nothing changed anywhere");
    assert!(!reg.yanked(CORE, "1.2.0") && !reg.yanked(CLI, "1.2.0"));

    // No token at all: the dry-run says so, the rollback stops before any change.
    let bare = reg.cargo_home(p.path(), None);
    let dry = run(&p, &bare, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    assert!(
        dry.stdout.contains("no token found") || dry.stderr.contains("no token found"),
        "{}",
        dry.show()
    );
    let r = run(&p, &bare, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("CARGO_REGISTRIES_KELLNR_TOKEN"),
        "says where a token goes: {}",
        r.show()
    );
    assert_eq!(latest(&layout), before);

    // The environment variable cargo reads works the same as the file.
    let r = support::cli::isolated(p.path())
        .args(["rollback", "--version", "v1.1.0", "--yes"])
        .env("CARGO_HOME", &bare)
        .env("CARGO_REGISTRIES_KELLNR_TOKEN", &reg.token)
        .output()
        .unwrap();
    let r = Run::of(r);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(reg.yanked(CORE, "1.2.0") && reg.yanked(CLI, "1.2.0"));
}

#[test]
fn recover_vets_the_journal_and_touches_only_recorded_versions() {
    let (reg, proxy) = behind_proxy();
    let index = format!("sparse+http://{}/api/v1/crates/", proxy.addr());
    let (p, home, _layout) = project(&reg, &index);
    // A version nobody recorded.
    reg.publish(CORE, "1.2.1", &[]);
    // Every yank or unyank after the first yank fails: the rollback's undo cannot run.
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s2 = seen.clone();
    proxy.set_fault_when(move |s| {
        let write = s.method == "DELETE" || (s.method == "PUT" && s.path.ends_with("/unyank"));
        if !write {
            return None;
        }
        // The first two writes are the rights checks (no-op unyanks), the third the first yank.
        (s2.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 3).then_some(Fault::Status(503))
    });
    let r = run(
        &p,
        &home,
        &["rollback", "--version", "v1.1.0", "--yes", "--force"],
    );
    assert_eq!(r.code, Some(3), "{}", r.show());
    assert!(
        reg.yanked(CORE, "1.2.0"),
        "the first yank landed and stayed"
    );
    proxy.clear();

    let jdir = p.path().join(".bagboy/journal");
    let journal = std::fs::read_dir(&jdir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a journal");
    let original = std::fs::read_to_string(&journal).unwrap();
    let forged = original.replace(&format!("{CORE}@1.2.0"), &format!("{CORE}@1.2.1"));
    assert_ne!(forged, original);
    std::fs::write(&journal, &forged).unwrap();
    let refused = run(&p, &home, &["recover", "--yes"]);
    assert_eq!(refused.code, Some(2), "{}", refused.show());
    assert!(
        refused.stderr.contains(&format!("{CORE}@1.2.1")),
        "{}",
        refused.show()
    );
    assert!(!reg.yanked(CORE, "1.2.1"), "nothing was done");
    // A recorded version, but the target itself: a rollback to 1.1.0 never yanks it.
    let forged = original.replace(&format!("{CLI}@1.2.0"), &format!("{CLI}@1.1.0"));
    assert_ne!(forged, original);
    std::fs::write(&journal, &forged).unwrap();
    let refused = run(&p, &home, &["recover", "--yes"]);
    assert_eq!(refused.code, Some(2), "{}", refused.show());
    assert!(
        refused.stderr.contains("never yanks acme-cli@1.1.0"),
        "{}",
        refused.show()
    );
    assert!(!reg.yanked(CLI, "1.1.0"), "nothing was done");

    std::fs::write(&journal, &original).unwrap();
    let ok = run(&p, &home, &["recover", "--yes"]);
    assert_eq!(ok.code, Some(0), "{}", ok.show());
    assert!(!reg.yanked(CORE, "1.2.0") && !reg.yanked(CLI, "1.2.0"));
    assert!(!reg.yanked(CORE, "1.2.1"));
}

/// An index that answers whatever it likes: every byte is input.
fn hostile_index(file: &'static [u8], auth_required: bool) -> support::fake_server::FakeServer {
    support::fake_server::FakeServer::start(move |req, _| {
        use support::fake_server::FakeResponse;
        if req.target.ends_with("/config.json") {
            let api = format!("http://{}", req.header("host").unwrap_or_default());
            FakeResponse::new(200).body(
                serde_json::json!({"dl": format!("{api}/dl"), "api": api, "auth-required": auth_required})
                    .to_string(),
            )
        } else if req.target.contains("/ac/me/") {
            FakeResponse::new(200).body(file)
        } else {
            FakeResponse::new(404)
        }
    })
}

fn history_at(p: &Project, index: &str) {
    let mut text = String::from("deployments:\n");
    for v in ["1.1.0", "1.2.0"] {
        text.push_str(&format!(
            "  - version: v{v}\n    timestamp: \"2026-01-0{}T00:00:00Z\"\n    status: {}\n    packages:\n      - format: cargo\n        registry: \"{index}\"\n        status: deployed\n        crates:\n          - name: {CORE}\n            version: {v}\n",
            if v == "1.1.0" { 1 } else { 2 },
            if v == "1.1.0" { "superseded" } else { "deployed" }
        ));
    }
    p.write_history(&text);
}

#[test]
fn a_hostile_index_is_an_error_naming_the_crate_and_line_and_gets_no_token() {
    let server = hostile_index(
        b"{\"name\":\"acme-core\",\"vers\":\"1.1.0\",\"cksum\":\"aa\",\"yanked\":false}\n\x1b[31mnot json\n",
        true,
    );
    let p = Project::new();
    let index = format!("sparse+http://{}/index/", server.host());
    p.write(
        "bagboy.yaml",
        &format!("name: acme\nregistries:\n  - format: cargo\n    registry: \"{index}\"\n    crates: [{CORE}]\n"),
    );
    history_at(&p, &index);
    // The user's cargo knows a registry `kellnr` at another index, with a token: a
    // bagboy.yaml naming this index (a pull request's) must not get it.
    let home = p.path().join("cargo-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        "[registries.kellnr]\nindex = \"sparse+http://127.0.0.1:1/api/v1/crates/\"\n",
    )
    .unwrap();
    std::fs::write(
        home.join("credentials.toml"),
        "[registries.kellnr]\ntoken = \"secret-token-of-kellnr\"\n",
    )
    .unwrap();
    let r = support::cli::isolated(p.path())
        .args(["rollback", "--version", "v1.1.0", "--dry-run"])
        .env("CARGO_HOME", &home)
        .env("CARGO_REGISTRY_TOKEN", "secret-token-of-crates-io")
        .env(
            "CARGO_REGISTRIES_KELLNR_TOKEN",
            "secret-token-of-kellnr-env",
        )
        .output()
        .unwrap();
    let r = Run::of(r);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr
            .contains("acme-core: the index file ac/me/acme-core line 2"),
        "names the crate, file and line: {}",
        r.show()
    );
    assert!(
        !r.stderr.contains('\x1b'),
        "no control characters: {:?}",
        r.stderr
    );
    for req in server.requests() {
        assert!(
            req.header("authorization").is_none(),
            "no token to an index cargo does not bind one to: {req:?}"
        );
    }
    assert!(!server.requests().is_empty());
}

#[test]
fn an_index_that_requires_auth_is_read_with_the_token_and_a_crate_added_later_keeps_its_versions() {
    let reg = TestCargoRegistry::start_auth_required();
    let (p, home, _layout) = project(&reg, &reg.index());
    // A crate joins the family after three releases were recorded without it.
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        reg.publish("acme-extra", v, &[]);
    }
    let config = std::fs::read_to_string(p.path().join("bagboy.yaml")).unwrap();
    p.write(
        "bagboy.yaml",
        &config.replace(
            &format!("crates: [{CORE}, {CLI}]"),
            &format!("crates: [{CORE}, {CLI}, acme-extra]"),
        ),
    );
    let dry = run(
        &p,
        &home,
        &[
            "rollback",
            "--version",
            "v1.0.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let steps: Vec<(String, String)> = plan["registries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["format"] == "cargo")
        .flat_map(|r| r["steps"].as_array().unwrap().clone())
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_string(),
                s["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for v in ["1.1.0", "1.2.0"] {
        assert!(
            steps.contains(&("yank".into(), format!("{CORE}@{v}"))),
            "{steps:?}"
        );
        assert!(
            steps.contains(&("left_in_place".into(), format!("acme-extra@{v}"))),
            "never recorded, never yanked: {steps:?}"
        );
    }
    let r = run(
        &p,
        &home,
        &["rollback", "--version", "v1.0.0", "--yes", "--force"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(reg.yanked(CORE, "1.2.0") && reg.yanked(CLI, "1.1.0"));
    assert!(!reg.yanked("acme-extra", "1.2.0"));
}

#[test]
fn a_token_the_registry_echoes_back_is_never_printed_or_written() {
    use support::fake_server::{FakeResponse, FakeServer};
    let server = FakeServer::start(|req, _| {
        if req.target.ends_with("/config.json") {
            let api = format!("http://{}", req.header("host").unwrap_or_default());
            FakeResponse::new(200)
                .body(serde_json::json!({"dl": format!("{api}/dl"), "api": api}).to_string())
        } else if req.target.contains("/ac/me/") {
            FakeResponse::new(200).body(format!(
                "{{\"name\":\"{CORE}\",\"vers\":\"1.1.0\",\"cksum\":\"aa\",\"yanked\":false}}\n{{\"name\":\"{CORE}\",\"vers\":\"1.2.0\",\"cksum\":\"bb\",\"yanked\":false}}\n"
            ))
        } else if req.method != "GET" {
            let token = req.header("authorization").unwrap_or_default().to_string();
            FakeResponse::new(403).body(
                serde_json::json!({"errors": [{"detail": format!("token {token} may not do this")}]}).to_string(),
            )
        } else {
            FakeResponse::new(404)
        }
    });
    let p = Project::new();
    let index = format!("sparse+http://{}/index/", server.host());
    p.write(
        "bagboy.yaml",
        &format!("name: acme\nregistries:\n  - format: cargo\n    registry: \"{index}\"\n    crates: [{CORE}]\n"),
    );
    history_at(&p, &index);
    let home = p.path().join("cargo-home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        format!("[registries.fake]\nindex = \"{index}\"\n"),
    )
    .unwrap();
    let secret = "cio-secret-token-0123456789";
    let r = support::cli::isolated(p.path())
        .args(["rollback", "--version", "v1.1.0", "--yes"])
        .env("CARGO_HOME", &home)
        .env("CARGO_REGISTRIES_FAKE_TOKEN", secret)
        .output()
        .unwrap();
    let r = Run::of(r);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        server
            .requests()
            .iter()
            .any(|q| q.header("authorization") == Some(secret)),
        "the token went to the API"
    );
    assert!(
        r.stderr.contains("token *** may not do this"),
        "{}",
        r.show()
    );
    for (what, text) in [
        ("stdout", r.stdout.clone()),
        ("stderr", r.stderr.clone()),
        ("history", p.history()),
        (
            "audit",
            std::fs::read_to_string(p.path().join(".bagboy/audit.jsonl")).unwrap_or_default(),
        ),
    ] {
        assert!(!text.contains(secret), "{what}: {text}");
    }
}
