//! Registry backends: observe live state, plan, apply and undo steps.
//!
//! A backend never touches the history; the coordinator never speaks HTTP or git.

pub mod brew;
pub mod homebrew;
pub mod oci;
pub mod tags;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{Config, Format, RegistryConfig, RollbackSettings};
use crate::history::{Deployment, Package, Version};
use crate::plan::{RegistryPlan, Step};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend needs to plan one registry's part of a rollback.
pub struct PlanInput<'a> {
    pub target: &'a Deployment,
    /// The target's record for this registry, when it has one.
    pub target_package: Option<&'a Package>,
    pub current: Option<&'a Deployment>,
    pub current_package: Option<&'a Package>,
    pub settings: &'a RollbackSettings,
}

/// A backend's plan, with what it found wrong (refusals) and worth saying (warnings).
pub struct PlanOutcome {
    pub plan: RegistryPlan,
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `undo` needs to reverse an applied step; journaled, so plain JSON.
pub type Undo = serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Tags(#[from] tags::TagError),
    #[error(transparent)]
    Tap(#[from] homebrew::TapError),
    /// The backend cannot work with what it was given (config or history input).
    #[error("{registry}: {message}")]
    Invalid { registry: String, message: String },
    #[error("{registry}: internal task failed: {message}")]
    Task { registry: String, message: String },
}

impl RegistryError {
    /// Whether a failed `apply` may still have changed the registry, so compensation has to
    /// check it and put it back. Every backend's undo is safe on a step that never landed.
    pub fn may_have_landed(&self) -> bool {
        match self {
            RegistryError::Invalid { .. } => false,
            RegistryError::Tags(e) => e.may_have_landed(),
            // Only a push can land without bagboy knowing (its answer lost); a conflict or a
            // failure before the push changed nothing.
            RegistryError::Tap(homebrew::TapError::Git { command, .. }) => command.contains("push"),
            RegistryError::Tap(_) => false,
            RegistryError::Task { .. } => true,
        }
    }

    /// Errors that mean "fix your input or credentials" rather than "the operation failed".
    pub fn is_input(&self) -> bool {
        match self {
            RegistryError::Invalid { .. } => true,
            RegistryError::Tags(e) => e.is_input(),
            RegistryError::Tap(e) => matches!(
                e,
                homebrew::TapError::InvalidName { .. }
                    | homebrew::TapError::InvalidTap { .. }
                    | homebrew::TapError::InvalidCommit { .. }
                    | homebrew::TapError::NoCommit { .. }
                    | homebrew::TapError::NotFound { .. }
                    | homebrew::TapError::NoVersion { .. }
                    | homebrew::TapError::NoBranch { .. }
                    | homebrew::TapError::Unreachable { .. }
            ),
            RegistryError::Task { .. } => false,
        }
    }
}

/// One registry bagboy can roll back: observe → plan → apply → undo.
pub trait Registry: Send + Sync {
    fn format(&self) -> Format;

    /// The registry's identity, as in `packages[].registry`.
    fn name(&self) -> &str;

    /// Observe the live registry and work out the steps that bring it to the target.
    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>>;

    /// Fetch what the changing steps need, once, before any of them runs.
    fn prepare<'a>(&'a self, _steps: &'a [Step]) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async { Ok(()) })
    }

    /// Apply one changing step; returns what `undo` needs.
    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Undo, RegistryError>>;

    /// Reverse an applied step.
    fn undo<'a>(
        &'a self,
        step: &'a Step,
        undo: &'a Undo,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Observe what release `version` looks like in this registry (for `bagboy record`).
    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Package, RegistryError>>;

    /// The package to record for the target after `applied` steps succeeded.
    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Package;
}

/// Build the backend for one configured registry.
pub fn open(cfg: &RegistryConfig, config: &Config) -> Result<Arc<dyn Registry>, RegistryError> {
    match cfg.format {
        Format::Docker | Format::OciLayout => Ok(Arc::new(tags::TagRegistry::open(cfg)?)),
        Format::Brew => Ok(Arc::new(brew::BrewRegistry::new(
            cfg,
            config.project_name(),
        ))),
    }
}

/// A registry configuration for a package the history names but `bagboy.yaml` does not.
pub fn default_config(pkg: &Package) -> Option<RegistryConfig> {
    let format = Format::parse(&pkg.format)?;
    Some(RegistryConfig {
        format,
        registry: pkg.registry.clone(),
        insecure: false,
        move_tags: Vec::new(),
        remote: None,
        branch: None,
        formula: pkg.formula.clone(),
        loc: Default::default(),
    })
}
