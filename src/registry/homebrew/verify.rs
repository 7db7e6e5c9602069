//! Validation of a formula restore: every download the restored formula names (its `url`,
//! per-platform urls, resources, patches) still serves the bytes its `sha256` declares.

use std::time::Duration;

use sha2::Digest as _;

use super::ruby::Source;
use super::{Kind, RestorePlan};
use crate::registry::Verified;

/// A download larger than this is refused rather than read.
const MAX_DOWNLOAD: u64 = 2 << 30;
const TIMEOUT: Duration = Duration::from_secs(300);

/// `Err(why)` when the url does not serve `sha256`.
async fn check(url: &str, sha256: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| format!("{url} is not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: only http(s) downloads are checked"));
    }
    let shown = crate::http::safe_url(&parsed);
    let mut resp = crate::http::send(&crate::http::RetryPolicy::from_env(), |client| {
        client.get(parsed.clone()).timeout(TIMEOUT)
    })
    .await
    .map_err(|e| format!("{shown}: {}", crate::http::transport_kind(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{shown} answered HTTP {}", resp.status().as_u16()));
    }
    let mut hash = sha2::Sha256::new();
    let mut read = 0u64;
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                read += c.len() as u64;
                if read > MAX_DOWNLOAD {
                    return Err(format!("{shown} is larger than {} GiB", MAX_DOWNLOAD >> 30));
                }
                hash.update(&c);
            }
            Ok(None) => break,
            Err(e) => return Err(format!("{shown}: {}", crate::http::transport_kind(&e))),
        }
    }
    let got = hex::encode(hash.finalize());
    if got.eq_ignore_ascii_case(sha256) {
        Ok(())
    } else {
        Err(format!(
            "{shown} has sha256 {got}, not {sha256} as the formula declares"
        ))
    }
}

pub(super) async fn downloads(registry: &str, plan: &RestorePlan, v: &mut Verified) {
    if plan.kind == Kind::Cask {
        v.summary = "casks are not checked (their urls interpolate the version)".into();
        return;
    }
    let Ok(src) = Source::parse(&plan.desired) else {
        v.missing
            .push(format!("{registry}: the restored formula does not parse"));
        return;
    };
    let all = src.downloads();
    let (with, without): (Vec<_>, Vec<_>) = all.into_iter().partition(|(_, s)| s.is_some());
    for (u, _) in &without {
        v.warnings
            .push(format!("{registry}: {u} has no sha256 to check"));
    }
    let mut results: Vec<Result<(), String>> = Vec::new();
    for chunk in with.chunks(4) {
        results.extend(
            futures_util::future::join_all(
                chunk
                    .iter()
                    .map(|(u, s)| check(u, s.as_deref().unwrap_or_default())),
            )
            .await,
        );
    }
    v.requests += with.len();
    for r in results {
        if let Err(why) = r {
            v.missing.push(format!("{registry}: {}: {why}", plan.name));
        }
    }
    v.summary = format!(
        "{} download{} of {} checked against sha256",
        with.len(),
        if with.len() == 1 { "" } else { "s" },
        plan.name
    );
}
