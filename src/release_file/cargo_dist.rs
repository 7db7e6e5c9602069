//! cargo-dist's `dist-manifest.json` (the `cargo-dist-schema` crate's `DistManifest`):
//! `releases[]` with `app_version` and artifact ids, `artifacts{}` with `kind`, `name` and
//! `install_hint` (where its npm and Homebrew installers were published).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Named, ReleaseFile};
use crate::config::RegistryConfig;
use crate::error::Error;
use crate::yaml::Node;

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    releases: Vec<Release>,
    #[serde(default)]
    artifacts: BTreeMap<String, Artifact>,
}

#[derive(Deserialize)]
struct Release {
    #[serde(default)]
    app_name: String,
    #[serde(default)]
    app_version: String,
    #[serde(default)]
    artifacts: Vec<String>,
    #[serde(default)]
    hosting: Hosting,
}

#[derive(Deserialize, Default)]
struct Hosting {
    #[serde(default)]
    github: Option<GithubHosting>,
}

#[derive(Deserialize)]
struct GithubHosting {
    #[serde(default)]
    owner: String,
    #[serde(default)]
    repo: String,
}

#[derive(Deserialize)]
struct Artifact {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    install_hint: Option<String>,
}

pub(super) fn load(path: &Path) -> Result<ReleaseFile, Error> {
    let manifest: Manifest = super::read_json(path)?;
    let shown = path.display().to_string();
    let mut file = ReleaseFile {
        tool: "cargo-dist",
        shown: shown.clone(),
        ..ReleaseFile::default()
    };
    for r in &manifest.releases {
        file.versions.push((
            r.app_version.clone(),
            format!("{shown} release `{}` app_version", r.app_name),
        ));
        file.project.get_or_insert_with(|| r.app_name.clone());
        if let Some(gh) = &r.hosting.github {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            };
            if ok(&gh.owner) && ok(&gh.repo) {
                let cfg =
                    RegistryConfig::new("github-release", &format!("{}/{}", gh.owner, gh.repo));
                push(&mut file, cfg, format!("release `{}` hosting", r.app_name));
            }
        }
        for id in &r.artifacts {
            let Some(a) = manifest.artifacts.get(id) else {
                file.not_rolled_back.push(format!(
                    "artifact `{id}` of release `{}`: not in `artifacts`",
                    r.app_name
                ));
                continue;
            };
            artifact(&mut file, id, a);
        }
    }
    Ok(file)
}

fn artifact(file: &mut ReleaseFile, id: &str, a: &Artifact) {
    let name = a.name.clone().unwrap_or_else(|| id.to_string());
    let what = format!("{} {name}", a.kind);
    match a.kind.as_str() {
        "installer" => {
            let hint = a.install_hint.as_deref().unwrap_or("");
            if let Some(target) = hint.strip_prefix("brew install ") {
                match tap(target.trim()) {
                    Some(cfg) => push(file, cfg, format!("Homebrew installer {name}")),
                    None => file.not_rolled_back.push(format!(
                        "{what}: `{}` names no tap (set `tap` in the dist config)",
                        crate::cli::text::clean(hint)
                    )),
                }
            } else if let Some(spec) = hint.strip_prefix("npm install ") {
                match npm_package(spec.trim()) {
                    Some(pkg) => {
                        let mut cfg = RegistryConfig::new("npm", super::NPM_PUBLIC);
                        cfg.set("packages", crate::yaml::seq(vec![Node::str(pkg)]));
                        push(file, cfg, format!("npm installer {name}"));
                    }
                    None => file.not_rolled_back.push(format!(
                        "{what}: `{}` names no npm package",
                        crate::cli::text::clean(hint)
                    )),
                }
            } else {
                // Shell, PowerShell, MSI and pkg installers are files on the release page.
                file.assets.push(name);
            }
        }
        "executable-zip"
        | "symbols"
        | "checksum"
        | "unified-checksum"
        | "source-tarball"
        | "extra-artifact"
        | "updater"
        | "sbom"
        | "omnibor-artifact-id" => file.assets.push(name),
        _ => file.not_rolled_back.push(format!(
            "{what}: bagboy rolls back no `{}` artifacts",
            crate::cli::text::clean(&a.kind)
        )),
    }
}

/// `owner/tap/formula` (cargo-dist writes the tap `owner/homebrew-tap` as `owner/tap`).
fn tap(target: &str) -> Option<RegistryConfig> {
    let parts: Vec<&str> = target.split('/').collect();
    let [owner, tap, formula] = parts.as_slice() else {
        return None;
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@+".contains(c))
    };
    if !ok(owner) || !ok(tap) || !ok(formula) {
        return None;
    }
    let repo = if tap.starts_with("homebrew-") {
        tap.to_string()
    } else {
        format!("homebrew-{tap}")
    };
    let mut cfg = RegistryConfig::new("brew", &format!("{owner}/{repo}"));
    cfg.set("formula", Node::str(*formula));
    Some(cfg)
}

/// `@scope/name@1.2.3` → `@scope/name`.
fn npm_package(spec: &str) -> Option<String> {
    let name = match spec.rfind('@') {
        Some(0) | None => spec,
        Some(i) => &spec[..i],
    };
    let ok = !name.is_empty()
        && !name.contains(char::is_whitespace)
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~@/".contains(c));
    ok.then(|| name.to_string())
}

fn push(file: &mut ReleaseFile, config: RegistryConfig, what: String) {
    if let Some(n) = file
        .registries
        .iter_mut()
        .find(|n| n.config.format == config.format && n.config.registry == config.registry)
    {
        // Two npm installers (two apps of a workspace) on the same registry.
        if config.format == "npm" {
            let mut all = super::string_list(n.config.get("packages"));
            for p in super::string_list(config.get("packages")) {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
            n.config.set(
                "packages",
                crate::yaml::seq(all.into_iter().map(Node::str).collect()),
            );
        }
        return;
    }
    file.registries.push(Named {
        config,
        claims: Vec::new(),
        what,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_install_hints() {
        assert_eq!(npm_package("@acme/app@1.2.3").as_deref(), Some("@acme/app"));
        assert_eq!(npm_package("app@1.2.3").as_deref(), Some("app"));
        assert_eq!(npm_package("").as_deref(), None);
        let t = tap("acme/tap/app").expect("tap");
        assert_eq!(t.registry, "acme/homebrew-tap");
        assert!(tap("app").is_none());
    }
}
