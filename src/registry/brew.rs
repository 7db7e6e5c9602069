//! The `brew` registry: a Homebrew tap restored through git commits (see `homebrew`).

use std::sync::Arc;

use serde_json::json;
use tokio::sync::OnceCell;

use super::homebrew::{self, Applied, Author, Kind, RestorePlan, RestoreRequest, Tap, TapSpec};
use super::{BoxFuture, PlanInput, PlanOutcome, RegistryError, Undo};
use crate::config::{Format, RegistryConfig};
use crate::history::{Package, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};

pub struct BrewRegistry {
    name: String,
    spec: TapSpec,
    formula: Option<String>,
    tap: OnceCell<Arc<Tap>>,
}

impl BrewRegistry {
    pub fn new(cfg: &RegistryConfig, project_name: Option<&str>) -> Self {
        BrewRegistry {
            name: cfg.registry.clone(),
            spec: TapSpec {
                registry: cfg.registry.clone(),
                remote: cfg.remote.clone(),
                branch: cfg.branch.clone(),
            },
            formula: cfg
                .formula
                .clone()
                .or_else(|| project_name.map(str::to_string)),
            tap: OnceCell::new(),
        }
    }

    fn invalid(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Invalid {
            registry: self.name.clone(),
            message: message.into(),
        }
    }

    /// Clone or fetch the tap once per run (git is blocking: off the async threads).
    async fn tap(&self) -> Result<Arc<Tap>, RegistryError> {
        self.tap
            .get_or_try_init(|| async {
                let root = homebrew::cache_root().ok_or_else(|| {
                    self.invalid("no cache directory: set BAGBOY_CACHE_DIR or HOME")
                })?;
                let spec = self.spec.clone();
                let tap = blocking(&self.name, move || Tap::open(&spec, &root)).await?;
                Ok(Arc::new(tap))
            })
            .await
            .cloned()
    }

    fn formula_for(&self, pkg: Option<&Package>) -> Result<String, RegistryError> {
        pkg.and_then(|p| p.formula.clone())
            .or_else(|| self.formula.clone())
            .ok_or_else(|| {
                self.invalid(
                    "no formula name: set `formula:` for this registry or `name:` in bagboy.yaml",
                )
            })
    }
}

/// Run blocking git work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    registry: &str,
    f: impl FnOnce() -> Result<T, homebrew::TapError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Task {
            registry: registry.to_string(),
            message: e.to_string(),
        })?
        .map_err(RegistryError::from)
}

impl super::Registry for BrewRegistry {
    fn format(&self) -> Format {
        Format::Brew
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(async move {
            let tap = self.tap().await?;
            let name = self.formula_for(input.target_package)?;
            let target = input.target.version.to_string();
            let current = input.current.map(|c| c.version.to_string());
            let req = RestoreRequest {
                name: name.clone(),
                target_commit: input.target_package.and_then(|p| p.tap_commit.clone()),
                target_version: target.clone(),
                current_version: current.clone(),
                bump_version_scheme: input.settings.version_scheme_bump,
            };
            let plan: RestorePlan = blocking(&self.name, {
                let tap = tap.clone();
                move || tap.plan_restore(&req)
            })
            .await?;
            let mut step = Step::new(
                if plan.unchanged {
                    Action::Unchanged
                } else {
                    Action::RestoreFile
                },
                &plan.path,
            );
            step.before = Some(plan.base_commit.clone());
            step.after = Some(plan.target_commit.clone());
            let mut detail = format!("{} {name} as of {}", plan.kind, short(&plan.target_commit));
            if let Some((from, to)) = plan.version_scheme {
                if from != Some(to) {
                    detail.push_str(&format!(
                        "; version_scheme {} → {to} so users who upgraded to {} are offered {target} by `brew upgrade`",
                        from.map(|f| f.to_string()).unwrap_or_else(|| "none".into()),
                        current.as_deref().unwrap_or("the current version"),
                    ));
                }
            }
            step.detail = Some(detail);
            if !plan.unchanged {
                step.diff = Some(plan.diff.clone());
            }
            let message = format!(
                "{name}: roll back to {target}{}",
                current
                    .as_deref()
                    .map(|c| format!(" (from {c})"))
                    .unwrap_or_default()
            );
            let mut notes = plan.notes.clone();
            if plan.kind == Kind::Cask && notes.is_empty() {
                notes.push(
                    "casks need no version_scheme: any different version is offered as an upgrade"
                        .into(),
                );
            }
            step.data = json!({ "restore": plan, "message": message });
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: Format::Brew,
                    registry: self.name.clone(),
                    steps: vec![step],
                    notes,
                },
                refusals: Vec::new(),
                warnings: Vec::new(),
            })
        })
    }

    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Undo, RegistryError>> {
        Box::pin(async move {
            let tap = self.tap().await?;
            let plan: RestorePlan =
                serde_json::from_value(step.data["restore"].clone()).map_err(|e| {
                    self.invalid(format!("plan step for {} is damaged: {e}", step.reference))
                })?;
            let message = step.data["message"]
                .as_str()
                .unwrap_or("roll back")
                .to_string();
            let applied = blocking(&self.name, move || {
                let author = Author::resolve(&tap);
                tap.apply(&plan, &message, &author)
            })
            .await?;
            Ok(serde_json::to_value(&applied).unwrap_or_default())
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        undo: &'a Undo,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let tap = self.tap().await?;
            let message = format!(
                "{}: undo rollback (another registry failed)",
                step.reference
                    .rsplit('/')
                    .next()
                    .unwrap_or(&step.reference)
                    .trim_end_matches(".rb")
            );
            if undo.is_null() {
                // Interrupted before the outcome was journaled: the push may or may not have
                // happened. Put the pre-rollback content back only if ours is what is there.
                let plan: RestorePlan = serde_json::from_value(step.data["restore"].clone())
                    .map_err(|e| {
                        self.invalid(format!("plan step for {} is damaged: {e}", step.reference))
                    })?;
                blocking(&self.name, move || {
                    let author = Author::resolve(&tap);
                    tap.replace_file(
                        &plan.path,
                        Some(&plan.desired),
                        plan.live.as_deref(),
                        &message,
                        &author,
                    )
                })
                .await?;
                return Ok(());
            }
            let applied: Applied = serde_json::from_value(undo.clone()).map_err(|e| {
                self.invalid(format!(
                    "undo record for {} is damaged: {e}",
                    step.reference
                ))
            })?;
            blocking(&self.name, move || {
                let author = Author::resolve(&tap);
                tap.undo(&applied, &message, &author)
            })
            .await?;
            Ok(())
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Package, RegistryError>> {
        Box::pin(async move {
            let tap = self.tap().await?;
            let name = self.formula_for(None)?;
            let v = version.to_string();
            let found = blocking(&self.name, {
                let (name, v) = (name.clone(), v.clone());
                move || tap.find_commit_for_version(&name, &v)
            })
            .await?;
            let commit = found.ok_or_else(|| {
                self.invalid(format!("{name} declares no version {v} on the tap's branch: publish it before recording"))
            })?;
            let mut pkg = Package::new("brew", &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.formula = Some(name);
            pkg.tap_commit = Some(commit);
            Ok(pkg)
        })
    }

    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Package {
        let mut pkg = target
            .cloned()
            .unwrap_or_else(|| Package::new("brew", &self.name));
        pkg.loc = Default::default();
        pkg.status = Some(Status::Deployed);
        if let Some(step) = plan.steps.first() {
            if let Some(c) = &step.after {
                pkg.tap_commit = Some(c.clone());
            }
            if pkg.formula.is_none() {
                pkg.formula = step.data["restore"]["name"].as_str().map(str::to_string);
            }
        }
        pkg
    }
}

fn short(c: &str) -> &str {
    c.get(..10).unwrap_or(c)
}
