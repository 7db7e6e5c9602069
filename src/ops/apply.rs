//! `apply PLAN.json`: execute exactly a plan saved from `rollback --dry-run --format json`.
//!
//! A saved plan is input, not instructions: under the lock the plan is recomputed from the
//! history and the config, and the saved one runs only if it is that plan. A history that
//! changed, or a registry that moved since (a step's observed `before`), makes it stale
//! (exit 4); a step the recomputed plan would not contain — a digest the history never
//! recorded, content from no recorded tap commit, an unconfigured registry — is refused
//! (exit 2). Either way nothing is changed.

use std::io::Read;
use std::path::Path;

use super::rollback::Prepared;
use super::{fingerprint_text, Workspace};
use crate::coordinator::{Request, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::events::{Event, Listener};
use crate::plan::{Plan, PLAN_SCHEMA};

/// Saved plans larger than this are refused unread.
const MAX_PLAN_BYTES: u64 = 64 << 20;

/// Read a saved plan: a regular file (no symlink, FIFO or device), bounded, JSON of this
/// schema.
pub fn read_plan(path: &Path) -> Result<Plan, Error> {
    let name = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|source| Error::Io {
        context: format!("reading plan {name}"),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(Error::refused(format!(
            "plan {name} is not a regular file (symlinks, FIFOs and devices are not read)"
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_PLAN_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|source| Error::Io {
            context: format!("reading plan {name}"),
            source,
        })?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(Error::refused(format!(
            "plan {name} is larger than {MAX_PLAN_BYTES} bytes"
        )));
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        Error::refused(format!(
            "plan {name}:{}:{}: not JSON: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let schema = value.get("schema").and_then(|s| s.as_u64());
    if schema != Some(u64::from(PLAN_SCHEMA)) {
        return Err(Error::refused_with_hint(
            format!(
                "plan {name} has schema {}, this bagboy applies schema {PLAN_SCHEMA}",
                schema.map_or("(none)".to_string(), |s| s.to_string())
            ),
            "save the plan again with `bagboy rollback --dry-run --format json > plan.json`",
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| Error::refused(format!("plan {name} is not a bagboy plan: {e}")))
}

fn stale(message: String) -> Error {
    Error::Stale {
        message,
        hint: "nothing was changed; preview again with `bagboy rollback --dry-run --format json` and review the new plan".into(),
    }
}

/// Under the lock, verify `saved` against the plan recomputed now, and return the recomputed
/// plan (equal in every step) ready for [`super::rollback::execute`].
///
/// `force` is the command line's `--force`: a saved plan's own `force` field is input and
/// overrides nothing.
pub fn prepare<'w>(
    ws: &'w Workspace,
    saved: &Plan,
    force: bool,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    prepare_with(
        ws,
        RollbackCoordinator::new(&ws.config),
        saved,
        force,
        listener,
    )
}

/// [`prepare`] with a given coordinator (fake backends, in tests).
pub fn prepare_with<'w>(
    ws: &'w Workspace,
    coordinator: RollbackCoordinator<'w>,
    saved: &Plan,
    force: bool,
    listener: &dyn Listener,
) -> Result<Prepared<'w>, Error> {
    let super::Begun {
        command,
        lock,
        loaded,
    } = ws.begin("apply", super::Access::Write, listener)?;
    if !saved.refusals.is_empty() {
        return Err(Error::refused_with_hint(
            format!(
                "the saved plan was refused when it was made:\n{}",
                saved.refusals.join("\n")
            ),
            "nothing was changed; preview again with --force, review the plan, and apply it with `bagboy apply PLAN --force`",
        ));
    }
    let now = fingerprint_text(&loaded.fingerprint);
    if now != saved.history_sha256 {
        return Err(stale(format!(
            "{} changed since the plan was made (plan: {}, now: {})",
            ws.history_name(),
            saved.history_sha256.as_deref().unwrap_or("no file"),
            now.as_deref().unwrap_or("no file")
        )));
    }
    let target_idx = loaded
        .history
        .deployments
        .iter()
        .position(|d| {
            d.version.as_str() == saved.target.version
                && d.timestamp.as_str() == saved.target.timestamp
        })
        .ok_or_else(|| {
            Error::refused(format!(
                "the plan's target {} ({}) is not an entry of {}",
                saved.target.version,
                saved.target.timestamp,
                ws.history_name()
            ))
        })?;
    let req = Request {
        version: Some(saved.target.version.clone()),
        registries: saved.only.clone(),
        force,
        skip_validation: false,
    };
    let rt = super::runtime()?;
    let mut plan =
        rt.block_on(coordinator.plan(&loaded.history, target_idx, &req, &ws.history_name(), now))?;
    super::log_http_stats();
    // As previewed: a saved plan never gains a step its dry-run could not show.
    super::rollback::add_traffic(ws, &mut plan, &loaded.history, target_idx, &req, true);
    compare(saved, &plan)?;
    super::validate::validate(
        ws,
        &coordinator,
        &mut plan,
        &loaded.history,
        target_idx,
        &req,
        false,
    );
    if !plan.refusals.is_empty() {
        return Err(Error::refused_with_hint(
            plan.refusals.join("\n"),
            if force {
                "nothing was changed"
            } else {
                "nothing was changed; `bagboy apply PLAN --force` overrides the history's checks"
            },
        ));
    }
    // A warning the reviewer did not see is a different plan.
    let unseen: Vec<&String> = plan
        .warnings
        .iter()
        .filter(|w| !saved.warnings.contains(w))
        .collect();
    if !unseen.is_empty() {
        return Err(stale(format!(
            "bagboy warns now of what the saved plan did not show:\n  {}",
            unseen
                .iter()
                .map(|w| w.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        )));
    }
    listener.on(&Event::Planned { plan: &plan });
    Ok(Prepared {
        plan,
        ws,
        coordinator,
        lock,
        loaded,
        target_idx,
        command,
        mode: super::rollback::Mode::Rollback,
    })
}

/// `Ok` when `saved` is `now` step for step. A step that only differs in what the registry
/// holds (`before`) is stale; any other difference is a step bagboy would not plan.
pub fn compare(saved: &Plan, now: &Plan) -> Result<(), Error> {
    let mut foreign = Vec::new();
    let mut moved = Vec::new();
    if saved.target != now.target || saved.current != now.current {
        foreign.push(format!(
            "the plan goes {} → {}, the history gives {} → {}",
            saved.current.as_ref().map_or("-", |c| c.version.as_str()),
            saved.target.version,
            now.current.as_ref().map_or("-", |c| c.version.as_str()),
            now.target.version
        ));
    }
    for srp in &saved.registries {
        let Some(nrp) = now.registries.iter().find(|r| r.registry == srp.registry) else {
            foreign.push(format!(
                "{}: not a registry of this rollback (config and history name: {})",
                srp.registry,
                now.registries
                    .iter()
                    .map(|r| r.registry.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            continue;
        };
        if srp.format != nrp.format {
            foreign.push(format!(
                "{}: the plan says format {}, the config {}",
                srp.registry, srp.format, nrp.format
            ));
        }
        for ss in &srp.steps {
            let Some(ns) = nrp.steps.iter().find(|s| s.reference == ss.reference) else {
                if ss.action.changes() {
                    foreign.push(format!(
                        "{} {}: a step bagboy would not plan ({} to {})",
                        srp.registry,
                        ss.reference,
                        ss.action,
                        ss.after.as_deref().unwrap_or("-")
                    ));
                }
                continue;
            };
            if ss.before != ns.before {
                moved.push(format!(
                    "{} {}: was {} when planned, is {} now",
                    srp.registry,
                    ss.reference,
                    ss.before.as_deref().unwrap_or("absent"),
                    ns.before.as_deref().unwrap_or("absent")
                ));
            } else if ss.action == ns.action && ss.after == ns.after && ss.data != ns.data {
                foreign.push(format!(
                    "{} {}: the step's content differs from what the recorded release gives (the plan was edited)",
                    srp.registry, ss.reference
                ));
            } else if ss.action != ns.action || ss.after != ns.after {
                foreign.push(format!(
                    "{} {}: the plan says {} to {}, the history records {} to {}",
                    srp.registry,
                    ss.reference,
                    ss.action,
                    ss.after.as_deref().unwrap_or("-"),
                    ns.action,
                    ns.after.as_deref().unwrap_or("-")
                ));
            }
        }
    }
    // A change the reviewed plan does not show must not run either.
    for nrp in &now.registries {
        let srp = saved.registries.iter().find(|r| r.registry == nrp.registry);
        for ns in nrp.steps.iter().filter(|s| s.action.changes()) {
            let in_saved = srp.is_some_and(|r| r.steps.iter().any(|s| s.reference == ns.reference));
            if !in_saved {
                moved.push(format!(
                    "{} {}: needs {} now, which the plan does not contain",
                    nrp.registry, ns.reference, ns.action
                ));
            }
        }
    }
    if !foreign.is_empty() {
        return Err(Error::Failed(
            format!(
                "the plan contains steps bagboy would not plan from the history and config; nothing was changed:\n  {}",
                foreign.join("\n  ")
            ),
            Exit::Usage,
        ));
    }
    if !moved.is_empty() {
        return Err(stale(format!(
            "the registries changed since the plan was made:\n  {}",
            moved.join("\n  ")
        )));
    }
    Ok(())
}
