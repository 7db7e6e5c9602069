//! `record`: observe the registries for a release and append it as the deployed entry.

use super::{later_than, Workspace};
use crate::coordinator::{self, RollbackCoordinator};
use crate::error::Error;
use crate::events::{Event, Listener};
use crate::history::{Deployment, Status, Version};

/// What the user asked to record.
#[derive(Clone, Debug, Default)]
pub struct RecordRequest {
    pub version: String,
    pub commit: Option<String>,
    pub notes: Option<String>,
    /// Record a version an automated rollback held.
    pub force: bool,
    /// Blue-green: `blue` or `green`.
    pub environment: Option<String>,
    /// `--from`: a release tool's file naming what the release published.
    pub from: Option<crate::release_file::Source>,
}

/// What `record` wrote.
pub struct Recorded {
    pub entry: Deployment,
    /// The version that was current before and is now superseded.
    pub superseded: Option<String>,
    /// What the registries want the user to know (e.g. a formula that strands users).
    pub warnings: Vec<String>,
}

pub fn record(
    ws: &Workspace,
    req: &RecordRequest,
    listener: &dyn Listener,
) -> Result<Recorded, Error> {
    let Some(source) = &req.from else {
        return record_with(ws, RollbackCoordinator::new(&ws.config), req, listener);
    };
    // The file is read before anything else: a wrong file changes nothing.
    let file = source.load()?;
    file.check_version(&parse_version(req)?)?;
    let merged = file.merge(&ws.config);
    let coordinator = RollbackCoordinator::new(&merged.config);
    record_inner(ws, coordinator, req, Some(&merged), listener)
}

fn parse_version(req: &RecordRequest) -> Result<Version, Error> {
    Version::parse(&req.version)
        .map_err(|e| Error::refused(format!("--version {} is not a version: {e}", req.version)))
}

/// Every digest the release file states is the one the registry serves for that tag.
fn check_claims(
    rt: &tokio::runtime::Runtime,
    coordinator: &RollbackCoordinator<'_>,
    version: &Version,
    observed: &[crate::registry::Observation],
    merged: &crate::release_file::Merged,
) -> Result<(), Error> {
    let mut wrong = Vec::new();
    let mut errors = Vec::new();
    for (registry, claim) in &merged.claims {
        let observed_digest = observed
            .iter()
            .find(|o| &o.package.registry == registry)
            .and_then(|o| o.package.digest.clone());
        let version_tag = Version::parse(&claim.tag).is_ok_and(|v| &v == version);
        let live = match observed_digest.filter(|_| version_tag) {
            Some(d) => Some(d),
            None => {
                match rt.block_on(coordinator::resolve_tag(coordinator, registry, &claim.tag)) {
                    Ok(d) => d,
                    Err(e) => {
                        errors.push((registry.clone(), e));
                        continue;
                    }
                }
            }
        };
        let at = format!("{registry}:{}", claim.tag);
        match live {
            Some(d) if d == claim.digest => {}
            Some(d) => wrong.push(format!(
                "{at}: the file ({}) says {}, the registry serves {d}",
                claim.artifact, claim.digest
            )),
            None => wrong.push(format!(
                "{at}: the file ({}) says {}, the registry has no such tag",
                claim.artifact, claim.digest
            )),
        }
    }
    if !errors.is_empty() {
        return Err(coordinator::errors_to_error(
            "checking the release file",
            errors,
        ));
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(Error::refused_with_hint(
        format!(
            "the release file does not match the registries; nothing was recorded:\n  {}",
            wrong.join("\n  ")
        ),
        "a record never trusts a file: push the release again, or record from the file that was published",
    ))
}

/// [`record`] with a given coordinator (fake backends, in tests).
pub fn record_with(
    ws: &Workspace,
    coordinator: RollbackCoordinator<'_>,
    req: &RecordRequest,
    listener: &dyn Listener,
) -> Result<Recorded, Error> {
    record_inner(ws, coordinator, req, None, listener)
}

fn record_inner(
    ws: &Workspace,
    coordinator: RollbackCoordinator<'_>,
    req: &RecordRequest,
    merged: Option<&crate::release_file::Merged>,
    listener: &dyn Listener,
) -> Result<Recorded, Error> {
    let version = parse_version(req)?;
    let super::Begun { lock, loaded, .. } =
        ws.begin("record", super::Access::WriteNew, listener)?;
    if let Some(why) = super::health::held(&loaded.history, &version).filter(|_| !req.force) {
        return Err(Error::refused_with_hint(
            format!("{version} is held: an automated rollback took it back ({why})"),
            "fix the release and record a new version, or pass --force to record it anyway",
        ));
    }
    let rt = super::runtime()?;
    let observed = rt.block_on(coordinator::observe_release(&coordinator, &version))?;
    if let Some(m) = merged {
        check_claims(rt, &coordinator, &version, &observed, m)?;
    }
    let mut warnings: Vec<String> = observed
        .iter()
        .flat_map(|o| {
            o.warnings
                .iter()
                .map(move |w| format!("{}: {w}", o.package.registry))
        })
        .collect();
    let packages = observed.into_iter().map(|o| o.package).collect();
    super::log_http_stats();
    // Moved, not cloned: a 100k-entry history is large.
    let mut history = loaded.history;
    // Blue-green: a release on the environment that is not live waits, staged, for promote.
    let live_env = history
        .current()
        .and_then(|c| history.deployments[c].environment().map(str::to_string));
    let staged = ws.config.deployment.strategy.as_deref() == Some("blue-green")
        && req.environment.is_some()
        && live_env.is_some()
        && req.environment != live_env;
    let status = if staged {
        Status::Staged
    } else {
        Status::Deployed
    };
    let mut entry = Deployment::new(version, status);
    entry.commit = req.commit.clone();
    entry.notes = req.notes.clone();
    if let Some(m) = merged.filter(|m| !m.notes.is_empty()) {
        let from = format!("recorded --from: {}", m.notes.join("; "));
        entry.notes = Some(match entry.notes.take() {
            Some(n) => format!("{n}\n{from}"),
            None => from,
        });
        warnings.extend(m.notes.iter().cloned());
    }
    entry.actor = super::actor();
    entry.packages = packages;
    if staged {
        for p in &mut entry.packages {
            p.status = Some(Status::Staged);
        }
    }
    if let Some(env) = &req.environment {
        entry.set_extra("environment", crate::yaml::word(env));
    }
    entry.extra.push((
        "audit".into(),
        crate::yaml::Node::str(super::operation_id()),
    ));
    // An earlier staged release on the same environment no longer runs there.
    for d in &mut history.deployments {
        if d.effective_status() == Some(Status::Staged)
            && d.environment().is_some()
            && d.environment() == req.environment.as_deref()
        {
            d.set_status(Status::Superseded);
        }
    }
    let superseded = if staged {
        None
    } else {
        history.current().map(|c| {
            history.deployments[c].set_status(Status::Superseded);
            history.deployments[c].version.to_string()
        })
    };
    entry.timestamp = later_than(&history);
    history.deployments.push(entry.clone());
    ws.store.save(&history, &loaded.fingerprint)?;
    drop(lock);
    listener.on(&Event::Recorded { entry: &entry });
    Ok(Recorded {
        entry,
        superseded,
        warnings,
    })
}
