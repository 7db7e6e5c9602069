//! Validation of a rollback target on a Docker/OCI registry: every child manifest of an index
//! and every blob (config and layers) of every manifest is still there (garbage collection,
//! ECR lifecycle rules and GHCR retention delete untagged ones), and what changes between the
//! current and the target image configs.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use serde_json::Value;

use super::backend::TagStore;
use super::{Digest, Manifest};
use crate::registry::Verified;

/// Items looked at, at most (a hostile index cannot make bagboy walk forever).
const MAX_ITEMS: usize = 10_000;

/// `(digest, media type, where)` of every blob the image manifests name.
fn blobs_of(m: &Manifest) -> Vec<(String, String)> {
    let Ok(doc) = serde_json::from_slice::<Value>(&m.bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut take = |d: &Value| {
        if let (Some(digest), media) = (d["digest"].as_str(), d["mediaType"].as_str()) {
            out.push((digest.to_string(), media.unwrap_or("?").to_string()));
        }
    };
    take(&doc["config"]);
    for l in doc["layers"].as_array().into_iter().flatten() {
        take(l);
    }
    out
}

fn platform(d: &Value) -> String {
    let p = &d["platform"];
    match (p["os"].as_str(), p["architecture"].as_str()) {
        (Some(os), Some(arch)) => match p["variant"].as_str() {
            Some(v) => format!("{os}/{arch}/{v}"),
            None => format!("{os}/{arch}"),
        },
        _ => "unknown platform".into(),
    }
}

/// Walk the target: fetch each child manifest, HEAD each blob (8 at a time).
pub(super) async fn dependencies(
    store: &TagStore,
    registry: &str,
    root: &Manifest,
    v: &mut Verified,
) -> Result<(), super::backend::TagError> {
    let mut images = Vec::new();
    let mut queue = vec![(root.clone(), "the target".to_string())];
    let mut seen = 0usize;
    while let Some((m, what)) = queue.pop() {
        seen += 1;
        if seen > MAX_ITEMS {
            v.missing.push(format!(
                "{registry}: {} names more than {MAX_ITEMS} manifests; not checked further",
                root.digest
            ));
            break;
        }
        if !m.is_index() {
            images.push((m, what));
            continue;
        }
        let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
        let children: Vec<(Digest, String, String)> = doc["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    Digest::parse(d["digest"].as_str()?).ok()?,
                    d["mediaType"].as_str().unwrap_or("?").to_string(),
                    platform(d),
                ))
            })
            .take(MAX_ITEMS)
            .collect();
        for chunk in children.chunks(8) {
            let got = join_all(chunk.iter().map(|(d, _, _)| store.fetch_opt(d))).await;
            for ((d, media, plat), r) in chunk.iter().zip(got) {
                v.requests += 2;
                match r? {
                    Some(child) => queue.push((child, format!("{plat} manifest {d}"))),
                    None => v.missing.push(format!(
                        "{registry}: manifest {d} ({media}) for {plat} of index {} is missing",
                        m.digest
                    )),
                }
            }
        }
    }
    let mut blobs: Vec<(Digest, String, String)> = Vec::new();
    let mut unique = BTreeSet::new();
    for (m, what) in &images {
        for (d, media) in blobs_of(m) {
            if let Ok(d) = Digest::parse(&d) {
                if unique.insert(d.as_str().to_string()) {
                    blobs.push((d, media, what.clone()));
                }
            }
        }
    }
    for chunk in blobs.chunks(8) {
        let got = join_all(chunk.iter().map(|(d, _, _)| store.blob_exists(d))).await;
        for ((d, media, what), r) in chunk.iter().zip(got) {
            v.requests += 1;
            if !r? {
                v.missing.push(format!(
                    "{registry}: blob {d} ({media}) of {what} is missing (garbage-collected?)"
                ));
            }
        }
    }
    v.summary = format!(
        "{} manifest{} and {} blob{} checked",
        images.len(),
        if images.len() == 1 { "" } else { "s" },
        blobs.len(),
        if blobs.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// The image config a manifest (or an index's linux/amd64, else first, child) points at.
pub(super) async fn config_of(
    store: &TagStore,
    m: &Manifest,
    v: &mut Verified,
) -> Result<Option<Value>, super::backend::TagError> {
    let mut m = m.clone();
    for _ in 0..3 {
        if !m.is_index() {
            break;
        }
        let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
        let list = doc["manifests"].as_array().cloned().unwrap_or_default();
        let pick = list
            .iter()
            .find(|d| platform(d) == "linux/amd64")
            .or(list.first());
        let Some(d) = pick.and_then(|d| Digest::parse(d["digest"].as_str()?).ok()) else {
            return Ok(None);
        };
        v.requests += 2;
        match store.fetch_opt(&d).await? {
            Some(child) => m = child,
            None => return Ok(None),
        }
    }
    let doc: Value = serde_json::from_slice(&m.bytes).unwrap_or_default();
    let Some(d) = doc["config"]["digest"]
        .as_str()
        .and_then(|d| Digest::parse(d).ok())
    else {
        return Ok(None);
    };
    v.requests += 1;
    Ok(store
        .small_blob(&d)
        .await?
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok()))
}

/// What a user of the image would notice: exposed ports, entrypoint/cmd, env names, user.
pub(super) fn config_differences(current: &Value, target: &Value) -> Vec<String> {
    let c = &current["config"];
    let t = &target["config"];
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let env_names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e.as_str()?.split('=').next().map(str::to_string))
            .collect();
        n.sort();
        n
    };
    let shown = |v: &Value| -> String {
        match v {
            Value::Null => "(none)".into(),
            Value::String(s) if s.is_empty() => "(default)".into(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    };
    let mut out = Vec::new();
    let (cp, tp) = (keys(&c["ExposedPorts"]), keys(&t["ExposedPorts"]));
    if cp != tp {
        out.push(format!(
            "exposed ports {} → {}",
            if cp.is_empty() {
                "(none)".into()
            } else {
                cp.join(", ")
            },
            if tp.is_empty() {
                "(none)".into()
            } else {
                tp.join(", ")
            }
        ));
    }
    for k in ["Entrypoint", "Cmd", "User", "WorkingDir"] {
        if c[k] != t[k] {
            out.push(format!(
                "{} {} → {}",
                k.to_ascii_lowercase(),
                shown(&c[k]),
                shown(&t[k])
            ));
        }
    }
    let (ce, te) = (env_names(&c["Env"]), env_names(&t["Env"]));
    let gone: Vec<&String> = ce.iter().filter(|n| !te.contains(n)).collect();
    let new: Vec<&String> = te.iter().filter(|n| !ce.contains(n)).collect();
    if !gone.is_empty() || !new.is_empty() {
        out.push(format!(
            "environment variables{}{}",
            if new.is_empty() {
                String::new()
            } else {
                format!(
                    " only the target sets: {}",
                    new.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            if gone.is_empty() {
                String::new()
            } else {
                format!(
                    "{} the target no longer sets: {}",
                    if new.is_empty() { "" } else { ";" },
                    gone.iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
    }
    out
}
