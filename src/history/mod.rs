//! The deployment history: model, validated loading, atomic compare-and-swap saving, lock, prune.

mod load;
pub mod lock;
mod model;
pub mod remote;
mod save;

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use load::{is_digest, is_git_oid, is_tag, Problem, Problems};
pub use lock::{Holder, Lock, LockError};
pub use model::{
    edit_distance, nearest_versions, Deployment, History, Package, Status, Timestamp, Version,
    VersionError,
};
pub use save::to_yaml;

use crate::yaml::ParseError;

/// The default history location, relative to the project root.
pub const DEFAULT_PATH: &str = ".bagboy/deployment-history.yml";

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history file {path} not found")]
    NotFound { path: PathBuf },
    #[error(transparent)]
    Parse(ParseError),
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{path} changed since bagboy read it (another process or a person edited it); nothing was written")]
    Changed { path: PathBuf },
    #[error(
        "{path} is a symlink: bagboy keeps its state only in real directories of the checkout"
    )]
    SymlinkedDir { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let mut lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.loc, p.message))
        .collect();
    if lines.len() > 1 {
        lines.push(format!("{} problems in {}", problems.len(), path.display()));
    }
    lines.join("\n")
}

/// What the file held when it was read: compared again before writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fingerprint {
    Missing,
    Sha256([u8; 32]),
}

impl Fingerprint {
    fn of(bytes: Option<&[u8]>) -> Self {
        match bytes {
            None => Fingerprint::Missing,
            Some(b) => Fingerprint::Sha256(Sha256::digest(b).into()),
        }
    }
}

/// A history file on disk, and the branch it is shared on (`history_remote`).
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
    remote: Option<std::sync::Arc<remote::Remote>>,
}

/// A history as read, with the fingerprint a later save must match.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub history: History,
    pub fingerprint: Fingerprint,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Store {
            path: path.into(),
            remote: None,
        }
    }

    /// Share the history through `history_remote`.
    pub fn with_remote(mut self, cfg: Option<&remote::RemoteConfig>) -> Result<Self, HistoryError> {
        if let Some(cfg) = cfg {
            self.remote = Some(std::sync::Arc::new(remote::Remote::open(cfg)?));
        }
        Ok(self)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory holding bagboy's state next to the history (lock, journal).
    pub fn state_dir(&self) -> PathBuf {
        let parent = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if parent.file_name().is_some_and(|n| n == ".bagboy") {
            parent.to_path_buf()
        } else {
            parent.join(".bagboy")
        }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.state_dir().join("lock")
    }

    /// Take the writer lock for this history.
    pub fn lock(&self, command: &str) -> Result<Lock, crate::Error> {
        self.check_dirs()?;
        let mut lock = Lock::acquire(&self.lock_path(), command)?;
        if let Some(r) = &self.remote {
            lock.lease = Some(r.acquire(command).map_err(HistoryError::from)?);
        }
        Ok(lock)
    }

    /// The directories holding the history and bagboy's state must not be symlinks: a
    /// checkout could point `.bagboy` at any directory of the runner.
    pub fn check_dirs(&self) -> Result<(), HistoryError> {
        let parent = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
        for dir in parent.into_iter().chain(std::iter::once(self.state_dir())) {
            if crate::files::check_dir_not_symlink(&dir).is_err() {
                return Err(HistoryError::SymlinkedDir { path: dir });
            }
        }
        Ok(())
    }

    /// The history's bytes: with `history_remote`, the branch's (read through bagboy's
    /// cache; the local copy is written only by a writing command's save, after parsing),
    /// else the file's. `None`: there is no history yet.
    fn read_source(&self) -> Result<Option<Vec<u8>>, HistoryError> {
        if let Some(r) = &self.remote {
            self.check_dirs()?;
            if let Some(bytes) = r.read()? {
                return Ok(Some(bytes));
            }
        }
        self.read_bytes()
    }

    /// Read and validate the history; a missing file is an error.
    pub fn load(&self) -> Result<Loaded, HistoryError> {
        match self.read_source()? {
            None => Err(HistoryError::NotFound {
                path: self.path.clone(),
            }),
            Some(bytes) => self.parse_bytes(&bytes),
        }
    }

    /// Read and validate the history; a missing file is an empty history.
    pub fn load_or_empty(&self) -> Result<Loaded, HistoryError> {
        match self.read_source()? {
            None => Ok(Loaded {
                history: History::default(),
                fingerprint: Fingerprint::Missing,
            }),
            Some(bytes) => self.parse_bytes(&bytes),
        }
    }

    fn parse_bytes(&self, bytes: &[u8]) -> Result<Loaded, HistoryError> {
        // The fingerprint is hashed on another core while the file is parsed (a 46 MB
        // history: ~0.1 s of SHA-256 off the critical path).
        let (history, fingerprint) = std::thread::scope(|s| {
            let hashing = s.spawn(|| Fingerprint::of(Some(bytes)));
            let history = load::parse(&self.path, bytes);
            let fingerprint = hashing
                .join()
                .unwrap_or_else(|_| Fingerprint::of(Some(bytes)));
            (history, fingerprint)
        });
        Ok(Loaded {
            history: history?,
            fingerprint,
        })
    }

    /// The fingerprint of the file as it is now, streamed (no second copy of a large history
    /// in memory); a file bagboy would not read (a symlink, too large) fingerprints as changed.
    fn file_fingerprint(&self) -> Result<Fingerprint, HistoryError> {
        use std::io::Read as _;
        self.check_dirs()?;
        let changed = Fingerprint::Sha256([0; 32]);
        let mut f = match crate::files::open_regular(&self.path) {
            Ok(f) => f,
            Err(crate::files::ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Fingerprint::Missing)
            }
            Err(crate::files::ReadError::Io(source)) => {
                return Err(HistoryError::Parse(ParseError::Read {
                    path: self.path.clone(),
                    source,
                }))
            }
            Err(_) => return Ok(changed),
        };
        let limit = crate::yaml::max_file_bytes();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|source| {
                HistoryError::Parse(ParseError::Read {
                    path: self.path.clone(),
                    source,
                })
            })?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > limit {
                return Ok(changed);
            }
            hasher.update(&buf[..n]);
        }
        Ok(Fingerprint::Sha256(hasher.finalize().into()))
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, HistoryError> {
        self.check_dirs()?;
        match crate::yaml::read_bounded(&self.path) {
            Ok(b) => Ok(Some(b)),
            Err(ParseError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(HistoryError::Parse(e)),
        }
    }

    /// Write `history` atomically, refusing if the file no longer matches `expected`.
    ///
    /// The new content goes to a temporary file in the same directory, is fsynced and renamed
    /// over the old one, and the directory is fsynced: a crash leaves the old or the new file,
    /// never a torn one. Callers hold the lock, so the compare and the rename do not race with
    /// another bagboy; the compare catches people and other tools.
    pub fn save(
        &self,
        history: &History,
        expected: &Fingerprint,
    ) -> Result<Fingerprint, HistoryError> {
        // Shared and already on the branch: the branch is the history, and the push below is
        // the compare-and-swap on the commit that was read.
        let shared = self.remote.as_ref().is_some_and(|r| r.has_tip());
        // The file is read back and hashed on another core while the new text is rendered.
        let (text, current) = std::thread::scope(|s| {
            let checking = s.spawn(|| {
                if shared {
                    Ok(expected.clone())
                } else {
                    self.file_fingerprint()
                }
            });
            let text = to_yaml(history);
            let current = checking.join().unwrap_or_else(|_| {
                Err(HistoryError::Write {
                    path: self.path.clone(),
                    source: std::io::Error::other("reading the history back failed"),
                })
            });
            (text, current)
        });
        let current = current?;
        if &current != expected {
            return Err(HistoryError::Changed {
                path: self.path.clone(),
            });
        }
        // Shared: the branch first (compare-and-swap on the commit read), then the local copy.
        if let Some(r) = &self.remote {
            r.publish(text.as_bytes(), &crate::ops::command_line())?;
        }
        // The new fingerprint is hashed while the file is written and synced.
        let (written, fingerprint) = std::thread::scope(|s| {
            let hashing = s.spawn(|| Fingerprint::of(Some(text.as_bytes())));
            let written = write_atomic(&self.path, text.as_bytes());
            let fingerprint = hashing
                .join()
                .unwrap_or_else(|_| Fingerprint::of(Some(text.as_bytes())));
            (written, fingerprint)
        });
        written.map_err(|source| HistoryError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(fingerprint)
    }
}

/// Replace `path` with `bytes` atomically (see [`crate::files::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::files::write_atomic(path, bytes)
}

/// What `versions prune` removes: all but the `keep` newest entries, never the current one.
pub fn prune_plan(history: &History, keep: usize) -> Vec<usize> {
    let current = history.current();
    history
        .newest_first()
        .into_iter()
        .skip(keep)
        .filter(|i| Some(*i) != current)
        .collect()
}
