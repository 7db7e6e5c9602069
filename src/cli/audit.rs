//! `bagboy audit list|verify`.

use super::output::table;
use super::text::clean;
use super::{AuditCommand, Context, ListFormat};
use crate::error::{Error, Exit};
use crate::monitor::audit;

pub fn run(ctx: &Context, cmd: &AuditCommand) -> Result<(), Error> {
    ctx.ws.store.check_dirs()?;
    let path = audit::path(&ctx.ws.store.state_dir());
    let lines = audit::read(&path).map_err(|e| {
        Error::refused(format!("cannot read the audit log {}: {e}", path.display()))
    })?;
    match cmd {
        AuditCommand::Verify => {
            let key = audit::key();
            let v = audit::verify(&lines, key.as_ref()).map_err(|(line, why)| {
                Error::Failed(
                    format!("{}:{line}: line {line} {why}", path.display()),
                    Exit::FailedUndone,
                )
            })?;
            // Every operation the history names must be in the log.
            let missing = crate::ops::audit_ids_missing(&ctx.ws, &audit::ids(&lines))?;
            if let Some((entry, id)) = missing.first() {
                return Err(Error::Failed(
                    format!(
                        "{}: the history entry {} names audit id {}, which is not in the log: lines were deleted{}",
                        path.display(),
                        clean(entry),
                        clean(id),
                        if missing.len() > 1 {
                            format!(" ({} entries name ids the log lacks)", missing.len())
                        } else {
                            String::new()
                        }
                    ),
                    Exit::FailedUndone,
                ));
            }
            let n = v.lines;
            let proof = if key.is_some() {
                format!(
                    "every line keyed with {}: no line was changed, forged or re-chained without the key",
                    audit::KEY_VAR
                )
            } else if v.unchecked > 0 {
                format!(
                    "{} keyed line{} not checked: set {} to check them; without it this detects accidental damage only",
                    v.unchecked,
                    if v.unchecked == 1 { "" } else { "s" },
                    audit::KEY_VAR
                )
            } else {
                format!(
                    "no key ({} unset): this detects accidental damage only, not a rewrite of the whole chain",
                    audit::KEY_VAR
                )
            };
            ctx.out.line(&format!(
                "{}: {n} line{} verified, the chain is intact and holds every operation the history names; {proof}",
                path.display(),
                if n == 1 { "" } else { "s" }
            ));
            Ok(())
        }
        AuditCommand::List(a) => {
            let mut entries: Vec<serde_json::Value> = lines
                .iter()
                .filter_map(|l| serde_json::from_str(l).ok())
                .filter(|v: &serde_json::Value| {
                    a.operation
                        .as_deref()
                        .is_none_or(|op| v["operation"].as_str() == Some(op))
                })
                .collect();
            if let Some(n) = a.limit {
                let skip = entries.len().saturating_sub(n);
                entries.drain(..skip);
            }
            match a.format {
                ListFormat::Json => ctx.out.line(
                    &serde_json::to_string_pretty(&serde_json::json!({
                        "audit": path.display().to_string(),
                        "entries": entries,
                    }))
                    .unwrap_or_default(),
                ),
                ListFormat::Text => {
                    if entries.is_empty() {
                        ctx.out.line("no audit entries");
                        return Ok(());
                    }
                    let s = |v: &serde_json::Value| {
                        clean(&match v {
                            serde_json::Value::Null => "-".to_string(),
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .into_owned()
                    };
                    let rows: Vec<Vec<String>> = entries
                        .iter()
                        .map(|v| {
                            vec![
                                s(&v["time"]),
                                s(&v["operation"]),
                                s(&v["target"]),
                                s(&v["outcome"]),
                                s(&v["exit"]),
                                s(&v["actor"]),
                                s(&v["id"]),
                            ]
                        })
                        .collect();
                    ctx.out.raw(&table(
                        &[
                            "TIME",
                            "OPERATION",
                            "TARGET",
                            "OUTCOME",
                            "EXIT",
                            "ACTOR",
                            "ID",
                        ],
                        &rows,
                    ));
                }
            }
            Ok(())
        }
    }
}
