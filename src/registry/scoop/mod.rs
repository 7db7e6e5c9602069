//! `format: scoop`: a Scoop bucket's app manifest (`bucket/<app>.json` or `<app>.json`),
//! restored byte for byte to its content at the target's recorded commit.

use std::sync::Arc;

use crate::config::RegistryConfig;
use crate::history::{Problem, Problems};
use crate::registry::gitrepo::backend::{self, same_version, Codec, Common, Derive, Derived};
use crate::registry::gitrepo::Flavor;
use crate::registry::{self as registry, Env, Registry, RegistryError};

pub static SCOOP: registry::Kind = registry::Kind {
    name: "scoop",
    aliases: &[],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_bucket,
};

const KEYS: &[&str] = &["app"];

fn parse(cfg: &RegistryConfig) -> Result<(Common, Vec<Problem>), Vec<Problem>> {
    Common::parse(cfg, KEYS, None, |c, p: &mut Problems| {
        if let Some(app) = c.get("app") {
            if !backend::valid_name(app) {
                p.push(
                    c.loc("app").unwrap_or(cfg.loc),
                    format!("`app` {app:?} is not a Scoop app name"),
                );
            }
        }
    })
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    parse(cfg).map(|(_, w)| w)
}

fn open_bucket(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (c, _) = parse(cfg).map_err(|ps| registry::options_error(cfg, ps))?;
    let app = c
        .get("app")
        .map(str::to_owned)
        .or_else(|| env.project_name.clone())
        .filter(|a| backend::valid_name(a))
        .ok_or_else(|| RegistryError::Invalid {
            registry: cfg.registry.clone(),
            message: "no Scoop app name: set `app:` for this registry or `name:` in bagboy.yaml"
                .into(),
        })?;
    backend::open(cfg, env, c.spec, Arc::new(Manifest { app }))
}

/// One app's manifest in a bucket.
pub struct Manifest {
    pub app: String,
}

impl Manifest {
    /// `"version"` of a manifest, if it is a JSON object with one.
    pub fn version(text: &str) -> Option<String> {
        // Some Windows editors save a byte order mark; Scoop reads through it.
        let doc: serde_json::Value =
            serde_json::from_str(text.trim_start_matches('\u{feff}')).ok()?;
        doc.get("version")?.as_str().map(str::to_owned)
    }
}

impl Codec for Manifest {
    fn kind(&self) -> &'static registry::Kind {
        &SCOOP
    }

    fn flavor(&self) -> Flavor {
        Flavor {
            what: "Scoop bucket",
            cache_dir: "git",
            prefix: "scoop-",
            default_branch: "main",
            branch_over_remote: false,
        }
    }

    fn action(&self) -> &'static str {
        "restore_manifest"
    }

    fn subject(&self) -> String {
        self.app.clone()
    }

    fn candidates(&self) -> Vec<String> {
        vec![
            format!("bucket/{}.json", self.app),
            format!("{}.json", self.app),
        ]
    }

    fn locate(&self, exists: &dyn Fn(&str) -> bool) -> Vec<String> {
        // Scoop reads `bucket/` when the bucket has one, else the root.
        self.candidates()
            .into_iter()
            .find(|p| exists(p))
            .into_iter()
            .collect()
    }

    fn holds(&self, files: &[Option<String>], version: &str) -> Result<bool, String> {
        let text = files
            .first()
            .and_then(Option::as_deref)
            .ok_or("no manifest")?;
        let v = Manifest::version(text).ok_or("not a manifest with a \"version\"")?;
        Ok(same_version(&v, version))
    }

    fn derive(&self, input: &Derive<'_>) -> Result<Derived, String> {
        let target = input
            .target
            .first()
            .cloned()
            .flatten()
            .ok_or("no manifest at the target commit")?;
        let v = Manifest::version(&target)
            .ok_or("the target's manifest is not JSON with a \"version\"")?;
        let live_v = input
            .live
            .first()
            .and_then(Option::as_deref)
            .and_then(Manifest::version);
        Ok(Derived {
            detail: format!(
                "manifest of {} back to version {v}{}",
                self.app,
                live_v.map(|l| format!(" (now {l})")).unwrap_or_default()
            ),
            files: vec![Some(target)],
            notes: Vec::new(),
        })
    }

    fn notes(&self, input: &Derive<'_>, _derived: &Derived) -> Vec<String> {
        vec![format!(
            "`scoop update {}` installs any version that differs from the installed one, so users who upgraded are moved back to {}",
            self.app, input.target_version
        )]
    }
}
