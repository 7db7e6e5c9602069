//! Registries kept as files in a git repository (a Homebrew tap, a Scoop bucket, an AUR package,
//! a Helm chart index, a GitOps deploy repository): the cached bare clone, its lock, fetch,
//! commits built without a work tree, compare-and-swap pushes (never forced) and the undo of
//! a pushed change. What each file means lives in the backend's own folder.

pub mod backend;
pub mod yaml_lines;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::git::{self, Git, GitFailure};

/// Where a repository lives, as written in `bagboy.yaml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    /// `owner/repo` (GitHub) or any git URL.
    pub registry: String,
    /// Overrides the URL derived from `registry` (e.g. `file:///srv/git/tap.git`).
    pub remote: Option<String>,
    /// Default: the remote's default branch, else `main`.
    pub branch: Option<String>,
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
    pub fn resolve(repo: &Repo) -> Author {
        if let Some(a) = std::env::var("BAGBOY_GIT_AUTHOR")
            .ok()
            .and_then(|s| Author::parse(&s))
        {
            return a;
        }
        let get = |key| {
            repo.git
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

/// What can go wrong with a repository; `what` names the kind (`tap`, `Scoop bucket`, ...).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("invalid {what} `{registry}`: expected owner/repo or a git URL")]
    InvalidRemote {
        what: &'static str,
        registry: String,
    },
    #[error("invalid commit `{commit}` for {what} {registry}: expected a hexadecimal commit id")]
    InvalidCommit {
        what: &'static str,
        registry: String,
        commit: String,
    },
    #[error("{what} {registry} at {url} cannot be reached: {stderr}")]
    Unreachable {
        what: &'static str,
        registry: String,
        url: String,
        stderr: String,
    },
    #[error("{what} {registry} at {url} has no branch `{branch}`")]
    NoBranch {
        what: &'static str,
        registry: String,
        url: String,
        branch: String,
    },
    #[error("commit {commit} does not exist in {what} {registry}")]
    NoCommit {
        what: &'static str,
        registry: String,
        commit: String,
    },
    #[error("{path} at commit {commit} in {what} {registry} is not UTF-8 text")]
    NotText {
        what: &'static str,
        registry: String,
        path: String,
        commit: String,
    },
    #[error("{path} in {what} {registry} was changed by commit {their_commit} since the plan was made; nothing was pushed")]
    Conflict {
        what: &'static str,
        registry: String,
        path: String,
        their_commit: String,
    },
    #[error("{what} {registry}: `{command}` failed: {stderr}")]
    Git {
        what: &'static str,
        registry: String,
        command: String,
        stderr: String,
    },
    #[error("{what} {registry}: cannot prepare cache {}", path.display())]
    Cache {
        what: &'static str,
        registry: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RepoError {
    /// Only a push can land without bagboy knowing (its answer lost); a conflict or a failure
    /// before the push changed nothing.
    pub fn may_have_landed(&self) -> bool {
        matches!(self, RepoError::Git { command, .. } if command.contains("push"))
    }

    pub fn is_input(&self) -> bool {
        matches!(
            self,
            RepoError::InvalidRemote { .. }
                | RepoError::InvalidCommit { .. }
                | RepoError::NoCommit { .. }
                | RepoError::NoBranch { .. }
        )
    }
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

/// Where a git repository's credential comes from, for `bagboy check`: `GITHUB_TOKEN`, sent
/// only to github.com (the git runner scopes it there); `None` for any other host.
pub fn github_credential(url: Option<&str>) -> Option<String> {
    url.filter(|u| u.starts_with("https://github.com/"))
        .filter(|_| std::env::var("GITHUB_TOKEN").is_ok_and(|t| !t.is_empty()))
        .map(|_| "GITHUB_TOKEN (for github.com)".to_string())
}

/// `owner/repo` → `https://github.com/owner/repo.git`; URLs and scp-like addresses pass
/// through. `None` when `registry` is neither.
pub fn repo_url(spec: &RepoSpec) -> Option<String> {
    if let Some(remote) = spec.remote.as_deref().filter(|r| !r.trim().is_empty()) {
        // Never an option to git or a remote helper, whatever the config says.
        if !crate::git::is_safe_remote(remote) {
            return None;
        }
        return Some(remote.trim().to_owned());
    }
    let r = spec.registry.trim();
    if r.contains("://") || (r.contains('@') && r.contains(':')) {
        return (!r.starts_with('-')).then(|| r.to_owned());
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
            Some(format!("https://github.com/{owner}/{repo}.git"))
        }
        _ => None,
    }
}

/// Take `<dir>.lock` exclusively (flock), waiting up to the timeout for another bagboy.
/// Repositories opened twice in one process share the lock.
fn lock_cache(
    what: &'static str,
    registry: &str,
    dir: &Path,
) -> Result<std::sync::Arc<std::fs::File>, RepoError> {
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
    let cache_err = |source| RepoError::Cache {
        what,
        registry: registry.to_owned(),
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
                    std::io::Error::other(format!(
                        "another bagboy has held the {what} cache for too long"
                    ))
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

pub fn is_hex_commit(c: &str) -> bool {
    (4..=64).contains(&c.len()) && c.chars().all(|c| c.is_ascii_hexdigit())
}

static INDEX_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How a repository is opened: which words name it and where its cache lives.
#[derive(Debug, Clone, Copy)]
pub struct Flavor {
    /// `tap`, `Scoop bucket`, ...: the noun in messages.
    pub what: &'static str,
    /// The cache's subdirectory (`taps`, `git`).
    pub cache_dir: &'static str,
    /// Prefixed to the cache directory's name (`""` for taps).
    pub prefix: &'static str,
    /// The branch used when neither the config nor the remote names one.
    pub default_branch: &'static str,
    /// The config's default wins over the remote's default branch (an AUR `master`,
    /// a chart index's `gh-pages`).
    pub branch_over_remote: bool,
}

/// One file's change in a commit: from `expected` to `new` (`None` = absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub path: String,
    pub expected: Option<String>,
    pub new: Option<String>,
}

/// A repository cloned (bare) into the local cache and fetched at open.
#[derive(Debug)]
pub struct Repo {
    what: &'static str,
    registry: String,
    url_display: String,
    branch: String,
    pub(crate) git: Git,
    /// Held while the repository is open: one bagboy at a time uses a cache directory.
    _cache_lock: std::sync::Arc<std::fs::File>,
    /// What git already answered during this run (see [`Known`]).
    known: std::sync::Mutex<Known>,
}

/// Answers remembered per run, so a plan that asks the same question of the same commit asks
/// git once. What a ref or an abbreviation names can change, so `head` is forgotten at every
/// fetch and push and `commits` at every fetch and every commit bagboy builds (new objects can
/// make an abbreviation ambiguous). `files` and `listings` are keyed by full commit ids, whose
/// trees never change: they stay true whatever moves.
#[derive(Debug, Default)]
struct Known {
    /// The tracking ref's commit.
    head: Option<String>,
    /// A commit as asked (abbreviated or full) → its full id; only commits that exist.
    commits: std::collections::HashMap<String, String>,
    /// (full commit, path) → the file's bytes there (`None`: no file at that path).
    files: std::collections::HashMap<(String, String), Option<Vec<u8>>>,
    /// Bytes held in `files`; past [`KNOWN_FILES_BUDGET`] they are dropped and read again.
    file_bytes: usize,
    /// (full commit, pathspecs) → the paths `ls-tree -r` lists under them.
    listings: std::collections::HashMap<(String, Vec<String>), Vec<String>>,
}

/// At most this many bytes of file content are remembered (a chart index can be megabytes and
/// a search through history reads it at many commits).
const KNOWN_FILES_BUDGET: usize = 64 << 20;

/// A full commit id (40 hex digits, or 64 in a SHA-256 repository).
fn is_full_id(c: &str) -> bool {
    (c.len() == 40 || c.len() == 64) && c.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Files read at a commit by [`Repo::blobs_at`].
pub struct Blobs {
    /// The commit's full id.
    pub commit: String,
    /// Each path's bytes, in the order asked (`None`: no file at that path).
    pub blobs: Vec<Option<Vec<u8>>>,
}

/// What a compare-and-swap push did.
pub enum Outcome {
    Pushed { parent: String, commit: String },
    AlreadyThere { head: String },
}

impl Repo {
    /// Open with `$GITHUB_TOKEN` (if set) as the credential for github.com.
    pub fn open(spec: &RepoSpec, cache_root: &Path, flavor: Flavor) -> Result<Repo, RepoError> {
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        Repo::open_with_token(spec, cache_root, flavor, token.as_ref())
    }

    /// Clone into `cache_root/<flavor.cache_dir>/<registry>` or fetch the existing cache; a
    /// cache that git cannot use is thrown away and cloned again, since it holds nothing of
    /// the user's.
    pub fn open_with_token(
        spec: &RepoSpec,
        cache_root: &Path,
        flavor: Flavor,
        token: Option<&SecretString>,
    ) -> Result<Repo, RepoError> {
        let what = flavor.what;
        let registry = spec.registry.trim().to_owned();
        let url = repo_url(spec).ok_or_else(|| RepoError::InvalidRemote {
            what,
            registry: spec
                .remote
                .as_deref()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or(&spec.registry)
                .trim()
                .to_owned(),
        })?;
        // Keyed by the remote URL too: two configs naming the same repository with different
        // remotes (a checkout's and the real one) never share a cache, so a rollback can
        // never push to a remote that another run set.
        let url_key = {
            use sha2::Digest as _;
            hex::encode(&sha2::Sha256::digest(url.as_bytes())[..8])
        };
        let dir = cache_root.join(flavor.cache_dir).join(format!(
            "{}{}-{url_key}",
            flavor.prefix,
            sanitize(&registry)
        ));
        let cache_lock = lock_cache(what, &registry, &dir)?;
        let git = Git::new(&dir, token);
        let url_display = git.scrub(&url);
        let mut repo = Repo {
            what,
            registry,
            url_display,
            branch: String::new(),
            git,
            _cache_lock: cache_lock,
            known: Default::default(),
        };
        repo.ensure_cache(&url, &dir, false)?;

        let listing = repo
            .git
            .run(&["ls-remote", "--symref", "origin"])
            .map_err(|f| repo.unreachable(f))?;
        let remote_default = listing.lines().find_map(|l| {
            l.strip_prefix("ref: refs/heads/")
                .and_then(|r| r.strip_suffix("\tHEAD"))
                .map(str::to_owned)
        });
        let configured = spec.branch.clone().filter(|b| !b.trim().is_empty());
        repo.branch = if flavor.branch_over_remote {
            configured.unwrap_or_else(|| flavor.default_branch.to_owned())
        } else {
            configured
                .or(remote_default)
                .unwrap_or_else(|| flavor.default_branch.to_owned())
        };
        let wanted = format!("refs/heads/{}", repo.branch);
        if repo.branch.starts_with('-')
            || !listing
                .lines()
                .any(|l| l.split('\t').nth(1) == Some(wanted.as_str()))
        {
            return Err(RepoError::NoBranch {
                what,
                registry: repo.registry.clone(),
                url: repo.url_display.clone(),
                branch: repo.branch.clone(),
            });
        }
        if repo.fetch().is_err() {
            tracing::warn!(registry = %repo.registry, "git cache unusable, cloning again");
            repo.ensure_cache(&url, &dir, true)?;
            repo.fetch()?;
        }
        Ok(repo)
    }

    fn ensure_cache(&self, url: &str, dir: &Path, fresh: bool) -> Result<(), RepoError> {
        let cache_err = |source| RepoError::Cache {
            what: self.what,
            registry: self.registry.clone(),
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

    fn unreachable(&self, f: GitFailure) -> RepoError {
        RepoError::Unreachable {
            what: self.what,
            registry: self.registry.clone(),
            url: self.url_display.clone(),
            stderr: f.stderr,
        }
    }

    /// Our cache's equivalent of `reset --hard origin/<branch>`: force the tracking ref to the
    /// remote head, whatever it was before.
    pub fn fetch(&self) -> Result<String, RepoError> {
        self.forget(true);
        let refspec = format!("+refs/heads/{b}:refs/remotes/origin/{b}", b = self.branch);
        let fetched = self
            .git
            .run(&["fetch", "--progress", "--no-tags", "origin", &refspec]);
        // Forgotten again once the ref has moved: nothing read while git ran is kept.
        self.forget(true);
        fetched.map_err(|f| self.unreachable(f))?;
        self.head()
    }

    pub fn git_err(&self, f: GitFailure) -> RepoError {
        RepoError::Git {
            what: self.what,
            registry: self.registry.clone(),
            command: f.command,
            stderr: f.stderr,
        }
    }

    /// The git runner on the cache (reads only: every write goes through [`Repo::replace`]).
    pub fn git(&self) -> &Git {
        &self.git
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The remote URL with any credentials masked.
    pub fn url_display(&self) -> &str {
        &self.url_display
    }

    /// The remote branch head as last fetched (asked of git once until the next fetch or push).
    pub fn head(&self) -> Result<String, RepoError> {
        if let Some(h) = self.known().head.clone() {
            return Ok(h);
        }
        let r = format!("refs/remotes/origin/{}^{{commit}}", self.branch);
        let head = self
            .git
            .run(&["rev-parse", "--verify", "--quiet", &r])
            .map(|s| s.trim().to_owned())
            .map_err(|f| self.git_err(f))?;
        let mut known = self.known();
        known.head = Some(head.clone());
        known.commits.insert(head.clone(), head.clone());
        Ok(head)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The tracking ref is about to move (`ref_moves`: a fetch or a push), or new objects were
    /// written (a commit was built): ask git again next time.
    fn forget(&self, ref_moves: bool) {
        let mut known = self.known();
        if ref_moves {
            known.head = None;
        }
        known.commits.clear();
    }

    /// Full id of `commit`, refusing anything that is not a hex id present in the repository.
    pub fn resolve_commit(&self, commit: &str) -> Result<String, RepoError> {
        self.check_commit(commit)?;
        if let Some(full) = self.known().commits.get(commit) {
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
            .map_err(|_| self.no_commit(commit))?;
        self.remember_commit(commit, &full);
        Ok(full)
    }

    fn check_commit(&self, commit: &str) -> Result<(), RepoError> {
        if is_hex_commit(commit) {
            Ok(())
        } else {
            Err(RepoError::InvalidCommit {
                what: self.what,
                registry: self.registry.clone(),
                commit: commit.to_owned(),
            })
        }
    }

    fn no_commit(&self, commit: &str) -> RepoError {
        RepoError::NoCommit {
            what: self.what,
            registry: self.registry.clone(),
            commit: commit.to_owned(),
        }
    }

    fn remember_commit(&self, commit: &str, full: &str) {
        let mut known = self.known();
        known.commits.insert(commit.to_owned(), full.to_owned());
        known.commits.insert(full.to_owned(), full.to_owned());
    }

    /// `Some((mode, blob))` when `path` is a file at `commit`.
    pub fn entry(&self, commit: &str, path: &str) -> Result<Option<(String, String)>, RepoError> {
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

    /// The full id of `commit` and the bytes of each of `paths` there (`None`: no file at that
    /// path). What is not yet known is read with one `git cat-file --batch`, which checks the
    /// commit too.
    pub fn blobs_at(&self, commit: &str, paths: &[&str]) -> Result<Blobs, RepoError> {
        self.check_commit(commit)?;
        let cached = |known: &Known, full: &str| -> Option<Vec<Option<Vec<u8>>>> {
            paths
                .iter()
                .map(|p| {
                    known
                        .files
                        .get(&(full.to_owned(), (*p).to_owned()))
                        .cloned()
                })
                .collect()
        };
        {
            let known = self.known();
            if let Some(full) = known.commits.get(commit) {
                if let Some(found) = cached(&known, full) {
                    return Ok(Blobs {
                        commit: full.clone(),
                        blobs: found,
                    });
                }
            }
        }
        let peeled = format!("{commit}^{{commit}}");
        let names: Vec<String> = paths.iter().map(|p| format!("{commit}:{p}")).collect();
        let mut ask: Vec<&str> = vec![&peeled];
        ask.extend(names.iter().map(String::as_str));
        let mut found = self
            .git
            .cat_file_batch(&ask)
            .map_err(|f| self.git_err(f))?
            .into_iter();
        let full = match found.next().flatten() {
            Some(c) if c.kind == "commit" && is_full_id(&c.oid) => c.oid,
            _ => return Err(self.no_commit(commit)),
        };
        self.remember_commit(commit, &full);
        let blobs: Vec<Option<Vec<u8>>> = found
            .map(|o| o.filter(|o| o.kind == "blob").map(|o| o.content))
            .collect();
        if blobs.len() != paths.len() {
            return Err(self.git_err(GitFailure {
                command: "git cat-file --batch".into(),
                stderr: "fewer answers than questions".into(),
            }));
        }
        let mut known = self.known();
        let size: usize = blobs.iter().flatten().map(Vec::len).sum();
        if known.file_bytes + size > KNOWN_FILES_BUDGET {
            known.files.clear();
            known.file_bytes = 0;
        }
        if size <= KNOWN_FILES_BUDGET {
            known.file_bytes += size;
            for (p, b) in paths.iter().zip(&blobs) {
                known
                    .files
                    .insert((full.clone(), (*p).to_owned()), b.clone());
            }
        }
        Ok(Blobs {
            commit: full,
            blobs,
        })
    }

    /// The text of each of `paths` at `commit` (`None`: absent), read with at most one git
    /// process.
    pub fn files_at(&self, commit: &str, paths: &[&str]) -> Result<Vec<Option<String>>, RepoError> {
        let Blobs { commit, blobs } = self.blobs_at(commit, paths)?;
        paths
            .iter()
            .zip(blobs)
            .map(|(p, b)| self.text(b, p, &commit))
            .collect()
    }

    /// A file's bytes as text, or [`RepoError::NotText`].
    pub fn text(
        &self,
        bytes: Option<Vec<u8>>,
        path: &str,
        commit: &str,
    ) -> Result<Option<String>, RepoError> {
        bytes
            .map(|b| {
                String::from_utf8(b).map_err(|_| RepoError::NotText {
                    what: self.what,
                    registry: self.registry.clone(),
                    path: path.to_owned(),
                    commit: commit.to_owned(),
                })
            })
            .transpose()
    }

    /// File content at a commit; `None` when the file does not exist there.
    pub fn file_at(&self, commit: &str, path: &str) -> Result<Option<String>, RepoError> {
        Ok(self.files_at(commit, &[path])?.pop().flatten())
    }

    /// The paths `ls-tree -r` lists at `commit` under `pathspecs` (remembered per commit).
    pub fn list_files(&self, commit: &str, pathspecs: &[&str]) -> Result<Vec<String>, RepoError> {
        let full = if is_full_id(commit) {
            commit.to_owned()
        } else {
            self.resolve_commit(commit)?
        };
        let key = (full, pathspecs.iter().map(|s| (*s).to_owned()).collect());
        if let Some(known) = self.known().listings.get(&key) {
            return Ok(known.clone());
        }
        let mut args = vec!["ls-tree", "-r", "--name-only", "--full-tree", &key.0, "--"];
        args.extend(pathspecs);
        let out = self.git.run(&args).map_err(|f| self.git_err(f))?;
        let listed: Vec<String> = out.lines().map(str::to_owned).collect();
        self.known().listings.insert(key, listed.clone());
        Ok(listed)
    }

    /// Commits on the fetched head that touched any of `paths`, newest first.
    pub fn commits_touching(&self, paths: &[&str]) -> Result<Vec<String>, RepoError> {
        let head = self.head()?;
        let specs: Vec<String> = paths.iter().map(|p| format!(":(literal){p}")).collect();
        let mut args = vec!["log", "--format=%H", head.as_str(), "--"];
        args.extend(specs.iter().map(String::as_str));
        let out = self.git.run(&args).map_err(|f| self.git_err(f))?;
        Ok(out
            .lines()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect())
    }

    pub fn last_change(&self, head: &str, path: &str) -> Option<String> {
        self.git
            .run(&["log", "-1", "--format=%H", head, "--", path])
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    /// Change each file from `expected` to `new` on the remote branch, in one commit. Other
    /// people's commits on other files are kept by building on the fresh head; a change to one
    /// of these files is a conflict. When every file is already at `new`, nothing is pushed.
    /// Two push attempts at most, never forced.
    pub fn replace(
        &self,
        changes: &[Change],
        message: &str,
        author: &Author,
    ) -> Result<Outcome, RepoError> {
        let mut last_rejection = None;
        let first = changes.first().map(|c| c.path.as_str()).unwrap_or("");
        for _attempt in 0..2 {
            let head = self.fetch()?;
            let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
            let current = self.files_at(&head, &paths)?;
            if changes.iter().zip(&current).all(|(c, now)| *now == c.new) {
                return Ok(Outcome::AlreadyThere { head });
            }
            if let Some((c, _)) = changes
                .iter()
                .zip(&current)
                .find(|(c, now)| **now != c.expected)
            {
                return Err(RepoError::Conflict {
                    what: self.what,
                    registry: self.registry.clone(),
                    path: c.path.clone(),
                    their_commit: self.last_change(&head, &c.path).unwrap_or(head),
                });
            }
            let commit = self.build_commit(&head, changes, message, author)?;
            let dest = format!("{commit}:refs/heads/{}", self.branch);
            self.forget(true);
            match self.git.run(&["push", "--progress", "origin", &dest]) {
                Ok(_) => {
                    let tracking = format!("refs/remotes/origin/{}", self.branch);
                    let moved = self.git.run(&["update-ref", &tracking, &commit]);
                    self.forget(true);
                    moved.map_err(|f| self.git_err(f))?;
                    tracing::info!(registry = %self.registry, path = %first, %commit, "pushed");
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
                    tracing::info!(registry = %self.registry, "remote moved during push; rebuilding");
                    last_rejection = Some(f);
                }
            }
        }
        let head = self.head()?;
        match last_rejection {
            Some(_) => Err(RepoError::Conflict {
                what: self.what,
                registry: self.registry.clone(),
                path: first.to_owned(),
                their_commit: head,
            }),
            None => Err(RepoError::Git {
                what: self.what,
                registry: self.registry.clone(),
                command: "git push".into(),
                stderr: "push did not happen".into(),
            }),
        }
    }

    /// A commit on `parent` differing only in the changed files, built in a private index so
    /// the cache needs no work tree and an interrupted run leaves nothing half-staged.
    fn build_commit(
        &self,
        parent: &str,
        changes: &[Change],
        message: &str,
        author: &Author,
    ) -> Result<String, RepoError> {
        let index = self.git.git_dir().join(format!(
            "bagboy-index-{}-{}",
            std::process::id(),
            INDEX_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = self.build_commit_in(&index, parent, changes, message, author);
        let _ = std::fs::remove_file(&index);
        self.forget(false);
        result
    }

    fn build_commit_in(
        &self,
        index: &Path,
        parent: &str,
        changes: &[Change],
        message: &str,
        author: &Author,
    ) -> Result<String, RepoError> {
        let idx = [("GIT_INDEX_FILE", index.as_os_str())];
        let run = |args: &[&str], stdin: Option<&[u8]>| {
            self.git
                .run_with(args, stdin, &idx)
                .map(|s| s.trim().to_owned())
                .map_err(|f| self.git_err(f))
        };
        run(&["read-tree", parent], None)?;
        for c in changes {
            match &c.new {
                Some(text) => {
                    let mode = self
                        .entry(parent, &c.path)?
                        .map_or_else(|| "100644".to_owned(), |(m, _)| m);
                    let blob = run(&["hash-object", "-w", "--stdin"], Some(text.as_bytes()))?;
                    run(
                        &[
                            "update-index",
                            "--add",
                            "--cacheinfo",
                            &format!("{mode},{blob},{}", c.path),
                        ],
                        None,
                    )?;
                }
                None => {
                    run(&["update-index", "--force-remove", "--", &c.path], None)?;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let spec = |r: &str, remote: Option<&str>| RepoSpec {
            registry: r.into(),
            remote: remote.map(Into::into),
            branch: None,
        };
        assert_eq!(
            repo_url(&spec("acme/scoop-bucket", None)).as_deref(),
            Some("https://github.com/acme/scoop-bucket.git")
        );
        assert_eq!(
            repo_url(&spec("acme/x", Some("file:///srv/t.git"))).as_deref(),
            Some("file:///srv/t.git")
        );
        assert_eq!(repo_url(&spec("acme/x", Some("--upload-pack=x"))), None);
        assert_eq!(
            repo_url(&spec("acme/x", Some("ext::sh -c touch% /tmp/x"))),
            None
        );
        assert_eq!(repo_url(&spec("acme/x", Some("fd::3"))), None);
        assert!(repo_url(&spec("a/b/c", None)).is_none());
        assert!(repo_url(&spec("../x", None)).is_none());
    }

    /// A commit on `parent` (if any) holding `a.txt` = `text`, made directly in `bare`.
    fn commit_in(bare: &Git, parent: Option<&str>, text: &str) -> String {
        let blob = bare
            .run_with(
                &["hash-object", "-w", "--stdin"],
                Some(text.as_bytes()),
                &[],
            )
            .expect("blob");
        let entry = format!("100644 blob {}\ta.txt\n", blob.trim());
        let tree = bare
            .run_with(&["mktree"], Some(entry.as_bytes()), &[])
            .expect("tree");
        let who: Vec<(&str, &std::ffi::OsStr)> = [
            "GIT_AUTHOR_NAME",
            "GIT_AUTHOR_EMAIL",
            "GIT_COMMITTER_NAME",
            "GIT_COMMITTER_EMAIL",
        ]
        .iter()
        .map(|k| (*k, std::ffi::OsStr::new("t")))
        .collect();
        let mut args = vec!["commit-tree", tree.trim()];
        if let Some(p) = parent {
            args.extend(["-p", p]);
        }
        args.extend(["-m", text]);
        let commit = bare.run_with(&args, None, &who).expect("commit");
        let commit = commit.trim().to_owned();
        bare.run(&["update-ref", "refs/heads/main", &commit])
            .expect("update-ref");
        commit
    }

    /// What a run remembers never outlives what it describes: the head moves with a fetch and
    /// a push, files at a commit stay what they are, abbreviations are resolved again.
    #[test]
    fn remembered_answers_follow_fetch_and_push() {
        let root = tempfile::tempdir().expect("tempdir");
        let bare_dir = root.path().join("remote.git");
        std::fs::create_dir_all(&bare_dir).expect("mkdir");
        let bare = Git::new(&bare_dir, None);
        bare.run(&["init", "--bare", "--quiet", "-b", "main"])
            .expect("init");
        let c1 = commit_in(&bare, None, "one\n");
        let spec = RepoSpec {
            registry: "acme/x".into(),
            remote: Some(format!("file://{}", bare_dir.display())),
            branch: Some("main".into()),
        };
        let flavor = Flavor {
            what: "test repository",
            cache_dir: "git",
            prefix: "test-",
            default_branch: "main",
            branch_over_remote: false,
        };
        let repo =
            Repo::open_with_token(&spec, &root.path().join("cache"), flavor, None).expect("open");
        let text = |c: &str| repo.file_at(c, "a.txt").expect("read");
        assert_eq!(repo.head().expect("head"), c1);
        assert_eq!(text(&c1).as_deref(), Some("one\n"));
        assert_eq!(text(&c1[..8]).as_deref(), Some("one\n"));
        assert_eq!(repo.file_at(&c1, "missing.txt").expect("read"), None);
        assert!(matches!(
            repo.file_at("0123456789abcdef", "a.txt"),
            Err(RepoError::NoCommit { .. })
        ));
        assert!(matches!(
            repo.file_at("HEAD", "a.txt"),
            Err(RepoError::InvalidCommit { .. })
        ));

        // Someone else pushes: the head is the fetched one until the next fetch.
        let c2 = commit_in(&bare, Some(&c1), "two\n");
        assert_eq!(repo.head().expect("head"), c1);
        assert_eq!(repo.fetch().expect("fetch"), c2);
        assert_eq!(repo.head().expect("head"), c2);
        assert_eq!(text(&c2).as_deref(), Some("two\n"));
        assert_eq!(text(&c1).as_deref(), Some("one\n"));

        // Our push moves the head to our commit.
        let author = Author {
            name: "t".into(),
            email: "t@example.com".into(),
        };
        let change = |expected: &str, new: &str| Change {
            path: "a.txt".into(),
            expected: Some(expected.into()),
            new: Some(new.into()),
        };
        let Ok(Outcome::Pushed { parent, commit }) =
            repo.replace(&[change("two\n", "three\n")], "three", &author)
        else {
            panic!("expected a push");
        };
        assert_eq!(parent, c2);
        assert_eq!(repo.head().expect("head"), commit);
        assert_eq!(
            bare.run(&["rev-parse", "refs/heads/main"])
                .expect("remote")
                .trim(),
            commit
        );
        assert_eq!(
            text(&repo.head().expect("head")).as_deref(),
            Some("three\n")
        );
        // A stale expectation is a conflict, read against the fresh head.
        assert!(matches!(
            repo.replace(&[change("two\n", "four\n")], "four", &author),
            Err(RepoError::Conflict { .. })
        ));
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
