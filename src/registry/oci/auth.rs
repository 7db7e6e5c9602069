//! Registry credentials (env, Docker config.json, credential helpers) and `WWW-Authenticate` parsing.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};

use super::OciError;

/// Where a credential was found, so an authentication error can say which one was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSource {
    /// `BAGBOY_REGISTRY_USERNAME` / `BAGBOY_REGISTRY_PASSWORD`.
    Environment,
    /// `auths` in a Docker config file.
    DockerConfig(PathBuf),
    /// `docker-credential-<name>` via `credHelpers` or `credsStore`.
    Helper(String),
    /// Passed in by the caller.
    Explicit,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::Environment => {
                f.write_str("BAGBOY_REGISTRY_USERNAME/BAGBOY_REGISTRY_PASSWORD")
            }
            CredentialSource::DockerConfig(path) => write!(f, "`auths` in {}", path.display()),
            CredentialSource::Helper(name) => write!(f, "docker-credential-{name}"),
            CredentialSource::Explicit => f.write_str("credentials passed by the caller"),
        }
    }
}

/// A registry credential. Secrets stay wrapped; `Debug` never shows them.
#[derive(Clone)]
pub enum Credential {
    Basic {
        username: String,
        password: SecretString,
        source: CredentialSource,
    },
    /// An OAuth2 refresh token (`identitytoken`, or helper Username `<token>`).
    IdentityToken {
        username: Option<String>,
        token: SecretString,
        source: CredentialSource,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic {
                username, source, ..
            } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"[REDACTED]")
                .field("source", source)
                .finish(),
            Credential::IdentityToken {
                username, source, ..
            } => f
                .debug_struct("IdentityToken")
                .field("username", username)
                .field("token", &"[REDACTED]")
                .field("source", source)
                .finish(),
        }
    }
}

impl Credential {
    /// A username/password credential given by the caller.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: SecretString::from(password.into()),
            source: CredentialSource::Explicit,
        }
    }

    /// An identity (refresh) token given by the caller.
    pub fn identity_token(token: impl Into<String>) -> Credential {
        Credential::IdentityToken {
            username: None,
            token: SecretString::from(token.into()),
            source: CredentialSource::Explicit,
        }
    }

    pub fn source(&self) -> &CredentialSource {
        match self {
            Credential::Basic { source, .. } | Credential::IdentityToken { source, .. } => source,
        }
    }

    /// `Authorization: Basic ...` value, for registries that use Basic auth directly.
    pub(crate) fn basic_header(&self) -> Option<SecretString> {
        match self {
            Credential::Basic {
                username, password, ..
            } => {
                let raw = format!("{username}:{}", password.expose_secret());
                let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
                Some(SecretString::from(format!("Basic {encoded}")))
            }
            Credential::IdentityToken { .. } => None,
        }
    }

    /// Finds credentials for `host` the way `docker` does, with bagboy's env vars first.
    pub fn discover(host: &str) -> Result<Option<Credential>, OciError> {
        Self::discover_with(host, &|name| std::env::var(name).ok())
    }

    /// `discover` with an injectable environment (tests must not mutate the process env).
    pub fn discover_with(
        host: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Credential>, OciError> {
        if let (Some(username), Some(password)) = (
            env("BAGBOY_REGISTRY_USERNAME"),
            env("BAGBOY_REGISTRY_PASSWORD"),
        ) {
            // Bound to one host: a checkout's bagboy.yaml can name any registry, and must not
            // receive the runner's credentials by naming its own server.
            match env("BAGBOY_REGISTRY_HOST").map(|h| h.trim().to_ascii_lowercase()) {
                Some(bound) if bound == host.to_ascii_lowercase() => {
                    return Ok(Some(Credential::Basic {
                        username,
                        password: SecretString::from(password),
                        source: CredentialSource::Environment,
                    }));
                }
                Some(_) => {}
                None => tracing::warn!(
                    "BAGBOY_REGISTRY_USERNAME/PASSWORD are set without BAGBOY_REGISTRY_HOST: \
                     they are not used (set BAGBOY_REGISTRY_HOST to the registry host they belong to)"
                ),
            }
        }
        let Some(path) = docker_config_path(env) else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(OciError::DockerConfig {
                    path,
                    detail: e.to_string(),
                })
            }
        };
        let config = DockerConfig::parse(&text).map_err(|detail| OciError::DockerConfig {
            path: path.clone(),
            detail,
        })?;
        config.lookup(host, &path, &run_helper)
    }
}

fn docker_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(dir) = env("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(Path::new(&dir).join("config.json"));
    }
    env("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| Path::new(&home).join(".docker").join("config.json"))
}

/// The parts of Docker's `config.json` that hold credentials.
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Default, serde::Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

impl fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthEntry")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Runs a helper: `(helper name, server) -> Ok(Some((username, secret)))`.
pub(crate) type HelperRunner =
    dyn Fn(&str, &str) -> Result<Option<(String, SecretString)>, OciError>;

/// The keys a host may be filed under in config.json.
fn host_keys(host: &str) -> Vec<String> {
    let mut keys = vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
        format!("https://{host}/"),
        format!("https://{host}/v1/"),
        format!("https://{host}/v2/"),
    ];
    if matches!(
        host,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        keys.splice(
            0..0,
            [
                "https://index.docker.io/v1/".to_string(),
                "index.docker.io".to_string(),
                "docker.io".to_string(),
                "registry-1.docker.io".to_string(),
            ],
        );
    }
    keys
}

/// Strips scheme and path so `https://ghcr.io/v2/` and `ghcr.io` compare equal.
fn normalise_key(key: &str) -> &str {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    without_scheme.split('/').next().unwrap_or(without_scheme)
}

impl DockerConfig {
    pub(crate) fn parse(text: &str) -> Result<DockerConfig, String> {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
    }

    fn find<'a, T>(map: &'a BTreeMap<String, T>, host: &str) -> Option<(&'a str, &'a T)> {
        let keys = host_keys(host);
        for key in &keys {
            if let Some((k, v)) = map.get_key_value(key) {
                return Some((k, v));
            }
        }
        let wanted: Vec<&str> = keys.iter().map(|k| normalise_key(k)).collect();
        map.iter()
            .find(|(k, _)| wanted.contains(&normalise_key(k)))
            .map(|(k, v)| (k.as_str(), v))
    }

    pub(crate) fn lookup(
        &self,
        host: &str,
        path: &Path,
        helper: &HelperRunner,
    ) -> Result<Option<Credential>, OciError> {
        let server_for_helper = if host_keys(host)
            .first()
            .is_some_and(|k| k == "https://index.docker.io/v1/")
        {
            "https://index.docker.io/v1/"
        } else {
            host
        };
        if let Some((_, name)) = Self::find(&self.cred_helpers, host) {
            return helper(name, server_for_helper)
                .map(|found| found.map(|(user, secret)| from_helper(name, user, secret)));
        }
        if let Some((key, entry)) = Self::find(&self.auths, host) {
            if let Some(cred) = entry.credential(path, key)? {
                return Ok(Some(cred));
            }
        }
        if let Some(store) = self.creds_store.as_deref().filter(|s| !s.is_empty()) {
            return helper(store, server_for_helper)
                .map(|found| found.map(|(user, secret)| from_helper(store, user, secret)));
        }
        Ok(None)
    }
}

fn from_helper(name: &str, username: String, secret: SecretString) -> Credential {
    let source = CredentialSource::Helper(name.to_string());
    if username == "<token>" {
        Credential::IdentityToken {
            username: None,
            token: secret,
            source,
        }
    } else {
        Credential::Basic {
            username,
            password: secret,
            source,
        }
    }
}

impl AuthEntry {
    fn credential(&self, path: &Path, key: &str) -> Result<Option<Credential>, OciError> {
        let source = CredentialSource::DockerConfig(path.to_path_buf());
        let (mut username, mut password) = (self.username.clone(), self.password.clone());
        if let Some(auth) = self.auth.as_deref().filter(|a| !a.is_empty()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
                .ok_or_else(|| OciError::DockerConfig {
                    path: path.to_path_buf(),
                    detail: format!("`auths.{key}.auth` is not base64 of user:password"),
                })?;
            username = Some(decoded.0);
            password = Some(decoded.1);
        }
        if let Some(token) = self.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken {
                username,
                token: SecretString::from(token.to_string()),
                source,
            }));
        }
        Ok(match (username, password) {
            (Some(username), Some(password)) if !username.is_empty() => Some(Credential::Basic {
                username,
                password: SecretString::from(password),
                source,
            }),
            _ => None,
        })
    }
}

/// Runs `docker-credential-<name> get` with the server on stdin.
fn run_helper(name: &str, server: &str) -> Result<Option<(String, SecretString)>, OciError> {
    let fail = |detail: String, source: Option<std::io::Error>| OciError::CredentialHelper {
        helper: name.to_string(),
        registry: server.to_string(),
        detail,
        source,
    };
    if name.contains(['/', '\\']) {
        return Err(fail(
            "helper names must not contain path separators".into(),
            None,
        ));
    }
    let mut child = Command::new(format!("docker-credential-{name}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail("could not start it (is it on PATH?)".into(), Some(e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail("could not write to its stdin".into(), Some(e)))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|e| fail("did not finish".into(), Some(e)))?;
    if !output.status.success() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        // Helpers report "no credentials" as a failure with this well-known message.
        if stdout.contains("credentials not found") {
            return Ok(None);
        }
        let stderr: String = String::from_utf8_lossy(&output.stderr)
            .chars()
            .take(200)
            .collect();
        return Err(fail(
            format!("exited with {}: {}", output.status, stderr.trim()),
            None,
        ));
    }
    #[derive(serde::Deserialize)]
    struct HelperOutput {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let parsed: HelperOutput = serde_json::from_slice(&output.stdout)
        .map_err(|e| fail(format!("printed invalid JSON: {e}"), None))?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((parsed.username, SecretString::from(parsed.secret))))
}

/// One challenge from `WWW-Authenticate`, e.g. `Bearer realm="...",service="...",scope="..."`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Lower-cased scheme: `basic`, `bearer`, ...
    pub scheme: String,
    /// Parameters with lower-cased names.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// Parses every challenge in a header value (RFC 7235: quoted strings, escapes, several challenges).
    pub fn parse_all(header: &str) -> Vec<Challenge> {
        let mut parser = Parser {
            s: header.as_bytes(),
            i: 0,
        };
        let mut out: Vec<Challenge> = Vec::new();
        loop {
            parser.skip(|b| b == b',' || b.is_ascii_whitespace());
            let Some(scheme) = parser.token() else { break };
            let mut challenge = Challenge {
                scheme: scheme.to_ascii_lowercase(),
                params: BTreeMap::new(),
            };
            loop {
                parser.skip(|b| b == b',' || b.is_ascii_whitespace());
                let save = parser.i;
                let Some(name) = parser.token() else { break };
                parser.skip(|b| b == b' ' || b == b'\t');
                if parser.peek() != Some(b'=') {
                    // A token not followed by `=` starts the next challenge.
                    parser.i = save;
                    break;
                }
                parser.i += 1;
                parser.skip(|b| b == b' ' || b == b'\t');
                let value = if parser.peek() == Some(b'"') {
                    parser.quoted()
                } else {
                    parser.token68().unwrap_or_default()
                };
                challenge.params.insert(name.to_ascii_lowercase(), value);
            }
            out.push(challenge);
            if parser.i >= parser.s.len() {
                break;
            }
        }
        out
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> Option<String> {
        let start = self.i;
        self.skip(f);
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn token(&mut self) -> Option<String> {
        self.take_while(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    }

    fn token68(&mut self) -> Option<String> {
        self.take_while(|b| b != b',' && !b.is_ascii_whitespace())
    }

    fn quoted(&mut self) -> String {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(next) = self.peek() {
                        out.push(next);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_with_commas_in_quotes() {
        let h = r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:acme/app:pull,push",error="insufficient_scope""#;
        let c = Challenge::parse_all(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c[0].param("scope"), Some("repository:acme/app:pull,push"));
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));
    }

    #[test]
    fn parses_several_challenges_and_escapes() {
        let h = r#"Basic realm="a \"quoted\" realm", charset=UTF-8, Bearer Realm=https://x/t , service="s""#;
        let c = Challenge::parse_all(h);
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some(r#"a "quoted" realm"#));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));
        assert_eq!(c[1].param("realm"), Some("https://x/t"));
        assert_eq!(c[1].param("service"), Some("s"));
        assert!(Challenge::parse_all("").is_empty());
        assert_eq!(Challenge::parse_all("Basic")[0].scheme, "basic");
    }

    fn no_helper(_: &str, _: &str) -> Result<Option<(String, SecretString)>, OciError> {
        panic!("helper must not run")
    }

    #[test]
    fn reads_auths_entries() {
        let config = DockerConfig::parse(
            r#"{"auths":{"https://ghcr.io":{"auth":"dXNlcjpwYXNzOndpdGg6Y29sb25z"},
                "https://index.docker.io/v1/":{"username":"hub","password":"pw"},
                "quay.io":{"identitytoken":"refresh-me"}}}"#,
        )
        .unwrap();
        let p = Path::new("/cfg.json");
        match config.lookup("ghcr.io", p, &no_helper).unwrap() {
            Some(Credential::Basic {
                username, password, ..
            }) => {
                assert_eq!(username, "user");
                assert_eq!(password.expose_secret(), "pass:with:colons");
            }
            other => panic!("{other:?}"),
        }
        let hub = config
            .lookup("registry-1.docker.io", p, &no_helper)
            .unwrap();
        assert!(matches!(hub, Some(Credential::Basic { ref username, .. }) if username == "hub"));
        let quay = config.lookup("quay.io", p, &no_helper).unwrap();
        assert!(matches!(quay, Some(Credential::IdentityToken { .. })));
        assert!(config.lookup("other.io", p, &no_helper).unwrap().is_none());
        let debug = format!("{quay:?}");
        assert!(!debug.contains("refresh-me"), "{debug}");
    }

    #[test]
    fn helpers_take_precedence_and_token_user_means_identity_token() {
        let config = DockerConfig::parse(
            r#"{"auths":{"ghcr.io":{"auth":"dXNlcjpwYXNz"}},"credHelpers":{"ghcr.io":"fake"},"credsStore":"store"}"#,
        )
        .unwrap();
        let helper = |name: &str, server: &str| {
            Ok(Some((
                if name == "fake" {
                    "<token>".to_string()
                } else {
                    format!("{name}-{server}")
                },
                SecretString::from("s3cret".to_string()),
            )))
        };
        let p = Path::new("/cfg.json");
        let cred = config.lookup("ghcr.io", p, &helper).unwrap().unwrap();
        assert!(matches!(cred, Credential::IdentityToken { .. }));
        assert_eq!(cred.source(), &CredentialSource::Helper("fake".into()));
        let other = config.lookup("example.com", p, &helper).unwrap().unwrap();
        assert!(
            matches!(other, Credential::Basic { ref username, .. } if username == "store-example.com")
        );
        assert!(!format!("{other:?}").contains("s3cret"));
    }

    #[test]
    fn env_vars_come_first_for_their_host_only() {
        let env = |k: &str| match k {
            "BAGBOY_REGISTRY_USERNAME" => Some("ci".to_string()),
            "BAGBOY_REGISTRY_PASSWORD" => Some("pw".to_string()),
            "BAGBOY_REGISTRY_HOST" => Some("GHCR.io".to_string()),
            "DOCKER_CONFIG" => Some("/nonexistent-bagboy-dir".to_string()),
            _ => None,
        };
        let cred = Credential::discover_with("ghcr.io", &env).unwrap().unwrap();
        assert_eq!(cred.source(), &CredentialSource::Environment);
        // Another host (a checkout naming its own server) gets nothing.
        assert!(Credential::discover_with("127.0.0.1:5000", &env)
            .unwrap()
            .is_none());
        // Unbound: not used at all.
        let unbound = |k: &str| (k != "BAGBOY_REGISTRY_HOST").then(|| env(k)).flatten();
        assert!(Credential::discover_with("ghcr.io", &unbound)
            .unwrap()
            .is_none());
        let none = Credential::discover_with("ghcr.io", &|k: &str| {
            (k == "DOCKER_CONFIG").then(|| "/nonexistent-bagboy-dir".to_string())
        })
        .unwrap();
        assert!(none.is_none());
    }

    #[test]
    fn reads_config_json_from_docker_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"auths":{"127.0.0.1:5000":{"username":"ci","password":"from-file"}}}"#,
        )
        .unwrap();
        let dir_str = dir.path().to_string_lossy().into_owned();
        let env = move |k: &str| (k == "DOCKER_CONFIG").then(|| dir_str.clone());
        let cred = Credential::discover_with("127.0.0.1:5000", &env)
            .unwrap()
            .unwrap();
        assert!(matches!(cred.source(), CredentialSource::DockerConfig(_)));
        assert!(Credential::discover_with("127.0.0.1:5001", &env)
            .unwrap()
            .is_none());

        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let err = Credential::discover_with("127.0.0.1:5000", &env).unwrap_err();
        assert!(matches!(err, OciError::DockerConfig { .. }), "{err}");
    }
}
