//! Monitoring as listeners of the event stream: the hash-chained audit log, metrics (Pushgateway,
//! node_exporter textfile) and webhooks (Slack, PagerDuty, JSON). None of them can fail or
//! block an operation: their trouble is a warning, and the audit line says what was sent.

pub mod audit;
pub mod metrics;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use secrecy::SecretString;

use crate::coordinator::{Outcome, RecoverReport};
use crate::events::{Event, Listener};
use crate::history::{Problem, Problems};
use crate::plan::Plan;
use crate::yaml::Node;

/// `monitoring:` in bagboy.yaml.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub webhooks: Vec<Webhook>,
    /// Pushgateway base URL (`http://127.0.0.1:9091`).
    pub pushgateway: Option<String>,
    /// A node_exporter textfile-collector file, written atomically.
    pub textfile: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Slack,
    PagerDuty,
    Json,
}

#[derive(Clone)]
pub struct Webhook {
    /// The URL is a credential (Slack's carries its token): never shown, only its host.
    pub url: SecretString,
    pub host: String,
    pub format: Format,
    /// `initiated`, `completed`, `failed`, `held`; empty = all.
    pub events: Vec<String>,
    /// PagerDuty: the environment variable holding the routing key.
    pub routing_key_env: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("host", &self.host)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

pub const EVENTS: [&str; 4] = ["initiated", "completed", "failed", "held"];

impl Settings {
    pub fn parse(p: &mut Problems, warnings: &mut Vec<Problem>, node: &Node) -> Settings {
        let mut out = Settings::default();
        let Some(entries) = node.entries() else {
            p.push(
                node.loc,
                format!("`monitoring` must be a mapping, found {}", node.type_name()),
            );
            return out;
        };
        for (key, k, v) in entries {
            match key {
                "pushgateway" => {
                    out.pushgateway = p.string(key, v).filter(|u| {
                        let ok = reqwest::Url::parse(u)
                            .is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
                        if !ok {
                            p.push(v.loc, "`pushgateway` must be an http(s) URL");
                        }
                        ok
                    })
                }
                "textfile" => {
                    out.textfile = p.string(key, v).map(PathBuf::from);
                    if out
                        .textfile
                        .as_ref()
                        .is_some_and(|t| t.as_os_str().is_empty())
                    {
                        p.push(
                            v.loc,
                            "`textfile` is empty: name a file (or leave the key out)",
                        );
                        out.textfile = None;
                    }
                    if let Some(t) = &out.textfile {
                        if let Some(why) = crate::config::escapes_project(t) {
                            p.push(
                                v.loc,
                                format!(
                                    "`textfile: {}` {why}: bagboy writes it, so bagboy.yaml may only name a path inside the project; set BAGBOY_METRICS_TEXTFILE to write the node_exporter file elsewhere",
                                    t.display().to_string().escape_debug()
                                ),
                            );
                        }
                    }
                }
                "webhooks" => {
                    for item in p.list(key, v) {
                        if let Some(w) = webhook(p, warnings, item) {
                            out.webhooks.push(w);
                        }
                    }
                }
                _ => warnings.push(crate::suggest::unknown_key(
                    k.loc,
                    "monitoring",
                    key,
                    &["webhooks", "pushgateway", "textfile"],
                )),
            }
        }
        out
    }
}

fn webhook(p: &mut Problems, warnings: &mut Vec<Problem>, node: &Node) -> Option<Webhook> {
    let entries = node.entries()?;
    let before = p.0.len();
    let (mut url, mut format, mut events, mut env) = (None, Format::Json, Vec::new(), None);
    for (key, k, v) in entries {
        match key {
            "url" => url = p.string(key, v),
            "format" => match p.string(key, v).as_deref() {
                Some("slack") => format = Format::Slack,
                Some("pagerduty") => format = Format::PagerDuty,
                Some("json") => format = Format::Json,
                Some(other) => p.push(
                    v.loc,
                    format!("unknown webhook format `{other}`; expected slack, pagerduty or json"),
                ),
                None => {}
            },
            "events" => {
                events = p.string_list(key, v);
                for e in &events {
                    if !EVENTS.contains(&e.as_str()) {
                        p.push(
                            v.loc,
                            format!("unknown event `{e}`; expected {}", EVENTS.join(", ")),
                        );
                    }
                }
            }
            "routing_key_env" => env = p.string(key, v),
            _ => warnings.push(crate::suggest::unknown_key(
                k.loc,
                "webhook",
                key,
                &["url", "format", "events", "routing_key_env"],
            )),
        }
    }
    let Some(url) = url else {
        p.push(node.loc, "a webhook needs a `url`");
        return None;
    };
    let host = match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => {
            u.host_str().unwrap_or_default().to_string()
        }
        _ => {
            // The URL may hold a token: do not repeat it.
            p.push(node.loc, "a webhook `url` must be an http(s) URL");
            return None;
        }
    };
    (p.0.len() == before).then(|| Webhook {
        url: SecretString::from(url),
        host,
        format,
        events,
        routing_key_env: env.unwrap_or_else(|| "PAGERDUTY_ROUTING_KEY".into()),
    })
}

/// What one operation did, gathered from its events.
#[derive(Clone, Debug, Default)]
pub struct Record {
    pub id: String,
    /// `name:` of the project (labels, dedup keys).
    pub project: String,
    pub command: String,
    pub operation: String,
    pub plan: Option<Plan>,
    pub outcome: Option<Outcome>,
    pub recovered: Option<RecoverReport>,
    pub recorded: Option<String>,
    pub pruned: Option<usize>,
    pub exit: u8,
    pub error: Option<String>,
    pub millis: u128,
}

impl Record {
    /// `rollback`, `apply` and `recover` are rollbacks for metrics and alerts.
    pub fn is_rollback(&self) -> bool {
        matches!(self.operation.as_str(), "rollback" | "apply" | "recover")
    }

    pub fn target(&self) -> Option<String> {
        self.plan
            .as_ref()
            .map(|p| p.target.version.clone())
            .or_else(|| self.recovered.as_ref().and_then(|r| r.target.clone()))
            .or_else(|| self.recorded.clone())
    }

    pub fn current(&self) -> Option<String> {
        self.plan
            .as_ref()
            .and_then(|p| p.current.as_ref().map(|c| c.version.clone()))
    }
}

/// The listener a writing command adds: it gathers the operation, sends `initiated` once the
/// plan is known, and at the end sends `completed`/`failed`, appends the audit line and
/// publishes metrics.
pub struct Monitor {
    settings: Settings,
    audit_path: PathBuf,
    project: String,
    started: Instant,
    record: Mutex<Record>,
    sent: Mutex<Vec<webhooks::Sent>>,
}

impl Monitor {
    pub fn new(settings: Settings, state_dir: &std::path::Path, project: &str) -> Monitor {
        Monitor {
            settings,
            audit_path: audit::path(state_dir),
            project: project.to_string(),
            started: Instant::now(),
            record: Mutex::new(Record::default()),
            sent: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Listener for Monitor {
    fn on(&self, event: &Event<'_>) {
        match event {
            Event::Started {
                id,
                operation,
                command,
            } => {
                let mut r = self.lock();
                r.id = id.to_string();
                r.project = self.project.clone();
                r.command = audit::redact(command);
                r.operation = operation.to_string();
            }
            Event::Planned { plan } => {
                let r = {
                    let mut r = self.lock();
                    r.plan = Some((*plan).clone());
                    r.clone()
                };
                if r.is_rollback() && !plan.is_noop() && plan.refusals.is_empty() {
                    let sent = webhooks::send_all(&self.settings.webhooks, "initiated", &r);
                    self.sent
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend(sent);
                }
            }
            Event::Finished { plan, outcome } => {
                let mut r = self.lock();
                r.plan = Some((*plan).clone());
                r.outcome = Some((*outcome).clone());
            }
            Event::Recovered { report } => self.lock().recovered = Some((*report).clone()),
            Event::Recorded { entry } => self.lock().recorded = Some(entry.version.to_string()),
            Event::Pruned { removed } => self.lock().pruned = Some(removed.len()),
            Event::Ended { exit, error } => {
                let r = {
                    let mut r = self.lock();
                    r.exit = *exit;
                    r.error = error.map(str::to_string);
                    r.millis = self.started.elapsed().as_millis();
                    r.clone()
                };
                if r.id.is_empty() {
                    // Refused before the operation started (bad usage): nothing to record.
                    return;
                }
                let mut sent =
                    std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()));
                if r.is_rollback() {
                    let ev = if r.exit == 0 { "completed" } else { "failed" };
                    sent.extend(webhooks::send_all(&self.settings.webhooks, ev, &r));
                }
                if let Err(e) = audit::append(&self.audit_path, &r, &sent) {
                    tracing::warn!(
                        "the audit log {} was not written: {e}",
                        self.audit_path.display()
                    );
                }
                if r.is_rollback() {
                    metrics::publish(&self.settings, &self.audit_path, &self.project, &r);
                }
            }
            _ => {}
        }
    }
}
