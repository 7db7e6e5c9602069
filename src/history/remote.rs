//! `history_remote`: one history for every machine, kept on a git branch.
//!
//! - Every command reads the history from the branch (fetched into a bare cache repository)
//!   and writes it to the local file it then works on.
//! - A writing command holds a **lease** for its whole run: a commit on `<branch>-lease`
//!   holding `lease.json` (holder, host, pid, command, expiry). Taking it is a fast-forward
//!   push on top of the lease commit that was read, so of two machines racing, git lets
//!   exactly one win; the other exits 4 naming the holder and where. A holder renews its lease
//!   while it runs; a dead holder's lease expires after `lease` (default 10 minutes) and the
//!   next machine takes it over with a warning.
//! - Each write is a new commit on the branch whose parent is the commit read, pushed without
//!   force: if anything else moved the branch, the push is rejected and nothing is written
//!   (exit 4).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::registry::homebrew::git::{Git, GitFailure};

/// `history_remote:` in bagboy.yaml.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteConfig {
    pub url: String,
    pub branch: String,
    /// The file name on the branch.
    pub path: String,
    /// How long a lease lasts without renewal (a dead holder's is taken over after this).
    pub lease: Duration,
}

pub const DEFAULT_BRANCH: &str = "bagboy/history";
pub const DEFAULT_LEASE: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("history_remote {url} ({branch}): {message}")]
    Git {
        url: String,
        branch: String,
        message: String,
    },
    #[error(
        "the shared history is leased by {holder} until {until} ({url}, branch {branch}-lease)"
    )]
    Held {
        url: String,
        branch: String,
        holder: String,
        until: String,
    },
    #[error("the shared history on {url} ({branch}) moved since bagboy read it (another machine wrote it); nothing was written")]
    Moved { url: String, branch: String },
}

/// What `lease.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct LeaseDoc {
    /// `held` or `free`.
    state: String,
    host: String,
    pid: u32,
    command: String,
    /// Unix seconds.
    expires_at: i64,
    /// Unique per acquisition: tells our lease from another's on the same host.
    token: String,
}

impl LeaseDoc {
    fn who(&self) -> String {
        format!("pid {} on {} (`{}`)", self.pid, self.host, self.command)
    }
}

pub struct Remote {
    cfg: RemoteConfig,
    git: Git,
    /// The branch commit the local file was last synced from or pushed as.
    tip: Mutex<Option<String>>,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
            .field(
                "url",
                &crate::registry::homebrew::mask_userinfo(&self.cfg.url),
            )
            .field("branch", &self.cfg.branch)
            .finish()
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

impl Remote {
    pub fn open(cfg: &RemoteConfig) -> Result<Remote, RemoteError> {
        let root = crate::registry::homebrew::cache_root()
            .unwrap_or_else(|| std::env::temp_dir().join("bagboy"));
        Self::open_at(cfg, &root)
    }

    /// [`Remote::open`] with the cache under `root`.
    pub fn open_at(cfg: &RemoteConfig, root: &Path) -> Result<Remote, RemoteError> {
        let key = {
            use sha2::Digest as _;
            hex::encode(&sha2::Sha256::digest(cfg.url.as_bytes())[..12])
        };
        let dir = root.join("history").join(format!("{key}.git"));
        let git = Git::new(&dir, crate::github::token().as_ref());
        let r = Remote {
            cfg: cfg.clone(),
            git,
            tip: Mutex::new(None),
        };
        if !dir.join("HEAD").exists() {
            std::fs::create_dir_all(&dir).map_err(|e| r.err(e.to_string()))?;
            r.run(&["init", "--bare", "--quiet"])?;
        }
        Ok(r)
    }

    fn err(&self, message: String) -> RemoteError {
        RemoteError::Git {
            url: crate::registry::homebrew::mask_userinfo(&self.cfg.url),
            branch: self.cfg.branch.clone(),
            message,
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, RemoteError> {
        self.git
            .run(args)
            .map_err(|f: GitFailure| self.err(format!("{}: {}", f.command, f.stderr.trim())))
    }

    fn lease_branch(&self) -> String {
        format!("{}-lease", self.cfg.branch)
    }

    /// The tips of the history and lease branches on the remote (one round trip).
    fn remote_tips(&self) -> Result<(Option<String>, Option<String>), RemoteError> {
        let (h, l) = (
            format!("refs/heads/{}", self.cfg.branch),
            format!("refs/heads/{}", self.lease_branch()),
        );
        let out = self.run(&["ls-remote", "--", &self.cfg.url, &h, &l])?;
        let mut tips = (None, None);
        for line in out.lines() {
            if let Some((sha, name)) = line.split_once('\t') {
                if name == h {
                    tips.0 = Some(sha.to_string());
                } else if name == l {
                    tips.1 = Some(sha.to_string());
                }
            }
        }
        Ok(tips)
    }

    fn fetch(&self, branch: &str, local: &str) -> Result<(), RemoteError> {
        self.run(&[
            "fetch",
            "--quiet",
            "--no-tags",
            "--",
            &self.cfg.url,
            &format!("+refs/heads/{branch}:{local}"),
        ])
        .map(|_| ())
    }

    /// The branch's history, fetched into bagboy's cache and read from there: `None` when
    /// the branch does not exist yet (the first write publishes it). Nothing is written outside
    /// the cache: the caller parses the bytes before anything is done with them.
    pub fn read(&self) -> Result<Option<Vec<u8>>, RemoteError> {
        let (tip, _) = self.remote_tips()?;
        let Some(tip) = tip else {
            *self.tip.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Ok(None);
        };
        if tip.len() != 40 || !tip.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.err(format!(
                "the remote named `{}` as the branch's tip, not a commit id",
                tip.escape_debug()
            )));
        }
        self.fetch(&self.cfg.branch, "refs/bagboy/history")?;
        let bytes = self
            .git
            .run_bytes(&["cat-file", "blob", &format!("{tip}:{}", self.cfg.path)])
            .map_err(|f| {
                self.err(format!(
                    "the branch has no {}: {}",
                    self.cfg.path,
                    f.stderr.trim()
                ))
            })?;
        if bytes.len() as u64 > crate::yaml::max_file_bytes() {
            return Err(self.err(format!(
                "{} on the branch is {} bytes, over the limit",
                self.cfg.path,
                bytes.len()
            )));
        }
        *self.tip.lock().unwrap_or_else(|p| p.into_inner()) = Some(tip);
        Ok(Some(bytes))
    }

    /// Whether the branch existed when it was last read (then a write is a compare-and-swap
    /// on the commit read, and the local copy is not what is compared).
    pub fn has_tip(&self) -> bool {
        self.tip.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// A commit of one file, `name` = `bytes`, on `parent`.
    fn commit(
        &self,
        name: &str,
        bytes: &[u8],
        parent: Option<&str>,
        message: &str,
    ) -> Result<String, RemoteError> {
        let blob = self
            .git
            .run_with(&["hash-object", "-w", "--stdin"], Some(bytes), &[])
            .map_err(|f| self.err(f.stderr))?;
        let entry = format!("100644 blob {}\t{name}\n", blob.trim());
        let tree = self
            .git
            .run_with(&["mktree"], Some(entry.as_bytes()), &[])
            .map_err(|f| self.err(f.stderr))?;
        let author = std::env::var("BAGBOY_GIT_AUTHOR")
            .ok()
            .and_then(|s| crate::registry::homebrew::Author::parse(&s))
            .unwrap_or(crate::registry::homebrew::Author {
                name: "bagboy".into(),
                email: "bagboy@localhost".into(),
            });
        let who = [
            ("GIT_AUTHOR_NAME", author.name.clone()),
            ("GIT_AUTHOR_EMAIL", author.email.clone()),
            ("GIT_COMMITTER_NAME", author.name.clone()),
            ("GIT_COMMITTER_EMAIL", author.email),
        ];
        let env: Vec<(&str, &std::ffi::OsStr)> = who
            .iter()
            .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
            .collect();
        let tree = tree.trim().to_string();
        let mut args = vec!["commit-tree", tree.as_str()];
        if let Some(p) = parent {
            args.extend(["-p", p]);
        }
        args.extend(["-F", "-"]);
        self.git
            .run_with(&args, Some(message.as_bytes()), &env)
            .map(|s| s.trim().to_string())
            .map_err(|f| self.err(f.stderr))
    }

    /// Push `commit` to `branch` without force; `Ok(false)` when the remote rejected it
    /// because the branch moved.
    fn push(&self, commit: &str, branch: &str) -> Result<bool, RemoteError> {
        match self.git.run(&[
            "push",
            "--quiet",
            "--porcelain",
            "--",
            &self.cfg.url,
            &format!("{commit}:refs/heads/{branch}"),
        ]) {
            Ok(_) => Ok(true),
            Err(f)
                if f.stderr.contains("rejected")
                    || f.stderr.contains("non-fast-forward")
                    || f.stderr.contains("fetch first") =>
            {
                Ok(false)
            }
            Err(f) => Err(self.err(format!("push: {}", f.stderr.trim()))),
        }
    }

    /// Publish `bytes` as the new history, on top of the commit last read. CAS: a branch that
    /// moved meanwhile is [`RemoteError::Moved`] and nothing is written.
    pub fn publish(&self, bytes: &[u8], message: &str) -> Result<(), RemoteError> {
        let parent = self.tip.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let commit = self.commit(&self.cfg.path, bytes, parent.as_deref(), message)?;
        if !self.push(&commit, &self.cfg.branch)? {
            return Err(RemoteError::Moved {
                url: crate::registry::homebrew::mask_userinfo(&self.cfg.url),
                branch: self.cfg.branch.clone(),
            });
        }
        *self.tip.lock().unwrap_or_else(|p| p.into_inner()) = Some(commit);
        Ok(())
    }

    fn read_lease(&self, tip: &str) -> Option<LeaseDoc> {
        let bytes = self
            .git
            .run_bytes(&["cat-file", "blob", &format!("{tip}:lease.json")])
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Take the lease for `command`, or fail naming the holder.
    pub fn acquire(self: &Arc<Self>, command: &str) -> Result<Lease, RemoteError> {
        for _ in 0..3 {
            let (_, tip) = self.remote_tips()?;
            let existing = match &tip {
                Some(t) => {
                    self.fetch(&self.lease_branch(), "refs/bagboy/lease")?;
                    self.read_lease(t)
                }
                None => None,
            };
            if let Some(l) = existing.as_ref().filter(|l| l.state == "held") {
                if l.expires_at > now() {
                    return Err(RemoteError::Held {
                        url: crate::registry::homebrew::mask_userinfo(&self.cfg.url),
                        branch: self.cfg.branch.clone(),
                        holder: l.who(),
                        until: rfc3339(l.expires_at),
                    });
                }
                tracing::warn!(
                    "taking over the shared history's lease: {} held it and it expired at {}",
                    l.who(),
                    rfc3339(l.expires_at)
                );
            }
            let doc = LeaseDoc {
                state: "held".into(),
                host: crate::history::lock::host_name(),
                pid: std::process::id(),
                command: command.chars().take(200).collect(),
                expires_at: now() + self.cfg.lease.as_secs() as i64,
                token: crate::files::unpredictable(),
            };
            let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
            let commit = self.commit(
                "lease.json",
                &bytes,
                tip.as_deref(),
                &format!("lease: {}", doc.who()),
            )?;
            if self.push(&commit, &self.lease_branch())? {
                return Ok(Lease::start(self.clone(), doc, commit));
            }
            // Someone else moved the lease branch first: look again.
        }
        Err(self.err("the lease branch keeps moving; try again".into()))
    }

    /// Renew or release: a commit on top of `parent`.
    fn update_lease(&self, doc: &LeaseDoc, parent: &str) -> Result<Option<String>, RemoteError> {
        let bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
        let commit = self.commit(
            "lease.json",
            &bytes,
            Some(parent),
            &format!("lease {}: {}", doc.state, doc.who()),
        )?;
        Ok(self.push(&commit, &self.lease_branch())?.then_some(commit))
    }
}

/// A held lease: renewed in the background while held, released when dropped.
pub struct Lease {
    remote: Arc<Remote>,
    state: Arc<Mutex<(LeaseDoc, String)>>,
    stop: Arc<AtomicBool>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

impl Lease {
    fn start(remote: Arc<Remote>, doc: LeaseDoc, commit: String) -> Lease {
        let state = Arc::new(Mutex::new((doc, commit)));
        let stop = Arc::new(AtomicBool::new(false));
        let every = (remote.cfg.lease / 3).max(Duration::from_millis(500));
        let renewer = {
            let (remote, state, stop) = (remote.clone(), state.clone(), stop.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(100);
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(tick);
                    waited += tick;
                    if waited < every {
                        continue;
                    }
                    waited = Duration::ZERO;
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    let mut doc = s.0.clone();
                    doc.expires_at = now() + remote.cfg.lease.as_secs() as i64;
                    match remote.update_lease(&doc, &s.1) {
                        Ok(Some(c)) => *s = (doc, c),
                        Ok(None) => {
                            tracing::error!(
                                "the shared history's lease was taken over by another machine"
                            );
                            return;
                        }
                        Err(e) => tracing::warn!("renewing the shared history's lease: {e}"),
                    }
                }
            })
        };
        Lease {
            remote,
            state,
            stop,
            renewer: Some(renewer),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut doc = s.0;
        doc.state = "free".into();
        doc.expires_at = now();
        if let Err(e) = self.remote.update_lease(&doc, &s.1) {
            tracing::warn!("releasing the shared history's lease: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        crate::git::Git::new(dir, None)
            .run(args)
            .unwrap_or_else(|f| panic!("{}: {}", f.command, f.stderr))
            .trim()
            .to_string()
    }

    #[test]
    fn a_write_on_a_branch_that_moved_is_refused_and_the_branch_kept() {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("h.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q"]);
        let cfg = RemoteConfig {
            url: format!("file://{}", bare.display()),
            branch: "bagboy/history".into(),
            path: "deployment-history.yml".into(),
            lease: Duration::from_secs(60),
        };
        let one = Remote::open_at(&cfg, &root.path().join("cache1")).unwrap();
        let two = Remote::open_at(&cfg, &root.path().join("cache2")).unwrap();
        assert!(one.read().unwrap().is_none());
        one.publish(b"deployments: []\n", "first").unwrap();
        assert!(two.read().unwrap().is_some());
        assert_eq!(
            one.read().unwrap().as_deref(),
            Some(&b"deployments: []\n"[..])
        );
        two.publish(b"deployments: [] # two\n", "two").unwrap();
        // `one` read before `two` wrote: its write is refused, `two`'s stays.
        match one.publish(b"deployments: [] # one\n", "one") {
            Err(RemoteError::Moved { .. }) => {}
            other => panic!("expected Moved, got {other:?}"),
        }
        let tip = git(&bare, &["show", "bagboy/history:deployment-history.yml"]);
        assert_eq!(tip, "deployments: [] # two");
        assert_eq!(git(&bare, &["rev-list", "--count", "bagboy/history"]), "2");
    }
}
