//! The `cargo` backend: a release's crates on crates.io or an alternative registry with a
//! sparse index. A rollback yanks, per crate, the versions above the target that the history
//! recorded (and unyanks the target when it is yanked); undo puts each back. Reads go to the
//! index (`config.json`, one file per crate), writes to the registry's web API
//! (`DELETE …/yank`, `PUT …/unyank`), the token only to the API's own host.

mod credentials;
mod index;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use crate::config::RegistryConfig;
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    BoxFuture, Env, HttpBackendError, Kind, Observation, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};
use crate::yaml::{Node, Value as YValue};

use credentials::CargoName;
use index::Published;

pub const YANK: &str = "yank";
pub const UNYANK: &str = "unyank";

const CRATES_IO_INDEX: &str = "https://index.crates.io/";
const CRATES_IO_API: &str = "https://crates.io/";
const MAX_INDEX_FILE: usize = 32 << 20;
const MAX_API_ANSWER: usize = 1 << 20;
const CONCURRENCY: usize = 8;
/// What a step's `before`/`after` say about a version.
const AVAILABLE: &str = "available";
const YANKED: &str = "yanked";

pub static CARGO: Kind = Kind {
    name: "cargo",
    aliases: &["crates"],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_cargo,
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Empty: the project's `name`.
    pub crates: Vec<String>,
}

const KEYS: &[&str] = &["format", "registry", "crates"];

impl Options {
    pub fn parse(cfg: &RegistryConfig) -> Result<(Options, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut w = Vec::new();
        let mut o = Options::default();
        for (key, k, v) in cfg.options() {
            match key {
                "crates" => {
                    o.crates = p.string_list(key, v);
                    let mut seen = std::collections::HashSet::new();
                    for n in &o.crates {
                        if !seen.insert(n.to_ascii_lowercase().replace('_', "-")) {
                            p.push(
                                v.loc,
                                format!("`{n}` is listed twice (crate names are one whatever the case, `-` or `_`)"),
                            );
                        }
                        if !index::valid_name(n) {
                            p.push(v.loc, format!("`{n}` is not a crate name (letters, digits, `-`, `_`, starting with a letter)"));
                        }
                    }
                }
                _ => w.push(crate::suggest::unknown_key(k.loc, "cargo", key, KEYS)),
            }
        }
        if let Err(e) = endpoint(&cfg.registry) {
            p.push(cfg.loc, e);
        }
        p.finish(o, w)
    }
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Options::parse(cfg).map(|(_, w)| w)
}

/// `registry:` → the index URL and how cargo knows the registry.
fn endpoint(registry: &str) -> Result<(reqwest::Url, bool), String> {
    let r = registry.trim();
    if matches!(
        r.trim_end_matches('/'),
        "crates.io"
            | "crates-io"
            | "https://crates.io"
            | "sparse+https://index.crates.io"
            | "https://github.com/rust-lang/crates.io-index"
    ) {
        return Ok((
            reqwest::Url::parse(CRATES_IO_INDEX).map_err(|e| e.to_string())?,
            true,
        ));
    }
    let Some(url) = r.strip_prefix("sparse+") else {
        return Err(if r.starts_with("http://") || r.starts_with("https://") {
            format!(
                "a cargo `registry:` is `crates.io` or a sparse index URL: if `{r}` serves a sparse index, write `sparse+{r}`; a git index (a repository) is not read"
            )
        } else {
            format!("a cargo `registry:` is `crates.io` or a sparse index URL (`sparse+https://…/`), not `{r}`; for a registry cargo's config names, write the `index` it gives that name")
        });
    };
    let mut url = reqwest::Url::parse(url).map_err(|e| format!("`{r}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{r}` is not an http(s) index URL"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok((url, false))
}

fn open_cargo(cfg: &RegistryConfig, env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (mut opts, _) =
        Options::parse(cfg).map_err(|ps| crate::registry::options_error(cfg, ps))?;
    if opts.crates.is_empty() {
        match env.project_name.as_deref().filter(|n| index::valid_name(n)) {
            Some(n) => opts.crates.push(n.to_string()),
            None => return Err(RegistryError::Invalid {
                registry: cfg.registry.clone(),
                message:
                    "a cargo registry needs `crates:` (the project's `name` is not a crate name)"
                        .into(),
            }),
        }
    }
    let (index, crates_io) = endpoint(&cfg.registry).map_err(|message| RegistryError::Invalid {
        registry: cfg.registry.clone(),
        message,
    })?;
    // The token is the one the user's cargo config binds to this very index URL: a
    // `registry:` changed on a pull request names an index no token is stored for.
    let cargo = if crates_io {
        CargoName::CratesIo
    } else {
        CargoName::Alternative(credentials::name_for_index(&format!("sparse+{index}")))
    };
    let token = credentials::token(&cargo);
    Ok(Arc::new(CargoRegistry {
        name: cfg.registry.clone(),
        index,
        cargo,
        token,
        opts,
        config: tokio::sync::OnceCell::new(),
    }))
}

pub struct CargoRegistry {
    name: String,
    index: reqwest::Url,
    cargo: CargoName,
    token: Option<credentials::Found>,
    opts: Options,
    config: tokio::sync::OnceCell<Result<index::IndexConfig, String>>,
}

/// One crate of a recorded release.
#[derive(Clone, Debug, PartialEq)]
struct Recorded {
    name: String,
    version: String,
    cksum: Option<String>,
}

fn recorded(pkg: Option<&Package>) -> Vec<Recorded> {
    let Some(Node {
        value: YValue::Seq(items),
        ..
    }) = pkg.and_then(|p| p.extra.iter().find(|(k, _)| k == "crates").map(|(_, v)| v))
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let get = |k: &str| {
                i.entries()?
                    .find(|(key, _, _)| *key == k)
                    .and_then(|(_, _, v)| v.as_scalar().map(|s| s.text.clone()))
            };
            Some(Recorded {
                name: get("name")?,
                version: get("version")?,
                cksum: get("cksum"),
            })
        })
        .collect()
}

fn record_node(items: &[Recorded]) -> Node {
    Node::new(YValue::Seq(
        items
            .iter()
            .map(|r| {
                let mut f = vec![
                    (Node::str("name"), Node::str(r.name.as_str())),
                    (Node::str("version"), Node::str(r.version.as_str())),
                ];
                if let Some(c) = &r.cksum {
                    f.push((Node::str("cksum"), Node::str(c.as_str())));
                }
                Node::new(YValue::Map(f))
            })
            .collect(),
    ))
}

/// `crate@version` → (crate, version).
fn split_ref(r: &str) -> Option<(&str, &str)> {
    r.split_once('@')
        .filter(|(c, v)| !c.is_empty() && !v.is_empty())
}

fn sha256(cksum: &str) -> String {
    format!("sha256:{}", cksum.trim_start_matches("sha256:"))
}

fn same_origin(a: &reqwest::Url, b: &reqwest::Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// What a rollback leaves a crate's consumers with (for the plan's notes).
#[derive(Clone, Debug, PartialEq)]
struct Reach {
    target: String,
    /// What a fresh resolution of `^target` picks once the plan ran.
    resolves: Option<String>,
    /// Versions this plan yanks.
    yanked: Vec<String>,
}

struct CratePlan {
    steps: Vec<Step>,
    refusals: Vec<String>,
    warnings: Vec<String>,
    reach: Option<Reach>,
}

impl CargoRegistry {
    /// A server's words with the token taken out, should it echo it back.
    fn redact(&self, text: &str) -> String {
        match &self.token {
            Some(f) if !f.token.expose_secret().is_empty() => {
                text.replace(f.token.expose_secret(), "***")
            }
            _ => text.to_string(),
        }
    }

    fn input(&self, message: impl Into<String>) -> RegistryError {
        HttpBackendError::Input {
            registry: self.name.clone(),
            message: message.into(),
        }
        .into()
    }

    /// `config.json` of the index, read once per run.
    async fn index_config(&self) -> Result<&index::IndexConfig, RegistryError> {
        // Read once per run, failure included: thirty crates do not wait thirty times.
        let got = self
            .config
            .get_or_init(|| async {
                self.read_index_config()
                    .await
                    .map_err(|e| e.detail(&self.name))
            })
            .await;
        got.as_ref().map_err(|e| self.input(e.clone()))
    }

    async fn read_index_config(&self) -> Result<index::IndexConfig, RegistryError> {
        if self.cargo == CargoName::CratesIo {
            return Ok(index::IndexConfig {
                api: Some(CRATES_IO_API.into()),
                auth_required: false,
            });
        }
        let url = self
            .index
            .join("config.json")
            .map_err(|e| self.input(e.to_string()))?;
        let what = "reading config.json";
        let mut resp = self
            .request("(index)", what, None, |c| c.get(url.clone()))
            .await?;
        // An index that requires auth answers 401 to an anonymous config.json: cargo asks
        // again with the token, to the index's own host only.
        if resp.status().as_u16() == 401 {
            if let Some(t) = self.token_for(&url, &[&self.index]) {
                resp = self
                    .request("(index)", what, Some(t), |c| c.get(url.clone()))
                    .await?;
            }
        }
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let hint = match status {
                401 | 403 if self.token.is_none() => format!(
                    " (the index requires a token: {})",
                    credentials::where_to_put(&self.cargo)
                ),
                401 | 403 => " (the index refused the token)".to_string(),
                404 => {
                    " (is `registry:` the index URL, as cargo's config writes it, ending in `/`?)"
                        .to_string()
                }
                _ => String::new(),
            };
            return Err(self.input(format!(
                "reading the index's config.json answered HTTP {status}{hint}"
            )));
        }
        let body = crate::http::read_limited(resp, MAX_API_ANSWER)
            .await
            .map_err(|_| self.input("the index's config.json could not be read whole"))?;
        serde_json::from_slice(&body).map_err(|e| {
            self.input(format!(
                "the index's config.json is not what cargo reads: {e}"
            ))
        })
    }

    /// The web API's root: crates.io's, else what the index's `config.json` names (as cargo
    /// does: the index's operator says where its API is).
    async fn api(&self) -> Result<reqwest::Url, RegistryError> {
        let api = match self.cargo {
            CargoName::CratesIo => CRATES_IO_API.to_string(),
            CargoName::Alternative(_) => {
                self.index_config().await?.api.clone().ok_or_else(|| {
                    self.input(
                        "the index's config.json names no `api`: this registry takes no yanks",
                    )
                })?
            }
        };
        let api = if api.ends_with('/') {
            api
        } else {
            format!("{api}/")
        };
        reqwest::Url::parse(&api)
            .map_err(|e| self.input(format!("the index's API `{api}` is not a URL: {e}")))
    }

    /// The token, for a request to `url`: only to the registry's API, or its index when the
    /// index requires it (`auth-required`), and only over HTTPS or to this machine.
    fn token_for(&self, url: &reqwest::Url, allowed: &[&reqwest::Url]) -> Option<&str> {
        let t = self.token.as_ref()?;
        (allowed.iter().any(|a| same_origin(url, a)) && crate::http::safe_for_credentials(url))
            .then(|| t.token.expose_secret())
    }

    /// One request through the HTTP door, with the token when given; any status is returned.
    async fn request(
        &self,
        krate: &str,
        what: &str,
        token: Option<&str>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let policy = crate::http::RetryPolicy::from_env();
        let sent = crate::http::send(&policy, |client| {
            let req = build(client).timeout(Duration::from_secs(30));
            match token {
                // cargo sends the token as it is, without a scheme.
                Some(t) => req.header("Authorization", t),
                None => req,
            }
        });
        sent.await.map_err(|e| {
            HttpBackendError::Transport {
                registry: self.name.clone(),
                item: krate.to_string(),
                what: what.to_string(),
                kind: crate::http::transport_kind(&e),
            }
            .into()
        })
    }

    /// An API call: a status other than 2xx is an error with the registry's words.
    async fn send(
        &self,
        krate: &str,
        what: &str,
        token: Option<&str>,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let resp = self
            .request(krate, what, token, |c| {
                build(c).header("Accept", "application/json")
            })
            .await?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let body = crate::http::read_limited(resp, MAX_API_ANSWER)
            .await
            .unwrap_or_default();
        let mut detail = api_errors(&body)
            .map(|d| format!(": {}", self.redact(&d)))
            .unwrap_or_default();
        if matches!(status, 401 | 403) {
            detail.push_str(&match &self.token {
                None => format!(" (no token: {})", credentials::where_to_put(&self.cargo)),
                Some(f) => format!(
                    " (the token from {} was refused, or may not yank {krate})",
                    f.source
                ),
            });
        }
        Err(HttpBackendError::Status {
            registry: self.name.clone(),
            item: krate.to_string(),
            what: what.to_string(),
            status,
            detail,
        }
        .into())
    }

    /// The crate's published versions, from the index (404: none).
    async fn versions(&self, krate: &str) -> Result<Vec<Published>, RegistryError> {
        let cfg = self.index_config().await?;
        let url = self
            .index
            .join(&index::path(krate))
            .map_err(|e| self.input(e.to_string()))?;
        let allowed: &[&reqwest::Url] = if cfg.auth_required {
            &[&self.index]
        } else {
            &[]
        };
        let token = self.token_for(&url, allowed);
        let resp = self
            .request(krate, "reading the index", token, |c| c.get(url.clone()))
            .await?;
        let status = resp.status().as_u16();
        if matches!(status, 404 | 410 | 451) {
            return Ok(Vec::new());
        }
        if !(200..300).contains(&status) {
            return Err(HttpBackendError::Status {
                registry: self.name.clone(),
                item: krate.to_string(),
                what: "reading the index".into(),
                status,
                detail: if matches!(status, 401 | 403) && self.token.is_none() {
                    format!(
                        " (the index wants a token: {})",
                        credentials::where_to_put(&self.cargo)
                    )
                } else {
                    String::new()
                },
            }
            .into());
        }
        let body = crate::http::read_limited(resp, MAX_INDEX_FILE)
            .await
            .map_err(|_| self.input(format!("{krate}: the index file could not be read whole")))?;
        index::parse(krate, &body).map_err(|(line, why)| {
            self.input(format!(
                "{krate}: the index file {} line {line}: {why}",
                index::path(krate)
            ))
        })
    }

    /// Yank or unyank `krate@vers` through the web API.
    async fn set_yanked(&self, krate: &str, vers: &str, yanked: bool) -> Result<(), RegistryError> {
        let api = self.api().await?;
        let what = if yanked { "yanking" } else { "unyanking" };
        let path = format!(
            "api/v1/crates/{krate}/{vers}/{}",
            if yanked { "yank" } else { "unyank" }
        );
        let url = api.join(&path).map_err(|e| self.input(e.to_string()))?;
        let Some(token) = self.token_for(&url, &[&api]) else {
            return Err(self.input(match &self.token {
                None => format!(
                    "{what} {krate}@{vers} needs a token: {}",
                    credentials::where_to_put(&self.cargo)
                ),
                Some(_) => format!(
                    "the token is not sent to {} (plain HTTP to a host that is not this machine)",
                    crate::http::safe_url(&url)
                ),
            }));
        };
        let resp = self
            .send(krate, &format!("{what} {vers}"), Some(token), |c| {
                if yanked {
                    c.delete(url.clone())
                } else {
                    c.put(url.clone())
                }
            })
            .await?;
        // Older registries answer 200 with `{"errors": [...]}`.
        let body = crate::http::read_limited(resp, MAX_API_ANSWER)
            .await
            .unwrap_or_default();
        if let Some(d) = api_errors(&body) {
            return Err(HttpBackendError::Status {
                registry: self.name.clone(),
                item: krate.to_string(),
                what: format!("{what} {vers}"),
                status: 200,
                detail: format!(": {}", self.redact(&d)),
            }
            .into());
        }
        Ok(())
    }

    async fn plan_crate(
        &self,
        krate: &str,
        input: &PlanInput<'_>,
        target: &semver::Version,
        above: &[semver::Version],
        rec: Option<&Recorded>,
    ) -> Result<CratePlan, RegistryError> {
        let published = self.versions(krate).await?;
        if published.is_empty() {
            return Err(self.input(format!(
                "{krate} is not in the index at {} (a typo in `crates:`?)",
                self.index
            )));
        }
        let mut out = CratePlan {
            steps: Vec::new(),
            refusals: Vec::new(),
            warnings: Vec::new(),
            reach: None,
        };
        let find = |v: &semver::Version| published.iter().find(|p| &p.version == v);
        let t = target.to_string();
        match find(target) {
            None if rec.is_some() || input.target_package.is_none() => {
                out.refusals.push(format!(
                    "{}: {krate}@{t} is not in the index: nothing to roll back to",
                    self.name
                ));
                return Ok(out);
            }
            None => out.warnings.push(format!(
                "{}: {krate} has no version {t} (the target release did not include it): its later versions are yanked all the same",
                self.name
            )),
            Some(p) => {
                if let (Some(r), Some(live)) = (rec.and_then(|r| r.cksum.as_deref()), p.cksum.as_deref()) {
                    if sha256(r) != sha256(live) {
                        out.refusals.push(format!(
                            "{}: {krate}@{t} has checksum {}, not {} recorded: the target was republished; --force rolls back to it anyway",
                            self.name,
                            sha256(live),
                            sha256(r)
                        ));
                    }
                }
                if p.yanked {
                    let mut s = Step::new(Action::change(UNYANK), format!("{krate}@{}", p.vers));
                    s.before = Some(YANKED.into());
                    s.after = Some(AVAILABLE.into());
                    s.detail = Some("the target is yanked (by an earlier rollback?): unyanked".into());
                    out.steps.push(s);
                }
            }
        }
        let mut yanked = Vec::new();
        for v in above {
            let Some(p) = find(v) else { continue };
            let mut s = Step::new(Action::unchanged(), format!("{krate}@{}", p.vers));
            s.after = Some(YANKED.into());
            if p.yanked {
                s.before = Some(YANKED.into());
                s.detail = Some("already yanked".into());
            } else {
                s.action = Action::change(YANK);
                s.before = Some(AVAILABLE.into());
                yanked.push(p.vers.clone());
            }
            out.steps.push(s);
        }
        // Versions above the target bagboy never recorded still win fresh resolutions.
        let req = semver::VersionReq::parse(&format!("^{t}")).ok();
        let mut unrecorded: Vec<&Published> = published
            .iter()
            .filter(|p| p.version > *target && !p.yanked && !above.contains(&p.version))
            .filter(|p| req.as_ref().is_some_and(|r| r.matches(&p.version)))
            .collect();
        unrecorded.sort_by(|a, b| a.version.cmp(&b.version));
        for p in unrecorded {
            let mut s = Step::new(Action::left_in_place(), format!("{krate}@{}", p.vers));
            s.before = Some(AVAILABLE.into());
            s.after = Some(AVAILABLE.into());
            s.detail = Some(format!(
                "not a release the history records: fresh resolutions of `^{t}` pick it; yank it with `cargo yank` if it is bad too"
            ));
            out.warnings.push(format!(
                "{}: {krate}@{} is published, not yanked and not recorded: fresh resolutions of `^{t}` get it, not {t}",
                self.name, p.vers
            ));
            out.steps.push(s);
        }
        let after: Vec<(&semver::Version, bool)> = published
            .iter()
            .map(|p| {
                let is_target = &p.version == target;
                (
                    &p.version,
                    !is_target && (p.yanked || yanked.contains(&p.vers)),
                )
            })
            .collect();
        out.reach = Some(Reach {
            target: t,
            resolves: req
                .as_ref()
                .and_then(|r| index::resolves(after, r))
                .map(|v| v.to_string()),
            yanked,
        });
        Ok(out)
    }
}

/// `{"errors":[{"detail":"…"}]}` → the details, shortened.
fn api_errors(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let details: Vec<String> = v["errors"]
        .as_array()?
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .map(|d| d.chars().take(200).collect())
        .collect();
    (!details.is_empty()).then(|| details.join("; "))
}

fn notes(reaches: &[(String, Reach)]) -> Vec<String> {
    crate::registry::group_alike(reaches)
        .into_iter()
        .map(|(r, names)| {
            let (head, c) = match names.as_slice() {
                [one] => (format!("who this reaches ({one}):"), one.to_string()),
                many => (format!("who this reaches (each of {}):", many.join(", ")), "<crate>".to_string()),
            };
            let t = &r.target;
            let mut parts = Vec::new();
            match r.resolves.as_deref() {
                Some(v) if v == t => parts.push(format!(
                    "fresh resolutions and `cargo update` of a requirement {t} satisfies (`{c} = \"{t}\"`) get {t}, the highest version not yanked"
                )),
                Some(v) => parts.push(format!(
                    "fresh resolutions and `cargo update` of `{c} = \"{t}\"` get {v}, which this plan leaves in place"
                )),
                None => parts.push(format!("no version satisfies `{c} = \"{t}\"` once this plan ran")),
            }
            if let Some(y) = r.yanked.last() {
                let to = r.resolves.as_deref().unwrap_or("a version not yanked");
                parts.push(format!(
                    "a Cargo.lock that has {} keeps building with it, without a warning, until `cargo update` moves it to {to}",
                    r.yanked.join(" or ")
                ));
                parts.push(format!("`cargo install {c}@{y}` fails: it is yanked"));
            }
            format!("{head} {}", parts.join("; "))
        })
        .collect()
}

impl Registry for CargoRegistry {
    fn format(&self) -> &str {
        CARGO.name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> BoxFuture<'_, crate::registry::Probe> {
        Box::pin(async move {
            let credential = self.token.as_ref().map(|f| f.source.clone());
            // Every crate: a typo in the third is as fatal as in the first.
            let mut found = Vec::new();
            let mut reached = Ok(());
            for k in &self.opts.crates {
                match self.versions(k).await {
                    Ok(v) if v.is_empty() => {
                        reached = Err(format!("{k} is not in the index at {}", self.index));
                        break;
                    }
                    Ok(v) => found.push(format!("{k} ({})", v.len())),
                    Err(e) => {
                        reached = Err(e.to_string());
                        break;
                    }
                }
            }
            let reached = reached.map(|()| {
                format!(
                    "the index at {} lists versions of {}{}",
                    self.index,
                    found.join(", "),
                    if self.token.is_none() {
                        "; no token found: a rollback would stop before any change"
                    } else {
                        ""
                    }
                )
            });
            crate::registry::Probe {
                credential,
                reached: Some(reached),
            }
        })
    }

    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(async move {
            let mut refusals = Vec::new();
            let mut warnings = Vec::new();
            let mut steps = Vec::new();
            let mut reaches = Vec::new();
            let Some(target) = input.target.version.semver().cloned() else {
                refusals.push(format!(
                    "{}: {} is not a semver version, so no crate version can be it",
                    self.name, input.target.version
                ));
                return Ok(PlanOutcome {
                    plan: RegistryPlan {
                        format: CARGO.name.into(),
                        registry: self.name.clone(),
                        steps,
                        notes: Vec::new(),
                    },
                    refusals,
                    warnings,
                });
            };
            // Per crate, the versions above the target the history recorded for it: the bad
            // release, and any later one rolled back from. A crate added to `crates:` later
            // has none recorded before it joined, and none of those are yanked.
            let recorded_all: Vec<Recorded> = input
                .deployments
                .iter()
                .filter_map(|d| d.package(&self.name))
                .flat_map(|p| recorded(Some(p)))
                .collect();
            let above = |k: &str| -> Vec<semver::Version> {
                recorded_all
                    .iter()
                    .filter(|r| r.name == k)
                    .filter_map(|r| semver::Version::parse(&r.version).ok())
                    .filter(|v| *v > target)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect()
            };
            let recs = recorded(input.target_package);
            let input = &input;
            let target = &target;
            let mut results = Vec::new();
            for chunk in self.opts.crates.chunks(CONCURRENCY) {
                results.extend(
                    futures_util::future::join_all(chunk.iter().map(|k| {
                        let rec = recs.iter().find(|r| &r.name == k);
                        let above = above(k);
                        async move { self.plan_crate(k, input, target, &above, rec).await }
                    }))
                    .await,
                );
            }
            for (k, r) in self.opts.crates.iter().zip(results) {
                let p = r?;
                steps.extend(p.steps);
                refusals.extend(p.refusals);
                warnings.extend(p.warnings);
                reaches.extend(p.reach.map(|r| (k.clone(), r)));
            }
            if steps.iter().any(|s| s.action.changes()) && self.token.is_none() {
                warnings.push(format!(
                    "{}: no token found ({}): running this plan stops before anything changes",
                    self.name,
                    credentials::where_to_put(&self.cargo)
                ));
            }
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: CARGO.name.into(),
                    registry: self.name.clone(),
                    steps,
                    notes: notes(&reaches),
                },
                refusals,
                warnings,
            })
        })
    }

    /// Before anything anywhere changes: a token, and the right to yank each crate. An unyank
    /// of a version that is not yanked changes nothing and is refused without yank rights
    /// (crates.io and kellnr check ownership first), so it proves the token can do the steps.
    fn prepare<'a>(&'a self, steps: &'a [Step]) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let changing: Vec<&Step> = steps.iter().filter(|s| s.action.changes()).collect();
            if changing.is_empty() {
                return Ok(());
            }
            if self.token.is_none() {
                return Err(self.input(format!(
                    "no token to yank with: {}",
                    credentials::where_to_put(&self.cargo)
                )));
            }
            self.api().await?;
            // One no-op per crate: an unyank of a version about to be yanked (not yanked now),
            // else, for a crate whose only step unyanks, a yank of that (yanked) version.
            let mut probes: Vec<(&str, &str)> = Vec::new();
            for action in [YANK, UNYANK] {
                for s in changing.iter().filter(|s| s.action.as_str() == action) {
                    if let Some((k, v)) = split_ref(&s.reference) {
                        if !probes.iter().any(|(x, _)| *x == k) {
                            probes.push((k, v));
                        }
                    }
                }
            }
            for chunk in probes.chunks(CONCURRENCY) {
                let got = futures_util::future::join_all(chunk.iter().map(|(k, v)| async move {
                    // Only what the index shows now: setting a version to the state it is in
                    // changes nothing.
                    let live = self.versions(k).await?;
                    match live.iter().find(|p| p.vers == *v) {
                        Some(p) => self.set_yanked(k, v, p.yanked).await,
                        None => Ok(()),
                    }
                }))
                .await;
                for r in got {
                    r.map_err(|e| match e {
                        RegistryError::Backend(_) if e.is_input() => self.input(format!(
                            "the token may not yank, checked before any change by setting a version to the state it is in: {}",
                            e.detail(&self.name)
                        )),
                        other => other,
                    })?;
                }
            }
            Ok(())
        })
    }

    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Value, RegistryError>> {
        Box::pin(async move {
            let (k, v) = split_ref(&step.reference)
                .ok_or_else(|| self.input(format!("bad step reference {}", step.reference)))?;
            match step.action.as_str() {
                YANK => self.set_yanked(k, v, true).await?,
                UNYANK => self.set_yanked(k, v, false).await?,
                other => return Err(self.input(format!("`{other}` is not a cargo step"))),
            }
            Ok(json!({ "before": step.before }))
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        _state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        // Undo writes the observed state back; doing so when the step never landed is a no-op.
        Box::pin(async move {
            let (k, v) = split_ref(&step.reference)
                .ok_or_else(|| self.input(format!("bad step reference {}", step.reference)))?;
            let was_yanked = step.before.as_deref() == Some(YANKED);
            match step.action.as_str() {
                YANK | UNYANK => self.set_yanked(k, v, was_yanked).await,
                _ => Ok(()),
            }
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>> {
        Box::pin(async move {
            let Some(want) = version.semver().cloned() else {
                return Err(self.input(format!(
                    "{version} is not a semver version, so no crate version can be it"
                )));
            };
            let mut got = Vec::new();
            for chunk in self.opts.crates.chunks(CONCURRENCY) {
                let r =
                    futures_util::future::join_all(chunk.iter().map(|k| self.versions(k))).await;
                got.extend(chunk.iter().zip(r));
            }
            let mut items = Vec::new();
            let mut warnings = Vec::new();
            for (k, r) in got {
                let published = r?;
                if published.is_empty() {
                    return Err(self.input(format!(
                        "{k} is not in the index at {} (a typo in `crates:`?)",
                        self.index
                    )));
                }
                let Some(p) = published.iter().find(|p| p.version == want) else {
                    return Err(self.input(format!(
                        "{k} has no version {want} in the index: publish it before recording"
                    )));
                };
                if p.yanked {
                    warnings.push(format!(
                        "{}: {k}@{} is yanked; recorded all the same (a rollback to this release unyanks it)",
                        self.name, p.vers
                    ));
                }
                items.push(Recorded {
                    name: k.clone(),
                    version: p.vers.clone(),
                    cksum: p.cksum.as_deref().map(sha256),
                });
            }
            let mut pkg = Package::new(CARGO.name, &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.extra.push(("crates".into(), record_node(&items)));
            Ok(Observation {
                package: pkg,
                warnings,
            })
        })
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        _undo: Option<&'a Value>,
        recorded_pkgs: &'a [&'a Package],
        target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some((k, v)) = split_ref(&step.reference) else {
                return Err("not a crate@version reference".into());
            };
            if !self.opts.crates.iter().any(|c| c == k) {
                return Err(format!("{k} is not a crate of this registry's config"));
            }
            let known = recorded_pkgs
                .iter()
                .flat_map(|p| recorded(Some(p)))
                .any(|r| r.name == k && r.version == v);
            if !known {
                return Err(format!("the history records no release of {k}@{v}"));
            }
            // A rollback to `target` yanks only versions above it and unyanks only it.
            let target = Version::parse(target)
                .ok()
                .and_then(|t| t.semver().cloned())
                .ok_or_else(|| format!("the plan's target {target} is not a crate version"))?;
            let version =
                semver::Version::parse(v).map_err(|_| format!("{v} is not a crate version"))?;
            let states = (step.before.as_deref(), step.after.as_deref());
            match (step.action.as_str(), states) {
                (YANK, _) if version <= target => Err(format!(
                    "a rollback to {target} never yanks {k}@{v}, which is not above it"
                )),
                (UNYANK, _) if version != target => Err(format!(
                    "a rollback to {target} unyanks only {k}@{target}, not {v}"
                )),
                (YANK, (Some(AVAILABLE), Some(YANKED))) => Ok(()),
                (UNYANK, (Some(YANKED), Some(AVAILABLE))) => Ok(()),
                (YANK | UNYANK, _) => {
                    Err("the step's before and after disagree with its action".into())
                }
                (other, _) => Err(format!("`{other}` is not a cargo step")),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_cargo_reads() {
        assert_eq!(
            endpoint("crates.io").unwrap(),
            (reqwest::Url::parse(CRATES_IO_INDEX).unwrap(), true)
        );
        let (u, io) = endpoint("sparse+http://127.0.0.1:8000/api/v1/crates").unwrap();
        assert!(!io);
        assert_eq!(u.as_str(), "http://127.0.0.1:8000/api/v1/crates/");
        assert!(endpoint("https://example.com/index")
            .unwrap_err()
            .contains("sparse+https://example.com/index"));
        assert!(endpoint("my-registry").is_err());
        assert!(endpoint("sparse+file:///tmp/x").is_err());
    }

    #[test]
    fn api_errors_are_read_and_shortened() {
        let body = br#"{"errors":[{"detail":"must already be an owner to yank or unyank"}]}"#;
        assert_eq!(
            api_errors(body).unwrap(),
            "must already be an owner to yank or unyank"
        );
        assert!(api_errors(br#"{"ok":true}"#).is_none());
        assert!(api_errors(b"<html>").is_none());
        let long = format!(r#"{{"errors":[{{"detail":"{}"}}]}}"#, "x".repeat(1000));
        assert_eq!(api_errors(long.as_bytes()).unwrap().len(), 200);
    }
}
