//! A rollback plan as a value: what `--dry-run` prints is exactly what `execute` runs.

use serde::{Deserialize, Serialize};

use crate::config::Format;

/// Version of the JSON shape of [`Plan`] (documented in docs/plan-json.md).
pub const PLAN_SCHEMA: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Plan {
    pub schema: u32,
    /// The history file the plan was computed from.
    pub history: String,
    pub current: Option<Release>,
    pub target: Release,
    /// Only some registries (`--registry`) are rolled back.
    pub partial: bool,
    pub force: bool,
    pub registries: Vec<RegistryPlan>,
    /// Reasons the plan must not run (without `--force`). Every one found, not only the first.
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// One side of a rollback: which history entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Release {
    pub version: String,
    pub timestamp: String,
    pub status: Option<String>,
    pub commit: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RegistryPlan {
    pub format: Format,
    pub registry: String,
    pub steps: Vec<Step>,
    pub notes: Vec<String>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Point a tag at the target digest.
    MoveTag,
    /// Commit a formula or cask file back to its target content.
    RestoreFile,
    /// Already at the target: nothing to do.
    Unchanged,
    /// A tag only the current release had; listed, never touched.
    LeftInPlace,
}

impl Action {
    /// Steps that change something when executed.
    pub fn changes(self) -> bool {
        matches!(self, Action::MoveTag | Action::RestoreFile)
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
            match step.action {
                Action::MoveTag | Action::RestoreFile => s.changes += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::LeftInPlace => s.left_in_place += 1,
            }
        }
        s
    }

    /// Nothing to change anywhere.
    pub fn is_noop(&self) -> bool {
        self.summary().changes == 0
    }

    /// `(registry index, step index)` of every step that changes something, in plan order.
    pub fn changing_steps(&self) -> Vec<(usize, usize)> {
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
}
