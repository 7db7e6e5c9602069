//! The one door to the `git` program: every git process bagboy starts (tap and git-registry
//! caches, the shared history, the migration check) is started here, so each carries the same
//! safety:
//!
//! - no hooks, no fsmonitor, no pager, no external diff, no lazy fetch of missing objects
//!   (`GIT_NO_LAZY_FETCH`; and no repository bagboy reads has a promisor remote in a
//!   configuration git reads, whatever git's version), only the `file`, `git`, `http(s)` and `ssh`
//!   transports (`ext::` and `fd::` never), no terminal prompt;
//! - a repository that came with the checkout ([`Git::foreign`]) is never opened as a
//!   repository: git runs on an empty repository of bagboy's own cache that borrows the
//!   checkout's objects (`GIT_ALTERNATE_OBJECT_DIRECTORIES`), so nothing of the checkout's
//!   `config` (a promisor remote, `core.sshCommand`, `credential.helper`, filters) is read;
//! - bounded in time (killed after `BAGBOY_TIMEOUT_SECS` without a byte of output, with its
//!   children) and in output;
//! - credentials only as a header scoped to github.com, scrubbed from every message.

use std::ffi::OsString;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

/// git processes started by this bagboy process (logged at -vv beside the HTTP stats).
static SPAWNED: AtomicU64 = AtomicU64::new(0);

/// How many git processes this bagboy process has started.
pub fn spawned() -> u64 {
    SPAWNED.load(Ordering::Relaxed)
}

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
    /// The user's global and system git configuration are not read (foreign repositories).
    isolated: bool,
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
            isolated: false,
        }
    }

    /// Read a repository that came with the checkout (a pull request may have written every
    /// byte of it): objects only, through an empty repository in bagboy's cache under
    /// `cache`, so no configuration, hook or promisor remote of `repo` is ever honoured.
    /// Only object lookups by id make sense on it (`cat-file`, `diff-tree`, `ls-tree`).
    pub fn foreign(repo: &Path, cache: &Path) -> Result<Git, GitFailure> {
        let fail = |stderr: String| GitFailure {
            command: format!("git (reading {})", repo.display()),
            stderr,
        };
        let objects = objects_dir(repo).ok_or_else(|| {
            fail(format!(
                "{} is not a git repository (no .git/objects, no objects/)",
                repo.display()
            ))
        })?;
        let shell = cache.join("foreign.git");
        let mut git = Git::new(&shell, None);
        git.isolated = true;
        if !shell.join("HEAD").exists() {
            std::fs::create_dir_all(&shell)
                .map_err(|e| fail(format!("cannot create {}: {e}", shell.display())))?;
            git.run(&["init", "--bare", "--quiet"])?;
        }
        git.env.push((
            "GIT_ALTERNATE_OBJECT_DIRECTORIES".into(),
            objects.into_os_string(),
        ));
        Ok(git)
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
        self.execute(args, stdin, extra_env)
            .map(|out| String::from_utf8_lossy(&out).into_owned())
    }

    /// Raw stdout bytes, for blob content that must not be decoded lossily.
    pub fn run_bytes(&self, args: &[&str]) -> Result<Vec<u8>, GitFailure> {
        self.execute(args, None, &[])
    }

    /// Many object lookups in one process (`git cat-file --batch`), in the order asked: each
    /// name is anything git resolves to an object (`<commit>^{commit}`, `<rev>:<path>`, an
    /// id); `None` when it names nothing. One process where a lookup used to take two or three.
    pub fn cat_file_batch(&self, names: &[&str]) -> Result<Vec<Option<Object>>, GitFailure> {
        if let Some(bad) = names.iter().find(|n| n.contains('\n') || n.is_empty()) {
            return Err(GitFailure {
                command: "git cat-file --batch".into(),
                stderr: self.scrub(&format!("cannot look up {bad:?} in a batch")),
            });
        }
        let mut input = names.join("\n").into_bytes();
        input.push(b'\n');
        let out = self.execute(&["cat-file", "--batch"], Some(&input), &[])?;
        parse_batch(&out, names.len()).ok_or_else(|| GitFailure {
            command: "git cat-file --batch".into(),
            stderr: "unexpected output from git cat-file --batch".into(),
        })
    }

    /// Run git in its own process group, killed with its children when it makes no progress
    /// (no byte on stdout or stderr) for the timeout, and when bagboy dies.
    fn execute(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        extra_env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<Vec<u8>, GitFailure> {
        let command = self.scrub(&format!("git {}", args.join(" ")));
        tracing::debug!(git_dir = %self.git_dir.display(), %command, "running git");
        let fail = |stderr: String| GitFailure {
            command: command.clone(),
            stderr: self.scrub(&clean_stderr(&stderr)),
        };
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        cmd.envs(extra_env.iter().copied());
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
            // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the child
            // when the thread that spawned it (blocked waiting for it) goes away.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        SPAWNED.fetch_add(1, Ordering::Relaxed);
        let mut child = cmd
            .spawn()
            .map_err(|e| fail(format!("cannot run git: {e}")))?;
        let pgid = child.id();
        let activity = std::sync::Arc::new(AtomicU64::new(now_millis()));
        // Standard input is written on its own thread, beside the readers: a `cat-file --batch`
        // whose answers fill the stdout pipe before all its questions are written would
        // otherwise wait on us while we wait on it. Each chunk written counts as progress.
        let writer = match (stdin, child.stdin.take()) {
            (Some(input), Some(mut pipe)) => {
                let input = input.to_vec();
                let activity = activity.clone();
                Some(std::thread::spawn(move || -> std::io::Result<()> {
                    for chunk in input.chunks(16 << 10) {
                        pipe.write_all(chunk)?;
                        activity.store(now_millis(), Ordering::Relaxed);
                    }
                    Ok(())
                }))
            }
            _ => None,
        };
        let reader = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            let activity = activity.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(mut pipe) = pipe {
                    let mut buf = [0u8; 16 << 10];
                    loop {
                        match pipe.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                activity.store(now_millis(), Ordering::Relaxed);
                                if out.len() < MAX_OUTPUT {
                                    out.extend_from_slice(&buf[..n]);
                                }
                            }
                        }
                    }
                }
                let _ = tx.send(out);
            });
            rx
        };
        let out_thread = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        let err_thread = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        );
        // A watchdog kills the group after `timeout` without a byte of output; the wait itself
        // blocks, so a quick git command costs no polling delay.
        let timeout = timeout();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watchdog = {
            let (done, activity) = (done.clone(), activity.clone());
            std::thread::spawn(move || loop {
                std::thread::park_timeout(std::time::Duration::from_millis(200));
                if done.load(Ordering::Acquire) {
                    return false;
                }
                let idle = now_millis().saturating_sub(activity.load(Ordering::Relaxed));
                if idle > timeout.as_millis() as u64 {
                    kill_group(pgid);
                    return true;
                }
            })
        };
        let waited = child.wait();
        done.store(true, Ordering::Release);
        watchdog.thread().unpark();
        let timed_out = watchdog.join().unwrap_or(false);
        let status = match waited {
            _ if timed_out => Err(format!(
                "no progress for {} s; git was stopped (BAGBOY_TIMEOUT_SECS sets the limit)",
                timeout.as_secs()
            )),
            Ok(status) => Ok(status),
            Err(e) => Err(format!("git did not finish: {e}")),
        };
        // A helper git started (ssh with ControlPersist, say) may hold the pipes open after
        // git is gone: wait a moment, then stop the group rather than hang.
        let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
            rx.recv_timeout(std::time::Duration::from_secs(2))
                .or_else(|_| {
                    kill_group(pgid);
                    rx.recv_timeout(std::time::Duration::from_secs(1))
                })
                .unwrap_or_default()
        };
        let stdout = collect(out_thread);
        let stderr = String::from_utf8_lossy(&collect(err_thread)).into_owned();
        // git is gone, so the pipe is closed and the writer has returned.
        let written = writer.map(|w| w.join().unwrap_or(Ok(())));
        let status = status.map_err(&fail)?;
        if let (true, Some(Err(e))) = (status.success(), written) {
            return Err(fail(format!("cannot write to git: {e}")));
        }
        if stdout.len() >= MAX_OUTPUT {
            return Err(fail(format!("git printed more than {MAX_OUTPUT} bytes")));
        }
        if status.success() {
            Ok(stdout)
        } else if stderr.trim().is_empty() {
            Err(fail(format!("git exited with {status}")))
        } else {
            Err(fail(stderr))
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("git");
        // No hooks (a tap cache is bagboy's, but a hook is code), no `ext::`/`fd::` transports,
        // no fsmonitor daemon, no lazy fetch, no pager.
        cmd.args([
            "--no-pager",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "protocol.ext.allow=never",
            "-c",
            "protocol.fd.allow=never",
        ])
        .arg("--git-dir")
        .arg(&self.git_dir)
        .args(args);
        // Variables that would redirect git elsewhere or print headers (and so the token).
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_TRACE",
            "GIT_TRACE_CURL",
            "GIT_TRACE_PACKET",
            "GIT_CURL_VERBOSE",
            "GIT_EXEC_PATH",
            "GIT_PROXY_COMMAND",
            "GIT_EXTERNAL_DIFF",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_OBJECT_DIRECTORY",
            "GIT_COMMON_DIR",
            "GIT_NAMESPACE",
            "GIT_CONFIG",
            "GIT_CONFIG_PARAMETERS",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("GIT_ALLOW_PROTOCOL", "file:git:http:https:ssh");
        cmd.env("GIT_NO_LAZY_FETCH", "1");
        cmd.env("GIT_OPTIONAL_LOCKS", "0");
        if self.isolated {
            cmd.env("GIT_CONFIG_NOSYSTEM", "1");
            cmd.env("GIT_CONFIG_GLOBAL", "/dev/null");
            cmd.env("GIT_CONFIG_COUNT", "0");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// One object from [`Git::cat_file_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub oid: String,
    /// `blob`, `tree`, `commit` or `tag`.
    pub kind: String,
    pub content: Vec<u8>,
}

/// `git cat-file --batch` output for `n` names: per name, `<oid> <type> <size>\n<content>\n`,
/// or `<name> missing\n` (or `ambiguous`, or another one-line answer) when it names nothing.
fn parse_batch(mut out: &[u8], n: usize) -> Option<Vec<Option<Object>>> {
    let mut objects = Vec::with_capacity(n);
    for _ in 0..n {
        let nl = out.iter().position(|b| *b == b'\n')?;
        let header = std::str::from_utf8(&out[..nl]).ok()?;
        out = &out[nl + 1..];
        let fields: Vec<&str> = header.split(' ').collect();
        let found = match fields.as_slice() {
            [oid, kind, size]
                if (oid.len() == 40 || oid.len() == 64)
                    && oid.bytes().all(|b| b.is_ascii_hexdigit())
                    && matches!(*kind, "blob" | "tree" | "commit" | "tag") =>
            {
                size.parse::<usize>().ok().map(|size| (oid, kind, size))
            }
            _ => None,
        };
        let Some((oid, kind, size)) = found else {
            objects.push(None);
            continue;
        };
        if out.len() < size + 1 || out[size] != b'\n' {
            return None;
        }
        objects.push(Some(Object {
            oid: oid.to_string(),
            kind: kind.to_string(),
            content: out[..size].to_vec(),
        }));
        out = &out[size + 1..];
    }
    Some(objects)
}

/// The object directory of a repository on disk, found without running git on it: a work
/// tree's `.git/` (or the directory a `.git` file names, and its `commondir`), or a bare
/// repository.
fn objects_dir(repo: &Path) -> Option<PathBuf> {
    let dot = repo.join(".git");
    let git_dir = if dot.is_dir() {
        dot
    } else if dot.is_file() {
        let text = std::fs::read_to_string(&dot).ok()?;
        let target = text.lines().next()?.strip_prefix("gitdir:")?.trim();
        let target = Path::new(target);
        if target.is_absolute() {
            target.to_path_buf()
        } else {
            repo.join(target)
        }
    } else if repo.join("objects").is_dir() && repo.join("HEAD").is_file() {
        repo.to_path_buf()
    } else {
        return None;
    };
    let common = std::fs::read_to_string(git_dir.join("commondir"))
        .ok()
        .map(|c| {
            let c = Path::new(c.trim());
            if c.is_absolute() {
                c.to_path_buf()
            } else {
                git_dir.join(c)
            }
        })
        .unwrap_or(git_dir);
    let objects = common.join("objects");
    objects.is_dir().then_some(objects)
}

/// Whether `remote` is a git remote bagboy may hand to git: not an option (`-...`), no
/// control characters, and not a remote-helper address (`ext::<command>`, `fd::<n>`, any
/// `<transport>::...`), which would run a program or read a descriptor. URLs, scp-like
/// addresses and paths pass (the transports git may then use are limited again at run time).
pub fn is_safe_remote(remote: &str) -> bool {
    let r = remote.trim();
    if r.is_empty() || r.starts_with('-') || r.chars().any(char::is_control) {
        return false;
    }
    match r.split_once("::") {
        Some((transport, _)) => !transport
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c)),
        None => true,
    }
}

/// Output bagboy keeps from one git command (a formula is far smaller).
const MAX_OUTPUT: usize = 64 << 20;

/// `BAGBOY_TIMEOUT_SECS`, default 60: how long git may go without progress.
pub fn timeout() -> std::time::Duration {
    let secs = std::env::var("BAGBOY_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .unwrap_or(60);
    std::time::Duration::from_secs(secs)
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: signalling a process group bagboy created; an empty group is harmless.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// git's stderr without progress meters (`Receiving objects: 42%\r...`).
fn clean_stderr(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l))
        .filter(|l| {
            let l = l.trim_start_matches("remote: ");
            ![
                "Enumerating objects",
                "Counting objects",
                "Compressing objects",
                "Receiving objects",
                "Resolving deltas",
                "Writing objects",
                "Total ",
                "Delta compression",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
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
    fn cat_file_batch_answers_in_order_and_counts_one_process() {
        let dir = tempfile_dir();
        let git = Git::new(&dir, None);
        git.run(&["init", "--bare", "--quiet"]).expect("init");
        let blob = git
            .run_with(&["hash-object", "-w", "--stdin"], Some(b"a\nb\n\0c"), &[])
            .expect("blob");
        let blob = blob.trim();
        let tree = git
            .run_with(
                &["mktree"],
                Some(format!("100644 blob {blob}\tdir name.rb\n").as_bytes()),
                &[],
            )
            .expect("tree");
        let tree = tree.trim();
        let before = spawned();
        let got = git
            .cat_file_batch(&[
                &format!("{tree}:dir name.rb"),
                &format!("{tree}:missing.rb"),
                tree,
                "0000000000000000000000000000000000000000",
            ])
            .expect("batch");
        assert!(spawned() > before);
        let found = got[0].as_ref().expect("the blob");
        assert_eq!((found.kind.as_str(), found.oid.as_str()), ("blob", blob));
        assert_eq!(found.content, b"a\nb\n\0c");
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_ref().map(|o| o.kind.as_str()), Some("tree"));
        assert_eq!(got[3], None);
        assert!(git.cat_file_batch(&["a\nb"]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_batch_larger_than_the_pipes_does_not_stall() {
        // 20,000 questions (~1 MiB in) whose answers (~2.6 MiB out) fill both pipes: written
        // before reading, this waited on git while git waited on us.
        let dir = tempfile_dir();
        let git = Git::new(&dir, None);
        git.run(&["init", "--bare", "--quiet"]).expect("init");
        let content = vec![b'x'; 100];
        let blob = git
            .run_with(&["hash-object", "-w", "--stdin"], Some(&content), &[])
            .expect("blob");
        let names: Vec<String> = (0..20_000).map(|_| blob.trim().to_string()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let got = git.cat_file_batch(&refs).expect("batch");
        assert_eq!(got.len(), 20_000);
        assert!(got
            .iter()
            .all(|o| o.as_ref().is_some_and(|o| o.content == content)));
        let _ = std::fs::remove_dir_all(&dir);
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
