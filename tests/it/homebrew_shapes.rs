//! Homebrew as real taps are, through the binary: formulas and casks with the shapes found in
//! real taps (multi-line `license` arrays, comments, several `include`s, `revision`, `head`,
//! `bottle`, resources, `livecheck`, `tag:` URLs, comma-versioned casks), at every place
//! Homebrew looks (`Formula/l/`, `Formula/lib/`, the root, `Casks/font/font-c/`). Every restored
//! file must parse (`ruby -c` too when ruby is installed) and differ from the target only by
//! `version_scheme`. Fixtures are written here with those shapes; no third-party file is copied.

use crate::support;

use std::process::Command;

use serde_json::Value;
use support::cli::{Project, Run};
use support::tap::TestTap;

struct Tap {
    tap: TestTap,
    p: Project,
}

impl Tap {
    fn new(name_key: &str) -> Tap {
        let tap = TestTap::new();
        let p = Project::new();
        p.write(
            "bagboy.yaml",
            &format!(
                "name: myapp\nregistries:\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n{name_key}",
                tap.url()
            ),
        );
        Tap { tap, p }
    }

    fn run(&self, args: &[&str]) -> Run {
        let p = self.p.path();
        let out = support::cli::isolated(p)
            .args(args)
            .output()
            .expect("run bagboy");
        Run::of(out)
    }

    /// Commit `content` at `path` for release `v`, push, record it.
    fn release(&self, path: &str, content: &str, v: &str) {
        self.tap.commit_file(path, content, &format!("myapp {v}"));
        self.tap.push();
        let run = self.run(&["record", "--version", v]);
        assert_eq!(run.code, Some(0), "record {v}: {}", run.show());
    }

    fn file(&self, path: &str) -> String {
        self.tap.file_in_fresh_clone(path).unwrap_or_default()
    }
}

/// The file without its top-level `version_scheme` line.
fn strip_scheme(s: &str) -> String {
    s.lines()
        .filter(|l| !(l.starts_with("  version_scheme ") || l.starts_with("\tversion_scheme ")))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn ruby_ok(text: &str) {
    let src = bagboy::registry::homebrew::ruby::Source::parse(text);
    assert!(src.is_ok(), "bagboy cannot parse its own output: {text}");
    if which("ruby") {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f.rb");
        std::fs::write(&f, text).unwrap();
        let out = Command::new("ruby").arg("-c").arg(&f).output().unwrap();
        assert!(
            out.status.success(),
            "ruby -c: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn which(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A formula with the awkward shapes of real ones (git, zsh, util-linux): includes, comments
/// before stanzas, a multi-line `license any_of:` array, `revision`, `head`, `bottle`,
/// resources, `livecheck`, `on_linux`, a method and a test.
fn awkward_formula(v: &str) -> String {
    format!(
        r##"require "language/perl"

class Myapp < Formula
  include Language::Perl::Shebang
  include Language::Python::Virtualenv

  desc "Rolls releases back"
  # The project moved its homepage in 2024.
  homepage "https://acme.example/myapp"
  # Mirrors are in the livecheck block.
  url "https://acme.example/dl/myapp-{v}.tar.xz"
  sha256 "{sha}"
  license any_of: [
    "GPL-2.0-only",
    "MIT", # for the bundled helper
  ]
  revision 1
  head "https://github.com/acme/myapp.git", branch: "main"

  livecheck do
    url "https://acme.example/dl/"
    regex(/href=.*?myapp[._-]v?(\d+(?:\.\d+)+)\.t/i)
  end

  bottle do
    sha256 cellar: :any, arm64_sonoma: "{sha}"
  end

  depends_on "pkgconf" => :build

  on_linux do
    depends_on "zlib"
  end

  resource "helper" do
    url "https://acme.example/dl/helper-0.3.tar.gz"
    sha256 "{sha}"
  end

  def install
    system "make", "prefix=#{{prefix}}", "install"
  end

  test do
    assert_match "{v}", shell_output("#{{bin}}/myapp --version")
  end
end
"##,
        sha = format!("{:0>64}", v.replace('.', ""))
    )
}

fn tag_formula(v: &str) -> String {
    format!(
        "class Myapp < Formula\n  desc \"Rolls releases back\"\n  homepage \"https://acme.example\"\n  url \"https://github.com/acme/myapp.git\",\n      tag:      \"v{v}\",\n      revision: \"{rev:0>40}\"\n  license \"Apache-2.0\"\n  head \"https://github.com/acme/myapp.git\", branch: \"main\"\n\n  def install\n    bin.install \"myapp\"\n  end\nend\n",
        rev = v.replace('.', "")
    )
}

/// Roll back from v1.2.0 to v1.1.0 and check the restored file.
fn roll_back_and_check(t: &Tap, path: &str, target: &str) -> Run {
    let run = t.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let restored = t.file(path);
    ruby_ok(&restored);
    assert_eq!(
        strip_scheme(&restored),
        strip_scheme(target),
        "only version_scheme differs"
    );
    run
}

#[test]
fn awkward_shapes_at_sharded_paths_keep_every_byte() {
    for path in ["Formula/m/myapp.rb", "Formula/lib/myapp.rb", "myapp.rb"] {
        let t = Tap::new("");
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            t.release(path, &awkward_formula(v), &format!("v{v}"));
        }
        let target = awkward_formula("1.1.0");
        roll_back_and_check(&t, path, &target);
        let restored = t.file(path);
        assert!(
            restored.contains("    \"MIT\", # for the bundled helper\n  ]\n  revision 1\n  version_scheme 1\n  head "),
            "{path}: placed after license and revision, before head:\n{restored}"
        );
        assert_eq!(restored.matches("include Language").count(), 2);
    }
}

#[test]
fn versions_from_tag_urls_are_recorded_and_rolled_back() {
    let t = Tap::new("");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        t.release("Formula/myapp.rb", &tag_formula(v), &format!("v{v}"));
    }
    let run = roll_back_and_check(&t, "Formula/myapp.rb", &tag_formula("1.1.0"));
    assert!(run.stdout.contains("version_scheme"), "{}", run.show());
}

#[test]
fn an_existing_version_scheme_is_raised_in_place() {
    let t = Tap::new("");
    let with = |v: &str, n: u32| {
        awkward_formula(v).replace(
            "  revision 1\n",
            &format!("  revision 1\n  version_scheme {n}\n"),
        )
    };
    t.release("Formula/myapp.rb", &with("1.0.0", 1), "v1.0.0");
    t.release("Formula/myapp.rb", &with("1.1.0", 1), "v1.1.0");
    t.release("Formula/myapp.rb", &with("1.2.0", 1), "v1.2.0");
    roll_back_and_check(&t, "Formula/myapp.rb", &with("1.1.0", 1));
    assert_eq!(t.file("Formula/myapp.rb"), with("1.1.0", 2));
}

fn cask(v: &str) -> String {
    format!(
        "cask \"myapp\" do\n  version \"{v},224270\"\n  sha256 \"{sha:0>64}\"\n\n  url \"https://acme.example/dl/MyApp-#{{version.csv.first}}-#{{version.csv.second}}.dmg\"\n  name \"MyApp\"\n  desc \"Rolls releases back\"\n  homepage \"https://acme.example\"\n\n  auto_updates true\n\n  app \"MyApp.app\"\nend\n",
        sha = v.replace('.', "")
    )
}

#[test]
fn comma_versioned_casks_deep_in_casks_are_found_and_restored() {
    let t = Tap::new("    cask: myapp\n");
    let path = "Casks/font/font-m/myapp.rb";
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        t.release(path, &cask(v), &format!("v{v}"));
    }
    let list = t.run(&["versions", "list", "--format", "json"]);
    let doc: Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(doc["current"], "v1.2.0", "{}", list.stdout);
    let hist = t.p.history();
    assert!(
        hist.contains("version: \"1.2.0,224270\""),
        "the full cask version is kept:\n{hist}"
    );
    let plan = t.run(&["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert_eq!(plan.code, Some(0), "{}", plan.show());
    assert!(
        plan.stdout.contains("--greedy"),
        "auto_updates is named: {}",
        plan.show()
    );
    let run = t.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    let restored = t.file(path);
    assert_eq!(restored, cask("1.1.0"), "a cask is restored as it was");
    ruby_ok(&restored);
}

#[test]
fn a_formula_and_a_cask_of_one_name_need_the_config_to_say_which() {
    let setup = |key: &str| {
        let t = Tap::new(key);
        for v in ["1.0.0", "1.1.0", "1.2.0"] {
            t.tap
                .commit_file("Casks/myapp.rb", &cask(v), &format!("cask {v}"));
            t.tap.commit_file(
                "Formula/myapp.rb",
                &awkward_formula(v).replace("  revision 1\n", "  revision 1\n\n  disable! date: \"2025-06-01\", because: \"moved to a cask\"\n"),
                &format!("formula {v}"),
            );
            t.tap.push();
            let run = t.run(&["record", "--version", &format!("v{v}")]);
            if !key.is_empty() {
                assert_eq!(run.code, Some(0), "{}", run.show());
            } else {
                assert_eq!(run.code, Some(2), "ambiguous: {}", run.show());
                assert!(
                    run.stderr.contains("Formula/myapp.rb")
                        && run.stderr.contains("Casks/myapp.rb"),
                    "both files named: {}",
                    run.show()
                );
                return t;
            }
        }
        t
    };
    setup("");
    // `cask:` picks the cask: the cask is rolled back, the disabled formula left alone.
    let t = setup("    cask: myapp\n");
    let formula_before = t.file("Formula/myapp.rb");
    let run = t.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert_eq!(t.file("Casks/myapp.rb"), cask("1.1.0"));
    assert_eq!(t.file("Formula/myapp.rb"), formula_before);
    // `formula:` picks the formula, and the plan says it is disabled.
    let t = setup("    formula: myapp\n");
    let plan = t.run(&["rollback", "--version", "v1.1.0", "--dry-run"]);
    assert_eq!(plan.code, Some(0), "{}", plan.show());
    assert!(plan.stdout.contains("Formula/myapp.rb"), "{}", plan.show());
    assert!(plan.stdout.contains("disable!"), "{}", plan.show());
}

#[test]
fn a_next_release_without_the_rollbacks_scheme_is_warned() {
    let t = Tap::new("");
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        t.release("Formula/myapp.rb", &awkward_formula(v), &format!("v{v}"));
    }
    let run = t.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    t.tap.sync();
    // The release tool regenerates the formula without version_scheme.
    t.tap
        .commit_file("Formula/myapp.rb", &awkward_formula("1.2.1"), "myapp 1.2.1");
    t.tap.push();
    let run = t.run(&["record", "--version", "v1.2.1", "--format", "json"]);
    assert_eq!(run.code, Some(0), "{}", run.show());
    assert!(
        run.stderr.contains("version_scheme"),
        "warned on stderr: {}",
        run.show()
    );
    let doc: Value = serde_json::from_str(&run.stdout).unwrap();
    let warnings = doc["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("lower than the 1")),
        "{doc:#}"
    );
}

#[test]
fn a_target_that_is_not_ruby_is_refused_and_nothing_is_pushed() {
    let t = Tap::new("");
    let broken =
        |v: &str| awkward_formula(v).replace("  license any_of: [\n", "  license any_of: [[\n");
    t.release("Formula/myapp.rb", &awkward_formula("1.0.0"), "v1.0.0");
    // The tap held a broken file for 1.1.0 (someone pushed it by hand).
    t.tap
        .commit_file("Formula/myapp.rb", &broken("1.1.0"), "myapp 1.1.0");
    t.tap.push();
    // record cannot read its version either: it says so.
    let run = t.run(&["record", "--version", "v1.1.0"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    t.release("Formula/myapp.rb", &awkward_formula("1.2.0"), "v1.2.0");
    // Name the broken commit as the target by hand.
    let full = t.tap.log().into_iter().nth(1).unwrap();
    let mut hist = t.p.history();
    hist.push_str(&format!(
        "  - version: v1.1.0\n    timestamp: \"2020-01-01T00:00:00Z\"\n    status: superseded\n    packages:\n      - format: brew\n        registry: acme/homebrew-tap\n        formula: myapp\n        tap_commit: \"{full}\"\n"
    ));
    t.p.write_history(&hist);
    let head = t.tap.head();
    let run = t.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(run.code, Some(2), "{}", run.show());
    assert!(run.stderr.contains("not Ruby"), "{}", run.show());
    assert_eq!(t.tap.head(), head, "nothing pushed");
}
