//! `bagboy.yaml`: the project's registries and rollback settings.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::history::{self, Problem, Problems};
use crate::yaml::{self, Loc, Node, ParseError};

pub const DEFAULT_FILE: &str = "bagboy.yaml";

/// The kinds of registry bagboy can roll back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Format {
    #[serde(rename = "docker")]
    Docker,
    #[serde(rename = "oci-layout")]
    OciLayout,
    #[serde(rename = "brew")]
    Brew,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Docker, Format::OciLayout, Format::Brew];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Docker => "docker",
            Format::OciLayout => "oci-layout",
            Format::Brew => "brew",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "docker" | "oci" => Some(Format::Docker),
            "oci-layout" => Some(Format::OciLayout),
            "brew" | "homebrew" => Some(Format::Brew),
            _ => None,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One configured registry.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryConfig {
    pub format: Format,
    /// The identity matched against `packages[].registry` in the history.
    pub registry: String,
    /// Plain HTTP (local registries).
    pub insecure: bool,
    /// Tags to move when a history entry records none.
    pub move_tags: Vec<String>,
    /// Tap git remote (brew); default `https://github.com/<registry>.git`.
    pub remote: Option<String>,
    pub branch: Option<String>,
    pub formula: Option<String>,
    pub loc: Loc,
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
        for r in &mut cfg.registries {
            if r.format == Format::OciLayout && Path::new(&r.registry).is_relative() {
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
            "history" => cfg.history = p.string(key, v).map(PathBuf::from),
            "registries" => {
                for item in p.list(key, v) {
                    if let Some(r) = registry(&mut p, &mut warnings, item) {
                        cfg.registries.push(r);
                    }
                }
            }
            "rollback" => rollback(&mut p, &mut warnings, v, &mut cfg.rollback),
            _ => warnings.push(Problem {
                loc: k.loc,
                message: format!(
                    "unknown key `{key}` ignored (known: name, history, registries, rollback)"
                ),
            }),
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
    let mut format = None;
    let mut r = RegistryConfig {
        format: Format::Docker,
        registry: String::new(),
        insecure: false,
        move_tags: Vec::new(),
        remote: None,
        branch: None,
        formula: None,
        loc: node.loc,
    };
    for (key, k, v) in entries {
        match key {
            "format" => {
                if let Some(f) = p.string(key, v) {
                    format = Format::parse(&f);
                    if format.is_none() {
                        p.push(
                            v.loc,
                            format!("unknown format `{f}`; expected docker, oci-layout or brew"),
                        );
                    }
                }
            }
            "registry" => r.registry = p.string(key, v).unwrap_or_default(),
            "insecure" => r.insecure = p.boolean(key, v).unwrap_or(false),
            "move_tags" => {
                r.move_tags = p.string_list(key, v);
                for t in &r.move_tags {
                    if !history::is_tag(t) {
                        p.push(v.loc, format!("`{t}` is not a valid OCI tag"));
                    }
                }
            }
            "remote" => r.remote = p.string(key, v),
            "branch" => r.branch = p.string(key, v),
            "formula" | "cask" => {
                r.formula = p.string(key, v);
                // The name becomes a path in the tap; refuse it here rather than let a
                // recorded name silently win over a config that can never be right.
                if let Some(Err(e)) = r
                    .formula
                    .as_deref()
                    .map(crate::registry::homebrew::validate_name)
                {
                    p.push(v.loc, e.to_string());
                }
            }
            _ => warnings.push(Problem {
                loc: k.loc,
                message: format!("unknown registry key `{key}` ignored"),
            }),
        }
    }
    match format {
        Some(f) => r.format = f,
        None if !node
            .entries()
            .is_some_and(|mut e| e.any(|(k, _, _)| k == "format")) =>
        {
            p.push(
                node.loc,
                "registry is missing `format` (docker, oci-layout or brew)",
            )
        }
        None => {}
    }
    if r.registry.trim().is_empty() {
        p.push(node.loc, "registry is missing `registry`");
    }
    (p.0.len() == before).then_some(r)
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
            _ => warnings.push(Problem {
                loc: k.loc,
                message: format!("unknown rollback key `{key}` ignored"),
            }),
        }
    }
}
