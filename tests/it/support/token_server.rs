//! `TokenServer`: a tiny Docker token-auth server issuing RS256 JWTs signed with the `openssl` CLI.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;

/// A user of the token server and the repository actions it may be granted.
#[derive(Clone, Debug)]
pub struct TokenUser {
    pub name: String,
    pub password: String,
    pub actions: Vec<String>,
    /// Accepted as `grant_type=refresh_token` (an identity token).
    pub refresh_token: Option<String>,
}

impl TokenUser {
    pub fn new(name: &str, password: &str, actions: &[&str]) -> TokenUser {
        TokenUser {
            name: name.into(),
            password: password.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
            refresh_token: None,
        }
    }

    pub fn with_refresh_token(mut self, token: &str) -> TokenUser {
        self.refresh_token = Some(token.into());
        self
    }

    /// `alice` (pull, push, refresh token `alice-refresh`) and `reader` (pull only).
    pub fn defaults() -> Vec<TokenUser> {
        vec![
            TokenUser::new("alice", "alice-password", &["pull", "push"])
                .with_refresh_token("alice-refresh"),
            TokenUser::new("reader", "reader-password", &["pull"]),
        ]
    }
}

/// One request to the token endpoint.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub method: String,
    pub user: Option<String>,
    pub grant_type: Option<String>,
    pub service: Option<String>,
    pub scopes: Vec<String>,
    pub status: u16,
    pub user_agent: String,
}

struct Shared {
    users: Vec<TokenUser>,
    service: String,
    issuer: String,
    key: PathBuf,
    cert_der_b64: String,
    log: Mutex<Vec<TokenRequest>>,
    /// Every token handed out, so tests can check none leaks into output.
    issued: Mutex<Vec<String>>,
}

pub struct TokenServer {
    port: u16,
    cert: PathBuf,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(dir: &Path, users: Vec<TokenUser>, service: &str, issuer: &str) -> TokenServer {
        let key = dir.join("token.key");
        let cert = dir.join("token.crt");
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=bagboy-test-token-issuer",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .expect("run openssl x509");
        assert!(der.status.success(), "openssl x509 failed");
        let shared = Arc::new(Shared {
            users,
            service: service.into(),
            issuer: issuer.into(),
            key,
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(&der.stdout),
            log: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let port = listener.local_addr().expect("token server addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let _ = handle(&shared, stream);
                    }
                }
            })
        };
        TokenServer {
            port,
            cert,
            shared,
            stop,
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.shared
            .log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Every token issued so far (to anyone), oldest first.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared
            .issued
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Token requests made by bagboy's client.
    pub fn bagboy_requests(&self) -> Vec<TokenRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.user_agent.starts_with("bagboy/"))
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn handle(shared: &Shared, stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let url = reqwest::Url::parse(&format!("http://token{target}")).ok();
    let mut params: Vec<(String, String)> = url
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    if method == "POST" {
        if let Ok(u) =
            reqwest::Url::parse(&format!("http://token/?{}", String::from_utf8_lossy(&body)))
        {
            params.extend(u.query_pairs().into_owned());
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let grant_type = param("grant_type");
    let user = if grant_type.as_deref() == Some("refresh_token") {
        let token = param("refresh_token");
        shared
            .users
            .iter()
            .find(|u| u.refresh_token.is_some() && u.refresh_token == token)
    } else {
        headers
            .get("authorization")
            .and_then(|h| basic_user(shared, h))
    };
    let has_credentials = headers.contains_key("authorization") || grant_type.is_some();
    let (status, body) = if has_credentials && user.is_none() {
        (401, r#"{"details":"invalid credentials"}"#.to_string())
    } else {
        match issue(shared, user, &scopes) {
            Ok(token) => {
                if let Ok(mut issued) = shared.issued.lock() {
                    issued.push(token.clone());
                }
                (
                    200,
                    format!(r#"{{"token":"{token}","access_token":"{token}","expires_in":300}}"#),
                )
            }
            Err(e) => (500, format!(r#"{{"details":"{e}"}}"#)),
        }
    };
    if let Ok(mut log) = shared.log.lock() {
        log.push(TokenRequest {
            method,
            user: user.map(|u| u.name.clone()),
            grant_type,
            service: param("service"),
            scopes,
            status,
            user_agent: headers.get("user-agent").cloned().unwrap_or_default(),
        });
    }
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn basic_user<'a>(shared: &'a Shared, header: &str) -> Option<&'a TokenUser> {
    let encoded = header.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    )
    .ok()?;
    let (name, password) = decoded.split_once(':')?;
    shared
        .users
        .iter()
        .find(|u| u.name == name && u.password == password)
}

/// A JWT granting the intersection of the requested and the user's allowed actions.
fn issue(shared: &Shared, user: Option<&TokenUser>, scopes: &[String]) -> Result<String, String> {
    let mut access = Vec::new();
    for scope in scopes {
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let granted: Vec<&str> = actions
            .split(',')
            .filter(|a| user.is_some_and(|u| u.actions.iter().any(|allowed| allowed == a)))
            .collect();
        access.push(serde_json::json!({"type": kind, "name": name, "actions": granted}));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [shared.cert_der_b64]});
    let claims = serde_json::json!({
        "iss": shared.issuer,
        "sub": user.map(|u| u.name.as_str()).unwrap_or(""),
        "aud": shared.service,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": super::random_hex(),
        "access": access,
    });
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let signing_input = format!("{}.{}", b64(&header), b64(&claims));
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(&shared.key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("openssl: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(signing_input.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err("openssl dgst failed".into());
    }
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(out.stdout);
    Ok(format!("{signing_input}.{signature}"))
}
