//! Homebrew tap backend: locate a formula or cask in a git tap, plan its restore, commit and push it.

mod backend;
mod formula;
pub(crate) use crate::git;
pub mod ruby;
mod verify;

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::gitrepo::{self, Change, Flavor, Outcome, Repo, RepoError};

pub use backend::{BrewRegistry, Options, BREW, RESTORE_FILE};
pub use formula::{
    declared_version, is_older, normalize_version, same_version, version_from_url, version_matches,
    version_scheme, with_version_scheme, without_version_scheme,
};
pub use git::mask_userinfo;
pub use gitrepo::{cache_root, cache_root_from, Author};

/// Where a tap lives, as written in `bagboy.yaml`.
pub type TapSpec = gitrepo::RepoSpec;

/// How a tap is kept in the cache (`taps/<registry>-<url hash>`, as before the git registries).
const TAP: Flavor = Flavor {
    what: "tap",
    cache_dir: "taps",
    prefix: "",
    default_branch: "main",
    branch_over_remote: false,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Formula,
    Cask,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Formula => "formula",
            Kind::Cask => "cask",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Located {
    pub kind: Kind,
    pub path: String,
}

/// What the caller wants restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub name: String,
    /// The tap commit recorded for the target release; found by version when absent.
    pub target_commit: Option<String>,
    pub target_version: String,
    /// The version users have now; read from the live file when absent.
    pub current_version: Option<String>,
    pub bump_version_scheme: bool,
    /// `formula:` or `cask:` in the config: which one wins when a tap has both of this name.
    #[serde(default)]
    pub prefer: Option<Kind>,
}

/// One file restore, computed ahead of time: what dry-run prints is what `apply` commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePlan {
    pub tap: String,
    pub name: String,
    pub kind: Kind,
    pub path: String,
    /// The tap head the plan was computed against.
    pub base_commit: String,
    pub target_commit: String,
    /// File content at `base_commit`; `None` when the file is absent there.
    pub live: Option<String>,
    pub desired: String,
    pub unchanged: bool,
    pub diff: String,
    /// `(live scheme, desired scheme)` when the plan sets or keeps a `version_scheme`.
    pub version_scheme: Option<(Option<u32>, u32)>,
    pub notes: Vec<String>,
    /// What the restore leaves different from the target (a file of the other kind the target
    /// did not have): shown as plan warnings.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// A pushed restore. `commit == parent` means nothing had to be pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub parent: String,
    pub commit: String,
    pub path: String,
}

impl Applied {
    pub fn is_noop(&self) -> bool {
        self.commit == self.parent
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("invalid formula or cask name `{name}`: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid tap `{tap}`: expected owner/repo or a git URL")]
    InvalidTap { tap: String },
    #[error("invalid commit `{commit}` for tap {tap}: expected a hexadecimal commit id")]
    InvalidCommit { tap: String, commit: String },
    #[error("tap {tap} at {url} cannot be reached: {stderr}")]
    Unreachable {
        tap: String,
        url: String,
        stderr: String,
    },
    #[error("tap {tap} at {url} has no branch `{branch}`")]
    NoBranch {
        tap: String,
        url: String,
        branch: String,
    },
    #[error("commit {commit} does not exist in tap {tap}")]
    NoCommit { tap: String, commit: String },
    #[error("{name} is neither a formula nor a cask in tap {tap} at commit {commit}")]
    NotFound {
        tap: String,
        name: String,
        commit: String,
    },
    #[error("formula {name} has no version {version} in tap {tap}")]
    NoVersion {
        tap: String,
        name: String,
        version: String,
    },
    #[error("{path} at commit {commit} in tap {tap} is not UTF-8 text")]
    NotText {
        tap: String,
        path: String,
        commit: String,
    },
    #[error("both {formula} and {cask} define {name} in tap {tap}: say which with `formula: {name}` or `cask: {name}` in bagboy.yaml")]
    Ambiguous {
        tap: String,
        name: String,
        formula: String,
        cask: String,
    },
    #[error("{path} at commit {commit} in tap {tap} is not Ruby bagboy can restore ({error}); nothing was pushed")]
    NotRuby {
        tap: String,
        path: String,
        commit: String,
        error: String,
    },
    #[error("{path} in tap {tap} was changed by commit {their_commit} since the plan was made; nothing was pushed")]
    Conflict {
        tap: String,
        path: String,
        their_commit: String,
    },
    #[error("tap {tap}: `{command}` failed: {stderr}")]
    Git {
        tap: String,
        command: String,
        stderr: String,
    },
    #[error("tap {tap}: cannot prepare cache {}", path.display())]
    Cache {
        tap: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `owner/repo` → `https://github.com/owner/repo.git`; URLs and scp-like addresses pass through.
pub fn tap_url(spec: &TapSpec) -> Result<String, TapError> {
    gitrepo::repo_url(spec).ok_or_else(|| TapError::InvalidTap {
        tap: spec
            .remote
            .as_deref()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(&spec.registry)
            .trim()
            .to_owned(),
    })
}

impl From<RepoError> for TapError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::InvalidRemote { registry, .. } => TapError::InvalidTap { tap: registry },
            RepoError::InvalidCommit {
                registry, commit, ..
            } => TapError::InvalidCommit {
                tap: registry,
                commit,
            },
            RepoError::Unreachable {
                registry,
                url,
                stderr,
                ..
            } => TapError::Unreachable {
                tap: registry,
                url,
                stderr,
            },
            RepoError::NoBranch {
                registry,
                url,
                branch,
                ..
            } => TapError::NoBranch {
                tap: registry,
                url,
                branch,
            },
            RepoError::NoCommit {
                registry, commit, ..
            } => TapError::NoCommit {
                tap: registry,
                commit,
            },
            RepoError::NotText {
                registry,
                path,
                commit,
                ..
            } => TapError::NotText {
                tap: registry,
                path,
                commit,
            },
            RepoError::Conflict {
                registry,
                path,
                their_commit,
                ..
            } => TapError::Conflict {
                tap: registry,
                path,
                their_commit,
            },
            RepoError::Git {
                registry,
                command,
                stderr,
                ..
            } => TapError::Git {
                tap: registry,
                command,
                stderr,
            },
            RepoError::Cache {
                registry,
                path,
                source,
                ..
            } => TapError::Cache {
                tap: registry,
                path,
                source,
            },
        }
    }
}

/// A tap cloned (bare) into the local cache and fetched at open: the shared git repository
/// machinery ([`Repo`]) plus what Homebrew names mean in it.
#[derive(Debug)]
pub struct Tap {
    repo: Repo,
}

impl std::ops::Deref for Tap {
    type Target = Repo;
    fn deref(&self) -> &Repo {
        &self.repo
    }
}

impl Tap {
    /// Open with `$GITHUB_TOKEN` (if set) as the credential for github.com.
    pub fn open(spec: &TapSpec, cache_root: &Path) -> Result<Tap, TapError> {
        let token = std::env::var("GITHUB_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(SecretString::from);
        Tap::open_with_token(spec, cache_root, token.as_ref())
    }

    /// Clone into `cache_root/taps/<registry>` or fetch the existing cache.
    pub fn open_with_token(
        spec: &TapSpec,
        cache_root: &Path,
        token: Option<&SecretString>,
    ) -> Result<Tap, TapError> {
        tap_url(spec)?;
        Ok(Tap {
            repo: Repo::open_with_token(spec, cache_root, TAP, token)?,
        })
    }

    /// The remote branch head as last fetched.
    pub fn head(&self) -> Result<String, TapError> {
        Ok(self.repo.head()?)
    }

    /// Full id of `commit`, refusing anything that is not a hex id present in the tap.
    pub fn resolve_commit(&self, commit: &str) -> Result<String, TapError> {
        Ok(self.repo.resolve_commit(commit)?)
    }

    /// File content at a commit; `None` when the file does not exist there.
    pub fn file_at(&self, commit: &str, path: &str) -> Result<Option<String>, TapError> {
        Ok(self.repo.file_at(commit, path)?)
    }

    fn git_err(&self, f: crate::git::GitFailure) -> TapError {
        self.repo.git_err(f).into()
    }

    /// Change `path` from `expected` to `new` (`None` = absent) on the remote branch (see
    /// [`Repo::replace`]).
    fn replace_and_push(
        &self,
        path: &str,
        expected: Option<&str>,
        new: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<Outcome, TapError> {
        let change = Change {
            path: path.to_owned(),
            expected: expected.map(str::to_owned),
            new: new.map(str::to_owned),
        };
        Ok(self.repo.replace(&[change], message, author)?)
    }

    fn check_name(&self, name: &str) -> Result<(), TapError> {
        validate_name(name)
    }

    /// Whether `path` is where Homebrew would look for `name`: any depth under `Formula/`,
    /// `HomebrewFormula/` or `Casks/`, or the tap's root.
    pub fn is_location_of(name: &str, path: &str) -> Option<Located> {
        let file = format!("{name}.rb");
        let (dir, base) = match path.rsplit_once('/') {
            Some((d, b)) => (Some(d), b),
            None => (None, path),
        };
        if base != file || path.split('/').any(|seg| seg == ".." || seg.is_empty()) {
            return None;
        }
        let top = dir.map(|d| d.split('/').next().unwrap_or(d));
        let kind = match top {
            None => Kind::Formula,
            Some("Formula") | Some("HomebrewFormula") => Kind::Formula,
            Some("Casks") => Kind::Cask,
            _ => return None,
        };
        Some(Located {
            kind,
            path: path.to_string(),
        })
    }

    /// Every file defining `name` at `commit`, shallowest first.
    fn find_all(&self, name: &str, commit: &str) -> Result<Vec<Located>, TapError> {
        let root = format!("{name}.rb");
        let listed = self
            .repo
            .list_files(commit, &["Formula", "HomebrewFormula", "Casks", &root])?;
        let mut found: Vec<Located> = listed
            .iter()
            .filter_map(|p| Tap::is_location_of(name, p))
            .collect();
        found.sort_by_key(|l| (l.path.matches('/').count(), l.path.clone()));
        Ok(found)
    }

    /// Where `name` lives at `at_commit` (default: head).
    pub fn locate(
        &self,
        name: &str,
        at_commit: Option<&str>,
        prefer: Option<Kind>,
    ) -> Result<Located, TapError> {
        self.check_name(name)?;
        let commit = match at_commit {
            Some(c) => self.resolve_commit(c)?,
            None => self.head()?,
        };
        self.try_locate(name, &commit, prefer)?
            .ok_or_else(|| TapError::NotFound {
                tap: self.registry().to_owned(),
                name: name.to_owned(),
                commit,
            })
    }

    /// The formula or cask `name` at `commit`. When both exist, `prefer` decides; without it
    /// bagboy refuses to guess.
    fn try_locate(
        &self,
        name: &str,
        commit: &str,
        prefer: Option<Kind>,
    ) -> Result<Option<Located>, TapError> {
        let found = self.find_all(name, commit)?;
        let formula = found.iter().find(|l| l.kind == Kind::Formula);
        let cask = found.iter().find(|l| l.kind == Kind::Cask);
        Ok(match (prefer, formula, cask) {
            (Some(Kind::Formula), Some(f), _) => Some(f.clone()),
            (Some(Kind::Cask), _, Some(c)) => Some(c.clone()),
            (None, Some(f), Some(c)) => {
                return Err(TapError::Ambiguous {
                    tap: self.registry().to_owned(),
                    name: name.to_owned(),
                    formula: f.path.clone(),
                    cask: c.path.clone(),
                })
            }
            (_, f, c) => f.or(c).cloned(),
        })
    }

    /// Newest commit on the branch whose `name` file declares `version` (leading `v` ignored;
    /// a cask's `X,Y` matches `X`), with that full declared version.
    pub fn find_commit_for_version(
        &self,
        name: &str,
        version: &str,
        prefer: Option<Kind>,
    ) -> Result<Option<(String, String)>, TapError> {
        self.check_name(name)?;
        let head = self.head()?;
        let specs = [
            format!(":(glob)Formula/**/{name}.rb"),
            format!(":(glob)HomebrewFormula/**/{name}.rb"),
            format!(":(glob)Casks/**/{name}.rb"),
            format!(":(literal){name}.rb"),
        ];
        let mut args = vec!["log", "--format=%H", head.as_str(), "--"];
        args.extend(specs.iter().map(String::as_str));
        let out = self.git.run(&args).map_err(|f| self.git_err(f))?;
        for commit in out.lines().map(str::trim).filter(|c| !c.is_empty()) {
            let Some(loc) = self.try_locate(name, commit, prefer)? else {
                continue;
            };
            let Ok(Some(content)) = self.file_at(commit, &loc.path) else {
                continue;
            };
            if let Some(v) = declared_version(&content).filter(|v| version_matches(v, version)) {
                return Ok(Some((commit.to_owned(), v)));
            }
        }
        Ok(None)
    }

    /// The highest `version_scheme` a bagboy rollback commit ever set for the file at `path`
    /// (rollback commits are the ones whose subject is `<name>: roll back to …`).
    pub fn rollback_scheme(&self, name: &str, path: &str) -> Result<Option<u32>, TapError> {
        let head = self.head()?;
        let out = self
            .git
            .run(&["log", "--format=%H %s", head.as_str(), "--", path])
            .map_err(|f| self.git_err(f))?;
        let marker = format!("{name}: roll back to ");
        let mut best = None;
        for line in out.lines() {
            let Some((commit, subject)) = line.split_once(' ') else {
                continue;
            };
            if !subject.starts_with(&marker) {
                continue;
            }
            if let Ok(Some(content)) = self.file_at(commit, path) {
                best = best.max(version_scheme(&content));
            }
        }
        Ok(best)
    }

    /// Compute the restore of `req.name` to its content at the target commit, against the
    /// current head. Reads only.
    pub fn plan_restore(&self, req: &RestoreRequest) -> Result<RestorePlan, TapError> {
        self.check_name(&req.name)?;
        let base = self.head()?;
        let target = match req.target_commit.as_deref() {
            Some(c) => self.resolve_commit(c)?,
            None => self
                .find_commit_for_version(&req.name, &req.target_version, req.prefer)?
                .map(|(c, _)| c)
                .ok_or_else(|| TapError::NoVersion {
                    tap: self.registry().to_owned(),
                    name: req.name.clone(),
                    version: req.target_version.clone(),
                })?,
        };
        let at_target = self.locate(&req.name, Some(&target), req.prefer)?;
        let target_content =
            self.file_at(&target, &at_target.path)?
                .ok_or_else(|| TapError::NotFound {
                    tap: self.registry().to_owned(),
                    name: req.name.clone(),
                    commit: target.clone(),
                })?;
        // Restore in place when the file moved (e.g. sharded later), so the tap never ends up
        // with two definitions of the same name.
        // The live file of the same kind as the target's: a formula is never restored over
        // a cask of the same name.
        let live_loc = self
            .try_locate(&req.name, &base, Some(at_target.kind))?
            .filter(|l| l.kind == at_target.kind);
        let (kind, path) = match &live_loc {
            Some(l) => (l.kind, l.path.clone()),
            None => (at_target.kind, at_target.path.clone()),
        };
        let live = self.file_at(&base, &path)?;

        // A release that moved between cask and formula: the other kind's file at the head,
        // which the target did not have, still serves the bad version to its users.
        let mut warnings = Vec::new();
        let other = match at_target.kind {
            Kind::Cask => Kind::Formula,
            Kind::Formula => Kind::Cask,
        };
        let other_live = self
            .try_locate(&req.name, &base, Some(other))?
            .filter(|l| l.kind == other);
        let other_at_target = self
            .try_locate(&req.name, &target, Some(other))?
            .filter(|l| l.kind == other);
        if let (Some(o), None) = (&other_live, &other_at_target) {
            let declared = self
                .file_at(&base, &o.path)?
                .as_deref()
                .and_then(declared_version)
                .unwrap_or_else(|| "its version".into());
            warnings.push(format!(
                "{} also has {other} {} ({}, at {declared}), which {} did not have: it is left as it is, so its users keep {declared} on `brew upgrade`; the {} restored here reaches only the {}'s users",
                self.registry(), req.name, o.path, req.target_version, at_target.kind, at_target.kind
            ));
        }

        let mut notes = Vec::new();
        let mut desired = target_content.clone();
        let mut scheme = None;
        let current = req
            .current_version
            .clone()
            .or_else(|| live.as_deref().and_then(declared_version));
        let older = current
            .as_deref()
            .is_none_or(|c| is_older(&req.target_version, c));
        if path != at_target.path {
            notes.push(format!(
                "{} moved from {} to {}; restoring in place",
                req.name, at_target.path, path
            ));
        }
        match kind {
            Kind::Cask => {
                if older {
                    notes.push(
                        "casks have no version_scheme: brew offers any different cask version \
                         as an upgrade, so users move back without a bump"
                            .into(),
                    );
                }
            }
            Kind::Formula if req.bump_version_scheme && older => {
                let live_s = live.as_deref().and_then(version_scheme);
                let target_s = version_scheme(&target_content);
                // The scheme users of the current release have installed: when the target was
                // found by version it may be an earlier rollback commit that already carries
                // the bump, so "live > target" alone would bump again on every run.
                let current_s = match current.as_deref() {
                    Some(c) => self.scheme_of_version(&req.name, c)?,
                    None => None,
                };
                let (l, t) = (live_s.unwrap_or(0), target_s.unwrap_or(0));
                let already = live.as_deref().is_some_and(|live| {
                    without_version_scheme(live) == without_version_scheme(&target_content)
                        && (l > t || (l >= t && current_s.is_some_and(|c| l > c.unwrap_or(0))))
                });
                if let (true, Some(l), Some(s)) = (already, live.as_deref(), live_s) {
                    desired = l.to_owned();
                    scheme = Some((live_s, s));
                    notes.push(format!(
                        "already rolled back: live file matches the target with version_scheme {s}"
                    ));
                } else {
                    let n = 1 + l.max(t).max(current_s.flatten().unwrap_or(0));
                    desired = with_version_scheme(&target_content, n)
                        .map_err(|e| self.not_ruby(&path, &target, e))?;
                    scheme = Some((live_s, n));
                    notes.push(format!(
                        "version_scheme raised to {n} so `brew upgrade` downgrades users of {}; \
                         later formulas must keep version_scheme >= {n}",
                        current.as_deref().unwrap_or("the current version")
                    ));
                }
            }
            Kind::Formula => {
                // The arm above took every bump, so `older` here means the bump is off.
                if older {
                    notes.push(
                        "version_scheme bump is off: users who already upgraded keep the newer \
                         version"
                            .into(),
                    );
                }
                // A lower scheme would make every installed copy look newer than the tap and
                // stop upgrades, so a restore never lowers it.
                let live_s = live.as_deref().and_then(version_scheme);
                if let Some(ls) = live_s.filter(|&ls| Some(ls) > version_scheme(&target_content)) {
                    desired = with_version_scheme(&target_content, ls)
                        .map_err(|e| self.not_ruby(&path, &target, e))?;
                    scheme = Some((live_s, ls));
                    notes.push(format!("version_scheme kept at {ls}: it is never lowered"));
                }
            }
        }
        // Never push what Homebrew could not load.
        let parsed = ruby::Source::parse(&desired).map_err(|e| self.not_ruby(&path, &target, e))?;
        if let Some(retired) = parsed.retired() {
            notes.push(format!(
                "the restored {kind} is retired (`{retired}`): brew refuses to install it"
            ));
        }
        if let Some(why) = parsed.needs_greedy() {
            notes.push(format!(
                "`{why}`: `brew upgrade` skips this cask unless run with `--greedy`, so users keep what they have until the app updates itself or they upgrade with --greedy"
            ));
        }
        let unchanged = live.as_deref() == Some(desired.as_str());
        let diff = similar::TextDiff::from_lines(live.as_deref().unwrap_or(""), &desired)
            .unified_diff()
            .context_radius(3)
            .header(&format!("a/{path}"), &format!("b/{path}"))
            .to_string();
        Ok(RestorePlan {
            tap: self.registry().to_owned(),
            name: req.name.clone(),
            kind,
            path,
            base_commit: base,
            target_commit: target,
            live,
            desired,
            unchanged,
            diff: if unchanged { String::new() } else { diff },
            version_scheme: scheme,
            notes,
            warnings,
        })
    }

    fn not_ruby(&self, path: &str, commit: &str, e: ruby::RubyError) -> TapError {
        TapError::NotRuby {
            tap: self.registry().to_owned(),
            path: path.to_owned(),
            commit: commit.to_owned(),
            error: e.to_string(),
        }
    }

    /// `Some(scheme)` of the newest file declaring `version`, `None` when no commit does.
    fn scheme_of_version(
        &self,
        name: &str,
        version: &str,
    ) -> Result<Option<Option<u32>>, TapError> {
        let Some((commit, _)) = self
            .find_commit_for_version(name, version, None)
            .or_else(|e| match e {
                // Both kinds of this name: the scheme only concerns the formula.
                TapError::Ambiguous { .. } => {
                    self.find_commit_for_version(name, version, Some(Kind::Formula))
                }
                e => Err(e),
            })?
        else {
            return Ok(None);
        };
        let Some(loc) = self.try_locate(name, &commit, Some(Kind::Formula))? else {
            return Ok(None);
        };
        Ok(self
            .file_at(&commit, &loc.path)?
            .map(|content| version_scheme(&content)))
    }

    /// Commit `plan.desired` on top of the remote head and push it without force.
    pub fn apply(
        &self,
        plan: &RestorePlan,
        message: &str,
        author: &Author,
    ) -> Result<Applied, TapError> {
        if plan.unchanged {
            return Ok(Applied {
                parent: plan.base_commit.clone(),
                commit: plan.base_commit.clone(),
                path: plan.path.clone(),
            });
        }
        match self.replace_and_push(
            &plan.path,
            plan.live.as_deref(),
            Some(&plan.desired),
            message,
            author,
        )? {
            Outcome::Pushed { parent, commit } => Ok(Applied {
                parent,
                commit,
                path: plan.path.clone(),
            }),
            Outcome::AlreadyThere { head } => Ok(Applied {
                parent: head.clone(),
                commit: head,
                path: plan.path.clone(),
            }),
        }
    }

    /// Push a new commit putting the file back to its content at `applied.parent`.
    pub fn undo(
        &self,
        applied: &Applied,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        if applied.is_noop() {
            return Ok(applied.parent.clone());
        }
        let before = self.file_at(&applied.parent, &applied.path)?;
        let ours = self.file_at(&applied.commit, &applied.path)?;
        match self.replace_and_push(
            &applied.path,
            ours.as_deref(),
            before.as_deref(),
            message,
            author,
        )? {
            Outcome::Pushed { commit, .. } => Ok(commit),
            Outcome::AlreadyThere { head } => Ok(head),
        }
    }

    /// Put `path` back from `expected` to `new` (`None` = absent) when no [`Applied`] record
    /// exists (an interrupted run): a file already at `new` is left alone, a file at neither
    /// is someone else's change and a conflict. Returns the remote head afterwards.
    pub fn replace_file(
        &self,
        path: &str,
        expected: Option<&str>,
        new: Option<&str>,
        message: &str,
        author: &Author,
    ) -> Result<String, TapError> {
        match self.replace_and_push(path, expected, new, message, author)? {
            Outcome::Pushed { commit, .. } => Ok(commit),
            Outcome::AlreadyThere { head } => Ok(head),
        }
    }
}

/// Refuse names that are not Homebrew names (they become paths in the tap).
pub fn validate_name(name: &str) -> Result<(), TapError> {
    formula::validate_name(name).map_err(|e| TapError::InvalidName {
        name: e.name,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let spec = |r: &str, remote: Option<&str>| TapSpec {
            registry: r.into(),
            remote: remote.map(Into::into),
            branch: None,
        };
        assert_eq!(
            tap_url(&spec("acme/homebrew-tap", None)).ok().as_deref(),
            Some("https://github.com/acme/homebrew-tap.git")
        );
        assert_eq!(
            tap_url(&spec("acme/tap", Some("file:///srv/t.git")))
                .ok()
                .as_deref(),
            Some("file:///srv/t.git")
        );
        assert!(tap_url(&spec("a/b/c", None)).is_err());
        assert!(tap_url(&spec("../x", None)).is_err());
    }

    #[test]
    fn cache_root_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        assert_eq!(
            cache_root_from(env(&[("BAGBOY_CACHE_DIR", "/c"), ("HOME", "/h")])),
            Some(PathBuf::from("/c"))
        );
        assert_eq!(
            cache_root_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/bagboy"))
        );
        assert_eq!(
            cache_root_from(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/bagboy"))
        );
    }

    #[test]
    fn usable_from_spawn_blocking() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Tap>();
        assert_send_sync::<TapError>();
        assert_send_sync::<RestorePlan>();
    }

    #[test]
    fn authors() {
        assert_eq!(
            Author::parse("Jane Doe <jane@x.org>"),
            Some(Author {
                name: "Jane Doe".into(),
                email: "jane@x.org".into()
            })
        );
        assert_eq!(Author::parse("nobody"), None);
    }
}
