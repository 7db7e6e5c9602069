//! The registries on git (`scoop`, `aur`, `helm-repo`, `gitops`), end to end through the real
//! `bagboy` binary on bare git repositories made here, with files in the shapes real ones have:
//! record, rollback, the files in a fresh clone; AUR against the real `vercmp` and `makepkg`;
//! and a failing rollback across Docker and the four kinds that is undone everywhere.

use crate::support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::cli::{git_processes, isolated, Run};
use support::tap::git;
use support::{Auth, TestRegistry};

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A bare repository on one branch, and a work clone that publishes releases to it.
struct Remote {
    bare: PathBuf,
    work: PathBuf,
    branch: String,
}

impl Remote {
    fn new(root: &Path, name: &str, branch: &str) -> Remote {
        let bare = root.join(format!("{name}.git"));
        let work = root.join(format!("{name}-work"));
        let (b, w) = (bare.display().to_string(), work.display().to_string());
        git(root, &["init", "--quiet", "--bare", "-b", branch, &b]);
        git(root, &["init", "--quiet", "-b", branch, &w]);
        let r = Remote {
            bare,
            work,
            branch: branch.into(),
        };
        git(&r.work, &["remote", "add", "origin", &r.url()]);
        r
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Commit files and push them, like a release pipeline.
    fn publish(&self, files: &[(&str, &str)], message: &str) -> String {
        // Build on what bagboy may have pushed since.
        if !git(&self.work, &["ls-remote", "origin", &self.branch]).is_empty() {
            git(&self.work, &["fetch", "--quiet", "origin"]);
            let tracking = format!("origin/{}", self.branch);
            git(&self.work, &["reset", "--quiet", "--hard", &tracking]);
        }
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, content).expect("write");
            git(&self.work, &["add", "--", path]);
        }
        git(&self.work, &["commit", "--quiet", "-m", message]);
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        git(&self.work, &["push", "--quiet", "origin", &refspec]);
        self.head()
    }

    fn head(&self) -> String {
        git(&self.bare, &["rev-parse", &self.branch])
    }

    fn log(&self) -> Vec<String> {
        git(&self.bare, &["log", "--format=%H", &self.branch])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn message(&self, commit: &str) -> String {
        git(&self.bare, &["log", "-1", "--format=%B", commit])
            .trim_end()
            .to_owned()
    }

    /// A file as a fresh clone of the branch has it.
    fn fresh(&self, path: &str) -> Option<String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("clone");
        git(
            dir.path(),
            &[
                "clone",
                "--quiet",
                "-b",
                &self.branch,
                &self.url(),
                &dest.display().to_string(),
            ],
        );
        std::fs::read_to_string(dest.join(path)).ok()
    }

    /// Reject every push with a pre-receive hook (a protected branch).
    fn reject_pushes(&self) {
        let hook = self.bare.join("hooks/pre-receive");
        std::fs::create_dir_all(hook.parent().expect("hooks")).expect("mkdir");
        std::fs::write(
            &hook,
            "#!/bin/sh\necho 'protected branch: changes need a reviewed pull request' >&2\nexit 1\n",
        )
        .expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
}

/// A project directory with its config, run through the real binary.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(registries: &[String], extra: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("docker-config")).expect("mkdir");
        std::fs::write(
            dir.path().join("bagboy.yaml"),
            format!("name: myapp\n{extra}registries:\n{}", registries.concat()),
        )
        .expect("config");
        Project { dir }
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(
            isolated(self.dir.path())
                .args(args)
                .output()
                .expect("bagboy"),
        )
    }

    fn expect(&self, code: i32, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, Some(code), "bagboy {args:?}\n{}", r.show());
        r
    }

    fn history(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(".bagboy/deployment-history.yml"))
            .expect("history")
    }

    fn history_doc(&self) -> Value {
        serde_saphyr::from_str(&self.history()).expect("history parses")
    }
}

fn entry(format: &str, registry: &str, remote: &Remote, more: &str) -> String {
    format!(
        "  - format: {format}\n    registry: {registry}\n    remote: \"{}\"\n    branch: {}\n{more}",
        remote.url(),
        remote.branch
    )
}

/// The newest entry of `version` that a rollback did not create.
fn release<'a>(h: &'a Value, version: &str) -> &'a Value {
    h["deployments"]
        .as_array()
        .and_then(|d| {
            d.iter().find(|e| {
                e["version"] == version && e.get("rollback_of").is_none_or(Value::is_null)
            })
        })
        .unwrap_or_else(|| panic!("no {version} in {h:#?}"))
}

fn package<'a>(e: &'a Value, format: &str) -> &'a Value {
    e["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["format"] == format))
        .unwrap_or_else(|| panic!("no {format} package in {e}"))
}

fn plan_steps(json: &str) -> Vec<Value> {
    let plan: Value = serde_json::from_str(json).expect("plan json");
    let mut steps = Vec::new();
    for r in plan["registries"].as_array().cloned().unwrap_or_default() {
        for s in r["steps"].as_array().cloned().unwrap_or_default() {
            let mut s = s;
            s["format"] = r["format"].clone();
            s["notes"] = r["notes"].clone();
            steps.push(s);
        }
    }
    steps
}

// ---------------------------------------------------------------------------------------------
// Files in the shapes real repositories have (written for these tests)
// ---------------------------------------------------------------------------------------------

fn sha(seed: &str) -> String {
    support::sha256_digest(seed.as_bytes())
        .trim_start_matches("sha256:")
        .to_owned()
}

/// A Scoop manifest as a release pipeline writes it: per-architecture downloads, `checkver`
/// and `autoupdate`.
fn scoop_manifest(v: &str) -> String {
    format!(
        r#"{{
    "version": "{v}",
    "description": "Rolls every registry of a release back to a known-good version",
    "homepage": "https://github.com/acme/myapp",
    "license": "MIT",
    "architecture": {{
        "64bit": {{
            "url": "https://github.com/acme/myapp/releases/download/v{v}/myapp_{v}_windows_amd64.zip",
            "hash": "{h64}"
        }},
        "arm64": {{
            "url": "https://github.com/acme/myapp/releases/download/v{v}/myapp_{v}_windows_arm64.zip",
            "hash": "{harm}"
        }}
    }},
    "bin": "myapp.exe",
    "checkver": {{
        "github": "https://github.com/acme/myapp"
    }},
    "autoupdate": {{
        "architecture": {{
            "64bit": {{
                "url": "https://github.com/acme/myapp/releases/download/v$version/myapp_$version_windows_amd64.zip"
            }},
            "arm64": {{
                "url": "https://github.com/acme/myapp/releases/download/v$version/myapp_$version_windows_arm64.zip"
            }}
        }},
        "hash": {{
            "url": "$baseurl/checksums.txt"
        }}
    }}
}}
"#,
        h64 = sha(&format!("win64-{v}")),
        harm = sha(&format!("winarm-{v}")),
    )
}

/// An AUR `-bin` PKGBUILD: prebuilt archives per architecture.
fn pkgbuild(v: &str, epoch: Option<u32>) -> String {
    let epoch = epoch.map(|e| format!("epoch={e}\n")).unwrap_or_default();
    format!(
        r#"# Maintainer: Acme Release Bot <release@acme.example>
pkgname=myapp-bin
pkgver={v}
pkgrel=1
{epoch}pkgdesc='Rolls every registry of a release back to a known-good version'
arch=('x86_64' 'aarch64')
url='https://github.com/acme/myapp'
license=('MIT')
depends=('glibc')
optdepends=('git: a history shared on a git remote')
provides=('myapp')
conflicts=('myapp')
source_x86_64=("myapp-${{pkgver}}-x86_64.tar.gz::https://github.com/acme/myapp/releases/download/v${{pkgver}}/myapp_${{pkgver}}_linux_amd64.tar.gz")
source_aarch64=("myapp-${{pkgver}}-aarch64.tar.gz::https://github.com/acme/myapp/releases/download/v${{pkgver}}/myapp_${{pkgver}}_linux_arm64.tar.gz")
sha256sums_x86_64=('{a}')
sha256sums_aarch64=('{b}')

package() {{
  install -Dm755 myapp "${{pkgdir}}/usr/bin/myapp"
  install -Dm644 LICENSE "${{pkgdir}}/usr/share/licenses/${{pkgname}}/LICENSE"
}}
"#,
        a = sha(&format!("linux-amd64-{v}")),
        b = sha(&format!("linux-arm64-{v}")),
    )
}

/// The `.SRCINFO` makepkg prints for [`pkgbuild`] (checked against the real makepkg below).
fn srcinfo(v: &str, epoch: Option<u32>) -> String {
    let epoch = epoch
        .map(|e| format!("\tepoch = {e}\n"))
        .unwrap_or_default();
    format!(
        "pkgbase = myapp-bin\n\tpkgdesc = Rolls every registry of a release back to a known-good version\n\tpkgver = {v}\n\tpkgrel = 1\n{epoch}\turl = https://github.com/acme/myapp\n\tarch = x86_64\n\tarch = aarch64\n\tlicense = MIT\n\tdepends = glibc\n\toptdepends = git: a history shared on a git remote\n\tprovides = myapp\n\tconflicts = myapp\n\tsource_x86_64 = myapp-{v}-x86_64.tar.gz::https://github.com/acme/myapp/releases/download/v{v}/myapp_{v}_linux_amd64.tar.gz\n\tsha256sums_x86_64 = {a}\n\tsource_aarch64 = myapp-{v}-aarch64.tar.gz::https://github.com/acme/myapp/releases/download/v{v}/myapp_{v}_linux_arm64.tar.gz\n\tsha256sums_aarch64 = {b}\n\npkgname = myapp-bin\n",
        a = sha(&format!("linux-amd64-{v}")),
        b = sha(&format!("linux-arm64-{v}")),
    )
}

/// One chart-releaser index entry.
fn chart_entry(chart: &str, v: &str, app: &str) -> String {
    format!(
        "  - annotations:\n      artifacthub.io/changes: |\n        - Release {v}\n    apiVersion: v2\n    appVersion: {app}\n    created: \"2026-01-{day:02}T10:00:00.{day:06}Z\"\n    description: A Helm chart for {chart}\n    digest: {digest}\n    name: {chart}\n    type: application\n    urls:\n    - https://github.com/acme/charts/releases/download/{chart}-{v}/{chart}-{v}.tgz\n    version: {v}\n",
        day = v.bytes().map(u32::from).sum::<u32>() % 28 + 1,
        digest = sha(&format!("{chart}-{v}")),
    )
}

/// A chart-releaser `index.yaml`: newest entries first, two charts.
fn helm_index(myapp: &[&str], worker: &[&str], generated: &str) -> String {
    let list = |chart: &str, vs: &[&str]| -> String {
        vs.iter()
            .rev()
            .map(|v| chart_entry(chart, v, &format!("v{v}")))
            .collect()
    };
    format!(
        "apiVersion: v1\nentries:\n  myapp:\n{}  myapp-worker:\n{}generated: \"{generated}\"\n",
        list("myapp", myapp),
        list("myapp-worker", worker)
    )
}

/// A kustomization with several images and comments.
fn kustomization(tag: &str) -> String {
    format!(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n# Production overlay of myapp.\nnamespace: myapp-prod\nresources:\n  - ../../base\n  - ingress.yaml\nimages:\n  # The API server: bumped by the release pipeline.\n  - name: registry.example.com/acme/myapp\n    newTag: {tag} # {{\"$imagepolicy\": \"flux-system:myapp\"}}\n  - name: registry.example.com/acme/myapp-migrate\n    newName: registry.example.com/acme/myapp-migrations\n    newTag: v0.9.3\n  - name: redis\n    newTag: \"7.2.4\" # pinned until the upgrade window\nlabels:\n  - pairs:\n      app.kubernetes.io/part-of: myapp\n"
    )
}

/// A Helm values file with the release's tag under `image.tag`.
fn values(tag: &str) -> String {
    format!(
        "# Values for myapp in production.\nreplicaCount: 3\n\nimage:\n  repository: registry.example.com/acme/myapp\n  # Set by the release pipeline.\n  tag: \"{tag}\"\n  pullPolicy: IfNotPresent\n\nworker:\n  image:\n    repository: registry.example.com/acme/myapp-worker\n    tag: \"v0.4.1\"\n\nresources:\n  limits:\n    memory: 512Mi\n"
    )
}

const VERSIONS: [&str; 3] = ["1.0.0", "1.1.0", "1.2.0"];

// ---------------------------------------------------------------------------------------------
// Scoop
// ---------------------------------------------------------------------------------------------

#[test]
fn scoop_manifest_is_restored_byte_for_byte_as_a_new_commit() {
    let root = tempfile::tempdir().expect("tempdir");
    let bucket = Remote::new(root.path(), "scoop-bucket", "main");
    bucket.publish(
        &[
            ("bucket/other.json", "{\n    \"version\": \"3.1.0\"\n}\n"),
            ("README.md", "# acme bucket\n"),
        ],
        "init",
    );
    let p = Project::new(&[entry("scoop", "acme/scoop-bucket", &bucket, "")], "");
    let mut commits = Vec::new();
    for v in VERSIONS {
        commits.push(bucket.publish(
            &[("bucket/myapp.json", &scoop_manifest(v))],
            &format!("myapp: Update to version {v}"),
        ));
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    let h = p.history_doc();
    assert_eq!(
        package(release(&h, "v1.1.0"), "scoop")["scoop"]["commit"],
        commits[1].as_str()
    );
    let check = p.expect(0, &["check"]);
    assert!(
        check.stdout.contains("fetched") && check.stdout.contains("acme/scoop-bucket"),
        "check reaches the bucket read-only: {}",
        check.show()
    );

    let dry = p.expect(
        0,
        &[
            "rollback",
            "--version",
            "v1.1.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    let steps = plan_steps(&dry.stdout);
    assert_eq!(steps.len(), 1, "{}", dry.stdout);
    assert_eq!(steps[0]["action"], "restore_manifest");
    assert_eq!(steps[0]["reference"], "bucket/myapp.json");
    assert!(
        steps[0]["notes"].to_string().contains("scoop update"),
        "the plan says how users are reached: {}",
        dry.stdout
    );
    assert_eq!(bucket.head(), commits[2], "a dry run changes nothing");

    let before = bucket.log();
    p.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(
        bucket.fresh("bucket/myapp.json").as_deref(),
        Some(scoop_manifest("1.1.0").as_str())
    );
    assert_eq!(
        bucket.fresh("bucket/other.json").as_deref(),
        Some("{\n    \"version\": \"3.1.0\"\n}\n")
    );
    let after = bucket.log();
    assert_eq!(after.len(), before.len() + 1, "one new commit");
    assert_eq!(&after[1..], &before[..], "never a force push");
    assert_eq!(
        bucket.message(&after[0]),
        "myapp: roll back to v1.1.0 (from v1.2.0)"
    );

    // Again: everything already matches.
    let again = p.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(bucket.log(), after, "{}", again.show());
}

/// A Scoop bucket's dry-run reads each commit with one `cat-file --batch` and remembers it for
/// the run (issue 30): the cache's five processes and one per commit read. It was 20.
#[test]
fn scoop_dry_run_starts_few_git_processes() {
    let root = tempfile::tempdir().expect("tempdir");
    let bucket = Remote::new(root.path(), "scoop-bucket", "main");
    let p = Project::new(&[entry("scoop", "acme/scoop-bucket", &bucket, "")], "");
    for v in VERSIONS {
        bucket.publish(
            &[("bucket/myapp.json", &scoop_manifest(v))],
            &format!("myapp: Update to version {v}"),
        );
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    let r = p.expect(0, &["-vv", "rollback", "--dry-run"]);
    let n = git_processes(&r.stderr);
    assert!(
        n <= 8,
        "a Scoop dry-run started {n} git processes\n{}",
        r.show()
    );
}

// ---------------------------------------------------------------------------------------------
// AUR, against pacman's own tools
// ---------------------------------------------------------------------------------------------

fn tool(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `makepkg --printsrcinfo` for `pkgbuild`, run as an unprivileged user (makepkg refuses root).
fn makepkg_printsrcinfo(pkgbuild: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("bagboy-makepkg-")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    std::fs::write(dir.path().join("PKGBUILD"), pkgbuild).expect("PKGBUILD");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    std::fs::set_permissions(
        dir.path().join("PKGBUILD"),
        std::fs::Permissions::from_mode(0o644),
    )
    .expect("chmod");
    let root = String::from_utf8_lossy(
        &std::process::Command::new("id")
            .arg("-u")
            .output()
            .expect("id")
            .stdout,
    )
    .trim()
        == "0";
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--reuid=nobody",
            "--regid=nogroup",
            "--clear-groups",
            "makepkg",
        ]);
        c
    } else {
        std::process::Command::new("makepkg")
    };
    cmd.arg("--printsrcinfo")
        .current_dir(dir.path())
        .env("HOME", &out);
    for var in ["BUILDDIR", "PKGDEST", "SRCDEST", "SRCPKGDEST", "LOGDEST"] {
        cmd.env(var, &out);
    }
    let o = cmd.output().expect("makepkg");
    assert!(
        o.status.success(),
        "makepkg --printsrcinfo failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("utf-8")
}

fn vercmp(a: &str, b: &str) -> i32 {
    let o = std::process::Command::new("vercmp")
        .args([a, b])
        .output()
        .expect("vercmp");
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("vercmp prints a number")
}

/// `epoch:pkgver-pkgrel` from a `.SRCINFO`'s pkgbase section.
fn full_version(srcinfo: &str) -> String {
    let field = |k: &str| {
        srcinfo
            .lines()
            .take_while(|l| !l.is_empty())
            .find_map(|l| l.strip_prefix(&format!("\t{k} = ")).map(str::to_owned))
    };
    let base = format!(
        "{}-{}",
        field("pkgver").expect("pkgver"),
        field("pkgrel").expect("pkgrel")
    );
    match field("epoch") {
        Some(e) => format!("{e}:{base}"),
        None => base,
    }
}

#[test]
fn aur_restores_pkgbuild_with_a_raised_epoch_and_the_srcinfo_makepkg_prints() {
    if !(tool("makepkg") && tool("vercmp")) {
        eprintln!(
            "SKIPPED: pacman's makepkg and vercmp are not installed (scripts/test.sh installs pacman-package-manager)"
        );
        return;
    }
    // The fixture's .SRCINFO is what makepkg prints, with and without an epoch.
    assert_eq!(
        makepkg_printsrcinfo(&pkgbuild("1.2.0", None)),
        srcinfo("1.2.0", None)
    );
    assert_eq!(
        makepkg_printsrcinfo(&pkgbuild("1.2.0", Some(2))),
        srcinfo("1.2.0", Some(2))
    );

    let root = tempfile::tempdir().expect("tempdir");
    let aur = Remote::new(root.path(), "myapp-bin", "master");
    let p = Project::new(&[entry("aur", "myapp-bin", &aur, "")], "");
    for v in VERSIONS {
        aur.publish(
            &[
                ("PKGBUILD", &pkgbuild(v, None)),
                (".SRCINFO", &srcinfo(v, None)),
            ],
            &format!("Update to {v}"),
        );
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    let dry = p.expect(0, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert!(dry.stdout.contains("epoch 0 → 1"), "{}", dry.show());
    assert!(dry.stdout.contains("must keep `epoch=1`"), "{}", dry.show());

    p.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    let restored = aur.fresh("PKGBUILD").expect("PKGBUILD");
    let info = aur.fresh(".SRCINFO").expect(".SRCINFO");
    assert_eq!(restored, pkgbuild("1.1.0", Some(1)));
    assert_eq!(
        info,
        makepkg_printsrcinfo(&restored),
        "the .SRCINFO makepkg prints"
    );
    let (now, bad) = (full_version(&info), full_version(&srcinfo("1.2.0", None)));
    assert_eq!(now, "1:1.1.0-1");
    assert_eq!(vercmp(&now, &bad), 1, "{now} must sort above {bad}");

    // A later release keeps the epoch; rolling back from it raises it again.
    aur.publish(
        &[
            ("PKGBUILD", &pkgbuild("1.3.0", Some(1))),
            (".SRCINFO", &srcinfo("1.3.0", Some(1))),
        ],
        "Update to 1.3.0",
    );
    p.expect(0, &["record", "--version", "v1.3.0"]);
    p.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    let restored = aur.fresh("PKGBUILD").expect("PKGBUILD");
    let info = aur.fresh(".SRCINFO").expect(".SRCINFO");
    assert_eq!(restored, pkgbuild("1.1.0", Some(2)));
    assert_eq!(info, makepkg_printsrcinfo(&restored));
    assert_eq!(vercmp(&full_version(&info), "1:1.3.0-1"), 1);
}

// ---------------------------------------------------------------------------------------------
// Helm chart repository
// ---------------------------------------------------------------------------------------------

#[test]
fn helm_index_loses_only_the_newer_entries_of_the_chart() {
    let root = tempfile::tempdir().expect("tempdir");
    let charts = Remote::new(root.path(), "charts", "gh-pages");
    let p = Project::new(
        &[entry(
            "helm-repo",
            "acme/charts",
            &charts,
            "    chart: myapp\n",
        )],
        "",
    );
    let worker = ["0.3.0", "0.4.0"];
    for (n, v) in VERSIONS.iter().enumerate() {
        charts.publish(
            &[(
                "index.yaml",
                &helm_index(
                    &VERSIONS[..=n],
                    &worker,
                    &format!("2026-01-0{}T10:00:00Z", n + 1),
                ),
            )],
            &format!("Update index.yaml for myapp-{v}"),
        );
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    // Someone releases the worker chart afterwards: kept.
    let live = helm_index(
        &VERSIONS,
        &["0.3.0", "0.4.0", "0.5.0"],
        "2026-01-05T10:00:00Z",
    );
    charts.publish(
        &[("index.yaml", &live)],
        "Update index.yaml for myapp-worker-0.5.0",
    );

    let dry = p.expect(
        0,
        &[
            "rollback",
            "--version",
            "v1.0.0",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    let steps = plan_steps(&dry.stdout);
    assert_eq!(
        steps[0]["action"], "remove_chart_versions",
        "{}",
        dry.stdout
    );
    let notes = steps[0]["notes"].to_string();
    assert!(notes.contains("downloadable by exact version"), "{notes}");

    p.expect(0, &["rollback", "--version", "v1.0.0", "--yes"]);
    let expected = live
        .replace(&chart_entry("myapp", "1.2.0", "v1.2.0"), "")
        .replace(&chart_entry("myapp", "1.1.0", "v1.1.0"), "");
    assert_ne!(expected, live);
    assert_eq!(
        charts.fresh("index.yaml").as_deref(),
        Some(expected.as_str())
    );
}

// ---------------------------------------------------------------------------------------------
// GitOps: a kustomization and a Helm values file
// ---------------------------------------------------------------------------------------------

#[test]
fn gitops_tag_is_set_in_a_kustomization_and_a_values_file() {
    let root = tempfile::tempdir().expect("tempdir");
    let deploy = Remote::new(root.path(), "deploy", "main");
    let helm = Remote::new(root.path(), "deploy-helm", "main");
    let kfile = "apps/myapp/overlays/prod/kustomization.yaml";
    let vfile = "charts/myapp/values-prod.yaml";
    let p = Project::new(
        &[
            entry(
                "gitops",
                "acme/deploy",
                &deploy,
                &format!("    file: {kfile}\n    image: registry.example.com/acme/myapp\n"),
            ),
            entry(
                "gitops",
                "acme/deploy-helm",
                &helm,
                &format!("    file: {vfile}\n    path: image.tag\n"),
            ),
        ],
        "",
    );
    for v in VERSIONS {
        deploy.publish(
            &[(kfile, &kustomization(&format!("v{v}")))],
            &format!("myapp v{v}"),
        );
        helm.publish(
            &[(vfile, &values(&format!("v{v}")))],
            &format!("myapp v{v}"),
        );
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    let dry = p.expect(0, &["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert!(
        dry.stdout.contains("newTag v1.2.0 → v1.1.0"),
        "{}",
        dry.show()
    );
    assert!(dry.stdout.contains("allow-tags"), "{}", dry.show());
    assert!(dry.stdout.contains("spec.suspend: true"), "{}", dry.show());

    p.expect(0, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(deploy.fresh(kfile), Some(kustomization("v1.1.0")));
    assert_eq!(helm.fresh(vfile), Some(values("v1.1.0")));
}

// ---------------------------------------------------------------------------------------------
// All or nothing: Docker and the four kinds, the last step fails
// ---------------------------------------------------------------------------------------------

#[test]
fn failing_rollback_across_docker_and_the_four_kinds_is_undone_everywhere() {
    const IMAGE: &str = "acme/myapp";
    let reg = TestRegistry::start(Auth::None);
    let root = tempfile::tempdir().expect("tempdir");
    let bucket = Remote::new(root.path(), "scoop-bucket", "main");
    let aur = Remote::new(root.path(), "myapp-bin", "master");
    let charts = Remote::new(root.path(), "charts", "gh-pages");
    let deploy = Remote::new(root.path(), "deploy", "main");
    let kfile = "apps/myapp/kustomization.yaml";
    let p = Project::new(
        &[
            format!(
                "  - format: docker\n    registry: {}\n    insecure: true\n",
                reg.repo(IMAGE)
            ),
            entry("scoop", "acme/scoop-bucket", &bucket, "    app: myapp\n"),
            entry("aur", "myapp-bin", &aur, ""),
            entry("helm-repo", "acme/charts", &charts, ""),
            entry(
                "gitops",
                "acme/deploy",
                &deploy,
                &format!("    file: {kfile}\n    image: registry.example.com/acme/myapp\n"),
            ),
        ],
        "rollback:\n  concurrency: 1\n",
    );
    let mut digests = Vec::new();
    for (n, v) in VERSIONS.iter().enumerate() {
        let tag = format!("v{v}");
        let d = reg.push_image(IMAGE, &tag);
        reg.put_tag(IMAGE, "latest", &d);
        digests.push(d);
        bucket.publish(&[("myapp.json", &scoop_manifest(v))], &format!("myapp {v}"));
        aur.publish(
            &[
                ("PKGBUILD", &pkgbuild(v, None)),
                (".SRCINFO", &srcinfo(v, None)),
            ],
            &format!("Update to {v}"),
        );
        charts.publish(
            &[(
                "index.yaml",
                &helm_index(&VERSIONS[..=n], &["0.4.0"], "2026-01-01T00:00:00Z"),
            )],
            &format!("myapp-{v}"),
        );
        deploy.publish(&[(kfile, &kustomization(&tag))], &format!("myapp {tag}"));
        p.expect(0, &["record", "--version", &tag]);
    }
    let heads = |r: &Remote| (r.head(), r.log().len());
    let before: Vec<_> = [&bucket, &aur, &charts, &deploy].map(heads).to_vec();
    deploy.reject_pushes();

    let run = p.expect(1, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert!(
        run.stderr.contains("protected branch") && run.stderr.contains("acme/deploy"),
        "the error names the registry and the remote's reason:\n{}",
        run.show()
    );
    // Every registry that changed was put back: two new commits each (rollback, undo).
    for (r, (head, len)) in [&bucket, &aur, &charts].iter().zip(&before) {
        let log = r.log();
        assert_eq!(log.len(), len + 2, "{}: {}", r.bare.display(), run.show());
        assert_eq!(&log[2], head, "never a force push");
        assert!(
            r.message(&log[0]).contains("undo rollback"),
            "{}",
            r.message(&log[0])
        );
    }
    assert_eq!(bucket.fresh("myapp.json"), Some(scoop_manifest("1.2.0")));
    assert_eq!(aur.fresh("PKGBUILD"), Some(pkgbuild("1.2.0", None)));
    assert_eq!(aur.fresh(".SRCINFO"), Some(srcinfo("1.2.0", None)));
    assert_eq!(
        charts.fresh("index.yaml"),
        Some(helm_index(&VERSIONS, &["0.4.0"], "2026-01-01T00:00:00Z")),
        "the removed entries are back, byte for byte"
    );
    assert_eq!(deploy.head(), before[3].0);
    assert_eq!(deploy.fresh(kfile), Some(kustomization("v1.2.0")));
    assert_eq!(
        reg.tag_digest(IMAGE, "latest").as_deref(),
        Some(digests[2].as_str())
    );
    assert_eq!(
        reg.tag_digest(IMAGE, "v1.2.0").as_deref(),
        Some(digests[2].as_str())
    );
    let h = p.history();
    assert!(h.contains("rollback_failed"), "{h}");
}

// ---------------------------------------------------------------------------------------------
// recover: a journal whose undo could not run, finished after a check of every step
// ---------------------------------------------------------------------------------------------

#[test]
fn recover_vets_the_journal_then_undoes_a_rollback_whose_undo_failed() {
    let root = tempfile::tempdir().expect("tempdir");
    let charts = Remote::new(root.path(), "charts", "gh-pages");
    let deploy = Remote::new(root.path(), "deploy", "main");
    let vfile = "values.yaml";
    let p = Project::new(
        &[
            entry("helm-repo", "acme/charts", &charts, ""),
            entry(
                "gitops",
                "acme/deploy",
                &deploy,
                &format!("    file: {vfile}\n    path: image.tag\n"),
            ),
        ],
        "rollback:\n  concurrency: 1\n",
    );
    for (n, v) in VERSIONS.iter().enumerate() {
        charts.publish(
            &[(
                "index.yaml",
                &helm_index(&VERSIONS[..=n], &["0.4.0"], "2026-01-01T00:00:00Z"),
            )],
            &format!("myapp-{v}"),
        );
        deploy.publish(&[(vfile, &values(&format!("v{v}")))], &format!("v{v}"));
        p.expect(0, &["record", "--version", &format!("v{v}")]);
    }
    let index_before = charts.fresh("index.yaml");
    // The chart repository takes bagboy's rollback commit, then freezes; the deploy
    // repository refuses every push.
    let hook = charts.bare.join("hooks/pre-receive");
    std::fs::create_dir_all(hook.parent().expect("hooks")).expect("mkdir");
    std::fs::write(
        &hook,
        "#!/bin/sh\nif [ -f once ]; then echo 'repository frozen' >&2; exit 1; fi\ntouch once\n",
    )
    .expect("hook");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    deploy.reject_pushes();

    let run = p.expect(3, &["rollback", "--version", "v1.1.0", "--yes"]);
    assert_ne!(charts.fresh("index.yaml"), index_before, "{}", run.show());
    std::fs::remove_file(&hook).expect("unfreeze");

    // A journal whose content to commit was changed is refused before anything is done.
    let jdir = p.dir.path().join(".bagboy/journal");
    let journal = std::fs::read_dir(&jdir)
        .expect("journal dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .expect("a journal");
    let original = std::fs::read_to_string(&journal).expect("journal");
    let forged = original.replace("myapp-worker-0.4.0.tgz", "evil-0.4.0.tgz");
    assert_ne!(forged, original);
    std::fs::write(&journal, &forged).expect("forge");
    let refused = p.run(&["recover", "--yes"]);
    assert_ne!(refused.code, Some(0), "{}", refused.show());
    assert_eq!(refused.code, Some(2), "{}", refused.show());
    assert!(
        refused.stderr.contains("would not plan")
            && refused.stderr.contains("acme/charts index.yaml"),
        "the refusal names the registry and the file: {}",
        refused.show()
    );
    assert_ne!(charts.fresh("index.yaml"), index_before, "nothing was done");

    std::fs::write(&journal, &original).expect("restore journal");
    p.expect(0, &["recover", "--yes"]);
    assert_eq!(
        charts.fresh("index.yaml"),
        index_before,
        "the entries are back"
    );
    assert_eq!(deploy.fresh(vfile), Some(values("v1.2.0")));
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_values_exit_2_at_their_position_and_unknown_keys_warn() {
    let p = Project::new(
        &["  - format: gitops\n    registry: acme/deploy\n    file: ../etc/passwd\n    image: x\n".into()],
        "",
    );
    let r = p.run(&["rollback", "--version", "v1.0.0", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("bagboy.yaml:5:11"),
        "file:line:col of `file`: {}",
        r.show()
    );

    let p = Project::new(
        &["  - format: helm-repo\n    registry: acme/charts\n    chart: myapp\n    colour: blue\n".into()],
        "",
    );
    let r = p.run(&["rollback", "--version", "v1.0.0", "--dry-run"]);
    assert!(
        r.stderr.contains("bagboy.yaml:6:5") && r.stderr.contains("unknown registry key `colour`"),
        "the unknown key is a warning at its position: {}",
        r.show()
    );

    let p = Project::new(
        &["  - format: aur\n    registry: ../myapp-bin\n".into()],
        "",
    );
    let r = p.run(&["rollback", "--version", "v1.0.0", "--dry-run"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(r.stderr.contains("not an AUR package name"), "{}", r.show());
}

#[test]
fn credentials_never_reach_output() {
    let p = Project::new(
        &["  - format: scoop\n    registry: acme/scoop-bucket\n    remote: \"https://bot:hunter2pass@127.0.0.1:9/acme/scoop-bucket.git\"\n".into()],
        "",
    );
    let out = isolated(p.dir.path())
        .env("GITHUB_TOKEN", "ghp_TOPSECRET0123456789")
        .args(["-vvv", "record", "--version", "v1.0.0"])
        .output()
        .expect("bagboy");
    let r = Run::of(out);
    assert_eq!(r.code, Some(1), "unreachable: {}", r.show());
    let all = r.show();
    assert!(
        !all.contains("ghp_TOPSECRET") && !all.contains("hunter2pass"),
        "{all}"
    );
    assert!(
        all.contains("https://***@127.0.0.1:9/acme/scoop-bucket.git")
            && all.contains("Scoop bucket acme/scoop-bucket"),
        "the error names the registry and the masked remote: {all}"
    );
}
