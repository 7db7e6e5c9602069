//! A rollback plan as a value: what `--dry-run` prints is exactly what `execute` runs, and a
//! saved plan carries enough (history fingerprint, target identity, each step's observed
//! `before`) for `bagboy apply` to refuse it when the world has moved on.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the JSON shape of [`Plan`] (documented in docs/plan-json.md).
pub const PLAN_SCHEMA: u32 = 2;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub schema: u32,
    /// The history file the plan was computed from.
    pub history: String,
    /// `sha256:<hex>` of the history file's bytes when the plan was computed; `None` when the
    /// file did not exist. `apply` refuses the plan when the file no longer has these bytes.
    #[serde(default)]
    pub history_sha256: Option<String>,
    pub current: Option<Release>,
    pub target: Release,
    /// Only some registries (`--registry`) are rolled back.
    pub partial: bool,
    /// The `--registry` filters the plan was computed with (replayed by `apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
    pub force: bool,
    pub registries: Vec<RegistryPlan>,
    /// Reasons the plan must not run (without `--force`). Every one found, not only the first.
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
    /// `promote` for a blue-green promotion; absent for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// What `rollback.validation` checked before anything changed (absent when not configured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

/// The validation of a plan: every check, and the requests they made.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Validation {
    pub checks: Vec<ValidationCheck>,
    /// Registry and download requests the checks made (run concurrently).
    pub requests: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ValidationCheck {
    /// `dependencies`, `smoke_test`, `migrations`, `image_config`.
    pub check: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// `passed`, `failed`, `skipped`, `not_run`.
    pub result: String,
    pub detail: String,
}

/// One side of a rollback: which history entry (version and timestamp identify it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub version: String,
    pub timestamp: String,
    pub status: Option<String>,
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegistryPlan {
    /// The backend kind (`docker`, `oci-layout`, `brew`, ...).
    pub format: String,
    pub registry: String,
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

/// What a step does. Backends name their own changes (`move_tag`, `restore_file`, ...); two
/// names are shared by every backend: `unchanged` and `left_in_place`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(transparent)]
pub struct Action(String);

impl Action {
    pub const UNCHANGED: &'static str = "unchanged";
    pub const LEFT_IN_PLACE: &'static str = "left_in_place";

    /// A change named by its backend, in snake_case (`move_tag`).
    pub fn change(name: &str) -> Action {
        Action(name.to_string())
    }

    pub fn unchanged() -> Action {
        Action(Self::UNCHANGED.into())
    }

    pub fn left_in_place() -> Action {
        Action(Self::LEFT_IN_PLACE.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Steps that change something when executed.
    pub fn changes(&self) -> bool {
        !matches!(self.0.as_str(), Self::UNCHANGED | Self::LEFT_IN_PLACE)
    }

    pub fn is_unchanged(&self) -> bool {
        self.0 == Self::UNCHANGED
    }

    pub fn is_left_in_place(&self) -> bool {
        self.0 == Self::LEFT_IN_PLACE
    }

    /// The verb of a change, for tables: `move_tag` → `move`.
    pub fn verb(&self) -> &str {
        match self.0.as_str() {
            Self::LEFT_IN_PLACE => "leave",
            s => s.split('_').next().unwrap_or(s),
        }
    }

    /// The past tense for progress lines: `move_tag` → `moved`.
    pub fn done(&self) -> String {
        let verb = self.verb();
        if verb.ends_with('e') {
            format!("{verb}d")
        } else {
            format!("{verb}ed")
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Step {
    pub action: Action,
    /// The tag, or the formula/cask path in the tap.
    pub reference: String,
    /// What the registry holds now (digest, or tap commit); `None` when absent.
    pub before: Option<String>,
    /// What it will hold (digest, or the commit the content comes from).
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Unified diff of a file restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Backend data `apply` needs (opaque to everyone else).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Step {
    pub fn new(action: Action, reference: impl Into<String>) -> Self {
        Step {
            action,
            reference: reference.into(),
            before: None,
            after: None,
            detail: None,
            diff: None,
            data: serde_json::Value::Null,
        }
    }
}

/// Where a step sits in a plan: `(registry index, step index)`.
pub type StepId = (usize, usize);

/// Counts by action, for summaries.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub changes: usize,
    pub unchanged: usize,
    pub left_in_place: usize,
}

impl Plan {
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for step in self.registries.iter().flat_map(|r| &r.steps) {
            if step.action.changes() {
                s.changes += 1;
            } else if step.action.is_left_in_place() {
                s.left_in_place += 1;
            } else {
                s.unchanged += 1;
            }
        }
        s
    }

    /// Nothing to change anywhere.
    pub fn is_noop(&self) -> bool {
        self.summary().changes == 0
    }

    /// Whether the target is the release that is already current.
    pub fn targets_current(&self) -> bool {
        self.current.as_ref().is_some_and(|c| {
            crate::history::Version::parse(&c.version).ok()
                == crate::history::Version::parse(&self.target.version).ok()
        })
    }

    /// Every step that changes something, in plan order.
    pub fn changing_steps(&self) -> Vec<StepId> {
        self.registries
            .iter()
            .enumerate()
            .flat_map(|(r, reg)| {
                reg.steps
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.action.changes())
                    .map(move |(i, _)| (r, i))
            })
            .collect()
    }

    pub fn step(&self, id: StepId) -> Option<(&RegistryPlan, &Step)> {
        let rp = self.registries.get(id.0)?;
        Some((rp, rp.steps.get(id.1)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_name_their_verbs() {
        assert_eq!(Action::change("move_tag").verb(), "move");
        assert_eq!(Action::change("move_tag").done(), "moved");
        assert_eq!(Action::change("restore_file").done(), "restored");
        assert_eq!(Action::left_in_place().verb(), "leave");
        assert!(!Action::unchanged().changes());
        assert!(Action::change("deprecate").changes());
    }
}
