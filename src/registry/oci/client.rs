//! `OciClient`: manifests and tags over the OCI distribution API, with lazy auth and retries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LINK};
use reqwest::{Method, Response, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, warn};

use super::auth::{Challenge, Credential};
use super::error::{body_excerpt, registry_error_codes, OciError, RequestContext};
use super::{valid_tag, Descriptor, Digest, ImageRepo, Manifest, MEDIA_TYPE_DOCKER_V1_SIGNED};

/// Every manifest type bagboy can re-put, most preferred first; schema 1 only as a last resort.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.docker.distribution.manifest.v1+prettyjws;q=0.1";

const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";
/// Far above the 4 MiB registries accept for manifests, so only a misbehaving server hits it.
const MAX_MANIFEST_BYTES: usize = 16 << 20;
const MAX_ERROR_BODY_BYTES: usize = 64 << 10;
const MAX_TAG_PAGES: usize = 10_000;
/// A tag listing larger than this (all pages together) is refused: no real repository is near.
const MAX_TAG_LIST_BYTES: usize = 64 << 20;
const MAX_TAGS: usize = 1_000_000;

/// How the client talks to a registry.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Plain HTTP instead of HTTPS (local registries).
    pub insecure: bool,
    /// Whole-request timeout (the connect timeout is the shared client's, `http::CONNECT_TIMEOUT`).
    pub timeout: Duration,
    /// Extra attempts after a transient failure (connect error, timeout, 429, 502, 503, 504).
    pub retries: u32,
    /// First backoff delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Upper bound for a server's `Retry-After` and for backoff delays.
    pub max_retry_delay: Duration,
    /// `n` for tag listing pages; `None` lets the registry choose.
    pub tag_page_size: Option<u32>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            insecure: false,
            timeout: Duration::from_secs(30),
            retries: 3,
            backoff_base: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(30),
            tag_page_size: None,
        }
    }
}

impl ClientOptions {
    /// Defaults, overridden by `BAGBOY_HTTP_RETRIES` and `BAGBOY_HTTP_TIMEOUT_SECS` when they parse.
    pub fn from_env() -> ClientOptions {
        Self::default().with_env(&|name| std::env::var(name).ok())
    }

    pub fn with_env(mut self, env: &dyn Fn(&str) -> Option<String>) -> ClientOptions {
        if let Some(retries) = env("BAGBOY_HTTP_RETRIES").and_then(|v| v.trim().parse().ok()) {
            self.retries = retries;
        }
        if let Some(secs) = env("BAGBOY_HTTP_TIMEOUT_SECS")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
        {
            self.timeout = Duration::from_secs(secs);
        }
        self
    }
}

/// What the registry told us about its auth, so later requests can authenticate up front.
#[derive(Clone, Debug)]
enum AuthScheme {
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

struct CachedToken {
    token: SecretString,
    expires: Instant,
}

#[derive(Default)]
struct AuthState {
    scheme: Option<AuthScheme>,
    /// Bearer tokens by scope (the client is bound to one host).
    tokens: HashMap<String, CachedToken>,
}

/// A client for one registry host.
pub struct OciClient {
    host: String,
    base: Url,
    options: ClientOptions,
    credential: Option<Credential>,
    state: Mutex<AuthState>,
    /// Held while fetching a token, so concurrent requests share one fetch per scope.
    token_fetch: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OciClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OciClient")
            .field("base", &self.base.as_str())
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

/// One logical request; re-sent as-is on retries and after an auth challenge.
struct Call<'a> {
    method: Method,
    url: Url,
    accept: Option<&'static str>,
    content_type: Option<&'a str>,
    body: Option<&'a [u8]>,
    /// Token scope, e.g. `repository:acme/app:pull`.
    scope: Option<String>,
    ctx: RequestContext,
    /// Whether an attempt carried credentials (for honest error messages).
    sent_credentials: std::sync::atomic::AtomicBool,
}

enum Reference {
    Tag,
    Digest(Digest),
}

use crate::http::safe_url;

impl OciClient {
    /// A client for `host[:port]` with explicit credentials (or none).
    pub fn new(
        host: &str,
        options: ClientOptions,
        credential: Option<Credential>,
    ) -> Result<OciClient, OciError> {
        // Docker treats 127.0.0.0/8 as an insecure registry by default: a loopback registry
        // that answers plain HTTP is spoken to in plain HTTP without `insecure: true`.
        let plain = options.insecure || crate::http::loopback_speaks_plain_http(host);
        let scheme = if plain { "http" } else { "https" };
        let invalid = |reason: String| OciError::InvalidReference {
            input: host.to_string(),
            reason,
        };
        let base = Url::parse(&format!("{scheme}://{host}/"))
            .map_err(|e| invalid(format!("not a valid registry host: {e}")))?;
        Ok(OciClient {
            host: host.to_string(),
            base,
            options,
            credential,
            state: Mutex::new(AuthState::default()),
            token_fetch: tokio::sync::Mutex::new(()),
        })
    }

    /// A client for `repo`'s registry with credentials discovered from env and Docker config.
    pub fn for_repo(repo: &ImageRepo, options: ClientOptions) -> Result<OciClient, OciError> {
        let credential = Credential::discover(repo.host())?;
        OciClient::new(repo.host(), options, credential)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Where the credential this client sends came from (never the secret itself).
    pub fn credential_source(&self) -> Option<String> {
        self.credential.as_ref().map(|c| c.source().to_string())
    }

    /// `GET /v2/`: checks reachability and credentials. For diagnostics only.
    pub async fn ping(&self) -> Result<(), OciError> {
        let url = self.url("v2/")?;
        let call = self.call(Method::GET, url, None, None, None);
        let resp = self.execute(&call).await?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&call, resp).await)
        }
    }

    /// The descriptor a tag or digest resolves to, or `None` when the registry has no such manifest.
    pub async fn head_manifest(
        &self,
        repo: &ImageRepo,
        reference: &str,
    ) -> Result<Option<Descriptor>, OciError> {
        self.check_repo(repo)?;
        parse_reference(reference)?;
        let url = self.url(&format!("v2/{}/manifests/{reference}", repo.path()))?;
        let mut call = self.call(
            Method::HEAD,
            url,
            Some(repo),
            Some(reference),
            Some(pull(repo)),
        );
        call.accept = Some(MANIFEST_ACCEPT);
        let resp = self.execute(&call).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        let headers = resp.headers();
        let (Some(digest), Some(media_type)) = (
            header_str(headers, DOCKER_CONTENT_DIGEST),
            header_str(headers, CONTENT_TYPE.as_str()),
        ) else {
            // Some registries omit these on HEAD; a GET is the authoritative fallback.
            debug!(url = %call.ctx.url, "HEAD lacked Docker-Content-Digest or Content-Type; falling back to GET");
            return self
                .get_manifest(repo, reference)
                .await
                .map(|m| Some(m.descriptor()));
        };
        let digest = Digest::parse(digest)
            .map_err(|_| bad(&call, status, "invalid Docker-Content-Digest header"))?;
        let size = header_str(headers, CONTENT_LENGTH.as_str())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| bad(&call, status, "HEAD response has no valid Content-Length"))?;
        Ok(Some(Descriptor {
            digest,
            media_type: media_type.to_string(),
            size,
        }))
    }

    /// The manifest's exact bytes and Content-Type, verified against the requested digest
    /// and the registry's `Docker-Content-Digest`.
    pub async fn get_manifest(
        &self,
        repo: &ImageRepo,
        reference: &str,
    ) -> Result<Manifest, OciError> {
        match self.fetch_manifest(repo, reference, false).await? {
            Some(m) => Ok(m),
            // Not reached: without `missing_ok` a 404 is already an error.
            None => {
                let url = self.url(&format!("v2/{}/manifests/{reference}", repo.path()))?;
                Err(OciError::NotFound {
                    ctx: Box::new(
                        self.call(Method::GET, url, Some(repo), Some(reference), None)
                            .ctx,
                    ),
                    status: Some(404),
                    detail: String::new(),
                })
            }
        }
    }

    /// Like [`get_manifest`](Self::get_manifest), but `None` when the registry answers 404:
    /// one request both resolves a tag and fetches what it points at.
    pub async fn get_manifest_opt(
        &self,
        repo: &ImageRepo,
        reference: &str,
    ) -> Result<Option<Manifest>, OciError> {
        self.fetch_manifest(repo, reference, true).await
    }

    async fn fetch_manifest(
        &self,
        repo: &ImageRepo,
        reference: &str,
        missing_ok: bool,
    ) -> Result<Option<Manifest>, OciError> {
        self.check_repo(repo)?;
        let parsed = parse_reference(reference)?;
        let url = self.url(&format!("v2/{}/manifests/{reference}", repo.path()))?;
        let mut call = self.call(
            Method::GET,
            url,
            Some(repo),
            Some(reference),
            Some(pull(repo)),
        );
        call.accept = Some(MANIFEST_ACCEPT);
        let resp = self.execute(&call).await?;
        let status = resp.status();
        if missing_ok && status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        let header_digest = match header_str(resp.headers(), DOCKER_CONTENT_DIGEST) {
            Some(v) => Some(
                Digest::parse(v)
                    .map_err(|_| bad(&call, status, "invalid Docker-Content-Digest header"))?,
            ),
            None => None,
        };
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str()).map(str::to_string);
        let bytes = read_limited(resp, MAX_MANIFEST_BYTES, &call).await?;
        let media_type = match content_type {
            Some(ct) => ct,
            None => media_type_field(&bytes).ok_or_else(|| {
                bad(
                    &call,
                    status,
                    "manifest has neither Content-Type nor mediaType",
                )
            })?,
        };
        let signed_v1 = media_type.starts_with(MEDIA_TYPE_DOCKER_V1_SIGNED);
        let digest = match parsed {
            Reference::Digest(expected) => {
                let actual = expected.same_algorithm_of(&bytes);
                if actual != expected && !signed_v1 {
                    return Err(mismatch(&call, expected, "requested digest", actual));
                }
                expected
            }
            // A schema 1 signed manifest's digest covers the payload without signatures.
            Reference::Tag if signed_v1 => header_digest
                .clone()
                .unwrap_or_else(|| Digest::sha256_of(&bytes)),
            Reference::Tag => Digest::sha256_of(&bytes),
        };
        if let Some(header) = header_digest.filter(|_| !signed_v1) {
            let actual = header.same_algorithm_of(&bytes);
            if actual != header {
                return Err(mismatch(&call, header, "Docker-Content-Digest", actual));
            }
        }
        debug!(registry = %self.host, repository = repo.path(), reference, %digest, media_type, "fetched manifest");
        Ok(Some(Manifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Whether the registry still has blob `digest` (HEAD; `None` when it answers 404).
    pub async fn head_blob(
        &self,
        repo: &ImageRepo,
        digest: &Digest,
    ) -> Result<Option<u64>, OciError> {
        self.check_repo(repo)?;
        let url = self.url(&format!("v2/{}/blobs/{}", repo.path(), digest.as_str()))?;
        let call = self.call(
            Method::HEAD,
            url,
            Some(repo),
            Some(digest.as_str()),
            Some(pull(repo)),
        );
        let resp = self.execute(&call).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        Ok(Some(
            header_str(resp.headers(), CONTENT_LENGTH.as_str())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        ))
    }

    /// A small blob (an image config), verified against its digest; at most `limit` bytes.
    pub async fn get_blob(
        &self,
        repo: &ImageRepo,
        digest: &Digest,
        limit: usize,
    ) -> Result<Option<Vec<u8>>, OciError> {
        self.check_repo(repo)?;
        let url = self.url(&format!("v2/{}/blobs/{}", repo.path(), digest.as_str()))?;
        let call = self.call(
            Method::GET,
            url,
            Some(repo),
            Some(digest.as_str()),
            Some(pull(repo)),
        );
        let resp = self.execute(&call).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        let bytes = read_limited(resp, limit, &call).await?;
        let actual = digest.same_algorithm_of(&bytes);
        if &actual != digest {
            return Err(mismatch(&call, digest.clone(), "requested digest", actual));
        }
        Ok(Some(bytes))
    }

    /// Puts `manifest`'s exact bytes under `tag` and checks the registry stored the same digest.
    pub async fn put_manifest(
        &self,
        repo: &ImageRepo,
        tag: &str,
        manifest: &Manifest,
    ) -> Result<Digest, OciError> {
        self.check_repo(repo)?;
        parse_reference(tag)?;
        let url = self.url(&format!("v2/{}/manifests/{tag}", repo.path()))?;
        let mut call = self.call(Method::PUT, url, Some(repo), Some(tag), Some(push(repo)));
        call.content_type = Some(&manifest.media_type);
        call.body = Some(&manifest.bytes);
        let local = manifest.digest.same_algorithm_of(&manifest.bytes);
        if local != manifest.digest {
            return Err(mismatch(
                &call,
                manifest.digest.clone(),
                "manifest to put",
                local,
            ));
        }
        let resp = self.execute(&call).await?;
        let status = resp.status();
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        let Some(returned) = header_str(resp.headers(), DOCKER_CONTENT_DIGEST) else {
            warn!(url = %call.ctx.url, "registry accepted the manifest without Docker-Content-Digest; trusting local digest");
            return Ok(manifest.digest.clone());
        };
        let returned = Digest::parse(returned)
            .map_err(|_| bad(&call, status, "invalid Docker-Content-Digest header"))?;
        let expected = returned.same_algorithm_of(&manifest.bytes);
        if returned != expected {
            return Err(mismatch(&call, expected, "bytes that were put", returned));
        }
        debug!(registry = %self.host, repository = repo.path(), tag, digest = %manifest.digest, "put manifest");
        Ok(manifest.digest.clone())
    }

    /// Every tag of `repo`, following `Link: <...>; rel="next"` pages.
    pub async fn list_tags(&self, repo: &ImageRepo) -> Result<Vec<String>, OciError> {
        self.list_tags_paged(repo, self.options.tag_page_size).await
    }

    /// `list_tags` with an explicit page size.
    pub async fn list_tags_paged(
        &self,
        repo: &ImageRepo,
        page_size: Option<u32>,
    ) -> Result<Vec<String>, OciError> {
        self.check_repo(repo)?;
        let mut url = self.url(&format!("v2/{}/tags/list", repo.path()))?;
        if let Some(n) = page_size {
            url.query_pairs_mut().append_pair("n", &n.to_string());
        }
        let mut tags = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut total_bytes = 0usize;
        for _ in 0..MAX_TAG_PAGES {
            let call = self.call(Method::GET, url.clone(), Some(repo), None, Some(pull(repo)));
            if !seen.insert(url.clone()) {
                return Err(bad_ctx(
                    &call,
                    "tag list pagination loops back to a page already read",
                ));
            }
            let resp = self.execute(&call).await?;
            let status = resp.status();
            if !status.is_success() {
                return Err(self.status_error(&call, resp).await);
            }
            let next = header_str(resp.headers(), LINK.as_str()).and_then(next_link);
            let body = read_limited(resp, MAX_MANIFEST_BYTES, &call).await?;
            total_bytes += body.len();
            if total_bytes > MAX_TAG_LIST_BYTES {
                return Err(bad(
                    &call,
                    status,
                    &format!("tag list exceeds {MAX_TAG_LIST_BYTES} bytes"),
                ));
            }
            #[derive(serde::Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let page: TagList = serde_json::from_slice(&body)
                .map_err(|e| bad(&call, status, &format!("invalid tag list JSON: {e}")))?;
            tags.extend(page.tags.unwrap_or_default());
            if tags.len() > MAX_TAGS {
                return Err(bad(&call, status, &format!("more than {MAX_TAGS} tags")));
            }
            let Some(next) = next else {
                return Ok(tags);
            };
            let next_url = url
                .join(&next)
                .map_err(|_| bad(&call, status, "invalid Link header"))?;
            // Never follow a pagination link (and send credentials) to another origin.
            if next_url.origin() != self.base.origin() {
                return Err(bad(&call, status, "Link header points to another host"));
            }
            url = next_url;
        }
        Err(OciError::BadResponse {
            ctx: Box::new(self.call(Method::GET, url, Some(repo), None, None).ctx),
            status: None,
            detail: "tag list pagination does not end".into(),
        })
    }

    fn check_repo(&self, repo: &ImageRepo) -> Result<(), OciError> {
        if repo.host() == self.host {
            Ok(())
        } else {
            Err(OciError::InvalidReference {
                input: repo.to_string(),
                reason: format!("this client talks to {}, not {}", self.host, repo.host()),
            })
        }
    }

    fn url(&self, path: &str) -> Result<Url, OciError> {
        self.base
            .join(path)
            .map_err(|e| OciError::InvalidReference {
                input: path.to_string(),
                reason: e.to_string(),
            })
    }

    fn call<'a>(
        &self,
        method: Method,
        url: Url,
        repo: Option<&ImageRepo>,
        reference: Option<&str>,
        scope: Option<String>,
    ) -> Call<'a> {
        Call {
            ctx: RequestContext {
                registry: self.host.clone(),
                repository: repo.map(|r| r.path().to_string()),
                reference: reference.map(str::to_string),
                method: method.to_string(),
                url: safe_url(&url),
            },
            method,
            url,
            accept: None,
            content_type: None,
            body: None,
            scope,
            sent_credentials: Default::default(),
        }
    }

    /// Sends `call`, answering at most one auth challenge; later calls authenticate up front.
    async fn execute(&self, call: &Call<'_>) -> Result<Response, OciError> {
        let mut answered_challenge = false;
        loop {
            let auth = self.authorization(call).await?;
            let resp = self.send_with_retries(call, auth.as_ref()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(reqwest::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(Challenge::parse_all)
                .collect();
            let insufficient_scope = challenges
                .iter()
                .any(|c| c.param("error") == Some("insufficient_scope"));
            let learned = learn_scheme(&challenges);
            if answered_challenge || learned.is_none() {
                return Err(self.auth_failure(call, resp, insufficient_scope).await);
            }
            answered_challenge = true;
            let sent_basic =
                auth.is_some() && matches!(self.lock().scheme, Some(AuthScheme::Basic));
            if let Some(scope) = &call.scope {
                self.lock().tokens.remove(scope);
            }
            match learned {
                Some(AuthScheme::Basic) if sent_basic || self.credential.is_none() => {
                    return Err(self.auth_failure(call, resp, false).await);
                }
                Some(AuthScheme::Bearer { .. }) if auth.is_some() && insufficient_scope => {
                    return Err(self.auth_failure(call, resp, true).await);
                }
                _ => {}
            }
            debug!(registry = %self.host, scheme = ?learned, "answering auth challenge");
            self.lock().scheme = learned;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `Authorization` value for `call`, once the registry's scheme is known.
    async fn authorization(&self, call: &Call<'_>) -> Result<Option<SecretString>, OciError> {
        let scheme = self.lock().scheme.clone();
        match scheme {
            None => Ok(None),
            Some(AuthScheme::Basic) => Ok(self
                .credential
                .as_ref()
                .filter(|_| safe_for_credentials(&self.base))
                .and_then(Credential::basic_header)),
            Some(AuthScheme::Bearer { realm, service }) => {
                let key = call.scope.clone().unwrap_or_default();
                let cached = |this: &Self| {
                    this.lock()
                        .tokens
                        .get(&key)
                        .filter(|c| c.expires > Instant::now())
                        .map(|c| bearer(&c.token))
                };
                if let Some(header) = cached(self) {
                    return Ok(Some(header));
                }
                // One fetch at a time: whoever waited finds the token the first one got.
                let _fetching = self.token_fetch.lock().await;
                if let Some(header) = cached(self) {
                    return Ok(Some(header));
                }
                let token = self
                    .fetch_token(&realm, service.as_deref(), call.scope.as_deref(), call)
                    .await?;
                let header = bearer(&token.token);
                self.lock().tokens.insert(key, token);
                Ok(Some(header))
            }
        }
    }

    /// Gets a bearer token from the realm: Basic creds, a refresh-token grant, or anonymously.
    async fn fetch_token(
        &self,
        realm: &Url,
        service: Option<&str>,
        scope: Option<&str>,
        origin: &Call<'_>,
    ) -> Result<CachedToken, OciError> {
        let mut params: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            params.push(("service", service));
        }
        if let Some(scope) = scope {
            params.push(("scope", scope));
        }
        if !realm_allowed(realm, &self.base) {
            return Err(OciError::BadResponse {
                ctx: Box::new(origin.ctx.clone()),
                status: Some(401),
                detail: format!(
                    "the registry names the token realm {}, which is not HTTPS; bagboy sends no request there",
                    safe_url(realm)
                ),
            });
        }
        let (method, url, form, auth) = match &self.credential {
            Some(Credential::IdentityToken { token, .. }) => {
                let mut form: Vec<(&str, &str)> = params.clone();
                form.push(("grant_type", "refresh_token"));
                form.push(("client_id", "bagboy"));
                form.push(("refresh_token", token.expose_secret()));
                let body = form_encode(&form);
                (Method::POST, realm.clone(), Some(body), None)
            }
            Some(cred @ Credential::Basic { username, .. }) => {
                let mut url = realm.clone();
                url.query_pairs_mut()
                    .extend_pairs(params.iter().copied())
                    .append_pair("account", username);
                (Method::GET, url, None, cred.basic_header())
            }
            None => {
                let mut url = realm.clone();
                url.query_pairs_mut().extend_pairs(params.iter().copied());
                (Method::GET, url, None, None)
            }
        };
        let call = Call {
            ctx: RequestContext {
                method: method.to_string(),
                url: safe_url(&url),
                ..origin.ctx.clone()
            },
            method,
            url,
            accept: Some("application/json"),
            content_type: form.as_ref().map(|_| "application/x-www-form-urlencoded"),
            body: form.as_ref().map(|f| f.expose_secret().as_bytes()),
            scope: None,
            sent_credentials: Default::default(),
        };
        let resp = self.send_with_retries(&call, auth.as_ref()).await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(self.auth_failure(&call, resp, false).await);
        }
        if !status.is_success() {
            return Err(self.status_error(&call, resp).await);
        }
        let body = read_limited(resp, MAX_ERROR_BODY_BYTES, &call).await?;
        #[derive(serde::Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let parsed: TokenResponse = serde_json::from_slice(&body)
            .map_err(|_| bad(&call, status, "token response is not JSON"))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                bad(
                    &call,
                    status,
                    "token response has neither token nor access_token",
                )
            })?;
        // The token spec says to assume 60 s when the server says less or nothing.
        let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(60));
        let margin = Duration::from_secs(10);
        debug!(registry = %self.host, scope, lifetime_secs = lifetime.as_secs(), "obtained registry token");
        Ok(CachedToken {
            token: SecretString::from(token),
            expires: Instant::now() + lifetime - margin,
        })
    }

    async fn send_with_retries(
        &self,
        call: &Call<'_>,
        auth: Option<&SecretString>,
    ) -> Result<Response, OciError> {
        let mut headers = HeaderMap::new();
        if let Some(accept) = call.accept {
            headers.insert(ACCEPT, reqwest::header::HeaderValue::from_static(accept));
        }
        if let Some(ct) = call.content_type {
            let value =
                reqwest::header::HeaderValue::from_str(ct).map_err(|_| OciError::BadResponse {
                    ctx: Box::new(call.ctx.clone()),
                    status: None,
                    detail: format!("media type `{ct}` is not a valid header value"),
                })?;
            headers.insert(CONTENT_TYPE, value);
        }
        if let Some(auth) = auth {
            call.sent_credentials
                .store(true, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut value) = reqwest::header::HeaderValue::from_str(auth.expose_secret()) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        let result = crate::http::send(&self.retry_policy(), |client| {
            let mut request = client
                .request(call.method.clone(), call.url.clone())
                .timeout(self.options.timeout)
                .headers(headers.clone());
            if let Some(body) = call.body {
                request = request.body(body.to_vec());
            }
            request
        })
        .await;
        match result {
            Ok(resp) => {
                debug!(method = %call.method, url = %call.ctx.url, status = resp.status().as_u16(), "registry response");
                Ok(resp)
            }
            Err(e) if crate::http::is_plain_http_answer(&e) => Err(OciError::PlainHttp {
                ctx: Box::new(call.ctx.clone()),
                registry: self.host.clone(),
            }),
            Err(e) => Err(OciError::Transport {
                ctx: Box::new(call.ctx.clone()),
                kind: transport_kind(&e),
                source: e.without_url(),
            }),
        }
    }

    /// `backoff_base * 2^attempt`, jittered to 50–100 % so parallel clients spread out.
    fn retry_policy(&self) -> crate::http::RetryPolicy {
        crate::http::RetryPolicy {
            retries: self.options.retries,
            backoff_base: self.options.backoff_base,
            max_delay: self.options.max_retry_delay,
        }
    }

    async fn auth_failure(
        &self,
        call: &Call<'_>,
        resp: Response,
        insufficient_scope: bool,
    ) -> OciError {
        let status = resp.status();
        let body = read_limited(resp, MAX_ERROR_BODY_BYTES, call)
            .await
            .unwrap_or_default();
        let detail = self.excerpt(call, &body);
        let denied = status == StatusCode::FORBIDDEN
            || registry_error_codes(&body).iter().any(|c| c == "DENIED");
        if (insufficient_scope || denied) && self.credential.is_some() {
            let detail = if insufficient_scope && detail.is_empty() {
                "the credentials do not grant this access".to_string()
            } else if insufficient_scope {
                format!(
                    "{detail} (token lacks the `{}` scope)",
                    call.scope.as_deref().unwrap_or("requested")
                )
            } else {
                detail
            };
            return OciError::Denied {
                ctx: Box::new(call.ctx.clone()),
                status: Some(status.as_u16()),
                detail,
            };
        }
        let registry = &self.host;
        let sent = call
            .sent_credentials
            .load(std::sync::atomic::Ordering::Relaxed);
        let hint = match &self.credential {
            Some(_) if !sent && !safe_for_credentials(&self.base) => format!(
                "credentials for {registry} were found but not sent: bagboy sends credentials over plain HTTP only to loopback addresses"
            ),
            Some(cred) if !sent => format!(
                "credentials for {registry} from {} were found but the registry did not ask for them in a way bagboy answers",
                cred.source()
            ),
            None => format!(
                "no credentials found for {registry}: set BAGBOY_REGISTRY_HOST={registry} with \
                 BAGBOY_REGISTRY_USERNAME and BAGBOY_REGISTRY_PASSWORD (without the host they are not used), \
                 or run `docker login {registry}` (bagboy reads Docker config.json: credHelpers, auths, credsStore)"
            ),
            Some(cred) => format!(
                "the credentials from {} were rejected; bagboy takes credentials from \
                 BAGBOY_REGISTRY_USERNAME/BAGBOY_REGISTRY_PASSWORD (for the host in BAGBOY_REGISTRY_HOST), \
                 then Docker config.json (credHelpers, auths, credsStore)",
                cred.source()
            ),
        };
        OciError::AuthenticationFailed {
            ctx: Box::new(call.ctx.clone()),
            status: Some(status.as_u16()),
            detail,
            hint,
        }
    }

    /// What of an error body reaches the user: a short, cleaned excerpt from the registry
    /// itself; nothing from another host (a token realm may echo anything).
    fn excerpt(&self, call: &Call<'_>, body: &[u8]) -> String {
        if call.url.origin() == self.base.origin() {
            body_excerpt(body)
        } else {
            String::new()
        }
    }

    async fn status_error(&self, call: &Call<'_>, resp: Response) -> OciError {
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED {
            return self.auth_failure(call, resp, false).await;
        }
        let body = read_limited(resp, MAX_ERROR_BODY_BYTES, call)
            .await
            .unwrap_or_default();
        let detail = self.excerpt(call, &body);
        let ctx = Box::new(call.ctx.clone());
        let status_code = Some(status.as_u16());
        let codes = registry_error_codes(&body);
        if call.method == Method::PUT && immutability_error(&body) {
            OciError::ImmutableTag {
                ctx,
                status: status_code,
                detail,
            }
        } else if status == StatusCode::FORBIDDEN || codes.iter().any(|c| c == "DENIED") {
            OciError::Denied {
                ctx,
                status: status_code,
                detail,
            }
        } else if status == StatusCode::NOT_FOUND {
            OciError::NotFound {
                ctx,
                status: status_code,
                detail,
            }
        } else {
            OciError::BadResponse {
                ctx,
                status: status_code,
                detail,
            }
        }
    }
}

/// The registries' ways of saying "this tag cannot be moved": ECR's
/// `ImageTagAlreadyExistsException`, Harbor's `... configured as immutable`, Artifact
/// Registry's and Docker Hub's "immutable" tags, and "already exists" answers to a tag PUT.
fn immutability_error(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    text.contains("immutable")
        || text.contains("imagetagalreadyexistsexception")
        || text.contains("already exists")
}

fn learn_scheme(challenges: &[Challenge]) -> Option<AuthScheme> {
    let bearer = challenges
        .iter()
        .find(|c| c.scheme == "bearer")
        .and_then(|c| {
            let realm = Url::parse(c.param("realm")?).ok()?;
            matches!(realm.scheme(), "http" | "https").then(|| AuthScheme::Bearer {
                realm,
                service: c.param("service").map(str::to_string),
            })
        });
    bearer.or_else(|| {
        challenges
            .iter()
            .any(|c| c.scheme == "basic")
            .then_some(AuthScheme::Basic)
    })
}

use crate::http::safe_for_credentials;

fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(crate::http::is_loopback_host)
}

/// A token realm must be HTTPS, or plain HTTP on loopback for a registry on loopback.
fn realm_allowed(realm: &Url, registry: &Url) -> bool {
    realm.scheme() == "https" || (is_loopback(realm) && is_loopback(registry))
}

fn bearer(token: &SecretString) -> SecretString {
    SecretString::from(format!("Bearer {}", token.expose_secret()))
}

fn pull(repo: &ImageRepo) -> String {
    format!("repository:{}:pull", repo.path())
}

fn push(repo: &ImageRepo) -> String {
    format!("repository:{}:pull,push", repo.path())
}

fn form_encode(pairs: &[(&str, &str)]) -> SecretString {
    SecretString::from(url_encoded(pairs))
}

fn url_encoded(pairs: &[(&str, &str)]) -> String {
    // Url's query serializer is the application/x-www-form-urlencoded one.
    Url::parse("http://localhost/")
        .map(|mut url| {
            url.query_pairs_mut().extend_pairs(pairs.iter().copied());
            url.query().unwrap_or_default().to_string()
        })
        .unwrap_or_default()
}

fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    if reference.contains(':') {
        return Digest::parse(reference).map(Reference::Digest);
    }
    if valid_tag(reference) {
        Ok(Reference::Tag)
    } else {
        Err(OciError::InvalidReference {
            input: reference.to_string(),
            reason: "not a valid tag ([A-Za-z0-9_][A-Za-z0-9._-]{0,127}) or digest".into(),
        })
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn media_type_field(bytes: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value.get("mediaType")?.as_str().map(str::to_string)
}

/// Extracts the `rel="next"` target from a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=\"next\"" || p == "rel=next"
            })
            .then(|| target.to_string())
    })
}

use crate::http::transport_kind;

fn bad(call: &Call<'_>, status: StatusCode, detail: &str) -> OciError {
    OciError::BadResponse {
        ctx: Box::new(call.ctx.clone()),
        status: Some(status.as_u16()),
        detail: detail.to_string(),
    }
}

fn bad_ctx(call: &Call<'_>, detail: &str) -> OciError {
    OciError::BadResponse {
        ctx: Box::new(call.ctx.clone()),
        status: None,
        detail: detail.to_string(),
    }
}

fn mismatch(call: &Call<'_>, expected: Digest, from: &'static str, actual: Digest) -> OciError {
    OciError::DigestMismatch {
        ctx: Box::new(call.ctx.clone()),
        expected,
        expected_from: from,
        actual,
    }
}

async fn read_limited(resp: Response, limit: usize, call: &Call<'_>) -> Result<Vec<u8>, OciError> {
    let status = resp.status();
    crate::http::read_limited(resp, limit)
        .await
        .map_err(|e| match e {
            crate::http::BodyError::TooLarge { limit } => bad(
                call,
                status,
                &format!("response body exceeds {limit} bytes"),
            ),
            crate::http::BodyError::Transport(e) => OciError::Transport {
                ctx: Box::new(call.ctx.clone()),
                kind: transport_kind(&e),
                source: e.without_url(),
            },
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_headers() {
        assert_eq!(
            next_link(r#"</v2/acme/app/tags/list?last=b&n=2>; rel="next""#).as_deref(),
            Some("/v2/acme/app/tags/list?last=b&n=2")
        );
        assert_eq!(next_link(r#"<https://x/a>; rel="prev""#), None);
    }

    #[test]
    fn env_overrides_options() {
        let env = |k: &str| match k {
            "BAGBOY_HTTP_RETRIES" => Some("7".to_string()),
            "BAGBOY_HTTP_TIMEOUT_SECS" => Some("nope".to_string()),
            _ => None,
        };
        let o = ClientOptions::default().with_env(&env);
        assert_eq!(o.retries, 7);
        assert_eq!(o.timeout, ClientOptions::default().timeout);
    }

    #[test]
    fn credentials_only_over_https_or_to_loopback() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(safe_for_credentials(&u("https://ghcr.io/v2/")));
        assert!(safe_for_credentials(&u("http://127.0.0.1:5000/v2/")));
        assert!(safe_for_credentials(&u("http://127.8.9.10:5000/v2/")));
        assert!(safe_for_credentials(&u("http://[::1]:5000/v2/")));
        assert!(safe_for_credentials(&u("http://localhost:5000/v2/")));
        assert!(!safe_for_credentials(&u("http://10.0.0.5:5000/v2/")));
        assert!(!safe_for_credentials(&u("http://registry.internal/v2/")));
        // A realm is HTTPS, or loopback for a loopback registry.
        assert!(realm_allowed(
            &u("https://auth.example/token"),
            &u("http://10.0.0.5/")
        ));
        assert!(realm_allowed(
            &u("http://127.0.0.1:9/token"),
            &u("http://127.0.0.1:5000/")
        ));
        assert!(!realm_allowed(
            &u("http://127.0.0.1:9/token"),
            &u("https://ghcr.io/")
        ));
        assert!(!realm_allowed(
            &u("http://evil.example/token"),
            &u("http://127.0.0.1:5000/")
        ));
    }
}
