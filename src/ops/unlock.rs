//! `unlock`: break a lock whose holder is gone where bagboy cannot see it (another host).

use super::Workspace;
use crate::error::Error;
use crate::history::lock::{break_lock, holder_of};
use crate::history::Holder;

/// Who holds the lock now (`None`: nobody).
pub fn holder(ws: &Workspace) -> Result<Option<Holder>, Error> {
    ws.store.check_dirs()?;
    Ok(holder_of(&ws.store.lock_path())?)
}

/// Remove the lock if `shown` still holds it; `false` when it changed hands meanwhile.
pub fn unlock(ws: &Workspace, shown: &Holder) -> Result<bool, Error> {
    ws.store.check_dirs()?;
    Ok(break_lock(&ws.store.lock_path(), shown)?)
}
