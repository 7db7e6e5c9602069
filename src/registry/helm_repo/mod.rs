//! `format: helm-repo`: a chart repository's `index.yaml` (chart-releaser's `gh-pages`). A
//! rollback removes the index entries of the chart's versions above the target, so `helm
//! install`/`helm upgrade` without `--version` resolve the target again; the text is edited by
//! line ranges, so every other byte of the index stays; undo puts the entries back.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::config::RegistryConfig;
use crate::history::{Problem, Problems};
use crate::registry::gitrepo::backend::{self, compare_versions, Codec, Common, Derive, Derived};
use crate::registry::gitrepo::yaml_lines as yl;
use crate::registry::gitrepo::Flavor;
use crate::registry::{self as registry, Env, Registry, RegistryError};

pub static HELM_REPO: registry::Kind = registry::Kind {
    name: "helm-repo",
    aliases: &[],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_index,
};

const KEYS: &[&str] = &["chart", "index"];

fn parse(cfg: &RegistryConfig) -> Result<(Common, Vec<Problem>), Vec<Problem>> {
    Common::parse(cfg, KEYS, None, |c, p: &mut Problems| {
        if let Some(chart) = c.get("chart") {
            if !backend::valid_name(chart) {
                p.push(
                    c.loc("chart").unwrap_or(cfg.loc),
                    format!("`chart` {chart:?} is not a chart name"),
                );
            }
        }
        if let Some(index) = c.get("index") {
            if !backend::valid_repo_path(index) {
                p.push(
                    c.loc("index").unwrap_or(cfg.loc),
                    format!("`index` {index:?} must be a relative path inside the repository"),
                );
            }
        }
    })
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    parse(cfg).map(|(_, w)| w)
}

fn open_index(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (c, _) = parse(cfg).map_err(|ps| registry::options_error(cfg, ps))?;
    let chart = c
        .get("chart")
        .map(str::to_owned)
        .or_else(|| env.project_name.clone())
        .filter(|a| backend::valid_name(a))
        .ok_or_else(|| RegistryError::Invalid {
            registry: cfg.registry.clone(),
            message: "no chart name: set `chart:` for this registry or `name:` in bagboy.yaml"
                .into(),
        })?;
    let index = c.get("index").unwrap_or("index.yaml").to_owned();
    backend::open(cfg, env, c.spec, Arc::new(Index { chart, index }))
}

/// One chart in a chart repository's index.
pub struct Index {
    pub chart: String,
    pub index: String,
}

/// One `entries.<chart>[]` item: its lines and version.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Byte range of its lines, line breaks included.
    pub bytes: (usize, usize),
    pub version: String,
}

/// The entries of `chart` in an index, in file order. `Err` when the index has no such chart
/// in block style.
pub fn entries(index: &str, chart: &str) -> Result<Vec<Entry>, String> {
    let ls = yl::lines(index);
    let e = yl::map_key(&ls, 0, ls.len(), "entries", Some(0))
        .ok_or("the index has no top-level `entries:`")?;
    let (cs, ce) = yl::block_after(&ls, e);
    let c = yl::map_key(&ls, cs, ce, chart, None)
        .ok_or_else(|| format!("the index lists no chart `{chart}`"))?;
    let (is, ie) = yl::block_after(&ls, c);
    let items = yl::seq_items(&ls, is, ie);
    if items.is_empty() {
        return Err(format!(
            "`entries.{chart}` is not a block sequence bagboy can edit"
        ));
    }
    let next_line = |k: usize| ls.get(k).map_or(index.len(), |l| l.start);
    items
        .into_iter()
        .map(|item| {
            let (line, (a, b)) = yl::item_key(&ls, item, "version")
                .ok_or_else(|| format!("an entry of `{chart}` has no `version:`"))?;
            let version = yl::unquote(ls[line].text.get(a..b).unwrap_or(""));
            Ok(Entry {
                bytes: (ls[item.0].start, next_line(item.1)),
                version,
            })
        })
        .collect()
}

/// The index without the entries of `chart` above `target`, and the versions removed.
pub fn without_above(
    index: &str,
    chart: &str,
    target: &str,
) -> Result<(String, Vec<String>), String> {
    let all = entries(index, chart)?;
    if !all
        .iter()
        .any(|e| backend::same_version(&e.version, target))
    {
        return Err(format!(
            "the index lists no version {target} of `{chart}`: nothing to roll back to"
        ));
    }
    let mut out = String::with_capacity(index.len());
    let mut at = 0;
    let mut removed = Vec::new();
    for e in &all {
        if compare_versions(&e.version, target) == Ordering::Greater {
            out.push_str(index.get(at..e.bytes.0).unwrap_or(""));
            at = e.bytes.1;
            removed.push(e.version.clone());
        }
    }
    out.push_str(index.get(at..).unwrap_or(""));
    Ok((out, removed))
}

impl Codec for Index {
    fn kind(&self) -> &'static registry::Kind {
        &HELM_REPO
    }

    fn flavor(&self) -> Flavor {
        Flavor {
            what: "chart repository",
            cache_dir: "git",
            prefix: "helm-",
            default_branch: "gh-pages",
            branch_over_remote: true,
        }
    }

    fn action(&self) -> &'static str {
        "remove_chart_versions"
    }

    fn subject(&self) -> String {
        self.chart.clone()
    }

    fn candidates(&self) -> Vec<String> {
        vec![self.index.clone()]
    }

    fn locate(&self, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
        self.candidates()
            .into_iter()
            .filter(|p| exists(p))
            .collect()
    }

    fn holds(&self, files: &[Option<String>], version: &str) -> Result<bool, String> {
        let text = files.first().and_then(Option::as_deref).ok_or("no index")?;
        Ok(entries(text, &self.chart)?
            .iter()
            .any(|e| backend::same_version(&e.version, version)))
    }

    fn derive(&self, input: &Derive<'_>) -> Result<Derived, String> {
        let live = input
            .live
            .first()
            .cloned()
            .flatten()
            .ok_or_else(|| format!("no {} on the branch", self.index))?;
        let (desired, removed) = without_above(&live, &self.chart, input.target_version)?;
        let detail = if removed.is_empty() {
            format!(
                "{} lists no version of {} above {}",
                self.index, self.chart, input.target_version
            )
        } else {
            format!(
                "remove {} {} from {} so `helm install`/`helm upgrade` without --version resolve {}",
                self.chart,
                removed.join(", "),
                self.index,
                input.target_version
            )
        };
        let notes = if removed.is_empty() {
            Vec::new()
        } else {
            vec![format!(
                "the chart packages are not deleted: {} stay downloadable by exact version at their URLs (`helm install <url>`), and undo puts their index entries back",
                removed.join(", ")
            )]
        };
        Ok(Derived {
            files: vec![Some(desired)],
            detail,
            notes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "apiVersion: v1\nentries:\n  myapp:\n  - apiVersion: v2\n    version: 1.3.0\n  # a comment\n  - apiVersion: v2\n    version: \"1.2.0\"\n  other:\n  - version: 9.0.0\ngenerated: \"2026-01-01T00:00:00Z\"\n";

    #[test]
    fn removes_only_newer_entries() {
        let (out, removed) = without_above(INDEX, "myapp", "1.2.0").unwrap_or_default();
        assert_eq!(removed, vec!["1.3.0".to_string()]);
        assert_eq!(
            out,
            "apiVersion: v1\nentries:\n  myapp:\n  # a comment\n  - apiVersion: v2\n    version: \"1.2.0\"\n  other:\n  - version: 9.0.0\ngenerated: \"2026-01-01T00:00:00Z\"\n"
        );
        assert!(without_above(INDEX, "myapp", "1.1.0").is_err());
        assert!(without_above(INDEX, "nope", "1.1.0").is_err());
    }
}
