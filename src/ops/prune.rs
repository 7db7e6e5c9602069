//! `versions prune`: drop old entries, keeping the N newest and always the current one.

use super::Workspace;
use crate::error::Error;
use crate::events::{Event, Listener};
use crate::history::{self, Deployment};

/// The entries `prune --keep keep` would remove, newest first (reads only, no lock).
pub fn preview(ws: &Workspace, keep: usize) -> Result<Vec<Deployment>, Error> {
    let loaded = ws.store.load()?;
    Ok(history::prune_plan(&loaded.history, keep)
        .into_iter()
        .map(|i| loaded.history.deployments[i].clone())
        .collect())
}

/// Remove them under the lock; returns what was removed (nothing written when nothing goes).
pub fn prune(
    ws: &Workspace,
    keep: usize,
    listener: &dyn Listener,
) -> Result<Vec<Deployment>, Error> {
    let super::Begun { lock, loaded, .. } = ws.begin("prune", super::Access::Write, listener)?;
    let Some(lock) = lock else {
        return Err(Error::refused("prune needs the lock"));
    };
    let remove: std::collections::HashSet<usize> = history::prune_plan(&loaded.history, keep)
        .into_iter()
        .collect();
    if remove.is_empty() {
        lock.release();
        return Ok(Vec::new());
    }
    // Entries are moved, not copied: a 100k-entry history is held once.
    let history::Loaded {
        history: all,
        fingerprint,
    } = loaded;
    let mut removed = Vec::with_capacity(remove.len());
    let mut kept = history::History {
        deployments: Vec::with_capacity(all.deployments.len() - remove.len()),
        extra: all.extra,
    };
    for (i, d) in all.deployments.into_iter().enumerate() {
        if remove.contains(&i) {
            removed.push(d);
        } else {
            kept.deployments.push(d);
        }
    }
    ws.store.save(&kept, &fingerprint)?;
    lock.release();
    listener.on(&Event::Pruned { removed: &removed });
    Ok(removed)
}
