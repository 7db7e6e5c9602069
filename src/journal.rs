//! The write-ahead journal of a rollback (`.bagboy/journal/<id>.jsonl`): what `recover` reads.
//!
//! Append-only JSON lines: a header with the plan, then one record per state change (a step
//! `started` before it runs, `applied` with its undo data or `failed` after, `undone`, the
//! phase turning to `undoing`), each fsynced before bagboy goes on. Bytes written grow
//! linearly with the steps. After a crash, replaying the lines tells exactly which steps may
//! have reached a registry; a torn last line (the crash hit mid-write) is ignored.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, StepId};

/// The journal's file format version (the header's `journal` field).
pub const JOURNAL_FORMAT: u32 = 2;

/// Journals larger than this are not read (a planted file cannot exhaust memory).
const MAX_JOURNAL_BYTES: u64 = 256 << 20;

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

impl JournalStep {
    pub fn id(&self) -> StepId {
        (self.registry, self.step)
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Applying,
    Undoing,
}

/// The first line: what the operation is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub journal: u32,
    pub id: String,
    pub started_at: String,
    pub pid: u32,
    pub command: String,
    /// Timestamp of the `rolling_back` history entry this operation wrote.
    pub entry_timestamp: String,
    pub plan: Plan,
    /// The changing steps, in the order they are applied.
    pub steps: Vec<StepId>,
}

/// Every later line: one state change.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
enum Record {
    Step {
        step: StepId,
        state: StepState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        undo: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Phase {
        phase: Phase,
    },
}

/// A journal replayed: the header and each step's latest state.
#[derive(Clone, Debug, PartialEq)]
pub struct JournalData {
    pub header: Header,
    pub phase: Phase,
    pub steps: Vec<JournalStep>,
}

impl JournalData {
    fn new(header: Header) -> JournalData {
        let steps = header
            .steps
            .iter()
            .map(|(r, s)| JournalStep {
                registry: *r,
                step: *s,
                state: StepState::Pending,
                undo: None,
                error: None,
            })
            .collect();
        JournalData {
            header,
            phase: Phase::Applying,
            steps,
        }
    }

    fn apply(&mut self, record: Record) {
        match record {
            Record::Phase { phase } => self.phase = phase,
            Record::Step {
                step,
                state,
                undo,
                error,
            } => {
                if let Some(s) = self.steps.iter_mut().find(|s| s.id() == step) {
                    s.state = state;
                    if undo.is_some() {
                        s.undo = undo;
                    }
                    if error.is_some() {
                        s.error = error;
                    }
                }
            }
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.header.plan
    }

    pub fn step(&self, id: StepId) -> Option<&JournalStep> {
        self.steps.iter().find(|s| s.id() == id)
    }
}

/// A journal being written by a running operation (or replayed by `recover`).
pub struct Journal {
    path: PathBuf,
    file: Mutex<Option<File>>,
    data: Mutex<JournalData>,
    stats: Mutex<Stats>,
}

/// What the journal cost: for benchmarks and `-vv` logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub bytes: u64,
    pub syncs: u64,
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
    let mut out: Vec<PathBuf> = fs::read_dir(dir(state_dir))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl" || e == "json"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

impl Journal {
    /// Start a journal: the header line is durable (file and directory fsynced) on return.
    pub fn create(state_dir: &Path, header: Header) -> Result<Journal, JournalError> {
        let jdir = dir(state_dir);
        let path = jdir.join(format!("{}.jsonl", header.id));
        let werr = |source| JournalError::Write {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&jdir).map_err(werr)?;
        let mut opts = OpenOptions::new();
        opts.append(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.custom_flags(libc::O_NOFOLLOW);
        }
        let file = opts.open(&path).map_err(werr)?;
        let j = Journal {
            path: path.clone(),
            file: Mutex::new(Some(file)),
            data: Mutex::new(JournalData::new(header.clone())),
            stats: Mutex::new(Stats::default()),
        };
        j.append(&serde_json::to_value(&header).unwrap_or_default())?;
        File::open(&jdir).and_then(|d| d.sync_all()).map_err(werr)?;
        j.count_sync();
        Ok(j)
    }

    /// Replay a journal left by an earlier run; later records go to the same file.
    pub fn open(path: &Path) -> Result<Journal, JournalError> {
        let rerr = |message: String| JournalError::Read {
            path: path.to_path_buf(),
            message,
        };
        let meta = fs::symlink_metadata(path).map_err(|e| rerr(e.to_string()))?;
        if !meta.file_type().is_file() {
            return Err(rerr("not a regular file".into()));
        }
        if meta.len() > MAX_JOURNAL_BYTES {
            return Err(rerr(format!(
                "{} bytes is larger than a journal can be ({MAX_JOURNAL_BYTES})",
                meta.len()
            )));
        }
        let bytes = fs::read(path).map_err(|e| rerr(e.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|_| rerr("not UTF-8".into()))?;
        let mut lines = text.split_inclusive('\n').enumerate();
        let header: Header = match lines.next() {
            Some((_, l)) => serde_json::from_str(l).map_err(|e| rerr(format!("line 1: {e}")))?,
            None => return Err(rerr("empty".into())),
        };
        if header.journal != JOURNAL_FORMAT {
            return Err(rerr(format!(
                "journal format {} is not {JOURNAL_FORMAT}, written by another bagboy",
                header.journal
            )));
        }
        let mut data = JournalData::new(header);
        for (n, line) in lines {
            if !line.ends_with('\n') {
                // Torn by a crash mid-append: the state change it was recording never
                // completed, which the previous record already covers.
                break;
            }
            let record: Record =
                serde_json::from_str(line).map_err(|e| rerr(format!("line {}: {e}", n + 1)))?;
            data.apply(record);
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| rerr(e.to_string()))?;
        Ok(Journal {
            path: path.to_path_buf(),
            file: Mutex::new(Some(file)),
            data: Mutex::new(data),
            stats: Mutex::new(Stats::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn snapshot(&self) -> JournalData {
        self.data.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Record a step transition and make it durable before returning.
    pub fn record(
        &self,
        step: StepId,
        state: StepState,
        undo: Option<serde_json::Value>,
        error: Option<String>,
    ) -> Result<(), JournalError> {
        let record = Record::Step {
            step,
            state,
            undo,
            error,
        };
        self.append(&serde_json::to_value(&record).unwrap_or_default())?;
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(record);
        Ok(())
    }

    /// Record several step transitions with one write and one fdatasync (group commit): the
    /// step runner makes a finished step's result and the next step's start durable together.
    pub fn record_all(
        &self,
        records: Vec<(StepId, StepState, Option<serde_json::Value>, Option<String>)>,
    ) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let records: Vec<Record> = records
            .into_iter()
            .map(|(step, state, undo, error)| Record::Step {
                step,
                state,
                undo,
                error,
            })
            .collect();
        let values: Vec<serde_json::Value> = records
            .iter()
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect();
        self.append_all(&values)?;
        let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
        for r in records {
            data.apply(r);
        }
        Ok(())
    }

    pub fn set_phase(&self, phase: Phase) -> Result<(), JournalError> {
        let record = Record::Phase { phase };
        self.append(&serde_json::to_value(&record).unwrap_or_default())?;
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply(record);
        Ok(())
    }

    fn append(&self, value: &serde_json::Value) -> Result<(), JournalError> {
        self.append_all(std::slice::from_ref(value))
    }

    fn append_all(&self, values: &[serde_json::Value]) -> Result<(), JournalError> {
        let mut line = Vec::new();
        for value in values {
            line.extend(serde_json::to_vec(value).unwrap_or_default());
            line.push(b'\n');
        }
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let file = guard.as_mut().ok_or_else(|| JournalError::Write {
            path: self.path.clone(),
            source: std::io::Error::other("the journal is closed"),
        })?;
        // One write per record (O_APPEND), then fdatasync: the record is on disk before the
        // step it announces is sent.
        file.write_all(&line)
            .and_then(|_| file.sync_data())
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })?;
        drop(guard);
        let mut st = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        st.records += values.len() as u64;
        st.bytes += line.len() as u64;
        st.syncs += 1;
        Ok(())
    }

    fn count_sync(&self) {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).syncs += 1;
    }

    /// The operation is over and the history says so: the journal is no longer needed.
    pub fn finish(self) -> Result<Stats, JournalError> {
        let stats = self.stats();
        drop(self.file.lock().unwrap_or_else(|p| p.into_inner()).take());
        fs::remove_file(&self.path).map_err(|source| JournalError::Write {
            path: self.path.clone(),
            source,
        })?;
        tracing::debug!(
            journal = %self.path.display(),
            records = stats.records,
            bytes = stats.bytes,
            syncs = stats.syncs,
            "journal finished"
        );
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: &str, steps: Vec<StepId>) -> Header {
        Header {
            journal: JOURNAL_FORMAT,
            id: id.into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            pid: 1,
            command: "bagboy rollback".into(),
            entry_timestamp: "2026-01-01T00:00:00Z".into(),
            plan: Plan {
                schema: crate::plan::PLAN_SCHEMA,
                history: "h".into(),
                history_sha256: None,
                current: None,
                target: crate::plan::Release {
                    version: "v1.0.0".into(),
                    timestamp: "2026-01-01T00:00:00Z".into(),
                    status: None,
                    commit: None,
                },
                partial: false,
                only: Vec::new(),
                force: false,
                registries: Vec::new(),
                refusals: Vec::new(),
                warnings: Vec::new(),
                operation: None,
                validation: None,
            },
            steps,
        }
    }

    #[test]
    fn replays_records_and_ignores_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let steps: Vec<StepId> = (0..250).map(|i| (0, i)).collect();
        let j = Journal::create(dir.path(), header("t", steps.clone())).unwrap();
        for s in &steps {
            j.record(*s, StepState::Started, None, None).unwrap();
            j.record(
                *s,
                StepState::Applied,
                Some(serde_json::json!({"tag": "x"})),
                None,
            )
            .unwrap();
        }
        j.set_phase(Phase::Undoing).unwrap();
        j.record((0, 3), StepState::Undone, None, None).unwrap();
        let stats = j.stats();
        // Linear: one record per transition, none rewritten.
        assert_eq!(stats.records, 1 + 2 * 250 + 2);
        let path = j.path().to_path_buf();
        assert_eq!(fs::metadata(&path).unwrap().len(), stats.bytes);
        drop(j);
        // A crash mid-append leaves half a line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"step":[0,4],"sta"#).unwrap();
        let back = Journal::open(&path).unwrap().snapshot();
        assert_eq!(back.phase, Phase::Undoing);
        assert_eq!(back.step((0, 3)).unwrap().state, StepState::Undone);
        assert_eq!(back.step((0, 4)).unwrap().state, StepState::Applied);
        assert!(back.step((0, 4)).unwrap().undo.is_some());
    }

    #[test]
    fn refuses_to_follow_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        fs::create_dir_all(super::dir(dir.path())).unwrap();
        std::os::unix::fs::symlink(&victim, super::dir(dir.path()).join("x.jsonl")).unwrap();
        assert!(Journal::create(dir.path(), header("x", vec![])).is_err());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(Journal::open(&super::dir(dir.path()).join("x.jsonl")).is_err());
    }
}
