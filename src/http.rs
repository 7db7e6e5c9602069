//! The one HTTP layer: a client built once per process and shared, the retry policy, URLs shown
//! without credentials, and bounded body reads. Every backend that speaks HTTP goes through it.

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, Url};

/// The user agent every request carries.
pub const USER_AGENT: &str = concat!("bagboy/", env!("CARGO_PKG_VERSION"));

/// Connect timeout of the shared client (the whole-request timeout is set per request).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
static CLIENTS_BUILT: AtomicU64 = AtomicU64::new(0);
static REQUESTS_SENT: AtomicU64 = AtomicU64::new(0);

/// The process's HTTP client: TLS roots are loaded and connections pooled once for every
/// registry, however many `bagboy.yaml` names.
pub fn client() -> Result<reqwest::Client, reqwest::Error> {
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let built = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(CONNECT_TIMEOUT)
        // Below Node's 5 s keep-alive (npm registries such as Verdaccio): a pooled connection
        // is dropped before the server closes it under a request.
        .pool_idle_timeout(Duration::from_secs(4))
        // Redirects only within the origin asked: a credential (an Authorization header, an
        // identity token in a form body) never follows a redirect to another host.
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let first = attempt.previous().first().map(|u| u.origin());
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if first.as_ref() == Some(&attempt.url().origin()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()?;
    // Two threads may build at once; only the one kept counts.
    Ok(CLIENT
        .get_or_init(|| {
            CLIENTS_BUILT.fetch_add(1, Ordering::Relaxed);
            built
        })
        .clone())
}

/// Send a request through the shared client: the one place a request leaves bagboy, and the
/// one retry loop. `build` makes the request again for each attempt. Transient failures are
/// retried per `policy`: for idempotent methods (GET, HEAD, PUT, DELETE, ...) connect errors,
/// timeouts, 429 (honouring a capped `Retry-After`) and 502-504; for the others (POST, PATCH)
/// only a connect error, when the request cannot have reached the server, so a webhook or an
/// upload is never sent twice.
pub async fn send(
    policy: &RetryPolicy,
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> Result<Response, reqwest::Error> {
    send_within(policy, crate::git::timeout(), build).await
}

/// [`send`], retrying only while the whole exchange stays within `budget` (the run's "no
/// progress" limit, `BAGBOY_TIMEOUT_SECS`, 60 s by default): a server that never answers costs
/// one budget, not a timeout per attempt.
async fn send_within(
    policy: &RetryPolicy,
    budget: std::time::Duration,
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
) -> Result<Response, reqwest::Error> {
    let client = client()?;
    let started = std::time::Instant::now();
    let mut attempt: u32 = 0;
    loop {
        let request = build(&client).build()?;
        let idempotent = request.method().is_idempotent();
        let (method, shown) = (request.method().clone(), safe_url(request.url()));
        note_request();
        let result = client.execute(request).await;
        let retry = match &result {
            Err(e) if !idempotent && !e.is_connect() => None,
            Ok(_) if !idempotent => None,
            _ => policy.retry_delay(attempt, &result),
        };
        let retry = retry.filter(|(delay, _)| started.elapsed() + *delay < budget);
        match retry {
            Some((delay, reason)) => {
                tracing::warn!(
                    %method, url = %shown, %reason,
                    attempt = attempt + 1, of = policy.retries,
                    delay_ms = delay.as_millis() as u64,
                    "transient failure; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            None => return result,
        }
    }
}

/// Count a request about to be sent (for `stats`).
pub fn note_request() {
    REQUESTS_SENT.fetch_add(1, Ordering::Relaxed);
}

/// `(clients built, requests sent)` so far in this process; logged at the end of a run.
pub fn stats() -> (u64, u64) {
    (
        CLIENTS_BUILT.load(Ordering::Relaxed),
        REQUESTS_SENT.load(Ordering::Relaxed),
    )
}

/// `127.0.0.0/8`, `::1` or `localhost` (brackets around IPv6 accepted).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether a server on a loopback address answers plain HTTP where HTTPS was meant: what
/// Docker does for `127.0.0.0/8` (insecure by default) without trying TLS first. One short
/// request (`GET /v2/`) on a fresh connection, bounded to a second; `false` on any doubt.
pub fn loopback_speaks_plain_http(host_port: &str) -> bool {
    // Asked once per host and port in a process (50 repositories on one registry: one probe).
    static SEEN: OnceLock<std::sync::Mutex<std::collections::HashMap<String, bool>>> =
        OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(known) = seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(host_port)
    {
        return *known;
    }
    let answer = probe_plain_http(host_port);
    seen.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(host_port.to_string(), answer);
    answer
}

fn probe_plain_http(host_port: &str) -> bool {
    use std::io::{Read as _, Write as _};
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse::<u16>() {
            Ok(port) => (h, port),
            Err(_) => (host_port, 443),
        },
        _ => (host_port, 443),
    };
    if !is_loopback_host(host) {
        return false;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = if bare.eq_ignore_ascii_case("localhost") {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        match bare.parse() {
            Ok(ip) => ip,
            Err(_) => return false,
        }
    };
    let limit = Duration::from_secs(1);
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&(ip, port).into(), limit) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(limit));
    let _ = s.set_write_timeout(Some(limit));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 5];
    s.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Whether a transport error is TLS meeting a server that speaks plain HTTP.
pub fn is_plain_http_answer(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("InvalidContentType")
            || text.contains("corrupt message")
            || text.contains("wrong version number")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// Whether a credential may travel to `url`: over HTTPS, or over plain HTTP only to a
/// loopback address. Every backend that sends one asks this.
pub fn safe_for_credentials(url: &Url) -> bool {
    url.scheme() == "https" || url.host_str().is_some_and(is_loopback_host)
}

/// A URL for messages and logs: userinfo masked.
pub fn safe_url(url: &Url) -> String {
    let mut url = url.clone();
    if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

/// When and how often to retry: only transient failures (connect errors, timeouts, 429,
/// 502–504), with exponential backoff and jitter, capped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after a transient failure.
    pub retries: u32,
    /// First backoff delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Upper bound for a server's `Retry-After` and for backoff delays.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 3,
            backoff_base: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries (a request whose caller retries at its own level, or must not repeat).
    pub const NONE: RetryPolicy = RetryPolicy {
        retries: 0,
        backoff_base: Duration::from_millis(250),
        max_delay: Duration::from_secs(30),
    };

    /// The default, with `BAGBOY_HTTP_RETRIES` (0-10) when it parses.
    pub fn from_env() -> RetryPolicy {
        let mut p = RetryPolicy::default();
        if let Some(n) = std::env::var("BAGBOY_HTTP_RETRIES")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
        {
            p.retries = n.min(10);
        }
        p
    }

    /// The delay before retry number `attempt + 1`: base · 2^attempt, jittered to 50–100 %.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .backoff_base
            .saturating_mul(2u32.saturating_pow(attempt.min(16)));
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(attempt);
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let fraction = 0.5 + (hasher.finish() % 1000) as f64 / 2000.0;
        exp.mul_f64(fraction).min(self.max_delay)
    }

    /// Whether the outcome of one attempt is worth another, and after how long.
    pub fn retry_delay(
        &self,
        attempt: u32,
        result: &Result<Response, reqwest::Error>,
    ) -> Option<(Duration, String)> {
        if attempt >= self.retries {
            return None;
        }
        let (delay, reason) = match result {
            Ok(resp) => match resp.status().as_u16() {
                429 => (
                    retry_after(resp.headers()).unwrap_or_else(|| self.backoff(attempt)),
                    format!("HTTP {}", resp.status()),
                ),
                502..=504 => (self.backoff(attempt), format!("HTTP {}", resp.status())),
                _ => return None,
            },
            Err(e) if e.is_connect() || e.is_timeout() || e.is_request() => {
                (self.backoff(attempt), transport_kind(e).to_string())
            }
            Err(_) => return None,
        };
        Some((delay.min(self.max_delay), reason))
    }
}

/// A server's `Retry-After` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// A short, stable name for what went wrong on the wire (used to classify failures).
pub fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "reading the response failed"
    } else {
        "request failed"
    }
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// The server sent more than the caller allows.
    TooLarge {
        limit: usize,
    },
    Transport(reqwest::Error),
}

/// Read a response body, refusing one larger than `limit` bytes (a hostile or broken server
/// cannot make bagboy buffer without bound).
pub async fn read_limited(mut resp: Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if out.len() + chunk.len() > limit {
                    return Err(BodyError::TooLarge { limit });
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(BodyError::Transport(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_userinfo() {
        let url = Url::parse("https://user:pass@example.com/v2/").unwrap();
        assert_eq!(safe_url(&url), "https://***:***@example.com/v2/");
    }

    #[test]
    fn retries_stop_at_the_no_progress_budget() {
        // A server that accepts and never answers: each attempt times out after 300 ms; with
        // ten retries allowed, the 1 s budget stops them after about three attempts.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = attempts.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in listener.incoming().flatten() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(s);
            }
        });
        let policy = RetryPolicy {
            retries: 10,
            backoff_base: Duration::from_millis(10),
            max_delay: Duration::from_millis(20),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(send_within(&policy, Duration::from_secs(1), |c| {
            c.get(format!("http://{addr}/"))
                .timeout(Duration::from_millis(300))
        }));
        assert!(got.is_err());
        // Eleven attempts without the budget; at most four fit in it.
        let n = attempts.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=4).contains(&n), "{n} attempts");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            retries: 3,
        };
        let first = p.backoff(0);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        assert!(p.backoff(20) <= Duration::from_secs(1));
    }

    #[test]
    fn tls_meeting_plain_http_is_recognised_and_loopback_is_probed() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in listener.incoming().flatten().take(2) {
                let mut s = s;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            }
        });
        assert!(loopback_speaks_plain_http(&format!("127.0.0.1:{port}")));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(
                client()
                    .unwrap()
                    .get(format!("https://127.0.0.1:{port}/v2/"))
                    .send(),
            )
            .unwrap_err();
        assert!(is_plain_http_answer(&err), "{err:?}");
        assert!(!loopback_speaks_plain_http("example.com:443"));
    }

    #[test]
    fn one_client_per_process() {
        let a = client().unwrap();
        let b = client().unwrap();
        drop((a, b));
        assert_eq!(stats().0, 1);
    }
}
