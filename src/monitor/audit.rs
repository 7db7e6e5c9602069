//! `.bagboy/audit.jsonl`: one JSON line per writing command, each carrying the sha256 of the
//! line before it (`prev`) and of itself (`sha256`, the last field), so that an edited,
//! deleted or inserted line is found by `bagboy audit verify`.
//!
//! What the chain proves depends on a key. Without one it detects accidental damage and
//! careless edits only: whoever can write `.bagboy/` can rewrite every line and re-hash the
//! chain. With `BAGBOY_AUDIT_KEY` in the environment each line also carries an HMAC-SHA256
//! (`hmac`, keyed with it) over its content, so that a line changed, forged or re-chained by
//! someone without the key fails `verify`. Deleting the newest lines keeps a valid chain; the
//! history's entries name the audit id of the operation that wrote them, and `verify`
//! cross-checks those.

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

/// The environment variable holding the audit key.
pub const KEY_VAR: &str = "BAGBOY_AUDIT_KEY";

/// The audit key from the environment (never from a file of the checkout).
pub fn key() -> Option<secrecy::SecretString> {
    std::env::var(KEY_VAR)
        .ok()
        .filter(|k| !k.is_empty())
        .map(secrecy::SecretString::from)
}

fn mac(key: &secrecy::SecretString, bytes: &[u8]) -> String {
    use hmac::Mac as _;
    use secrecy::ExposeSecret as _;
    // HMAC takes a key of any length.
    let mut m = match hmac::Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    m.update(bytes);
    hex::encode(m.finalize().into_bytes())
}

fn mac_matches(key: &secrecy::SecretString, bytes: &[u8], claimed: &str) -> bool {
    use hmac::Mac as _;
    use secrecy::ExposeSecret as _;
    let Ok(claimed) = hex::decode(claimed) else {
        return false;
    };
    let Ok(mut m) = hmac::Hmac::<Sha256>::new_from_slice(key.expose_secret().as_bytes()) else {
        return false;
    };
    m.update(bytes);
    m.verify_slice(&claimed).is_ok()
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

/// Who is doing this: the same actor the history records (`BAGBOY_ACTOR`, `GITHUB_ACTOR`,
/// `USER`), so an audit line and the entry it wrote name the same person.
fn actor() -> Option<String> {
    crate::ops::actor()
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
        "outcome": r.outcome.as_ref().map(|o| match (&o.kind, r.operation.as_str()) {
            // A promotion that went through is a promotion, not a rollback.
            (crate::coordinator::OutcomeKind::RolledBack, "promote") => json!("promoted"),
            (kind, _) => serde_json::to_value(kind).unwrap_or_default(),
        })
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
    append_keyed(path, r, sent, key().as_ref())
}

/// [`append`] with the key given (tests).
pub fn append_keyed(
    path: &Path,
    r: &Record,
    sent: &[Sent],
    key: Option<&secrecy::SecretString>,
) -> std::io::Result<()> {
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
    // With a key, `hmac` comes before `sha256`: the keyed hash of the line up to it, closed.
    if let Some(key) = key {
        let m = mac(key, line.as_bytes());
        line.pop();
        line.push_str(&format!(",\"hmac\":\"{m}\"}}"));
    }
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

/// What `verify` found in a sound log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub lines: usize,
    /// Lines whose HMAC was checked with the key.
    pub keyed: usize,
    /// Lines carrying an HMAC that could not be checked (no key in the environment).
    pub unchecked: usize,
}

/// The ids of the lines, in order (for the history cross-check).
pub fn ids(lines: &[String]) -> std::collections::HashSet<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

/// `Ok` with what was verified, or `Err((line number, why))` for the first bad line. With
/// `key`, every line must carry a matching HMAC.
pub fn verify(
    lines: &[String],
    key: Option<&secrecy::SecretString>,
) -> Result<Verified, (usize, String)> {
    let mut prev: Option<&str> = None;
    let mut out = Verified::default();
    for (i, line) in lines.iter().enumerate() {
        let n = i + 1;
        let Some(idx) = line.rfind(",\"sha256\":\"") else {
            return Err((n, "has no sha256 field: not a line bagboy wrote".into()));
        };
        let claimed = line[idx + 11..].trim_end_matches("\"}");
        let content = format!("{}}}", &line[..idx]);
        let own = sha(content.as_bytes());
        if claimed != own {
            return Err((
                n,
                "its content does not match its sha256: the line was edited".into(),
            ));
        }
        let value: Value =
            serde_json::from_str(line).map_err(|e| (n, format!("is not JSON: {e}")))?;
        let keyed = content
            .rfind(",\"hmac\":\"")
            .map(|at| (format!("{}}}", &content[..at]), &content[at + 9..]));
        match (key, keyed) {
            (Some(key), Some((body, m))) => {
                if !mac_matches(key, body.as_bytes(), m.trim_end_matches("\"}")) {
                    return Err((
                        n,
                        format!("its hmac does not match {KEY_VAR}: the line was written or changed without the key"),
                    ));
                }
                out.keyed += 1;
            }
            (Some(_), None) => {
                return Err((
                    n,
                    format!(
                    "carries no hmac: it was written without {KEY_VAR} (or by someone without it)"
                ),
                ))
            }
            (None, Some(_)) => out.unchecked += 1,
            (None, None) => {}
        }
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
    out.lines = lines.len();
    Ok(out)
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
        assert_eq!(verify(&lines, None).map(|v| v.lines), Ok(4));
        let mut edited = lines.clone();
        edited[1] = edited[1].replace("op1", "op9");
        assert_eq!(verify(&edited, None).unwrap_err().0, 2);
        let mut deleted = lines.clone();
        deleted.remove(2);
        assert_eq!(verify(&deleted, None).unwrap_err().0, 3);
        let mut inserted = lines.clone();
        inserted.insert(1, lines[0].clone());
        assert_eq!(verify(&inserted, None).unwrap_err().0, 2);
        let mut first_gone = lines.clone();
        first_gone.remove(0);
        assert_eq!(verify(&first_gone, None).unwrap_err().0, 1);
    }

    #[test]
    fn a_key_catches_a_rewritten_chain() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path());
        let key = secrecy::SecretString::from("k3y-material");
        for i in 0..3 {
            append_keyed(&p, &record(&format!("op{i}")), &[], Some(&key)).unwrap();
        }
        let lines = read(&p).unwrap();
        let ok = verify(&lines, Some(&key)).unwrap();
        assert_eq!((ok.lines, ok.keyed, ok.unchecked), (3, 3, 0));
        // Without the key the chain still checks, the hmacs are only counted.
        assert_eq!(verify(&lines, None).unwrap().unchecked, 3);
        // Someone without the key rewrites line 2 and re-hashes the chain from there.
        let forged_dir = tempfile::tempdir().unwrap();
        let fp = path(forged_dir.path());
        append_keyed(&fp, &record("op0"), &[], Some(&key)).unwrap();
        std::fs::write(&fp, format!("{}\n", lines[0])).unwrap();
        append_keyed(&fp, &record("op9"), &[], None).unwrap();
        let forged = read(&fp).unwrap();
        assert_eq!(verify(&forged, None).map(|v| v.lines), Ok(2));
        assert_eq!(verify(&forged, Some(&key)).unwrap_err().0, 2);
        // A wrong key fails on the first line.
        let wrong = secrecy::SecretString::from("other");
        assert_eq!(verify(&lines, Some(&wrong)).unwrap_err().0, 1);
    }
}
