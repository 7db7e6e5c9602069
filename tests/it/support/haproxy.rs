//! A real HAProxy (Debian `haproxy`) per test on loopback, in front of two small HTTP servers
//! (blue and green) that answer `/` with the version they run and `/health` with 200 until
//! told to fail. The runtime API listens on its own port at `level admin`.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One environment's app server.
pub struct App {
    pub port: u16,
    pub version: Arc<Mutex<String>>,
    /// `/health` answers 500 from this many health requests on (`usize::MAX` = never).
    pub fail_from: Arc<AtomicUsize>,
    pub health_hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl App {
    pub fn start(version: &str) -> App {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = App {
            port,
            version: Arc::new(Mutex::new(version.into())),
            fail_from: Arc::new(AtomicUsize::new(usize::MAX)),
            health_hits: Arc::new(AtomicUsize::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (v, f, h, stop) = (
            app.version.clone(),
            app.fail_from.clone(),
            app.health_hits.clone(),
            app.stop.clone(),
        );
        std::thread::spawn(move || {
            for s in listener.incoming().flatten() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (v, f, h) = (v.clone(), f.clone(), h.clone());
                std::thread::spawn(move || serve(s, &v, &f, &h));
            }
        });
        app
    }

    pub fn health_url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    /// Fail `/health` from the `n`-th health request on (1-based).
    pub fn fail_health_from(&self, n: usize) {
        self.health_hits.store(0, Ordering::SeqCst);
        self.fail_from.store(n, Ordering::SeqCst);
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(s: TcpStream, version: &Mutex<String>, fail_from: &AtomicUsize, hits: &AtomicUsize) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut r = BufReader::new(match s.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (status, body) = if path.starts_with("/health") {
        let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= fail_from.load(Ordering::SeqCst) {
            (500, "unhealthy".to_string())
        } else {
            (200, "ok".to_string())
        }
    } else {
        (200, version.lock().unwrap().clone())
    };
    let mut s = s;
    let _ = write!(
        s,
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.flush();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct TestHaproxy {
    child: Child,
    pub front: u16,
    pub api: u16,
    _dir: tempfile::TempDir,
}

impl TestHaproxy {
    /// `backend app` with `blue` (weight 100) and `green` (weight 0).
    pub fn start(blue: &App, green: &App) -> TestHaproxy {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let (front, api) = (free_port(), free_port());
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(
                &cfg,
                format!(
                    "global\n  stats socket ipv4@127.0.0.1:{api} level admin\n  stats timeout 10s\n\
                     defaults\n  mode http\n  timeout connect 2s\n  timeout client 10s\n  timeout server 10s\n\
                     frontend fe\n  bind 127.0.0.1:{front}\n  default_backend app\n\
                     backend app\n  balance roundrobin\n  server blue 127.0.0.1:{} weight 100\n  server green 127.0.0.1:{} weight 0\n",
                    blue.port, green.port
                ),
            )
            .unwrap();
            let mut child = Command::new("haproxy")
                .arg("-f")
                .arg(&cfg)
                .arg("-db")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("haproxy (Debian `haproxy`; scripts/test.sh installs it)");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // a port was taken meanwhile: try others
                }
                if TcpStream::connect(("127.0.0.1", api)).is_ok()
                    && TcpStream::connect(("127.0.0.1", front)).is_ok()
                {
                    return TestHaproxy {
                        child,
                        front,
                        api,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            eprintln!("haproxy did not start: {err}");
        }
        panic!("haproxy did not start");
    }

    pub fn api_address(&self) -> String {
        format!("127.0.0.1:{}", self.api)
    }

    /// One runtime API command.
    pub fn command(&self, cmd: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.api)).unwrap();
        s.write_all(format!("{cmd}\n").as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out.trim().to_string()
    }

    /// `(blue, green)` weights.
    pub fn weights(&self) -> (u32, u32) {
        let w = |s: &str| {
            self.command(&format!("get weight app/{s}"))
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        (w("blue"), w("green"))
    }

    /// `n` requests through the frontend, each on its own connection: how many answers
    /// each version gave.
    pub fn spread(&self, n: usize) -> std::collections::BTreeMap<String, usize> {
        let mut out = std::collections::BTreeMap::new();
        for _ in 0..n {
            let mut s = TcpStream::connect(("127.0.0.1", self.front)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut resp = String::new();
            s.read_to_string(&mut resp).unwrap();
            let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            *out.entry(body).or_insert(0) += 1;
        }
        out
    }
}

impl Drop for TestHaproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
