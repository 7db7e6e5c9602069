//! Running one health check, and one round of all of them.

use std::time::{Duration, Instant};

use super::config::{Check, CheckKind};
use super::{CheckResult, Sample, Verdict};

/// Responses read for a check are bounded: a health endpoint answers in bytes, not megabytes.
const MAX_BODY: usize = 1 << 20;

/// Every check once, concurrently.
pub async fn sample(checks: &[Check]) -> Sample {
    let results = futures_util::future::join_all(checks.iter().map(run_check)).await;
    Sample {
        at: crate::history::Timestamp::now().to_string(),
        results,
    }
}

pub async fn run_check(c: &Check) -> CheckResult {
    match &c.kind {
        CheckKind::Http { url, expect_status } => http(c, url, *expect_status).await,
        CheckKind::Command { command } => command_check(c, command).await,
        CheckKind::Prometheus {
            base,
            query,
            max,
            min,
        } => prometheus(c, base, query, *max, *min).await,
        CheckKind::Datadog { query, max, min } => datadog(c, query, *max, *min).await,
    }
}

fn result(kind: &'static str, target: String, status: Verdict, detail: String) -> CheckResult {
    CheckResult {
        kind,
        target,
        status,
        latency_ms: None,
        value: None,
        // Servers' words are kept as they are; every renderer cleans what it prints.
        detail,
    }
}

fn shown(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| crate::http::safe_url(&u))
        .unwrap_or_else(|_| url.to_string())
}

async fn http(c: &Check, url: &str, expect: Option<u16>) -> CheckResult {
    let target = shown(url);
    let mut last = result("url", target.clone(), Verdict::Failing, String::new());
    for attempt in 0..=c.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt.min(5) - 1))).await;
        }
        let t = Instant::now();
        // The check's own `retries` are its retry loop: one request per attempt here.
        let resp = crate::http::send(&crate::http::RetryPolicy::NONE, |client| {
            client.get(url).timeout(c.timeout)
        })
        .await;
        let ms = t.elapsed().as_millis() as u64;
        last = match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = crate::http::read_limited(r, MAX_BODY).await;
                let ok = match expect {
                    Some(e) => status == e,
                    None => (200..300).contains(&status),
                };
                let mut res = result(
                    "url",
                    target.clone(),
                    if ok {
                        Verdict::Passing
                    } else {
                        Verdict::Failing
                    },
                    format!("HTTP {status}"),
                );
                res.latency_ms = Some(ms);
                res
            }
            Err(e) => {
                // An endpoint that does not answer is a failing service, not an unknown.
                let mut res = result(
                    "url",
                    target.clone(),
                    Verdict::Failing,
                    format!("{} after {} ms", crate::http::transport_kind(&e), ms),
                );
                res.latency_ms = Some(ms);
                res
            }
        };
        if last.status == Verdict::Passing {
            break;
        }
    }
    last
}

/// Characters that need a shell; without them the command is run directly (split on spaces).
fn needs_shell(cmd: &str) -> bool {
    cmd.chars().any(|c| "|&;<>()$`\\\"'*?[]{}~#!\n".contains(c))
}

async fn command_check(c: &Check, command: &str) -> CheckResult {
    let target = command.to_string();
    let mut last = result("command", target.clone(), Verdict::Failing, String::new());
    for attempt in 0..=c.retries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut cmd = if needs_shell(command) {
            let mut cmd = tokio::process::Command::new("sh");
            cmd.arg("-c").arg(command);
            cmd
        } else {
            let mut words = command.split_whitespace();
            let Some(prog) = words.next() else {
                return result(
                    "command",
                    target,
                    Verdict::Inconclusive,
                    "empty command".into(),
                );
            };
            let mut cmd = tokio::process::Command::new(prog);
            cmd.args(words);
            cmd
        };
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let child = match cmd.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                return result(
                    "command",
                    target,
                    Verdict::Inconclusive,
                    format!("cannot run: {e}"),
                )
            }
        };
        let pid = child.id();
        let t = Instant::now();
        last = match tokio::time::timeout(c.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => result(
                "command",
                target.clone(),
                Verdict::Passing,
                format!("exit 0 in {} ms", t.elapsed().as_millis()),
            ),
            Ok(Ok(out)) => {
                let err = String::from_utf8_lossy(&out.stderr);
                let tail: String = err
                    .trim()
                    .chars()
                    .rev()
                    .take(200)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                result(
                    "command",
                    target.clone(),
                    Verdict::Failing,
                    format!(
                        "{}{}",
                        out.status,
                        if tail.is_empty() {
                            String::new()
                        } else {
                            format!(": {tail}")
                        }
                    ),
                )
            }
            Ok(Err(e)) => result(
                "command",
                target.clone(),
                Verdict::Inconclusive,
                e.to_string(),
            ),
            Err(_) => {
                if let Some(pid) = pid.and_then(|p| libc::pid_t::try_from(p).ok()) {
                    // SAFETY: signalling the process group this check started.
                    unsafe {
                        libc::kill(-pid, libc::SIGKILL);
                    }
                }
                result(
                    "command",
                    target.clone(),
                    Verdict::Failing,
                    format!("timed out after {} ms", c.timeout.as_millis()),
                )
            }
        };
        if last.status == Verdict::Passing {
            break;
        }
    }
    last
}

fn judge(value: f64, max: Option<f64>, min: Option<f64>) -> (Verdict, String) {
    if let Some(m) = max.filter(|m| value > *m) {
        return (Verdict::Failing, format!("{value} is above the max {m}"));
    }
    if let Some(m) = min.filter(|m| value < *m) {
        return (Verdict::Failing, format!("{value} is below the min {m}"));
    }
    (Verdict::Passing, format!("{value}"))
}

async fn get_json(
    url: reqwest::Url,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<serde_json::Value, String> {
    let resp = crate::http::send(&crate::http::RetryPolicy::from_env(), |client| {
        let mut req = client.get(url.clone()).timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req
    })
    .await
    .map_err(|e| crate::http::transport_kind(&e).to_string())?;
    let status = resp.status().as_u16();
    let body = crate::http::read_limited(resp, MAX_BODY)
        .await
        .map_err(|_| "the answer could not be read".to_string())?;
    if !(200..300).contains(&status) {
        return Err(format!("HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|_| "the answer is not JSON".to_string())
}

async fn prometheus(
    c: &Check,
    base: &str,
    query: &str,
    max: Option<f64>,
    min: Option<f64>,
) -> CheckResult {
    let inconclusive =
        |d: String| result("prometheus", query.to_string(), Verdict::Inconclusive, d);
    let mut url = match reqwest::Url::parse(base).and_then(|b| b.join("api/v1/query")) {
        Ok(u) => u,
        Err(e) => return inconclusive(format!("bad Prometheus URL: {e}")),
    };
    url.query_pairs_mut().append_pair("query", query);
    let v = match get_json(url, &[], c.timeout).await {
        Ok(v) => v,
        Err(e) => return inconclusive(format!("Prometheus at {}: {e}", shown(base))),
    };
    if v["status"] != "success" {
        return inconclusive(format!(
            "Prometheus says {}",
            v["error"].as_str().unwrap_or("the query failed")
        ));
    }
    let data = &v["data"];
    let value = match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|s| s["value"][1].as_str())
            .map(str::to_string),
        Some("scalar") => data["result"][1].as_str().map(str::to_string),
        _ => None,
    };
    let Some(value) = value
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|n| n.is_finite())
    else {
        return inconclusive("the query returned no value".into());
    };
    let (status, detail) = judge(value, max, min);
    let mut r = result("prometheus", query.to_string(), status, detail);
    r.value = Some(value);
    r
}

async fn datadog(c: &Check, query: &str, max: Option<f64>, min: Option<f64>) -> CheckResult {
    let inconclusive = |d: String| result("datadog", query.to_string(), Verdict::Inconclusive, d);
    let (Ok(api), Ok(app)) = (std::env::var("DD_API_KEY"), std::env::var("DD_APP_KEY")) else {
        return inconclusive("DD_API_KEY and DD_APP_KEY are needed".into());
    };
    let base = std::env::var("BAGBOY_DATADOG_URL").unwrap_or_else(|_| {
        format!(
            "https://api.{}",
            std::env::var("DD_SITE").unwrap_or_else(|_| "datadoghq.com".into())
        )
    });
    let mut url = match reqwest::Url::parse(&base).and_then(|b| b.join("api/v1/query")) {
        Ok(u) => u,
        Err(e) => return inconclusive(format!("bad DataDog URL: {e}")),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    url.query_pairs_mut()
        .append_pair("from", &(now.saturating_sub(300)).to_string())
        .append_pair("to", &now.to_string())
        .append_pair("query", query);
    let v = match get_json(
        url,
        &[("DD-API-KEY", api), ("DD-APPLICATION-KEY", app)],
        c.timeout,
    )
    .await
    {
        Ok(v) => v,
        Err(e) => return inconclusive(format!("DataDog: {e}")),
    };
    let value = v["series"]
        .as_array()
        .and_then(|s| s.first())
        .and_then(|s| s["pointlist"].as_array())
        .and_then(|p| p.iter().rev().find_map(|pt| pt[1].as_f64()));
    let Some(value) = value.filter(|n| n.is_finite()) else {
        return inconclusive("the query returned no value".into());
    };
    let (status, detail) = judge(value, max, min);
    let mut r = result("datadog", query.to_string(), status, detail);
    r.value = Some(value);
    r
}
