//! The `github-release` backend: which GitHub Release is "latest" (the one users download from
//! the repository's page and from `releases/latest` links). A rollback makes the target's
//! release latest and, with `demote_bad_release`, marks the release rolled back from as a
//! prerelease; undo puts both back. `record` stores the release's id and tag.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::RegistryConfig;
use crate::github::{Api, GithubError, Purpose};
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    BackendError, BoxFuture, Env, Kind, Observation, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};
use crate::yaml::Node;

pub const MAKE_LATEST: &str = "point_latest";
pub const MARK_PRERELEASE: &str = "demote_release";

/// The reference of the "which release is latest" step.
pub const LATEST_REF: &str = "releases/latest";

pub static GITHUB_RELEASE: Kind = Kind {
    name: "github-release",
    aliases: &["github"],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_release,
};

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    pub demote_bad_release: bool,
}

impl Options {
    pub fn parse(cfg: &RegistryConfig) -> Result<(Options, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut w = Vec::new();
        let mut o = Options::default();
        for (key, k, v) in cfg.options() {
            match key {
                "demote_bad_release" => o.demote_bad_release = p.boolean(key, v).unwrap_or(false),
                _ => w.push(crate::suggest::unknown_key(
                    k.loc,
                    "github-release",
                    key,
                    &["format", "registry", "demote_bad_release"],
                )),
            }
        }
        if crate::github::parse_repo(&cfg.registry).is_none() {
            p.push(
                cfg.loc,
                "a github-release `registry:` is the repository, as owner/repo",
            );
        }
        p.finish(o, w)
    }
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Options::parse(cfg).map(|(_, w)| w)
}

fn open_release(cfg: &RegistryConfig, _env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    let (opts, _) = Options::parse(cfg).map_err(|ps| crate::registry::options_error(cfg, ps))?;
    let api = Api::new(&cfg.registry).map_err(|e| RegistryError::Invalid {
        registry: cfg.registry.clone(),
        message: e.to_string(),
    })?;
    Ok(Arc::new(GithubReleases {
        name: cfg.registry.clone(),
        api,
        opts,
    }))
}

#[derive(Debug, thiserror::Error)]
#[error("{registry}: {source}")]
pub struct ReleaseError {
    registry: String,
    #[source]
    source: GithubError,
}

impl BackendError for ReleaseError {
    fn may_have_landed(&self) -> bool {
        self.source.may_have_landed()
    }

    fn is_input(&self) -> bool {
        self.source.is_input()
    }
}

/// What the history records of a release: its id and tag.
#[derive(Clone, Debug, PartialEq)]
struct Recorded {
    id: u64,
    tag: String,
}

fn recorded(pkg: Option<&Package>) -> Option<Recorded> {
    let pkg = pkg?;
    let get = |k: &str| {
        pkg.extra
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, n)| n.as_scalar().map(|s| s.text.clone()))
    };
    Some(Recorded {
        id: get("release_id")?.parse().ok()?,
        tag: get("release_tag")?,
    })
}

/// The live facts about one release.
#[derive(Clone, Debug)]
struct Live {
    id: u64,
    tag: String,
    draft: bool,
    prerelease: bool,
}

impl From<octocrab::models::repos::Release> for Live {
    fn from(r: octocrab::models::repos::Release) -> Self {
        Live {
            id: r.id.0,
            tag: r.tag_name,
            draft: r.draft,
            prerelease: r.prerelease,
        }
    }
}

pub struct GithubReleases {
    name: String,
    api: Api,
    opts: Options,
}

impl GithubReleases {
    fn err(&self, source: GithubError) -> RegistryError {
        ReleaseError {
            registry: self.name.clone(),
            source,
        }
        .into()
    }

    fn input(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Invalid {
            registry: self.name.clone(),
            message: message.into(),
        }
    }

    /// One release read; GitHub's 404 is `None`.
    async fn read(
        &self,
        what: &str,
        fut: impl std::future::Future<Output = octocrab::Result<octocrab::models::repos::Release>>,
    ) -> Result<Option<Live>, RegistryError> {
        match self.api.call(what, Purpose::ReadReleases, fut).await {
            Ok(r) => Ok(Some(r.into())),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    async fn get(&self, id: u64) -> Result<Option<Live>, RegistryError> {
        let repo = self.api.octocrab().repos(&self.api.owner, &self.api.repo);
        self.read(&format!("reading release {id}"), repo.releases().get(id))
            .await
    }

    async fn latest(&self) -> Result<Option<Live>, RegistryError> {
        let repo = self.api.octocrab().repos(&self.api.owner, &self.api.repo);
        self.read("reading the latest release", repo.releases().get_latest())
            .await
    }

    async fn by_tag(&self, tag: &str) -> Result<Option<Live>, RegistryError> {
        let repo = self.api.octocrab().repos(&self.api.owner, &self.api.repo);
        self.read(
            &format!("reading the release of tag {tag}"),
            repo.releases().get_by_tag(tag),
        )
        .await
    }

    /// The release of `version`: its tag as written, then with the `v` prefix toggled.
    async fn find_release(&self, version: &Version) -> Result<Option<Live>, RegistryError> {
        let written = version.as_str().to_string();
        let other = match written.strip_prefix('v') {
            Some(bare) => bare.to_string(),
            None => format!("v{written}"),
        };
        for tag in [written, other] {
            if let Some(r) = self.by_tag(&tag).await? {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    async fn update(
        &self,
        id: u64,
        what: &str,
        make_latest: Option<bool>,
        prerelease: Option<bool>,
    ) -> Result<(), RegistryError> {
        let octo = self.api.octocrab();
        let releases = octo.repos(&self.api.owner, &self.api.repo);
        let releases = releases.releases();
        let mut b = releases.update(id);
        if let Some(p) = prerelease {
            b = b.prerelease(p);
        }
        if let Some(l) = make_latest {
            b = b.make_latest(if l {
                octocrab::repos::releases::MakeLatest::True
            } else {
                octocrab::repos::releases::MakeLatest::False
            });
        }
        self.api
            .call(what, Purpose::WriteReleases, b.send())
            .await
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Which release ids the history records for this registry (what a journal may name).
    fn recorded_ids(pkgs: &[&Package]) -> Vec<u64> {
        pkgs.iter()
            .filter_map(|p| recorded(Some(p)))
            .map(|r| r.id)
            .collect()
    }
}

impl Registry for GithubReleases {
    fn format(&self) -> &str {
        GITHUB_RELEASE.name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> BoxFuture<'_, crate::registry::Probe> {
        Box::pin(async move {
            let reached = self
                .latest()
                .await
                .map(|l| match l {
                    Some(_) => format!("read the latest release of {}", self.api.repository()),
                    None => format!("{} answered: no release yet", self.api.repository()),
                })
                .map_err(|e| e.to_string());
            crate::registry::Probe {
                credential: self.api.has_token().then(|| "GITHUB_TOKEN".to_string()),
                reached: Some(reached),
            }
        })
    }

    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(async move {
            let (mut refusals, mut notes) = (Vec::new(), Vec::new());
            let rec = recorded(input.target_package);
            let target = match &rec {
                Some(r) => self.get(r.id).await?,
                None => self.find_release(&input.target.version).await?,
            };
            let Some(target) = target else {
                return Err(self.input(match &rec {
                    Some(r) => format!(
                        "the release of {} (id {}) no longer exists; nothing can be made latest",
                        r.tag, r.id
                    ),
                    None => format!(
                        "no published release for {} (tag {} or its v-less form)",
                        input.target.version.as_str(),
                        input.target.version.as_str()
                    ),
                }));
            };
            if target.draft {
                return Err(self.input(format!(
                    "the release of {} is a draft: a draft cannot be latest; publish it first",
                    target.tag
                )));
            }
            if let Some(r) = rec.as_ref().filter(|r| r.tag != target.tag) {
                refusals.push(format!(
                    "{}: release {} now has tag {}, not {} as recorded; --force makes it latest anyway",
                    self.name, r.id, target.tag, r.tag
                ));
            }
            let live = self.latest().await?;
            let mut steps = Vec::new();
            let mut s = Step::new(
                if live.as_ref().map(|l| l.id) == Some(target.id) {
                    Action::unchanged()
                } else {
                    Action::change(MAKE_LATEST)
                },
                LATEST_REF,
            );
            s.before = live.as_ref().map(|l| l.tag.clone());
            s.after = Some(target.tag.clone());
            s.data = json!({
                "release_id": target.id,
                "before_id": live.as_ref().map(|l| l.id),
                "was_prerelease": target.prerelease,
            });
            if target.prerelease {
                s.detail =
                    Some("the target is marked prerelease (an earlier rollback?): it becomes a full release".into());
            }
            steps.push(s);
            let bad = recorded(input.current_package);
            if let (true, Some(bad)) = (self.opts.demote_bad_release, bad) {
                if bad.id != target.id {
                    if let Some(b) = self.get(bad.id).await? {
                        let mut s = Step::new(
                            if b.prerelease {
                                Action::unchanged()
                            } else {
                                Action::change(MARK_PRERELEASE)
                            },
                            format!("releases/{}", b.tag),
                        );
                        s.before = Some(
                            if b.prerelease {
                                "prerelease"
                            } else {
                                "release"
                            }
                            .into(),
                        );
                        s.after = Some("prerelease".into());
                        s.detail = Some("the release rolled back from is marked prerelease".into());
                        s.data = json!({ "release_id": b.id });
                        steps.push(s);
                    }
                }
            }
            notes.push(format!(
                "who this reaches: the repository's release page and `releases/latest` links show {}; tools that install \"the latest GitHub release\" (install scripts, `gh release download`, asdf/aqua plugins) get it on their next run",
                target.tag
            ));
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: GITHUB_RELEASE.name.to_string(),
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
            let id = step.data["release_id"]
                .as_u64()
                .ok_or_else(|| self.input("the step names no release"))?;
            match step.action.as_str() {
                MAKE_LATEST => {
                    let was_pre = step.data["was_prerelease"].as_bool().unwrap_or(false);
                    self.update(
                        id,
                        &format!("making release {id} latest"),
                        Some(true),
                        was_pre.then_some(false),
                    )
                    .await?;
                    Ok(json!({}))
                }
                MARK_PRERELEASE => {
                    self.update(
                        id,
                        &format!("marking release {id} prerelease"),
                        None,
                        Some(true),
                    )
                    .await?;
                    Ok(json!({}))
                }
                other => Err(self.input(format!("`{other}` is not a github-release step"))),
            }
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        _state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        // Undo writes the observed state back; on a step that never landed it changes nothing.
        Box::pin(async move {
            let id = step.data["release_id"]
                .as_u64()
                .ok_or_else(|| self.input("the step names no release"))?;
            match step.action.as_str() {
                MAKE_LATEST => {
                    if step.data["was_prerelease"].as_bool().unwrap_or(false) {
                        self.update(
                            id,
                            &format!("marking release {id} prerelease again"),
                            None,
                            Some(true),
                        )
                        .await?;
                    }
                    match step.data["before_id"].as_u64() {
                        Some(before) => {
                            self.update(
                                before,
                                &format!("making release {before} latest again"),
                                Some(true),
                                None,
                            )
                            .await
                        }
                        None => {
                            self.update(
                                id,
                                &format!("unmaking release {id} latest"),
                                Some(false),
                                None,
                            )
                            .await
                        }
                    }
                }
                MARK_PRERELEASE => {
                    self.update(
                        id,
                        &format!("marking release {id} a full release again"),
                        None,
                        Some(false),
                    )
                    .await
                }
                _ => Ok(()),
            }
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>> {
        Box::pin(async move {
            let Some(r) = self.find_release(version).await? else {
                return Err(self.input(format!(
                    "no published release for {} (drafts are not releases yet): publish it before recording",
                    version.as_str()
                )));
            };
            let mut pkg = Package::new(GITHUB_RELEASE.name, &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.extra
                .push(("release_id".into(), crate::yaml::int(r.id as i64)));
            pkg.extra
                .push(("release_tag".into(), Node::str(r.tag.clone())));
            let mut obs: Observation = pkg.into();
            if r.prerelease {
                obs.warnings.push(format!(
                    "{}: the release of {} is a prerelease; a rollback to it makes it a full release",
                    self.name, r.tag
                ));
            }
            Ok(obs)
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
            let known = Self::recorded_ids(recorded_pkgs);
            let named = |k: &str| step.data[k].as_u64();
            let ok = |id: Option<u64>| id.is_none_or(|i| known.contains(&i));
            match step.action.as_str() {
                MAKE_LATEST | MARK_PRERELEASE => {}
                other => return Err(format!("`{other}` is not a github-release step")),
            }
            if named("release_id").is_none() {
                return Err("the step names no release".into());
            }
            for k in ["release_id", "before_id"] {
                if !ok(named(k)) {
                    return Err(format!(
                        "release {} is not one the history records for {}",
                        named(k).unwrap_or_default(),
                        self.name
                    ));
                }
            }
            if !matches!(step.data["was_prerelease"], Value::Null | Value::Bool(_)) {
                return Err("malformed step".into());
            }
            Ok(())
        })
    }
}
