//! The GitHub API, through octocrab: one client per process for the PR comment and the
//! `github-release` backend, errors said plainly (status, GitHub's message, what to do), the
//! rate limit's reset time, and the token kept out of every message.
//!
//! The API URL comes from `GITHUB_API_URL` (default `https://api.github.com`), the token from
//! `GITHUB_TOKEN`: both are the runner's environment, never the checkout. The token only goes
//! to that URL, and over plain HTTP only to a loopback address.

pub mod comment;

use std::sync::OnceLock;
use std::time::Duration;

use octocrab::Octocrab;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Every call is bounded: connect, read and write each time out, and the whole call too.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What a GitHub call was for, so that an error can say which permission is missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Reading or writing pull-request comments (`pull-requests: write`).
    Comment,
    /// Reading releases (`contents: read`).
    ReadReleases,
    /// Changing releases (`contents: write`).
    WriteReleases,
}

impl Purpose {
    fn permission(self) -> &'static str {
        match self {
            Purpose::Comment => "`permissions: pull-requests: write`",
            Purpose::ReadReleases => "`permissions: contents: read`",
            Purpose::WriteReleases => "`permissions: contents: write`",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// Missing or malformed environment (token, repository, API URL, event file).
    #[error("{0}")]
    Setup(String),
    /// GitHub answered with an error status.
    #[error("GitHub API: {what} answered HTTP {status}: {message}{hint}")]
    Status {
        what: String,
        status: u16,
        message: String,
        hint: String,
    },
    /// The request did not get an answer (connect, timeout, TLS) or the answer was unreadable.
    #[error("GitHub API: {what} failed: {message}")]
    Transport { what: String, message: String },
}

impl GithubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether a failed write may still have landed (no answer, or a server error).
    pub fn may_have_landed(&self) -> bool {
        match self {
            GithubError::Setup(_) => false,
            GithubError::Status { status, .. } => *status >= 500,
            GithubError::Transport { .. } => true,
        }
    }

    pub fn is_input(&self) -> bool {
        match self {
            GithubError::Setup(_) => true,
            GithubError::Status { status, .. } => matches!(status, 401 | 403 | 404 | 422),
            GithubError::Transport { .. } => false,
        }
    }
}

/// `GITHUB_TOKEN`, when set and not empty.
pub fn token() -> Option<SecretString> {
    std::env::var("GITHUB_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .map(SecretString::from)
}

/// `GITHUB_API_URL` (default `https://api.github.com`), checked: HTTPS, or plain HTTP to a
/// loopback address only (a token never crosses a network in the clear).
pub fn api_url() -> Result<Url, GithubError> {
    let raw = std::env::var("GITHUB_API_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    let url = Url::parse(raw.trim())
        .map_err(|e| GithubError::Setup(format!("GITHUB_API_URL is not a URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GithubError::Setup(
            "GITHUB_API_URL must not carry credentials; the token comes from GITHUB_TOKEN".into(),
        ));
    }
    if !matches!(url.scheme(), "https" | "http") || !crate::http::safe_for_credentials(&url) {
        return Err(GithubError::Setup(format!(
            "GITHUB_API_URL {} is not HTTPS: the token is only sent over HTTPS (or plain HTTP to a loopback address)",
            crate::http::safe_url(&url)
        )));
    }
    Ok(url)
}

/// `owner/repo`, checked.
pub fn parse_repo(s: &str) -> Option<(String, String)> {
    let (owner, repo) = s.trim().split_once('/')?;
    let ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 100
            && p != "."
            && p != ".."
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    (ok(owner) && ok(repo)).then(|| (owner.to_string(), repo.to_string()))
}

/// A GitHub client for one repository.
#[derive(Clone)]
pub struct Api {
    octo: Octocrab,
    token: Option<SecretString>,
    pub owner: String,
    pub repo: String,
    host: String,
}

static CLIENT: OnceLock<Result<(Octocrab, Url), String>> = OnceLock::new();

impl Api {
    /// The process's client (built on first use, inside the runtime) for `owner/repo`.
    pub fn new(repository: &str) -> Result<Api, GithubError> {
        let (owner, repo) = parse_repo(repository).ok_or_else(|| {
            GithubError::Setup(format!(
                "`{}` is not a GitHub repository (owner/repo)",
                repository.escape_debug()
            ))
        })?;
        let token = token();
        let built = CLIENT.get_or_init(|| {
            let url = api_url().map_err(|e| e.to_string())?;
            let mut b = Octocrab::builder()
                .base_uri(url.as_str())
                .map_err(|_| "GITHUB_API_URL is not a usable URL".to_string())?
                .set_connect_timeout(Some(crate::http::CONNECT_TIMEOUT))
                .set_read_timeout(Some(IO_TIMEOUT))
                .set_write_timeout(Some(IO_TIMEOUT));
            if let Some(t) = &token {
                b = b.personal_token(t.expose_secret().to_string());
            }
            let octo = b
                .build()
                .map_err(|_| "the GitHub client could not be built".to_string())?;
            Ok((octo, url))
        });
        let (octo, url) = built.clone().map_err(GithubError::Setup)?;
        Ok(Api {
            octo,
            token,
            owner,
            repo,
            host: url.host_str().unwrap_or_default().to_string(),
        })
    }

    pub fn octocrab(&self) -> &Octocrab {
        &self.octo
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }

    /// Run one call with the overall timeout, mapping its error.
    pub async fn call<T>(
        &self,
        what: &str,
        purpose: Purpose,
        fut: impl std::future::Future<Output = octocrab::Result<T>>,
    ) -> Result<T, GithubError> {
        crate::http::note_request();
        match tokio::time::timeout(CALL_TIMEOUT, fut).await {
            Err(_) => Err(GithubError::Transport {
                what: what.to_string(),
                message: format!(
                    "no answer from {} within {}s",
                    self.host,
                    CALL_TIMEOUT.as_secs()
                ),
            }),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.describe(what, purpose, e).await),
        }
    }

    async fn describe(&self, what: &str, purpose: Purpose, e: octocrab::Error) -> GithubError {
        match e {
            octocrab::Error::GitHub { source, .. } => {
                let status = source.status_code.as_u16();
                let mut message = self.scrub(&source.message);
                if let Some(errors) = source.errors.as_ref().filter(|e| !e.is_empty()) {
                    let details: Vec<String> =
                        errors.iter().map(|v| self.scrub(&compact(v))).collect();
                    message.push_str(&format!(" ({})", details.join("; ")));
                }
                let rate_limited = matches!(status, 403 | 429)
                    && source.message.to_ascii_lowercase().contains("rate limit");
                let hint = if rate_limited {
                    self.rate_limit_hint().await
                } else {
                    match status {
                        401 if self.token.is_none() => " (GITHUB_TOKEN is not set)".to_string(),
                        401 => " (GITHUB_TOKEN was refused: expired, revoked or not a token)"
                            .to_string(),
                        403 => format!(
                            " (the token may not do this: the job needs {})",
                            purpose.permission()
                        ),
                        404 => format!(
                            " (no such repository or item, or the token cannot see {}/{})",
                            self.owner, self.repo
                        ),
                        _ => String::new(),
                    }
                };
                GithubError::Status {
                    what: what.to_string(),
                    status,
                    message,
                    hint,
                }
            }
            other => GithubError::Transport {
                what: what.to_string(),
                message: self.scrub(&transport_message(&other, &self.host)),
            },
        }
    }

    /// ": rate limited until <time> (in N min)" from `/rate_limit` (which costs no quota).
    async fn rate_limit_hint(&self) -> String {
        let got = tokio::time::timeout(IO_TIMEOUT, self.octo.ratelimit().get()).await;
        let reset = match got {
            Ok(Ok(r)) => Some(r.resources.core.reset),
            _ => None,
        };
        match reset.and_then(|r| time::OffsetDateTime::from_unix_timestamp(r as i64).ok()) {
            Some(at) => {
                let now = time::OffsetDateTime::now_utc();
                let mins = ((at - now).whole_seconds().max(0) + 59) / 60;
                let when = at
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default();
                format!(" (rate limited: the limit resets at {when}, in {mins} min; re-run then)")
            }
            None => " (rate limited; re-run later)".to_string(),
        }
    }

    /// A server-provided text, with the token (should a server echo it) and control
    /// characters removed.
    fn scrub(&self, s: &str) -> String {
        let mut s = s.to_string();
        if let Some(t) = &self.token {
            let t = t.expose_secret();
            if t.len() >= 4 {
                s = s.replace(t, "***");
            }
        }
        let s: String = s
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(500)
            .collect();
        s
    }
}

fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(o) => {
            let field = o.get("field").and_then(|f| f.as_str());
            let code = o.get("code").and_then(|f| f.as_str());
            let msg = o.get("message").and_then(|f| f.as_str());
            [field, code, msg]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What went wrong below HTTP, said without octocrab's backtraces.
fn transport_message(e: &octocrab::Error, host: &str) -> String {
    let mut chain = Vec::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push(s.to_string());
        src = s.source();
    }
    let all = chain.join(": ").to_ascii_lowercase();
    let kind = if all.contains("timed out") || all.contains("timeout") {
        "timed out"
    } else if all.contains("connect") || all.contains("refused") || all.contains("dns") {
        "could not connect"
    } else if matches!(
        e,
        octocrab::Error::Serde { .. } | octocrab::Error::Json { .. }
    ) {
        "the answer is not the JSON GitHub sends"
    } else {
        "no usable answer"
    };
    format!("{kind} ({host})")
}

/// The number of a pull request: a number, or `auto` (from `GITHUB_EVENT_PATH`).
pub fn pull_request_number(arg: &str) -> Result<u64, GithubError> {
    if arg != "auto" {
        return arg.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            GithubError::Setup(format!(
                "--comment-pr takes a pull request number or `auto`, not `{}`",
                arg.escape_debug()
            ))
        });
    }
    let path = std::env::var_os("GITHUB_EVENT_PATH").ok_or_else(|| {
        GithubError::Setup(
            "--comment-pr auto reads the pull request from GITHUB_EVENT_PATH, which is not set (outside GitHub Actions, pass the number)".into(),
        )
    })?;
    let path = std::path::PathBuf::from(path);
    let bytes = crate::files::read_regular(&path, 64 << 20)
        .map_err(|e| GithubError::Setup(format!("GITHUB_EVENT_PATH {}: {e}", path.display())))?;
    let event: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
        GithubError::Setup(format!("GITHUB_EVENT_PATH {} is not JSON", path.display()))
    })?;
    let number = event["pull_request"]["number"]
        .as_u64()
        .or_else(|| {
            // `issue_comment` on a pull request.
            event["issue"]["pull_request"]
                .is_object()
                .then(|| event["issue"]["number"].as_u64())
                .flatten()
        })
        .filter(|n| *n > 0);
    number.ok_or_else(|| {
        GithubError::Setup(
            "--comment-pr auto: this workflow run is not for a pull request (the event has no pull_request number); run it on `pull_request` or pass the number".into(),
        )
    })
}

/// `GITHUB_REPOSITORY`, required for the PR comment.
pub fn repository_from_env() -> Result<String, GithubError> {
    std::env::var("GITHUB_REPOSITORY")
        .ok()
        .filter(|r| parse_repo(r).is_some())
        .ok_or_else(|| {
            GithubError::Setup(
                "GITHUB_REPOSITORY (owner/repo) is not set or not a repository; GitHub Actions sets it".into(),
            )
        })
}
