//! What consumers see, checked with the clients they run: skopeo for Docker tags, ruby and a
//! fresh clone for the tap. Versions real projects use (two-part, CalVer with leading zeros,
//! font-style) recorded, listed, compared, pruned and rolled back end to end (issue 24).

use crate::support;

use std::process::Command;

use serde_json::Value;
use support::cli::{isolated, Project, Run};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

const FORMULA: &str = "Formula/myapp.rb";
const REPO: &str = "acme/app";

struct World {
    reg: TestRegistry,
    tap: TestTap,
    p: Project,
    digests: std::collections::BTreeMap<String, String>,
}

impl World {
    fn new() -> World {
        let reg = TestRegistry::start(Auth::None);
        let tap = TestTap::new();
        let p = Project::new();
        std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
                reg.repo(REPO),
                tap.url()
            ),
        );
        World {
            reg,
            tap,
            p,
            digests: Default::default(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Run::of(isolated(self.p.path()).args(args).output().unwrap())
    }

    /// Publish `v` to the registry (its tag and `latest`) and the tap, then record it.
    fn release(&mut self, v: &str) {
        let d = self.reg.push_image(REPO, v);
        self.reg.put_tag(REPO, "latest", &d);
        // The release pipeline works on top of whatever bagboy pushed to the tap.
        if !self.digests.is_empty() {
            self.tap.sync();
        }
        self.digests.insert(v.to_string(), d);
        self.tap.commit_file(
            FORMULA,
            &goreleaser_formula("myapp", v.trim_start_matches('v')),
            &format!("Brew formula update for myapp version {v}"),
        );
        self.tap.push();
        let r = self.run(&["record", "--version", v]);
        assert_eq!(r.code, Some(0), "record {v}: {}", r.show());
    }

    /// The digest `latest` has, as skopeo (what users' tooling runs) reads it.
    fn skopeo_latest(&self) -> String {
        let out = Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                "--raw",
                &format!("docker://{}:latest", self.reg.repo(REPO)),
            ])
            .output()
            .expect("skopeo (the test command installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out.stdout)))
    }

    /// The formula a user's `brew` would read: from a fresh clone, its version checked by ruby.
    fn formula_version(&self) -> (String, Option<String>) {
        let text = self.tap.file_in_fresh_clone(FORMULA).expect("formula");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("myapp.rb");
        std::fs::write(&path, &text).unwrap();
        // A stand-in `Formula` base class so ruby evaluates the real file's DSL calls.
        let script = r#"
class Formula
  def self.method_missing(*a, &b); end
  def self.version(v = nil); @v = v if v; @v; end
  def self.version_scheme(n = nil); @s = n if n; @s; end
  def self.on_macos(&b); end
  def self.on_linux(&b); end
end
module Hardware; module CPU; def self.intel?; true; end; def self.arm?; false; end; end; end
load ARGV[0]
puts Myapp.version
puts Myapp.version_scheme.to_s
"#;
        let out = Command::new("ruby")
            .args(["-e", script, path.to_str().unwrap()])
            .output()
            .expect("ruby");
        assert!(
            out.status.success(),
            "{}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut lines = s.lines();
        let v = lines.next().unwrap_or_default().to_string();
        let scheme = lines.next().filter(|l| !l.is_empty()).map(str::to_string);
        (v, scheme)
    }
}

#[test]
fn two_part_and_calver_versions_work_end_to_end() {
    let mut w = World::new();
    for v in ["2.9", "3.9", "3.10"] {
        w.release(v);
    }
    // Listed newest first, as written (never as the float 3.1).
    let list = w.run(&["versions", "list", "--format", "json"]);
    assert_eq!(list.code, Some(0), "{}", list.show());
    let doc: Value = serde_json::from_str(&list.stdout).unwrap();
    let versions: Vec<&str> = doc["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["3.10", "3.9", "2.9"], "{doc:#}");
    let cmp = w.run(&["versions", "compare", "3.9", "3.10"]);
    assert_eq!(cmp.code, Some(0), "{}", cmp.show());
    // A typo gets the nearest recorded versions.
    let typo = w.run(&["rollback", "--version", "3.O", "--dry-run"]);
    assert_eq!(typo.code, Some(2), "{}", typo.show());
    assert!(typo.stderr.contains("did you mean"), "{}", typo.show());

    // 3.10 is newer than 3.9 (numbers, not text): the default target is 3.9, and the formula
    // gets a version_scheme so `brew upgrade` takes users from 3.10 down to 3.9.
    let r = w.run(&["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(r.stdout.contains("3.10 → 3.9"), "{}", r.show());
    assert_eq!(w.skopeo_latest(), w.digests["3.9"]);
    assert_eq!(
        w.formula_version(),
        ("3.9".to_string(), Some("1".to_string()))
    );

    // CalVer with leading zeros, recorded after: 2024.04.05 then 2024.10.01, rolled back.
    w.release("2024.04.05");
    w.release("2024.10.01");
    let h = w.p.history();
    assert!(h.contains("\"2024.04.05\""), "written as given: {h}");
    let r = w.run(&["rollback", "--version", "2024.04.05", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert_eq!(w.skopeo_latest(), w.digests["2024.04.05"]);
    let (v, scheme) = w.formula_version();
    assert_eq!(v, "2024.04.05");
    assert!(
        scheme.is_some(),
        "older than 2024.10.01: users are downgraded"
    );
    // Pruned by record order, never by parsing.
    let r = w.run(&["versions", "prune", "--keep", "2", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let list = w.run(&["versions", "list"]);
    assert!(list.stdout.contains("2024.04.05"), "{}", list.show());
}

#[test]
fn a_history_written_by_hand_with_bare_numbers_keeps_them_as_written() {
    let p = Project::new();
    p.write("bagboy.yaml", "name: fonts\n");
    // `version: 0.921` and `3.10` unquoted are numbers to YAML; bagboy reads the text.
    p.write_history(
        "deployments:\n- version: 3.10\n  timestamp: 2026-02-02T00:00:00Z\n  status: deployed\n- version: 0.921\n  timestamp: 2026-02-01T00:00:00Z\n  status: superseded\n",
    );
    let r = Run::of(
        isolated(p.path())
            .args(["versions", "list"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout.contains("3.10") && r.stdout.contains("0.921") && !r.stdout.contains(" 3.1 "),
        "{}",
        r.show()
    );
}

#[test]
fn a_plain_http_registry_on_loopback_needs_no_insecure_flag() {
    // As Docker does for 127.0.0.0/8: no `insecure: true`, and it just works.
    let reg = TestRegistry::start(Auth::None);
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: docker\n    registry: \"{}\"\n",
            reg.repo(REPO)
        ),
    );
    for v in ["v1.0.0", "v1.1.0"] {
        let d = reg.push_image(REPO, v);
        reg.put_tag(REPO, "latest", &d);
        let r = Run::of(
            isolated(p.path())
                .args(["record", "--version", v])
                .output()
                .unwrap(),
        );
        assert_eq!(r.code, Some(0), "{}", r.show());
    }
    let r = Run::of(
        isolated(p.path())
            .args(["rollback", "--yes"])
            .output()
            .unwrap(),
    );
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(!r.stderr.contains("InvalidContentType"), "{}", r.show());
}

#[test]
fn a_release_that_moved_from_cask_to_formula_is_said_and_recorded_by_kind() {
    use support::tap::{cask, git};
    let tap = TestTap::new();
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: crush\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
            tap.url()
        ),
    );
    let run = |args: &[&str]| Run::of(isolated(p.path()).args(args).output().unwrap());
    tap.commit_file(
        "Casks/crush.rb",
        &cask("crush", "0.1.3"),
        "crush 0.1.3 (cask)",
    );
    tap.push();
    assert_eq!(run(&["record", "--version", "0.1.3"]).code, Some(0));
    // The next release is a formula; the cask is gone.
    let work = tap.root().join("work");
    git(&work, &["rm", "--quiet", "Casks/crush.rb"]);
    tap.commit_file(
        "Formula/crush.rb",
        &goreleaser_formula("crush", "0.1.4"),
        "crush 0.1.4 (formula)",
    );
    tap.push();
    let r = run(&["record", "--version", "0.1.4"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let h = p.history();
    assert!(
        h.contains("kind: \"cask\"") && h.contains("kind: \"formula\""),
        "{h}"
    );
    // Rolled back to 0.1.3: the cask comes back, and the plan says the formula stays.
    let dry = run(&["rollback", "--dry-run"]);
    assert_eq!(dry.code, Some(0), "{}", dry.show());
    assert!(
        dry.stdout.contains("also has formula crush") && dry.stdout.contains("0.1.4"),
        "{}",
        dry.show()
    );
    let r = run(&["rollback", "--yes"]);
    assert_eq!(r.code, Some(0), "{}", r.show());
    let restored = tap
        .file_in_fresh_clone("Casks/crush.rb")
        .expect("cask back");
    assert!(restored.contains("version \"0.1.3\""), "{restored}");
}

#[test]
fn a_tap_with_a_formula_and_a_cask_of_one_name_and_no_key_is_refused() {
    use support::tap::cask;
    let tap = TestTap::new();
    let p = Project::new();
    std::fs::create_dir_all(p.path().join("docker-config")).unwrap();
    p.write(
        "bagboy.yaml",
        &format!(
            "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n",
            tap.url()
        ),
    );
    let run = |args: &[&str]| Run::of(isolated(p.path()).args(args).output().unwrap());
    for v in ["1.0.0", "1.1.0"] {
        tap.commit_file(
            FORMULA,
            &goreleaser_formula("myapp", v),
            &format!("formula {v}"),
        );
        tap.commit_file("Casks/myapp.rb", &cask("myapp", v), &format!("cask {v}"));
        tap.push();
    }
    let r = run(&["record", "--version", "1.1.0"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("Formula/myapp.rb") && r.stderr.contains("Casks/myapp.rb"),
        "{}",
        r.show()
    );
    // A history written before (or by hand): the rollback refuses too, naming both files.
    let head = support::tap::git(&tap.root().join("work"), &["rev-parse", "HEAD"]);
    p.write_history(&format!(
        "deployments:\n- version: \"1.1.0\"\n  timestamp: 2026-02-02T00:00:00Z\n  status: deployed\n  packages:\n  - format: brew\n    registry: acme/homebrew-tap\n    formula: myapp\n    tap_commit: {head}\n- version: \"1.0.0\"\n  timestamp: 2026-02-01T00:00:00Z\n  status: superseded\n"
    ));
    let before = tap.head();
    let r = run(&["rollback", "--yes"]);
    assert_eq!(r.code, Some(2), "{}", r.show());
    assert!(
        r.stderr.contains("Formula/myapp.rb") && r.stderr.contains("Casks/myapp.rb")
            || r.stdout.contains("Formula/myapp.rb") && r.stdout.contains("Casks/myapp.rb"),
        "{}",
        r.show()
    );
    assert_eq!(tap.head(), before, "nothing pushed");
}
