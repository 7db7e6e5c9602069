//! OCI distribution client and OCI image-layout store: read, re-put and list image manifests.

mod auth;
mod backend;
mod client;
mod error;
mod layout;
mod verify;

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

pub use auth::{Challenge, Credential, CredentialSource};
pub use backend::{Options, TagError, TagRegistry, DOCKER, MOVE_TAG, OCI_LAYOUT};
pub use client::{next_link, ClientOptions, OciClient, MANIFEST_ACCEPT};
pub use error::{OciError, RequestContext};
pub use layout::{OciLayout, REF_NAME_ANNOTATION};

/// OCI image index media type.
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest media type.
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2 "fat manifest") media type.
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest schema 2 media type.
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 1 signed manifest media type (legacy; accepted as a last resort).
pub const MEDIA_TYPE_DOCKER_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

const DOCKER_HUB_ALIASES: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];
/// Where Docker Hub's API actually lives; `docker.io` is only a name.
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";

/// An image repository: `host[:port]/path`, without tag or digest.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ImageRepo {
    input: String,
    host: String,
    path: String,
}

impl ImageRepo {
    /// Parses `host[:port]/path`; `docker.io/x` maps to Docker Hub's API host and `library/x`.
    pub fn parse(s: &str) -> Result<ImageRepo, OciError> {
        let invalid = |reason: String| OciError::InvalidReference {
            input: s.to_string(),
            reason,
        };
        let input = s.trim();
        if input.is_empty() {
            return Err(invalid("the image repository is empty".into()));
        }
        if let Some((scheme, _)) = input.split_once("://") {
            return Err(invalid(format!(
                "remove the `{scheme}://` scheme; write host[:port]/path (set `insecure: true` for plain HTTP)"
            )));
        }
        if input.contains('@') {
            return Err(invalid(
                "a repository must not contain a digest (`@sha256:...`); history entries record digests separately".into(),
            ));
        }
        let (first, rest) = match input.split_once('/') {
            Some((first, rest)) => (first, Some(rest)),
            None => (input, None),
        };
        let first_is_host =
            rest.is_some() && (first.contains('.') || first.contains(':') || first == "localhost");
        let (host, path) = if first_is_host {
            (first.to_string(), rest.unwrap_or_default().to_string())
        } else {
            ("docker.io".to_string(), input.to_string())
        };
        let last = path.rsplit('/').next().unwrap_or_default();
        if last.contains(':') {
            return Err(invalid(
                "a repository must not contain a tag (`:tag`); tags are listed separately".into(),
            ));
        }
        if !valid_host(&host) {
            return Err(invalid(format!(
                "`{host}` is not a valid registry host[:port]"
            )));
        }
        for component in path.split('/') {
            if !valid_path_component(component) {
                return Err(invalid(format!(
                    "path component `{component}` must be lowercase letters, digits and single separators (. _ -)"
                )));
            }
        }
        let (host, path) = if DOCKER_HUB_ALIASES.contains(&host.as_str()) {
            let path = if path.contains('/') {
                path
            } else {
                format!("library/{path}")
            };
            (DOCKER_HUB_HOST.to_string(), path)
        } else {
            (host, path)
        };
        Ok(ImageRepo {
            input: input.to_string(),
            host,
            path,
        })
    }

    /// The API host (and port) requests go to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The repository path inside the registry, e.g. `acme/myapp`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for ImageRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.input)
    }
}

impl fmt::Debug for ImageRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ImageRepo({:?} -> {}/{})",
            self.input, self.host, self.path
        )
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.parse::<u16>().is_ok());
    let name_ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    port_ok && name_ok
}

fn valid_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Distribution's grammar allows `.`, `_`, `__` and runs of `-` between alphanumerics.
    let mut prev_sep: Option<u8> = None;
    for &b in bytes {
        if alnum(b) {
            prev_sep = None;
            continue;
        }
        match (b, prev_sep) {
            (b'.' | b'_' | b'-', None) => prev_sep = Some(b),
            (b'_', Some(b'_')) => prev_sep = Some(b'!'),
            (b'-', Some(b'-')) => {}
            _ => return false,
        }
    }
    true
}

/// Validates a tag name the way registries do.
pub(crate) fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A content digest: `sha256:<64 lowercase hex>` or `sha512:<128 lowercase hex>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// Validates a digest string.
    pub fn parse(s: &str) -> Result<Digest, OciError> {
        let invalid = || OciError::InvalidDigest {
            input: s.chars().take(160).collect(),
        };
        let (algorithm, hex) = s.split_once(':').ok_or_else(invalid)?;
        let expected_len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(invalid()),
        };
        if hex.len() != expected_len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Digest(s.to_string()))
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest of `bytes` computed with this digest's algorithm.
    pub fn same_algorithm_of(&self, bytes: &[u8]) -> Digest {
        match self.algorithm() {
            "sha512" => Digest(format!("sha512:{}", hex::encode(Sha512::digest(bytes)))),
            _ => Digest::sha256_of(bytes),
        }
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.same_algorithm_of(bytes) == *self
    }

    /// `sha256` or `sha512`.
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    /// The hex part.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Digest {
    type Error = OciError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl std::str::FromStr for Digest {
    type Err = OciError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

/// What a tag points at: the manifest's digest, media type and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    pub size: u64,
}

/// A manifest exactly as the registry served it: re-putting `bytes` keeps `digest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    /// Wraps bytes, computing their sha256 digest.
    pub fn new(bytes: Vec<u8>, media_type: impl Into<String>) -> Manifest {
        let digest = Digest::sha256_of(&bytes);
        Manifest {
            bytes,
            media_type: media_type.into(),
            digest,
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            digest: self.digest.clone(),
            media_type: self.media_type.clone(),
            size: self.bytes.len() as u64,
        }
    }

    /// Whether this is an index / manifest list (multi-platform) rather than a single image.
    pub fn is_index(&self) -> bool {
        let base = self.media_type.split(';').next().unwrap_or_default().trim();
        base == MEDIA_TYPE_OCI_INDEX || base == MEDIA_TYPE_DOCKER_LIST
    }
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("digest", &self.digest)
            .field("media_type", &self.media_type)
            .field("size", &self.bytes.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_repositories() {
        let r = ImageRepo::parse("127.0.0.1:5000/acme/myapp").unwrap();
        assert_eq!((r.host(), r.path()), ("127.0.0.1:5000", "acme/myapp"));
        assert_eq!(r.to_string(), "127.0.0.1:5000/acme/myapp");
        let r = ImageRepo::parse("ghcr.io/acme/app").unwrap();
        assert_eq!((r.host(), r.path()), ("ghcr.io", "acme/app"));
        let r = ImageRepo::parse("docker.io/nginx").unwrap();
        assert_eq!(
            (r.host(), r.path()),
            ("registry-1.docker.io", "library/nginx")
        );
        assert_eq!(r.to_string(), "docker.io/nginx");
        let r = ImageRepo::parse("localhost/a__b/c-d.e").unwrap();
        assert_eq!(r.path(), "a__b/c-d.e");
    }

    #[test]
    fn rejects_tags_digests_and_junk() {
        for bad in [
            "127.0.0.1:5000/acme/myapp:v1",
            "ghcr.io/acme/app@sha256:abc",
            "https://ghcr.io/acme/app",
            "ghcr.io/Acme/app",
            "ghcr.io/acme//app",
            "ghcr.io:99999/app",
            "",
        ] {
            let err = ImageRepo::parse(bad).unwrap_err();
            assert!(
                matches!(err, OciError::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
        let err = ImageRepo::parse("ghcr.io/acme/app:v1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tag"), "{err}");
    }

    #[test]
    fn digests_validate() {
        let d = Digest::sha256_of(b"hello");
        assert!(Digest::parse(d.as_str()).is_ok());
        assert!(d.matches(b"hello"));
        assert!(Digest::parse(&format!("sha512:{}", "a".repeat(128))).is_ok());
        assert!(Digest::parse(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse("md5:abc").is_err());
    }
}
