//! bagboy's top-level error and the one place that maps errors to the contract's exit codes.

use crate::config::ConfigError;
use crate::history::{HistoryError, LockError};

/// The contract's exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success; for `--dry-run`, the plan was computed.
    Success = 0,
    /// The operation failed and every change it had made was undone.
    FailedUndone = 1,
    /// Bad usage, configuration or input; nothing was changed.
    Usage = 2,
    /// Partly applied and could not be undone: manual work needed.
    Partial = 3,
    /// Another bagboy holds the lock, or the history changed underneath.
    Busy = 4,
    /// `health`: a health check failed.
    Unhealthy = 5,
    /// `health` / `rollback --auto`: a check could not be evaluated; nothing changed.
    Inconclusive = 6,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("another bagboy is running: {0}")]
    Lock(#[from] LockError),
    /// Bad usage or input found before anything changed.
    #[error("{message}")]
    Refused {
        message: String,
        hint: Option<String>,
    },
    /// The history or a registry changed since a plan was made; nothing was changed.
    #[error("{message}")]
    Stale { message: String, hint: String },
    /// Refused after listing every problem (a plan with refusals).
    #[error("{0}")]
    Failed(String, Exit),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn refused(message: impl Into<String>) -> Self {
        Error::Refused {
            message: message.into(),
            hint: None,
        }
    }

    pub fn refused_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Error::Refused {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// The exit code the contract assigns to this error.
    pub fn exit(&self) -> Exit {
        match self {
            Error::History(HistoryError::Changed { .. }) => Exit::Busy,
            Error::History(HistoryError::Write { .. }) => Exit::FailedUndone,
            Error::History(HistoryError::Remote(e)) => match e {
                crate::history::remote::RemoteError::Git { .. } => Exit::FailedUndone,
                _ => Exit::Busy,
            },
            Error::History(_) | Error::Config(_) | Error::Refused { .. } => Exit::Usage,
            Error::Lock(LockError::Held { .. }) => Exit::Busy,
            Error::Lock(_) => Exit::Usage,
            Error::Stale { .. } => Exit::Busy,
            Error::Failed(_, exit) => *exit,
            Error::Io { .. } => Exit::FailedUndone,
        }
    }

    /// A next step for the user, when there is an obvious one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::History(HistoryError::NotFound { .. })
                if !["bagboy.yaml", "bagboy.yml"]
                    .iter()
                    .any(|f| std::path::Path::new(f).exists())
                    && std::env::var_os("BAGBOY_CONFIG").is_none()
                    && !std::env::args().any(|a| a == "--config" || a.starts_with("--config=")) =>
            {
                Some(format!(
                    "there is no bagboy.yaml in {}: run bagboy from the project's directory, or pass --config PATH",
                    std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|_| "this directory".into())
                ))
            }
            Error::History(HistoryError::NotFound { .. }) => Some(
                "record a release first with `bagboy record --version V`, or point --history at the file".into(),
            ),
            Error::History(HistoryError::Changed { .. }) => {
                Some("re-run the command: it reads the file again and re-plans".into())
            }
            Error::History(HistoryError::Parse(crate::yaml::ParseError::TooLarge { size, .. })) => {
                // Rounded up to the next MiB: enough for this file, no more.
                let mib = size.div_ceil(1 << 20);
                Some(format!(
                    "raise the limit for one prune to bring it back under: `BAGBOY_MAX_FILE_BYTES={} bagboy versions prune --keep 1000` ({mib} MiB; the limit guards against hostile files, so raise it only for a history you trust)",
                    mib << 20
                ))
            }
            Error::Lock(LockError::Held { holder, .. })
                if holder.host == crate::history::lock::host_name() =>
            {
                Some(format!(
                    "wait for pid {} to finish; once it is gone, bagboy takes the lock over on its own",
                    holder.pid
                ))
            }
            Error::Lock(LockError::Held { holder, .. }) => Some(format!(
                "the lock was taken on another host ({}), where bagboy cannot see whether pid {} still runs; \
                 if that machine is gone (an ephemeral CI runner), break the lock with `bagboy unlock` \
                 and then run `bagboy recover`",
                holder.host, holder.pid
            )),
            Error::History(HistoryError::Remote(crate::history::remote::RemoteError::Held { .. })) => Some(
                "wait for it to finish; if that machine is gone, its lease expires on its own (history_remote.lease)".into(),
            ),
            Error::History(HistoryError::Remote(crate::history::remote::RemoteError::Moved { .. })) => {
                Some("re-run the command: it reads the shared history again and re-plans".into())
            }
            Error::Refused { hint, .. } => hint.clone(),
            Error::Stale { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }
}
