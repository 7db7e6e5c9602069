//! Homebrew tap backend: locate a formula or cask in a git tap, plan its restore, commit and push it.

mod backend;
mod formula;
pub(crate) use crate::git;
pub mod ruby;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use backend::{BrewRegistry, Options, BREW, RESTORE_FILE};
pub use formula::{
    declared_version, is_older, normalize_version, same_version, version_from_url, version_matches,
    version_scheme, with_version_scheme, without_version_scheme,
};
pub use git::mask_userinfo;
use git::{Git, GitFailure};

/// Where a tap lives, as written in `bagboy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TapSpec {
    /// `owner/repo` (GitHub) or any git URL.
    pub registry: String,
    /// Overrides the URL derived from `registry` (e.g. `file:///srv/git/tap.git`).
    pub remote: Option<String>,
    /// Default: the remote's default branch, else `main`.
    pub branch: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Formula,
    Cask,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Formula => "formula",
            Kind::Cask => "cask",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    pub kind: Kind,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Author {
    /// `Name <email>`.
    pub fn parse(s: &str) -> Option<Author> {
        let (name, rest) = s.trim().split_once('<')?;
        let email = rest.strip_suffix('>')?.trim();
        let name = name.trim();
        (!name.is_empty() && !email.is_empty() && !email.contains(['<', '>'])).then(|| Author {
            name: name.to_owned(),
            email: email.to_owned(),
        })
    }

    /// `$BAGBOY_GIT_AUTHOR`, else git's `user.name`/`user.email`, else `bagboy <bagboy@localhost>`.
    pub fn resolve(tap: &Tap) -> Author {
        if let Some(a) = std::env::var("BAGBOY_GIT_AUTHOR")
            .ok()
            .and_then(|s| Author::parse(&s))
        {
            return a;
        }
        let get = |key| {
            tap.git
                .run(&["config", "--get", key])
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        match (get("user.name"), get("user.email")) {
            (Some(name), Some(email)) => Author { name, email },
            _ => Author {
                name: "bagboy".into(),
                email: "bagboy@localhost".into(),
            },
        }
    }
}

impl std::fmt::Display for Author {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} <{}>", self.name, self.email)
    }
}

/// What the caller wants restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub name: String,
    /// The tap commit recorded for the target release; found by version when absent.
    pub target_commit: Option<String>,
    pub target_version: String,
    /// The version users have now; read from the live file when absent.
    pub current_version: Option<String>,
    pub bump_version_scheme: bool,
    /// `formula:` or `cask:` in the config: which one wins when a tap has both of this name.
    #[serde(default)]
    pub prefer: Option<Kind>,
}

/// One file restore, computed ahead of time: what dry-run prints is what `apply` commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub tap: String,
    pub name: String,
    pub kind: Kind,
    pub path: String,
    /// The tap head the plan was computed against.
    pub base_commit: String,
    pub target_commit: String,
    /// File content at `base_commit`; `None` when the file is absent there.
    pub live: Option<String>,
    pub desired: String,
    pub unchanged: bool,
    pub diff: String,
    /// `(live scheme, desired scheme)` when the plan sets or keeps a `version_scheme`.
    pub version_scheme: Option<(Option<u32>, u32)>,
    pub notes: Vec<String>,
}

/// A pushed restore. `commit == parent` means nothing had to be pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub parent: String,
    pub commit: String,
    pub path: String,
}

impl Applied {
    pub fn is_noop(&self) -> bool {
        self.commit == self.parent
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("invalid formula or cask name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid tap `{tap}`: expected owner/repo or a git URL")]
    InvalidTap { tap: String },
    #[error("invalid commit `{commit}` for tap {tap}: expected a hexadecimal commit id")]
    InvalidCommit { tap: String, commit: String },
    #[error("tap {tap} at {url} cannot be reached: {stderr}")]
    Unreachable {
        tap: String,
        url: String,
        stderr: String,
    },
    #[error("tap {tap} at {url} has no branch `{branch}`")]
    NoBranch {
        tap: String,
        url: String,
        branch: String,
    },
    #[error("commit {commit} does not exist in tap {tap}")]
    NoCommit { tap: String, commit: String },
    #[error("{name} is neither a formula nor a cask in tap {tap} at commit {commit}")]
    NotFound {
        tap: String,
        name: String,
        commit: String,
    },
    #[error("formula {name} has no version {version} in tap {tap}")]
    NoVersion {
        tap: String,
        name: String,
        version: String,
    },
    #[error("{path} at commit {commit} in tap {tap} is not UTF-8 text")]
    NotText {
        tap: String,
        path: String,
        commit: String,
    },
    #[error("both {formula} and {cask} define {name} in tap {tap}: say which with `formula: {name}` or `cask: {name}` in bagboy.yaml")]
    Ambiguous {
        tap: String,
        name: String,
        formula: String,
        cask: String,
    },
    #[error("{path} at commit {commit} in tap {tap} is not Ruby bagboy can restore ({error}); nothing was pushed")]
    NotRuby {
        tap: String,
        path: String,
        commit: String,
        error: String,
    },
    #[error("{path} in tap {tap} was changed by commit {their_commit} since the plan was made; nothing was pushed")]
    Conflict {
        tap: String,
        path: String,
        their_commit: String,
    },
    #[error("tap {tap}: `{command}` failed: {stderr}")]
    Git {
        tap: String,
        command: String,
        stderr: String,
    },
    #[error("tap {tap}: cannot prepare cache {}", path.display())]
    Cache {
        tap: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `$BAGBOY_CACHE_DIR`, else `$XDG_CACHE_HOME/bagboy`, else `~/.cache/bagboy`.
pub fn cache_root() -> Option<PathBuf> {
    cache_root_from(|k| std::env::var_os(k))
}

/// [`cache_root`] over an arbitrary environment, so it can be tested without mutating the process.
pub fn cache_root_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    non_empty("BAGBOY_CACHE_DIR")
        .or_else(|| non_empty("XDG_CACHE_HOME").map(|p| p.join("bagboy")))
        .or_else(|| non_empty("HOME").map(|p| p.join(".cache").join("bagboy")))
}

/// `owner/repo` → `https://github.com/owner/repo.git`; URLs and scp-like addresses pass through.
pub fn tap_url(spec: &TapSpec) -> Result<String, TapError> {
    if let Some(remote) = spec.remote.as_deref().filter(|r| !r.trim().is_empty()) {
        // Never an option to git, whatever the config says.
        if remote.trim().starts_with('-') {
            return Err(TapError::InvalidTap {
                tap: remote.trim().to_owned(),
            });
        }
        return Ok(remote.trim().to_owned());
    }
    let r = spec.registry.trim();
    if r.contains("://") || (r.contains('@') && r.contains(':')) {
        return Ok(r.to_owned());
    }
    let parts: Vec<&str> = r.split('/').collect();
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    match parts.as_slice() {
        [owner, repo] if ok_part(owner) && ok_part(repo) => {
            let repo = repo.strip_suffix(".git").unwrap_or(repo);
            Ok(format!("https://github.com/{owner}/{repo}.git"))
        }
        _ => Err(TapError::InvalidTap { tap: r.to_owned() }),
    }
}

/// Take `<dir>.lock` exclusively (flock), waiting up to the timeout for another bagboy. Taps
/// opened twice in one process share the lock.
fn lock_cache(registry: &str, dir: &Path) -> Result<std::sync::Arc<std::fs::File>, TapError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    type Held = std::collections::HashMap<PathBuf, std::sync::Weak<std::fs::File>>;
    static HELD: std::sync::Mutex<Option<Held>> = std::sync::Mutex::new(None);
    let path = dir.with_extension("lock");
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(file) = held
        .get_or_insert_with(Default::default)
        .get(&path)
        .and_then(std::sync::Weak::upgrade)
    {
        return Ok(file);
    }
    let cache_err = |source| TapError::Cache {
        tap: registry.to_owned(),
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(cache_err)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(cache_err)?;
    let deadline = std::time::Instant::now() + git::timeout();
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            let file = std::sync::Arc::new(file);
            held.get_or_insert_with(Default::default)
                .insert(path.clone(), std::sync::Arc::downgrade(&file));
            return Ok(file);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) || std::time::Instant::now() > deadline {
            return Err(cache_err(
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    std::io::Error::other("another bagboy has held the tap cache for too long")
                } else {
                    err
                },
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn sanitize(registry: &str) -> String {
    let s: String = registry
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

fn is_hex_commit(c: &str) -> bool {
    (4..=64).contains(&c.len()) && c.chars().all(|c| c.is_ascii_hexdigit())
}

static INDEX_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A tap cloned (bare) into the local cache and fetched at open.
#[derive(Debug)]
pub struct Tap {
    registry: String,
    url_display: String,
    branch: String,
    git: Git,
    /// Held while the tap is open: one bagboy at a time uses a cache directory.
    _cache_lock: std::sync::Arc<std::fs::File>,
    /// The tracking ref's commit, known until the next fetch or push moves it: a plan asks
    /// for it many times, git is asked once.
    head: std::sync::Mutex<Option<String>>,
    /// Commits already resolved (`abc123` → full id): commits never change.
    commits: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// Files read at a commit, and where a name is defined at a commit: a plan asks the same
    /// question of the same commit several times, and the answer never changes.
    files: std::sync::Mutex<std::collections::HashMap<(String, String), Option<String>>>,
    definitions: std::sync::Mutex<std::collections::HashMap<(String, String), Vec<Located>>>,
}

enum Outcome {
    Pushed { parent: String, commit: String },
    AlreadyThere { head: String },
}

impl Tap {
    /// Open with `$GITHUB_TOKEN` (if set) as the credential for github.com.
    pub fn open(spec: &TapSpec, cache_root: &Path) -> Result<Tap, TapError> {
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        Tap::open_with_token(spec, cache_root, token.as_ref())
    }

    /// Clone into `cache_root/taps/<registry>` or fetch the existing cache; a cache that git
    /// cannot use is thrown away and cloned again, since it holds nothing of the user's.
    pub fn open_with_token(
        spec: &TapSpec,
        cache_root: &Path,
        token: Option<&SecretString>,
    ) -> Result<Tap, TapError> {
        let registry = spec.registry.trim().to_owned();
        let url = tap_url(spec)?;
        // Keyed by the remote URL too: two configs naming the same tap with different
        // remotes (a checkout's and the real one) never share a cache, so a rollback can
        // never push to a remote that another run set.
        let url_key = {
            use sha2::Digest as _;
            hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8])
        };
        let taps = cache_root.join("taps");
        let dir = taps.join(format!("{}-{url_key}", sanitize(&registry)));
        let cache_lock = lock_cache(&registry, &dir)?;
        let git = Git::new(&dir, token);
        let url_display = git.scrub(&url);
        let mut tap = Tap {
            registry,
            url_display,
            branch: String::new(),
            git,
            _cache_lock: cache_lock,
            head: Default::default(),
            commits: Default::default(),
            files: Default::default(),
            definitions: Default::default(),
        };
        tap.ensure_cache(&url, &dir, false)?;

        let listing = tap
            .git
            .run(&["ls-remote", "--symref", "origin"])
            .map_err(|f| TapError::Unreachable {
                tap: tap.registry.clone(),
                url: tap.url_display.clone(),
                stderr: f.stderr,
            })?;
        let default_branch = listing.lines().find_map(|l| {
            l.strip_prefix("ref: refs/heads/")
                .and_then(|r| r.strip_suffix("\tHEAD"))
                .map(str::to_owned)
        });
        tap.branch = spec
            .branch
            .clone()
            .filter(|b| !b.trim().is_empty())
            .or(default_branch)
            .unwrap_or_else(|| "main".into());
        let wanted = format!("refs/heads/{}", tap.branch);
        if !listing
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(wanted.as_str()))
        {
            return Err(TapError::NoBranch {
                tap: tap.registry.clone(),
                url: tap.url_display.clone(),
                branch: tap.branch.clone(),
            });
        }
        if tap.fetch().is_err() {
            tracing::warn!(tap = %tap.registry, "tap cache unusable, cloning again");
            tap.ensure_cache(&url, &dir, true)?;
            tap.fetch()?;
        }
        Ok(tap)
    }

    fn ensure_cache(&self, url: &str, dir: &Path, fresh: bool) -> Result<(), TapError> {
        let cache_err = |source| TapError::Cache {
            tap: self.registry.clone(),
            path: dir.to_owned(),
            source,
        };
        let usable = !fresh
            && dir.is_dir()
            && self
                .git
                .run(&["rev-parse", "--is-bare-repository"])
                .is_ok_and(|s| s.trim() == "true");
        // The directory is keyed by the URL; a cache whose origin is anything else was not
        // made by this bagboy for this remote and is cloned again.
        let same_origin = usable
            && self
                .git
                .run(&["config", "--get", "remote.origin.url"])
                .is_ok_and(|u| u.trim() == url);
        if same_origin {
            return Ok(());
        }
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(cache_err)?;
        }
        std::fs::create_dir_all(dir).map_err(cache_err)?;
        self.git
            .run(&["init", "--bare", "--quiet"])
            .map_err(|f| self.git_err(f))?;
        self.git
            .run(&["remote", "add", "--", "origin", url])
            .map_err(|f| self.git_err(f))?;
        Ok(())
    }

    /// Our cache's equivalent of `reset --hard origin/<branch>`: force the tracking ref to the
    /// remote head, whatever it was before.
    fn fetch(&self) -> Result<String, TapError> {
        self.forget_head();
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        self.git
            .run(&["fetch", "--progress", "--no-tags", "origin", &refspec])
            .map_err(|f| TapError::Unreachable {
                tap: self.registry.clone(),
                url: self.url_display.clone(),
                stderr: f.stderr,
            })?;
        self.head()
    }

    fn git_err(&self, f: GitFailure) -> TapError {
        TapError::Git {
            tap: self.registry.clone(),
            command: f.command,
            stderr: f.stderr,
        }
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The tap URL with any credentials masked.
    pub fn url_display(&self) -> &str {
        &self.url_display
    }

    /// The remote branch head as last fetched.
    pub fn head(&self) -> Result<String, TapError> {
        if let Some(h) = self.head.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(h);
        }
        let r = format!("refs/remotes/origin/{}^{{commit}}", self.branch);
        let head = self
            .git
            .run(&["rev-parse", "--verify", "--quiet", &r])
            .map(|s| s.trim().to_owned())
            .map_err(|f| self.git_err(f))?;
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = Some(head.clone());
        Ok(head)
    }

    /// The tracking ref is about to move (fetch, push): ask git again next time.
    fn forget_head(&self) {
        *self.head.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Full id of `commit`, refusing anything that is not a hex id present in the tap.
    pub fn resolve_commit(&self, commit: &str) -> Result<String, TapError> {
        if !is_hex_commit(commit) {
            return Err(TapError::InvalidCommit {
                tap: self.registry.clone(),
                commit: commit.to_owned(),
            });
        }
        if let Some(full) = self
            .commits
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(commit)
        {
            return Ok(full.clone());
        }
        let full = self
            .git
            .run(&[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{commit}^{{commit}}"),
            ])
            .map(|s| s.trim().to_owned())
            .map_err(|_| TapError::NoCommit {
                tap: self.registry.clone(),
                commit: commit.to_owned(),
            })?;
        self.remember_commit(commit, &full);
        Ok(full)
    }

    fn remember_commit(&self, commit: &str, full: &str) {
        let mut known = self.commits.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(commit.to_owned(), full.to_owned());
        known.insert(full.to_owned(), full.to_owned());
    }

    fn check_name(&self, name: &str) -> Result<(), TapError> {
        validate_name(name)
    }

    /// `Some((mode, blob))` when `path` is a file at `commit`.
    fn entry(&self, commit: &str, path: &str) -> Result<Option<(String, String)>, TapError> {
        let out = self
            .git
            .run(&["ls-tree", "--full-tree", commit, "--", path])
            .map_err(|f| self.git_err(f))?;
        Ok(out.lines().find_map(|l| {
            let (meta, p) = l.split_once('\t')?;
            let mut m = meta.split_whitespace();
            let (mode, kind, oid) = (m.next()?, m.next()?, m.next()?);
            (p == path && kind == "blob").then(|| (mode.to_owned(), oid.to_owned()))
        }))
    }

    /// File content at a commit; `None` when the file does not exist there. One git process:
    /// the commit and the file are looked up in one `cat-file --batch`.
    pub fn file_at(&self, commit: &str, path: &str) -> Result<Option<String>, TapError> {
        let key = (commit.to_owned(), path.to_owned());
        if let Some(known) = self
            .files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(known.clone());
        }
        let content = self.read_file_at(commit, path)?;
        self.files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, content.clone());
        Ok(content)
    }

    fn read_file_at(&self, commit: &str, path: &str) -> Result<Option<String>, TapError> {
        if !is_hex_commit(commit) {
            return Err(TapError::InvalidCommit {
                tap: self.registry.clone(),
                commit: commit.to_owned(),
            });
        }
        let peeled = format!("{commit}^{{commit}}");
        let file = format!("{commit}:{path}");
        let mut found = self
            .git
            .cat_file_batch(&[&peeled, &file])
            .map_err(|f| self.git_err(f))?
            .into_iter();
        let commit = match found.next().flatten() {
            Some(c) if c.kind == "commit" => {
                self.remember_commit(commit, &c.oid);
                c.oid
            }
            _ => {
                return Err(TapError::NoCommit {
                    tap: self.registry.clone(),
                    commit: commit.to_owned(),
                })
            }
        };
        let bytes = match found.next().flatten() {
            Some(o) if o.kind == "blob" => o.content,
            _ => return Ok(None),
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| TapError::NotText {
                tap: self.registry.clone(),
                path: path.to_owned(),
                commit,
            })
    }

    /// Whether `path` is where Homebrew would look for `name`: any depth under `Formula/`,
    /// `HomebrewFormula/` or `Casks/`, or the tap's root.
    pub fn is_location_of(name: &str, path: &str) -> Option<Located> {
        let file = format!("{name}.rb");
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (Some(d), b),
            None => (None, path),
        };
        if base != file || path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return None;
        }
        let top = dir.map(|d| d.split('/').next().unwrap_or(d));
        let kind = match top {
            None => Kind::Formula,
            Some("Formula") | Some("HomebrewFormula") => Kind::Formula,
            Some("Casks") => Kind::Cask,
            _ => return None,
        };
        Some(Located {
            kind,
            path: path.to_string(),
        })
    }

    /// Every file defining `name` at `commit`, shallowest first.
    fn find_all(&self, name: &str, commit: &str) -> Result<Vec<Located>, TapError> {
        let key = (name.to_owned(), commit.to_owned());
        if let Some(known) = self
            .definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(known.clone());
        }
        let found = self.list_definitions(name, commit)?;
        self.definitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    fn list_definitions(&self, name: &str, commit: &str) -> Result<Vec<Located>, TapError> {
        let root = format!("{name}.rb");
        let out = self
            .git
            .run(&[
                "ls-tree",
                "-r",
                "--name-only",
                "--full-tree",
                commit,
                "--",
                "Formula",
                "HomebrewFormula",
                "Casks",
                &root,
            ])
            .map_err(|f| self.git_err(f))?;
        let mut found: Vec<Located> = out
            .lines()
            .filter_map(|p| Tap::is_location_of(name, p))
            .collect();
        found.sort_by_key(|l| (l.path.matches('/').count(), l.path.clone()));
        Ok(found)
    }

    /// Where `name` lives at `at_commit` (default: head).
    pub fn locate(
        &self,
        name: &str,
        at_commit: Option<&str>,
        prefer: Option<Kind>,
    ) -> Result<Located, TapError> {
        self.check_name(name)?;
        let commit = match at_commit {
            Some(c) => self.resolve_commit(c)?,
            None => self.head()?,
        };
        self.try_locate(name, &commit, prefer)?
            .ok_or_else(|| TapError::NotFound {
                tap: self.registry.clone(),
                name: name.to_owned(),
                commit,
            })
    }

    /// The formula or cask `name` at `commit`. When both exist, `prefer` decides; without it
    /// bagboy refuses to guess.
    fn try_locate(
        &self,
        name: &str,
        commit: &str,
        prefer: Option<Kind>,
    ) -> Result<Option<Located>, TapError> {
        let found = self.find_all(name, commit)?;
        let formula = found.iter().find(|l| l.kind == Kind::Formula);
        let cask = found.iter().find(|l| l.kind == Kind::Cask);
        Ok(match (prefer, formula, cask) {
            (Some(Kind::Formula), Some(f), _) => Some(f.clone()),
            (Some(Kind::Cask), _, Some(c)) => Some(c.clone()),
            (None, Some(f), Some(c)) => {
                return Err(TapError::Ambiguous {
                    tap: self.registry.clone(),
                    name: name.to_owned(),
                    formula: f.path.clone(),
                    cask: c.path.clone(),
                })
            }
            (_, f, c) => f.or(c).cloned(),
        })
    }

    /// Newest commit on the branch whose `name` file declares `version` (leading `v` ignored;
    /// a cask's `X,Y` matches `X`), with that full declared version.
    pub fn find_commit_for_version(
        &self,
        name: &str,
        version: &str,
        prefer: Option<Kind>,
    ) -> Result<Option<(String, String)>, TapError> {
        self.check_name(name)?;
        let head = self.head()?;
        let specs = [
            format!(":(glob)Formula/**/{name}.rb"),
            format!(":(glob)HomebrewFormula/**/{name}.rb"),
            format!(":(glob)Casks/**/{name}.rb"),
            format!(":(literal){name}.rb"),
        ];
        let mut args = vec!["log", "--format=%H", head.as_str(), "--"];
        args.extend(specs.iter().map(String::as_str));
        let out = self.git.run(&args).map_err(|f| self.git_err(f))?;
        for commit in out.lines().map(str::trim).filter(|c| !c.is_empty()) {
            let Some(loc) = self.try_locate(name, commit, prefer)? else {
                continue;
            };
            let Ok(Some(content)) = self.file_at(commit, &loc.path) else {
                continue;
            };
            if let Some(v) = declared_version(&content).filter(|v| version_matches(v, version)) {
                return Ok(Some((commit.to_owned(), v)));
            }
        }
        Ok(None)
    }

    /// The highest `version_scheme` a bagboy rollback commit ever set for the file at `path`
    /// (rollback commits are the ones whose subject is `<name>: roll back to …`).
    pub fn rollback_scheme(&self, name: &str, path: &str) -> Result<Option<u32>, TapError> {
        let head = self.head()?;
        let out = self
            .git
            .run(&["log", "--format=%H %s", head.as_str(), "--", path])
            .map_err(|f| self.git_err(f))?;
        let marker = format!("{name}: roll back to ");
        let mut best = None;
        for line in out.lines() {
            let Some((commit, subject)) = line.split_once(' ') else {
                continue;
            };
            if !subject.starts_with(&marker) {
                continue;
            }
            if let Ok(Some(content)) = self.file_at(commit, path) {
                best = best.max(version_scheme(&content));
            }
        }
        Ok(best)
    }

    /// Compute the restore of `req.name` to its content at the target commit, against the
    /// current head. Reads only.
    pub fn plan_restore(&self, req: &RestoreRequest) -> Result<RestorePlan, TapError> {
        self.check_name(&req.name)?;
        let base = self.head()?;
        let target = match req.target_commit.as_deref() {
            Some(c) => self.resolve_commit(c)?,
            None => self
                .find_commit_for_version(&req.name, &req.target_version, req.prefer)?
                .map(|(c, _)| c)
                .ok_or_else(|| TapError::NoVersion {
                    tap: self.registry.clone(),
                    name: req.name.clone(),
                    version: req.target_version.clone(),
                })?,
        };
        let at_target = self.locate(&req.name, Some(&target), req.prefer)?;
        let target_content =
            self.file_at(&target, &at_target.path)?
                .ok_or_else(|| TapError::NotFound {
                    tap: self.registry.clone(),
                    name: req.name.clone(),
                    commit: target.clone(),
                })?;
        // Restore in place when the file moved (e.g. sharded later), so the tap never ends up
        // with two definitions of the same name.
        // The live file of the same kind as the target's: a formula is never restored over
        // a cask of the same name.
        let live_loc = self
            .try_locate(&req.name, &base, Some(at_target.kind))?
            .filter(|l| l.kind == at_target.kind);
        let (kind, path) = match &live_loc {
            Some(l) => (l.kind, l.path.clone()),
            None => (at_target.kind, at_target.path.clone()),
        };
        let live = self.file_at(&base, &path)?;

        let mut notes = Vec::new();
        let mut desired = target_content.clone();
        let mut scheme = None;
        let current = req
            .current_version
            .clone()
            .or_else(|| live.as_deref().and_then(declared_version));
        let older = current
            .as_deref()
            .is_none_or(|c| is_older(&req.target_version, c));
        if path != at_target.path {
            notes.push(format!(
                "{} moved from {} to {}; restoring in place",
                req.name, at_target.path, path
            ));
        }
        match kind {
            Kind::Cask => {
                if older {
                    notes.push(
                        "casks have no version_scheme: brew offers any different cask version \
                         as an upgrade, so users move back without a bump"
                            .into(),
                    );
                }
            }
            Kind::Formula if req.bump_version_scheme && older => {
                let live_s = live.as_deref().and_then(version_scheme);
                let target_s = version_scheme(&target_content);
                // The scheme users of the current release have installed: when the target was
                // found by version it may be an earlier rollback commit that already carries
                // the bump, so "live > target" alone would bump again on every run.
                let current_s = match current.as_deref() {
                    Some(c) => self.scheme_of_version(&req.name, c)?,
                    None => None,
                };
                let (l, t) = (live_s.unwrap_or(0), target_s.unwrap_or(0));
                let already = live.as_deref().is_some_and(|live| {
                    without_version_scheme(live) == without_version_scheme(&target_content)
                        && (l > t || (l >= t && current_s.is_some_and(|c| l > c.unwrap_or(0))))
                });
                if let (true, Some(l), Some(s)) = (already, live.as_deref(), live_s) {
                    desired = l.to_owned();
                    scheme = Some((live_s, s));
                    notes.push(format!(
                        "already rolled back: live file matches the target with version_scheme {s}"
                    ));
                } else {
                    let n = 1 + l.max(t).max(current_s.flatten().unwrap_or(0));
                    desired = with_version_scheme(&target_content, n)
                        .map_err(|e| self.not_ruby(&path, &target, e))?;
                    scheme = Some((live_s, n));
                    notes.push(format!(
                        "version_scheme raised to {n} so `brew upgrade` downgrades users of {}; \
                         later formulas must keep version_scheme >= {n}",
                        current.as_deref().unwrap_or("the current version")
                    ));
                }
            }
            Kind::Formula => {
                // The arm above took every bump, so `older` here means the bump is off.
                if older {
                    notes.push(
                        "version_scheme bump is off: users who already upgraded keep the newer \
                         version"
                            .into(),
                    );
                }
                // A lower scheme would make every installed copy look newer than the tap and
                // stop upgrades, so a restore never lowers it.
                let live_s = live.as_deref().and_then(version_scheme);
                if let Some(ls) = live_s.filter(|&ls| Some(ls) > version_scheme(&target_content)) {
                    desired = with_version_scheme(&target_content, ls)
                        .map_err(|e| self.not_ruby(&path, &target, e))?;
                    scheme = Some((live_s, ls));
                    notes.push(format!("version_scheme kept at {ls}: it is never lowered"));
                }
            }
        }
        // Never push what Homebrew could not load.
        let parsed = ruby::Source::parse(&desired).map_err(|e| self.not_ruby(&path, &target, e))?;
        if let Some(retired) = parsed.retired() {
            notes.push(format!(
                "the restored {kind} is retired (`{retired}`): brew refuses to install it"
            ));
        }
        if let Some(why) = parsed.needs_greedy() {
            notes.push(format!(
                "`{why}`: `brew upgrade` skips this cask unless run with `--greedy`, so users keep what they have until the app updates itself or they upgrade with --greedy"
            ));
        }
        let unchanged = live.as_deref() == Some(desired.as_str());
        let diff = similar::TextDiff::from_lines(live.as_deref().unwrap_or(""), &desired)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string();
        Ok(RestorePlan {
            tap: self.registry.clone(),
            name: req.name.clone(),
            kind,
            path,
            base_commit: base,
            target_commit: target,
            live,
            desired,
            unchanged,
            diff: if unchanged { String::new() } else { diff },
            version_scheme: scheme,
            notes,
        })
    }

    fn not_ruby(&self, path: &str, commit: &str, e: ruby::RubyError) -> TapError {
        TapError::NotRuby {
            tap: self.registry.clone(),
            path: path.to_owned(),
            commit: commit.to_owned(),
            error: e.to_string(),
        }
    }

    /// `Some(scheme)` of the newest file declaring `version`, `None` when no commit does.
    fn scheme_of_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Option<u32>>, TapError> {
        let Some((commit, _)) = self
            .find_commit_for_version(name, version, None)
            .or_else(|e| match e {
                // Both kinds of this name: the scheme only concerns the formula.
                TapError::Ambiguous { .. } => {
                    self.find_commit_for_version(name, version, Some(Kind::Formula))
                }
                e => Err(e),
            })?
        else {
            return Ok(None);
        };
        let Some(loc) = self.try_locate(name, &commit, Some(Kind::Formula))? else {
            return Ok(None);
        };
        Ok(self
            .file_at(&commit, &loc.path)?
            .map(|content| version_scheme(&content)))
    }

    /// Commit `plan.desired` on top of the remote head and push it without force.
    pub fn apply(
        &self,
        plan: &RestorePlan,
        message: &str,
        author: &Author,
    ) -> Result<Applied, TapError> {
        if plan.unchanged {
            return Ok(Applied {
                parent: plan.base_commit.clone(),
                commit: plan.base_commit.clone(),
                path: plan.path.clone(),
            });
        }
        match self.replace_and_push(
            &plan.path,
            plan.live.as_deref(),
            Some(&plan.desired),
            message,
            author,
        )? {
            Outcome::Pushed { parent, commit } => Ok(Applied {
                parent,
                commit,
                path: plan.path.clone(),
            }),
            Outcome::AlreadyThere { head } => Ok(Applied {
                parent: head.clone(),
                commit: head,
                path: plan.path.clone(),
            }),
        }
    }

    /// Push a new commit putting the file back to its content at `applied.parent`.
    pub fn undo(
        &self,
        applied: &Applied,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        if applied.is_noop() {
            return Ok(applied.parent.clone());
        }
        let before = self.file_at(&applied.parent, &applied.path)?;
        let ours = self.file_at(&applied.commit, &applied.path)?;
        match self.replace_and_push(
            &applied.path,
            ours.as_deref(),
            before.as_deref(),
            message,
            author,
        )? {
            Outcome::Pushed { commit, .. } => Ok(commit),
            Outcome::AlreadyThere { head } => Ok(head),
        }
    }

    /// Put `path` back from `expected` to `new` (`None` = absent) when no [`Applied`] record
    /// exists (an interrupted run): a file already at `new` is left alone, a file at neither
    /// is someone else's change and a conflict. Returns the remote head afterwards.
    pub fn replace_file(
        &self,
        path: &str,
        expected: Option<&str>,
        new: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        match self.replace_and_push(path, expected, new, message, author)? {
            Outcome::Pushed { commit, .. } => Ok(commit),
            Outcome::AlreadyThere { head } => Ok(head),
        }
    }

    /// Change `path` from `expected` to `new` (`None` = absent) on the remote branch. Other
    /// people's commits on other files are kept by building on the fresh head; a change to
    /// this file is a conflict. Two push attempts at most, never forced.
    fn replace_and_push(
        &self,
        path: &str,
        expected: Option<&str>,
        new: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<Outcome, TapError> {
        let mut last_rejection = None;
        for _attempt in 0..2 {
            let head = self.fetch()?;
            let current = self.file_at(&head, path)?;
            if current.as_deref() == new {
                return Ok(Outcome::AlreadyThere { head });
            }
            if current.as_deref() != expected {
                return Err(TapError::Conflict {
                    tap: self.registry.clone(),
                    path: path.to_owned(),
                    their_commit: self.last_change(&head, path).unwrap_or(head),
                });
            }
            let commit = self.build_commit(&head, path, new, message, author)?;
            let dest = format!("{commit}:refs/heads/{}", self.branch);
            match self.git.run(&["push", "--progress", "origin", &dest]) {
                Ok(_) => {
                    let tracking = format!("refs/remotes/origin/{}", self.branch);
                    self.forget_head();
                    self.git
                        .run(&["update-ref", &tracking, &commit])
                        .map_err(|f| self.git_err(f))?;
                    tracing::info!(tap = %self.registry, %path, %commit, "pushed");
                    return Ok(Outcome::Pushed {
                        parent: head,
                        commit,
                    });
                }
                Err(f) => {
                    // Only a moved remote is worth another try; anything else (auth, hooks,
                    // protected branch) is reported as is.
                    let moved = self.fetch().map(|h| h != head).unwrap_or(false);
                    if !moved {
                        return Err(self.git_err(f));
                    }
                    tracing::info!(tap = %self.registry, "tap moved during push; rebuilding");
                    last_rejection = Some(f);
                }
            }
        }
        let head = self.head()?;
        match last_rejection {
            Some(_) => Err(TapError::Conflict {
                tap: self.registry.clone(),
                path: path.to_owned(),
                their_commit: head,
            }),
            None => Err(TapError::Git {
                tap: self.registry.clone(),
                command: "git push".into(),
                stderr: "push did not happen".into(),
            }),
        }
    }

    fn last_change(&self, head: &str, path: &str) -> Option<String> {
        self.git
            .run(&["log", "-1", "--format=%H", head, "--", path])
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// A commit on `parent` differing only in `path`, built in a private index so the cache
    /// needs no work tree and an interrupted run leaves nothing half-staged.
    fn build_commit(
        &self,
        parent: &str,
        path: &str,
        content: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        let index = self.git.git_dir().join(format!(
            "bagboy-index-{}-{}",
            std::process::id(),
            INDEX_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.build_commit_in(&index, parent, path, content, message, author);
        let _ = std::fs::remove_file(&index);
        result
    }

    fn build_commit_in(
        &self,
        index: &Path,
        parent: &str,
        path: &str,
        content: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        let idx = [("GIT_INDEX_FILE", index.as_os_str())];
        let run = |args: &[&str], stdin: Option<&[u8]>| {
            self.git
                .run_with(args, stdin, &idx)
                .map(|s| s.trim().to_owned())
                .map_err(|f| self.git_err(f))
        };
        run(&["read-tree", parent], None)?;
        match content {
            Some(text) => {
                let mode = self
                    .entry(parent, path)?
                    .map_or_else(|| "100644".to_owned(), |(m, _)| m);
                let blob = run(&["hash-object", "-w", "--stdin"], Some(text.as_bytes()))?;
                run(
                    &[
                        "update-index",
                        "--add",
                        "--cacheinfo",
                        &format!("{mode},{blob},{path}"),
                    ],
                    None,
                )?;
            }
            None => {
                run(&["update-index", "--force-remove", "--", path], None)?;
            }
        }
        let tree = run(&["write-tree"], None)?;
        let who = [
            ("GIT_AUTHOR_NAME", author.name.as_str()),
            ("GIT_AUTHOR_EMAIL", author.email.as_str()),
            ("GIT_COMMITTER_NAME", author.name.as_str()),
            ("GIT_COMMITTER_EMAIL", author.email.as_str()),
        ];
        let env: Vec<(&str, &std::ffi::OsStr)> = who
            .iter()
            .map(|(k, v)| (*k, std::ffi::OsStr::new(*v)))
            .collect();
        self.git
            .run_with(
                &["commit-tree", &tree, "-p", parent, "-F", "-"],
                Some(message.as_bytes()),
                &env,
            )
            .map(|s| s.trim().to_owned())
            .map_err(|f| self.git_err(f))
    }
}

/// Refuse names that are not Homebrew names (they become paths in the tap).
pub fn validate_name(name: &str) -> Result<(), TapError> {
    formula::validate_name(name).map_err(|e| TapError::InvalidName {
        name: e.name,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let spec = |r: &str, remote: Option<&str>| TapSpec {
            registry: r.into(),
            remote: remote.map(Into::into),
            branch: None,
        };
        assert_eq!(
            tap_url(&spec("acme/homebrew-tap", None)).ok().as_deref(),
            Some("https://github.com/acme/homebrew-tap.git")
        );
        assert_eq!(
            tap_url(&spec("acme/tap", Some("file:///srv/t.git")))
                .ok()
                .as_deref(),
            Some("file:///srv/t.git")
        );
        assert!(tap_url(&spec("a/b/c", None)).is_err());
        assert!(tap_url(&spec("../x", None)).is_err());
    }

    #[test]
    fn cache_root_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            cache_root_from(env(&[("BAGBOY_CACHE_DIR", "/c"), ("HOME", "/h")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_root_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/bagboy"))
        );
        assert_eq!(
            cache_root_from(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/bagboy"))
        );
    }

    #[test]
    fn usable_from_spawn_blocking() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Tap>();
        assert_send_sync::<TapError>();
        assert_send_sync::<RestorePlan>();
    }

    #[test]
    fn authors() {
        assert_eq!(
            Author::parse("Jane Doe <jane@x.org>"),
            Some(Author {
                name: "Jane Doe".into(),
                email: "jane@x.org".into()
            })
        );
        assert_eq!(Author::parse("nobody"), None);
    }
}
