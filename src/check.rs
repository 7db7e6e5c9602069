//! `bagboy check`: the config (unknown keys are errors here), the history, each registry's
//! credential source and one read-only request to it, like `goreleaser check`. Writes nothing
//! outside bagboy's cache, sends no webhook, runs no configured command.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::coordinator::{self, RollbackCoordinator};
use crate::error::Error;
use crate::history::{HistoryError, Store};
use crate::release_file::Source;

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckRequest {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--history`.
    pub history: Option<PathBuf>,
    /// `--from`: print the `registries:` block matching a release file.
    pub from: Option<Source>,
}

/// One finding: where (`file:line:col`, a registry) and what.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    pub at: String,
    pub message: String,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ConfigReport {
    /// The file, `None` when there is none.
    pub file: Option<String>,
    pub registries: usize,
    pub problems: Vec<Finding>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct HistoryReport {
    pub file: Option<String>,
    /// `false` when there is no history yet (not a problem).
    pub exists: bool,
    pub entries: usize,
    pub current: Option<String>,
    /// Entries per status (`deployed: 1, superseded: 4`).
    pub statuses: Vec<(String, usize)>,
    pub problems: Vec<Finding>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RegistryReport {
    pub format: String,
    pub registry: String,
    /// Where the credential comes from (never the secret); `None`: anonymous.
    pub credential: Option<String>,
    /// `Some(true)` reached, `Some(false)` not, `None` not checked by this backend.
    pub reachable: Option<bool>,
    pub detail: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct FromReport {
    pub file: String,
    /// The `registries:` block for bagboy.yaml.
    pub registries_yaml: String,
    pub notes: Vec<String>,
}

/// Everything `check` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub config: ConfigReport,
    pub history: HistoryReport,
    pub registries: Vec<RegistryReport>,
    pub from: Option<FromReport>,
    /// Problems in all: exit 2 when any.
    pub problems: usize,
}

/// Run every check; problems are collected, never stop the others.
pub fn check(req: &CheckRequest) -> Report {
    let mut report = Report::default();
    let config = load_config(req, &mut report.config);
    if let Some(cfg) = &config {
        report.history = check_history(cfg, req.history.as_deref());
        report.registries = probe(cfg, &mut report.config);
    }
    if let Some(source) = &req.from {
        match source.load() {
            Ok(file) => {
                let merged = file.merge(config.as_ref().unwrap_or(&Config::default()));
                report.from = Some(FromReport {
                    file: file.shown.clone(),
                    registries_yaml: file.registries_yaml(),
                    // Nothing is recorded here: the notes say only what the config lacks.
                    notes: merged
                        .notes
                        .iter()
                        .map(|n| n.replace(": recorded from the file", ""))
                        .collect(),
                });
            }
            Err(e) => report.config.problems.push(Finding {
                at: format!("--from {}", source.tool()),
                message: e.to_string(),
            }),
        }
    }
    report.problems = report.config.problems.len()
        + report.history.problems.len()
        + report
            .registries
            .iter()
            .filter(|r| r.reachable == Some(false))
            .count();
    report
}

fn load_config(req: &CheckRequest, out: &mut ConfigReport) -> Option<Config> {
    let shown = |p: &Path| p.display().to_string();
    match Config::discover(req.config.as_deref()) {
        Ok(cfg) => {
            out.file = cfg.path.as_deref().map(shown);
            out.registries = cfg.registries.len();
            let file = out.file.clone().unwrap_or_default();
            // Unknown keys are warnings when running, errors when checking.
            out.problems.extend(cfg.warnings.iter().map(|w| Finding {
                at: format!("{file}:{}", w.loc),
                message: w.message.replace(" ignored", ""),
            }));
            if cfg.path.is_none() && req.from.is_none() {
                out.problems.push(Finding {
                    at: crate::config::DEFAULT_FILE.into(),
                    message: "no bagboy.yaml found (looked for ./bagboy.yaml and ./bagboy.yml); `bagboy check --from goreleaser|cargo-dist` prints a registries block to start from".into(),
                });
            } else if cfg.path.is_some() && cfg.registries.is_empty() {
                out.problems.push(Finding {
                    at: file,
                    message: "configures no registries".into(),
                });
            }
            Some(cfg)
        }
        Err(ConfigError::Invalid { path, problems }) => {
            out.file = Some(shown(&path));
            out.problems.extend(problems.iter().map(|p| Finding {
                at: format!("{}:{}", path.display(), p.loc),
                message: p.message.clone(),
            }));
            None
        }
        Err(e) => {
            out.file = req.config.as_deref().map(shown);
            out.problems.push(Finding {
                at: out.file.clone().unwrap_or_else(|| "config".into()),
                message: e.to_string(),
            });
            None
        }
    }
}

fn check_history(cfg: &Config, flag: Option<&Path>) -> HistoryReport {
    let mut out = HistoryReport::default();
    let store = match Store::new(cfg.history_path(flag)).with_remote(cfg.history_remote.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            out.problems.push(Finding {
                at: "history_remote".into(),
                message: e.to_string(),
            });
            return out;
        }
    };
    out.file = Some(store.path().display().to_string());
    match store.load() {
        Ok(loaded) => {
            let h = &loaded.history;
            out.exists = true;
            out.entries = h.deployments.len();
            out.current = h.current().map(|i| h.deployments[i].version.to_string());
            for d in &h.deployments {
                let s = d
                    .effective_status()
                    .map_or("no status", |s| s.as_str())
                    .to_string();
                match out.statuses.iter_mut().find(|(k, _)| *k == s) {
                    Some((_, n)) => *n += 1,
                    None => out.statuses.push((s, 1)),
                }
            }
        }
        Err(HistoryError::NotFound { .. }) => {}
        Err(e) => {
            let text = e.to_string();
            // The loader's messages already lead with file:line:col, one per line.
            for line in text.lines() {
                let (at, message) = line
                    .split_once(": ")
                    .map_or((String::new(), line.to_string()), |(a, m)| {
                        (a.to_string(), m.to_string())
                    });
                out.problems.push(Finding { at, message });
            }
        }
    }
    out
}

fn probe(cfg: &Config, config_report: &mut ConfigReport) -> Vec<RegistryReport> {
    let rt = match crate::ops::runtime() {
        Ok(rt) => rt,
        Err(e) => {
            config_report.problems.push(Finding {
                at: "runtime".into(),
                message: e.to_string(),
            });
            return Vec::new();
        }
    };
    let coordinator = RollbackCoordinator::new(cfg);
    rt.block_on(coordinator::probe_all(&coordinator))
        .into_iter()
        .map(|(format, registry, probe)| {
            let (credential, reachable, detail) = match probe {
                Ok(p) => match p.reached {
                    Some(Ok(what)) => (p.credential, Some(true), what),
                    Some(Err(why)) => (p.credential, Some(false), why),
                    None => (
                        p.credential,
                        None,
                        "not checked (this backend has no read-only probe)".into(),
                    ),
                },
                Err(why) => (None, Some(false), why),
            };
            RegistryReport {
                format,
                registry,
                credential,
                reachable,
                detail: crate::cli::text::clean(&detail).into_owned(),
            }
        })
        .collect()
}

/// The error `check` exits with when it found problems (exit 2).
pub fn problems_error(report: &Report) -> Option<Error> {
    (report.problems > 0).then(|| {
        Error::Failed(
            format!(
                "check found {} problem{}",
                report.problems,
                if report.problems == 1 { "" } else { "s" }
            ),
            crate::error::Exit::Usage,
        )
    })
}
