//! `TestRegistry`: a real `docker-registry` per test on an ephemeral port, with its access log.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::token_server::{TokenServer, TokenUser};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
pub const TOKEN_SERVICE: &str = "bagboy-test-registry";
pub const TOKEN_ISSUER: &str = "bagboy-test-issuer";

/// How the registry authenticates clients.
#[derive(Clone, Debug)]
pub enum Auth {
    None,
    Htpasswd {
        user: String,
        password: String,
    },
    /// Token auth; the first user allowed to push is the harness's admin.
    Token(Vec<TokenUser>),
}

/// One line of the registry's access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub user_agent: String,
}

impl Request {
    pub fn is_manifest(&self) -> bool {
        self.path.contains("/manifests/")
    }
    pub fn is_blob(&self) -> bool {
        self.path.contains("/blobs/")
    }
    pub fn is_from_bagboy(&self) -> bool {
        self.user_agent.starts_with("bagboy/")
    }
}

pub struct TestRegistry {
    // Field order matters: the process must die before its temp dir is removed.
    child: Child,
    pub token_server: Option<TokenServer>,
    port: u16,
    auth: Auth,
    access_log: PathBuf,
    /// Bytes of the access log written by the readiness probe, which no test should count.
    log_start: u64,
    pub(crate) http: reqwest::blocking::Client,
    dir: tempfile::TempDir,
}

impl TestRegistry {
    pub fn start(auth: Auth) -> TestRegistry {
        if !Path::new(REGISTRY_BIN).exists() {
            panic!("{REGISTRY_BIN} not found; install docker-registry: apt-get install -y docker-registry");
        }
        let dir = tempfile::Builder::new()
            .prefix("bagboy-registry-")
            .tempdir()
            .expect("temp dir");
        let auth_yaml = match &auth {
            Auth::None => String::new(),
            Auth::Htpasswd { user, password } => {
                let out = Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd (apt-get install -y apache2-utils)");
                assert!(out.status.success(), "htpasswd failed: {out:?}");
                let path = dir.path().join("htpasswd");
                fs::write(&path, &out.stdout).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: bagboy-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token(users) => {
                let server =
                    TokenServer::start(dir.path(), users.clone(), TOKEN_SERVICE, TOKEN_ISSUER);
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    server.realm(),
                    server.cert_path().display()
                );
                return Self::spawn(dir, auth.clone(), &yaml, Some(server));
            }
        };
        Self::spawn(dir, auth, &auth_yaml, None)
    }

    fn spawn(
        dir: tempfile::TempDir,
        auth: Auth,
        auth_yaml: &str,
        token_server: Option<TokenServer>,
    ) -> TestRegistry {
        let http = reqwest::blocking::Client::builder()
            .user_agent("bagboy-test-harness")
            .timeout(Duration::from_secs(20))
            .build()
            .expect("blocking client");
        let mut last_error = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            let storage = dir.path().join("storage");
            let yaml = format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: {}\n{auth_yaml}",
                storage.display(),
                super::random_hex()
            );
            fs::write(&config, yaml).expect("write registry config");
            let access_log = dir.path().join(format!("access-{attempt}.log"));
            let error_log = dir.path().join(format!("registry-{attempt}.log"));
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(fs::File::create(&access_log).expect("access log"))
                .stderr(fs::File::create(&error_log).expect("registry log"))
                .spawn()
                .expect("spawn docker-registry");
            let deadline = Instant::now() + Duration::from_secs(15);
            let url = format!("http://127.0.0.1:{port}/v2/");
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "docker-registry exited with {status}: {}",
                        fs::read_to_string(&error_log).unwrap_or_default()
                    );
                    break;
                }
                if let Ok(resp) = http.get(&url).send() {
                    // 200 without auth, 401 with: either way it serves the API.
                    if resp.status().as_u16() == 200 || resp.status().as_u16() == 401 {
                        // Readiness probes are not part of any test's request count.
                        wait_for_log_line(&access_log);
                        let log_start = fs::metadata(&access_log).map(|m| m.len()).unwrap_or(0);
                        return TestRegistry {
                            log_start,
                            child,
                            token_server,
                            port,
                            auth,
                            access_log,
                            http,
                            dir,
                        };
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = format!(
                        "docker-registry did not answer on {url}: {}",
                        fs::read_to_string(&error_log).unwrap_or_default()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        }
        panic!("could not start docker-registry: {last_error}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:<port>/<path>`, the form bagboy's config uses.
    pub fn repo(&self, path: &str) -> String {
        format!("{}/{path}", self.host())
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every request the registry has logged, once the log stops growing.
    pub fn requests(&self) -> Vec<Request> {
        let mut previous = String::new();
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(50));
            let bytes = fs::read(&self.access_log).unwrap_or_default();
            let start = (self.log_start as usize).min(bytes.len());
            let current = String::from_utf8_lossy(&bytes[start..]).into_owned();
            if current == previous {
                break;
            }
            previous = current;
        }
        previous.lines().filter_map(parse_access_line).collect()
    }

    /// Requests sent by bagboy's client (user agent `bagboy/...`).
    pub fn bagboy_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(Request::is_from_bagboy)
            .collect()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_log_line(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asks the OS for a free loopback port; the registry may lose a race for it, so callers retry.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Parses `127.0.0.1 - - [date] "GET /v2/ HTTP/1.1" 200 2 "" "agent"` (combined log format).
fn parse_access_line(line: &str) -> Option<Request> {
    let parts: Vec<&str> = line.split('"').collect();
    let mut request = parts.get(1)?.split_whitespace();
    let method = request.next()?.to_string();
    let path = request.next()?.to_string();
    let status = parts.get(2)?.split_whitespace().next()?.parse().ok()?;
    let user_agent = parts.get(5).copied().unwrap_or_default().to_string();
    Some(Request {
        method,
        path,
        status,
        user_agent,
    })
}
