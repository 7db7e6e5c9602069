//! GoReleaser's `dist/artifacts.json` and `dist/metadata.json`, in the shapes of its
//! `internal/artifact` (`name`, `path`, `type`, `extra`) and `internal/pipe/metadata`: v2.9
//! (`Brew Tap`) and v2.10+ (`Homebrew Formula`, `Homebrew Cask`).

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Claim, Named, ReleaseFile};
use crate::config::RegistryConfig;
use crate::error::Error;
use crate::yaml::Node;

#[derive(Deserialize)]
struct Artifact {
    #[serde(default)]
    name: String,
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    extra: Option<Map<String, Value>>,
}

#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(default)]
    project_name: Option<String>,
    #[serde(default)]
    tag: Option<String>,
    #[serde(default)]
    version: Option<String>,
}

/// What bagboy does with an artifact type (`Type.String()` in GoReleaser).
enum Role {
    Docker,
    Formula,
    Cask,
    Scoop,
    /// Uploaded to the release page.
    Asset,
    Internal,
    None,
}

fn role(kind: &str) -> Role {
    match kind {
        // v2's `dockers_v2` images print as "Docker Image" too; "Docker Image V2" is accepted.
        "Docker Image" | "Docker Image V2" | "Published Docker Image" | "Docker Manifest" => {
            Role::Docker
        }
        // "Brew Tap" up to v2.9, "Homebrew Formula" since v2.10.
        "Brew Tap" | "Homebrew Formula" => Role::Formula,
        "Homebrew Cask" => Role::Cask,
        "Scoop Manifest" => Role::Scoop,
        "Archive" | "File" | "Checksum" | "Signature" | "Certificate" | "Source" | "SBOM"
        | "Linux Package" | "Makeself Package" | "Flatpak" | "Source RPM" | "MSIX" => Role::Asset,
        // Build outputs that are not published by themselves.
        "Binary" | "Metadata" | "C Header" | "C Archive Library" | "C Shared Library" => {
            Role::Internal
        }
        _ => Role::None,
    }
}

pub(super) fn load(dir: &Path) -> Result<ReleaseFile, Error> {
    let artifacts_path = dir.join("artifacts.json");
    let metadata_path = dir.join("metadata.json");
    let artifacts: Vec<Artifact> = super::read_json(&artifacts_path)?;
    let metadata: Metadata = super::read_json(&metadata_path)?;
    let mut file = ReleaseFile {
        tool: "goreleaser",
        shown: artifacts_path.display().to_string(),
        project: metadata.project_name.clone(),
        ..ReleaseFile::default()
    };
    let meta = metadata_path.display().to_string();
    if let Some(v) = &metadata.version {
        file.versions.push((v.clone(), format!("{meta} `version`")));
    }
    if let Some(t) = &metadata.tag {
        file.versions.push((t.clone(), format!("{meta} `tag`")));
    }
    for a in &artifacts {
        let what = format!("{} {}", a.kind, a.name);
        let extra = a.extra.as_ref();
        match role(&a.kind) {
            Role::Docker => docker(&mut file, a, what),
            Role::Formula | Role::Cask | Role::Scoop => {
                let cask = matches!(role(&a.kind), Role::Cask);
                let scoop = matches!(role(&a.kind), Role::Scoop);
                let key = if scoop { "ScoopConfig" } else { "BrewConfig" };
                match git_registry(extra.and_then(|e| e.get(key)), &a.name, cask, scoop) {
                    Some(config) => push(&mut file, config, None, what),
                    None => file
                        .not_rolled_back
                        .push(format!("{what}: `extra.{key}` names no repository")),
                }
            }
            Role::Asset => file.assets.push(a.name.clone()),
            Role::Internal => {}
            Role::None => file.not_rolled_back.push(format!(
                "{what}: bagboy rolls back no `{}` artifacts",
                a.kind
            )),
        }
    }
    Ok(file)
}

fn docker(file: &mut ReleaseFile, a: &Artifact, what: String) {
    let (repo, tag, _) = super::split_image(&a.name);
    if repo.is_empty() {
        file.not_rolled_back
            .push(format!("{what}: not an image reference"));
        return;
    }
    let digest = a
        .extra
        .as_ref()
        .and_then(|e| e.get("Digest"))
        .and_then(Value::as_str)
        .filter(|d| crate::history::is_digest(d));
    let claim = match (tag, digest) {
        (Some(tag), Some(digest)) => Some(Claim {
            tag,
            digest: digest.to_string(),
            artifact: what.clone(),
        }),
        _ => None,
    };
    push(file, super::docker_config(&repo), claim, what);
}

/// One registry item per identity; the claims of every artifact on it.
fn push(file: &mut ReleaseFile, config: RegistryConfig, claim: Option<Claim>, what: String) {
    match file
        .registries
        .iter_mut()
        .find(|n| n.config.format == config.format && n.config.registry == config.registry)
    {
        // A second formula or cask in the same tap: bagboy.yaml holds one item per tap.
        Some(n) if n.config.options != config.options => file.not_rolled_back.push(format!(
            "{what}: {} is already recorded for {} (one item per repository in bagboy.yaml)",
            config.registry, n.what
        )),
        Some(n) => n.claims.extend(claim),
        None => file.registries.push(Named {
            config,
            claims: claim.into_iter().collect(),
            what,
        }),
    }
}

/// A tap or bucket from the pipe's config (`repository:`, before v2 `tap:`/`bucket:`).
fn git_registry(
    config: Option<&Value>,
    file_name: &str,
    cask: bool,
    scoop: bool,
) -> Option<RegistryConfig> {
    let config = config?.as_object()?;
    let repo = ["repository", "tap", "bucket"]
        .iter()
        .find_map(|k| config.get(*k))?
        .as_object()?;
    let text = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let owner = text(repo.get("owner"))?;
    let name = text(repo.get("name"))?;
    // Templates (`{{ .Env.TAP_OWNER }}`) were rendered before the file was written; one that
    // was not is not a repository.
    let ok = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !ok(&owner) || !ok(&name) {
        return None;
    }
    let format = if scoop { "scoop" } else { "brew" };
    let mut cfg = RegistryConfig::new(format, &format!("{owner}/{name}"));
    if let Some(url) = text(repo.get("git").and_then(|g| g.get("url"))) {
        // A token in the URL is never repeated (notes, `check --from`): credentials come from
        // the environment, not from a file.
        cfg.set("remote", Node::str(crate::git::mask_userinfo(&url)));
    }
    if let Some(b) = text(repo.get("branch")) {
        cfg.set("branch", Node::str(b));
    }
    let ext = if scoop { ".json" } else { ".rb" };
    let item = text(config.get("name"))
        .or_else(|| file_name.strip_suffix(ext).map(str::to_string))
        .filter(|n| !n.is_empty())?;
    let key = match (scoop, cask) {
        (true, _) => "app",
        (false, true) => "cask",
        (false, false) => "formula",
    };
    cfg.set(key, Node::str(item));
    Some(cfg)
}
