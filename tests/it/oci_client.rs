//! Integration tests for the OCI client and layout store against real `docker-registry` servers.

use crate::support;

use std::time::Duration;

use bagboy::registry::oci::{
    ClientOptions, Credential, Digest, ImageRepo, Manifest, OciClient, OciError, OciLayout,
    REF_NAME_ANNOTATION,
};
use support::fake_server::{FakeResponse, FakeServer};
use support::push::{Flavor, DOCKER_MANIFEST, OCI_INDEX};
use support::{block_on, Auth, TestRegistry, TokenUser};

fn options() -> ClientOptions {
    ClientOptions {
        insecure: true,
        ..ClientOptions::default()
    }
}

fn client(reg: &TestRegistry, credential: Option<Credential>) -> OciClient {
    OciClient::new(&reg.host(), options(), credential).expect("client")
}

fn repo(reg: &TestRegistry, path: &str) -> ImageRepo {
    ImageRepo::parse(&reg.repo(path)).expect("repo parses")
}

#[test]
fn anonymous_round_trip_keeps_exact_bytes() {
    let reg = TestRegistry::start(Auth::None);
    let pushed = reg.push_image_as("acme/app", "v1", Flavor::DockerSchema2);
    let repo = repo(&reg, "acme/app");
    let client = client(&reg, None);

    let head = block_on(client.head_manifest(&repo, "v1"))
        .unwrap()
        .expect("v1 exists");
    assert_eq!(head.digest.as_str(), pushed.digest);
    assert_eq!(head.media_type, DOCKER_MANIFEST);
    assert_eq!(head.size, pushed.bytes.len() as u64);
    assert_eq!(block_on(client.head_manifest(&repo, "nope")).unwrap(), None);

    let manifest = block_on(client.get_manifest(&repo, "v1")).unwrap();
    assert_eq!(manifest.bytes, pushed.bytes);
    assert_eq!(manifest.media_type, DOCKER_MANIFEST);
    assert_eq!(manifest.digest.as_str(), pushed.digest);

    let put = block_on(client.put_manifest(&repo, "latest", &manifest)).unwrap();
    assert_eq!(put, manifest.digest);
    assert_eq!(
        reg.tag_digest("acme/app", "latest").as_deref(),
        Some(pushed.digest.as_str())
    );

    let missing = block_on(client.get_manifest(&repo, "v9")).unwrap_err();
    assert!(matches!(missing, OciError::NotFound { .. }), "{missing}");
    let text = missing.to_string();
    assert!(
        text.contains(&reg.host()) && text.contains("MANIFEST_UNKNOWN"),
        "{text}"
    );
}

#[test]
fn multi_arch_index_digest_survives_a_re_put() {
    let reg = TestRegistry::start(Auth::None);
    let index = reg.push_index_full("acme/multi", "v2");
    let repo = repo(&reg, "acme/multi");
    let client = client(&reg, None);

    let manifest = block_on(client.get_manifest(&repo, &index.digest)).unwrap();
    assert!(manifest.is_index());
    assert_eq!(manifest.media_type, OCI_INDEX);
    assert_eq!(manifest.bytes, index.bytes);
    block_on(client.put_manifest(&repo, "stable", &manifest)).unwrap();
    assert_eq!(
        reg.tag_digest("acme/multi", "stable").as_deref(),
        Some(index.digest.as_str())
    );
    let (bytes, content_type) = reg.get_manifest("acme/multi", "stable").unwrap();
    assert_eq!((bytes, content_type.as_str()), (index.bytes, OCI_INDEX));
}

#[test]
fn htpasswd_accepts_good_credentials_and_names_the_registry_on_bad_ones() {
    let reg = TestRegistry::start(Auth::Htpasswd {
        user: "alice".into(),
        password: "s3cret-pw".into(),
    });
    let digest = reg.push_image("acme/app", "v1");
    let repo = repo(&reg, "acme/app");

    let good = client(&reg, Some(Credential::basic("alice", "s3cret-pw")));
    let manifest = block_on(good.get_manifest(&repo, "v1")).unwrap();
    assert_eq!(manifest.digest.as_str(), digest);
    block_on(good.put_manifest(&repo, "latest", &manifest)).unwrap();
    block_on(good.head_manifest(&repo, "latest"))
        .unwrap()
        .expect("latest");
    // Only the first request pays for the challenge; later ones send Basic up front.
    let unauthorized = reg
        .bagboy_requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(unauthorized, 1, "{:?}", reg.bagboy_requests());

    let bad = client(&reg, Some(Credential::basic("alice", "wrong-password")));
    let err = block_on(bad.get_manifest(&repo, "v1")).unwrap_err();
    assert!(
        matches!(err, OciError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&reg.host()), "{text}");
    assert!(text.contains("BAGBOY_REGISTRY_USERNAME"), "{text}");
    assert!(!text.contains("wrong-password") && !format!("{err:?}").contains("wrong-password"));
    assert_eq!(err.status(), Some(401));

    let anonymous = client(&reg, None);
    let err = block_on(anonymous.get_manifest(&repo, "v1")).unwrap_err();
    assert!(err.to_string().contains("no credentials found"), "{err}");
}

#[test]
fn token_auth_asks_for_pull_then_push_and_denies_readers() {
    let reg = TestRegistry::start(Auth::Token(TokenUser::defaults()));
    let digest = reg.push_image("acme/app", "v1");
    let repo = repo(&reg, "acme/app");
    let server = reg.token_server.as_ref().unwrap();

    let alice = client(&reg, Some(Credential::basic("alice", "alice-password")));
    let manifest = block_on(alice.get_manifest(&repo, &digest)).unwrap();
    block_on(alice.put_manifest(&repo, "latest", &manifest)).unwrap();
    block_on(alice.get_manifest(&repo, "latest")).unwrap();
    assert_eq!(
        reg.tag_digest("acme/app", "latest").as_deref(),
        Some(digest.as_str())
    );
    let scopes: Vec<Vec<String>> = server
        .bagboy_requests()
        .into_iter()
        .map(|r| r.scopes)
        .collect();
    assert_eq!(
        scopes,
        vec![
            vec!["repository:acme/app:pull".to_string()],
            vec!["repository:acme/app:pull,push".to_string()]
        ],
        "one token per scope, cached afterwards"
    );
    assert!(server
        .bagboy_requests()
        .iter()
        .all(|r| r.user.as_deref() == Some("alice")));
    let unauthorized = reg
        .bagboy_requests()
        .iter()
        .filter(|r| r.status == 401)
        .count();
    assert_eq!(unauthorized, 1, "{:?}", reg.bagboy_requests());

    let reader = client(&reg, Some(Credential::basic("reader", "reader-password")));
    let manifest = block_on(reader.get_manifest(&repo, "v1")).unwrap();
    let err = block_on(reader.put_manifest(&repo, "hijack", &manifest)).unwrap_err();
    assert!(matches!(err, OciError::Denied { .. }), "{err:?}");
    assert!(err.to_string().contains(&reg.host()), "{err}");
    assert_eq!(reg.tag_digest("acme/app", "hijack"), None);

    let wrong = client(&reg, Some(Credential::basic("alice", "nope")));
    let err = block_on(wrong.get_manifest(&repo, "v1")).unwrap_err();
    assert!(
        matches!(err, OciError::AuthenticationFailed { .. }),
        "{err:?}"
    );
}

#[test]
fn token_auth_with_identity_token_uses_refresh_grant() {
    let reg = TestRegistry::start(Auth::Token(TokenUser::defaults()));
    let digest = reg.push_image("acme/app", "v1");
    let repo = repo(&reg, "acme/app");
    let client = client(&reg, Some(Credential::identity_token("alice-refresh")));
    let manifest = block_on(client.get_manifest(&repo, "v1")).unwrap();
    assert_eq!(manifest.digest.as_str(), digest);
    let requests = reg.token_server.as_ref().unwrap().bagboy_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].grant_type.as_deref(), Some("refresh_token"));
    assert_eq!(requests[0].user.as_deref(), Some("alice"));
}

#[test]
fn tags_are_listed_from_a_real_registry() {
    let reg = TestRegistry::start(Auth::None);
    let digest = reg.push_image("acme/app", "t1");
    for tag in ["t2", "t3", "t4", "t5"] {
        reg.put_tag("acme/app", tag, &digest);
    }
    let repo = repo(&reg, "acme/app");
    let mut tags = block_on(client(&reg, None).list_tags_paged(&repo, Some(2))).unwrap();
    tags.sort();
    assert_eq!(tags, ["t1", "t2", "t3", "t4", "t5"]);
}

/// docker-registry 2.8 ignores `n` on tags/list, so paging is exercised against a scripted server.
#[test]
fn scripted_server_tags_follow_link_pages_of_two() {
    let all = ["t1", "t2", "t3", "t4", "t5"];
    let server = FakeServer::start(move |req, _| {
        let url = reqwest::Url::parse(&format!("http://x{}", req.target)).unwrap();
        let param = |k: &str| {
            url.query_pairs()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.into_owned())
        };
        let n: usize = param("n").and_then(|n| n.parse().ok()).unwrap_or(100);
        let start =
            param("last").map_or(0, |last| all.iter().position(|t| *t == last).unwrap() + 1);
        let page: Vec<&str> = all.iter().skip(start).take(n).copied().collect();
        let body = serde_json::json!({"name": "acme/app", "tags": page}).to_string();
        let mut resp = FakeResponse::new(200)
            .header("content-type", "application/json")
            .body(body);
        if start + n < all.len() {
            let last = page.last().unwrap();
            resp = resp.header(
                "link",
                &format!("</v2/acme/app/tags/list?last={last}&n={n}>; rel=\"next\""),
            );
        }
        resp
    });
    let client = OciClient::new(&server.host(), options(), None).unwrap();
    let repo = ImageRepo::parse(&format!("{}/acme/app", server.host())).unwrap();
    let tags = block_on(client.list_tags_paged(&repo, Some(2))).unwrap();
    assert_eq!(tags, all);
    let targets: Vec<String> = server.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/v2/acme/app/tags/list?n=2",
            "/v2/acme/app/tags/list?last=t2&n=2",
            "/v2/acme/app/tags/list?last=t4&n=2"
        ]
    );
}

fn fast_retries(retries: u32) -> ClientOptions {
    ClientOptions {
        insecure: true,
        retries,
        backoff_base: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

const TINY_MANIFEST: &[u8] = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;

/// A scripted server (not a mock of the registry's logic): 503/429/502 in a fixed order, which a
/// real registry cannot be made to answer on cue. `tests/crash_safety.rs` covers failures
/// injected in front of the real registry.
#[test]
fn scripted_server_transient_failures_are_retried_and_others_are_not() {
    let server = FakeServer::start(|_, i| match i {
        0 => FakeResponse::new(503),
        1 => FakeResponse::new(429).header("retry-after", "0"),
        2 => FakeResponse::new(502),
        _ => FakeResponse::new(200)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "docker-content-digest",
                Digest::sha256_of(TINY_MANIFEST).as_str(),
            )
            .body(TINY_MANIFEST),
    });
    let repo = ImageRepo::parse(&format!("{}/acme/app", server.host())).unwrap();
    let client = OciClient::new(&server.host(), fast_retries(3), None).unwrap();
    let manifest = block_on(client.get_manifest(&repo, "v1")).unwrap();
    assert_eq!(manifest.bytes, TINY_MANIFEST);
    assert_eq!(server.requests().len(), 4);

    let exhausted = FakeServer::start(|_, _| FakeResponse::new(504));
    let repo = ImageRepo::parse(&format!("{}/acme/app", exhausted.host())).unwrap();
    let client = OciClient::new(&exhausted.host(), fast_retries(2), None).unwrap();
    let err = block_on(client.get_manifest(&repo, "v1")).unwrap_err();
    assert_eq!(err.status(), Some(504), "{err}");
    assert_eq!(exhausted.requests().len(), 3);

    let bad_request = FakeServer::start(|_, _| {
        FakeResponse::new(400)
            .body(r#"{"errors":[{"code":"MANIFEST_INVALID","message":"manifest invalid"}]}"#)
    });
    let repo = ImageRepo::parse(&format!("{}/acme/app", bad_request.host())).unwrap();
    let client = OciClient::new(&bad_request.host(), fast_retries(3), None).unwrap();
    let err = block_on(client.put_manifest(
        &repo,
        "v1",
        &Manifest::new(
            TINY_MANIFEST.to_vec(),
            "application/vnd.oci.image.manifest.v1+json",
        ),
    ))
    .unwrap_err();
    assert!(
        matches!(
            err,
            OciError::BadResponse {
                status: Some(400),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("MANIFEST_INVALID: manifest invalid"),
        "{err}"
    );
    assert_eq!(bad_request.requests().len(), 1, "4xx is never retried");

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = format!("127.0.0.1:{closed}");
    let client = OciClient::new(&host, fast_retries(1), None).unwrap();
    let repo = ImageRepo::parse(&format!("{host}/acme/app")).unwrap();
    let err = block_on(client.head_manifest(&repo, "v1")).unwrap_err();
    assert!(matches!(err, OciError::Transport { .. }), "{err:?}");
}

/// A scripted server that lies about digests: no real registry does, which is the point.
#[test]
fn scripted_server_digests_are_verified_against_the_request_and_the_header() {
    let lying = FakeServer::start(|_, _| {
        FakeResponse::new(200)
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .header(
                "docker-content-digest",
                Digest::sha256_of(b"something else").as_str(),
            )
            .body(TINY_MANIFEST)
    });
    let repo = ImageRepo::parse(&format!("{}/acme/app", lying.host())).unwrap();
    let client = OciClient::new(&lying.host(), fast_retries(0), None).unwrap();
    let err = block_on(client.get_manifest(&repo, "v1")).unwrap_err();
    assert!(
        matches!(
            err,
            OciError::DigestMismatch {
                expected_from: "Docker-Content-Digest",
                ..
            }
        ),
        "{err:?}"
    );
    let other = Digest::sha256_of(b"requested");
    let err = block_on(client.get_manifest(&repo, other.as_str())).unwrap_err();
    assert!(
        matches!(
            err,
            OciError::DigestMismatch {
                expected_from: "requested digest",
                ..
            }
        ),
        "{err:?}"
    );

    let wrong_put = FakeServer::start(|_, _| {
        FakeResponse::new(201).header(
            "docker-content-digest",
            Digest::sha256_of(b"rewritten").as_str(),
        )
    });
    let repo = ImageRepo::parse(&format!("{}/acme/app", wrong_put.host())).unwrap();
    let client = OciClient::new(&wrong_put.host(), fast_retries(0), None).unwrap();
    let manifest = Manifest::new(
        TINY_MANIFEST.to_vec(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    let err = block_on(client.put_manifest(&repo, "v1", &manifest)).unwrap_err();
    assert!(matches!(err, OciError::DigestMismatch { .. }), "{err:?}");
    let put = &wrong_put.requests()[0];
    assert_eq!(put.body, TINY_MANIFEST);
    assert_eq!(
        put.header("content-type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert!(put.header("user-agent").unwrap().starts_with("bagboy/"));
}

#[test]
fn moving_a_tag_costs_one_get_and_one_put_and_no_blobs() {
    let reg = TestRegistry::start(Auth::None);
    let old = reg.push_image("acme/app", "v1");
    reg.push_image("acme/app", "v2");
    reg.put_tag(
        "acme/app",
        "latest",
        &reg.tag_digest("acme/app", "v2").unwrap(),
    );
    let repo = repo(&reg, "acme/app");
    let client = client(&reg, None);

    let manifest = block_on(client.get_manifest(&repo, &old)).unwrap();
    block_on(client.put_manifest(&repo, "latest", &manifest)).unwrap();
    assert_eq!(
        reg.tag_digest("acme/app", "latest").as_deref(),
        Some(old.as_str())
    );

    let requests = reg.bagboy_requests();
    let count = |method: &str| {
        requests
            .iter()
            .filter(|r| r.method == method && r.is_manifest())
            .count()
    };
    assert_eq!(count("GET"), 1, "{requests:?}");
    assert_eq!(count("PUT"), 1, "{requests:?}");
    assert_eq!(
        requests.iter().filter(|r| r.is_blob()).count(),
        0,
        "{requests:?}"
    );
    assert_eq!(
        requests.len(),
        2,
        "no ping, no extra round trips: {requests:?}"
    );
}

#[test]
fn layout_set_tag_round_trip_keeps_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::init(dir.path()).unwrap();
    let v1 = layout
        .add_image("v1", br#"{"os":"linux","n":1}"#, b"layer one")
        .unwrap();
    let v2 = layout
        .add_image("v2", br#"{"os":"linux","n":2}"#, b"layer two")
        .unwrap();

    // Fields bagboy does not know must survive a set_tag.
    let index_path = dir.path().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["x-vendor"] = serde_json::json!({"keep": [1, 2, 3]});
    index["manifests"][0]["annotations"]["org.example.note"] = "hello".into();
    index["manifests"][0]["platform"] = serde_json::json!({"os": "linux", "architecture": "amd64"});
    std::fs::write(&index_path, serde_json::to_vec_pretty(&index).unwrap()).unwrap();

    layout.set_tag("v1", &v2.descriptor()).unwrap();
    assert_eq!(layout.resolve("v1").unwrap(), Some(v2.descriptor()));
    assert_eq!(layout.resolve("v2").unwrap(), Some(v2.descriptor()));
    assert_eq!(layout.resolve("v3").unwrap(), None);
    let tags: Vec<String> = layout.tags().unwrap().into_iter().map(|(t, _)| t).collect();
    assert_eq!(tags, ["v1", "v2"]);

    let after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    assert_eq!(after["x-vendor"], serde_json::json!({"keep": [1, 2, 3]}));
    assert_eq!(
        after["manifests"][0]["annotations"]["org.example.note"],
        "hello"
    );
    assert_eq!(
        after["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
        "v1"
    );
    let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["schemaVersion", "mediaType", "manifests", "x-vendor"],
        "key order kept"
    );

    let read = layout.read_manifest(&v1.digest).unwrap();
    assert_eq!(read, v1);
    layout.set_tag("v0", &v1.descriptor()).unwrap();
    assert_eq!(
        OciLayout::open(dir.path()).unwrap().resolve("v0").unwrap(),
        Some(v1.descriptor())
    );

    // A corrupted blob is detected, and tagging a missing blob is refused.
    std::fs::write(layout.blob_path(&v1.digest), b"tampered").unwrap();
    let err = layout.read_manifest(&v1.digest).unwrap_err();
    assert!(
        matches!(err, OciError::LayoutDigestMismatch { .. }),
        "{err:?}"
    );
    let ghost = Digest::sha256_of(b"not in the layout");
    let mut descriptor = v2.descriptor();
    descriptor.digest = ghost;
    assert!(layout.set_tag("v1", &descriptor).is_err());
    assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp.")));
}
