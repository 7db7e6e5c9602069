//! Test-side image pushing over plain HTTP (never through bagboy's client).

use base64::Engine as _;
use reqwest::blocking::RequestBuilder;
use serde_json::json;

use super::registry::{Auth, TestRegistry, TOKEN_SERVICE};
use super::{random_hex, sha256_digest};

/// Every manifest type, so the registry serves what it stores without conversion.
pub const ACCEPT_ALL: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Which manifest format `push_image_as` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    DockerSchema2,
    Oci,
}

/// A manifest the harness pushed: its digest, bytes and media type.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub digest: String,
    pub bytes: Vec<u8>,
    pub media_type: String,
}

impl TestRegistry {
    /// Authenticates a harness request as the admin user (Basic or a pull,push token).
    fn authed(&self, request: RequestBuilder, repo: &str) -> RequestBuilder {
        match self.auth() {
            Auth::None => request,
            Auth::Htpasswd { user, password } => request.basic_auth(user, Some(password)),
            Auth::Token(users) => {
                let admin = users
                    .iter()
                    .find(|u| u.actions.iter().any(|a| a == "push"))
                    .expect("token auth needs a user allowed to push");
                let server = self.token_server.as_ref().expect("token server");
                let resp = self
                    .http
                    .get(server.realm())
                    .query(&[
                        ("service", TOKEN_SERVICE),
                        ("scope", &format!("repository:{repo}:pull,push")),
                    ])
                    .basic_auth(&admin.name, Some(&admin.password))
                    .send()
                    .expect("token request");
                assert!(
                    resp.status().is_success(),
                    "token request failed: {}",
                    resp.status()
                );
                let body: serde_json::Value = resp.json_value();
                let token = body["token"]
                    .as_str()
                    .expect("token in response")
                    .to_string();
                request.bearer_auth(token)
            }
        }
    }

    /// Uploads a blob with a monolithic POST + PUT; returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let start = self
            .authed(
                self.http
                    .post(format!("{}/v2/{repo}/blobs/uploads/", self.base_url())),
                repo,
            )
            .send()
            .expect("start upload");
        assert_eq!(
            start.status().as_u16(),
            202,
            "start upload: {}",
            start.text().unwrap_or_default()
        );
        let location = start
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("upload Location")
            .to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base_url())
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .authed(
                self.http.put(format!("{location}{sep}digest={digest}")),
                repo,
            )
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .expect("finish upload");
        assert_eq!(
            put.status().as_u16(),
            201,
            "finish upload: {}",
            put.text().unwrap_or_default()
        );
        digest
    }

    /// PUTs manifest bytes under a tag or digest; returns the registry's digest.
    pub fn put_manifest_bytes(
        &self,
        repo: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> String {
        let resp = self
            .authed(
                self.http.put(format!(
                    "{}/v2/{repo}/manifests/{reference}",
                    self.base_url()
                )),
                repo,
            )
            .header("content-type", media_type)
            .body(bytes.to_vec())
            .send()
            .expect("put manifest");
        let status = resp.status();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        assert_eq!(
            status.as_u16(),
            201,
            "put manifest: {}",
            resp.text().unwrap_or_default()
        );
        let digest = digest.expect("Docker-Content-Digest");
        assert_eq!(
            digest,
            sha256_digest(bytes),
            "registry digest differs from the bytes"
        );
        digest
    }

    fn push_platform_image(&self, repo: &str, flavor: Flavor, arch: &str) -> Pushed {
        let layer = format!("layer-{}", random_hex()).into_bytes();
        let layer_digest = self.push_blob(repo, &layer);
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Labels": {"nonce": random_hex()}},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .expect("config json");
        let config_digest = self.push_blob(repo, &config);
        let (media_type, config_type, layer_type) = match flavor {
            Flavor::DockerSchema2 => (
                DOCKER_MANIFEST,
                "application/vnd.docker.container.image.v1+json",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            Flavor::Oci => (
                OCI_MANIFEST,
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
        };
        // Pretty-printed on purpose: a client that re-serialises would change the digest.
        let bytes = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "size": config.len(), "digest": config_digest},
            "layers": [{"mediaType": layer_type, "size": layer.len(), "digest": layer_digest}],
        }))
        .expect("manifest json");
        Pushed {
            digest: sha256_digest(&bytes),
            bytes,
            media_type: media_type.into(),
        }
    }

    /// Pushes a random single-platform Docker schema 2 image under `tag`; returns its digest.
    pub fn push_image(&self, repo: &str, tag: &str) -> String {
        self.push_image_as(repo, tag, Flavor::DockerSchema2).digest
    }

    pub fn push_image_as(&self, repo: &str, tag: &str, flavor: Flavor) -> Pushed {
        let image = self.push_platform_image(repo, flavor, "amd64");
        self.put_manifest_bytes(repo, tag, &image.bytes, &image.media_type);
        image
    }

    /// Pushes linux/amd64 + linux/arm64 images and an OCI index over them under `tag`.
    pub fn push_index(&self, repo: &str, tag: &str) -> String {
        self.push_index_full(repo, tag).digest
    }

    pub fn push_index_full(&self, repo: &str, tag: &str) -> Pushed {
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let image = self.push_platform_image(repo, Flavor::Oci, arch);
            self.put_manifest_bytes(repo, &image.digest, &image.bytes, &image.media_type);
            entries.push(json!({
                "mediaType": image.media_type,
                "size": image.bytes.len(),
                "digest": image.digest,
                "platform": {"architecture": arch, "os": "linux"},
            }));
        }
        let bytes = serde_json::to_vec_pretty(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": entries,
            "annotations": {"org.example.nonce": random_hex()},
        }))
        .expect("index json");
        let digest = self.put_manifest_bytes(repo, tag, &bytes, OCI_INDEX);
        Pushed {
            digest,
            bytes,
            media_type: OCI_INDEX.into(),
        }
    }

    /// Fetches a manifest's exact bytes and Content-Type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Option<(Vec<u8>, String)> {
        let resp = self
            .authed(
                self.http.get(format!(
                    "{}/v2/{repo}/manifests/{reference}",
                    self.base_url()
                )),
                repo,
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .expect("get manifest");
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert!(
            resp.status().is_success(),
            "get manifest: {}",
            resp.status()
        );
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Some((resp.bytes().expect("manifest body").to_vec(), content_type))
    }

    /// Deletes a blob (the registry runs with `storage.delete.enabled`), as a garbage
    /// collector or a retention policy would.
    pub fn delete_blob(&self, repo: &str, digest: &str) {
        let resp = self
            .authed(
                self.http
                    .delete(format!("{}/v2/{repo}/blobs/{digest}", self.base_url())),
                repo,
            )
            .send()
            .expect("delete blob");
        assert_eq!(resp.status().as_u16(), 202, "delete blob {digest}");
    }

    /// Re-puts the manifest at `digest` under `tag`.
    pub fn put_tag(&self, repo: &str, tag: &str, digest: &str) {
        let (bytes, content_type) = self
            .get_manifest(repo, digest)
            .expect("manifest to re-tag exists");
        let stored = self.put_manifest_bytes(repo, tag, &bytes, &content_type);
        assert_eq!(stored, digest);
    }

    /// The digest `tag` points at (HEAD, `Docker-Content-Digest`), or `None` if it does not exist.
    pub fn tag_digest(&self, repo: &str, tag: &str) -> Option<String> {
        let resp = self
            .authed(
                self.http
                    .head(format!("{}/v2/{repo}/manifests/{tag}", self.base_url())),
                repo,
            )
            .header("accept", ACCEPT_ALL)
            .send()
            .expect("head manifest");
        if resp.status().as_u16() == 404 {
            return None;
        }
        assert!(
            resp.status().is_success(),
            "head manifest: {}",
            resp.status()
        );
        resp.headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Basic credentials of the harness admin, for building a bagboy credential.
    pub fn admin_basic(&self) -> Option<(String, String)> {
        match self.auth() {
            Auth::None => None,
            Auth::Htpasswd { user, password } => Some((user.clone(), password.clone())),
            Auth::Token(users) => users
                .iter()
                .find(|u| u.actions.iter().any(|a| a == "push"))
                .map(|u| (u.name.clone(), u.password.clone())),
        }
    }
}

/// `reqwest::blocking` without the `json` feature.
trait JsonValue {
    fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::blocking::Response {
    fn json_value(self) -> serde_json::Value {
        let bytes = self.bytes().expect("response body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }
}

/// `Authorization: Basic` value, for raw requests in tests.
pub fn basic_header(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
