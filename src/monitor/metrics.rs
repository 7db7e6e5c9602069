//! Rollback metrics in the Prometheus text format, pushed to a Pushgateway and/or written as
//! a node_exporter textfile. Totals are counted from the audit log, so they stay monotonic
//! across runs and machines that share it; the `last` gauges describe the run just ended.

use std::path::Path;
use std::time::Duration;

use super::{audit, Record, Settings};

/// The exposition text for the run `r`, with totals over the audit log at `audit_path`.
pub fn render(audit_path: &Path, project: &str, r: &Record) -> String {
    let (mut total, mut failures) = (0u64, 0u64);
    for line in audit::read(audit_path).unwrap_or_default() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let op = v["operation"].as_str().unwrap_or_default();
        if !matches!(op, "rollback" | "apply" | "recover") {
            continue;
        }
        match v["exit"].as_u64() {
            Some(0) => total += 1,
            Some(1) | Some(3) => {
                total += 1;
                failures += 1;
            }
            _ => {}
        }
    }
    let (mut applied, mut failed, mut undone) = (0u64, 0u64, 0u64);
    if let Some(o) = &r.outcome {
        for s in &o.steps {
            match (s.ok, s.undone) {
                (true, true) => undone += 1,
                (true, false) => applied += 1,
                (false, _) => failed += 1,
            }
        }
    }
    let label = escape(project);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, value) in samples {
            s.push_str(&format!("{name}{{project=\"{label}\"{labels}}} {value}\n"));
        }
    };
    let one = |v: String| vec![(String::new(), v)];
    metric(
        "bagboy_rollback_total",
        "counter",
        "Rollbacks run (rollback, apply, recover), from the audit log.",
        &one(total.to_string()),
    );
    metric(
        "bagboy_rollback_failures_total",
        "counter",
        "Rollbacks that failed (undone, or partly applied).",
        &one(failures.to_string()),
    );
    metric(
        "bagboy_rollback_duration_seconds",
        "gauge",
        "Duration of the last rollback.",
        &one(format!("{:.3}", r.millis as f64 / 1000.0)),
    );
    metric(
        "bagboy_rollback_steps",
        "gauge",
        "Steps of the last rollback by outcome.",
        &[
            (",outcome=\"applied\"".into(), applied.to_string()),
            (",outcome=\"failed\"".into(), failed.to_string()),
            (",outcome=\"undone\"".into(), undone.to_string()),
        ],
    );
    metric(
        "bagboy_rollback_last_exit_code",
        "gauge",
        "Exit code of the last rollback.",
        &one(r.exit.to_string()),
    );
    metric(
        "bagboy_rollback_last_timestamp_seconds",
        "gauge",
        "When the last rollback ended (Unix time).",
        &one(now.to_string()),
    );
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Push and/or write the metrics; failures are warnings.
pub fn publish(settings: &Settings, audit_path: &Path, project: &str, r: &Record) {
    if settings.pushgateway.is_none() && settings.textfile.is_none() {
        return;
    }
    let text = render(audit_path, project, r);
    if let Some(path) = &settings.textfile {
        if let Err(e) = crate::files::write_atomic(path, text.as_bytes()) {
            tracing::warn!("metrics textfile {} not written: {e}", path.display());
        }
    }
    if let Some(gw) = &settings.pushgateway {
        if let Err(e) = push(gw, project, &text) {
            tracing::warn!("metrics not pushed to the Pushgateway: {e}");
        }
    }
}

fn push(gw: &str, project: &str, text: &str) -> Result<(), String> {
    let mut url = reqwest::Url::parse(gw).map_err(|e| e.to_string())?;
    url.path_segments_mut()
        .map_err(|_| "not a base URL".to_string())?
        .pop_if_empty()
        .extend(["metrics", "job", "bagboy", "project", project]);
    let shown = crate::http::safe_url(&url);
    let rt = crate::ops::runtime().map_err(|e| e.to_string())?;
    rt.block_on(async {
        // A PUT replaces the group: idempotent, retried on transient failures.
        let resp = crate::http::send(&crate::http::RetryPolicy::from_env(), |client| {
            client
                .put(url.clone())
                .timeout(Duration::from_secs(10))
                .header("Content-Type", "text/plain; version=0.0.4")
                .body(text.to_string())
        })
        .await
        .map_err(|e| format!("{shown}: {}", crate::http::transport_kind(&e)))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(format!("{shown}: HTTP {}", resp.status().as_u16()))
        }
    })
}
