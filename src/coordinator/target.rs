//! Choosing the rollback target: `--version`, or the contract's default.

use crate::error::Error;
use crate::history::{History, Version};

/// The index of the target entry. `history_name` names the file in messages.
pub fn choose_target(
    history: &History,
    version: Option<&str>,
    history_name: &str,
) -> Result<usize, Error> {
    match version {
        Some(v) => {
            let parsed = Version::parse(v).map_err(|e| {
                Error::refused(format!("--version {v} is not a semver version: {e}"))
            })?;
            history.find_target(&parsed).ok_or_else(|| {
                Error::refused_with_hint(
                    format!("version {v} is not in {history_name}"),
                    "see the recorded versions with `bagboy versions list`",
                )
            })
        }
        None => history.default_target().ok_or_else(|| {
            Error::refused_with_hint(
                "there is no earlier good version to roll back to",
                "name one with --version (and --force for failed or unsafe entries)",
            )
        }),
    }
}
