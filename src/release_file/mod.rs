//! Release files written by release tools (GoReleaser's `dist/`, cargo-dist's manifest): what
//! they say a release published, for `record --from` and `check --from`. A file is a claim:
//! the registries it names are still observed live, and a digest it states is checked.

mod cargo_dist;
mod goreleaser;

use std::path::{Path, PathBuf};

use crate::config::{Config, RegistryConfig};
use crate::error::Error;
use crate::history::Version;
use crate::yaml::Node;

/// The most bytes a release file may have (a GoReleaser `artifacts.json` of a big matrix is
/// a few MB).
pub const MAX_BYTES: u64 = 64 << 20;

/// The npm registry cargo-dist publishes to (its manifest names none).
pub const NPM_PUBLIC: &str = "https://registry.npmjs.org";

/// Which tool wrote the file, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// GoReleaser's dist directory (`artifacts.json`, `metadata.json`).
    GoReleaser(PathBuf),
    /// A cargo-dist `dist-manifest.json`.
    CargoDist(PathBuf),
}

impl Source {
    /// `goreleaser[=DIR]` or `cargo-dist[=FILE]`.
    pub fn parse(arg: &str) -> Result<Source, String> {
        let (tool, path) = match arg.split_once('=') {
            Some((t, p)) if !p.is_empty() => (t, Some(PathBuf::from(p))),
            Some((t, _)) => (t, None),
            None => (arg, None),
        };
        match tool {
            "goreleaser" => Ok(Source::GoReleaser(
                path.unwrap_or_else(|| PathBuf::from("dist")),
            )),
            "cargo-dist" | "dist" => Ok(Source::CargoDist(
                path.unwrap_or_else(|| PathBuf::from("target/distrib/dist-manifest.json")),
            )),
            other => Err(format!(
                "`{}` is not a release tool bagboy reads; use goreleaser[=DIR] or cargo-dist[=FILE]",
                other.escape_debug()
            )),
        }
    }

    pub fn tool(&self) -> &'static str {
        match self {
            Source::GoReleaser(_) => "goreleaser",
            Source::CargoDist(_) => "cargo-dist",
        }
    }

    /// Read and parse the file(s).
    pub fn load(&self) -> Result<ReleaseFile, Error> {
        match self {
            Source::GoReleaser(dir) => goreleaser::load(dir),
            Source::CargoDist(file) => cargo_dist::load(file),
        }
    }
}

/// A digest the file says a tag points at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub tag: String,
    pub digest: String,
    /// The artifact that says so (`Docker Manifest ghcr.io/acme/app:v1.2.0`).
    pub artifact: String,
}

/// A registry the file names, as a `registries:` item, and what it claims there.
#[derive(Clone, Debug)]
pub struct Named {
    pub config: RegistryConfig,
    pub claims: Vec<Claim>,
    /// What in the file named it (`Homebrew Formula myapp.rb`), for notes.
    pub what: String,
}

/// What a release file says.
#[derive(Clone, Debug, Default)]
pub struct ReleaseFile {
    pub tool: &'static str,
    /// The file(s), as shown in messages.
    pub shown: String,
    /// The versions the file states (GoReleaser: `version` and `tag`; cargo-dist: each
    /// release's `app_version`), with where each came from.
    pub versions: Vec<(String, String)>,
    pub project: Option<String>,
    pub registries: Vec<Named>,
    /// Artifacts no registry of bagboy holds: listed, never dropped silently.
    pub not_rolled_back: Vec<String>,
    /// Files uploaded to the release page (archives, checksums, installers).
    pub assets: Vec<String>,
}

/// A file merged into the configuration: what to observe, and what to tell the user.
pub struct Merged {
    pub config: Config,
    /// `(registry, claim)` to check against the live registry.
    pub claims: Vec<(String, Claim)>,
    /// For stderr and the entry's notes.
    pub notes: Vec<String>,
}

impl ReleaseFile {
    /// The file's version must be `version` (exit 2 otherwise, naming both).
    pub fn check_version(&self, version: &Version) -> Result<(), Error> {
        if self.versions.is_empty() {
            return Err(Error::refused(format!(
                "{} states no version; cannot tell it is the release of {version}",
                self.shown
            )));
        }
        let wrong: Vec<String> = self
            .versions
            .iter()
            .filter(|(v, _)| Version::parse(v).ok().as_ref() != Some(version))
            .map(|(v, at)| format!("{at} is {}", crate::cli::text::clean(v)))
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        Err(Error::refused_with_hint(
            format!(
                "{} is not the release of --version {version}: {}",
                self.shown,
                wrong.join(", ")
            ),
            "record the version the file was written for, or point --from at that release's file",
        ))
    }

    /// The registries to observe: the configured ones, plus those the file names that
    /// `config` does not (each with a note), npm packages added to the configured registry.
    pub fn merge(&self, config: &Config) -> Merged {
        let mut merged = config.clone();
        let mut claims = Vec::new();
        let mut notes = Vec::new();
        for n in &self.registries {
            if crate::registry::kind(&n.config.format).is_none() {
                notes.push(format!(
                    "not rolled back: {} ({} {}): this bagboy has no `{}` backend",
                    n.what, n.config.format, n.config.registry, n.config.format
                ));
                continue;
            }
            let registry = match find(&merged, &n.config) {
                Some(i) => {
                    if n.config.format == "npm" {
                        add_packages(&mut merged.registries[i], &n.config, &mut notes, self);
                    }
                    merged.registries[i].registry.clone()
                }
                None => {
                    let where_ = config
                        .path
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| "bagboy.yaml (none found)".into());
                    notes.push(format!(
                        "{} {} is named by {} ({}) but not configured in {where_}: recorded from the file",
                        n.config.format, n.config.registry, self.shown, n.what
                    ));
                    merged.registries.push(n.config.clone());
                    n.config.registry.clone()
                }
            };
            claims.extend(n.claims.iter().map(|c| (registry.clone(), c.clone())));
        }
        for n in &self.not_rolled_back {
            notes.push(format!("not rolled back: {n}"));
        }
        if !self.assets.is_empty()
            && !merged
                .registries
                .iter()
                .any(|r| r.format == "github-release")
        {
            notes.push(format!(
                "not rolled back: {} release asset{} ({}): no github-release registry is configured",
                self.assets.len(),
                if self.assets.len() == 1 { "" } else { "s" },
                abbreviate(&self.assets)
            ));
        }
        Merged {
            config: merged,
            claims,
            notes,
        }
    }

    /// The `registries:` block matching what the file names (for `check --from`).
    pub fn registries_yaml(&self) -> String {
        let mut e = crate::yaml::Emitter::new();
        e.comment(&format!(
            "registries named by {} (bagboy check --from {})",
            self.shown, self.tool
        ));
        e.raw_line(0, "registries:");
        for n in &self.registries {
            if crate::registry::kind(&n.config.format).is_none() {
                e.comment(&format!(
                    "  {} {}: no `{}` backend in this bagboy",
                    n.config.format, n.config.registry, n.config.format
                ));
                continue;
            }
            let indent = e.item_start(2);
            e.field_inline(indent, "format", &crate::yaml::word(&n.config.format));
            e.field(indent, "registry", &Node::str(&n.config.registry));
            for (key, _, v) in n.config.options() {
                e.field(indent, key, v);
            }
        }
        for n in &self.not_rolled_back {
            e.comment(&format!("not rolled back: {n}"));
        }
        e.finish()
    }
}

/// The configured registry `named` is: the same identity (Docker Hub names normalized), or
/// for npm any npm registry (the file names packages, not a registry).
fn find(config: &Config, named: &RegistryConfig) -> Option<usize> {
    let same = |r: &RegistryConfig| {
        crate::registry::kind(&r.format).map(|k| k.name)
            == crate::registry::kind(&named.format).map(|k| k.name)
    };
    if named.format == "npm" {
        let packages = string_list(named.get("packages"));
        return config
            .registries
            .iter()
            .position(|r| {
                same(r)
                    && string_list(r.get("packages"))
                        .iter()
                        .any(|p| packages.contains(p))
            })
            .or_else(|| config.registries.iter().position(same));
    }
    config
        .registries
        .iter()
        .position(|r| same(r) && normalize(&r.registry) == normalize(&named.registry))
}

fn add_packages(
    into: &mut RegistryConfig,
    named: &RegistryConfig,
    notes: &mut Vec<String>,
    file: &ReleaseFile,
) {
    let mut have = string_list(into.get("packages"));
    let mut added = Vec::new();
    for p in string_list(named.get("packages")) {
        if !have.contains(&p) {
            have.push(p.clone());
            added.push(p);
        }
    }
    if !added.is_empty() {
        notes.push(format!(
            "npm package{} {} named by {} but not configured for {}: recorded from the file",
            if added.len() == 1 { "" } else { "s" },
            added.join(", "),
            file.shown,
            into.registry
        ));
        into.set(
            "packages",
            crate::yaml::seq(have.iter().map(Node::str).collect()),
        );
    }
}

fn string_list(node: Option<&Node>) -> Vec<String> {
    match node.map(|n| &n.value) {
        Some(crate::yaml::Value::Seq(items)) => items
            .iter()
            .filter_map(|n| n.as_scalar().map(|s| s.text.clone()))
            .collect(),
        Some(_) => node
            .and_then(Node::as_scalar)
            .map(|s| vec![s.text.clone()])
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// `docker.io/library/x` and `x` are one repository.
fn normalize(repo: &str) -> String {
    let r = repo.trim().trim_end_matches('/').to_ascii_lowercase();
    let r = r
        .strip_prefix("index.docker.io/")
        .or_else(|| r.strip_prefix("docker.io/"))
        .unwrap_or(&r)
        .to_string();
    r.strip_prefix("library/").map(str::to_string).unwrap_or(r)
}

fn abbreviate(items: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut s = items
        .iter()
        .take(SHOWN)
        .map(|i| crate::cli::text::clean(i))
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > SHOWN {
        s.push_str(&format!(", and {} more", items.len() - SHOWN));
    }
    s
}

/// An image reference split into repository, tag and digest (`host/repo:tag@sha256:...`).
pub(crate) fn split_image(reference: &str) -> (String, Option<String>, Option<String>) {
    let (rest, digest) = match reference.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (reference, None),
    };
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => (
            rest[..slash + i].to_string(),
            Some(rest[slash + i + 1..].to_string()),
            digest,
        ),
        None => (rest.to_string(), None, digest),
    }
}

/// A docker registry item for `repo`: plain HTTP only for a loopback registry (a local one).
pub(crate) fn docker_config(repo: &str) -> RegistryConfig {
    let mut cfg = RegistryConfig::new("docker", repo);
    let host = repo.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    if repo.contains('/') && crate::http::is_loopback_host(host.trim_matches(['[', ']'])) {
        cfg.set("insecure", crate::yaml::boolean(true));
    }
    cfg
}

/// Read a release file: bounded, no symlinks; JSON errors name file:line:col.
pub(crate) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    let bytes = crate::files::read_regular(path, MAX_BYTES).map_err(|e| {
        if e.is_not_found() {
            Error::refused(format!("{} not found", path.display()))
        } else {
            Error::refused(format!("{}: {e}", path.display()))
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        let msg = e.to_string();
        // serde_json appends " at line L column C"; the location leads instead.
        let msg = msg
            .rsplit_once(" at line ")
            .map_or(msg.as_str(), |(m, _)| m)
            .to_string();
        Error::refused(format!(
            "{}:{}:{}: {}",
            path.display(),
            e.line(),
            e.column(),
            crate::cli::text::clean(&msg)
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_image_references() {
        assert_eq!(
            split_image("127.0.0.1:5000/acme/app:v1.2.0"),
            (
                "127.0.0.1:5000/acme/app".into(),
                Some("v1.2.0".into()),
                None
            )
        );
        assert_eq!(split_image("acme/app"), ("acme/app".into(), None, None));
        assert_eq!(
            split_image("ghcr.io/a/b@sha256:00"),
            ("ghcr.io/a/b".into(), None, Some("sha256:00".into()))
        );
        assert_eq!(split_image(""), (String::new(), None, None));
        assert_eq!(
            split_image("é:/:"),
            ("é:/".into(), Some(String::new()), None)
        );
    }

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(docker_config("127.0.0.1:5000/acme/app")
            .get("insecure")
            .is_some());
        assert!(docker_config("localhost/acme/app")
            .get("insecure")
            .is_some());
        assert!(docker_config("ghcr.io/acme/app").get("insecure").is_none());
        assert!(docker_config("localhost").get("insecure").is_none());
    }

    const ARTIFACTS: &str = r#"[{"name":"127.0.0.1:5000/a/b:v1.0.0","type":"Docker Manifest","extra":{"Digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}},{"name":"app.rb","type":"Homebrew Formula","extra":{"BrewConfig":{"name":"app","repository":{"owner":"acme","name":"homebrew-tap","git":{"url":"https://u:p@example.com/t.git"}}}}},{"name":"x","type":"Snap"}]"#;
    const MANIFEST: &str = r#"{"releases":[{"app_name":"app","app_version":"1.0.0","artifacts":["app.rb","app-npm-package.tar.gz","z"],"hosting":{"github":{"owner":"acme","repo":"app"}}}],"artifacts":{"app.rb":{"name":"app.rb","kind":"installer","install_hint":"brew install acme/tap/app"},"app-npm-package.tar.gz":{"kind":"installer","install_hint":"npm install @acme/app@1.0.0"},"z":{"kind":"mystery"}}}"#;

    /// Any bytes in either file: an answer (a release file or exit 2), never a panic.
    fn load_bytes(goreleaser: bool, bytes: &[u8]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let source = if goreleaser {
            std::fs::write(dir.path().join("artifacts.json"), bytes).expect("write");
            std::fs::write(
                dir.path().join("metadata.json"),
                r#"{"version":"1.0.0","tag":"v1.0.0"}"#,
            )
            .expect("write");
            Source::GoReleaser(dir.path().to_path_buf())
        } else {
            let f = dir.path().join("m.json");
            std::fs::write(&f, bytes).expect("write");
            Source::CargoDist(f)
        };
        if let Ok(file) = source.load() {
            let _ = file.check_version(&Version::parse("1.0.0").expect("version"));
            let merged = file.merge(&Config::default());
            assert!(!file.registries_yaml().contains("u:p@"));
            assert!(merged.notes.iter().all(|n| !n.contains("u:p@")));
        }
    }

    #[test]
    fn seeds_load() {
        load_bytes(true, ARTIFACTS.as_bytes());
        load_bytes(false, MANIFEST.as_bytes());
        let file = Source::CargoDist("x".into());
        assert!(file.load().is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn no_bytes_panic(goreleaser: bool, bytes: Vec<u8>, at: usize, byte: u8) {
            load_bytes(goreleaser, &bytes);
            let mut seed = if goreleaser { ARTIFACTS } else { MANIFEST }.as_bytes().to_vec();
            let i = at % seed.len();
            seed[i] = byte;
            load_bytes(goreleaser, &seed);
            seed.truncate(i);
            load_bytes(goreleaser, &seed);
        }
    }

    #[test]
    fn parses_the_from_argument() {
        assert_eq!(
            Source::parse("goreleaser"),
            Ok(Source::GoReleaser("dist".into()))
        );
        assert_eq!(
            Source::parse("cargo-dist=out/m.json"),
            Ok(Source::CargoDist("out/m.json".into()))
        );
        assert!(Source::parse("jreleaser").is_err());
    }
}
