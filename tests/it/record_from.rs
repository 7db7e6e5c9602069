//! `record --from goreleaser|cargo-dist` and `bagboy check`, through the binary, against the
//! suite's real servers: the docker registry, bare-git taps, Verdaccio (and the GitHub API
//! mock). GoReleaser cannot run offline: its files are written here in the shapes its source
//! defines (v2.9 `Brew Tap`, v2.10+ `Homebrew Formula`/`Homebrew Cask`). cargo-dist runs for
//! real (`dist manifest`, installed by scripts/test.sh).

use crate::support;

use std::path::Path;

use serde_json::{json, Value};
use support::cli::{isolated, Project, Run};
use support::github::MockGithub;
use support::npm::TestNpm;
use support::tap::{cask, goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

const REPO: &str = "acme/myapp";

fn run(p: &Project, args: &[&str]) -> Run {
    Run::of(isolated(p.path()).args(args).output().unwrap())
}

fn brew_config(tap: &TestTap, name: &str) -> Value {
    json!({
        "name": name,
        "repository": {"owner": "acme", "name": "homebrew-tap", "branch": "main",
                       "token": "{{ .Env.TAP_TOKEN }}", "git": {"url": tap.url()}},
        "directory": "Formula",
        "description": "myapp"
    })
}

/// A GoReleaser dist/ for `version` (metadata without the `v`, tag with it).
fn write_dist(p: &Project, version: &str, artifacts: Value) {
    p.write(
        "dist/artifacts.json",
        &serde_json::to_string_pretty(&artifacts).unwrap(),
    );
    p.write(
        "dist/metadata.json",
        &json!({"project_name": "myapp", "tag": format!("v{version}"), "previous_tag": "v1.1.0",
                "version": version, "commit": "0123456789abcdef", "date": "2026-02-01T18:00:00Z",
                "runtime": {"goos": "linux", "goarch": "amd64"}})
        .to_string(),
    );
}

fn docker_artifact(kind: &str, reference: &str, digest: &str) -> Value {
    json!({"name": reference, "path": reference, "type": kind, "internal_type": 11,
           "extra": {"ID": "myapp", "Digest": digest}})
}

fn docker_only_config(p: &Project, reg: &TestRegistry) {
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n",
            reg.repo(REPO)
        ),
    );
}

#[test]
fn goreleaser_v2_10_records_images_and_a_cask_the_config_does_not_list() {
    let reg = TestRegistry::start(Auth::None);
    let index = reg.push_index(REPO, "v1.2.0");
    reg.put_tag(REPO, "latest", &index);
    let amd64 = reg.push_image(REPO, "v1.2.0-amd64");
    let tap = TestTap::new();
    tap.commit_file(
        "Casks/myapp-gui.rb",
        &cask("myapp-gui", "1.2.0"),
        "cask 1.2.0",
    );
    tap.push();
    let p = Project::new();
    docker_only_config(&p, &reg);
    let image = reg.repo(REPO);
    write_dist(
        &p,
        "1.2.0",
        json!([
            {"name": "myapp_1.2.0_linux_amd64.tar.gz", "path": "dist/myapp_1.2.0_linux_amd64.tar.gz",
             "goos": "linux", "goarch": "amd64", "type": "Archive", "internal_type": 1,
             "extra": {"Format": "tar.gz"}},
            {"name": "checksums.txt", "path": "dist/checksums.txt", "type": "Checksum", "internal_type": 12},
            docker_artifact("Published Docker Image", &format!("{image}:v1.2.0-amd64"), &amd64),
            docker_artifact("Docker Manifest", &format!("{image}:v1.2.0"), &index),
            docker_artifact("Docker Manifest", &format!("{image}:latest"), &index),
            {"name": "myapp-gui.rb", "path": "dist/homebrew/Casks/myapp-gui.rb", "type": "Homebrew Cask",
             "internal_type": 17, "extra": {"BrewConfig": brew_config(&tap, "myapp-gui")}},
            {"name": "myapp_1.2.0_amd64.snap", "path": "dist/myapp_1.2.0_amd64.snap", "type": "Snap",
             "internal_type": 7},
            {"name": "mystery", "type": "Teleporter", "internal_type": 99}
        ]),
    );
    let r = run(
        &p,
        &["record", "--version", "v1.2.0", "--from", "goreleaser"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let h = p.history();
    assert!(h.contains(&index), "{h}");
    assert!(h.contains("latest"), "{h}");
    assert!(h.contains("acme/homebrew-tap"), "{h}");
    assert!(h.contains("tap_commit:"), "{h}");
    // The tap is not in bagboy.yaml: recorded, and said so on stderr and in the notes.
    assert!(
        r.stderr.contains("brew acme/homebrew-tap is named by"),
        "{}",
        r.show()
    );
    assert!(h.contains("brew acme/homebrew-tap is named by"), "{h}");
    // Unknown types are listed as not rolled back; release assets are counted.
    for said in [
        "Snap myapp_1.2.0_amd64.snap",
        "Teleporter mystery",
        "2 release assets",
    ] {
        assert!(r.stderr.contains(said), "{said}: {}", r.show());
        assert!(h.contains(said), "{said}: {h}");
    }
    // The template of a token is not repeated anywhere.
    assert!(!h.contains("TAP_TOKEN") && !r.stderr.contains("TAP_TOKEN"));
}

#[test]
fn goreleaser_v2_9_brew_tap_and_a_file_that_lies_about_a_digest() {
    let reg = TestRegistry::start(Auth::None);
    let digest = reg.push_index(REPO, "v1.2.0");
    reg.put_tag(REPO, "latest", &digest);
    let tap = TestTap::new();
    tap.commit_file(
        "Formula/myapp.rb",
        &goreleaser_formula("myapp", "1.2.0"),
        "myapp 1.2.0",
    );
    tap.push();
    let p = Project::new();
    docker_only_config(&p, &reg);
    let image = reg.repo(REPO);
    let brew_tap = json!({"name": "myapp.rb", "path": "dist/myapp.rb", "type": "Brew Tap",
                          "internal_type": 16, "extra": {"BrewConfig": brew_config(&tap, "myapp")}});

    // A digest the registry does not serve for `latest`: exit 2 naming both, nothing written.
    let lie = format!("sha256:{}", support::random_hex());
    write_dist(
        &p,
        "1.2.0",
        json!([
            docker_artifact("Docker Manifest", &format!("{image}:v1.2.0"), &digest),
            docker_artifact("Docker Manifest", &format!("{image}:latest"), &lie),
            brew_tap.clone()
        ]),
    );
    let r = run(
        &p,
        &["record", "--version", "1.2.0", "--from", "goreleaser=dist"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains(&lie) && r.stderr.contains(&digest),
        "{}",
        r.show()
    );
    assert!(r.stderr.contains(":latest"), "{}", r.show());
    assert!(
        !p.history_path().exists(),
        "nothing is recorded from a lying file"
    );

    // The same for the version tag itself.
    write_dist(
        &p,
        "1.2.0",
        json!([
            docker_artifact("Docker Manifest", &format!("{image}:v1.2.0"), &lie),
            brew_tap.clone()
        ]),
    );
    let r = run(
        &p,
        &["record", "--version", "v1.2.0", "--from", "goreleaser"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains(&lie) && r.stderr.contains(&digest),
        "{}",
        r.show()
    );

    // The file's version must be --version.
    write_dist(&p, "1.3.0", json!([brew_tap.clone()]));
    let r = run(
        &p,
        &["record", "--version", "v1.2.0", "--from", "goreleaser"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("1.3.0") && r.stderr.contains("v1.2.0"),
        "{}",
        r.show()
    );

    // Bad JSON names file:line:col; any bytes give an answer, never a panic.
    p.write(
        "dist/artifacts.json",
        "[\n  {\"name\": \"x\",\n    oops}\n]\n",
    );
    let r = run(
        &p,
        &["record", "--version", "v1.2.0", "--from", "goreleaser"],
    );
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("dist/artifacts.json:3:5"), "{}", r.show());
    for bytes in [
        &b"\xff\xfe\x00garbage"[..],
        b"",
        b"{\"a\":",
        &[b'['; 5000][..],
    ] {
        std::fs::write(p.path().join("dist/artifacts.json"), bytes).unwrap();
        let r = run(
            &p,
            &["record", "--version", "v1.2.0", "--from", "goreleaser"],
        );
        assert_eq!(r.code, Some(2), "{}", r.show());
        assert!(!r.stderr.contains("panicked"), "{}", r.show());
    }

    // The honest file records the image and the formula.
    write_dist(
        &p,
        "1.2.0",
        json!([
            docker_artifact("Docker Manifest", &format!("{image}:v1.2.0"), &digest),
            docker_artifact("Docker Manifest", &format!("{image}:latest"), &digest),
            brew_tap
        ]),
    );
    let r = run(
        &p,
        &["record", "--version", "v1.2.0", "--from", "goreleaser"],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    let h = p.history();
    assert!(
        h.contains(&digest) && h.contains("formula: \"myapp\""),
        "{h}"
    );
}

fn dist_bin() -> String {
    let ok = std::process::Command::new("dist")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "cargo-dist's `dist` is not installed: pip install astral-dev-toolchain-cargo-dist (scripts/test.sh does)"
    );
    "dist".into()
}

/// A one-binary cargo workspace released by cargo-dist with Homebrew and npm installers;
/// returns the manifest `dist manifest` printed (offline: it plans, builds nothing).
fn dist_manifest(dir: &Path, version: &str) -> std::path::PathBuf {
    let ws = dir.join("ws");
    std::fs::create_dir_all(ws.join("src")).unwrap();
    std::fs::write(
        ws.join("Cargo.toml"),
        format!("[package]\nname = \"myapp\"\nversion = \"{version}\"\nedition = \"2021\"\nrepository = \"https://github.com/acme/myapp\"\ndescription = \"myapp\"\nhomepage = \"https://example.com\"\n\n[profile.dist]\ninherits = \"release\"\n"),
    )
    .unwrap();
    std::fs::write(ws.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        ws.join("dist-workspace.toml"),
        "[workspace]\nmembers = [\"cargo:.\"]\n\n[dist]\ncargo-dist-version = \"0.33.0\"\nci = \"github\"\nallow-dirty = [\"ci\"]\ninstallers = [\"homebrew\", \"npm\"]\ntap = \"acme/homebrew-tap\"\npublish-jobs = [\"homebrew\", \"npm\"]\ntargets = [\"x86_64-unknown-linux-gnu\"]\n",
    )
    .unwrap();
    support::tap::git(&ws, &["init", "--quiet", "-b", "main"]);
    let out = std::process::Command::new(dist_bin())
        .current_dir(&ws)
        .args([
            "manifest",
            "--output-format=json",
            "--artifacts=global",
            "--no-local-paths",
        ])
        .arg(format!("--tag=v{version}"))
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dist manifest: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = dir.join("dist-manifest.json");
    std::fs::write(&file, &out.stdout).unwrap();
    file
}

#[test]
fn cargo_dist_manifest_from_the_real_dist_records_tap_npm_and_release() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dist_manifest(tmp.path(), "0.3.0");
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    assert_eq!(m["releases"][0]["app_version"], "0.3.0", "{m}");

    let npm = TestNpm::start();
    npm.publish("myapp", "0.3.0");
    let tap = TestTap::new();
    tap.commit_file(
        "Formula/myapp.rb",
        &goreleaser_formula("myapp", "0.3.0"),
        "myapp 0.3.0",
    );
    tap.push();
    let gh = MockGithub::start();
    let release = gh.add_release("v0.3.0", false, false);

    // With no config at all, check --from prints the registries block to start from.
    let empty = Project::new();
    let r = run(
        &empty,
        &[
            "check",
            "--from",
            &format!("cargo-dist={}", manifest.display()),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    for said in [
        "format: brew",
        "registry: \"acme/homebrew-tap\"",
        "formula: \"myapp\"",
        "format: npm",
        "packages: [\"myapp\"]",
        "format: github-release",
        "registry: \"acme/myapp\"",
    ] {
        assert!(r.stdout.contains(said), "{said}: {}", r.show());
    }

    let p = Project::new();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: npm\n    registry: \"{}\"\n    packages: [myapp]\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n  - format: github-release\n    registry: acme/myapp\n",
            npm.url(),
            tap.url()
        ),
    );
    let rc = npm.npmrc(p.path());
    let token = npm.token.clone();
    assert!(token.len() >= 16, "{token}");
    let cmd = |args: &[&str]| {
        Run::of(
            isolated(p.path())
                .args(args)
                .env("NPM_CONFIG_USERCONFIG", &rc)
                .env("GITHUB_TOKEN", support::github::TOKEN)
                .env("GITHUB_API_URL", gh.url())
                .output()
                .unwrap(),
        )
    };
    let from = format!("cargo-dist={}", manifest.display());
    let wrong = cmd(&["record", "--version", "0.3.1", "--from", &from]);
    assert_eq!(wrong.code, Some(2), "{}", wrong.show());
    assert!(
        wrong.stderr.contains("0.3.0") && wrong.stderr.contains("0.3.1"),
        "{}",
        wrong.show()
    );

    let r = cmd(&["record", "--version", "v0.3.0", "--from", &from]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let h = p.history();
    assert!(h.contains("integrity:"), "{h}");
    assert!(h.contains("tap_commit:"), "{h}");
    assert!(h.contains(&format!("release_id: {release}")), "{h}");
    assert!(!r.stderr.contains("not configured"), "{}", r.show());

    // check: credentials named by where they come from, never the secret; all reachable.
    let c = cmd(&["check"]);
    assert_eq!(c.code, Some(0), "{}", c.show());
    assert!(c.stdout.contains(":_authToken` in"), "{}", c.show());
    assert!(
        c.stdout.contains("credentials: GITHUB_TOKEN"),
        "{}",
        c.show()
    );
    assert!(
        c.stdout.contains("read the latest release of acme/myapp"),
        "{}",
        c.show()
    );
    assert!(c.stdout.contains("fetched "), "{}", c.show());
    assert!(c.stdout.contains("current: v0.3.0"), "{}", c.show());
    let j = cmd(&["check", "--format", "json"]);
    assert_eq!(j.code, Some(0), "{}", j.show());
    let doc: Value = serde_json::from_str(&j.stdout).unwrap();
    assert_eq!(doc["problems"], 0, "{doc}");
    for out in [
        &c.stdout, &c.stderr, &j.stdout, &j.stderr, &r.stdout, &r.stderr,
    ] {
        assert!(
            !out.contains(&token),
            "the npm token {token} was printed: {out}"
        );
        assert!(
            !out.contains(support::github::TOKEN),
            "the GitHub token was printed"
        );
    }
}

#[test]
fn check_good_config_typo_unreachable_registry_and_credentials() {
    let reg = TestRegistry::start(Auth::None);
    let digest = reg.push_index(REPO, "v1.0.0");
    let p = Project::new();
    docker_only_config(&p, &reg);
    let secret = "s3cret-Pa55word-never-shown";
    let with_creds = |args: &[&str]| {
        Run::of(
            isolated(p.path())
                .args(args)
                .env("BAGBOY_REGISTRY_USERNAME", "ci-bot")
                .env("BAGBOY_REGISTRY_PASSWORD", secret)
                .env("BAGBOY_REGISTRY_HOST", reg.host())
                .output()
                .unwrap(),
        )
    };
    let r = with_creds(&["record", "--version", "v1.0.0"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let before = p.history_bytes();
    let files_before = files_outside_cache(p.path());

    let good = with_creds(&["check"]);
    assert_eq!(good.code, Some(0), "{}", good.show());
    assert!(
        good.stdout
            .contains("BAGBOY_REGISTRY_USERNAME/BAGBOY_REGISTRY_PASSWORD"),
        "{}",
        good.show()
    );
    assert!(
        good.stdout
            .contains("1 entry (1 deployed); current: v1.0.0"),
        "{}",
        good.show()
    );
    assert!(!good.stdout.contains(secret) && !good.stderr.contains(secret));
    let json = with_creds(&["check", "--format", "json"]);
    assert_eq!(json.code, Some(0), "{}", json.show());
    assert!(!json.stdout.contains(secret) && !json.stderr.contains(secret));
    assert!(!digest.is_empty());
    assert_eq!(p.history_bytes(), before, "check writes nothing");
    assert_eq!(
        files_outside_cache(p.path()),
        files_before,
        "check writes nothing"
    );

    // A typo'd key is an error naming file:line:col and the nearest key.
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n    move_tag: [latest]\nrolback:\n  concurrency: 2\n",
            reg.repo(REPO)
        ),
    );
    let typo = run(&p, &["check"]);
    assert_eq!(typo.code, Some(2), "{}", typo.show());
    assert!(typo.stdout.contains("bagboy.yaml:7:1"), "{}", typo.show());
    assert!(
        typo.stdout.contains("did you mean `rollback`?"),
        "{}",
        typo.show()
    );
    assert!(typo.stdout.contains("bagboy.yaml:6:5"), "{}", typo.show());
    assert!(
        typo.stdout.contains("did you mean `move_tags`?"),
        "{}",
        typo.show()
    );
    // Elsewhere the same finding is a warning with the same suggestion.
    let list = run(&p, &["versions", "list"]);
    assert_eq!(list.code, Some(0), "{}", list.show());
    assert!(
        list.stderr.contains("did you mean `rollback`?"),
        "{}",
        list.show()
    );

    // `registry:` at the top level: `registries:`.
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistry:\n  - format: docker\n",
    );
    let top = run(&p, &["check", "--format", "json"]);
    assert_eq!(top.code, Some(2), "{}", top.show());
    let doc: Value = serde_json::from_str(&top.stdout).unwrap();
    let problems = doc["config"]["problems"].to_string();
    assert!(problems.contains("bagboy.yaml:2:1"), "{problems}");
    assert!(
        problems.contains("did you mean `registries`?"),
        "{problems}"
    );

    // An unreachable registry is named.
    p.write(
        "bagboy.yaml",
        "name: myapp\nregistries:\n  - format: docker\n    registry: \"127.0.0.1:9/acme/gone\"\n    insecure: true\n",
    );
    let down = run(&p, &["check"]);
    assert_eq!(down.code, Some(2), "{}", down.show());
    assert!(
        down.stdout.contains("✗ docker 127.0.0.1:9/acme/gone"),
        "{}",
        down.show()
    );
    assert_eq!(p.history_bytes(), before, "check writes nothing");
}

/// Every file under `dir` but bagboy's cache, with its bytes.
fn files_outside_cache(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path == dir.join(".cache") {
                continue;
            }
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}
