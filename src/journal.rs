//! The write-ahead journal of a rollback (`.bagboy/journal/<id>.json`): what `recover` reads.
//!
//! Each changing step is recorded as `started` before it runs and `applied` (with its undo
//! data) or `failed` after; the file is rewritten atomically and fsynced at every transition,
//! so after a crash it tells exactly which steps may have reached a registry.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::history::write_atomic;
use crate::plan::Plan;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    /// Sent or about to be sent: the registry may or may not have it.
    Started,
    Applied,
    Failed,
    Undone,
    UndoFailed,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalStep {
    pub registry: usize,
    pub step: usize,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Applying,
    Undoing,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct JournalData {
    pub id: String,
    pub started_at: String,
    pub pid: u32,
    pub command: String,
    pub phase: Phase,
    /// Timestamp of the `rolling_back` history entry this operation wrote.
    pub entry_timestamp: String,
    pub plan: Plan,
    pub steps: Vec<JournalStep>,
}

/// A journal being written by a running operation.
pub struct Journal {
    path: PathBuf,
    data: Mutex<JournalData>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write journal {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read journal {path}: {message}")]
    Read { path: PathBuf, message: String },
}

pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// Unfinished journals in a state directory, oldest first.
pub fn unfinished(state_dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir(state_dir))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Journal {
    pub fn create(state_dir: &Path, data: JournalData) -> Result<Journal, JournalError> {
        let path = dir(state_dir).join(format!("{}.json", data.id));
        let j = Journal {
            path,
            data: Mutex::new(data),
        };
        j.flush()?;
        Ok(j)
    }

    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let bytes = std::fs::read(path).map_err(|e| JournalError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let data: JournalData = serde_json::from_slice(&bytes).map_err(|e| JournalError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Journal {
            path: path.to_path_buf(),
            data: Mutex::new(data),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> JournalData {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, JournalData> {
        // A panic while holding the lock leaves valid data: every write is a whole value.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a step transition and make it durable before returning.
    pub fn record(
        &self,
        registry: usize,
        step: usize,
        state: StepState,
        undo: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), JournalError> {
        {
            let mut d = self.lock();
            if let Some(s) = d
                .steps
                .iter_mut()
                .find(|s| s.registry == registry && s.step == step)
            {
                s.state = state;
                if undo.is_some() {
                    s.undo = undo;
                }
                if error.is_some() {
                    s.error = error;
                }
            }
        }
        self.flush()
    }

    pub fn set_phase(&self, phase: Phase) -> Result<(), JournalError> {
        self.lock().phase = phase;
        self.flush()
    }

    fn flush(&self) -> Result<(), JournalError> {
        let d = self.lock();
        let bytes = serde_json::to_vec_pretty(&*d).unwrap_or_default();
        write_atomic(&self.path, &bytes).map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }

    /// The operation is over and the history says so: the journal is no longer needed.
    pub fn finish(self) -> Result<(), JournalError> {
        std::fs::remove_file(&self.path).map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })
    }
}
