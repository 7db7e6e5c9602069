//! `.bagboy/audit.jsonl`: one JSON line per writing command, each carrying the sha256 of the
//! line before it (`prev`) and of itself (`sha256`, the last field), so that an edited,
//! deleted or inserted line is found by `bagboy audit verify`.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::webhooks::Sent;
use super::Record;

/// Audit logs larger than this are not read whole by `list`/`verify`.
const MAX_AUDIT_BYTES: u64 = 512 << 20;

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("audit.jsonl")
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The command line without secrets: URL userinfo masked, and the values of the secret
/// variables bagboy knows replaced.
pub fn redact(command: &str) -> String {
    let mut out = crate::registry::homebrew::mask_userinfo(command);
    for var in [
        "BAGBOY_REGISTRY_PASSWORD",
        "GITHUB_TOKEN",
        "PAGERDUTY_ROUTING_KEY",
        "NODE_AUTH_TOKEN",
        "DD_API_KEY",
        "DD_APP_KEY",
    ] {
        if let Ok(v) = std::env::var(var) {
            if v.len() >= 4 {
                out = out.replace(&v, "***");
            }
        }
    }
    out
}

/// Who is doing this: `BAGBOY_ACTOR`, `GITHUB_ACTOR`, the global git `user.name`, `USER`.
fn actor() -> Option<String> {
    for var in ["BAGBOY_ACTOR", "GITHUB_ACTOR"] {
        if let Some(v) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            return Some(v);
        }
    }
    // The user's own git identity (`--global`): the checkout's `.git/config` is not read.
    let git = std::process::Command::new("git")
        .args(["config", "--global", "--get", "user.name"])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty());
    git.or_else(crate::ops::actor)
}

/// The line's content (without `prev` and `sha256`).
fn body(r: &Record, sent: &[Sent]) -> Value {
    let steps: Vec<Value> = r
        .outcome
        .as_ref()
        .map(|o| {
            o.steps
                .iter()
                .map(|s| {
                    json!({
                        "registry": s.registry, "reference": s.reference, "action": s.action,
                        "ok": s.ok, "undone": s.undone, "ms": s.millis,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let plan_sha256 = r
        .plan
        .as_ref()
        .and_then(|p| serde_json::to_vec(p).ok())
        .map(|b| format!("sha256:{}", sha(&b)));
    json!({
        "time": crate::history::Timestamp::now().to_string(),
        "id": r.id,
        "operation": r.operation,
        "actor": actor(),
        "host": crate::history::lock::host_name(),
        "command": r.command,
        "target": r.target(),
        "current": r.current(),
        "plan_sha256": plan_sha256,
        "outcome": r.outcome.as_ref().map(|o| serde_json::to_value(&o.kind).unwrap_or_default())
            .or_else(|| r.recovered.as_ref().map(|x| serde_json::to_value(x.result).unwrap_or_default())),
        "steps": steps,
        "pruned": r.pruned,
        "exit": r.exit,
        "error": r.error.as_deref().map(audit_text),
        "duration_ms": r.millis,
        "webhooks": sent.iter().map(|s| json!({"host": s.host, "event": s.event, "ok": s.ok, "error": s.error})).collect::<Vec<_>>(),
    })
}

/// Error text as stored: one line, bounded.
fn audit_text(s: &str) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    one.chars().take(2000).collect()
}

/// Append the line for `r`, under an exclusive lock on the file, chained to the last line.
pub fn append(path: &Path, r: &Record, sent: &[Sent]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
        crate::files::check_dir_not_symlink(dir)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    // SAFETY: flock on a descriptor this function owns; released when `f` closes.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let prev = last_line(&mut f)?.map(|l| sha(l.as_bytes()));
    let mut value = body(r, sent);
    value["prev"] = json!(prev);
    let mut line = serde_json::to_string(&value).map_err(std::io::Error::other)?;
    // `sha256` is the last field: the hash of the line up to it, closed.
    let own = sha(line.as_bytes());
    line.pop();
    line.push_str(&format!(",\"sha256\":\"{own}\"}}\n"));
    f.write_all(line.as_bytes())?;
    f.sync_data()
}

/// The last complete line of the file (without its newline).
fn last_line(f: &mut std::fs::File) -> std::io::Result<Option<String>> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let start = len.saturating_sub(256 << 10);
    f.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    let text = String::from_utf8_lossy(&tail);
    Ok(text
        .trim_end_matches('\n')
        .rsplit('\n')
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty()))
}

/// The whole log, line by line (refusing what is not a regular file).
pub fn read(path: &Path) -> Result<Vec<String>, crate::files::ReadError> {
    let bytes = match crate::files::read_regular(path, MAX_AUDIT_BYTES) {
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        r => r?,
    };
    Ok(String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect())
}

/// `Ok(n)` lines verified, or `Err((line number, why))` for the first bad line.
pub fn verify(lines: &[String]) -> Result<usize, (usize, String)> {
    let mut prev: Option<&str> = None;
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let Some(idx) = line.rfind(",\"sha256\":\"") else {
            return Err((n, "has no sha256 field: not a line bagboy wrote".into()));
        };
        let claimed = line[idx + 11..].trim_end_matches("\"}");
        let own = sha(format!("{}}}", &line[..idx]).as_bytes());
        if claimed != own {
            return Err((
                n,
                "its content does not match its sha256: the line was edited".into(),
            ));
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| (n, format!("is not JSON: {e}")))?;
        let want = prev.map(|p| sha(p.as_bytes()));
        let got = value["prev"].as_str().map(str::to_string);
        if got != want {
            return Err((
                n,
                match (&want, &got) {
                    (None, Some(_)) => {
                        "is first but names a line before it: lines were deleted before it".into()
                    }
                    _ => format!(
                        "does not follow line {}: a line was deleted or inserted before it",
                        n - 1
                    ),
                },
            ));
        }
        prev = Some(line);
    }
    Ok(lines.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            operation: "rollback".into(),
            command: "bagboy rollback".into(),
            ..Record::default()
        }
    }

    #[test]
    fn the_chain_catches_edits_deletions_and_insertions() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        for i in 0..4 {
            append(&p, &record(&format!("op{i}")), &[]).unwrap();
        }
        let lines = read(&p).unwrap();
        assert_eq!(verify(&lines), Ok(4));
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("op1", "op9");
        assert_eq!(verify(&edited).unwrap_err().0, 2);
        let mut deleted = lines.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted).unwrap_err().0, 3);
        let mut inserted = lines.clone();
        inserted.insert(1, lines[0].clone());
        assert_eq!(verify(&inserted).unwrap_err().0, 2);
        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert_eq!(verify(&first_gone).unwrap_err().0, 1);
    }
}
