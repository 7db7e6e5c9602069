//! The fault-injecting proxy against a real `docker-registry`: forwarding, faults, numbering.

use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use sha2::{Digest as _, Sha256};
use support::proxy::{Fault, FaultProxy, Seen};

// ---------------------------------------------------------------------------------------------
// A minimal registry starter, private to this file (the fuller harness lives elsewhere).

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

struct Registry {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: apt-get install -y docker-registry"
        );
        // The port is free when probed but another test may take it before the registry binds:
        // retry with a new port when the registry exits early.
        let mut last_err = String::new();
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("temp dir");
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let stderr = std::fs::File::create(dir.path().join("registry.log")).unwrap();
            let child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn docker-registry");
            let mut reg = Registry {
                child,
                addr,
                _dir: dir,
            };
            match reg.wait_ready(Duration::from_secs(15)) {
                Ok(()) => return reg,
                Err(e) => last_err = e,
            }
        }
        panic!("docker-registry did not start: {last_err}");
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let url = format!("http://{}/v2/", self.addr);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._dir.path().join("registry.log"))
                    .unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if client
                .get(&url)
                .send()
                .is_ok_and(|r| r.status().as_u16() == 200)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no 200 from {url} within {timeout:?}"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Monolithic upload as distribution 2.8 supports it: `POST` opens a session, one `PUT` with
/// `?digest=` carries the whole blob (single-request `POST ?digest=` is not implemented there).
fn push_blob(c: &Client, base: &str, repo: &str, blob: &[u8]) -> Response {
    let start = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .expect("upload start");
    assert_eq!(start.status().as_u16(), 202, "upload start");
    let location = start.headers()["location"].to_str().unwrap().to_string();
    let sep = if location.contains('?') { '&' } else { '?' };
    c.put(format!("{location}{sep}digest={}", digest(blob)))
        .header("Content-Type", "application/octet-stream")
        .body(blob.to_vec())
        .send()
        .expect("blob upload")
}

/// An OCI image manifest for a config and one layer.
fn manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{}","size":{}}}]}}"#,
        digest(config),
        config.len(),
        digest(layer),
        layer.len()
    )
    .into_bytes()
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn put_manifest(c: &Client, base: &str, repo: &str, reference: &str, body: &[u8]) -> Response {
    c.put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Content-Type", OCI_MANIFEST)
        .body(body.to_vec())
        .send()
        .expect("manifest put")
}

fn get_manifest(c: &Client, base: &str, repo: &str, reference: &str) -> Response {
    c.get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("Accept", OCI_MANIFEST)
        .send()
        .expect("manifest get")
}

/// Push config + layer + manifest straight to the registry (not through the proxy).
fn seed_image(reg: &Registry, repo: &str, tag: &str) -> Vec<u8> {
    let c = client();
    let base = format!("http://{}", reg.addr);
    let (config, layer) = (br#"{"architecture":"amd64","os":"linux"}"#, vec![7u8; 1000]);
    assert_eq!(push_blob(&c, &base, repo, config).status().as_u16(), 201);
    assert_eq!(push_blob(&c, &base, repo, &layer).status().as_u16(), 201);
    let m = manifest(config, &layer);
    assert_eq!(
        put_manifest(&c, &base, repo, tag, &m).status().as_u16(),
        201
    );
    m
}

fn summary(seen: &[Seen]) -> Vec<(usize, String, Option<u16>)> {
    seen.iter()
        .map(|s| (s.n, s.method.clone(), s.status))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Forwarding

#[test]
fn forwards_the_api_check() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let resp = client().get(format!("{}/v2/", proxy.url())).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("docker-distribution-api-version")
            .and_then(|v| v.to_str().ok()),
        Some("registry/2.0")
    );
    assert_eq!(
        proxy.requests(),
        vec![Seen {
            n: 1,
            method: "GET".into(),
            path: "/v2/".into(),
            status: Some(200)
        }]
    );
}

#[test]
fn push_and_pull_round_trip_with_exact_numbering_on_one_connection() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let (config, layer) = (b"{}".as_slice(), vec![42u8; 70_000]);
    assert_eq!(push_blob(&c, &base, "a/img", config).status().as_u16(), 201);
    assert_eq!(push_blob(&c, &base, "a/img", &layer).status().as_u16(), 201);
    // HEAD has no body: the next request on the same connection must still parse.
    let head = c
        .head(format!("{base}/v2/a/img/blobs/{}", digest(&layer)))
        .send()
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(
        head.headers()["content-length"].to_str().unwrap(),
        layer.len().to_string()
    );
    let m = manifest(config, &layer);
    let put = put_manifest(&c, &base, "a/img", "v1", &m);
    assert_eq!(put.status().as_u16(), 201);
    assert_eq!(
        put.headers()["docker-content-digest"].to_str().unwrap(),
        digest(&m)
    );
    let got = get_manifest(&c, &base, "a/img", "v1");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().unwrap().as_ref(), m.as_slice());
    let blob = c
        .get(format!("{base}/v2/a/img/blobs/{}", digest(&layer)))
        .send()
        .unwrap();
    assert_eq!(blob.bytes().unwrap().as_ref(), layer.as_slice());
    let missing = get_manifest(&c, &base, "a/img", "nope");
    assert_eq!(missing.status().as_u16(), 404);
    let _ = missing.bytes();

    let seen = proxy.requests();
    assert_eq!(
        summary(&seen),
        vec![
            (1, "POST".into(), Some(202)),
            (2, "PUT".into(), Some(201)),
            (3, "POST".into(), Some(202)),
            (4, "PUT".into(), Some(201)),
            (5, "HEAD".into(), Some(200)),
            (6, "PUT".into(), Some(201)),
            (7, "GET".into(), Some(200)),
            (8, "GET".into(), Some(200)),
            (9, "GET".into(), Some(404)),
        ]
    );
    assert_eq!(seen[5].path, "/v2/a/img/manifests/v1");
    assert_eq!(proxy.count(), 9);
    assert_eq!(proxy.connections(), 1, "reqwest's keep-alive was not kept");
}

#[test]
fn chunked_upload_and_absolute_locations_pass_through() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let start = c
        .post(format!("{base}/v2/chunk/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(start.status().as_u16(), 202);
    let location = start.headers()["location"].to_str().unwrap().to_string();
    // Not rewritten: the registry built it from the Host header, which names the proxy.
    assert!(location.starts_with(&base), "{location}");
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    // A reader body has no known length, so reqwest sends it chunked.
    let patch = c
        .patch(&location)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(
            blob.clone(),
        )))
        .send()
        .unwrap();
    assert_eq!(patch.status().as_u16(), 202);
    let next = patch.headers()["location"].to_str().unwrap().to_string();
    let sep = if next.contains('?') { '&' } else { '?' };
    let put = c
        .put(format!("{next}{sep}digest={}", digest(&blob)))
        .send()
        .unwrap();
    assert_eq!(put.status().as_u16(), 201);
    let got = c
        .get(format!("{base}/v2/chunk/blobs/{}", digest(&blob)))
        .send()
        .unwrap();
    assert_eq!(got.bytes().unwrap().as_ref(), blob.as_slice());
    assert_eq!(
        summary(&proxy.requests()),
        vec![
            (1, "POST".into(), Some(202)),
            (2, "PATCH".into(), Some(202)),
            (3, "PUT".into(), Some(201)),
            (4, "GET".into(), Some(200)),
        ]
    );
}

#[test]
fn concurrent_connections_are_numbered_uniquely() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let base = proxy.url();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let base = base.clone();
            s.spawn(move || {
                let c = client();
                for _ in 0..5 {
                    let r = c.get(format!("{base}/v2/")).send().unwrap();
                    assert_eq!(r.status().as_u16(), 200);
                }
            });
        }
    });
    let mut ns: Vec<usize> = proxy.requests().iter().map(|s| s.n).collect();
    ns.sort();
    assert_eq!(ns, (1..=20).collect::<Vec<_>>());
    assert_eq!(proxy.connections(), 4);
    assert!(proxy.requests().iter().all(|s| s.status == Some(200)));
}

// ---------------------------------------------------------------------------------------------
// Faults

#[test]
fn status_fault_answers_without_forwarding() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let m = seed_image(&reg, "s/img", "v1");
    proxy.set_fault(2, Fault::Status(503));
    proxy.set_fault(3, Fault::Status(429));
    assert_eq!(
        get_manifest(&c, &base, "s/img", "v1").status().as_u16(),
        200
    );
    // Request 2: a tag write that must never reach the registry.
    let failed = put_manifest(&c, &base, "s/img", "v2", &m);
    assert_eq!(failed.status().as_u16(), 503);
    assert_eq!(
        failed.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: serde_json::Value = serde_json::from_slice(&failed.bytes().unwrap()).unwrap();
    assert!(body["errors"][0]["code"].is_string(), "{body}");
    let limited = get_manifest(&c, &base, "s/img", "v1");
    assert_eq!(limited.status().as_u16(), 429);
    assert_eq!(limited.headers()["retry-after"].to_str().unwrap(), "0");
    let _ = limited.bytes();
    // The same keep-alive connection still works, and v2 was never created.
    assert_eq!(
        get_manifest(&c, &base, "s/img", "v2").status().as_u16(),
        404
    );
    assert_eq!(
        summary(&proxy.requests()),
        vec![
            (1, "GET".into(), Some(200)),
            (2, "PUT".into(), Some(503)),
            (3, "GET".into(), Some(429)),
            (4, "GET".into(), Some(404)),
        ]
    );
    assert_eq!(proxy.connections(), 1);
}

#[test]
fn reset_fault_drops_the_connection_without_a_response() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let m = seed_image(&reg, "r/img", "v1");
    proxy.set_fault(1, Fault::Reset);
    let err = c
        .put(format!("{base}/v2/r/img/manifests/v2"))
        .header("Content-Type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .expect_err("a reset must not look like a response");
    assert!(!err.is_timeout(), "{err:?}");
    // Not forwarded; the next request (a new connection) is number 2 and works.
    assert_eq!(
        get_manifest(&c, &base, "r/img", "v2").status().as_u16(),
        404
    );
    assert_eq!(
        summary(&proxy.requests()),
        vec![(1, "PUT".into(), None), (2, "GET".into(), Some(404))]
    );
    assert_eq!(proxy.connections(), 2);
}

#[test]
fn stall_fault_delays_then_forwards() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    seed_image(&reg, "d/img", "v1");
    proxy.set_fault(1, Fault::Stall(Duration::from_millis(400)));
    let t = Instant::now();
    let r = get_manifest(&c, &proxy.url(), "d/img", "v1");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert!(proxy.stalled().is_empty());
}

#[test]
fn stall_forever_is_observable_and_never_reaches_the_registry() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let m = seed_image(&reg, "f/img", "v1");
    proxy.set_fault(1, Fault::Stall(Duration::MAX));
    assert!(!proxy.wait_for_request(1, Duration::from_millis(50)));
    let base = proxy.url();
    let body = m.clone();
    let blocked = std::thread::spawn(move || {
        Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap()
            .put(format!("{base}/v2/f/img/manifests/v2"))
            .header("Content-Type", OCI_MANIFEST)
            .body(body)
            .send()
    });
    assert!(proxy.wait_for_request(1, Duration::from_secs(10)));
    assert_eq!(proxy.stalled(), vec![1]);
    assert_eq!(proxy.wait_for_stall(Duration::from_secs(1)), Some(1));
    // This is where a test would SIGKILL bagboy: the PUT is in flight and unanswered.
    let err = blocked
        .join()
        .unwrap()
        .expect_err("a stalled request has no answer");
    assert!(err.is_timeout(), "{err:?}");
    let direct = format!("http://{}", reg.addr);
    assert_eq!(
        get_manifest(&client(), &direct, "f/img", "v2")
            .status()
            .as_u16(),
        404
    );
    // Dropping the proxy does not wait for the stall.
    let t = Instant::now();
    drop(proxy);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}

#[test]
fn truncate_fault_forwards_but_cuts_the_body() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let m = seed_image(&reg, "t/img", "v1");
    proxy.set_fault(1, Fault::Truncate);
    proxy.set_fault(2, Fault::Truncate);
    // A body cut in half: the head arrives, reading the body fails.
    let r = get_manifest(&c, &base, "t/img", "v1");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.bytes().is_err(),
        "a truncated body must not read as complete"
    );
    // A response with an empty body: half a head, so the client sees no response at all,
    // although the registry did act on it.
    let put = c
        .put(format!("{base}/v2/t/img/manifests/v2"))
        .header("Content-Type", OCI_MANIFEST)
        .body(m.clone())
        .send();
    assert!(put.is_err(), "{put:?}");
    let direct = format!("http://{}", reg.addr);
    let got = get_manifest(&client(), &direct, "t/img", "v2");
    assert_eq!(got.status().as_u16(), 200);
    assert_eq!(got.bytes().unwrap().as_ref(), m.as_slice());
    assert_eq!(
        summary(&proxy.requests()),
        vec![(1, "GET".into(), Some(200)), (2, "PUT".into(), Some(201))]
    );
}

#[test]
fn predicate_fails_every_manifest_put() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let base = proxy.url();
    let m = seed_image(&reg, "b/img", "v1");
    proxy.set_fault_when(|s| {
        (s.method == "PUT" && s.path.starts_with("/v2/b/img/manifests/"))
            .then_some(Fault::Status(500))
    });
    for tag in ["v2", "latest"] {
        assert_eq!(
            put_manifest(&c, &base, "b/img", tag, &m).status().as_u16(),
            500
        );
    }
    assert_eq!(
        get_manifest(&c, &base, "b/img", "v1").status().as_u16(),
        200
    );
    // An explicit fault wins over the predicate; clear() disarms both.
    proxy.set_fault(4, Fault::Status(503));
    assert_eq!(
        put_manifest(&c, &base, "b/img", "v3", &m).status().as_u16(),
        503
    );
    proxy.clear();
    assert_eq!(
        put_manifest(&c, &base, "b/img", "v3", &m).status().as_u16(),
        201
    );
    assert_eq!(
        summary(&proxy.requests()),
        vec![
            (1, "PUT".into(), Some(500)),
            (2, "PUT".into(), Some(500)),
            (3, "GET".into(), Some(200)),
            (4, "PUT".into(), Some(503)),
            (5, "PUT".into(), Some(201)),
        ]
    );
}

#[test]
fn fail_all_from_fails_k_and_everything_after() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(reg.addr);
    let c = client();
    let url = format!("{}/v2/", proxy.url());
    proxy.fail_all_from(3, Fault::Status(503));
    let statuses: Vec<u16> = (0..5)
        .map(|_| c.get(&url).send().unwrap().status().as_u16())
        .collect();
    assert_eq!(statuses, vec![200, 200, 503, 503, 503]);
    assert_eq!(proxy.count(), 5);
}
