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
    record_with(ws, RollbackCoordinator::new(&ws.config), req, listener)
}

/// [`record`] with a given coordinator (fake backends, in tests).
pub fn record_with(
    ws: &Workspace,
    coordinator: RollbackCoordinator<'_>,
    req: &RecordRequest,
    listener: &dyn Listener,
) -> Result<Recorded, Error> {
    let version = Version::parse(&req.version).map_err(|e| {
        Error::refused(format!(
            "--version {} is not a semver version: {e}",
            req.version
        ))
    })?;
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
    let warnings: Vec<String> = observed
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
