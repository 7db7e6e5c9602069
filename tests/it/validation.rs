//! `rollback.validation` through the binary: a real `docker-registry` whose target lost a blob
//! (as garbage collection does), formula downloads checked against their sha256 on a loopback
//! server, migrations in a real git repository, image-config differences, and immutable-tag
//! answers from a scripted registry.

use crate::support;

use std::path::Path;

use serde_json::{json, Value};
use support::cli::{isolated, Project, Run};
use support::fake_server::{FakeResponse, FakeServer};
use support::tap::{git, TestTap};
use support::{Auth, TestRegistry};

fn run(dir: &Path, args: &[&str]) -> Run {
    Run::of(isolated(dir).args(args).output().unwrap())
}

const VALIDATE: &str =
    "deployment:\n  rollback:\n    validation:\n      - verify_dependencies: true\n";

/// v1.1.0 (a two-platform index) and v1.2.0 (current) on a real registry, both recorded.
fn registry_project() -> (TestRegistry, Project, String) {
    let reg = TestRegistry::start(Auth::None);
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n{VALIDATE}",
            reg.repo("acme/app")
        ),
    );
    let index = reg.push_index("acme/app", "v1.1.0");
    reg.put_tag("acme/app", "latest", &index);
    assert_eq!(
        run(p.path(), &["record", "--version", "v1.1.0"]).code,
        Some(0)
    );
    let v12 = reg.push_image("acme/app", "v1.2.0");
    reg.put_tag("acme/app", "latest", &v12);
    assert_eq!(
        run(p.path(), &["record", "--version", "v1.2.0"]).code,
        Some(0)
    );
    (reg, p, index)
}

#[test]
fn verify_dependencies_refuses_a_target_whose_blob_was_deleted() {
    let (reg, p, index) = registry_project();
    // Everything present: the plan says how much was checked.
    let r = run(p.path(), &["rollback", "--dry-run", "--format", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let plan: Value = serde_json::from_str(&r.stdout).unwrap();
    let checks = &plan["validation"]["checks"];
    assert_eq!(checks[0]["check"], "dependencies");
    assert_eq!(checks[0]["result"], "passed", "{plan:#}");
    assert_eq!(
        checks[0]["detail"], "2 manifests and 4 blobs checked",
        "{plan:#}"
    );
    // root GET + 2 child manifests (HEAD + GET each) + 4 blob HEADs.
    assert_eq!(plan["validation"]["requests"], 2 + 4 + 4, "{plan:#}");

    // Garbage collection took the arm64 layer.
    let (bytes, _) = reg.get_manifest("acme/app", &index).unwrap();
    let idx: Value = serde_json::from_slice(&bytes).unwrap();
    let arm = idx["manifests"][1]["digest"].as_str().unwrap().to_string();
    let (child, _) = reg.get_manifest("acme/app", &arm).unwrap();
    let child: Value = serde_json::from_slice(&child).unwrap();
    let layer = child["layers"][0]["digest"].as_str().unwrap().to_string();
    reg.delete_blob("acme/app", &layer);
    let latest = reg.tag_digest("acme/app", "latest");
    let history = p.history_bytes();

    let r = run(p.path(), &["rollback", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stdout.contains(&format!(
            "blob {layer} (application/vnd.oci.image.layer.v1.tar+gzip)"
        )) && r.stdout.contains("linux/arm64")
            && r.stdout.contains("FAILED  dependencies"),
        "{}",
        r.show()
    );
    let r = run(p.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains(&layer), "{}", r.show());
    assert_eq!(
        reg.tag_digest("acme/app", "latest"),
        latest,
        "nothing moved"
    );
    assert_eq!(p.history_bytes(), history, "nothing written");
    // --force does not go past it; --skip-validation does, with a warning.
    let r = run(p.path(), &["rollback", "--yes", "--force"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    let r = run(p.path(), &["rollback", "--yes", "--skip-validation"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("validation skipped"), "{}", r.show());
    assert_eq!(reg.tag_digest("acme/app", "latest"), Some(index));
}

#[test]
fn formula_downloads_are_checked_against_their_sha256() {
    use sha2::Digest as _;
    let tarball = b"myapp 1.1.0 release tarball".to_vec();
    let good = hex::encode(sha2::Sha256::digest(&tarball));
    let serving = std::sync::Arc::new(std::sync::Mutex::new(tarball));
    let files = {
        let serving = serving.clone();
        FakeServer::start(move |req, _| {
            if req.target.ends_with(".tar.gz") {
                FakeResponse::new(200).body(serving.lock().unwrap().clone())
            } else {
                FakeResponse::new(404)
            }
        })
    };
    let tap = TestTap::new();
    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n{VALIDATE}",
            tap.url()
        ),
    );
    for (v, sha) in [("1.1.0", good.as_str()), ("1.2.0", &"0".repeat(64))] {
        let formula = format!(
            "class Myapp < Formula\n  desc \"My app\"\n  homepage \"https://example.com\"\n  url \"http://{}/myapp-{v}.tar.gz\"\n  sha256 \"{sha}\"\n  license \"MIT\"\n\n  def install\n    bin.install \"myapp\"\n  end\nend\n",
            files.host()
        );
        tap.commit_file("Formula/myapp.rb", &formula, &format!("myapp {v}"));
        tap.push();
        assert_eq!(
            run(p.path(), &["record", "--version", &format!("v{v}")]).code,
            Some(0)
        );
    }
    let r = run(p.path(), &["rollback", "--dry-run"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout
            .contains("1 download of myapp checked against sha256"),
        "{}",
        r.show()
    );
    // The download was replaced: refused, the tap untouched.
    *serving.lock().unwrap() = b"something else".to_vec();
    let head = tap.head();
    let r = run(p.path(), &["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr
            .contains(&format!("not {good} as the formula declares")),
        "{}",
        r.show()
    );
    assert_eq!(tap.head(), head);
}

#[test]
fn migrations_added_since_the_target_need_a_down_migration() {
    let p = Project::new();
    let layout = bagboy::registry::oci::OciLayout::init(p.path().join("oci")).unwrap();
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistries:\n  - format: oci-layout\n    registry: oci\ndeployment:\n  rollback:\n    validation:\n      - check_backwards_compatibility: {dir: db/migrations}\n",
    );
    let dir = p.path();
    let g = |args: &[&str]| git(dir, args);
    g(&["init", "-q", "-b", "main"]);
    p.write(
        "db/migrations/001_users.up.sql",
        "create table users (id int);\n",
    );
    p.write("db/migrations/001_users.down.sql", "drop table users;\n");
    g(&["add", "db"]);
    g(&["commit", "-q", "-m", "v1.1.0"]);
    let c1 = g(&["rev-parse", "HEAD"]);
    let record = |v: &str, commit: &str, cfg: &str| {
        let m = layout
            .add_image(
                &format!("v{v}"),
                format!("{{\"config\":{cfg}}}").as_bytes(),
                format!("layer {v}").as_bytes(),
            )
            .unwrap();
        layout.set_tag("latest", &m.descriptor()).unwrap();
        let r = run(
            dir,
            &["record", "--version", &format!("v{v}"), "--commit", commit],
        );
        assert_eq!(r.code, Some(0), "{}", r.show());
    };
    record(
        "1.1.0",
        &c1,
        r#"{"ExposedPorts":{"8080/tcp":{}},"User":"app","Env":["PATH=/bin","MODE=a"]}"#,
    );
    p.write(
        "db/migrations/002_orders.up.sql",
        "create table orders (id int);\n",
    );
    p.write(
        "db/migrations/003_index.up.sql",
        "create index i on orders (id);\n",
    );
    p.write("db/migrations/003_index.down.sql", "drop index i;\n");
    g(&["add", "db"]);
    g(&["commit", "-q", "-m", "v1.2.0"]);
    let c2 = g(&["rev-parse", "HEAD"]);
    record(
        "1.2.0",
        &c2,
        r#"{"ExposedPorts":{"9090/tcp":{}},"User":"root","Env":["PATH=/bin","TOKEN=x"]}"#,
    );

    let r = run(dir, &["rollback", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stdout
            .contains("db/migrations/002_orders.up.sql was added after v1.1.0")
            && r.stdout.contains("db/migrations/002_orders.down.sql")
            && !r.stdout.contains("003_index.up.sql was added"),
        "{}",
        r.show()
    );
    // Image config differences are warnings (names only: env values are never shown).
    assert!(
        r.stdout.contains("exposed ports 9090/tcp → 8080/tcp")
            && r.stdout.contains("user root → app")
            && r.stdout.contains("only the target sets: MODE")
            && !r.stdout.contains("TOKEN=x"),
        "{}",
        r.show()
    );
    let r = run(dir, &["rollback", "--yes", "--force"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout
            .contains("forced: migration db/migrations/002_orders.up.sql"),
        "{}",
        r.show()
    );

    // The down migration written and released: the same check passes.
    p.write("db/migrations/002_orders.down.sql", "drop table orders;\n");
    g(&["add", "db"]);
    g(&["commit", "-q", "-m", "v1.3.0"]);
    let c3 = g(&["rev-parse", "HEAD"]);
    record(
        "1.3.0",
        &c3,
        r#"{"ExposedPorts":{"8080/tcp":{}},"User":"app","Env":["PATH=/bin","MODE=a"]}"#,
    );
    let r = run(dir, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout
            .contains("2 migration(s) added since v1.1.0; each has a down migration"),
        "{}",
        r.show()
    );
}

/// A scripted registry that answers a tag PUT the way ECR does for an immutable repository.
fn scripted_registry(
    put_answer: u16,
    body: &'static str,
    reput_lands: bool,
) -> (FakeServer, String, String) {
    let old = format!("sha256:{}", "1".repeat(64));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": format!("sha256:{}", "2".repeat(64))},
        "layers": []
    })
    .to_string();
    let target = support::sha256_digest(manifest.as_bytes());
    let put_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (t, o) = (target.clone(), old.clone());
    let server = FakeServer::start(move |req, _| {
        let mt = "application/vnd.oci.image.manifest.v1+json";
        let is = |p: &str| req.target.starts_with(p);
        if is("/v2/acme/app/manifests/") {
            let reference = req.target.rsplit('/').next().unwrap_or_default();
            if req.method == "PUT" {
                put_done.store(true, std::sync::atomic::Ordering::SeqCst);
                return FakeResponse::new(put_answer)
                    .header("Content-Type", "application/json")
                    .body(body);
            }
            let digest = match reference {
                "v1.1.0" => t.clone(),
                "latest" if reput_lands && put_done.load(std::sync::atomic::Ordering::SeqCst) => {
                    t.clone()
                }
                "latest" | "v1.2.0" => o.clone(),
                r if r == t => t.clone(),
                _ => return FakeResponse::new(404),
            };
            let bytes = if digest == t {
                manifest.clone().into_bytes()
            } else {
                b"{}".to_vec()
            };
            return FakeResponse::new(200)
                .header("Content-Type", mt)
                .header("Docker-Content-Digest", &digest)
                .header("Content-Length", &bytes.len().to_string())
                .body(if req.method == "HEAD" {
                    Vec::new()
                } else {
                    bytes
                });
        }
        if is("/v2/") && req.target == "/v2/" {
            return FakeResponse::new(200);
        }
        FakeResponse::new(404)
    });
    let host = server.host();
    (server, host, target)
}

fn scripted_project(host: &str, target: &str) -> Project {
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!("name: myapp\nregistries:\n  - format: docker\n    registry: \"{host}/acme/app\"\n    insecure: true\n"),
    );
    p.write_history(&format!(
        "deployments:\n  - version: \"v1.1.0\"\n    timestamp: \"2026-11-01T00:00:00Z\"\n    status: superseded\n    packages:\n      - format: docker\n        registry: \"{host}/acme/app\"\n        digest: \"{target}\"\n        tags: [\"v1.1.0\", \"latest\"]\n  - version: \"v1.2.0\"\n    timestamp: \"2026-11-02T00:00:00Z\"\n    status: deployed\n    packages:\n      - format: docker\n        registry: \"{host}/acme/app\"\n        digest: \"sha256:{}\"\n        tags: [\"v1.2.0\", \"latest\"]\n",
        "1".repeat(64)
    ));
    p
}

#[test]
fn scripted_server_immutable_tags_are_named_with_a_hint() {
    let (server, host, target) = scripted_registry(
        400,
        r#"{"__type":"ImageTagAlreadyExistsException","message":"The image tag 'latest' already exists in the 'acme/app' repository and cannot be overwritten because the repository is immutable."}"#,
        false,
    );
    let p = scripted_project(&host, &target);
    let r = run(p.path(), &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        r.stdout.contains("tag is immutable") || r.stderr.contains("tag is immutable"),
        "{}",
        r.show()
    );
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("imageTagMutability"),
        "{}",
        r.show()
    );
    // Harbor's answer too.
    drop(server);
    let (_s2, host2, target2) = scripted_registry(
        412,
        r#"{"errors":[{"code":"DENIED","message":"Failed to process request due to 'acme/app:latest' configured as immutable."}]}"#,
        false,
    );
    let p = scripted_project(&host2, &target2);
    let r = run(p.path(), &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(1), "{}", r.show());
    assert!(
        format!("{}{}", r.stdout, r.stderr).contains("tag is immutable"),
        "{}",
        r.show()
    );
}

#[test]
fn scripted_server_an_identical_reput_answered_already_exists_is_success() {
    let (_server, host, target) = scripted_registry(
        400,
        r#"{"errors":[{"code":"TAG_INVALID","message":"tag latest already exists with this digest"}]}"#,
        true,
    );
    let p = scripted_project(&host, &target);
    let r = run(p.path(), &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(p.history().contains("rollback_of: \"v1.2.0\""));
}
