//! Running the `git` program against the tap cache without leaking credentials.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// A failed git invocation, already scrubbed of secrets.
#[derive(Debug, Clone)]
pub struct GitFailure {
    pub command: String,
    pub stderr: String,
}

/// Runs git on one bare repository with a fixed, prompt-free, credential-carrying environment.
#[derive(Clone)]
pub struct Git {
    git_dir: PathBuf,
    env: Vec<(OsString, OsString)>,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Git {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Git")
            .field("git_dir", &self.git_dir)
            .finish_non_exhaustive()
    }
}

/// Only github.com gets the token: sending a GitHub token to another host would leak it.
const TOKEN_SCOPE: &str = "https://github.com/";

impl Git {
    pub fn new(git_dir: &Path, token: Option<&SecretString>) -> Self {
        let mut env: Vec<(OsString, OsString)> = vec![
            ("GIT_TERMINAL_PROMPT".into(), "0".into()),
            // Stable, parseable messages whatever the user's locale.
            ("LC_ALL".into(), "C".into()),
        ];
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            env.push(("GIT_SSH_COMMAND".into(), "ssh -o BatchMode=yes".into()));
        }
        let mut secrets = Vec::new();
        if let Some(token) = token.map(ExposeSecret::expose_secret) {
            if !token.is_empty() {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("x-access-token:{token}"));
                // Append after any GIT_CONFIG_* entries the user already passes to git.
                let base: usize = std::env::var("GIT_CONFIG_COUNT")
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                env.push(("GIT_CONFIG_COUNT".into(), (base + 1).to_string().into()));
                env.push((
                    format!("GIT_CONFIG_KEY_{base}").into(),
                    format!("http.{TOKEN_SCOPE}.extraHeader").into(),
                ));
                env.push((
                    format!("GIT_CONFIG_VALUE_{base}").into(),
                    format!("Authorization: Basic {basic}").into(),
                ));
                secrets.push(token.to_owned());
                secrets.push(basic);
            }
        }
        Git {
            git_dir: git_dir.to_owned(),
            env,
            secrets,
        }
    }

    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// Remove every known secret and any URL userinfo from text that may reach a user.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = mask_userinfo(text);
        for s in &self.secrets {
            out = out.replace(s.as_str(), "***");
        }
        out
    }

    pub fn run(&self, args: &[&str]) -> Result<String, GitFailure> {
        self.run_with(args, None, &[])
    }

    pub fn run_with(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        extra_env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<String, GitFailure> {
        let command = self.scrub(&format!("git {}", args.join(" ")));
        tracing::debug!(git_dir = %self.git_dir.display(), %command, "running git");
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd.envs(extra_env.iter().copied());
        let fail = |stderr: String| GitFailure {
            command: command.clone(),
            stderr: self.scrub(stderr.trim()),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input)
                .map_err(|e| fail(format!("cannot write to git: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("git did not finish: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            if stderr.trim().is_empty() {
                stderr = format!("git exited with {}", out.status);
            }
            Err(fail(stderr))
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        cmd.arg("--git-dir").arg(&self.git_dir).args(args);
        // Variables that would redirect git elsewhere or print headers (and so the token).
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_TRACE",
            "GIT_TRACE_CURL",
            "GIT_TRACE_PACKET",
            "GIT_CURL_VERBOSE",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Raw stdout bytes, for blob content that must not be decoded lossily.
    pub fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>, GitFailure> {
        let command = self.scrub(&format!("git {}", args.join(" ")));
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| GitFailure {
                command: command.clone(),
                stderr: format!("cannot run git: {e}"),
            })?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(GitFailure {
                command,
                stderr: self.scrub(String::from_utf8_lossy(&out.stderr).trim()),
            })
        }
    }
}

/// `https://user:pass@host/x` → `https://***@host/x`, anywhere in the text.
pub fn mask_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo() {
        assert_eq!(
            mask_userinfo("fatal: https://x:tok@github.com/a/b.git failed, file:///tmp/x"),
            "fatal: https://***@github.com/a/b.git failed, file:///tmp/x"
        );
        assert_eq!(mask_userinfo("no url"), "no url");
    }

    #[test]
    fn token_reaches_git_as_scoped_header_only() {
        let dir = tempfile_dir();
        let token = SecretString::from("ghp_secret123");
        let git = Git::new(&dir, Some(&token));
        git.run(&["init", "--bare", "--quiet"]).expect("init");
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghp_secret123");
        let header = |url: &str| {
            git.run(&["config", "--get-urlmatch", "http.extraHeader", url])
                .unwrap_or_default()
        };
        assert_eq!(
            header("https://github.com/acme/homebrew-tap.git").trim(),
            format!("Authorization: Basic {basic}")
        );
        assert_eq!(header("https://gitlab.com/acme/tap.git"), "");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "bagboy-git-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }

    #[test]
    fn scrubs_token_and_header() {
        let token = SecretString::from("ghp_secret123");
        let git = Git::new(Path::new("/nonexistent"), Some(&token));
        let basic =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghp_secret123");
        let s = git.scrub(&format!("a ghp_secret123 b {basic}"));
        assert!(!s.contains("ghp_secret123") && !s.contains(&basic), "{s}");
    }
}
