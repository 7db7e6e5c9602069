//! The `npm` backend: dist-tag surgery on an npm registry. A rollback points each recorded
//! dist-tag of each package (and each configured one left on a version rolled back) at the
//! target's version and, with `deprecate_bad`, deprecates the version rolled back from and
//! re-words bagboy's stale messages; undo restores all of it. Tokens come from the user's
//! `.npmrc`, never from the checkout's.

mod consumers;
mod npmrc;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::config::RegistryConfig;
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    BoxFuture, Env, HttpBackendError, Kind, Observation, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};
use crate::yaml::{Node, Value as YValue};

pub const MOVE_DIST_TAG: &str = "move_dist_tag";
pub const DEPRECATE: &str = "deprecate";
pub const UNDEPRECATE: &str = "undeprecate";

pub const DEFAULT_REGISTRY: &str = "https://registry.npmjs.org/";
const MAX_PACKUMENT: usize = 64 << 20;
const CONCURRENCY: usize = 8;

pub static NPM: Kind = Kind {
    name: "npm",
    aliases: &[],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_npm,
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub packages: Vec<String>,
    pub dist_tags: Vec<String>,
    pub deprecate_bad: bool,
    pub deprecate_message: Option<String>,
}

fn valid_name(n: &str) -> bool {
    let bare = match n.strip_prefix('@') {
        Some(rest) => match rest.split_once('/') {
            Some((scope, name)) if !scope.is_empty() && !name.is_empty() => name,
            _ => return false,
        },
        None => n,
    };
    !bare.is_empty()
        && n.len() <= 214
        && !bare.starts_with(['.', '_'])
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-._~@/".contains(c))
}

impl Options {
    pub fn parse(cfg: &RegistryConfig) -> Result<(Options, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut w = Vec::new();
        let mut o = Options {
            dist_tags: vec!["latest".into()],
            ..Options::default()
        };
        for (key, k, v) in cfg.options() {
            match key {
                "packages" => {
                    o.packages = p.string_list(key, v);
                    for n in &o.packages {
                        if !valid_name(n) {
                            p.push(v.loc, format!("`{n}` is not an npm package name"));
                        }
                    }
                }
                "dist_tags" => o.dist_tags = p.string_list(key, v),
                "deprecate_bad" => o.deprecate_bad = p.boolean(key, v).unwrap_or(false),
                "deprecate_message" => o.deprecate_message = p.string(key, v),
                _ => w.push(crate::suggest::unknown_key(
                    k.loc,
                    "npm",
                    key,
                    &[
                        "format",
                        "registry",
                        "packages",
                        "dist_tags",
                        "deprecate_bad",
                        "deprecate_message",
                    ],
                )),
            }
        }
        if o.packages.is_empty() {
            p.push(
                cfg.loc,
                "an npm registry needs `packages:` (one or more package names)",
            );
        }
        if !cfg.registry.starts_with("http://") && !cfg.registry.starts_with("https://") {
            p.push(
                cfg.loc,
                "an npm `registry:` is the registry's URL (https://…)",
            );
        }
        p.finish(o, w)
    }
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Options::parse(cfg).map(|(_, w)| w)
}

fn open_npm(cfg: &RegistryConfig, _env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (opts, _) = Options::parse(cfg).map_err(|ps| crate::registry::options_error(cfg, ps))?;
    let base = reqwest::Url::parse(&cfg.registry).map_err(|e| RegistryError::Invalid {
        registry: cfg.registry.clone(),
        message: format!("not a URL: {e}"),
    })?;
    let base = if base.path().ends_with('/') {
        base
    } else {
        reqwest::Url::parse(&format!("{base}/")).unwrap_or(base)
    };
    let token = npmrc::token_for(&base);
    Ok(Arc::new(NpmRegistry {
        name: cfg.registry.clone(),
        base,
        token,
        opts,
        writes: Default::default(),
    }))
}

pub struct NpmRegistry {
    name: String,
    base: reqwest::Url,
    token: Option<SecretString>,
    opts: Options,
    /// One write at a time per package: a deprecation writes the whole package document
    /// back (dist-tags included, or registries such as Verdaccio recompute `latest`), so it
    /// must read it after any tag move of the same package, never beside one.
    writes: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// One package's part of a record: its integrity and the dist-tags on the version.
#[derive(Clone, Debug, PartialEq)]
struct Recorded {
    name: String,
    integrity: Option<String>,
    dist_tags: Vec<String>,
}

fn recorded(pkg: Option<&Package>) -> Vec<Recorded> {
    let Some(Node {
        value: YValue::Seq(items),
        ..
    }) = pkg.and_then(|p| p.extra.iter().find(|(k, _)| k == "npm").map(|(_, v)| v))
    else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let get = |k: &str| {
                i.entries()?
                    .find(|(key, _, _)| *key == k)
                    .map(|(_, _, v)| v.clone())
            };
            let text = |n: Option<Node>| n.and_then(|n| n.as_scalar().map(|s| s.text.clone()));
            let tags = match get("dist_tags").map(|n| n.value) {
                Some(YValue::Seq(t)) => t
                    .iter()
                    .filter_map(|n| n.as_scalar().map(|s| s.text.clone()))
                    .collect(),
                _ => Vec::new(),
            };
            Some(Recorded {
                name: text(get("name"))?,
                integrity: text(get("integrity")),
                dist_tags: tags,
            })
        })
        .collect()
}

fn record_node(items: &[Recorded]) -> Node {
    Node::new(YValue::Seq(
        items
            .iter()
            .map(|r| {
                let mut f = vec![(Node::str("name"), Node::str(r.name.as_str()))];
                if let Some(i) = &r.integrity {
                    f.push((Node::str("integrity"), Node::str(i.as_str())));
                }
                f.push((
                    Node::str("dist_tags"),
                    crate::yaml::seq(r.dist_tags.iter().map(Node::str).collect()),
                ));
                Node::new(YValue::Map(f))
            })
            .collect(),
    ))
}

/// `name@tag` / `name@version` → (name, rest); scoped names keep their leading `@`.
fn split_ref(r: &str) -> Option<(&str, &str)> {
    let at = r[1..].find('@')? + 1;
    Some((&r[..at], &r[at + 1..]))
}

impl NpmRegistry {
    async fn write_lock(&self, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    fn input(&self, message: impl Into<String>) -> RegistryError {
        HttpBackendError::Input {
            registry: self.name.clone(),
            message: message.into(),
        }
        .into()
    }

    fn url(&self, path: &str) -> reqwest::Url {
        self.base.join(path).unwrap_or_else(|_| self.base.clone())
    }

    /// `@scope/name` → `@scope%2fname` (how npm addresses scoped packages).
    fn escaped(name: &str) -> String {
        name.replacen('/', "%2f", 1)
    }

    async fn send(
        &self,
        package: &str,
        what: &str,
        build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let token = self
            .token
            .as_ref()
            .filter(|_| crate::http::safe_for_credentials(&self.base));
        let policy = crate::http::RetryPolicy::from_env();
        let sent = crate::http::send(&policy, |client| {
            let req = build(client)
                .timeout(Duration::from_secs(30))
                .header("Accept", "application/json");
            match token {
                Some(t) => req.bearer_auth(t.expose_secret()),
                None => req,
            }
        });
        let resp = sent.await.map_err(|e| HttpBackendError::Transport {
            registry: self.name.clone(),
            item: package.to_string(),
            what: what.to_string(),
            kind: crate::http::transport_kind(&e),
        })?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let hint = match status {
                401 | 403 if self.token.is_none() => format!(
                    " (no token for {} in the user's .npmrc)",
                    self.base.host_str().unwrap_or_default()
                ),
                401 | 403 => " (the token was refused or lacks publish rights)".to_string(),
                _ => String::new(),
            };
            return Err(HttpBackendError::Status {
                registry: self.name.clone(),
                item: package.to_string(),
                what: what.to_string(),
                status,
                detail: hint,
            }
            .into());
        }
        Ok(resp)
    }

    async fn packument(&self, name: &str) -> Result<Value, RegistryError> {
        let url = self.url(&Self::escaped(name));
        let resp = self
            .send(name, "reading the package", |client| {
                client.get(url.clone())
            })
            .await?;
        let body = crate::http::read_limited(resp, MAX_PACKUMENT)
            .await
            .map_err(|_| self.input(format!("{name}: the package document could not be read")))?;
        serde_json::from_slice(&body)
            .map_err(|_| self.input(format!("{name}: the package document is not JSON")))
    }

    async fn put_tag(&self, name: &str, tag: &str, version: &str) -> Result<(), RegistryError> {
        let url = self.url(&format!(
            "-/package/{}/dist-tags/{tag}",
            Self::escaped(name)
        ));
        let body = serde_json::to_vec(&json!(version)).unwrap_or_default();
        self.send(name, &format!("setting dist-tag {tag}"), |client| {
            client
                .put(url.clone())
                .header("Content-Type", "application/json")
                .body(body.clone())
        })
        .await?;
        Ok(())
    }

    async fn delete_tag(&self, name: &str, tag: &str) -> Result<(), RegistryError> {
        let url = self.url(&format!(
            "-/package/{}/dist-tags/{tag}",
            Self::escaped(name)
        ));
        self.send(name, &format!("removing dist-tag {tag}"), |client| {
            client.delete(url.clone())
        })
        .await?;
        Ok(())
    }

    /// Set (or clear, with "") a version's deprecation, as `npm deprecate` does: the whole
    /// package document with that one field changed. Returns the message it had.
    async fn set_deprecated(
        &self,
        name: &str,
        version: &str,
        message: &str,
    ) -> Result<String, RegistryError> {
        let mut doc = self.packument(name).await?;
        let Some(v) = doc["versions"].get_mut(version) else {
            return Err(self.input(format!("{name}@{version} is not published")));
        };
        let before = v["deprecated"].as_str().unwrap_or_default().to_string();
        v["deprecated"] = json!(message);
        if let Some(o) = doc.as_object_mut() {
            o.remove("_attachments");
        }
        let url = self.url(&Self::escaped(name));
        let body = serde_json::to_vec(&doc).unwrap_or_default();
        self.send(name, "deprecating", |client| {
            client
                .put(url.clone())
                .header("Content-Type", "application/json")
                .body(body.clone())
        })
        .await?;
        Ok(before)
    }

    async fn plan_package(
        &self,
        name: &str,
        input: &PlanInput<'_>,
        rec: Option<&Recorded>,
    ) -> Result<(Vec<Step>, Vec<String>, Option<consumers::Reach>), RegistryError> {
        let doc = self.packument(name).await?;
        let target = input.target.version.bare();
        let mut steps = Vec::new();
        let mut refusals = Vec::new();
        let Some(tv) = doc["versions"].get(&target) else {
            refusals.push(format!(
                "{}: {name}@{target} is no longer published (unpublished); --force cannot bring it back",
                self.name
            ));
            return Ok((steps, refusals, None));
        };
        let integrity = tv["dist"]["integrity"].as_str().map(str::to_string);
        if let (Some(r), Some(live)) = (
            rec.and_then(|r| r.integrity.as_deref()),
            integrity.as_deref(),
        ) {
            if r != live {
                refusals.push(format!(
                    "{}: {name}@{target} has integrity {live}, not {r} recorded: the target was republished; --force rolls back to it anyway",
                    self.name
                ));
            }
        }
        let template = self
            .opts
            .deprecate_message
            .clone()
            .unwrap_or_else(|| consumers::DEFAULT_MESSAGE.into());
        // npm's versions are semver: a release whose version is not has no npm version.
        let Some(target_semver) = input.target.version.semver() else {
            refusals.push(format!(
                "{}: {} is not a semver version, so no npm version of {name} can be it",
                self.name, input.target.version
            ));
            return Ok((steps, refusals, None));
        };
        let from = input
            .current
            .and_then(|c| c.version.semver())
            .filter(|c| *c != target_semver);
        let cv = from.map(|c| c.to_string());
        let versions = doc["versions"].as_object();
        let deprecation = |v: &Value| {
            v["deprecated"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(str::to_string)
        };
        // Deprecated once the plan ran: what is now (but the target), and the bad version.
        let mut deprecated_after: BTreeSet<String> = versions
            .map(|vs| {
                vs.iter()
                    .filter(|(v, x)| **v != target && deprecation(x).is_some())
                    .map(|(v, _)| v.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut deprecations = Vec::new();
        if let (true, Some(cv)) = (self.opts.deprecate_bad, cv.as_deref()) {
            if let Some(c) = doc["versions"].get(cv) {
                let message = consumers::render(&template, &target);
                let live = deprecation(c);
                let mut s = Step::new(
                    if live.as_deref() == Some(message.as_str()) {
                        Action::unchanged()
                    } else {
                        Action::change(DEPRECATE)
                    },
                    format!("{name}@{cv}"),
                );
                s.before = live;
                s.after = Some(message.clone());
                s.detail = Some(format!("message: {message}"));
                deprecations.push((cv.to_string(), s));
                deprecated_after.insert(cv.to_string());
            }
            // bagboy's earlier messages ("use 1.1.0") that now name a deprecated version.
            let mut stale: Vec<(&String, String, &str)> = versions
                .into_iter()
                .flatten()
                .filter(|(v, _)| **v != target && Some(v.as_str()) != Some(cv))
                .filter_map(|(v, x)| {
                    let m = deprecation(x)?;
                    let to = consumers::points_at(&template, &m, &deprecated_after)?;
                    (to != target).then_some((v, m, to))
                })
                .collect();
            stale.sort_by(|a, b| {
                semver::Version::parse(a.0)
                    .ok()
                    .cmp(&semver::Version::parse(b.0).ok())
                    .then(a.0.cmp(b.0))
            });
            for (v, m, to) in stale {
                let mut s = Step::new(Action::change(DEPRECATE), format!("{name}@{v}"));
                s.before = Some(m);
                s.after = Some(consumers::render(&template, &target));
                s.detail = Some(format!(
                    "refreshed: bagboy's message named {to}, {}",
                    if to == cv {
                        "which this rollback deprecates"
                    } else {
                        "deprecated too"
                    }
                ));
                deprecations.push((v.clone(), s));
            }
        }
        let deprecates: BTreeSet<String> = deprecations.iter().map(|(v, _)| v.clone()).collect();

        // Tags: recorded on the target, configured, then any other pointing at a version
        // this rollback leaves behind, each named with what happens to it.
        let recorded_tags: Vec<String> = rec
            .map(|r| r.dist_tags.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| self.opts.dist_tags.clone());
        let mut tags: Vec<(String, consumers::TagSource)> = recorded_tags
            .iter()
            .map(|t| (t.clone(), consumers::TagSource::Recorded))
            .collect();
        for t in &self.opts.dist_tags {
            if !tags.iter().any(|(x, _)| x == t) {
                tags.push((t.clone(), consumers::TagSource::Configured));
            }
        }
        let mut others: Vec<String> = doc["dist-tags"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(t, v)| {
                v.as_str()
                    .is_some_and(|v| Some(v) == cv.as_deref() || deprecates.contains(v))
                    && !tags.iter().any(|(x, _)| x == *t)
            })
            .map(|(t, _)| t.clone())
            .collect();
        others.sort();
        tags.extend(others.into_iter().map(|t| (t, consumers::TagSource::Other)));
        let rollback = consumers::Rollback {
            name,
            target: target_semver,
            from,
            deprecates: &deprecates,
        };
        let mut reach = consumers::Reach {
            target: target.clone(),
            from: cv
                .clone()
                .filter(|_| from.is_some_and(|f| f > target_semver)),
            from_deprecated: cv.as_ref().is_some_and(|c| deprecated_after.contains(c)),
            at_target: Vec::new(),
            left: Vec::new(),
        };
        for (tag, source) in &tags {
            let live = doc["dist-tags"][tag.as_str()].as_str().map(str::to_string);
            let mut s = Step::new(Action::unchanged(), format!("{name}@{tag}"));
            s.before = live.clone();
            match consumers::fate(&rollback, tag, live.as_deref(), *source) {
                consumers::TagFate::Unchanged => {
                    s.after = Some(target.clone());
                    reach.at_target.push(tag.clone());
                }
                consumers::TagFate::Move(detail) => {
                    s.action = Action::change(MOVE_DIST_TAG);
                    s.after = Some(target.clone());
                    s.detail = detail;
                    reach.at_target.push(tag.clone());
                }
                consumers::TagFate::Leave(why) => {
                    s.action = Action::left_in_place();
                    s.detail = Some(why);
                    reach.left.push(tag.clone());
                }
            }
            steps.push(s);
        }
        if let Some(m) = deprecation(tv) {
            let mut s = Step::new(Action::change(UNDEPRECATE), format!("{name}@{target}"));
            s.before = Some(m);
            s.detail =
                Some("the target was deprecated (by an earlier rollback?): un-deprecated".into());
            steps.push(s);
        }
        steps.extend(deprecations.into_iter().map(|(_, s)| s));
        Ok((steps, refusals, Some(reach)))
    }
}

impl Registry for NpmRegistry {
    fn format(&self) -> &str {
        NPM.name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> BoxFuture<'_, crate::registry::Probe> {
        Box::pin(async move {
            let credential = self
                .token
                .as_ref()
                .and_then(|_| npmrc::token_source(&self.base));
            let reached = match self.opts.packages.first() {
                Some(name) => self
                    .packument(name)
                    .await
                    .map(|_| format!("GET {name} on {} answered", self.name))
                    .map_err(|e| e.to_string()),
                None => Err("no package configured to read".into()),
            };
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
            let recs = recorded(input.target_package);
            let input = &input;
            let mut results = Vec::new();
            for chunk in self.opts.packages.chunks(CONCURRENCY) {
                results.extend(
                    futures_util::future::join_all(chunk.iter().map(|name| {
                        let rec = recs.iter().find(|r| &r.name == name);
                        self.plan_package(name, input, rec)
                    }))
                    .await,
                );
            }
            let (mut steps, mut refusals, mut reaches) = (Vec::new(), Vec::new(), Vec::new());
            for (name, r) in self.opts.packages.iter().zip(results) {
                let (s, rf, reach) = r?;
                steps.extend(s);
                refusals.extend(rf);
                reaches.extend(reach.map(|r| (name.clone(), r)));
            }
            let notes = consumers::notes(&reaches);
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: NPM.name.to_string(),
                    registry: self.name.clone(),
                    steps,
                    notes,
                },
                refusals,
                warnings: Vec::new(),
            })
        })
    }

    fn apply<'a>(&'a self, step: &'a Step) -> BoxFuture<'a, Result<Value, RegistryError>> {
        Box::pin(async move {
            let (name, rest) = split_ref(&step.reference)
                .ok_or_else(|| self.input(format!("bad step reference {}", step.reference)))?;
            let _one_writer = self.write_lock(name).await;
            match step.action.as_str() {
                MOVE_DIST_TAG => {
                    let v = step.after.as_deref().unwrap_or_default();
                    self.put_tag(name, rest, v).await?;
                    Ok(json!({ "before": step.before }))
                }
                DEPRECATE => {
                    let before = self
                        .set_deprecated(name, rest, step.after.as_deref().unwrap_or_default())
                        .await?;
                    Ok(json!({ "before": before }))
                }
                UNDEPRECATE => {
                    let before = self.set_deprecated(name, rest, "").await?;
                    Ok(json!({ "before": before }))
                }
                other => Err(self.input(format!("`{other}` is not an npm step"))),
            }
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        _state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        // Undo writes the observed state back; doing so when the step never landed is a no-op.
        Box::pin(async move {
            let (name, rest) = split_ref(&step.reference)
                .ok_or_else(|| self.input(format!("bad step reference {}", step.reference)))?;
            let _one_writer = self.write_lock(name).await;
            match step.action.as_str() {
                MOVE_DIST_TAG => match step.before.as_deref() {
                    Some(v) => self.put_tag(name, rest, v).await,
                    None => self.delete_tag(name, rest).await,
                },
                DEPRECATE | UNDEPRECATE => self
                    .set_deprecated(name, rest, step.before.as_deref().unwrap_or_default())
                    .await
                    .map(|_| ()),
                _ => Ok(()),
            }
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>> {
        Box::pin(async move {
            let v = version.bare();
            let mut docs = Vec::new();
            for chunk in self.opts.packages.chunks(CONCURRENCY) {
                let got =
                    futures_util::future::join_all(chunk.iter().map(|name| self.packument(name)))
                        .await;
                docs.extend(chunk.iter().zip(got));
            }
            let mut items = Vec::new();
            for (name, doc) in docs {
                let doc = doc?;
                let Some(pv) = doc["versions"].get(&v) else {
                    return Err(self.input(format!(
                        "{name} has no version {v}: publish it before recording"
                    )));
                };
                let mut tags: Vec<String> = doc["dist-tags"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(_, x)| x.as_str() == Some(v.as_str()))
                            .map(|(t, _)| t.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                tags.sort();
                items.push(Recorded {
                    name: name.clone(),
                    integrity: pv["dist"]["integrity"]
                        .as_str()
                        .or(pv["dist"]["shasum"].as_str())
                        .map(str::to_string),
                    dist_tags: tags,
                });
            }
            let mut pkg = Package::new(NPM.name, &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.extra.push(("npm".into(), record_node(&items)));
            Ok(pkg.into())
        })
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        _undo: Option<&'a Value>,
        recorded_pkgs: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let Some((name, _)) = split_ref(&step.reference) else {
                return Err("not a package reference".into());
            };
            if !self.opts.packages.iter().any(|p| p == name) {
                return Err(format!("{name} is not a package of this registry's config"));
            }
            // Only packages some recorded release of this registry had.
            let known = recorded_pkgs
                .iter()
                .flat_map(|p| recorded(Some(p)))
                .any(|r| r.name == name);
            if !known {
                return Err(format!("the history records no release of {name}"));
            }
            match step.action.as_str() {
                MOVE_DIST_TAG | DEPRECATE | UNDEPRECATE => Ok(()),
                other => Err(format!("`{other}` is not an npm step")),
            }
        })
    }
}
