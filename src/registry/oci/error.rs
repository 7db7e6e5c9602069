//! `OciError`: every failure of the OCI client and layout store, with the request that caused it.

use std::fmt;
use std::path::PathBuf;

use super::Digest;

/// Where a failing request went. URLs are stored with credentials already masked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub registry: String,
    pub repository: Option<String>,
    pub reference: Option<String>,
    pub method: String,
    pub url: String,
}

impl fmt::Display for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry {}", self.registry)?;
        if let Some(repo) = &self.repository {
            write!(f, ", repository {repo}")?;
        }
        if let Some(reference) = &self.reference {
            write!(f, ", reference {reference}")?;
        }
        write!(f, " ({} {})", self.method, self.url)
    }
}

/// Renders an optional HTTP status and body excerpt as `: 404 Not Found: MANIFEST_UNKNOWN: ...`.
fn status_and_detail(status: &Option<u16>, detail: &str) -> String {
    let mut out = String::new();
    if let Some(code) = status {
        let reason = reqwest::StatusCode::from_u16(*code)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("");
        out.push_str(&format!(": HTTP {code} {reason}"));
    }
    if !detail.is_empty() {
        out.push_str(": ");
        out.push_str(detail);
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    #[error("invalid image repository `{input}`: {reason}")]
    InvalidReference { input: String, reason: String },

    #[error("invalid digest `{input}`: expected sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")]
    InvalidDigest { input: String },

    #[error(
        "authentication failed for {ctx}{}; {hint}",
        status_and_detail(status, detail)
    )]
    AuthenticationFailed {
        ctx: Box<RequestContext>,
        status: Option<u16>,
        detail: String,
        /// Where the credentials came from and where they could come from.
        hint: String,
    },

    #[error("access denied by {ctx}{}", status_and_detail(status, detail))]
    Denied {
        ctx: Box<RequestContext>,
        status: Option<u16>,
        detail: String,
    },

    #[error(
        "tag is immutable: {ctx} refused to move it{}; the repository makes tags immutable (ECR `imageTagMutability: IMMUTABLE`, a Harbor immutability rule, Artifact Registry or Docker Hub immutable tags): allow moving this tag for the rollback, or roll back through another tag",
        status_and_detail(status, detail)
    )]
    ImmutableTag {
        ctx: Box<RequestContext>,
        status: Option<u16>,
        detail: String,
    },

    #[error("not found: {ctx}{}", status_and_detail(status, detail))]
    NotFound {
        ctx: Box<RequestContext>,
        status: Option<u16>,
        detail: String,
    },

    #[error("digest mismatch for {ctx}: expected {expected} ({expected_from}), content hashes to {actual}")]
    DigestMismatch {
        ctx: Box<RequestContext>,
        expected: Digest,
        /// What the expectation came from: the requested digest, `Docker-Content-Digest`, a layout index.
        expected_from: &'static str,
        actual: Digest,
    },

    #[error("{ctx}: the registry answered plain HTTP to an HTTPS request; if {registry} is meant to be spoken to without TLS, set `insecure: true` on it in bagboy.yaml (skopeo's --tls-verify=false)")]
    PlainHttp {
        ctx: Box<RequestContext>,
        registry: String,
    },

    #[error("cannot reach {ctx}: {kind}")]
    Transport {
        ctx: Box<RequestContext>,
        kind: &'static str,
        #[source]
        source: reqwest::Error,
    },

    #[error("unexpected response from {ctx}{}", status_and_detail(status, detail))]
    BadResponse {
        ctx: Box<RequestContext>,
        status: Option<u16>,
        detail: String,
    },

    #[error(
        "credential helper `docker-credential-{helper}` failed for registry {registry}: {detail}"
    )]
    CredentialHelper {
        helper: String,
        registry: String,
        detail: String,
        #[source]
        source: Option<std::io::Error>,
    },

    #[error("cannot read Docker config {}: {detail}", path.display())]
    DockerConfig { path: PathBuf, detail: String },

    #[error("OCI layout {}: {detail}", path.display())]
    Layout {
        path: PathBuf,
        detail: String,
        #[source]
        source: Option<std::io::Error>,
    },

    #[error("OCI layout {}: digest mismatch for blob {expected}: content hashes to {actual}", path.display())]
    LayoutDigestMismatch {
        path: PathBuf,
        expected: Digest,
        actual: Digest,
    },
}

impl OciError {
    /// The HTTP status, when the registry answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            OciError::AuthenticationFailed { status, .. }
            | OciError::Denied { status, .. }
            | OciError::NotFound { status, .. }
            | OciError::BadResponse { status, .. } => *status,
            _ => None,
        }
    }

    /// The request that failed, for errors that came from the network.
    pub fn context(&self) -> Option<&RequestContext> {
        match self {
            OciError::AuthenticationFailed { ctx, .. }
            | OciError::Denied { ctx, .. }
            | OciError::NotFound { ctx, .. }
            | OciError::DigestMismatch { ctx, .. }
            | OciError::Transport { ctx, .. }
            | OciError::PlainHttp { ctx, .. }
            | OciError::BadResponse { ctx, .. } => Some(ctx),
            _ => None,
        }
    }
}

/// The registry's error codes, from `{"errors":[{"code","message","detail"}]}`.
pub(crate) fn registry_error_codes(body: &[u8]) -> Vec<String> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("errors")?.as_array().map(|errs| {
                errs.iter()
                    .filter_map(|e| e.get("code")?.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// A short, printable excerpt of a response body; registry error JSON is rendered as `CODE: message`.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(errors) = value.get("errors").and_then(|e| e.as_array()) {
            let rendered: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("UNKNOWN");
                    let message = e.get("message").and_then(|m| m.as_str()).unwrap_or("");
                    if message.is_empty() {
                        code.to_string()
                    } else {
                        format!("{code}: {message}")
                    }
                })
                .collect();
            if !rendered.is_empty() {
                return truncate(&rendered.join("; "), MAX);
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let cleaned: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .collect();
    truncate(&cleaned, MAX)
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registry_errors() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"v9"}}]}"#;
        assert_eq!(body_excerpt(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(registry_error_codes(body), vec!["MANIFEST_UNKNOWN"]);
        assert_eq!(
            body_excerpt(b"<html>\n  oops\n</html>"),
            "<html> oops </html>"
        );
        assert!(body_excerpt(&[b'x'; 1000]).chars().count() <= 301);
    }
}
