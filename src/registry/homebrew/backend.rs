//! The `brew` backend: a Homebrew tap restored through git commits (see the parent module).

use std::sync::Arc;

use serde_json::json;
use tokio::sync::OnceCell;

use super::{Applied, Author, Kind, RestorePlan, RestoreRequest, Tap, TapError, TapSpec};
use crate::config::RegistryConfig;
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    self as registry, BackendError, BoxFuture, Env, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};

/// The step this backend plans: commit a formula or cask back to its target content.
pub const RESTORE_FILE: &str = "restore_file";

pub static BREW: registry::Kind = registry::Kind {
    name: "brew",
    aliases: &["homebrew"],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_tap,
};

/// The keys of a `brew` registry in bagboy.yaml.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Tap git remote; default `https://github.com/<registry>.git`.
    pub remote: Option<String>,
    pub branch: Option<String>,
    /// The formula or cask (`formula:` or `cask:`); default: the project name.
    pub formula: Option<String>,
    /// Which key named it: decides when the tap has a formula and a cask of that name.
    pub prefer: Option<Kind>,
}

impl Options {
    pub fn parse(cfg: &RegistryConfig) -> Result<(Options, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();
        let mut o = Options::default();
        for (key, k, v) in cfg.options() {
            match key {
                "remote" => o.remote = p.string(key, v),
                "branch" => o.branch = p.string(key, v),
                "formula" | "cask" => {
                    o.formula = p.string(key, v);
                    o.prefer = Some(if key == "cask" {
                        Kind::Cask
                    } else {
                        Kind::Formula
                    });
                    // The name becomes a path in the tap; refuse it here rather than let a
                    // recorded name silently win over a config that can never be right.
                    if let Some(Err(e)) = o.formula.as_deref().map(super::validate_name) {
                        p.push(v.loc, e.to_string());
                    }
                }
                _ => warnings.push(crate::suggest::unknown_key(
                    k.loc,
                    "registry",
                    key,
                    &["format", "registry", "remote", "branch", "formula", "cask"],
                )),
            }
        }
        p.finish(o, warnings)
    }
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Options::parse(cfg).map(|(_, w)| w)
}

fn open_tap(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (opts, _) = Options::parse(cfg).map_err(|ps| registry::options_error(cfg, ps))?;
    Ok(Arc::new(BrewRegistry::new(
        &cfg.registry,
        opts,
        env.project_name.as_deref(),
    )))
}

impl BackendError for TapError {
    fn may_have_landed(&self) -> bool {
        // Only a push can land without bagboy knowing (its answer lost); a conflict or a
        // failure before the push changed nothing.
        matches!(self, TapError::Git { command, .. } if command.contains("push"))
    }

    fn is_input(&self) -> bool {
        matches!(
            self,
            TapError::InvalidName { .. }
                | TapError::InvalidTap { .. }
                | TapError::InvalidCommit { .. }
                | TapError::NoCommit { .. }
                | TapError::NotFound { .. }
                | TapError::NoVersion { .. }
                | TapError::NoBranch { .. }
                | TapError::Ambiguous { .. }
                | TapError::NotRuby { .. }
        )
    }
}

pub struct BrewRegistry {
    name: String,
    spec: TapSpec,
    formula: Option<String>,
    prefer: Option<Kind>,
    tap: OnceCell<Arc<Tap>>,
}

impl BrewRegistry {
    pub fn new(registry: &str, opts: Options, project_name: Option<&str>) -> Self {
        BrewRegistry {
            name: registry.to_string(),
            spec: TapSpec {
                registry: registry.to_string(),
                remote: opts.remote,
                branch: opts.branch,
            },
            formula: opts.formula.or_else(|| project_name.map(str::to_string)),
            prefer: opts.prefer,
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
                let root = super::cache_root().ok_or_else(|| {
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
    f: impl FnOnce() -> Result<T, TapError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Task {
            registry: registry.to_string(),
            message: e.to_string(),
        })?
        .map_err(RegistryError::from)
}

impl Registry for BrewRegistry {
    fn format(&self) -> &str {
        BREW.name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> BoxFuture<'_, crate::registry::Probe> {
        Box::pin(async move {
            let credential = crate::registry::gitrepo::github_credential(
                super::tap_url(&self.spec).ok().as_deref(),
            );
            // Fetching into bagboy's cache is the read: nothing outside the cache is written.
            let reached = self
                .tap()
                .await
                .map(|t| format!("fetched {} ({})", t.url_display(), t.branch()))
                .map_err(|e| e.to_string());
            crate::registry::Probe {
                credential,
                reached: Some(reached),
            }
        })
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
                prefer: self.prefer,
            };
            let plan: RestorePlan = blocking(&self.name, {
                let tap = tap.clone();
                move || tap.plan_restore(&req)
            })
            .await?;
            let mut step = Step::new(
                if plan.unchanged {
                    Action::unchanged()
                } else {
                    Action::change(RESTORE_FILE)
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
            let warnings = plan.warnings.clone();
            step.data = json!({ "restore": plan, "message": message });
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: BREW.name.to_string(),
                    registry: self.name.clone(),
                    steps: vec![step],
                    notes,
                },
                refusals: Vec::new(),
                warnings,
            })
        })
    }

    fn verify<'a>(
        &'a self,
        input: crate::registry::VerifyInput<'a>,
    ) -> BoxFuture<'a, Result<crate::registry::Verified, RegistryError>> {
        Box::pin(async move {
            let mut v = crate::registry::Verified::default();
            if !input.dependencies {
                return Ok(v);
            }
            let Some(plan) = input.plan.steps.first().and_then(|s| {
                serde_json::from_value::<RestorePlan>(s.data["restore"].clone()).ok()
            }) else {
                return Ok(v);
            };
            v.checked = true;
            super::verify::downloads(&self.name, &plan, &mut v).await;
            Ok(v)
        })
    }

    fn apply<'a>(
        &'a self,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistryError>> {
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
        state: &'a UndoState,
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
            let undo = match state {
                UndoState::Known(v) => v,
                UndoState::Unknown => {
                    // Interrupted before the outcome was journaled: the push may or may not have
                    // happened. Put the pre-rollback content back only if ours is what is there.
                    let plan: RestorePlan = serde_json::from_value(step.data["restore"].clone())
                        .map_err(|e| {
                            self.invalid(format!(
                                "plan step for {} is damaged: {e}",
                                step.reference
                            ))
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
            };
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
    ) -> BoxFuture<'a, Result<crate::registry::Observation, RegistryError>> {
        Box::pin(async move {
            let tap = self.tap().await?;
            let name = self.formula_for(None)?;
            let v = version.to_string();
            let prefer = self.prefer;
            let found = blocking(&self.name, {
                let (name, v, tap) = (name.clone(), v.clone(), tap.clone());
                move || {
                    let Some((commit, declared)) =
                        tap.find_commit_for_version(&name, &v, prefer)?
                    else {
                        return Ok(None);
                    };
                    let loc = tap.locate(&name, Some(&commit), prefer)?;
                    let scheme = tap
                        .file_at(&commit, &loc.path)?
                        .as_deref()
                        .and_then(super::version_scheme);
                    let rollback = match loc.kind {
                        Kind::Formula => tap.rollback_scheme(&name, &loc.path)?,
                        Kind::Cask => None,
                    };
                    Ok(Some((commit, declared, loc, scheme, rollback)))
                }
            })
            .await?;
            let (commit, declared, loc, scheme, rollback) = found.ok_or_else(|| {
                self.invalid(format!(
                    "{name} declares no version {v} on the tap's branch: publish it before recording"
                ))
            })?;
            let mut pkg = Package::new("brew", &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.formula = Some(name.clone());
            pkg.tap_commit = Some(commit);
            // Which kind this release was: a name can move between cask and formula.
            pkg.extra
                .push(("kind".into(), crate::yaml::Node::str(loc.kind.to_string())));
            if !super::same_version(&declared, &v) {
                // A cask's `4.70.0,224270`: the record keeps what the tap says.
                pkg.extra
                    .push(("version".into(), crate::yaml::Node::str(declared.as_str())));
            }
            let mut warnings = Vec::new();
            if let Some(r) = rollback.filter(|r| scheme.unwrap_or(0) < *r) {
                warnings.push(format!(
                    "{} of {v} has version_scheme {}, lower than the {r} a bagboy rollback set: \
                     users who installed under scheme {r} are never offered this release. Carry \
                     `version_scheme {r}` forward in the release tooling (GoReleaser: `custom_block`), \
                     see docs/homebrew.md",
                    loc.path,
                    scheme.map_or("none".to_string(), |s| s.to_string()),
                ));
            }
            Ok(crate::registry::Observation {
                package: pkg,
                warnings,
            })
        })
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        undo: Option<&'a serde_json::Value>,
        recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if step.action.as_str() != RESTORE_FILE {
                return Err(format!("`{}` is not a step of this backend", step.action));
            }
            let plan: RestorePlan = serde_json::from_value(step.data["restore"].clone())
                .map_err(|e| format!("the step's restore data is damaged: {e}"))?;
            let names: Vec<&str> = self
                .formula
                .iter()
                .map(String::as_str)
                .chain(recorded.iter().filter_map(|p| p.formula.as_deref()))
                .collect();
            if !names.contains(&plan.name.as_str()) {
                return Err(format!(
                    "{} is not a formula or cask of this tap's config or history",
                    plan.name
                ));
            }
            super::validate_name(&plan.name).map_err(|e| e.to_string())?;
            if plan.path != step.reference || Tap::is_location_of(&plan.name, &plan.path).is_none()
            {
                return Err(format!(
                    "{} is not where {} lives",
                    step.reference, plan.name
                ));
            }
            if step.after.as_deref() != Some(plan.target_commit.as_str())
                || step.before.as_deref() != Some(plan.base_commit.as_str())
            {
                return Err("the step's commits disagree with its restore data".into());
            }
            if !recorded
                .iter()
                .any(|p| p.tap_commit.as_deref() == Some(plan.target_commit.as_str()))
            {
                return Err(format!(
                    "{} is not a tap commit the history records",
                    plan.target_commit
                ));
            }
            let message = step.data["message"].as_str().unwrap_or_default();
            if !message.starts_with(&format!("{}: roll back to ", plan.name))
                || message.contains('\n')
                || message.len() > 200
            {
                return Err("the commit message is not one bagboy writes".into());
            }
            let applied: Option<Applied> = match undo {
                Some(u) => Some(
                    serde_json::from_value(u.clone())
                        .map_err(|e| format!("the undo record is damaged: {e}"))?,
                ),
                None => None,
            };
            let tap = self.tap().await.map_err(|e| e.to_string())?;
            let checked = blocking(&self.name, move || {
                // What bagboy would commit: the recorded release's file, at most with its
                // version_scheme changed.
                let target = tap.file_at(&plan.target_commit, &plan.path)?;
                let strip = |t: &str| -> String {
                    t.lines()
                        .filter(|l| !l.trim_start().starts_with("version_scheme "))
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                if target.as_deref().map(strip) != Some(strip(&plan.desired)) {
                    return Ok(Err(format!(
                        "the content to commit is not {} as of {}",
                        plan.path, plan.target_commit
                    )));
                }
                // What an undo would put back: the file as it was before the rollback.
                if tap.file_at(&plan.base_commit, &plan.path)? != plan.live {
                    return Ok(Err(format!(
                        "the content to restore on undo is not {} as of {}",
                        plan.path, plan.base_commit
                    )));
                }
                if let Some(a) = applied {
                    if a.path != plan.path || tap.file_at(&a.parent, &a.path)? != plan.live {
                        return Ok(Err("the undo record does not match the tap".to_string()));
                    }
                }
                Ok(Ok(()))
            })
            .await
            .map_err(|e| e.to_string())?;
            checked
        })
    }

    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Option<Package> {
        let mut pkg = registry::recorded_as_deployed(BREW.name, &self.name, target);
        if let Some(step) = plan.steps.first() {
            if let Some(c) = &step.after {
                pkg.tap_commit = Some(c.clone());
            }
            if pkg.formula.is_none() {
                pkg.formula = step.data["restore"]["name"].as_str().map(str::to_string);
            }
        }
        Some(pkg)
    }
}

fn short(c: &str) -> &str {
    c.get(..10).unwrap_or(c)
}
