//! Running the real `bagboy` binary in a per-test project directory.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// A temporary project directory with a `.bagboy/` history.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A project whose history is a copy of `tests/fixtures/<name>`.
    pub fn with_history_fixture(name: &str) -> Self {
        let p = Project::new();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        p.write_history(&std::fs::read_to_string(src).expect("fixture"));
        p
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn history_path(&self) -> PathBuf {
        self.dir.path().join(".bagboy/deployment-history.yml")
    }

    pub fn write_history(&self, text: &str) {
        let p = self.history_path();
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn history(&self) -> String {
        std::fs::read_to_string(self.history_path()).unwrap()
    }

    pub fn history_bytes(&self) -> Vec<u8> {
        std::fs::read(self.history_path()).unwrap()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, text).unwrap();
        p
    }

    /// `bagboy` run in the project directory, with a clean environment for bagboy's variables.
    pub fn bagboy(&self) -> Command {
        let mut c = Command::cargo_bin("bagboy").expect("bagboy binary");
        c.current_dir(self.dir.path())
            .env_remove("BAGBOY_CONFIG")
            .env_remove("BAGBOY_HISTORY")
            .env_remove("BAGBOY_LOG")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("BAGBOY_CACHE_DIR", self.dir.path().join(".cache"));
        c
    }
}

/// stdout and stderr of a finished command, as text.
pub fn text(o: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A finished command: exit code and output, as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn of(out: std::process::Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The real `bagboy` run in `dir`, isolated from the machine it runs on: none of bagboy's
/// variables, no credentials, no user or system git config, its own cache and Docker config
/// under `dir`, no HTTP retries, no standard input.
pub fn isolated(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(assert_cmd::cargo::cargo_bin("bagboy"));
    c.current_dir(dir);
    for var in [
        "BAGBOY_CONFIG",
        "BAGBOY_HISTORY",
        "BAGBOY_LOG",
        "RUST_LOG",
        "GITHUB_TOKEN",
        "BAGBOY_REGISTRY_USERNAME",
        "BAGBOY_REGISTRY_PASSWORD",
        "BAGBOY_REGISTRY_HOST",
        "NPM_CONFIG_USERCONFIG",
        "GITHUB_API_URL",
        "GITHUB_REPOSITORY",
        "GITHUB_EVENT_PATH",
        "GITHUB_STEP_SUMMARY",
    ] {
        c.env_remove(var);
    }
    c.env("NO_COLOR", "1")
        .env("BAGBOY_CACHE_DIR", dir.join(".cache"))
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("BAGBOY_GIT_AUTHOR", "bagboy-test <bagboy-test@example.com>")
        .env("BAGBOY_HTTP_RETRIES", "0")
        .stdin(std::process::Stdio::null());
    c
}

/// The git processes bagboy started, as its `-vv` log counts them (`crate::git`).
pub fn git_processes(stderr: &str) -> u64 {
    stderr
        .lines()
        .rev()
        .filter_map(|l| l.split("processes=").nth(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .next()
        .unwrap_or_else(|| panic!("no git process count in the -vv log:\n{stderr}"))
}
