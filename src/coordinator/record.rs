//! Observing a release in every configured registry, for `bagboy record`.

use super::{errors_to_error, RollbackCoordinator};
use crate::error::Error;
use crate::history::Version;
use crate::registry::{Observation, Probe};

/// Observe the configured registries for `version`: one package per registry.
pub async fn observe_release(
    coordinator: &RollbackCoordinator<'_>,
    version: &Version,
) -> Result<Vec<Observation>, Error> {
    let config = coordinator.config();
    if config.registries.is_empty() {
        let why = match &config.path {
            None => "no bagboy.yaml found (looked for ./bagboy.yaml and ./bagboy.yml)".to_string(),
            Some(p) => format!("{} configures no registries to observe", p.display()),
        };
        return Err(Error::refused_with_hint(
            why,
            "add `registries:` to bagboy.yaml (or point --config at it)",
        ));
    }
    let mut errors = Vec::new();
    let mut backends = Vec::new();
    for cfg in &config.registries {
        match coordinator.backend(cfg) {
            Ok(b) => backends.push(b),
            Err(e) => errors.push((cfg.registry.clone(), e)),
        }
    }
    let results = futures_util::future::join_all(
        backends
            .iter()
            .map(|b| async move { (b.name().to_string(), b.observe_release(version).await) }),
    )
    .await;
    let mut packages = Vec::new();
    for (name, r) in results {
        match r {
            Ok(p) => packages.push(p),
            Err(e) => errors.push((name, e)),
        }
    }
    if !errors.is_empty() {
        return Err(errors_to_error("observing", errors));
    }
    Ok(packages)
}

/// The digest `tag` points at now in the configured `registry` (a release file's claims are
/// checked against it); `None`: no such tag.
pub async fn resolve_tag(
    coordinator: &RollbackCoordinator<'_>,
    registry: &str,
    tag: &str,
) -> Result<Option<String>, crate::registry::RegistryError> {
    let cfg = coordinator
        .config()
        .find_registry(registry)
        .ok_or_else(|| crate::registry::RegistryError::Invalid {
            registry: registry.to_string(),
            message: "not a registry of this run".into(),
        })?;
    coordinator.backend(cfg)?.resolve_tag(tag).await
}

/// `bagboy check`: each configured registry's credential source and one read-only request,
/// all at once; a registry that cannot be opened says why.
pub async fn probe_all(
    coordinator: &RollbackCoordinator<'_>,
) -> Vec<(String, String, Result<Probe, String>)> {
    let config = coordinator.config();
    let probes = config.registries.iter().map(|cfg| async move {
        let probe = match coordinator.backend(cfg) {
            Ok(b) => Ok(b.probe().await),
            Err(e) => Err(e.to_string()),
        };
        (cfg.format.clone(), cfg.registry.clone(), probe)
    });
    futures_util::future::join_all(probes).await
}
