//! A real Homebrew tap for tests: a bare `main` repository plus a work clone acting as "someone else".
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub struct TestTap {
    root: TempDir,
    pub remote: PathBuf,
    pub work: PathBuf,
}

/// git with a fixed identity and no influence from the developer's configuration.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "Someone Else")
        .env("GIT_AUTHOR_EMAIL", "else@example.com")
        .env("GIT_COMMITTER_NAME", "Someone Else")
        .env("GIT_COMMITTER_EMAIL", "else@example.com")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl TestTap {
    pub fn new() -> TestTap {
        let root = tempfile::tempdir().expect("tempdir");
        let remote = root.path().join("homebrew-tap.git");
        let work = root.path().join("work");
        git(
            root.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "-b",
                "main",
                "homebrew-tap.git",
            ],
        );
        git(root.path(), &["init", "--quiet", "-b", "main", "work"]);
        let url = format!("file://{}", remote.display());
        git(&work, &["remote", "add", "origin", &url]);
        TestTap { root, remote, work }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.remote.display())
    }

    /// A per-test cache directory (what `BAGBOY_CACHE_DIR` would point at).
    pub fn cache_dir(&self) -> PathBuf {
        self.root.path().join("cache")
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Commit in the work clone (not pushed); returns the commit id.
    pub fn commit_file(&self, path: &str, content: &str, msg: &str) -> String {
        let file = self.work.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&file, content).expect("write");
        git(&self.work, &["add", "--", path]);
        git(&self.work, &["commit", "--quiet", "-m", msg]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn push(&self) {
        git(
            &self.work,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
    }

    /// Bring the work clone up to the remote (after bagboy pushed).
    pub fn sync(&self) {
        git(&self.work, &["fetch", "--quiet", "origin"]);
        git(&self.work, &["reset", "--quiet", "--hard", "origin/main"]);
    }

    pub fn clone_fresh(&self) -> PathBuf {
        let n = std::fs::read_dir(self.root.path()).map_or(0, |d| d.count());
        let dir = self.root.path().join(format!("fresh-{n}"));
        let dest = dir.to_string_lossy().into_owned();
        git(
            self.root.path(),
            &["clone", "--quiet", "-b", "main", &self.url(), &dest],
        );
        dir
    }

    pub fn file_in_fresh_clone(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.clone_fresh().join(path)).ok()
    }

    /// Commits on the remote `main`, newest first.
    pub fn log(&self) -> Vec<String> {
        git(&self.remote, &["log", "--format=%H", "main"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn head(&self) -> String {
        git(&self.remote, &["rev-parse", "main"])
    }

    pub fn is_ancestor(&self, a: &str, b: &str) -> bool {
        Command::new("git")
            .current_dir(&self.remote)
            .args(["merge-base", "--is-ancestor", a, b])
            .status()
            .expect("git merge-base")
            .success()
    }

    /// Make the next push to the remote lose a race: a `pre-receive` hook first pushes the
    /// work clone's `HEAD`, so the incoming update no longer matches and is rejected.
    pub fn race_next_push(&self) {
        use std::os::unix::fs::PermissionsExt;
        let hook = self.remote.join("hooks").join("pre-receive");
        let marker = self.root.path().join("raced");
        let script = format!(
            "#!/bin/sh\n\
             [ -e '{marker}' ] && exit 0\n\
             touch '{marker}'\n\
             unset GIT_DIR GIT_QUARANTINE_PATH GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES\n\
             cd '{work}' && git push -q origin HEAD:refs/heads/main >/dev/null 2>&1\n\
             exit 0\n",
            marker = marker.display(),
            work = self.work.display()
        );
        std::fs::write(&hook, script).expect("write hook");
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    pub fn raced(&self) -> bool {
        self.root.path().join("raced").exists()
    }

    pub fn tree_of(&self, commit: &str) -> String {
        git(&self.remote, &["rev-parse", &format!("{commit}^{{tree}}")])
    }

    pub fn author_of(&self, commit: &str) -> String {
        git(
            &self.remote,
            &["log", "-1", "--format=%an <%ae>|%cn <%ce>", commit],
        )
    }
}

/// A formula shaped like the ones GoReleaser writes: top-level version, per-platform url/sha256.
pub fn goreleaser_formula(name: &str, version: &str) -> String {
    let class = class_name(name);
    let sha = |arch: &str| {
        // Distinct per version and platform, 64 hex characters like the real thing.
        let seed = format!("{name}{version}{arch}");
        let mut h: u64 = 1469598103934665603;
        for b in seed.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
        }
        format!("{h:016x}").repeat(4)
    };
    let url = |os: &str, arch: &str| {
        format!("https://github.com/acme/{name}/releases/download/v{version}/{name}_{version}_{os}_{arch}.tar.gz")
    };
    format!(
        r#"# typed: false
# frozen_string_literal: true

# This file was generated by GoReleaser. DO NOT EDIT.
class {class} < Formula
  desc "Rolls releases back"
  homepage "https://github.com/acme/{name}"
  version "{version}"
  license "MIT"

  on_macos do
    if Hardware::CPU.intel?
      url "{mi}"
      sha256 "{mis}"
    end
    if Hardware::CPU.arm?
      url "{ma}"
      sha256 "{mas}"
    end
  end

  on_linux do
    if Hardware::CPU.intel? && Hardware::CPU.is_64_bit?
      url "{li}"
      sha256 "{lis}"
    end
    if Hardware::CPU.arm? && Hardware::CPU.is_64_bit?
      url "{la}"
      sha256 "{las}"
    end
  end

  def install
    bin.install "{name}"
  end
end
"#,
        mi = url("darwin", "amd64"),
        mis = sha("darwin_amd64"),
        ma = url("darwin", "arm64"),
        mas = sha("darwin_arm64"),
        li = url("linux", "amd64"),
        lis = sha("linux_amd64"),
        la = url("linux", "arm64"),
        las = sha("linux_arm64"),
    )
}

pub fn cask(name: &str, version: &str) -> String {
    let sha = format!("{:0>64}", version.replace('.', ""));
    format!(
        r#"cask "{name}" do
  version "{version}"
  sha256 "{sha}"

  url "https://github.com/acme/{name}/releases/download/v#{{version}}/{name}_#{{version}}_darwin_all.zip"
  name "{name}"
  desc "Rolls releases back"
  homepage "https://github.com/acme/{name}"

  binary "{name}"
end
"#
    )
}

fn class_name(name: &str) -> String {
    name.split(['-', '_', '.', '@'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}
