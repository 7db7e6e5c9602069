//! Registry backends: observe live state, plan, apply and undo steps.
//!
//! A backend never touches the history; the coordinator never speaks HTTP or git. Each backend
//! is a folder (`oci/`, `homebrew/`) holding its config keys, its package record, its error
//! classification and its `Registry` implementation; [`KINDS`] is the one line per backend
//! where they are opened.

pub mod aur;
pub mod cargo;
pub mod github_release;
pub mod gitops;
pub mod gitrepo;
pub mod helm_repo;
pub mod homebrew;
pub mod npm;
pub mod oci;
pub mod scoop;
pub mod traffic;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{Config, RegistryConfig, RollbackSettings};
use crate::history::{Deployment, Package, Problem, Version};
use crate::plan::{RegistryPlan, Step};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How a [`Kind`] opens a backend for one configured registry.
pub type OpenFn = fn(&RegistryConfig, &Env) -> Result<Arc<dyn Registry>, RegistryError>;

/// How a [`Kind`] checks its keys: warnings (unknown keys) or the problems found.
pub type CheckFn = fn(&RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>>;

/// A kind of registry bagboy can roll back: its names and how it is checked and opened.
pub struct Kind {
    /// The canonical `format:` name.
    pub name: &'static str,
    /// Other names accepted in `format:` and in the history's `packages[].format`.
    pub aliases: &'static [&'static str],
    /// `registry:` is a filesystem path, resolved against the config file's directory.
    pub registry_is_path: bool,
    /// Releases record a package of this kind in the history (not so the blue-green balancer).
    pub recorded: bool,
    /// Check the backend's own keys of a `registries:` item; returns warnings (unknown keys).
    pub check: CheckFn,
    /// Build the backend for one configured registry.
    pub open: OpenFn,
}

/// Every backend. Adding one is a folder under `registry/` and one line here.
pub static KINDS: &[&Kind] = &[
    &oci::DOCKER,
    &oci::OCI_LAYOUT,
    &homebrew::BREW,
    &npm::NPM,
    &github_release::GITHUB_RELEASE,
    &traffic::TRAFFIC,
    &scoop::SCOOP,
    &aur::AUR,
    &helm_repo::HELM_REPO,
    &gitops::GITOPS,
    &cargo::CARGO,
];

/// What a package record holds, as `(field, value)` pairs for people: the fields the history
/// format names (`digest`, `tags`, `formula`, `tap_commit`) and every backend's own record
/// under `extra` (npm's packages, a release id, a git registry's commit), flattened to
/// `key.sub` paths. One renderer for every backend, however new.
pub fn record_fields(p: &Package) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(d) = &p.digest {
        out.push(("digest".to_string(), d.clone()));
    }
    if !p.tags.is_empty() {
        out.push(("tags".to_string(), p.tags.join(", ")));
    }
    if let Some(f) = &p.formula {
        out.push(("formula".to_string(), f.clone()));
    }
    if let Some(c) = &p.tap_commit {
        out.push(("tap_commit".to_string(), c.clone()));
    }
    fn flatten(prefix: &str, node: &crate::yaml::Node, out: &mut Vec<(String, String)>) {
        use crate::yaml::Value;
        match &node.value {
            Value::Null => {}
            Value::Scalar(s) => out.push((prefix.to_string(), s.text.clone())),
            Value::Seq(items) => {
                let scalars: Vec<&str> = items
                    .iter()
                    .filter_map(|i| i.as_scalar().map(|s| s.text.as_str()))
                    .collect();
                if scalars.len() == items.len() {
                    out.push((prefix.to_string(), scalars.join(", ")));
                } else {
                    for (i, item) in items.iter().enumerate() {
                        flatten(&format!("{prefix}[{i}]"), item, out);
                    }
                }
            }
            Value::Map(_) => {
                for (k, _, v) in node.entries().into_iter().flatten() {
                    flatten(&format!("{prefix}.{k}"), v, out);
                }
            }
        }
    }
    for (k, v) in &p.extra {
        flatten(k, v, &mut out);
    }
    out
}

/// Names grouped by an equal value, in first-seen order: one "who this reaches" note for the
/// packages or crates whose consumers fare alike.
pub fn group_alike<T: PartialEq>(items: &[(String, T)]) -> Vec<(&T, Vec<&str>)> {
    let mut groups: Vec<(&T, Vec<&str>)> = Vec::new();
    for (name, v) in items {
        match groups.iter_mut().find(|(g, _)| *g == v) {
            Some((_, names)) => names.push(name),
            None => groups.push((v, vec![name])),
        }
    }
    groups
}

/// A package record in one line: `record`'s output and `versions list`.
pub fn describe(p: &Package) -> String {
    let short = |s: &str| -> String {
        if let Some(hex) = s.strip_prefix("sha256:") {
            format!("sha256:{}", hex.chars().take(12).collect::<String>())
        } else if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            s.chars().take(10).collect()
        } else {
            s.to_string()
        }
    };
    let fields = record_fields(p);
    let mut parts: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k != "version")
        .take(6)
        .map(|(k, v)| format!("{}: {}", k.rsplit('.').next().unwrap_or(k), short(v)))
        .collect();
    if fields.len() > 6 {
        parts.push(format!("(+{} more)", fields.len() - 6));
    }
    parts.join("; ")
}

/// The kind named `name` (canonical or alias).
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name == name || k.aliases.contains(&name))
}

/// The canonical names, for messages.
pub fn kind_names() -> String {
    let names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
    names.join(", ")
}

/// What opening a backend may need from the project.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `name:` from bagboy.yaml (the default formula name).
    pub project_name: Option<String>,
    /// The directory relative paths resolve against.
    pub base_dir: PathBuf,
    /// `deployment.traffic` (the `traffic` plan backend's balancer).
    pub traffic: Option<crate::health::config::Traffic>,
}

impl Env {
    pub fn of(config: &Config) -> Env {
        Env {
            project_name: config.name.clone(),
            base_dir: config
                .path
                .as_deref()
                .and_then(|p| p.parent())
                .map(PathBuf::from)
                .unwrap_or_default(),
            traffic: config.deployment.traffic.clone(),
        }
    }
}

/// What a backend needs to plan one registry's part of a rollback.
pub struct PlanInput<'a> {
    pub target: &'a Deployment,
    /// The target's record for this registry, when it has one.
    pub target_package: Option<&'a Package>,
    pub current: Option<&'a Deployment>,
    pub current_package: Option<&'a Package>,
    /// Every recorded deployment (a backend that undoes more than the current release, such
    /// as cargo's yanks of every recorded version above the target, reads them here).
    pub deployments: &'a [Deployment],
    pub settings: &'a RollbackSettings,
}

/// A backend's plan, with what it found wrong (refusals) and worth saying (warnings).
pub struct PlanOutcome {
    pub plan: RegistryPlan,
    pub refusals: Vec<String>,
    pub warnings: Vec<String>,
}

/// What `record` observed in one registry: the package to store, and what the user should
/// know about it.
#[derive(Clone, Debug)]
pub struct Observation {
    pub package: Package,
    pub warnings: Vec<String>,
}

impl From<Package> for Observation {
    fn from(package: Package) -> Self {
        Observation {
            package,
            warnings: Vec::new(),
        }
    }
}

/// What validation asks a backend to check about the target of its plan.
pub struct VerifyInput<'a> {
    pub plan: &'a RegistryPlan,
    pub target: Option<&'a Package>,
    pub current: Option<&'a Package>,
    /// Every manifest and blob (Docker/OCI), every download (formulas) still there.
    pub dependencies: bool,
    /// Differences between the current and the target image configs, as warnings.
    pub image_config: bool,
}

/// What a backend found.
#[derive(Clone, Debug, Default)]
pub struct Verified {
    /// Whether the backend checked anything (backends without such checks say no).
    pub checked: bool,
    /// Requests made.
    pub requests: usize,
    /// What is gone: each one a refusal.
    pub missing: Vec<String>,
    pub warnings: Vec<String>,
    /// What was checked, for the plan (`12 blobs of 2 manifests present`).
    pub summary: String,
}

/// What `bagboy check` found out about one registry, without changing it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// Where the credential was found (an env var name, a file), `None`: anonymous.
    pub credential: Option<String>,
    /// `Some(Ok(what answered))`, `Some(Err(why not))`, or `None`: this backend has no probe.
    pub reached: Option<Result<String, String>>,
}

/// What `undo` knows about a step it is asked to reverse.
#[derive(Clone, Debug, PartialEq)]
pub enum UndoState {
    /// The step landed; this is what its `apply` returned.
    Known(serde_json::Value),
    /// Whether the step landed is unknown (it failed after perhaps acting, or the run was
    /// interrupted): `undo` checks the live state first and leaves an untouched registry alone.
    Unknown,
}

/// A backend's own error, classified for the coordinator.
pub trait BackendError: std::error::Error + Send + Sync + 'static {
    /// Whether a failed `apply` may still have changed the registry, so compensation has to
    /// check it and put it back. Every backend's undo is safe on a step that never landed.
    fn may_have_landed(&self) -> bool;
    /// "Fix your input or credentials" rather than "the operation failed".
    fn is_input(&self) -> bool;
}

/// The error of a backend that speaks HTTP to its registry (npm, cargo): `item` is the package
/// or crate the request was about.
#[derive(Debug, thiserror::Error)]
pub enum HttpBackendError {
    #[error("{registry}: {item}: {what} failed: {kind}")]
    Transport {
        registry: String,
        item: String,
        what: String,
        kind: &'static str,
    },
    #[error("{registry}: {item}: {what} answered HTTP {status}{detail}")]
    Status {
        registry: String,
        item: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: {message}")]
    Input { registry: String, message: String },
}

impl BackendError for HttpBackendError {
    fn may_have_landed(&self) -> bool {
        match self {
            HttpBackendError::Transport { kind, .. } => *kind != "connection failed",
            HttpBackendError::Status { status, .. } => *status >= 500,
            HttpBackendError::Input { .. } => false,
        }
    }

    fn is_input(&self) -> bool {
        match self {
            HttpBackendError::Input { .. } => true,
            HttpBackendError::Status { status, .. } => matches!(status, 401 | 403 | 404),
            HttpBackendError::Transport { .. } => false,
        }
    }
}

#[derive(Debug)]
pub enum RegistryError {
    /// A backend's own error.
    Backend(Box<dyn BackendError>),
    /// The backend cannot work with what it was given (config or history input).
    Invalid { registry: String, message: String },
    /// A worker task died.
    Task { registry: String, message: String },
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Backend(e) => e.fmt(f),
            RegistryError::Invalid { registry, message } => write!(f, "{registry}: {message}"),
            RegistryError::Task { registry, message } => {
                write!(f, "{registry}: internal task failed: {message}")
            }
        }
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            // Transparent: the backend's error speaks for itself, its causes follow.
            RegistryError::Backend(e) => e.source(),
            _ => None,
        }
    }
}

impl<E: BackendError> From<E> for RegistryError {
    fn from(e: E) -> Self {
        RegistryError::Backend(Box::new(e))
    }
}

impl RegistryError {
    /// The message without the registry's name it may start with, for a caller that names
    /// the registry itself.
    pub fn detail(&self, registry: &str) -> String {
        let text = self.to_string();
        match text.strip_prefix(&format!("{registry}: ")) {
            Some(rest) => rest.to_string(),
            None => text,
        }
    }

    /// `registry: message`, the name said once.
    pub fn named(&self, registry: &str) -> String {
        format!("{registry}: {}", self.detail(registry))
    }

    pub fn may_have_landed(&self) -> bool {
        match self {
            RegistryError::Backend(e) => e.may_have_landed(),
            RegistryError::Invalid { .. } => false,
            RegistryError::Task { .. } => true,
        }
    }

    pub fn is_input(&self) -> bool {
        match self {
            RegistryError::Backend(e) => e.is_input(),
            RegistryError::Invalid { .. } => true,
            RegistryError::Task { .. } => false,
        }
    }
}

/// One registry bagboy can roll back: observe → plan → apply → undo.
pub trait Registry: Send + Sync {
    /// The kind's canonical name (`docker`, `brew`, ...).
    fn format(&self) -> &str;

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

    /// Apply one changing step; returns what `undo` needs (journaled, so plain JSON).
    fn apply<'a>(
        &'a self,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistryError>>;

    /// Reverse a step that landed, or may have.
    fn undo<'a>(
        &'a self,
        step: &'a Step,
        state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>>;

    /// Observe what release `version` looks like in this registry (for `bagboy record`).
    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>>;

    /// The digest `tag` points at now, `None` when there is no such tag: for checking the
    /// digests a release file (`record --from`) states. Registries without tags refuse.
    fn resolve_tag<'a>(
        &'a self,
        _tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        let registry = self.name().to_string();
        Box::pin(async move {
            Err(RegistryError::Invalid {
                registry,
                message: "this registry has no tags to check".into(),
            })
        })
    }

    /// `bagboy check`: where this registry's credential comes from (never the secret) and
    /// whether it answers one read-only request.
    fn probe(&self) -> BoxFuture<'_, Probe> {
        Box::pin(async { Probe::default() })
    }

    /// The package to record for the target after the plan's steps succeeded: by default the
    /// target's own record, deployed. `None` for what is not a registry of a release (traffic).
    fn restored_package(&self, _plan: &RegistryPlan, target: Option<&Package>) -> Option<Package> {
        Some(recorded_as_deployed(self.format(), self.name(), target))
    }

    /// Validation before a rollback: is everything the target needs still there?
    fn verify<'a>(
        &'a self,
        _input: VerifyInput<'a>,
    ) -> BoxFuture<'a, Result<Verified, RegistryError>> {
        Box::pin(async { Ok(Verified::default()) })
    }

    /// Whether a step read back from a journal (input anyone may have written) is one this
    /// backend could have planned for a rollback to `target` (the journaled plan's target
    /// version, an entry of the history) from what the history records for this registry, so that
    /// applying it, or undoing it with `undo` (when given), writes nothing else. `Err` says
    /// why not. Backends that cannot tell refuse.
    fn vet<'a>(
        &'a self,
        _step: &'a Step,
        _undo: Option<&'a serde_json::Value>,
        _recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Err("this backend cannot check journaled steps".to_string()) })
    }
}

/// Build the backend for one configured registry.
pub fn open(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    match kind(&cfg.format) {
        Some(k) => (k.open)(cfg, env),
        None => Err(RegistryError::Invalid {
            registry: cfg.registry.clone(),
            message: format!(
                "unknown format `{}`; expected one of {}",
                cfg.format,
                kind_names()
            ),
        }),
    }
}

/// A backend's option problems as one error (the config loader already reported them with
/// file, line and column; this is for registries opened from elsewhere).
pub fn options_error(cfg: &RegistryConfig, problems: Vec<Problem>) -> RegistryError {
    RegistryError::Invalid {
        registry: cfg.registry.clone(),
        message: problems
            .iter()
            .map(|p| p.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// A registry configuration for a package the history names but `bagboy.yaml` does not.
/// The target's record of this registry (or a bare one), as the deployed package of a new entry.
pub fn recorded_as_deployed(format: &str, name: &str, target: Option<&Package>) -> Package {
    let mut pkg = target
        .cloned()
        .unwrap_or_else(|| Package::new(format, name));
    pkg.loc = Default::default();
    pkg.status = Some(crate::history::Status::Deployed);
    pkg
}

pub fn default_config(pkg: &Package) -> Option<RegistryConfig> {
    let k = kind(&pkg.format).filter(|k| k.recorded)?;
    let mut cfg = RegistryConfig::new(k.name, &pkg.registry);
    if let Some(f) = &pkg.formula {
        cfg.set("formula", crate::yaml::Node::str(f));
    }
    Some(cfg)
}
