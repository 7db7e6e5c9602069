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
            let missing = |why: String| {
                let near = crate::history::nearest_versions(
                    v,
                    history.deployments.iter().map(|d| &d.version),
                );
                Error::refused_with_hint(
                    why,
                    if near.is_empty() {
                        "see the recorded versions with `bagboy versions list`".to_string()
                    } else {
                        format!(
                            "did you mean {}? (`bagboy versions list` shows them all)",
                            near.join(", ")
                        )
                    },
                )
            };
            let parsed = Version::parse(v)
                .map_err(|e| missing(format!("--version {v} is not a version: {e}")))?;
            history
                .find_target(&parsed)
                .ok_or_else(|| missing(format!("version {v} is not in {history_name}")))
        }
        None => history.default_target().ok_or_else(|| {
            Error::refused_with_hint(
                "there is no earlier good version to roll back to",
                "name one with --version (and --force for failed or unsafe entries)",
            )
        }),
    }
}
