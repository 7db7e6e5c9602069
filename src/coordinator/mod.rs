//! The `RollbackCoordinator`: which registries take part, the plan from their backends, and
//! one step runner that applies, compensates and resumes. It reads the history it is given and
//! never writes it; the operations layer (`ops`) owns the lock, the journal and write-back.

mod record;
mod recover;
mod run;
mod target;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde::Serialize;

pub use record::{observe_release, probe_all, resolve_tag};
pub use recover::{RecoverReport, Recovered};
pub use run::{Gate, Outcome, OutcomeKind, StepReport};
pub use target::choose_target;

use crate::config::{Config, RegistryConfig};
use crate::error::{Error, Exit};
use crate::history::{Deployment, History};
use crate::plan::{Plan, Release, PLAN_SCHEMA};
use crate::registry::{self, Env, PlanInput, Registry, RegistryError};

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Request {
    /// Target version; `None` = the default target (contract rules).
    pub version: Option<String>,
    /// `--registry` filters: a format name or a registry identity.
    pub registries: Vec<String>,
    pub force: bool,
    /// `--skip-validation`: run without `rollback.validation` (a warning says so).
    pub skip_validation: bool,
}

/// Opens the backend of a registry configuration; injected so tests can use fakes.
pub type Opener =
    Box<dyn Fn(&RegistryConfig) -> Result<Arc<dyn Registry>, RegistryError> + Send + Sync>;

pub struct RollbackCoordinator<'a> {
    config: &'a Config,
    open: Opener,
    backends: Mutex<HashMap<String, Arc<dyn Registry>>>,
}

pub(crate) fn release(d: &Deployment) -> Release {
    Release {
        version: d.version.to_string(),
        timestamp: d.timestamp.to_string(),
        status: d.effective_status().map(|s| s.to_string()),
        commit: d.commit.clone(),
    }
}

/// Errors from several registries as one error: input errors exit 2, the rest 1.
pub(crate) fn errors_to_error(what: &str, errors: Vec<(String, RegistryError)>) -> Error {
    let input = errors.iter().all(|(_, e)| e.is_input());
    let mut lines = vec![format!(
        "{what} failed for {} registr{}:",
        errors.len(),
        if errors.len() == 1 { "y" } else { "ies" }
    )];
    for (name, e) in &errors {
        let mut msg = format!("  {}", e.named(name));
        let mut src = std::error::Error::source(e);
        while let Some(s) = src {
            let m = s.to_string();
            if !msg.contains(&m) {
                msg.push_str(&format!(": {m}"));
            }
            src = s.source();
        }
        lines.push(msg);
    }
    let exit = if input {
        Exit::Usage
    } else {
        Exit::FailedUndone
    };
    let mut msg = lines.join("\n");
    msg.push_str("\nnothing was changed");
    Error::Failed(msg, exit)
}

impl<'a> RollbackCoordinator<'a> {
    /// A coordinator opening the real backends of `config`.
    pub fn new(config: &'a Config) -> Self {
        let env = Env::of(config);
        Self::with_opener(config, Box::new(move |cfg| registry::open(cfg, &env)))
    }

    /// A coordinator whose backends come from `open` (fakes, in tests).
    pub fn with_opener(config: &'a Config, open: Opener) -> Self {
        RollbackCoordinator {
            config,
            open,
            backends: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &Config {
        self.config
    }

    fn backend(&self, cfg: &RegistryConfig) -> Result<Arc<dyn Registry>, RegistryError> {
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(&cfg.registry) {
            return Ok(b.clone());
        }
        let b = (self.open)(cfg)?;
        map.insert(cfg.registry.clone(), b.clone());
        Ok(b)
    }

    /// The backend of a registry the plan names: configured, else opened with defaults.
    pub(crate) fn backend_for(
        &self,
        rp: &crate::plan::RegistryPlan,
    ) -> Result<Arc<dyn Registry>, RegistryError> {
        let cfg = self
            .config
            .find_registry(&rp.registry)
            .cloned()
            .unwrap_or_else(|| RegistryConfig::new(&rp.format, &rp.registry));
        self.backend(&cfg)
    }

    /// The registries taking part: configured ones and those the target recorded, filtered.
    fn registries_for(
        &self,
        target: &Deployment,
        filters: &[String],
    ) -> Result<Vec<RegistryConfig>, Error> {
        let mut out: Vec<RegistryConfig> = self.config.registries.clone();
        for p in &target.packages {
            if out.iter().any(|r| r.registry == p.registry) {
                continue;
            }
            match registry::default_config(p) {
                Some(cfg) => {
                    tracing::warn!(
                        "{} is recorded for {} but not configured in bagboy.yaml; using defaults",
                        p.registry,
                        target.version
                    );
                    out.push(cfg);
                }
                None => tracing::warn!(
                    "{} ({}) has a format bagboy cannot roll back; skipped",
                    p.registry,
                    p.format
                ),
            }
        }
        let matches = |r: &RegistryConfig, f: &str| {
            r.registry == f
                || r.format == f
                || registry::kind(f).is_some_and(|k| k.name == r.format)
        };
        if !filters.is_empty() {
            for f in filters {
                if !out.iter().any(|r| matches(r, f)) {
                    let known: Vec<String> = out
                        .iter()
                        .map(|r| format!("{} ({})", r.registry, r.format))
                        .collect();
                    return Err(Error::refused(format!(
                        "--registry {f} matches no registry; known: {}",
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    )));
                }
            }
            out.retain(|r| filters.iter().any(|f| matches(r, f)));
        }
        if out.is_empty() {
            return Err(Error::refused_with_hint(
                "no registries to roll back",
                "add `registries:` to bagboy.yaml, or record packages in the history",
            ));
        }
        Ok(out)
    }

    /// Observe every registry and compute the plan to bring them to `history[target_idx]`.
    /// Reads only. `history_sha256` is the fingerprint of the file `history` came from.
    pub async fn plan(
        &self,
        history: &History,
        target_idx: usize,
        req: &Request,
        history_path: &str,
        history_sha256: Option<String>,
    ) -> Result<Plan, Error> {
        let target = &history.deployments[target_idx];
        let current_idx = history.current();
        let current = current_idx.map(|i| &history.deployments[i]);
        let mut refusals = Vec::new();
        let mut warnings = Vec::new();
        if let Some(s) = target.effective_status().filter(|s| s.is_failure()) {
            refusals.push(format!(
                "{} is marked `{s}`; rolling back to it needs --force",
                target.version
            ));
        }
        if target.rollback_safe == Some(false) {
            refusals.push(format!(
                "{} is marked `rollback_safe: false`; rolling back to it needs --force",
                target.version
            ));
        }
        if let Some(c) = current.filter(|c| c.version < target.version) {
            warnings.push(format!(
                "{} is newer than the current {}: this rolls forward",
                target.version, c.version
            ));
        }
        let cfgs = self.registries_for(target, &req.registries)?;
        let mut errors = Vec::new();
        let mut backends = Vec::new();
        for cfg in &cfgs {
            match self.backend(cfg) {
                Ok(b) => backends.push(b),
                Err(e) => errors.push((cfg.registry.clone(), e)),
            }
        }
        // At most `concurrency` registries are observed at once: 50 registries on one host
        // share a few pooled connections instead of opening one per request.
        let results: Vec<_> = futures_util::stream::iter(backends.iter().map(|b| {
            let input = PlanInput {
                target,
                target_package: target.package(b.name()),
                current,
                current_package: current.and_then(|c| c.package(b.name())),
                deployments: &history.deployments,
                settings: &self.config.rollback,
            };
            async move { (b.name().to_string(), b.plan(input).await) }
        }))
        .buffered(self.config.rollback.concurrency.max(1))
        .collect()
        .await;
        let mut registries = Vec::new();
        for (name, r) in results {
            match r {
                Ok(o) => {
                    refusals.extend(o.refusals);
                    warnings.extend(o.warnings);
                    registries.push(o.plan);
                }
                Err(e) => errors.push((name, e)),
            }
        }
        if !errors.is_empty() {
            return Err(errors_to_error("planning", errors));
        }
        if req.force && !refusals.is_empty() {
            warnings.extend(refusals.drain(..).map(|r| format!("forced: {r}")));
        }
        Ok(Plan {
            schema: PLAN_SCHEMA,
            history: history_path.to_string(),
            history_sha256,
            current: current.map(release),
            target: release(target),
            partial: !req.registries.is_empty(),
            only: req.registries.clone(),
            force: req.force,
            registries,
            refusals,
            warnings,
            operation: None,
            validation: None,
        })
    }

    /// The package each registry of `plan` will hold once its steps ran (for write-back).
    pub fn restored_packages(
        &self,
        plan: &Plan,
        target: &Deployment,
    ) -> Vec<crate::history::Package> {
        plan.registries
            .iter()
            .filter_map(|rp| {
                let b = self.backend_for(rp).ok()?;
                b.restored_package(rp, target.package(&rp.registry))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
