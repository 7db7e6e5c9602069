//! The operations layer: one owner per command. Each operation takes the lock, checks its
//! preconditions, writes the journal and the history, and emits events; the CLI only parses,
//! confirms and renders what these functions return.

pub mod apply;
pub mod health;
pub mod judge;
pub mod promote;
pub mod prune;
pub mod record;
pub mod recover;
pub mod rollback;
pub mod unlock;
pub mod validate;

use crate::config::Config;
use crate::error::Error;
use crate::events::{Event, Fanout, Listener};
use crate::history::{Fingerprint, History, Loaded, Lock, Status, Store, Timestamp};

/// A project as the operations see it: its configuration and its history file.
pub struct Workspace {
    pub config: Config,
    pub store: Store,
}

impl Workspace {
    pub fn new(config: Config, store: Store) -> Self {
        Workspace { config, store }
    }

    pub fn history_name(&self) -> String {
        self.store.path().display().to_string()
    }

    /// Take the writer lock for `command`.
    fn lock(&self, command: &str) -> Result<Lock, Error> {
        self.store.lock(command)
    }

    /// The listeners of a writing command: `progress` (the CLI's), then the audit log,
    /// metrics and webhooks. Attached here, once, for every writing command.
    pub fn writing_events(&self, progress: Fanout) -> Fanout {
        let mut f = progress;
        f.add(Box::new(crate::monitor::Monitor::new(
            self.config.monitoring.clone(),
            &self.store.state_dir(),
            self.config.name.as_deref().unwrap_or("bagboy"),
        )));
        f
    }

    /// The door every operation enters by: announced to the listeners, the lock taken
    /// (unless `access` is a preview), an unfinished rollback refused (unless this is the
    /// recovery itself), and the history read under the lock.
    pub(crate) fn begin(
        &self,
        operation: &'static str,
        access: Access,
        listener: &dyn Listener,
    ) -> Result<Begun, Error> {
        let command = command_line();
        listener.on(&Event::Started {
            id: operation_id(),
            operation,
            command: &command,
        });
        let lock = match access {
            Access::Preview => None,
            Access::Write | Access::WriteNew | Access::Recover => Some(self.lock(&command)?),
        };
        let loaded = match access {
            Access::WriteNew => self.store.load_or_empty()?,
            _ => self.store.load()?,
        };
        if matches!(access, Access::Write | Access::WriteNew) {
            self.check_settled(&loaded.history)?;
        }
        Ok(Begun {
            command,
            lock,
            loaded,
        })
    }

    /// Under the lock: no earlier rollback is unfinished (a journal or a `rolling_back` entry).
    /// Only under the lock does a journal mean an unfinished rollback: a running one holds the
    /// lock, and is reported as the lock's holder.
    fn check_settled(&self, history: &History) -> Result<(), Error> {
        if let Some(j) = crate::journal::unfinished(&self.store.state_dir()).first() {
            return Err(Error::refused_with_hint(
                format!(
                    "an earlier rollback did not finish (journal {})",
                    j.display()
                ),
                "run `bagboy recover` to finish or undo it first",
            ));
        }
        if let Some(d) = history
            .deployments
            .iter()
            .find(|d| d.effective_status() == Some(Status::RollingBack))
        {
            return Err(Error::refused_with_hint(
                format!(
                    "a rollback to {} ({}) is still marked rolling_back: it was interrupted",
                    d.version, d.timestamp
                ),
                "run `bagboy recover` to finish or undo it first",
            ));
        }
        Ok(())
    }
}

/// How an operation enters by [`Workspace::begin`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: no lock, nothing written (dry-runs).
    Preview,
    /// Writes an existing history, under the lock, only when no rollback is unfinished.
    Write,
    /// As `Write`, and a missing history is an empty one (`record` starts it).
    WriteNew,
    /// `recover`: under the lock, exactly when a rollback is unfinished.
    Recover,
}

/// What [`Workspace::begin`] hands the operation.
pub(crate) struct Begun {
    pub command: String,
    pub lock: Option<Lock>,
    pub loaded: Loaded,
}

/// The async runtime every operation of the process runs its registry work on: one, so that
/// the HTTP client's pooled connections (bound to the runtime that opened them) carry over
/// from planning to applying.
pub(crate) fn runtime() -> Result<&'static tokio::runtime::Runtime, Error> {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "starting the async runtime".into(),
            source,
        })?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// History entries naming an audit id that is not in `ids`: `(entry, id)`. A missing history
/// is none.
pub fn audit_ids_missing(
    ws: &Workspace,
    ids: &std::collections::HashSet<String>,
) -> Result<Vec<(String, String)>, Error> {
    let loaded = ws.store.load_or_empty()?;
    Ok(loaded
        .history
        .deployments
        .iter()
        .filter_map(|d| {
            let id = d.extra_str("audit")?;
            (!ids.contains(id))
                .then(|| (format!("{} ({})", d.version, d.timestamp), id.to_string()))
        })
        .collect())
}

/// Who is doing this, for the history's `actor`.
pub fn actor() -> Option<String> {
    ["BAGBOY_ACTOR", "GITHUB_ACTOR", "USER", "USERNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
}

/// This process's operation id (`<unix time>-<pid>`): one operation per process, named the
/// same in the audit log, the history entry, webhooks and every log line.
pub fn operation_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        format!("{secs}-{}", std::process::id())
    })
}

/// The command line, for the lock and the journal.
pub fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

/// `sha256:<hex>` of a history fingerprint, as a plan carries it.
pub fn fingerprint_text(f: &Fingerprint) -> Option<String> {
    match f {
        Fingerprint::Missing => None,
        Fingerprint::Sha256(b) => Some(format!("sha256:{}", hex::encode(b))),
    }
}

/// Now, or just after the newest entry when clocks disagree, so the new entry sorts first.
pub(crate) fn later_than(history: &History) -> Timestamp {
    let now = Timestamp::now();
    let newest = history.deployments.iter().map(|d| d.timestamp.at()).max();
    match newest {
        Some(n) if n >= now.at() => {
            let t = n + time::Duration::seconds(1);
            let raw = t
                .to_offset(time::UtcOffset::UTC)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_else(|_| now.to_string());
            Timestamp::parse(&raw).unwrap_or(now)
        }
        _ => now,
    }
}

pub(crate) fn append_note(existing: Option<&str>, note: &str) -> String {
    match existing {
        Some(n) if !n.is_empty() => format!("{n}; {note}"),
        _ => note.to_string(),
    }
}

/// Log how many HTTP clients and requests the operation used (`-vv`).
pub(crate) fn log_http_stats() {
    let (clients, requests) = crate::http::stats();
    tracing::debug!(clients, requests, "http");
    tracing::debug!(processes = crate::git::spawned(), "git");
}
