//! The `deployment:` block of bagboy.yaml (the feature request's shape, loaded as written):
//! strategy, health checks, `rollback.auto_trigger`, `rollback.validation`, `traffic`.

use std::time::Duration;

use super::parse_duration;
use crate::history::{Problem, Problems};
use crate::yaml::Node;

#[derive(Clone, Debug, PartialEq)]
pub enum CheckKind {
    /// Passes on 2xx, or on `expect_status`.
    Http {
        url: String,
        expect_status: Option<u16>,
    },
    /// Passes on exit 0.
    Command { command: String },
    /// `query` against `/api/v1/query`; passes when the value is within `max`/`min`.
    Prometheus {
        base: String,
        query: String,
        max: Option<f64>,
        min: Option<f64>,
    },
    /// A DataDog metrics query (`DD_API_KEY`, `DD_APP_KEY`, `DD_SITE`).
    Datadog {
        query: String,
        max: Option<f64>,
        min: Option<f64>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub kind: CheckKind,
    pub timeout: Duration,
    /// Extra attempts before a check fails (HTTP, command).
    pub retries: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AutoTrigger {
    /// Consecutive failing rounds.
    HealthCheckFailures(u32),
    /// Failing rounds / all rounds (0.05 = 5 %).
    ErrorRate(f64),
    /// p95 latency of the HTTP checks.
    ResponseTime(Duration),
}

/// `deployment:`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Deployment {
    /// `direct` (default) or `blue-green`.
    pub strategy: Option<String>,
    pub health_checks: Vec<Check>,
    pub auto_trigger: Vec<AutoTrigger>,
    /// `rollback.validation`: what is checked before a rollback changes anything.
    pub validation: Validation,
    /// `traffic:` (blue-green): the balancer, the two environments, the gradual steps.
    pub traffic: Option<Traffic>,
    /// `rollback.judge`: the statistical comparison with a baseline release.
    pub judge: Option<super::judge::Judge>,
}

/// How traffic reaches the two environments.
#[derive(Clone, Debug, PartialEq)]
pub enum Balancer {
    /// HAProxy's runtime API: `host:port`, or a unix socket path.
    Haproxy { address: String, backend: String },
    /// A user script: `<command> get` prints `blue N` / `green N`; `<command> set COLOR N`.
    Command { command: String },
}

/// One environment of a blue-green pair.
#[derive(Clone, Debug, PartialEq)]
pub struct Environment {
    /// The balancer's server name (HAProxy `backend/server`).
    pub server: String,
    /// Checked directly before and during a promotion (2xx = healthy).
    pub url: Option<String>,
}

/// `deployment.traffic`.
#[derive(Clone, Debug, PartialEq)]
pub struct Traffic {
    pub balancer: Balancer,
    pub blue: Environment,
    pub green: Environment,
    /// Percentages of traffic on the promoted environment, ending at 100.
    pub steps: Vec<u32>,
    pub interval: Duration,
}

impl Traffic {
    pub fn environment(&self, color: &str) -> Option<&Environment> {
        match color {
            "blue" => Some(&self.blue),
            "green" => Some(&self.green),
            _ => None,
        }
    }
}

/// `rollback.validation`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Validation {
    /// Every manifest and blob of the target still exists; formula downloads match sha256.
    pub verify_dependencies: bool,
    /// Start the target image through the Docker Engine API.
    pub smoke: Option<Smoke>,
    /// Migrations added since the target have a down migration; image config differences.
    pub backwards: Option<Migrations>,
}

impl Validation {
    pub fn any(&self) -> bool {
        self.verify_dependencies || self.smoke.is_some() || self.backwards.is_some()
    }
}

/// `run_smoke_tests: true` or `{command: [...], http: {port, path}, timeout, registry}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Smoke {
    /// Run instead of the image's default command; passes on exit 0.
    pub command: Option<Vec<String>>,
    /// `(container port, path)`: published on a loopback port and probed until 2xx.
    pub http: Option<(u16, String)>,
    pub timeout: Duration,
    /// Which `docker` registry's image (default: the first one configured).
    pub registry: Option<String>,
}

/// `check_backwards_compatibility: true` or `{dir, up_suffix, down_suffix, repo}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Migrations {
    /// The migrations folder, relative to the repository root.
    pub dir: String,
    pub up_suffix: String,
    pub down_suffix: String,
    /// The project's git repository (default: the folder of bagboy.yaml).
    pub repo: Option<String>,
}

impl Default for Migrations {
    fn default() -> Self {
        Migrations {
            dir: "migrations".into(),
            up_suffix: ".up.sql".into(),
            down_suffix: ".down.sql".into(),
            repo: None,
        }
    }
}

fn validation(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Validation {
    let mut v = Validation::default();
    for item in p.list("validation", node).to_vec() {
        let Some(entries) = item.entries() else {
            p.push(
                item.loc,
                "a validation item is a mapping such as `verify_dependencies: true`",
            );
            continue;
        };
        for (key, k, val) in entries {
            let on = |p: &mut Problems| match &val.value {
                crate::yaml::Value::Map(_) => Some(true),
                _ => p.boolean(key, val),
            };
            match key {
                "verify_dependencies" => v.verify_dependencies = on(p).unwrap_or(false),
                "run_smoke_tests" => {
                    if on(p) == Some(true) {
                        v.smoke = smoke(p, w, val);
                    }
                }
                "check_backwards_compatibility" => {
                    if on(p) == Some(true) {
                        v.backwards = Some(migrations(p, w, val));
                    }
                }
                _ => w.push(crate::suggest::unknown_key(
                    k.loc,
                    "validation",
                    key,
                    &[
                        "verify_dependencies",
                        "run_smoke_tests",
                        "check_backwards_compatibility",
                    ],
                )),
            }
        }
    }
    v
}

fn smoke(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Option<Smoke> {
    let mut s = Smoke {
        command: None,
        http: None,
        timeout: Duration::from_secs(60),
        registry: None,
    };
    if node.entries().is_none() {
        return Some(s);
    }
    known(
        p,
        w,
        node,
        "run_smoke_tests",
        &["command", "http", "timeout", "registry"],
    );
    if let Some(c) = get(node, "command") {
        let args = match &c.value {
            crate::yaml::Value::Seq(_) => p.string_list("command", c),
            _ => p
                .string("command", c)
                .map(|s| vec!["/bin/sh".into(), "-c".into(), s])
                .unwrap_or_default(),
        };
        if args.is_empty() {
            p.push(
                c.loc,
                "`command` is the command to run in the container, e.g. [\"/app\", \"--version\"]",
            );
        }
        s.command = Some(args);
    }
    if let Some(h) = get(node, "http") {
        known(p, w, h, "http", &["port", "path"]);
        let port = get(h, "port")
            .and_then(|n| p.string("port", n))
            .and_then(|t| t.parse::<u16>().ok())
            .filter(|n| *n > 0);
        match port {
            Some(port) => {
                let path = get(h, "path")
                    .and_then(|n| p.string("path", n))
                    .unwrap_or_else(|| "/".into());
                s.http = Some((port, path));
            }
            None => p.push(h.loc, "`http` needs `port:` (the container port to probe)"),
        }
    }
    if let Some(t) = get(node, "timeout") {
        if let Some(d) = duration(p, "timeout", t) {
            s.timeout = d;
        }
    }
    if let Some(r) = get(node, "registry") {
        s.registry = p.string("registry", r);
    }
    Some(s)
}

fn migrations(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Migrations {
    let mut m = Migrations::default();
    let Some(_) = node.entries() else {
        return m;
    };
    let node = get(node, "migrations").unwrap_or(node);
    known(
        p,
        w,
        node,
        "migrations",
        &["dir", "up_suffix", "down_suffix", "repo"],
    );
    for (key, field) in [
        ("dir", &mut m.dir),
        ("up_suffix", &mut m.up_suffix),
        ("down_suffix", &mut m.down_suffix),
    ] {
        if let Some(v) = get(node, key).and_then(|v| p.string(key, v)) {
            *field = v;
        }
    }
    if let Some(r) = get(node, "repo") {
        m.repo = p.string("repo", r);
    }
    if m.dir.split('/').any(|c| c == "..") || m.dir.starts_with('/') {
        p.push(node.loc, "`dir` is a folder inside the repository");
    }
    m
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

fn traffic(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Option<Traffic> {
    if !known(
        p,
        w,
        node,
        "traffic",
        &[
            "haproxy", "backend", "command", "blue", "green", "steps", "interval",
        ],
    ) {
        return None;
    }
    let balancer = match (get(node, "haproxy"), get(node, "command")) {
        (Some(a), None) => {
            let address = p.string("haproxy", a);
            let backend = match get(node, "backend") {
                Some(b) => p.string("backend", b).and_then(|name| {
                    // Names go into runtime API command lines: no spaces, newlines or `;`.
                    if is_name(&name) {
                        Some(name)
                    } else {
                        p.push(b.loc, "`traffic.backend` must be an HAProxy backend name (letters, digits, - _ . :)");
                        None
                    }
                }),
                None => {
                    p.push(node.loc, "`traffic.haproxy` needs `backend:` (the HAProxy backend of the two servers)");
                    None
                }
            };
            match (address, backend) {
                (Some(address), Some(backend)) => Some(Balancer::Haproxy { address, backend }),
                _ => None,
            }
        }
        (None, Some(c)) => p
            .string("command", c)
            .map(|command| Balancer::Command { command }),
        (Some(_), Some(_)) => {
            p.push(
                node.loc,
                "`traffic` takes `haproxy:` or `command:`, not both",
            );
            None
        }
        (None, None) => {
            p.push(
                node.loc,
                "`traffic` needs `haproxy:` (the runtime API address) or `command:`",
            );
            None
        }
    };
    let mut env = |color: &str| -> Option<Environment> {
        let Some(n) = get(node, color) else {
            p.push(
                node.loc,
                format!("`traffic` needs `{color}: {{server: ..., url: ...}}`"),
            );
            return None;
        };
        if !known(p, w, n, color, &["server", "url"]) {
            return None;
        }
        let server = match get(n, "server") {
            Some(s) => p.string("server", s)?,
            None => color.to_string(),
        };
        if !is_name(&server) {
            p.push(
                n.loc,
                format!("`{color}.server` must be a server name (letters, digits, - _ . :)"),
            );
            return None;
        }
        let url = get(n, "url").and_then(|u| p.string("url", u));
        Some(Environment { server, url })
    };
    let blue = env("blue");
    let green = env("green");
    let mut steps = vec![100];
    if let Some(v) = get(node, "steps") {
        let mut got = Vec::new();
        for item in p.list("steps", v) {
            match item
                .as_scalar()
                .and_then(|s| s.text.trim().trim_end_matches('%').parse::<u32>().ok())
            {
                Some(n) if (1..=100).contains(&n) && got.last().is_none_or(|l| *l < n) => {
                    got.push(n)
                }
                _ => p.push(
                    item.loc,
                    "`steps` are rising percentages from 1 to 100 (e.g. [25, 50, 75, 100])",
                ),
            }
        }
        if got.last() != Some(&100) {
            p.push(v.loc, "`steps` must end at 100");
        }
        steps = got;
    }
    let interval = match get(node, "interval") {
        Some(v) => duration(p, "interval", v)?,
        None => Duration::from_secs(10),
    };
    if let (Some(b), Some(g)) = (&blue, &green) {
        if b.server == g.server {
            p.push(node.loc, "`blue.server` and `green.server` must differ");
        }
    }
    Some(Traffic {
        balancer: balancer?,
        blue: blue?,
        green: green?,
        steps,
        interval,
    })
}

fn known(p: &mut Problems, w: &mut Vec<Problem>, node: &Node, what: &str, keys: &[&str]) -> bool {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("`{what}` must be a mapping, found {}", node.type_name()),
        );
        return false;
    };
    for (key, k, _) in entries {
        if !keys.contains(&key) {
            w.push(crate::suggest::unknown_key(k.loc, what, key, keys));
        }
    }
    true
}

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    node.entries()?
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, v)| v)
}

/// A duration from `min` to `max` (inclusive); anything else is a problem at its line.
fn duration(p: &mut Problems, key: &str, v: &Node) -> Option<Duration> {
    duration_in(
        p,
        key,
        v,
        Duration::from_millis(1),
        Duration::from_secs(24 * 3600),
    )
}

pub(crate) fn duration_in(
    p: &mut Problems,
    key: &str,
    v: &Node,
    min: Duration,
    max: Duration,
) -> Option<Duration> {
    let s = p.string(key, v)?;
    match parse_duration(&s) {
        None => {
            p.push(
                v.loc,
                format!(
                    "`{key}` \"{}\" is not a duration (e.g. \"30s\", \"500ms\", \"2m\")",
                    s.escape_debug()
                ),
            );
            None
        }
        Some(d) if d < min || d > max => {
            p.push(
                v.loc,
                format!(
                    "`{key}` \"{}\" is out of range: from {} to {}",
                    s.escape_debug(),
                    human(min),
                    human(max)
                ),
            );
            None
        }
        Some(d) => Some(d),
    }
}

fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

fn number(p: &mut Problems, key: &str, v: &Node) -> Option<f64> {
    let s = p.string(key, v)?;
    let parsed = s
        .strip_suffix('%')
        .map(|n| n.trim().parse::<f64>().map(|n| n / 100.0))
        .unwrap_or_else(|| s.trim().parse::<f64>());
    match parsed {
        Ok(n) if n.is_finite() => Some(n),
        _ => {
            p.push(
                v.loc,
                format!("`{key}` \"{}\" is not a number", s.escape_debug()),
            );
            None
        }
    }
}

/// A whole number from `min` to `max`.
fn whole_in(p: &mut Problems, key: &str, v: &Node, min: u32, max: u32) -> Option<u32> {
    let s = p.string(key, v)?;
    match s.trim().parse::<u32>() {
        Ok(n) if (min..=max).contains(&n) => Some(n),
        _ => {
            p.push(
                v.loc,
                format!(
                    "`{key}` \"{}\" must be a whole number from {min} to {max}",
                    s.escape_debug()
                ),
            );
            None
        }
    }
}

impl Deployment {
    pub fn parse(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Deployment {
        let mut d = Deployment::default();
        if !known(
            p,
            w,
            node,
            "deployment",
            &["strategy", "health_checks", "rollback", "traffic"],
        ) {
            return d;
        }
        if let Some(v) = get(node, "strategy") {
            if let Some(s) = p.string("strategy", v) {
                if !matches!(s.as_str(), "direct" | "blue-green") {
                    p.push(
                        v.loc,
                        format!("unknown strategy `{s}`; expected direct or blue-green"),
                    );
                }
                d.strategy = Some(s);
            }
        }
        if let Some(v) = get(node, "health_checks") {
            for item in p.list("health_checks", v) {
                if let Some(c) = check(p, w, item) {
                    d.health_checks.push(c);
                }
            }
        }
        if let Some(r) = get(node, "rollback") {
            if known(
                p,
                w,
                r,
                "deployment.rollback",
                &["auto_trigger", "validation", "judge"],
            ) {
                if let Some(v) = get(r, "auto_trigger") {
                    for item in p.list("auto_trigger", v) {
                        if let Some(t) = trigger(p, w, item) {
                            d.auto_trigger.push(t);
                        }
                    }
                }
                if let Some(v) = get(r, "validation") {
                    d.validation = validation(p, w, v);
                }
                if let Some(v) = get(r, "judge") {
                    d.judge = super::judge::parse(p, v);
                }
            }
        }
        if let Some(t) = get(node, "traffic") {
            d.traffic = traffic(p, w, t);
            if d.traffic.is_some() && d.strategy.as_deref() != Some("blue-green") {
                w.push(Problem {
                    loc: t.loc,
                    message: "`traffic` is only used with `strategy: blue-green`".into(),
                });
            }
        }
        d
    }
}

fn check(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Option<Check> {
    const KEYS: [&str; 10] = [
        "url",
        "command",
        "prometheus",
        "datadog",
        "query",
        "max",
        "min",
        "timeout",
        "retries",
        "expect_status",
    ];
    if !known(p, w, node, "health check", &KEYS) {
        return None;
    }
    let before = p.0.len();
    let s = |p: &mut Problems, key: &str| get(node, key).and_then(|v| p.string(key, v));
    let max = get(node, "max").and_then(|v| number(p, "max", v));
    let min = get(node, "min").and_then(|v| number(p, "min", v));
    let kinds = ["url", "command", "prometheus", "datadog"]
        .iter()
        .filter(|k| get(node, k).is_some())
        .count();
    if kinds != 1 {
        p.push(
            node.loc,
            "a health check needs exactly one of `url`, `command`, `prometheus`, `datadog`",
        );
        return None;
    }
    let kind = if let Some(url) = s(p, "url") {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            p.push(
                node.loc,
                format!("health check url `{url}` must be http(s)"),
            );
        }
        let expect_status = get(node, "expect_status")
            .and_then(|v| whole_in(p, "expect_status", v, 100, 599))
            .map(|n| n as u16);
        CheckKind::Http { url, expect_status }
    } else if let Some(command) = s(p, "command") {
        CheckKind::Command { command }
    } else if let Some(base) = s(p, "prometheus") {
        let Some(query) = s(p, "query") else {
            p.push(node.loc, "a prometheus check needs a `query`");
            return None;
        };
        CheckKind::Prometheus {
            base,
            query,
            max,
            min,
        }
    } else {
        let query = s(p, "datadog")
            .or_else(|| s(p, "query"))
            .unwrap_or_default();
        CheckKind::Datadog { query, max, min }
    };
    let timeout = get(node, "timeout")
        .and_then(|v| duration(p, "timeout", v))
        .unwrap_or(Duration::from_secs(30));
    let retries = get(node, "retries")
        .and_then(|v| whole_in(p, "retries", v, 0, 10))
        .unwrap_or(0);
    (p.0.len() == before).then_some(Check {
        kind,
        timeout,
        retries,
    })
}

fn trigger(p: &mut Problems, w: &mut Vec<Problem>, node: &Node) -> Option<AutoTrigger> {
    let entries: Vec<(&str, &Node, &Node)> = node.entries()?.collect();
    let [(key, k, v)] = entries.as_slice() else {
        p.push(node.loc, "each auto_trigger item has one key");
        return None;
    };
    match *key {
        "health_check_failures" => {
            whole_in(p, key, v, 1, 1000).map(AutoTrigger::HealthCheckFailures)
        }
        "error_rate_threshold" => number(p, key, v).and_then(|n| {
            if n > 0.0 && n <= 1.0 {
                Some(AutoTrigger::ErrorRate(n))
            } else {
                p.push(
                    v.loc,
                    "`error_rate_threshold` is out of range: above 0% and at most 100% (e.g. \"5%\" or 0.05)",
                );
                None
            }
        }),
        "response_time_threshold" => duration(p, key, v).map(AutoTrigger::ResponseTime),
        other => {
            w.push(crate::suggest::unknown_key(
                k.loc,
                "auto_trigger",
                other,
                &[
                    "health_check_failures",
                    "error_rate_threshold",
                    "response_time_threshold",
                ],
            ));
            None
        }
    }
}
