//! `deployment.rollback.judge` in bagboy.yaml. Stricter than the rest of the `deployment:`
//! block: an unknown key or a number out of range is an error (exit 2, `file:line:col`), since
//! a misspelt `tolerance` silently defaulted would change what gets rolled back.

use std::time::Duration;

use super::{Baseline, Direction, Judge, Metric};
use crate::history::{Problems, Version};
use crate::yaml::Node;

/// The longest window accepted: 30 days.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86400);

const JUDGE_KEYS: [&str; 7] = [
    "prometheus",
    "baseline",
    "window",
    "pass",
    "marginal",
    "alpha",
    "metrics",
];
const METRIC_KEYS: [&str; 6] = [
    "name",
    "query",
    "direction",
    "tolerance",
    "critical",
    "weight",
];

fn get<'a>(node: &'a Node, key: &str) -> Option<&'a Node> {
    node.entries()?
        .find(|(k, _, _)| *k == key)
        .map(|(_, _, v)| v)
}

/// Every key known, else an error naming the unknown one; `false` when not a mapping.
fn known(p: &mut Problems, node: &Node, what: &str, keys: &[&str]) -> bool {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("`{what}` must be a mapping, found {}", node.type_name()),
        );
        return false;
    };
    for (key, k, _) in entries {
        if !keys.contains(&key) {
            p.push(
                k.loc,
                format!("unknown {what} key `{key}` (known: {})", keys.join(", ")),
            );
        }
    }
    true
}

/// A number within `range`; `25%` reads as 0.25 when `percent` is allowed.
fn number(
    p: &mut Problems,
    key: &str,
    v: &Node,
    percent: bool,
    ok: impl Fn(f64) -> bool,
    range: &str,
) -> Option<f64> {
    let s = p.string(key, v)?;
    let t = s.trim();
    let parsed = match t.strip_suffix('%') {
        Some(n) if percent => n.trim().parse::<f64>().map(|n| n / 100.0).ok(),
        _ => t.parse::<f64>().ok(),
    };
    match parsed {
        Some(n) if n.is_finite() && ok(n) => Some(n),
        Some(_) => {
            p.push(v.loc, format!("`{key}` {s} is out of range: {range}"));
            None
        }
        None => {
            p.push(v.loc, format!("`{key}` \"{s}\" is not a number ({range})"));
            None
        }
    }
}

fn required<'a>(p: &mut Problems, node: &'a Node, key: &str, what: &str) -> Option<&'a Node> {
    let v = get(node, key);
    if v.is_none() {
        p.push(node.loc, format!("{what} needs `{key}:`"));
    }
    v
}

/// Parse `judge:`; `None` (with problems pushed) when it is not usable.
pub fn parse(p: &mut Problems, node: &Node) -> Option<Judge> {
    if !known(p, node, "judge", &JUDGE_KEYS) {
        return None;
    }
    let before = p.0.len();
    let what = "`judge`";
    let prometheus = required(p, node, "prometheus", what).and_then(|v| {
        let s = p.string("prometheus", v)?;
        match reqwest::Url::parse(&s) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(s),
            _ => {
                p.push(
                    v.loc,
                    format!(
                        "`prometheus` \"{s}\" must be an http(s) URL, e.g. http://prometheus:9090"
                    ),
                );
                None
            }
        }
    });
    let baseline = match get(node, "baseline") {
        None => Some(Baseline::Previous),
        Some(v) => p.string("baseline", v).and_then(|s| {
            if s.trim() == "previous" {
                Some(Baseline::Previous)
            } else if Version::parse(&s).is_ok() {
                Some(Baseline::Version(s.trim().to_string()))
            } else {
                p.push(
                    v.loc,
                    format!("`baseline` \"{s}\" is neither `previous` nor a version"),
                );
                None
            }
        }),
    };
    let window = match get(node, "window") {
        None => Some(Duration::from_secs(600)),
        Some(v) => p
            .string("window", v)
            .and_then(|s| match crate::health::parse_duration(&s) {
                Some(d) if !d.is_zero() && d <= MAX_WINDOW && d.as_secs() >= 1 => Some(d),
                Some(_) => {
                    p.push(
                        v.loc,
                        format!("`window` {s} is out of range: 1s to 30 days"),
                    );
                    None
                }
                None => {
                    p.push(
                        v.loc,
                        format!("`window` \"{s}\" is not a duration (e.g. \"10m\", \"1h\")"),
                    );
                    None
                }
            }),
    };
    let score = |p: &mut Problems, key: &str, default: f64| match get(node, key) {
        None => Some(default),
        Some(v) => {
            let s = p.string(key, v)?;
            let t = s.trim().trim_end_matches('%').trim();
            match t.parse::<f64>() {
                Ok(n) if n.is_finite() && (0.0..=100.0).contains(&n) => Some(n),
                _ => {
                    p.push(v.loc, format!("`{key}` {s} must be a score from 0 to 100"));
                    None
                }
            }
        }
    };
    let pass = score(p, "pass", 95.0);
    let marginal = score(p, "marginal", 75.0);
    if let (Some(pass), Some(marginal)) = (pass, marginal) {
        if marginal > pass {
            p.push(
                get(node, "marginal").map_or(node.loc, |v| v.loc),
                format!("`marginal` {marginal} must not be above `pass` {pass}"),
            );
        }
    }
    let alpha = match get(node, "alpha") {
        None => Some(0.05),
        Some(v) => number(
            p,
            "alpha",
            v,
            true,
            |a| a > 0.0 && a <= 0.5,
            "above 0 and at most 0.5 (e.g. 0.05)",
        ),
    };
    let mut metrics = Vec::new();
    if let Some(v) = required(p, node, "metrics", what) {
        let items = p.list("metrics", v);
        if items.is_empty()
            && matches!(
                v.value,
                crate::yaml::Value::Seq(_) | crate::yaml::Value::Null
            )
        {
            p.push(v.loc, "`metrics` needs at least one metric");
        }
        for item in items {
            if let Some(m) = metric(p, item) {
                if metrics.iter().any(|o: &Metric| o.name == m.name) {
                    p.push(item.loc, format!("metric name `{}` is used twice", m.name));
                }
                metrics.push(m);
            }
        }
    }
    if p.0.len() != before {
        return None;
    }
    Some(Judge {
        prometheus: prometheus?,
        baseline: baseline?,
        window: window?,
        pass: pass?,
        marginal: marginal?,
        alpha: alpha?,
        metrics,
    })
}

fn metric(p: &mut Problems, node: &Node) -> Option<Metric> {
    if !known(p, node, "judge metric", &METRIC_KEYS) {
        return None;
    }
    let what = "a judge metric";
    let name = required(p, node, "name", what).and_then(|v| {
        let s = p.string("name", v)?;
        if s.trim().is_empty() {
            p.push(v.loc, "`name` must not be empty");
            return None;
        }
        Some(s)
    });
    let query = required(p, node, "query", what).and_then(|v| {
        let s = p.string("query", v)?;
        if !s.contains("$VERSION") {
            // Without it both sides would read the same series and always look equal.
            p.push(
                v.loc,
                "`query` must contain `$VERSION` (replaced by the candidate's and the baseline's version)",
            );
            return None;
        }
        Some(s)
    });
    let direction = required(p, node, "direction", what).and_then(|v| {
        let s = p.string("direction", v)?;
        match s.trim() {
            "increase" => Some(Direction::Increase),
            "decrease" => Some(Direction::Decrease),
            "either" => Some(Direction::Either),
            _ => {
                p.push(
                    v.loc,
                    format!("`direction` \"{s}\": expected increase, decrease or either (the change that is bad)"),
                );
                None
            }
        }
    });
    let tolerance = required(p, node, "tolerance", what).and_then(|v| {
        number(
            p,
            "tolerance",
            v,
            true,
            |t| t >= 0.0,
            "a relative effect of 0 or more (0.25 or 25% allows a 25 % shift)",
        )
    });
    let critical = match get(node, "critical") {
        None => Some(false),
        Some(v) => p.boolean("critical", v),
    };
    let weight = match get(node, "weight") {
        None => Some(1.0),
        Some(v) => number(
            p,
            "weight",
            v,
            false,
            |w| w > 0.0 && w <= 1e6,
            "above 0, at most 1000000",
        ),
    };
    Some(Metric {
        name: name?,
        query: query?,
        direction: direction?,
        tolerance: tolerance?,
        critical: critical?,
        weight: weight?,
    })
}
