//! `MockGithub`: a mock of the parts of the GitHub REST API bagboy calls (issue comments,
//! releases, `/user`, `/rate_limit`), with GitHub's shapes, keep-alive HTTP/1.1, a token check
//! and scripted failures. GitHub's API cannot run here, so this is the one mock the tests use
//! for it (tests named `mock_github_*`).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub const TOKEN: &str = "ghs_mockTOKEN0123456789abcdefSECRET";

#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Call {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Debug)]
pub struct MockComment {
    pub id: u64,
    pub issue: u64,
    pub login: String,
    pub kind: String,
    pub body: String,
}

#[derive(Clone, Debug)]
pub struct MockRelease {
    pub id: u64,
    pub tag: String,
    pub draft: bool,
    pub prerelease: bool,
}

/// A scripted answer for the next request whose method matches and path contains `path`.
#[derive(Clone, Debug)]
pub struct Failure {
    pub method: String,
    pub path: String,
    pub status: u16,
    pub body: Value,
    pub times: usize,
}

#[derive(Default)]
pub struct State {
    pub comments: Vec<MockComment>,
    pub releases: Vec<MockRelease>,
    /// The release made latest explicitly (GitHub falls back to the newest published one).
    pub latest: Option<u64>,
    /// The token's login; `None` answers `/user` with 403 as the Actions token does.
    pub me: Option<String>,
    pub failures: Vec<Failure>,
    pub calls: Vec<Call>,
    pub rate_reset: u64,
    next_id: u64,
}

impl State {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        1000 + self.next_id
    }

    /// The latest release as GitHub computes it.
    pub fn latest_release(&self) -> Option<&MockRelease> {
        let ok = |r: &&MockRelease| !r.draft && !r.prerelease;
        self.latest
            .and_then(|id| self.releases.iter().find(|r| r.id == id))
            .filter(ok)
            .or_else(|| self.releases.iter().filter(ok).max_by_key(|r| r.id))
    }
}

pub struct MockGithub {
    port: u16,
    pub state: Arc<Mutex<State>>,
}

impl MockGithub {
    pub fn start() -> MockGithub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let state: Arc<Mutex<State>> = Arc::default();
        {
            let state = state.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    let state = state.clone();
                    std::thread::spawn(move || {
                        let _ = serve(stream, &state, port);
                    });
                }
            });
        }
        MockGithub { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v3", self.port)
    }

    pub fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.with(|s| s.calls.clone())
    }

    pub fn add_comment(&self, issue: u64, login: &str, kind: &str, body: &str) -> u64 {
        self.with(|s| {
            let id = s.id();
            s.comments.push(MockComment {
                id,
                issue,
                login: login.into(),
                kind: kind.into(),
                body: body.into(),
            });
            id
        })
    }

    pub fn add_release(&self, tag: &str, draft: bool, prerelease: bool) -> u64 {
        self.with(|s| {
            let id = s.id();
            s.releases.push(MockRelease {
                id,
                tag: tag.into(),
                draft,
                prerelease,
            });
            id
        })
    }

    pub fn fail(&self, method: &str, path: &str, status: u16, body: Value, times: usize) {
        self.with(|s| {
            s.failures.push(Failure {
                method: method.into(),
                path: path.into(),
                status,
                body,
                times,
            })
        })
    }
}

fn author(login: &str, kind: &str, port: u16) -> Value {
    let u = format!("http://127.0.0.1:{port}/users/{login}");
    json!({
        "login": login, "id": 41898282, "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4", "gravatar_id": "",
        "url": u, "html_url": u, "followers_url": u, "following_url": u, "gists_url": u,
        "starred_url": u, "subscriptions_url": u, "organizations_url": u, "repos_url": u,
        "events_url": u, "received_events_url": u, "type": kind, "site_admin": false
    })
}

fn comment_json(c: &MockComment, port: u16) -> Value {
    let base = format!("http://127.0.0.1:{port}");
    json!({
        "id": c.id, "node_id": format!("IC_{}", c.id),
        "url": format!("{base}/api/v3/repos/acme/myapp/issues/comments/{}", c.id),
        "html_url": format!("{base}/acme/myapp/pull/{}#issuecomment-{}", c.issue, c.id),
        "issue_url": format!("{base}/api/v3/repos/acme/myapp/issues/{}", c.issue),
        "body": c.body, "user": author(&c.login, &c.kind, port),
        "author_association": "NONE",
        "created_at": "2026-11-30T10:00:00Z", "updated_at": "2026-11-30T10:00:00Z"
    })
}

fn release_json(r: &MockRelease, port: u16) -> Value {
    let base = format!("http://127.0.0.1:{port}");
    json!({
        "url": format!("{base}/api/v3/repos/acme/myapp/releases/{}", r.id),
        "html_url": format!("{base}/acme/myapp/releases/tag/{}", r.tag),
        "assets_url": format!("{base}/api/v3/repos/acme/myapp/releases/{}/assets", r.id),
        "upload_url": format!("{base}/uploads/repos/acme/myapp/releases/{}/assets{{?name,label}}", r.id),
        "tarball_url": format!("{base}/api/v3/repos/acme/myapp/tarball/{}", r.tag),
        "zipball_url": format!("{base}/api/v3/repos/acme/myapp/zipball/{}", r.tag),
        "id": r.id, "node_id": format!("RE_{}", r.id), "tag_name": r.tag,
        "target_commitish": "main", "name": r.tag, "body": "", "draft": r.draft,
        "prerelease": r.prerelease, "created_at": "2026-11-01T10:00:00Z",
        "published_at": if r.draft { Value::Null } else { json!("2026-11-01T10:00:00Z") },
        "author": author("release-bot", "Bot", port), "assets": []
    })
}

fn message(m: &str) -> Value {
    json!({"message": m, "documentation_url": "https://docs.github.com/rest"})
}

fn handle(s: &mut State, call: &Call, port: u16) -> (u16, Value) {
    if let Some(f) = s
        .failures
        .iter_mut()
        .find(|f| f.times > 0 && f.method == call.method && call.path.contains(&f.path))
    {
        f.times -= 1;
        return (f.status, f.body.clone());
    }
    let path = call.path.split('?').next().unwrap_or_default();
    let query = call.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if path == "/api/v3/rate_limit" {
        let rate = json!({"limit": 5000, "used": 5000, "remaining": 0, "reset": s.rate_reset});
        return (
            200,
            json!({"resources": {"core": rate, "search": rate}, "rate": rate}),
        );
    }
    if call.header("authorization") != Some(&format!("Bearer {TOKEN}")) {
        return (401, message("Bad credentials"));
    }
    let parts: Vec<&str> = path.trim_start_matches("/api/v3/").split('/').collect();
    match (call.method.as_str(), parts.as_slice()) {
        ("GET", ["user"]) => match &s.me {
            Some(login) => (200, author(&login.clone(), "User", port)),
            None => (403, message("Resource not accessible by integration")),
        },
        ("GET", ["repos", "acme", "myapp", "issues", n, "comments"]) => {
            let n: u64 = n.parse().unwrap_or(0);
            let page: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(1);
            let per: usize = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("per_page="))
                .and_then(|p| p.parse().ok())
                .unwrap_or(30);
            let all: Vec<Value> = s
                .comments
                .iter()
                .filter(|c| c.issue == n)
                .map(|c| comment_json(c, port))
                .collect();
            let page: Vec<Value> = all.into_iter().skip((page - 1) * per).take(per).collect();
            (200, Value::Array(page))
        }
        ("POST", ["repos", "acme", "myapp", "issues", n, "comments"]) => {
            let id = s.id();
            let c = MockComment {
                id,
                issue: n.parse().unwrap_or(0),
                login: s.me.clone().unwrap_or_else(|| "github-actions[bot]".into()),
                kind: if s.me.is_some() { "User" } else { "Bot" }.into(),
                body: call.body["body"].as_str().unwrap_or_default().into(),
            };
            s.comments.push(c.clone());
            (201, comment_json(&c, port))
        }
        // GitHub takes POST for PATCH (octocrab updates comments with POST).
        ("PATCH" | "POST", ["repos", "acme", "myapp", "issues", "comments", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match s.comments.iter_mut().find(|c| c.id == id) {
                Some(c) => {
                    c.body = call.body["body"].as_str().unwrap_or_default().into();
                    (200, comment_json(c, port))
                }
                None => (404, message("Not Found")),
            }
        }
        ("GET", ["repos", "acme", "myapp", "releases", "latest"]) => match s.latest_release() {
            Some(r) => (200, release_json(r, port)),
            None => (404, message("Not Found")),
        },
        ("GET", ["repos", "acme", "myapp", "releases", "tags", tag]) => {
            match s.releases.iter().find(|r| r.tag == *tag && !r.draft) {
                Some(r) => (200, release_json(r, port)),
                None => (404, message("Not Found")),
            }
        }
        ("GET", ["repos", "acme", "myapp", "releases", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            match s.releases.iter().find(|r| r.id == id) {
                Some(r) => (200, release_json(r, port)),
                None => (404, message("Not Found")),
            }
        }
        ("PATCH", ["repos", "acme", "myapp", "releases", id]) => {
            let id: u64 = id.parse().unwrap_or(0);
            let Some(i) = s.releases.iter().position(|r| r.id == id) else {
                return (404, message("Not Found"));
            };
            if let Some(p) = call.body["prerelease"].as_bool() {
                s.releases[i].prerelease = p;
            }
            if let Some(d) = call.body["draft"].as_bool() {
                s.releases[i].draft = d;
            }
            match call.body["make_latest"].as_str() {
                Some("true") => {
                    if s.releases[i].draft || s.releases[i].prerelease {
                        return (
                            422,
                            json!({"message": "Validation Failed", "errors": [{"resource": "Release", "code": "custom", "field": "make_latest", "message": "Drafts and prereleases cannot be set as latest."}]}),
                        );
                    }
                    s.latest = Some(id);
                }
                Some("false") if s.latest == Some(id) => s.latest = None,
                _ => {}
            }
            (200, release_json(&s.releases[i].clone(), port))
        }
        _ => (404, message("Not Found")),
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0usize);
        let mut body = vec![0; length.min(1 << 24)];
        reader.read_exact(&mut body)?;
        let call = Call {
            method,
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let (status, value) = {
            let mut s = state.lock().unwrap();
            s.calls.push(call.clone());
            handle(&mut s, &call, port)
        };
        let body = serde_json::to_vec(&value).unwrap();
        let head = format!(
            "HTTP/1.1 {status} Mock\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nX-GitHub-Media-Type: github.v3\r\n\r\n",
            body.len()
        );
        out.write_all(head.as_bytes())?;
        out.write_all(&body)?;
        out.flush()?;
    }
}
