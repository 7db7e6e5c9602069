//! The writer lock (`.bagboy/lock`): one bagboy changes a project's registries and history at a time.
//!
//! The lock is a file created exclusively, holding who took it. A lock left by a process that
//! died (same host, pid gone or reused) is stale and taken over with a warning; the takeover
//! itself is serialised through a second exclusive file so two processes cannot both win.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Who holds a lock.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub started_at: String,
    pub command: String,
    /// The holder's start time in clock ticks since boot (`/proc/<pid>/stat`), to tell a live
    /// holder from an unrelated process that reused its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_start: Option<u64>,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on {} since {} (`{}`)",
            self.pid, self.host, self.started_at, self.command
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{path} is held by {holder}")]
    Held { path: PathBuf, holder: Holder },
    #[error("{path} exists but cannot be read as a bagboy lock: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("cannot create lock {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    holder: Holder,
    released: bool,
    /// With `history_remote`: the lease on the shared branch, released with the lock.
    pub(crate) lease: Option<super::remote::Lease>,
}

impl Lock {
    /// Take the lock at `path`, or fail naming the holder. `command` is shown to waiters.
    pub fn acquire(path: &Path, command: &str) -> Result<Lock, LockError> {
        let io = |source| LockError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let holder = Holder {
            pid: std::process::id(),
            host: host_name(),
            started_at: crate::history::Timestamp::now().to_string(),
            command: command.to_string(),
            proc_start: process_start(std::process::id()),
        };
        match create_exclusive(path, &holder) {
            Ok(()) => {
                return Ok(Lock {
                    path: path.to_path_buf(),
                    holder,
                    released: false,
                    lease: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let existing = read_holder(path)?;
        if !is_stale(&existing) {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder: existing,
            });
        }
        take_over(path, &existing, holder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// Release explicitly (also done on drop).
    pub fn release(mut self) {
        self.remove();
    }

    fn remove(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        // Only remove the file if it is still ours (a takeover may have replaced it).
        if read_holder(&self.path).ok().as_ref() == Some(&self.holder) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.remove();
    }
}

fn create_exclusive(path: &Path, holder: &Holder) -> std::io::Result<()> {
    let mut f = crate::files::create_new(path)?;
    let body = serde_json::to_vec_pretty(holder).map_err(std::io::Error::other)?;
    f.write_all(&body)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

fn read_holder(path: &Path) -> Result<Holder, LockError> {
    // A creator may be between create and write; give it a moment before calling it garbage.
    for attempt in 0..20 {
        match crate::files::read_regular(path, 64 << 10) {
            Ok(bytes) if !bytes.is_empty() => {
                return serde_json::from_slice(&bytes).map_err(|e| LockError::Unreadable {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
            Ok(_) if attempt < 19 => std::thread::sleep(Duration::from_millis(10)),
            Ok(_) => {
                return Err(LockError::Unreadable {
                    path: path.to_path_buf(),
                    reason: "the file is empty".into(),
                })
            }
            Err(crate::files::ReadError::Io(e)) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            Err(e) => {
                return Err(LockError::Unreadable {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// A lock is stale when its holder ran on this host and that process is gone (or its pid now
/// belongs to a process that started at another time). Locks from other hosts are never stale.
/// Whether the holder is a process on this host that is gone (its lock will be taken over).
pub fn holder_is_gone(h: &Holder) -> bool {
    h.host == host_name() && is_stale(h)
}

fn is_stale(h: &Holder) -> bool {
    if h.host != host_name() {
        return false;
    }
    if !process_alive(h.pid) {
        return true;
    }
    match (h.proc_start, process_start(h.pid)) {
        (Some(recorded), Some(now)) => recorded != now,
        _ => false,
    }
}

fn process_alive(pid: u32) -> bool {
    let Ok(pid_t) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid_t, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Field 22 of `/proc/<pid>/stat` (start time); `None` off Linux.
pub fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn take_over(path: &Path, stale: &Holder, mine: Holder) -> Result<Lock, LockError> {
    let guard = path.with_extension("takeover");
    let io = |source| LockError::Io {
        path: guard.clone(),
        source,
    };
    // A takeover guard older than this was left by a crash mid-takeover.
    if let Ok(meta) = fs::metadata(&guard) {
        let old = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age > Duration::from_secs(30));
        if old {
            let _ = fs::remove_file(&guard);
        }
    }
    match create_exclusive(&guard, &mine) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder: read_holder(&guard).unwrap_or_else(|_| stale.clone()),
            })
        }
        Err(e) => return Err(io(e)),
    }
    let result = (|| {
        let current = read_holder(path)?;
        if &current != stale {
            return Err(LockError::Held {
                path: path.to_path_buf(),
                holder: current,
            });
        }
        tracing::warn!(
            lock = %path.display(),
            "taking over a stale lock left by {stale} (that process is gone)"
        );
        fs::remove_file(path).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        create_exclusive(path, &mine).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Lock {
            path: path.to_path_buf(),
            holder: mine.clone(),
            released: false,
            lease: None,
        })
    })();
    let _ = fs::remove_file(&guard);
    result
}

/// Who holds the lock at `path`, if anyone (for `bagboy unlock`).
pub fn holder_of(path: &Path) -> Result<Option<Holder>, LockError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LockError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
        Ok(_) => read_holder(path).map(Some),
    }
}

/// Remove the lock at `path` if it is still held by `expected` (what the user was shown).
pub fn break_lock(path: &Path, expected: &Holder) -> Result<bool, LockError> {
    if read_holder(path)? != *expected {
        return Ok(false);
    }
    fs::remove_file(path).map_err(|source| LockError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(true)
}

pub fn host_name() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}
