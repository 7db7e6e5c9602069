//! `bagboy versions list|compare|prune`.

use serde_json::{json, Value};

use super::output::{human_duration, short_commit, short_digest, table};
use super::text::{clean, clean_lines, md_code, md_fence, md_text};
use super::{CompareArgs, Context, ListArgs, ListFormat, PruneArgs, ReportFormat};
use crate::error::Error;
use crate::history::{self, Deployment, History, Package};

pub fn list(ctx: &Context, args: &ListArgs) -> Result<(), Error> {
    let loaded = ctx.ws.store.load()?;
    let h = &loaded.history;
    let current = h.current();
    let order: Vec<usize> = h
        .newest_first()
        .into_iter()
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    match args.format {
        ListFormat::Json => {
            let entries: Vec<Value> = order
                .iter()
                .map(|i| deployment_json(&h.deployments[*i], Some(*i) == current))
                .collect();
            let doc = json!({
                "history": ctx.ws.store.path().display().to_string(),
                "current": current.map(|c| h.deployments[c].version.to_string()),
                "total": h.deployments.len(),
                "deployments": entries,
            });
            ctx.out.line(&pretty(&doc));
        }
        ListFormat::Text => {
            if h.deployments.is_empty() {
                ctx.out.line("no deployments recorded");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = order
                .iter()
                .map(|i| {
                    let d = &h.deployments[*i];
                    let mut marker = String::new();
                    marker.push(if Some(*i) == current { '*' } else { ' ' });
                    marker.push(if d.is_rollback() { '↩' } else { ' ' });
                    let status = d.effective_status().map(|s| s.as_str()).unwrap_or("-");
                    let status = match status {
                        "deployed" => ctx.out.green(status),
                        "failed" | "rollback_failed" | "rolling_back" => ctx.out.red(status),
                        "rolled_back_from" => ctx.out.yellow(status),
                        s => s.to_string(),
                    };
                    let mut note = String::new();
                    if let Some(from) = &d.rollback_of {
                        note = format!("rollback of {}", clean(from));
                    }
                    if d.rollback_safe == Some(false) {
                        note = [note.as_str(), "not rollback-safe"]
                            .iter()
                            .filter(|s| !s.is_empty())
                            .copied()
                            .collect::<Vec<_>>()
                            .join("; ");
                    }
                    vec![
                        marker,
                        clean(d.version.as_str()).into_owned(),
                        status,
                        clean(d.timestamp.as_str()).into_owned(),
                        d.commit
                            .as_deref()
                            .map(|c| clean(&short_commit(c)).into_owned())
                            .unwrap_or_else(|| "-".into()),
                        registries_cell(&d.packages),
                        note,
                    ]
                })
                .collect();
            let with_env = order
                .iter()
                .any(|i| h.deployments[*i].environment().is_some());
            let rows: Vec<Vec<String>> = if with_env {
                rows.into_iter()
                    .zip(&order)
                    .map(|(mut r, i)| {
                        let env = h.deployments[*i].environment().unwrap_or("-");
                        r.insert(3, clean(env).into_owned());
                        r
                    })
                    .collect()
            } else {
                rows
            };
            let mut headers = vec![
                "",
                "VERSION",
                "STATUS",
                "WHEN",
                "COMMIT",
                "REGISTRIES",
                "NOTE",
            ];
            if with_env {
                headers.insert(3, "ENV");
            }
            let text = table(&headers, &rows);
            ctx.out.raw(&text);
            if let Some(line) = traffic_line(ctx, h) {
                ctx.out.line(&line);
            }
            if order.len() < h.deployments.len() {
                ctx.out.line(&ctx.out.dim(&format!(
                    "({} of {} entries; * current, ↩ created by a rollback)",
                    order.len(),
                    h.deployments.len()
                )));
            } else {
                ctx.out
                    .line(&ctx.out.dim("(* current, ↩ created by a rollback)"));
            }
        }
    }
    Ok(())
}

/// Blue-green: which environment is live and which idle, observed from the balancer (HAProxy
/// only: `versions list` never runs the `command` balancer), with what each runs.
fn traffic_line(ctx: &Context, h: &crate::history::History) -> Option<String> {
    use crate::registry::traffic::Color;
    let state = crate::ops::promote::traffic_state(&ctx.ws, h)?;
    let runs = |c: Color| {
        state
            .runs(c)
            .map(|v| clean(v).into_owned())
            .unwrap_or_else(|| "nothing recorded".into())
    };
    Some(match &state.weights {
        Ok(w) => {
            let role = |c: Color| match (w.live(), w.of(c)) {
                (Some(l), _) if l == c => "live",
                (_, 0) => "idle",
                _ => "split",
            };
            format!(
                "traffic ({}): blue {} ({}%, runs {}), green {} ({}%, runs {})",
                clean(&state.balancer),
                role(Color::Blue),
                w.percent(Color::Blue),
                runs(Color::Blue),
                role(Color::Green),
                w.percent(Color::Green),
                runs(Color::Green),
            )
        }
        Err(e) => format!("traffic: the balancer could not be read ({})", clean(e)),
    })
}

fn registries_cell(packages: &[Package]) -> String {
    if packages.is_empty() {
        return "-".into();
    }
    packages
        .iter()
        .map(|p| format!("{} {}", clean(&p.format), clean(&p.registry)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
}

pub fn deployment_json(d: &Deployment, current: bool) -> Value {
    let mut v = json!({
        "version": d.version,
        "timestamp": d.timestamp,
        "status": d.effective_status(),
        "current": current,
        "commit": d.commit,
        "rollback_of": d.rollback_of,
        "rollback_safe": d.rollback_safe.unwrap_or(true),
        "actor": d.actor,
        "notes": d.notes,
        "packages": d.packages.iter().map(package_json).collect::<Vec<_>>(),
    });
    if let Some(env) = d.environment() {
        v["environment"] = json!(env);
    }
    v
}

fn package_json(p: &Package) -> Value {
    let record: serde_json::Map<String, Value> = crate::registry::record_fields(p)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    json!({
        "format": p.format,
        "registry": p.registry,
        "status": p.status,
        "digest": p.digest,
        "tags": p.tags,
        "formula": p.formula,
        "tap_commit": p.tap_commit,
        "record": record,
    })
}

/// One registry's difference between two entries.
struct RegistryDiff<'a> {
    format: &'a str,
    registry: &'a str,
    a: Option<&'a Package>,
    b: Option<&'a Package>,
}

impl RegistryDiff<'_> {
    fn changes(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let (a, b) = (self.a, self.b);
        let field = |f: fn(&Package) -> Option<String>| {
            (
                a.and_then(f).unwrap_or_else(|| "-".into()),
                b.and_then(f).unwrap_or_else(|| "-".into()),
            )
        };
        // Every field of every backend's record, in the order the records give them.
        let fa = a.map(crate::registry::record_fields).unwrap_or_default();
        let fb = b.map(crate::registry::record_fields).unwrap_or_default();
        let mut keys: Vec<&String> = Vec::new();
        for (k, _) in fa.iter().chain(fb.iter()) {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        let get = |f: &[(String, String)], k: &str| {
            f.iter()
                .find(|(x, _)| x == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| "-".into())
        };
        for k in keys {
            let (x, y) = (get(&fa, k), get(&fb, k));
            if x != y {
                out.push((k.clone(), x, y));
            }
        }
        let (x, y) = field(|p| p.status.map(|s| s.to_string()));
        if x != y {
            out.push(("status".into(), x, y));
        }
        out
    }
}

fn registry_diffs<'a>(a: &'a Deployment, b: &'a Deployment) -> Vec<RegistryDiff<'a>> {
    let mut out: Vec<RegistryDiff<'a>> = Vec::new();
    for p in a.packages.iter().chain(b.packages.iter()) {
        if out
            .iter()
            .any(|d| d.registry == p.registry && d.format == p.format)
        {
            continue;
        }
        let find = |d: &'a Deployment| {
            d.packages
                .iter()
                .find(|q| q.registry == p.registry && q.format == p.format)
        };
        out.push(RegistryDiff {
            format: &p.format,
            registry: &p.registry,
            a: find(a),
            b: find(b),
        });
    }
    out
}

/// The two entries as YAML, diffed line by line.
fn entry_diff(a: &Deployment, b: &Deployment) -> String {
    let render = |d: &Deployment| {
        history::to_yaml(&History {
            deployments: vec![d.clone()],
            extra: Vec::new(),
        })
        .lines()
        .filter(|l| !l.starts_with('#') && *l != "deployments:")
        .collect::<Vec<_>>()
        .join("\n")
            + "\n"
    };
    let (ta, tb) = (render(a), render(b));
    similar::TextDiff::from_lines(&ta, &tb)
        .unified_diff()
        .context_radius(2)
        .header(a.version.as_str(), b.version.as_str())
        .to_string()
}

pub fn compare(ctx: &Context, args: &CompareArgs) -> Result<(), Error> {
    let loaded = ctx.ws.store.load()?;
    let h = &loaded.history;
    let resolve = |spec: &str| {
        h.resolve(spec).map_err(|m| {
            Error::refused_with_hint(m, "see the recorded versions with `bagboy versions list`")
        })
    };
    let (ia, ib) = (resolve(&args.a)?, resolve(&args.b)?);
    let (a, b) = (&h.deployments[ia], &h.deployments[ib]);
    let current = h.current();
    let secs = (b.timestamp.at() - a.timestamp.at()).whole_seconds();
    let diffs = registry_diffs(a, b);
    let commit_range = match (&a.commit, &b.commit) {
        (Some(x), Some(y)) if x != y => Some(format!("{x}..{y}")),
        _ => None,
    };
    let status = |d: &Deployment| {
        d.effective_status()
            .map(|s| s.to_string())
            .unwrap_or_else(|| "-".into())
    };
    match args.format {
        ReportFormat::Json => {
            let regs: Vec<Value> = diffs
                .iter()
                .map(|d| {
                    json!({
                        "format": d.format,
                        "registry": d.registry,
                        "a": d.a.map(package_json),
                        "b": d.b.map(package_json),
                        "changes": d.changes().into_iter().map(|(f, x, y)| json!({"field": f, "a": x, "b": y})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = json!({
                "a": deployment_json(a, Some(ia) == current),
                "b": deployment_json(b, Some(ib) == current),
                "seconds_between": secs,
                "commit_range": commit_range,
                "registries": regs,
                "diff": entry_diff(a, b),
            });
            ctx.out.line(&pretty(&doc));
        }
        ReportFormat::Text => {
            let o = &ctx.out;
            let mut s = String::new();
            s.push_str(&o.bold(&format!(
                "{} → {}",
                clean(a.version.as_str()),
                clean(b.version.as_str())
            )));
            s.push('\n');
            s.push_str(&format!("  status:   {} → {}\n", status(a), status(b)));
            s.push_str(&format!(
                "  recorded: {} → {} ({} later)\n",
                clean(a.timestamp.as_str()),
                clean(b.timestamp.as_str()),
                human_duration(secs)
            ));
            if let Some(r) = &commit_range {
                s.push_str(&format!("  commits:  {}\n", clean(r)));
            }
            for d in &diffs {
                s.push_str(&format!("  {} {}\n", clean(d.format), clean(d.registry)));
                match (d.a, d.b) {
                    (None, Some(_)) => {
                        s.push_str(&format!("    only in {}\n", clean(b.version.as_str())))
                    }
                    (Some(_), None) => {
                        s.push_str(&format!("    only in {}\n", clean(a.version.as_str())))
                    }
                    _ => {
                        let changes = d.changes();
                        if changes.is_empty() {
                            s.push_str("    same\n");
                        }
                        for (f, x, y) in changes {
                            let (x, y) = shorten(&f, &x, &y);
                            s.push_str(&format!("    {f:<10} {} → {}\n", clean(&x), clean(&y)));
                        }
                    }
                }
            }
            o.raw(&s);
        }
        ReportFormat::Markdown => {
            let (va, vb) = (md_code(a.version.as_str()), md_code(b.version.as_str()));
            let mut s = format!("### {va} → {vb}\n\n");
            s.push_str(&format!("| | {va} | {vb} |\n|---|---|---|\n"));
            s.push_str(&format!(
                "| status | {} | {} |\n",
                md_text(&status(a)),
                md_text(&status(b))
            ));
            s.push_str(&format!(
                "| recorded | {} | {} |\n",
                md_text(a.timestamp.as_str()),
                md_text(b.timestamp.as_str())
            ));
            s.push_str(&format!(
                "| commit | {} | {} |\n",
                md_code(a.commit.as_deref().unwrap_or("-")),
                md_code(b.commit.as_deref().unwrap_or("-"))
            ));
            s.push_str(&format!("\n{} between the two.\n", human_duration(secs)));
            for d in &diffs {
                s.push_str(&format!(
                    "\n**{}** {}\n\n",
                    md_text(d.format),
                    md_code(d.registry)
                ));
                let changes = d.changes();
                if d.a.is_none() || d.b.is_none() {
                    let only = if d.a.is_none() { &vb } else { &va };
                    s.push_str(&format!("- only in {only}\n"));
                } else if changes.is_empty() {
                    s.push_str("- same\n");
                }
                for (f, x, y) in changes {
                    s.push_str(&format!("- {f}: {} → {}\n", md_code(&x), md_code(&y)));
                }
            }
            let diff = clean_lines(entry_diff(a, b).trim_end_matches('\n'));
            let fence = md_fence(&diff);
            s.push_str(&format!("\n{fence}diff\n{diff}\n{fence}\n"));
            ctx.out.raw(&s);
        }
    }
    Ok(())
}

fn shorten(field: &str, x: &str, y: &str) -> (String, String) {
    match field {
        "digest" => (short_digest(x), short_digest(y)),
        "tap_commit" => (short_commit(x), short_commit(y)),
        _ => (x.to_string(), y.to_string()),
    }
}

pub fn prune(ctx: &Context, args: &PruneArgs) -> Result<(), Error> {
    if args.dry_run {
        for d in crate::ops::prune::preview(&ctx.ws, args.keep)? {
            ctx.out
                .line(&format!("would remove {} ({})", d.version, d.timestamp));
        }
        return Ok(());
    }
    // On a terminal, say what goes and ask (cron, without one, runs as told).
    if !args.yes && super::rollback::interactive() {
        let doomed = crate::ops::prune::preview(&ctx.ws, args.keep)?;
        if doomed.is_empty() {
            return Ok(());
        }
        eprintln!(
            "prune removes {} entr{} (keeping the {} newest and the current one):",
            doomed.len(),
            if doomed.len() == 1 { "y" } else { "ies" },
            args.keep
        );
        for d in doomed.iter().take(10) {
            eprintln!(
                "  {} ({})",
                clean(d.version.as_str()),
                clean(d.timestamp.as_str())
            );
        }
        if doomed.len() > 10 {
            eprintln!("  … and {} more", doomed.len() - 10);
        }
        super::rollback::confirm("Remove them?", "prune")?;
    }
    let events = super::rollback::writing_listeners(ctx);
    let result = crate::ops::prune::prune(&ctx.ws, args.keep, &events).map(|removed| {
        for d in removed {
            ctx.out
                .line(&format!("removed {} ({})", d.version, d.timestamp));
        }
    });
    super::rollback::ended(&events, result)
}
