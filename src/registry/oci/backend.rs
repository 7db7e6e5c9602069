//! The `docker` and `oci-layout` backends: tag moves in OCI distribution registries and on-disk
//! OCI layouts.
//!
//! A rollback re-puts the exact manifest bytes of the target under each recorded tag: no pull,
//! no rebuild, no blob copy. The target's manifest is fetched once per distinct digest.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::future::join_all;
use tokio::sync::Mutex;

use super::{
    ClientOptions, Descriptor, Digest, ImageRepo, Manifest, OciClient, OciError, OciLayout,
};
use crate::config::RegistryConfig;
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    BackendError, BoxFuture, Env, Kind, PlanInput, PlanOutcome, Registry, RegistryError, UndoState,
};

/// The step this backend plans: point a tag at the target digest.
pub const MOVE_TAG: &str = "move_tag";

pub static DOCKER: Kind = Kind {
    name: "docker",
    aliases: &["oci"],
    registry_is_path: false,
    recorded: true,
    check: check_options,
    open: open_remote,
};

pub static OCI_LAYOUT: Kind = Kind {
    name: "oci-layout",
    aliases: &[],
    registry_is_path: true,
    recorded: true,
    check: check_options,
    open: open_layout,
};

/// The keys of a `docker` / `oci-layout` registry in bagboy.yaml.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// Plain HTTP (local registries).
    pub insecure: bool,
    /// Tags to move when a history entry records none.
    pub move_tags: Vec<String>,
}

impl Options {
    pub fn parse(cfg: &RegistryConfig) -> Result<(Options, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();
        let mut o = Options::default();
        for (key, k, v) in cfg.options() {
            match key {
                "insecure" => o.insecure = p.boolean(key, v).unwrap_or(false),
                "move_tags" => {
                    o.move_tags = p.string_list(key, v);
                    for t in &o.move_tags {
                        if !crate::history::is_tag(t) {
                            p.push(v.loc, format!("`{t}` is not a valid OCI tag"));
                        }
                    }
                }
                _ => warnings.push(crate::suggest::unknown_key(
                    k.loc,
                    "registry",
                    key,
                    &["format", "registry", "insecure", "move_tags"],
                )),
            }
        }
        p.finish(o, warnings)
    }
}

fn check_options(cfg: &RegistryConfig) -> Result<Vec<Problem>, Vec<Problem>> {
    Options::parse(cfg).map(|(_, w)| w)
}

fn options_of(cfg: &RegistryConfig) -> Result<Options, RegistryError> {
    Options::parse(cfg)
        .map(|(o, _)| o)
        .map_err(|ps| crate::registry::options_error(cfg, ps))
}

fn open_remote(cfg: &RegistryConfig, _env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(TagRegistry::open(cfg, &DOCKER)?))
}

fn open_layout(cfg: &RegistryConfig, _env: &Env) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(TagRegistry::open(cfg, &OCI_LAYOUT)?))
}

#[derive(Debug, thiserror::Error)]
pub enum TagError {
    #[error(transparent)]
    Oci(#[from] OciError),
}

impl BackendError for TagError {
    /// Whether a failed write may still have taken effect: the answer was lost (reset,
    /// timeout, unreadable response) or the server failed (5xx) after perhaps acting. A
    /// refused connection or a 4xx answer means the registry did not change.
    fn may_have_landed(&self) -> bool {
        let TagError::Oci(e) = self;
        match e {
            OciError::Transport { kind, .. } => *kind != "connection failed",
            OciError::BadResponse { status, .. } => status.is_none_or(|s| s >= 500),
            _ => false,
        }
    }

    fn is_input(&self) -> bool {
        let TagError::Oci(e) = self;
        matches!(
            e,
            OciError::InvalidReference { .. }
                | OciError::InvalidDigest { .. }
                // A local directory named by the config: what is wrong with it is input.
                | OciError::Layout { .. }
                | OciError::AuthenticationFailed { .. }
                | OciError::DockerConfig { .. }
                | OciError::CredentialHelper { .. }
                | OciError::ImmutableTag { .. }
                // The config says HTTPS to a registry that speaks plain HTTP.
                | OciError::PlainHttp { .. }
        )
    }
}

/// Where the tags live.
pub(super) enum TagStore {
    Remote {
        client: Box<OciClient>,
        repo: ImageRepo,
    },
    Layout(OciLayout),
}

impl TagStore {
    async fn resolve(&self, tag: &str) -> Result<Option<Digest>, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => {
                client.head_manifest(repo, tag).await?.map(|d| d.digest)
            }
            TagStore::Layout(l) => l.resolve(tag)?.map(|d| d.digest),
        })
    }

    /// Where `tag` points and, from a registry, the manifest itself: the one request that
    /// proves the target's version tag also fetches what a rollback re-puts.
    async fn resolve_fetching(
        &self,
        tag: &str,
    ) -> Result<Option<(Digest, Option<Manifest>)>, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => client
                .get_manifest_opt(repo, tag)
                .await?
                .map(|m| (m.digest.clone(), Some(m))),
            TagStore::Layout(l) => l.resolve(tag)?.map(|d| (d.digest, None)),
        })
    }

    async fn exists(&self, digest: &Digest) -> Result<bool, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => {
                client.head_manifest(repo, digest.as_str()).await?.is_some()
            }
            TagStore::Layout(l) => l.blob_path(digest).exists(),
        })
    }

    async fn fetch(&self, digest: &Digest) -> Result<Manifest, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => client.get_manifest(repo, digest.as_str()).await?,
            TagStore::Layout(l) => l.read_manifest(digest)?,
        })
    }

    /// Whether blob `digest` is still there.
    pub(super) async fn blob_exists(&self, digest: &Digest) -> Result<bool, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => client.head_blob(repo, digest).await?.is_some(),
            TagStore::Layout(l) => l.blob_path(digest).is_file(),
        })
    }

    /// A small blob, or `None` when it is gone.
    pub(super) async fn small_blob(&self, digest: &Digest) -> Result<Option<Vec<u8>>, TagError> {
        Ok(match self {
            TagStore::Remote { client, repo } => client.get_blob(repo, digest, 4 << 20).await?,
            TagStore::Layout(l) => match l.blob_path(digest).is_file() {
                true => Some(l.read_blob(digest)?),
                false => None,
            },
        })
    }

    /// A manifest by digest, or `None` when it is gone.
    pub(super) async fn fetch_opt(&self, digest: &Digest) -> Result<Option<Manifest>, TagError> {
        if !self.exists(digest).await? {
            return Ok(None);
        }
        self.fetch(digest).await.map(Some)
    }

    async fn put(&self, tag: &str, manifest: &Manifest) -> Result<(), TagError> {
        match self {
            TagStore::Remote { client, repo } => {
                client.put_manifest(repo, tag, manifest).await?;
            }
            TagStore::Layout(l) => l.set_tag(
                tag,
                &Descriptor {
                    digest: manifest.digest.clone(),
                    media_type: manifest.media_type.clone(),
                    size: manifest.bytes.len() as u64,
                },
            )?,
        }
        Ok(())
    }

    /// Every tag with its digest, for `record`. Remote registries only list names, so only
    /// tags that can be aliases (not other releases' full version tags) are resolved.
    async fn tags_pointing_at(
        &self,
        digest: &Digest,
        version: &Version,
    ) -> Result<Vec<String>, TagError> {
        match self {
            TagStore::Layout(l) => Ok(l
                .tags()?
                .into_iter()
                .filter(|(_, d)| &d.digest == digest)
                .map(|(t, _)| t)
                .collect()),
            TagStore::Remote { client, repo } => {
                let names = client.list_tags(repo).await?;
                let candidates: Vec<String> = names
                    .into_iter()
                    // A tag that is another full semver version names another release:
                    // skipped. Anything else (`latest`, `1.2`, `1`, a CalVer) may float here.
                    .filter(|t| {
                        Version::parse(t)
                            .ok()
                            .filter(|v| v.semver().is_some())
                            .is_none_or(|v| &v == version)
                    })
                    .collect();
                let mut out = Vec::new();
                for chunk in candidates.chunks(8) {
                    let found = join_all(
                        chunk
                            .iter()
                            .map(|t| async move { (t, client.head_manifest(repo, t).await) }),
                    )
                    .await;
                    for (t, r) in found {
                        if r?.is_some_and(|d| &d.digest == digest) {
                            out.push(t.clone());
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A `docker` or `oci-layout` registry.
pub struct TagRegistry {
    format: &'static str,
    name: String,
    store: TagStore,
    move_tags: Vec<String>,
    manifests: Mutex<HashMap<String, Manifest>>,
}

/// The tags that name a version: `v1.2.0`, `1.2.0`, as written.
fn version_tags(v: &Version) -> Vec<String> {
    let mut out = vec![v.as_str().to_string()];
    for t in [v.bare(), format!("v{}", v.bare())] {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

impl TagRegistry {
    pub fn open(cfg: &RegistryConfig, kind: &'static Kind) -> Result<TagRegistry, RegistryError> {
        let opts = options_of(cfg)?;
        let store = if kind.registry_is_path {
            TagStore::Layout(OciLayout::open(&cfg.registry).map_err(TagError::from)?)
        } else {
            let repo = ImageRepo::parse(&cfg.registry).map_err(TagError::from)?;
            let options = ClientOptions {
                insecure: opts.insecure,
                ..ClientOptions::from_env()
            };
            let client = Box::new(OciClient::for_repo(&repo, options).map_err(TagError::from)?);
            TagStore::Remote { client, repo }
        };
        Ok(TagRegistry {
            format: kind.name,
            name: cfg.registry.clone(),
            store,
            move_tags: opts.move_tags,
            manifests: Mutex::new(HashMap::new()),
        })
    }

    async fn manifest(&self, digest: &str) -> Result<Manifest, RegistryError> {
        if let Some(m) = self.manifests.lock().await.get(digest) {
            return Ok(m.clone());
        }
        let d = Digest::parse(digest).map_err(TagError::from)?;
        let m = self.store.fetch(&d).await?;
        self.manifests
            .lock()
            .await
            .insert(digest.to_string(), m.clone());
        Ok(m)
    }

    fn invalid(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Invalid {
            registry: self.name.clone(),
            message: message.into(),
        }
    }

    async fn plan_tags(&self, input: PlanInput<'_>) -> Result<PlanOutcome, RegistryError> {
        let target = input.target;
        let mut refusals = Vec::new();
        let mut warnings = Vec::new();
        let mut notes = Vec::new();
        let recorded = input.target_package.and_then(|p| p.digest.clone());
        let own_tags = version_tags(&target.version);

        // The target's own version tag, observed once: it proves (or disproves) the target.
        let mut own_live: Option<(String, Digest)> = None;
        // Every tag resolved so far, so that no tag is asked about twice.
        let mut resolved: HashMap<String, Option<Digest>> = HashMap::new();
        for t in &own_tags {
            let live = self.store.resolve_fetching(t).await?;
            resolved.insert(t.clone(), live.as_ref().map(|(d, _)| d.clone()));
            if let Some((d, manifest)) = live {
                if let Some(m) = manifest {
                    self.manifests.lock().await.insert(d.to_string(), m);
                }
                own_live = Some((t.clone(), d));
                break;
            }
        }
        let digest = match (&recorded, &own_live) {
            (Some(d), _) => Digest::parse(d).map_err(TagError::from)?,
            (None, Some((t, d))) => {
                warnings.push(format!(
                    "{}: {} recorded no digest; using the digest tag {t} points at now ({d})",
                    self.name, target.version
                ));
                d.clone()
            }
            (None, None) => {
                return Err(self.invalid(format!(
                    "{} recorded no digest here and no tag {} exists: nothing to roll back to",
                    target.version,
                    own_tags.join(" or ")
                )))
            }
        };
        if let (Some(_), Some((t, live))) = (&recorded, &own_live) {
            if live != &digest {
                refusals.push(format!(
                    "{}: tag {t} now points at {live}, not at {digest} recorded for {}: the target was re-pushed (tampered with); --force rolls back to the recorded digest anyway",
                    self.name, target.version
                ));
            }
        }
        // A tag that resolves to the digest proves the manifest exists; ask only otherwise.
        let proven = own_live.as_ref().is_some_and(|(_, d)| d == &digest);
        if !proven && !self.store.exists(&digest).await? {
            return Err(self.invalid(format!(
                "manifest {digest} of {} no longer exists in {}: cannot roll back to it",
                target.version, self.name
            )));
        }

        let mut tags: Vec<String> = input
            .target_package
            .map(|p| p.tags.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                let mut t = self.move_tags.clone();
                let own = own_live
                    .as_ref()
                    .map(|(t, _)| t.clone())
                    .unwrap_or_else(|| target.version.to_string());
                if !t.contains(&own) {
                    t.insert(0, own);
                }
                t
            });
        tags.dedup();
        if input.target_package.is_none_or(|p| p.tags.is_empty()) {
            notes.push(format!(
                "{} recorded no tags; moving {}",
                target.version,
                tags.join(", ")
            ));
        }
        let current_only: Vec<String> = input
            .current_package
            .map(|p| {
                p.tags
                    .iter()
                    .filter(|t| !tags.contains(t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();

        // The version tags were resolved above; every other tag is resolved once, here.
        let resolved = &resolved;
        let observed = join_all(tags.iter().chain(current_only.iter()).map(|t| async move {
            match resolved.get(t) {
                Some(known) => (t.clone(), Ok(known.clone())),
                None => (t.clone(), self.store.resolve(t).await),
            }
        }))
        .await;
        let mut steps = Vec::new();
        for (tag, live) in observed {
            let live = live?;
            let is_current_only = current_only.contains(&tag);
            let mut step = Step::new(Action::unchanged(), &tag);
            step.before = live.as_ref().map(|d| d.to_string());
            if is_current_only {
                if live.is_none() {
                    continue;
                }
                step.action = Action::left_in_place();
                step.detail = Some(format!(
                    "only {} had this tag; left in place",
                    input
                        .current
                        .map(|c| c.version.to_string())
                        .unwrap_or_default()
                ));
            } else {
                step.after = Some(digest.to_string());
                if live.as_ref() != Some(&digest) {
                    step.action = Action::change(MOVE_TAG);
                    if live.is_none() {
                        step.detail = Some("tag is missing; it will be created".into());
                    }
                }
            }
            steps.push(step);
        }
        if steps.iter().any(|s: &Step| s.action.changes()) {
            notes.push(
                "who this reaches: new pulls of the moved tags get the target image; running containers keep the image they started with until they are restarted or redeployed"
                    .into(),
            );
        }
        Ok(PlanOutcome {
            plan: RegistryPlan {
                format: self.format.to_string(),
                registry: self.name.clone(),
                steps,
                notes,
            },
            refusals,
            warnings,
        })
    }
}

impl Registry for TagRegistry {
    fn format(&self) -> &str {
        self.format
    }

    fn verify<'a>(
        &'a self,
        input: crate::registry::VerifyInput<'a>,
    ) -> BoxFuture<'a, Result<crate::registry::Verified, RegistryError>> {
        Box::pin(async move {
            let mut v = crate::registry::Verified {
                checked: true,
                ..Default::default()
            };
            let recorded = input.target.and_then(|p| p.digest.clone()).or_else(|| {
                input
                    .plan
                    .steps
                    .iter()
                    .find(|s| !s.action.is_left_in_place())
                    .and_then(|s| s.after.clone())
            });
            let Some(target) = recorded.and_then(|d| Digest::parse(&d).ok()) else {
                v.checked = false;
                return Ok(v);
            };
            v.requests += 2;
            let Some(root) = self.store.fetch_opt(&target).await? else {
                v.missing
                    .push(format!("{}: manifest {target} is gone", self.name));
                return Ok(v);
            };
            if input.dependencies {
                super::verify::dependencies(&self.store, &self.name, &root, &mut v).await?;
            }
            let current = input
                .current
                .and_then(|p| p.digest.as_deref())
                .and_then(|d| Digest::parse(d).ok())
                .filter(|d| *d != target);
            if let (true, Some(cur)) = (input.image_config, current) {
                v.requests += 2;
                if let Some(cm) = self.store.fetch_opt(&cur).await? {
                    let tc = super::verify::config_of(&self.store, &root, &mut v).await?;
                    let cc = super::verify::config_of(&self.store, &cm, &mut v).await?;
                    if let (Some(tc), Some(cc)) = (tc, cc) {
                        for d in super::verify::config_differences(&cc, &tc) {
                            v.warnings.push(format!("{}: image config: {d}", self.name));
                        }
                    }
                }
            }
            Ok(v)
        })
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn resolve_tag<'a>(
        &'a self,
        tag: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, RegistryError>> {
        Box::pin(async move { Ok(self.store.resolve(tag).await?.map(|d| d.to_string())) })
    }

    fn probe(&self) -> BoxFuture<'_, crate::registry::Probe> {
        Box::pin(async move {
            match &self.store {
                TagStore::Remote { client, .. } => crate::registry::Probe {
                    credential: client.credential_source(),
                    reached: Some(
                        client
                            .ping()
                            .await
                            .map(|()| format!("GET /v2/ on {} answered", client.host()))
                            .map_err(|e| e.to_string()),
                    ),
                },
                TagStore::Layout(l) => crate::registry::Probe {
                    credential: None,
                    reached: Some(
                        l.tags()
                            .map(|t| format!("OCI layout with {} tags", t.len()))
                            .map_err(|e| e.to_string()),
                    ),
                },
            }
        })
    }

    fn plan<'a>(
        &'a self,
        input: PlanInput<'a>,
    ) -> BoxFuture<'a, Result<PlanOutcome, RegistryError>> {
        Box::pin(self.plan_tags(input))
    }

    fn prepare<'a>(&'a self, steps: &'a [Step]) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut digests: Vec<&str> = steps
                .iter()
                .filter(|s| s.action.as_str() == MOVE_TAG)
                .filter_map(|s| s.after.as_deref())
                .collect();
            digests.sort_unstable();
            digests.dedup();
            for d in digests {
                self.manifest(d).await?;
            }
            Ok(())
        })
    }

    fn apply<'a>(
        &'a self,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistryError>> {
        Box::pin(async move {
            let after = step.after.as_deref().ok_or_else(|| {
                self.invalid(format!(
                    "step for tag {} has no target digest",
                    step.reference
                ))
            })?;
            let manifest = self.manifest(after).await?;
            if let Err(e) = self.store.put(&step.reference, &manifest).await {
                // "Already exists" to a put of the digest the tag already has is success.
                if matches!(&e, TagError::Oci(OciError::ImmutableTag { .. }))
                    && self
                        .store
                        .resolve(&step.reference)
                        .await
                        .ok()
                        .flatten()
                        .as_ref()
                        == Some(&manifest.digest)
                {
                    return Ok(serde_json::json!({ "tag": step.reference, "before": step.before }));
                }
                return Err(e.into());
            }
            Ok(serde_json::json!({ "tag": step.reference, "before": step.before }))
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            if *state == UndoState::Unknown && step.before.is_some() {
                // Whether the step landed is unknown (it failed, or the run was interrupted):
                // a tag still at its observed digest needs nothing.
                let live = self.store.resolve(&step.reference).await?;
                if live.as_ref().map(|d| d.to_string()) == step.before {
                    return Ok(());
                }
            }
            let Some(before) = step.before.as_deref() else {
                // A tag the rollback would have created: fine if it never got there.
                if self.store.resolve(&step.reference).await?.is_none() {
                    return Ok(());
                }
                return Err(self.invalid(format!(
                    "tag {} did not exist before the rollback and the distribution API cannot delete a tag; it still points at {}",
                    step.reference,
                    step.after.as_deref().unwrap_or("the target")
                )));
            };
            let manifest = self.manifest(before).await?;
            self.store.put(&step.reference, &manifest).await?;
            Ok(())
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<crate::registry::Observation, RegistryError>> {
        Box::pin(async move {
            let mut found = None;
            for t in version_tags(version) {
                if let Some(d) = self.store.resolve(&t).await? {
                    found = Some(d);
                    break;
                }
            }
            let digest = found.ok_or_else(|| {
                self.invalid(format!(
                    "no tag {} found: push the release before recording it",
                    version_tags(version).join(" or ")
                ))
            })?;
            let mut tags = self.store.tags_pointing_at(&digest, version).await?;
            tags.sort_by_key(|t| (!version_tags(version).contains(t), t.clone()));
            let mut pkg = Package::new(self.format, &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.digest = Some(digest.to_string());
            pkg.tags = tags;
            Ok(pkg.into())
        })
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        _undo: Option<&'a serde_json::Value>,
        recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if step.action.as_str() != MOVE_TAG {
                return Err(format!("`{}` is not a step of this backend", step.action));
            }
            if !crate::history::is_tag(&step.reference) {
                return Err(format!("`{}` is not a valid tag", step.reference));
            }
            let known = |d: &str| recorded.iter().any(|p| p.digest.as_deref() == Some(d));
            // Applying moves the tag to `after`, undoing moves it back to `before`: both must
            // be digests some release of this registry recorded.
            match step.after.as_deref() {
                Some(d) if known(d) => {}
                Some(d) => return Err(format!("{d} is not a digest the history records here")),
                None => return Err("the step names no target digest".into()),
            }
            match step.before.as_deref() {
                None => Ok(()),
                Some(d) if known(d) => Ok(()),
                Some(d) => Err(format!(
                    "undoing would point {} at {d}, which the history does not record; put it back by hand",
                    step.reference
                )),
            }
        })
    }

    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Option<Package> {
        let mut pkg = crate::registry::recorded_as_deployed(self.format, &self.name, target);
        if let Some(d) = plan.steps.iter().find_map(|s| s.after.clone()) {
            pkg.digest = Some(d);
        }
        pkg.tags = plan
            .steps
            .iter()
            .filter(|s| s.action.as_str() == MOVE_TAG || s.action.is_unchanged())
            .map(|s| s.reference.clone())
            .collect();
        Some(pkg)
    }
}
