//! A fault-injecting HTTP/1.1 reverse proxy that sits between `bagboy` and a real registry in tests.
//!
//! Requests are numbered 1, 2, 3… across all connections in the order they finish arriving; a
//! test arms a fault for a number (or a predicate), runs bagboy, then reads what the proxy saw.
//! Nothing is rewritten (not `Host`, not `Location`) except what a fault asks for, so the
//! registry's absolute URLs point back at the proxy and stay inside the experiment.
//!
//! The proxy runs on its own thread with its own tokio runtime, so plain `#[test]` functions can
//! use it; dropping it cancels every connection, stalled ones included.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy does to one request instead of (or on top of) forwarding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status and a small OCI-style JSON error, without forwarding.
    /// `429` carries `Retry-After: 0` so clients that honour it do not slow the test down.
    Status(u16),
    /// Close the client connection abruptly (RST) without a response; nothing is forwarded.
    Reset,
    /// Hold the request this long, then forward it. `Duration::MAX` holds it until the proxy is
    /// dropped: the upstream never sees it.
    Stall(Duration),
    /// Forward the request (the upstream acts on it), then send the response head and only half
    /// of the body (half of the head when there is no body) and close the connection.
    Truncate,
}

/// One request as the proxy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// 1-based, across all connections, in arrival order.
    pub n: usize,
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// The status the client was sent; `None` for resets, stalls and upstream failures.
    pub status: Option<u16>,
}

type Predicate = Box<dyn Fn(&Seen) -> Option<Fault> + Send + Sync>;

#[derive(Default)]
struct State {
    seen: Vec<Seen>,
    faults: HashMap<usize, Fault>,
    from: Option<(usize, Fault)>,
    when: Option<Predicate>,
    /// Requests that got as far as their fault (for a stall: the start of the hold).
    reached: Vec<usize>,
    /// Requests being held by a stall right now.
    stalled: Vec<usize>,
    connections: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking connection task must not wedge the test that inspects the proxy.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The proxy handle. Dropping it stops the proxy and closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Start a proxy on `127.0.0.1:0` forwarding to `upstream`.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy addr");
        let shared = Arc::new(Shared::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).expect("proxy listener");
                    tokio::select! {
                        _ = accept_loop(listener, upstream, task_shared) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime cancels every connection task and closes its sockets.
                drop(rt);
            })
            .expect("spawn proxy thread");
        FaultProxy {
            addr,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`, for clients and configs.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen so far, in number order.
    pub fn requests(&self) -> Vec<Seen> {
        let mut seen = self.shared.lock().seen.clone();
        seen.sort_by_key(|s| s.n);
        seen
    }

    /// How many requests have arrived.
    pub fn count(&self) -> usize {
        self.shared.lock().seen.len()
    }

    /// How many client connections were accepted (1 for a keep-alive client).
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Arm `fault` for request number `k` (1-based). Takes precedence over the other forms.
    pub fn set_fault(&self, k: usize, fault: Fault) {
        self.shared.lock().faults.insert(k, fault);
    }

    /// Arm `fault` for request `k` and every later one.
    pub fn fail_all_from(&self, k: usize, fault: Fault) {
        self.shared.lock().from = Some((k, fault));
    }

    /// Decide per request, e.g. fail every manifest PUT. Consulted after `set_fault` and
    /// `fail_all_from`; `status` is `None` when it runs.
    pub fn set_fault_when<F>(&self, f: F)
    where
        F: Fn(&Seen) -> Option<Fault> + Send + Sync + 'static,
    {
        self.shared.lock().when = Some(Box::new(f));
    }

    /// Disarm every fault. Requests already stalled stay stalled.
    pub fn clear(&self) {
        let mut st = self.shared.lock();
        st.faults.clear();
        st.from = None;
        st.when = None;
    }

    /// Wait until request `k` has arrived and reached its fault (for a stall: the hold has
    /// begun, nothing was forwarded). `false` on timeout.
    pub fn wait_for_request(&self, k: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if st.reached.contains(&k) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Numbers of the requests being held by a stall right now.
    pub fn stalled(&self) -> Vec<usize> {
        self.shared.lock().stalled.clone()
    }

    /// Wait until any request is being held by a stall; returns its number.
    pub fn wait_for_stall(&self, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(k) = st.stalled.first() {
                return Some(*k);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // EMFILE and friends: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        shared.lock().connections += 1;
        tokio::spawn(connection(stream, upstream, shared.clone()));
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 framing

/// Heads larger than this are refused; registry requests are far smaller.
const MAX_HEAD: usize = 64 * 1024;

struct Head {
    /// Request line or status line, without CRLF.
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn is_chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> io::Result<Option<usize>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("bad Content-Length {v:?}"))),
        }
    }

    /// Serialize, leaving out headers named in `skip`.
    fn bytes(&self, skip: &[&str]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(self.first.as_bytes());
        out.extend_from_slice(b"\r\n");
        for (k, v) in &self.headers {
            if skip.iter().any(|s| k.eq_ignore_ascii_case(s)) {
                continue;
            }
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Read a head; `Ok(None)` on a clean EOF before its first byte (the peer closed an idle
/// keep-alive connection).
async fn read_head<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> io::Result<Option<Head>> {
    let mut lines = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line).await?;
        if n == 0 {
            if lines.is_empty() && total == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        total += n;
        if total > MAX_HEAD {
            return Err(bad("head too large"));
        }
        let text = String::from_utf8(line).map_err(|_| bad("head is not UTF-8"))?;
        let text = text.trim_end_matches(['\r', '\n']).to_string();
        if text.is_empty() {
            // Tolerate stray CRLFs between messages (RFC 9112 §2.2).
            if lines.is_empty() {
                continue;
            }
            break;
        }
        lines.push(text);
    }
    let mut it = lines.into_iter();
    let first = it.next().unwrap_or_default();
    let headers = it
        .map(|l| match l.split_once(':') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(bad(format!("bad header line {l:?}"))),
        })
        .collect::<io::Result<_>>()?;
    Ok(Some(Head { first, headers }))
}

/// Which body a message has.
enum Framing {
    None,
    Length(usize),
    Chunked,
    UntilClose,
}

/// Read a body as framed on the wire (chunk sizes and trailers kept), to relay it verbatim.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    framing: &Framing,
) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::None => {}
        Framing::Length(n) => {
            body.resize(*n, 0);
            r.read_exact(&mut body).await?;
        }
        Framing::UntilClose => {
            r.read_to_end(&mut body).await?;
        }
        Framing::Chunked => loop {
            let mut line = Vec::new();
            if r.read_until(b'\n', &mut line).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            body.extend_from_slice(&line);
            let text = std::str::from_utf8(&line).map_err(|_| bad("bad chunk size"))?;
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| bad(format!("bad chunk size {size_text:?}")))?;
            if size == 0 {
                // Trailer section, up to and including the empty line.
                loop {
                    let mut t = Vec::new();
                    if r.read_until(b'\n', &mut t).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    body.extend_from_slice(&t);
                    if t == b"\r\n" || t == b"\n" {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            r.read_exact(&mut body[start..]).await?;
        },
    }
    Ok(body)
}

struct Request {
    head: Head,
    method: String,
    target: String,
    body: Vec<u8>,
    close: bool,
}

struct Response {
    head: Head,
    status: u16,
    body: Vec<u8>,
    /// The upstream connection cannot be reused (and the client expects a close).
    close: bool,
}

async fn read_request<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    w: &mut OwnedWriteHalf,
) -> io::Result<Option<Request>> {
    let Some(head) = read_head(r).await? else {
        return Ok(None);
    };
    let mut parts = head.first.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(bad(format!("bad request line {:?}", head.first)));
    };
    let (method, target) = (method.to_string(), target.to_string());
    let close = head.has_token("connection", "close")
        || (version == "HTTP/1.0" && !head.has_token("connection", "keep-alive"));
    let framing = if head.is_chunked() {
        Framing::Chunked
    } else {
        match head.content_length()? {
            Some(n) if n > 0 => Framing::Length(n),
            _ => Framing::None,
        }
    };
    // The whole body is read before forwarding, so answer `Expect` here; the header is then
    // dropped from what goes upstream.
    if head.has_token("expect", "100-continue") && !matches!(framing, Framing::None) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let body = read_body(r, &framing).await?;
    Ok(Some(Request {
        head,
        method,
        target,
        body,
        close,
    }))
}

async fn read_response<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    method: &str,
) -> io::Result<Response> {
    loop {
        let head = read_head(r).await?.ok_or(io::ErrorKind::UnexpectedEof)?;
        let status: u16 = head
            .first
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {:?}", head.first)))?;
        if (100..200).contains(&status) && status != 101 {
            // Interim responses are not relayed: the proxy already answered `Expect` itself.
            continue;
        }
        let framing = if method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&status)
            || status == 204
            || status == 304
        {
            Framing::None
        } else if head.is_chunked() {
            Framing::Chunked
        } else {
            match head.content_length()? {
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }
        };
        let close = matches!(framing, Framing::UntilClose) || head.has_token("connection", "close");
        let body = read_body(r, &framing).await?;
        return Ok(Response {
            head,
            status,
            body,
            close,
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Connections

struct Upstream {
    addr: SocketAddr,
    conn: Option<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
}

impl Upstream {
    /// Send `req` and read the answer, on the kept-alive connection when there is one. A kept
    /// connection the server had closed while idle (nothing at all came back) is replaced
    /// once, as HTTP clients do; a request the server may have acted on is never re-sent.
    async fn exchange(&mut self, req: &Request) -> io::Result<Response> {
        let bytes = {
            let mut b = req.head.bytes(&["expect"]);
            b.extend_from_slice(&req.body);
            b
        };
        let reused = self.conn.is_some();
        match self.try_exchange(&bytes, &req.method).await {
            Err(Attempt::Stale(_)) if reused => {
                self.conn = None;
                self.try_exchange(&bytes, &req.method)
                    .await
                    .map_err(Attempt::into_io)
            }
            other => other.map_err(Attempt::into_io),
        }
    }

    async fn try_exchange(&mut self, bytes: &[u8], method: &str) -> Result<Response, Attempt> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr)
                .await
                .map_err(Attempt::Failed)?;
            let _ = s.set_nodelay(true);
            let (r, w) = s.into_split();
            self.conn = Some((BufReader::new(r), w));
        }
        let (r, w) = self.conn.as_mut().expect("connected above");
        let result = async {
            w.write_all(bytes).await.map_err(Attempt::Stale)?;
            match r.fill_buf().await {
                Ok([]) => return Err(Attempt::Stale(io::ErrorKind::UnexpectedEof.into())),
                Err(e) => return Err(Attempt::Stale(e)),
                Ok(_) => {}
            }
            read_response(r, method).await.map_err(Attempt::Failed)
        }
        .await;
        match &result {
            Ok(resp) if !resp.close => {}
            _ => self.conn = None,
        }
        result
    }
}

/// Why an upstream exchange failed: `Stale` when the server cannot have answered.
enum Attempt {
    Stale(io::Error),
    Failed(io::Error),
}

impl Attempt {
    fn into_io(self) -> io::Error {
        match self {
            Attempt::Stale(e) | Attempt::Failed(e) => e,
        }
    }
}

async fn connection(stream: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut up = Upstream {
        addr: upstream,
        conn: None,
    };
    loop {
        let req = match read_request(&mut r, &mut w).await {
            Ok(Some(req)) => req,
            Ok(None) | Err(_) => return,
        };
        let (n, fault) = arrive(&shared, &req);
        match serve(&shared, n, fault, &req, &mut up, &mut w).await {
            Next::KeepOpen if !req.close => {}
            Next::KeepOpen | Next::Close => {
                let _ = w.shutdown().await;
                return;
            }
            // No FIN first: dropping a zero-linger socket sends only the RST.
            Next::Abort => return,
        }
    }
}

/// Number the request and decide its fault, atomically so numbering follows arrival order.
fn arrive(shared: &Shared, req: &Request) -> (usize, Option<Fault>) {
    let mut st = shared.lock();
    let n = st.seen.len() + 1;
    let seen = Seen {
        n,
        method: req.method.clone(),
        path: req.target.clone(),
        status: None,
    };
    let fault = st
        .faults
        .get(&n)
        .cloned()
        .or_else(|| {
            st.from
                .as_ref()
                .filter(|(k, _)| n >= *k)
                .map(|(_, f)| f.clone())
        })
        .or_else(|| st.when.as_ref().and_then(|f| f(&seen)));
    st.seen.push(seen);
    if matches!(fault, Some(Fault::Stall(_))) {
        st.stalled.push(n);
    }
    st.reached.push(n);
    drop(st);
    shared.changed.notify_all();
    (n, fault)
}

fn record_status(shared: &Shared, n: usize, status: u16) {
    let mut st = shared.lock();
    if let Some(s) = st.seen.iter_mut().find(|s| s.n == n) {
        s.status = Some(status);
    }
}

/// What happens to the client connection after a request.
enum Next {
    KeepOpen,
    Close,
    Abort,
}

/// Serve one request.
async fn serve(
    shared: &Shared,
    n: usize,
    fault: Option<Fault>,
    req: &Request,
    up: &mut Upstream,
    w: &mut OwnedWriteHalf,
) -> Next {
    match fault {
        Some(Fault::Status(code)) => {
            let resp = injected(code, &req.method);
            record_status(shared, n, code);
            if w.write_all(&resp).await.is_ok() {
                Next::KeepOpen
            } else {
                Next::Close
            }
        }
        Some(Fault::Reset) => {
            // RST instead of FIN: the client sees "connection reset", as on a crashed server.
            let _ = w.as_ref().set_zero_linger();
            Next::Abort
        }
        Some(Fault::Stall(d)) => {
            // Durations too long for a timer mean "until the proxy is dropped".
            if d < Duration::from_secs(365 * 24 * 3600) {
                tokio::time::sleep(d).await;
            } else {
                std::future::pending::<()>().await;
            }
            shared.lock().stalled.retain(|k| *k != n);
            forward(shared, n, req, up, w, false).await
        }
        Some(Fault::Truncate) => forward(shared, n, req, up, w, true).await,
        None => forward(shared, n, req, up, w, false).await,
    }
}

async fn forward(
    shared: &Shared,
    n: usize,
    req: &Request,
    up: &mut Upstream,
    w: &mut OwnedWriteHalf,
    truncate: bool,
) -> Next {
    let resp = match up.exchange(req).await {
        Ok(resp) => resp,
        Err(_) => {
            // The upstream is gone: tell the client as a gateway would.
            record_status(shared, n, 502);
            let _ = w.write_all(&injected(502, &req.method)).await;
            return Next::Close;
        }
    };
    record_status(shared, n, resp.status);
    let head = resp.head.bytes(&[]);
    if truncate {
        let out = if resp.body.is_empty() {
            head[..head.len() / 2].to_vec()
        } else {
            let mut out = head;
            out.extend_from_slice(&resp.body[..resp.body.len() / 2]);
            out
        };
        let _ = w.write_all(&out).await;
        let _ = w.flush().await;
        return Next::Close;
    }
    let mut out = head;
    out.extend_from_slice(&resp.body);
    if w.write_all(&out).await.is_ok() && !resp.close {
        Next::KeepOpen
    } else {
        Next::Close
    }
}

/// A response made up by the proxy, shaped like a registry error.
fn injected(code: u16, method: &str) -> Vec<u8> {
    let reason = match code {
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Injected",
    };
    let body = format!(
        r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected by FaultProxy: {code}","detail":null}}]}}"#
    );
    let mut head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if code == 429 {
        head.push_str("Retry-After: 0\r\n");
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if !method.eq_ignore_ascii_case("HEAD") {
        out.extend_from_slice(body.as_bytes());
    }
    out
}
