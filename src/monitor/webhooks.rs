//! Webhooks for rollback events: Slack incoming webhooks (blocks), PagerDuty Events API v2
//! (trigger on failed, resolve on completed, dedup key = operation id), or the event as JSON.
//! Bounded: 10 s per attempt, two retries on transient failures, never an error upward.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{Format, Record, Webhook};

/// What happened to one webhook call (for the audit line; no URL, only its host).
#[derive(Clone, Debug)]
pub struct Sent {
    pub host: String,
    pub event: String,
    pub ok: bool,
    pub error: Option<String>,
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Send `event` to every webhook that wants it; returns what happened to each.
pub fn send_all(hooks: &[Webhook], event: &str, r: &Record) -> Vec<Sent> {
    let wanted: Vec<&Webhook> = hooks
        .iter()
        .filter(|h| h.events.is_empty() || h.events.iter().any(|e| e == event))
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let Ok(rt) = crate::ops::runtime() else {
        return Vec::new();
    };
    rt.block_on(async {
        let mut out = Vec::new();
        for h in wanted {
            let result = match body(h, event, r) {
                Some(body) => post(h, &body).await,
                // PagerDuty has nothing to say for `initiated` (it would page for a planned
                // change) and needs a routing key.
                None => continue,
            };
            if let Err(e) = &result {
                tracing::warn!(host = %h.host, event, "webhook failed: {e}");
            }
            out.push(Sent {
                host: h.host.clone(),
                event: event.to_string(),
                ok: result.is_ok(),
                error: result.err(),
            });
        }
        out
    })
}

async fn post(h: &Webhook, body: &Value) -> Result<(), String> {
    // A POST: retried only when it cannot have reached the server (http::send).
    let policy = crate::http::RetryPolicy {
        retries: 2,
        backoff_base: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
    };
    let body = serde_json::to_vec(body).unwrap_or_default();
    let result = crate::http::send(&policy, |client| {
        client
            .post(h.url.expose_secret())
            .timeout(TIMEOUT)
            .header("Content-Type", "application/json")
            .body(body.clone())
    })
    .await;
    match result {
        Ok(resp) if resp.status().is_success() => Ok(()),
        // The status only: a body may echo the URL's token.
        Ok(resp) => Err(format!("HTTP {}", resp.status().as_u16())),
        Err(e) => Err(crate::http::transport_kind(&e).to_string()),
    }
}

fn summary(event: &str, r: &Record) -> String {
    let target = r.target().unwrap_or_else(|| "-".into());
    let from = r.current().map(|c| format!("{c} → ")).unwrap_or_default();
    match event {
        "initiated" => format!("bagboy {}: rolling back {from}{target}", r.operation),
        "completed" => format!("bagboy {}: rolled back {from}{target}", r.operation),
        "failed" => format!(
            "bagboy {}: rollback {from}{target} FAILED (exit {}){}",
            r.operation,
            r.exit,
            if r.exit == 3 {
                ": partly applied, run `bagboy recover`"
            } else {
                ", every change was undone"
            }
        ),
        other => format!("bagboy {}: {other} {target}", r.operation),
    }
}

/// Slack's mrkdwn: `&`, `<`, `>` escaped (they open links and mentions).
fn slack_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn steps(r: &Record) -> Vec<Value> {
    r.outcome
        .as_ref()
        .map(|o| {
            o.steps
                .iter()
                .map(|s| json!({"registry": s.registry, "reference": s.reference, "ok": s.ok, "undone": s.undone}))
                .collect()
        })
        .unwrap_or_default()
}

/// The request body for `h`, or `None` when this webhook sends nothing for the event.
pub fn body(h: &Webhook, event: &str, r: &Record) -> Option<Value> {
    let text = summary(event, r);
    match h.format {
        Format::Json => Some(json!({
            "event": event,
            "id": r.id,
            "operation": r.operation,
            "target": r.target(),
            "current": r.current(),
            "exit": if event == "initiated" { None } else { Some(r.exit) },
            "summary": text,
            "steps": steps(r),
        })),
        Format::Slack => {
            let mut lines = vec![format!("*{}*", slack_text(&text))];
            for s in steps(r) {
                lines.push(format!(
                    "• {} `{}`: {}",
                    slack_text(s["registry"].as_str().unwrap_or_default()),
                    slack_text(s["reference"].as_str().unwrap_or_default()).replace('`', "'"),
                    if s["ok"] == true { "ok" } else { "FAILED" }
                ));
            }
            Some(json!({
                "text": slack_text(&text),
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": format!("operation `{}`", slack_text(&r.id))}]}
                ]
            }))
        }
        Format::PagerDuty => {
            let action = match event {
                "failed" => "trigger",
                "completed" => "resolve",
                _ => return None,
            };
            let key = std::env::var(&h.routing_key_env)
                .ok()
                .filter(|k| !k.is_empty())?;
            Some(json!({
                "routing_key": key,
                "event_action": action,
                // One incident per project: a later successful rollback resolves the page a
                // failed one raised (an operation id would never match across the two).
                "dedup_key": format!("bagboy:{}:rollback", r.project),
                "payload": {
                    "summary": text,
                    "source": crate::history::lock::host_name(),
                    "severity": if r.exit == 3 { "critical" } else { "error" },
                    "component": "bagboy",
                    "custom_details": {"operation": r.id, "steps": steps(r)},
                },
            }))
        }
    }
}
