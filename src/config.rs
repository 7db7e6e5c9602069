//! `bagboy.yaml`: the project's registries and rollback settings.

use std::path::{Path, PathBuf};

use crate::history::{self, Problem, Problems};
use crate::yaml::{self, Loc, Node, ParseError};

pub const DEFAULT_FILE: &str = "bagboy.yaml";

/// One configured registry: the keys every backend shares, and the rest for its backend.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    /// The backend kind's canonical name (`docker`, `oci-layout`, `brew`, ...).
    pub format: String,
    /// The identity matched against `packages[].registry` in the history.
    pub registry: String,
    pub loc: Loc,
    /// The item's other keys as written (key node, value node), read by its backend.
    pub options: Vec<(Node, Node)>,
}

impl RegistryConfig {
    pub fn new(format: &str, registry: &str) -> Self {
        RegistryConfig {
            format: format.to_string(),
            registry: registry.to_string(),
            loc: Loc::default(),
            options: Vec::new(),
        }
    }

    /// The backend's keys: `(key, key node, value node)` in file order.
    pub fn options(&self) -> impl Iterator<Item = (&str, &Node, &Node)> {
        self.options
            .iter()
            .map(|(k, v)| (k.as_scalar().map_or("", |s| s.text.as_str()), k, v))
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.options()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| v)
    }

    /// Set a backend key (for registries the history names but the config does not).
    pub fn set(&mut self, key: &str, value: Node) {
        self.options
            .retain(|(k, _)| k.as_scalar().map(|s| s.text.as_str()) != Some(key));
        self.options.push((Node::str(key), value));
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RollbackSettings {
    pub version_scheme_bump: bool,
    /// How many registry operations run at once.
    pub concurrency: usize,
}

impl Default for RollbackSettings {
    fn default() -> Self {
        RollbackSettings {
            version_scheme_bump: true,
            concurrency: 8,
        }
    }
}

/// The project configuration.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The file it came from; `None` when no `bagboy.yaml` exists.
    pub path: Option<PathBuf>,
    pub name: Option<String>,
    /// The history path from the file, already resolved against the file's directory.
    pub history: Option<PathBuf>,
    pub registries: Vec<RegistryConfig>,
    pub rollback: RollbackSettings,
    /// `monitoring:`: webhooks, Pushgateway, node_exporter textfile.
    pub monitoring: crate::monitor::Settings,
    /// `deployment:`: health checks, `auto_trigger`, validation, traffic.
    pub deployment: crate::health::Deployment,
    /// `history_remote:`: one history on a git branch, shared by every machine.
    pub history_remote: Option<crate::history::remote::RemoteConfig>,
    /// Non-fatal findings (unknown keys), reported as warnings.
    pub warnings: Vec<Problem>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found")]
    NotFound { path: PathBuf },
    #[error(transparent)]
    Parse(ParseError),
    #[error("{}", render(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.loc, p.message))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Load `explicit` (must exist) or `./bagboy.yaml` (may be absent).
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let mut cfg = Self::discover_file(explicit)?;
        // A path from the environment is the runner's own choice, anywhere.
        if let Some(t) = std::env::var_os("BAGBOY_METRICS_TEXTFILE").filter(|t| !t.is_empty()) {
            cfg.monitoring.textfile = Some(PathBuf::from(t));
        }
        Ok(cfg)
    }

    fn discover_file(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::NotFound { path: p.into() });
                }
                Config::load(p)
            }
            None => {
                for name in [DEFAULT_FILE, "bagboy.yml"] {
                    let p = Path::new(name);
                    if p.exists() {
                        return Config::load(p);
                    }
                }
                Ok(Config::default())
            }
        }
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = yaml::read_bounded(path).map_err(ConfigError::Parse)?;
        let tree = yaml::parse(path, &bytes).map_err(ConfigError::Parse)?;
        let mut cfg = from_tree(&tree).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })?;
        cfg.path = Some(path.to_path_buf());
        if let Some(h) = &cfg.history {
            if h.is_relative() {
                let base = path.parent().unwrap_or(Path::new(""));
                cfg.history = Some(base.join(h));
            }
        }
        if let Some(t) = &cfg.monitoring.textfile {
            if t.is_relative() {
                let base = path.parent().unwrap_or(Path::new(""));
                cfg.monitoring.textfile = Some(base.join(t));
            }
        }
        for r in &mut cfg.registries {
            let is_path = crate::registry::kind(&r.format).is_some_and(|k| k.registry_is_path);
            if is_path && Path::new(&r.registry).is_relative() {
                let base = path.parent().unwrap_or(Path::new(""));
                if !base.as_os_str().is_empty() {
                    r.registry = base.join(&r.registry).to_string_lossy().into_owned();
                }
            }
        }
        Ok(cfg)
    }

    /// The history path: `--history`, else the config's `history:`, else the default.
    pub fn history_path(&self, flag: Option<&Path>) -> PathBuf {
        if let Some(f) = flag {
            return f.to_path_buf();
        }
        if let Some(h) = &self.history {
            return h.clone();
        }
        let base = self
            .path
            .as_deref()
            .and_then(Path::parent)
            .unwrap_or(Path::new(""));
        base.join(history::DEFAULT_PATH)
    }

    /// The project name (default formula name).
    pub fn project_name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn find_registry(&self, registry: &str) -> Option<&RegistryConfig> {
        self.registries.iter().find(|r| r.registry == registry)
    }
}

/// Why a path from bagboy.yaml that bagboy writes is not inside the project directory (the
/// config file's): absolute, or climbing out with `..`. `None`: it stays inside.
pub fn escapes_project(path: &Path) -> Option<&'static str> {
    use std::path::Component;
    let mut depth: usize = 0;
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => {
                return Some("is an absolute path outside the project")
            }
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return Some("climbs out of the project with `..`");
                }
                depth -= 1;
            }
            Component::Normal(_) => depth += 1,
        }
    }
    if depth == 0 {
        return Some("names the project directory itself, not a file in it");
    }
    None
}

fn from_tree(root: &Node) -> Result<Config, Vec<Problem>> {
    let mut p = Problems::default();
    let mut warnings = Vec::new();
    let mut cfg = Config::default();
    let Some(entries) = root.entries() else {
        p.push(
            root.loc,
            format!("the config must be a mapping, found {}", root.type_name()),
        );
        return Err(p.0);
    };
    for (key, k, v) in entries {
        match key {
            "name" => cfg.name = p.string(key, v),
            "history" => {
                cfg.history = p.string(key, v).map(PathBuf::from);
                if let Some(h) = &cfg.history {
                    if let Some(why) = escapes_project(h) {
                        p.push(
                            v.loc,
                            format!(
                                "`history: {}` {why}: bagboy writes it, so bagboy.yaml may only name a path inside the project; give another place with --history or BAGBOY_HISTORY",
                                h.display().to_string().escape_debug()
                            ),
                        );
                    }
                }
            }
            "registries" => {
                for item in p.list(key, v) {
                    if let Some(r) = registry(&mut p, &mut warnings, item) {
                        cfg.registries.push(r);
                    }
                }
            }
            "rollback" => rollback(&mut p, &mut warnings, v, &mut cfg.rollback),
            "monitoring" => {
                cfg.monitoring = crate::monitor::Settings::parse(&mut p, &mut warnings, v)
            }
            "deployment" => {
                cfg.deployment = crate::health::Deployment::parse(&mut p, &mut warnings, v)
            }
            "history_remote" => cfg.history_remote = history_remote(&mut p, &mut warnings, v),
            _ => warnings.push(crate::suggest::unknown_key(
                k.loc,
                "",
                key,
                &[
                    "name",
                    "history",
                    "registries",
                    "rollback",
                    "deployment",
                    "monitoring",
                    "history_remote",
                ],
            )),
        }
    }
    let mut seen: Vec<&RegistryConfig> = Vec::new();
    for r in &cfg.registries {
        if let Some(first) = seen.iter().find(|s| s.registry == r.registry) {
            p.push(
                r.loc,
                format!(
                    "registry `{}` is configured twice (first at line {})",
                    r.registry, first.loc.line
                ),
            );
        }
        seen.push(r);
    }
    if let Some(name) = &cfg.name {
        if name.trim().is_empty() {
            p.push(root.loc, "`name` must not be empty");
        }
    }
    cfg.warnings = warnings;
    if p.0.is_empty() {
        Ok(cfg)
    } else {
        Err(p.0)
    }
}

fn registry(p: &mut Problems, warnings: &mut Vec<Problem>, node: &Node) -> Option<RegistryConfig> {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("a registry must be a mapping, found {}", node.type_name()),
        );
        return None;
    };
    let before = p.0.len();
    let mut kind = None;
    let mut format_seen = false;
    let mut r = RegistryConfig::new("", "");
    r.loc = node.loc;
    for (key, k, v) in entries {
        match key {
            "format" => {
                format_seen = true;
                if let Some(f) = p.string(key, v) {
                    kind = crate::registry::kind(&f);
                    if kind.is_none() {
                        p.push(
                            v.loc,
                            format!(
                                "unknown format `{f}`; expected {}",
                                crate::registry::kind_names()
                            ),
                        );
                    }
                }
            }
            "registry" => r.registry = p.string(key, v).unwrap_or_default(),
            _ => r.options.push((k.clone(), v.clone())),
        }
    }
    if !format_seen {
        p.push(
            node.loc,
            format!(
                "registry is missing `format` ({})",
                crate::registry::kind_names()
            ),
        );
    }
    if r.registry.trim().is_empty() {
        p.push(node.loc, "registry is missing `registry`");
    }
    if let Some(k) = kind {
        r.format = k.name.to_string();
        match (k.check)(&r) {
            Ok(w) => warnings.extend(w),
            Err(problems) => p.0.extend(problems),
        }
    }
    (p.0.len() == before && kind.is_some()).then_some(r)
}

fn rollback(
    p: &mut Problems,
    warnings: &mut Vec<Problem>,
    node: &Node,
    out: &mut RollbackSettings,
) {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("`rollback` must be a mapping, found {}", node.type_name()),
        );
        return;
    };
    for (key, k, v) in entries {
        match key {
            "version_scheme_bump" => {
                if let Some(b) = p.boolean(key, v) {
                    out.version_scheme_bump = b;
                }
            }
            "concurrency" => match p.string(key, v).and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if (1..=64).contains(&n) => out.concurrency = n,
                _ => p.push(v.loc, "`concurrency` must be a whole number from 1 to 64"),
            },
            _ => warnings.push(crate::suggest::unknown_key(
                k.loc,
                "rollback",
                key,
                &["version_scheme_bump", "concurrency"],
            )),
        }
    }
}

fn history_remote(
    p: &mut Problems,
    w: &mut Vec<Problem>,
    node: &Node,
) -> Option<crate::history::remote::RemoteConfig> {
    use crate::history::remote::{RemoteConfig, DEFAULT_BRANCH, DEFAULT_LEASE};
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            "`history_remote` is a mapping: {url: ..., branch: ...}",
        );
        return None;
    };
    let mut cfg = RemoteConfig {
        url: String::new(),
        branch: DEFAULT_BRANCH.into(),
        path: "deployment-history.yml".into(),
        lease: DEFAULT_LEASE,
    };
    for (key, k, v) in entries {
        match key {
            "url" => cfg.url = p.string(key, v).unwrap_or_default(),
            "branch" => cfg.branch = p.string(key, v).unwrap_or_default(),
            "path" => cfg.path = p.string(key, v).unwrap_or_default(),
            "lease" => {
                if let Some(d) = crate::health::config::duration_in(
                    p,
                    key,
                    v,
                    std::time::Duration::from_secs(1),
                    std::time::Duration::from_secs(24 * 3600),
                ) {
                    cfg.lease = d;
                }
            }
            _ => w.push(crate::suggest::unknown_key(
                k.loc,
                "history_remote",
                key,
                &["url", "branch", "path", "lease"],
            )),
        }
    }
    let ok_ref = |b: &str| {
        !b.is_empty()
            && !b.starts_with(['-', '/', '.'])
            && !b.ends_with(['/', '.'])
            && !b.contains("..")
            && !b.ends_with(".lock")
            && b.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    if !crate::git::is_safe_remote(&cfg.url) {
        p.push(node.loc, "`history_remote` needs `url:` (any git URL)");
        return None;
    }
    if !ok_ref(&cfg.branch) {
        p.push(
            node.loc,
            "`history_remote.branch` must be a branch name (letters, digits, - _ . /)",
        );
        return None;
    }
    if cfg.path.is_empty()
        || cfg.path.contains('/')
        || cfg.path.starts_with('.')
        || cfg.path.starts_with('-')
    {
        p.push(
            node.loc,
            "`history_remote.path` is a file name on the branch (no folders)",
        );
        return None;
    }
    Some(cfg)
}
