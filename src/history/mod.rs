//! The deployment history: model, validated loading, atomic compare-and-swap saving, lock, prune.

mod load;
pub mod lock;
mod model;
mod save;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

pub use load::{is_digest, is_git_oid, is_tag, Problem, Problems};
pub use lock::{Holder, Lock, LockError};
pub use model::{Deployment, History, Package, Status, Timestamp, Version};
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
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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

/// A history file on disk.
#[derive(Clone, Debug)]
pub struct Store {
    path: PathBuf,
}

/// A history as read, with the fingerprint a later save must match.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub history: History,
    pub fingerprint: Fingerprint,
}

impl Store {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Store { path: path.into() }
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
    pub fn lock(&self, command: &str) -> Result<Lock, LockError> {
        Lock::acquire(&self.lock_path(), command)
    }

    /// Read and validate the history; a missing file is an error.
    pub fn load(&self) -> Result<Loaded, HistoryError> {
        match self.read_bytes()? {
            None => Err(HistoryError::NotFound {
                path: self.path.clone(),
            }),
            Some(bytes) => self.parse_bytes(&bytes),
        }
    }

    /// Read and validate the history; a missing file is an empty history.
    pub fn load_or_empty(&self) -> Result<Loaded, HistoryError> {
        match self.read_bytes()? {
            None => Ok(Loaded {
                history: History::default(),
                fingerprint: Fingerprint::Missing,
            }),
            Some(bytes) => self.parse_bytes(&bytes),
        }
    }

    fn parse_bytes(&self, bytes: &[u8]) -> Result<Loaded, HistoryError> {
        let history = load::parse(&self.path, bytes)?;
        Ok(Loaded {
            history,
            fingerprint: Fingerprint::of(Some(bytes)),
        })
    }

    fn read_bytes(&self) -> Result<Option<Vec<u8>>, HistoryError> {
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
        let text = to_yaml(history);
        let current = match self.read_bytes() {
            Ok(b) => Fingerprint::of(b.as_deref()),
            Err(HistoryError::Parse(_)) => Fingerprint::Sha256([0; 32]),
            Err(e) => return Err(e),
        };
        if &current != expected {
            return Err(HistoryError::Changed {
                path: self.path.clone(),
            });
        }
        write_atomic(&self.path, text.as_bytes()).map_err(|source| HistoryError::Write {
            path: self.path.clone(),
            source,
        })?;
        Ok(Fingerprint::of(Some(text.as_bytes())))
    }
}

/// Replace `path` with `bytes` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
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
