//! One `Registry` for every kind kept as files in a git repository: a [`Codec`] says which files
//! and what a rollback writes into them; this module plans, commits, pushes, undoes, records and
//! vets through the shared [`Repo`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::OnceCell;

use super::{Author, Change, Flavor, Outcome, Repo, RepoError, RepoSpec};
use crate::config::RegistryConfig;
use crate::history::{Package, Problem, Problems, Status, Version};
use crate::plan::{Action, RegistryPlan, Step};
use crate::registry::{
    self as registry, BackendError, BoxFuture, Env, Observation, PlanInput, PlanOutcome, Registry,
    RegistryError, UndoState,
};
use crate::yaml::{Node, Value as YValue};

/// What a kind's file format contributes: where its files are and what a rollback writes.
pub trait Codec: Send + Sync + 'static {
    /// The kind (its `format:` name).
    fn kind(&self) -> &'static registry::Kind;
    /// How its repository is named in messages and kept in the cache.
    fn flavor(&self) -> Flavor;
    /// The step's action (`restore_manifest`, ...).
    fn action(&self) -> &'static str;
    /// What the files hold, for messages (`myapp's manifest`, `chart myapp`).
    fn subject(&self) -> String;
    /// Every path the files may have, for searching history.
    fn candidates(&self) -> Vec<String>;
    /// The files at a commit, given which paths exist there. Empty: none.
    fn locate(&self, exists: &dyn Fn(&str) -> bool) -> Vec<String>;
    /// Whether a path is one this registry may write (journaled steps are input).
    fn may_write(&self, path: &str) -> bool {
        self.candidates().iter().any(|c| c == path)
    }
    /// Whether the files (in `locate` order) declare `version`. `Err` when they cannot be read.
    fn holds(&self, files: &[Option<String>], version: &str) -> Result<bool, String>;
    /// What the files become: derived only from the live files and the target's.
    fn derive(&self, input: &Derive<'_>) -> Result<Derived, String>;
    /// Notes for every plan of this kind (how users are reached, what to tell automation).
    fn notes(&self, _input: &Derive<'_>, _derived: &Derived) -> Vec<String> {
        Vec::new()
    }
}

/// What [`Codec::derive`] works from.
pub struct Derive<'a> {
    pub paths: &'a [String],
    /// The files at the branch head.
    pub live: &'a [Option<String>],
    /// The files at the target's recorded commit.
    pub target: &'a [Option<String>],
    pub target_version: &'a str,
    pub current_version: Option<&'a str>,
}

/// What [`Codec::derive`] decided.
pub struct Derived {
    pub files: Vec<Option<String>>,
    /// One line for the plan's step.
    pub detail: String,
    pub notes: Vec<String>,
}

/// A restore computed ahead of time: what dry-run prints is what `apply` commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitRestore {
    pub paths: Vec<String>,
    /// The branch head the plan was computed against.
    pub base_commit: String,
    /// The commit recorded for the target.
    pub target_commit: String,
    pub target_version: String,
    #[serde(default)]
    pub current_version: Option<String>,
    /// The files at `base_commit` (`None`: absent).
    pub live: Vec<Option<String>>,
    pub desired: Vec<Option<String>>,
}

impl GitRestore {
    fn changes(&self, from: &[Option<String>], to: &[Option<String>]) -> Vec<Change> {
        self.paths
            .iter()
            .zip(from.iter().zip(to))
            .map(|(p, (a, b))| Change {
                path: p.clone(),
                expected: a.clone(),
                new: b.clone(),
            })
            .collect()
    }
}

/// A pushed restore. `commit == parent` means nothing had to be pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitApplied {
    pub parent: String,
    pub commit: String,
    pub paths: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GitRegistryError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{what} {registry}: {path} at commit {commit}: {message}")]
    File {
        what: &'static str,
        registry: String,
        path: String,
        commit: String,
        message: String,
    },
    #[error("{what} {registry} has no {subject} at commit {commit}")]
    NotFound {
        what: &'static str,
        registry: String,
        subject: String,
        commit: String,
    },
    #[error("{what} {registry}: no commit on branch {branch} has {subject} at version {version}: publish it before recording")]
    NoVersion {
        what: &'static str,
        registry: String,
        branch: String,
        subject: String,
        version: String,
    },
}

impl BackendError for GitRegistryError {
    fn may_have_landed(&self) -> bool {
        matches!(self, GitRegistryError::Repo(e) if e.may_have_landed())
    }

    fn is_input(&self) -> bool {
        match self {
            GitRegistryError::Repo(e) => e.is_input(),
            _ => true,
        }
    }
}

/// `registry`, `remote`, `branch` and the kind's own keys of a `registries:` item.
pub struct Common {
    pub spec: RepoSpec,
    /// The kind's keys, with their values as text.
    pub keys: Vec<(String, String, crate::yaml::Loc)>,
}

impl Common {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }

    pub fn loc(&self, key: &str) -> Option<crate::yaml::Loc> {
        self.keys
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, l)| *l)
    }

    /// Read the keys; `own` are the kind's, `check` judges their values. `default_remote`
    /// stands in for a missing `remote:` (else it is derived from `registry:`).
    pub fn parse(
        cfg: &RegistryConfig,
        own: &[&str],
        default_remote: Option<String>,
        check: impl Fn(&Common, &mut Problems),
    ) -> Result<(Common, Vec<Problem>), Vec<Problem>> {
        let mut p = Problems::default();
        let mut warnings = Vec::new();
        let mut c = Common {
            spec: RepoSpec {
                registry: cfg.registry.clone(),
                remote: None,
                branch: None,
            },
            keys: Vec::new(),
        };
        for (key, k, v) in cfg.options() {
            match key {
                "remote" => {
                    c.spec.remote = p.string(key, v);
                    if c.spec
                        .remote
                        .as_deref()
                        .is_some_and(|r| !crate::git::is_safe_remote(r))
                    {
                        p.push(
                            v.loc,
                            "`remote` must be a git URL, scp-like address or path (not an option, and not a remote helper such as `ext::` or `fd::`)",
                        );
                    }
                }
                "branch" => {
                    c.spec.branch = p.string(key, v);
                    if let Some(b) = &c.spec.branch {
                        if !valid_branch(b) {
                            p.push(v.loc, format!("`branch` {b:?} is not a branch name"));
                        }
                    }
                }
                k2 if own.contains(&k2) => {
                    if let Some(s) = p.string(key, v) {
                        c.keys.push((key.to_owned(), s, v.loc));
                    }
                }
                _ => warnings.push(Problem {
                    loc: k.loc,
                    message: format!("unknown registry key `{key}` ignored"),
                }),
            }
        }
        if c.spec.remote.is_none() {
            c.spec.remote = default_remote;
        }
        if c.spec.remote.is_none() && super::repo_url(&c.spec).is_none() {
            p.push(
                cfg.loc,
                format!(
                    "`registry` {:?} is not owner/repo or a git URL: set `remote`",
                    cfg.registry
                ),
            );
        }
        check(&c, &mut p);
        p.finish(c, warnings)
    }
}

fn valid_branch(b: &str) -> bool {
    !b.is_empty()
        && !b.starts_with(['-', '/'])
        && !b.ends_with(['/', '.'])
        && !b.contains("..")
        && !b.contains("//")
        && !b.ends_with(".lock")
        && b.chars()
            .all(|c| !c.is_control() && !" ~^:?*[\\".contains(c))
}

/// A relative path inside a repository, without `..`, empty or absolute parts.
pub fn valid_repo_path(p: &str) -> bool {
    !p.is_empty()
        && !p.starts_with('/')
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..")
        && !p.chars().any(|c| c.is_control())
}

/// A name that becomes part of a path (`<app>.json`, a chart name).
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(['.', '-'])
        && n.len() <= 200
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.+@".contains(c))
}

/// A registry kept as files in a git repository.
pub struct GitRegistry {
    name: String,
    spec: RepoSpec,
    codec: Arc<dyn Codec>,
    repo: OnceCell<Arc<Repo>>,
}

/// Open a git registry for `cfg` with the kind's codec.
pub fn open(
    cfg: &RegistryConfig,
    _env: &Env,
    spec: RepoSpec,
    codec: Arc<dyn Codec>,
) -> Result<Arc<dyn Registry>, RegistryError> {
    Ok(Arc::new(GitRegistry {
        name: cfg.registry.clone(),
        spec,
        codec,
        repo: OnceCell::new(),
    }))
}

/// Run blocking git work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    registry: &str,
    f: impl FnOnce() -> Result<T, GitRegistryError> + Send + 'static,
) -> Result<T, RegistryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| RegistryError::Task {
            registry: registry.to_string(),
            message: e.to_string(),
        })?
        .map_err(RegistryError::from)
}

/// The commit a package of `key` records (`<key>: {commit: ...}` in `Package.extra`).
pub fn recorded_commit(pkg: &Package, key: &str) -> Option<String> {
    let node = pkg.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v)?;
    node.entries()?
        .find(|(k, _, _)| *k == "commit")
        .and_then(|(_, _, v)| v.as_scalar().map(|s| s.text.clone()))
}

fn record_node(commit: &str, paths: &[String]) -> Node {
    Node::new(YValue::Map(vec![
        (Node::str("commit"), Node::str(commit)),
        (Node::str("file"), Node::str(paths.join(" "))),
    ]))
}

fn short(c: &str) -> &str {
    c.get(..10).unwrap_or(c)
}

fn extra_key(kind: &str) -> String {
    kind.replace('-', "_")
}

impl GitRegistry {
    fn invalid(&self, message: impl Into<String>) -> RegistryError {
        RegistryError::Invalid {
            registry: self.name.clone(),
            message: message.into(),
        }
    }

    fn key(&self) -> String {
        extra_key(self.codec.kind().name)
    }

    async fn repo(&self) -> Result<Arc<Repo>, RegistryError> {
        self.repo
            .get_or_try_init(|| async {
                let root = super::cache_root().ok_or_else(|| {
                    self.invalid("no cache directory: set BAGBOY_CACHE_DIR or HOME")
                })?;
                let spec = self.spec.clone();
                let flavor = self.codec.flavor();
                let repo =
                    blocking(&self.name, move || Ok(Repo::open(&spec, &root, flavor)?)).await?;
                Ok(Arc::new(repo))
            })
            .await
            .cloned()
    }

    fn restore_of(&self, step: &Step) -> Result<GitRestore, RegistryError> {
        serde_json::from_value(step.data["restore"].clone())
            .map_err(|e| self.invalid(format!("plan step for {} is damaged: {e}", step.reference)))
    }
}

/// What the codec finds at a commit.
struct Found {
    /// The commit's full id.
    commit: String,
    /// The files the codec names there (`Codec::locate`).
    paths: Vec<String>,
    contents: Vec<Option<String>>,
}

/// The files the codec names at `commit`, and their contents: every candidate is read in the
/// one `cat-file --batch` that checks the commit.
fn files_at(repo: &Repo, codec: &dyn Codec, commit: &str) -> Result<Found, GitRegistryError> {
    let candidates = codec.candidates();
    let asked: Vec<&str> = candidates.iter().map(String::as_str).collect();
    let read = repo.blobs_at(commit, &asked)?;
    let exists = |p: &str| {
        asked
            .iter()
            .zip(&read.blobs)
            .any(|(c, b)| *c == p && b.is_some())
    };
    let paths = codec.locate(&exists);
    let contents = contents_at(repo, &read.commit, &paths)?;
    Ok(Found {
        commit: read.commit,
        paths,
        contents,
    })
}

/// The contents of `paths` at `commit` (one git process at most, none when already read).
fn contents_at(
    repo: &Repo,
    commit: &str,
    paths: &[String],
) -> Result<Vec<Option<String>>, GitRegistryError> {
    let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    Ok(repo.files_at(commit, &paths)?)
}

/// Plan the restore against the current head. Reads only.
fn plan_restore(
    repo: &Repo,
    codec: &dyn Codec,
    target_commit: &str,
    target_version: &str,
    current_version: Option<&str>,
) -> Result<(GitRestore, Derived, Vec<String>), GitRegistryError> {
    let what = repo.what();
    let base = repo.head()?;
    let Found {
        commit: target_commit,
        paths: target_paths,
        contents: target,
    } = files_at(repo, codec, target_commit)?;
    if target_paths.is_empty() || target.iter().all(Option::is_none) {
        return Err(GitRegistryError::NotFound {
            what,
            registry: repo.registry().to_owned(),
            subject: codec.subject(),
            commit: target_commit,
        });
    }
    // Restore in place when the files moved since the target, so the repository never ends
    // up with two copies.
    let live_paths = files_at(repo, codec, &base)?.paths;
    let paths = if live_paths.len() == target_paths.len() {
        live_paths
    } else {
        target_paths
    };
    let live = contents_at(repo, &base, &paths)?;
    let input = Derive {
        paths: &paths,
        live: &live,
        target: &target,
        target_version,
        current_version,
    };
    let derived = codec
        .derive(&input)
        .map_err(|message| GitRegistryError::File {
            what,
            registry: repo.registry().to_owned(),
            path: paths.join(", "),
            commit: target_commit.clone(),
            message,
        })?;
    let notes = codec.notes(&input, &derived);
    Ok((
        GitRestore {
            paths,
            base_commit: base,
            target_commit,
            target_version: target_version.to_owned(),
            current_version: current_version.map(str::to_owned),
            live,
            desired: derived.files.clone(),
        },
        derived,
        notes,
    ))
}

fn diff(r: &GitRestore) -> String {
    r.paths
        .iter()
        .zip(r.live.iter().zip(&r.desired))
        .filter(|(_, (a, b))| a != b)
        .map(|(p, (a, b))| {
            similar::TextDiff::from_lines(a.as_deref().unwrap_or(""), b.as_deref().unwrap_or(""))
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{p}"), &format!("b/{p}"))
                .to_string()
        })
        .collect()
}

/// The message a rollback commit carries: one line, checked again by `vet`.
fn message(subject_name: &str, target: &str, current: Option<&str>) -> String {
    format!(
        "{subject_name}: roll back to {target}{}",
        current.map(|c| format!(" (from {c})")).unwrap_or_default()
    )
}

impl Registry for GitRegistry {
    fn format(&self) -> &str {
        self.codec.kind().name
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn probe(&self) -> BoxFuture<'_, registry::Probe> {
        Box::pin(async move {
            let credential = super::github_credential(super::repo_url(&self.spec).as_deref());
            // Fetching into bagboy's cache is the read: nothing outside the cache is written.
            let reached = self
                .repo()
                .await
                .map(|r| format!("fetched {} ({})", r.url_display(), r.branch()))
                .map_err(|e| e.to_string());
            registry::Probe {
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
            let repo = self.repo().await?;
            let key = self.key();
            let target_version = input.target.version.to_string();
            let current = input.current.map(|c| c.version.to_string());
            let recorded = input.target_package.and_then(|p| recorded_commit(p, &key));
            let codec = self.codec.clone();
            let (restore, derived, notes) = blocking(&self.name, {
                let (repo, tv, cur) = (repo.clone(), target_version.clone(), current.clone());
                move || {
                    let commit = match recorded {
                        Some(c) => c,
                        None => find_version(&repo, codec.as_ref(), &tv)?,
                    };
                    plan_restore(&repo, codec.as_ref(), &commit, &tv, cur.as_deref())
                }
            })
            .await?;
            let unchanged = restore.live == restore.desired;
            let reference = restore.paths.first().cloned().unwrap_or_default();
            let mut step = Step::new(
                if unchanged {
                    Action::unchanged()
                } else {
                    Action::change(self.codec.action())
                },
                &reference,
            );
            step.before = Some(restore.base_commit.clone());
            step.after = Some(restore.target_commit.clone());
            step.detail = Some(format!(
                "{} (as of {})",
                derived.detail,
                short(&restore.target_commit)
            ));
            if !unchanged {
                step.diff = Some(diff(&restore));
            }
            let msg = message(&self.codec.subject(), &target_version, current.as_deref());
            step.data = json!({ "restore": restore, "message": msg });
            let mut all_notes = derived.notes.clone();
            all_notes.extend(notes);
            Ok(PlanOutcome {
                plan: RegistryPlan {
                    format: self.codec.kind().name.to_string(),
                    registry: self.name.clone(),
                    steps: vec![step],
                    notes: all_notes,
                },
                refusals: Vec::new(),
                warnings: Vec::new(),
            })
        })
    }

    fn apply<'a>(
        &'a self,
        step: &'a Step,
    ) -> BoxFuture<'a, Result<serde_json::Value, RegistryError>> {
        Box::pin(async move {
            let repo = self.repo().await?;
            let restore = self.restore_of(step)?;
            let message = step.data["message"]
                .as_str()
                .unwrap_or("roll back")
                .to_string();
            let applied = blocking(&self.name, move || {
                let author = Author::resolve(&repo);
                let changes = restore.changes(&restore.live, &restore.desired);
                let (parent, commit) = match repo.replace(&changes, &message, &author)? {
                    Outcome::Pushed { parent, commit } => (parent, commit),
                    Outcome::AlreadyThere { head } => (head.clone(), head),
                };
                Ok(GitApplied {
                    parent,
                    commit,
                    paths: restore.paths,
                })
            })
            .await?;
            Ok(serde_json::to_value(&applied).unwrap_or_default())
        })
    }

    fn undo<'a>(
        &'a self,
        step: &'a Step,
        state: &'a UndoState,
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let repo = self.repo().await?;
            let restore = self.restore_of(step)?;
            let message = format!(
                "{}: undo rollback (another registry failed)",
                self.codec.subject()
            );
            let applied: Option<GitApplied> = match state {
                UndoState::Known(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
                    self.invalid(format!(
                        "undo record for {} is damaged: {e}",
                        step.reference
                    ))
                })?),
                UndoState::Unknown => None,
            };
            blocking(&self.name, move || {
                let author = Author::resolve(&repo);
                let changes = match applied {
                    Some(a) if a.commit == a.parent => return Ok(()),
                    // Put back what was there before our commit, if ours is what is there.
                    Some(a) => {
                        let before = contents_at(&repo, &a.parent, &a.paths)?;
                        let ours = contents_at(&repo, &a.commit, &a.paths)?;
                        restore.changes(&ours, &before)
                    }
                    // Whether the push landed is unknown: only our content is put back.
                    None => restore.changes(&restore.desired, &restore.live),
                };
                repo.replace(&changes, &message, &author)?;
                Ok(())
            })
            .await
        })
    }

    fn observe_release<'a>(
        &'a self,
        version: &'a Version,
    ) -> BoxFuture<'a, Result<Observation, RegistryError>> {
        Box::pin(async move {
            let repo = self.repo().await?;
            let codec = self.codec.clone();
            let v = version.to_string();
            let (commit, paths) = blocking(&self.name, move || {
                let commit = find_version(&repo, codec.as_ref(), &v)?;
                let paths = files_at(&repo, codec.as_ref(), &commit)?.paths;
                Ok((commit, paths))
            })
            .await?;
            let mut pkg = Package::new(self.codec.kind().name, &self.name);
            pkg.status = Some(Status::Deployed);
            pkg.extra.push((self.key(), record_node(&commit, &paths)));
            Ok(pkg.into())
        })
    }

    fn restored_package(&self, plan: &RegistryPlan, target: Option<&Package>) -> Option<Package> {
        let mut pkg = registry::recorded_as_deployed(self.codec.kind().name, &self.name, target);
        if let Some(step) = plan.steps.first() {
            let key = self.key();
            let restore: Option<GitRestore> =
                serde_json::from_value(step.data["restore"].clone()).ok();
            if let (Some(c), Some(r)) = (&step.after, restore) {
                if recorded_commit(&pkg, &key).is_none() {
                    pkg.extra.push((key, record_node(c, &r.paths)));
                }
            }
        }
        Some(pkg)
    }

    fn vet<'a>(
        &'a self,
        step: &'a Step,
        undo: Option<&'a serde_json::Value>,
        recorded: &'a [&'a Package],
        _target: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if step.action.as_str() != self.codec.action() {
                return Err(format!("`{}` is not a step of this backend", step.action));
            }
            let restore: GitRestore = serde_json::from_value(step.data["restore"].clone())
                .map_err(|e| format!("the step's restore data is damaged: {e}"))?;
            if restore.paths.is_empty()
                || restore.paths.first() != Some(&step.reference)
                || restore.live.len() != restore.paths.len()
                || restore.desired.len() != restore.paths.len()
                || !restore.paths.iter().all(|p| self.codec.may_write(p))
            {
                return Err(format!(
                    "{} is not a file this registry's config names",
                    step.reference
                ));
            }
            if step.after.as_deref() != Some(restore.target_commit.as_str())
                || step.before.as_deref() != Some(restore.base_commit.as_str())
            {
                return Err("the step's commits disagree with its restore data".into());
            }
            let key = self.key();
            if !recorded
                .iter()
                .any(|p| recorded_commit(p, &key).as_deref() == Some(&restore.target_commit))
            {
                return Err(format!(
                    "{} is not a commit the history records for this registry",
                    restore.target_commit
                ));
            }
            let message = step.data["message"].as_str().unwrap_or_default();
            if message
                != self::message(
                    &self.codec.subject(),
                    &restore.target_version,
                    restore.current_version.as_deref(),
                )
                || message.len() > 300
                || message.contains(['\n', '\r'])
            {
                return Err("the commit message is not one bagboy writes".into());
            }
            let applied: Option<GitApplied> = match undo {
                Some(u) => Some(
                    serde_json::from_value(u.clone())
                        .map_err(|e| format!("the undo record is damaged: {e}"))?,
                ),
                None => None,
            };
            let repo = self.repo().await.map_err(|e| e.to_string())?;
            let codec = self.codec.clone();
            blocking(&self.name, move || {
                let fail = |m: String| Ok(Err(m));
                // The content to commit is what bagboy derives from the recorded commit and
                // the file as it was when the plan was made; undo puts back the latter.
                let target = contents_at(&repo, &restore.target_commit, &restore.paths)?;
                if !codec
                    .holds(&target, &restore.target_version)
                    .unwrap_or(false)
                {
                    return fail(format!(
                        "{} at {} does not hold version {}",
                        restore.paths.join(", "),
                        restore.target_commit,
                        restore.target_version
                    ));
                }
                let live = contents_at(&repo, &restore.base_commit, &restore.paths)?;
                if live != restore.live {
                    return fail(format!(
                        "the content to restore on undo is not {} as of {}",
                        restore.paths.join(", "),
                        restore.base_commit
                    ));
                }
                let derived = codec.derive(&Derive {
                    paths: &restore.paths,
                    live: &live,
                    target: &target,
                    target_version: &restore.target_version,
                    current_version: restore.current_version.as_deref(),
                });
                if derived.map(|d| d.files).ok().as_ref() != Some(&restore.desired) {
                    return fail(format!(
                        "the content to commit is not derived from {} as of {}",
                        restore.paths.join(", "),
                        restore.target_commit
                    ));
                }
                if let Some(a) = applied {
                    if a.paths != restore.paths
                        || contents_at(&repo, &a.parent, &a.paths)? != restore.live
                    {
                        return fail("the undo record does not match the repository".into());
                    }
                }
                Ok(Ok(()))
            })
            .await
            .map_err(|e| e.to_string())?
        })
    }
}

/// The newest commit on the branch whose files declare `version`.
fn find_version(repo: &Repo, codec: &dyn Codec, version: &str) -> Result<String, GitRegistryError> {
    let candidates = codec.candidates();
    let refs: Vec<&str> = candidates.iter().map(String::as_str).collect();
    for commit in repo.commits_touching(&refs)? {
        let Ok(found) = files_at(repo, codec, &commit) else {
            continue;
        };
        if !found.paths.is_empty() && codec.holds(&found.contents, version).unwrap_or(false) {
            return Ok(commit);
        }
    }
    Err(GitRegistryError::NoVersion {
        what: repo.what(),
        registry: repo.registry().to_owned(),
        branch: repo.branch().to_owned(),
        subject: codec.subject(),
        version: version.to_owned(),
    })
}

/// `v1.2.0` and `1.2.0` are the same release.
pub fn same_version(a: &str, b: &str) -> bool {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix(['v', 'V']).unwrap_or(s).to_owned()
    };
    strip(a) == strip(b)
}

/// Order two versions: semver when both are, else numeric runs compared as numbers.
pub fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let strip = |s: &str| {
        let s = s.trim();
        s.strip_prefix(['v', 'V']).unwrap_or(s).to_owned()
    };
    let (a, b) = (strip(a), strip(b));
    if let (Ok(x), Ok(y)) = (semver::Version::parse(&a), semver::Version::parse(&b)) {
        return x.cmp(&y);
    }
    let parts = |s: &str| -> Vec<(u64, String)> {
        s.split(['.', '-', '+', '_'])
            .map(|p| {
                let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                (digits.parse().unwrap_or(0), p[digits.len()..].to_owned())
            })
            .collect()
    };
    parts(&a).cmp(&parts(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order() {
        use std::cmp::Ordering::*;
        assert_eq!(compare_versions("v1.10.0", "1.9.0"), Greater);
        assert_eq!(compare_versions("1.2.0-rc.1", "1.2.0"), Less);
        assert_eq!(compare_versions("2024.04.05", "2024.4.6"), Less);
        assert!(same_version("v1.2.0", "1.2.0"));
    }

    /// Any bytes a repository may hold: every codec answers without panicking.
    #[test]
    fn codecs_never_panic_on_repository_bytes() {
        use crate::registry::{aur, gitops, helm_repo, scoop};
        use proptest::prelude::*;
        let codecs: Vec<Box<dyn Codec>> = vec![
            Box::new(scoop::Manifest {
                app: "myapp".into(),
            }),
            Box::new(aur::Package {
                pkgbase: "myapp-bin".into(),
            }),
            Box::new(helm_repo::Index {
                chart: "myapp".into(),
                index: "index.yaml".into(),
            }),
            Box::new(gitops::Reference {
                file: "k.yaml".into(),
                target: gitops::Target::Kustomize("img".into()),
            }),
            Box::new(gitops::Reference {
                file: "v.yaml".into(),
                target: gitops::Target::Path(vec!["image".into(), "tag".into()]),
            }),
        ];
        let seeds = [
            "apiVersion: v1\nentries:\n  myapp:\n  - version: 1.2.0\n    name: myapp\n  - version: \"1.1.0\"\ngenerated: x\n",
            "images:\n  - name: img # c\n    newTag: v1.2.0 # c\n    digest: sha256:ab\n",
            "image:\n  tag: 'v1.2.0' # c\n",
            "pkgname=x\npkgver=1.2.0\npkgrel=1\nepoch=1\n",
            "pkgbase = x\n\tpkgver = 1.2.0\n\tpkgrel = 1\n\npkgname = x\n",
            "{\"version\": \"1.2.0\"}",
        ];
        let strategy = (
            0..seeds.len(),
            0..seeds.len(),
            proptest::collection::vec((any::<usize>(), any::<char>()), 0..6),
            any::<usize>(),
        );
        let mut runner = proptest::test_runner::TestRunner::default();
        let result = runner.run(&strategy, |(a, b, edits, cut)| {
            let mut live = seeds[a].to_string();
            for (at, c) in edits {
                let mut at = at % (live.len() + 1);
                while !live.is_char_boundary(at) {
                    at -= 1;
                }
                live.insert(at, c);
            }
            let mut cut = cut % (live.len() + 1);
            while !live.is_char_boundary(cut) {
                cut -= 1;
            }
            let live = live[..cut].to_string();
            let files = vec![Some(live.clone()), Some(seeds[b].to_string())];
            let target = vec![Some(seeds[b].to_string()), Some(live)];
            for c in &codecs {
                let _ = c.holds(&files, "v1.2.0");
                let _ = c.derive(&Derive {
                    paths: &["a".into(), "b".into()],
                    live: &files,
                    target: &target,
                    target_version: "1.1.0",
                    current_version: Some("1.2.0"),
                });
            }
            Ok(())
        });
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn names_and_paths() {
        assert!(valid_repo_path("apps/myapp/kustomization.yaml"));
        assert!(!valid_repo_path("../x"));
        assert!(!valid_repo_path("/etc/passwd"));
        assert!(valid_name("myapp"));
        assert!(!valid_name("../x"));
        assert!(valid_branch("gh-pages"));
        assert!(!valid_branch("-x"));
    }
}
