//! The deployment-history model: what `.bagboy/deployment-history.yml` holds.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;
use time::OffsetDateTime;

use crate::yaml::{Loc, Node};

/// The whole history file.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub deployments: Vec<Deployment>,
    /// Top-level keys other than `deployments`, kept for write-back.
    pub extra: Vec<(String, Node)>,
}

/// One recorded deployment (a release, or the result of a rollback).
#[derive(Clone, Debug)]
pub struct Deployment {
    pub version: Version,
    pub timestamp: Timestamp,
    pub commit: Option<String>,
    pub status: Option<Status>,
    pub rollback_of: Option<String>,
    pub rollback_safe: Option<bool>,
    pub actor: Option<String>,
    pub notes: Option<String>,
    pub packages: Vec<Package>,
    /// Kept verbatim; bagboy does not interpret health checks yet.
    pub health_checks: Option<Node>,
    pub extra: Vec<(String, Node)>,
    /// Where the entry starts in the file it was read from (line 0 for new entries).
    pub loc: Loc,
}

/// One registry's part of a deployment.
#[derive(Clone, Debug, PartialEq)]
pub struct Package {
    pub format: String,
    pub registry: String,
    pub status: Option<Status>,
    pub formula: Option<String>,
    pub tap_commit: Option<String>,
    pub digest: Option<String>,
    pub tags: Vec<String>,
    pub extra: Vec<(String, Node)>,
    pub loc: Loc,
}

impl Package {
    pub fn new(format: &str, registry: &str) -> Self {
        Package {
            format: format.to_string(),
            registry: registry.to_string(),
            status: None,
            formula: None,
            tap_commit: None,
            digest: None,
            tags: Vec::new(),
            extra: Vec::new(),
            loc: Loc::default(),
        }
    }
}

/// The statuses of the contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Deployed,
    Superseded,
    RolledBackFrom,
    RollingBack,
    RollbackFailed,
    Failed,
    /// Recorded on the idle environment of a blue-green pair; `promote` makes it live.
    Staged,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Deployed,
        Status::Superseded,
        Status::RolledBackFrom,
        Status::RollingBack,
        Status::RollbackFailed,
        Status::Failed,
        Status::Staged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Deployed => "deployed",
            Status::Superseded => "superseded",
            Status::RolledBackFrom => "rolled_back_from",
            Status::RollingBack => "rolling_back",
            Status::RollbackFailed => "rollback_failed",
            Status::Failed => "failed",
            Status::Staged => "staged",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Entries with these statuses are never picked as a rollback target by default.
    pub fn is_failure(self) -> bool {
        matches!(self, Status::Failed | Status::RollbackFailed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A release version as registries accept it: semver with or without `v`, two-part (`3.10`),
/// CalVer with leading zeros (`2024.04.05`), four-part, font-style (`0.921`), pre-releases
/// (`1.0.0-rc.1`, `2.0b3`). Written back exactly as the user wrote it.
///
/// Ordering: semver's when both are semver; otherwise Homebrew-style segment comparison
/// (numbers numerically, so `3.10 > 3.9` and `2024.04.05 == 2024.4.5` in order; pre-release
/// words `alpha < beta < pre < rc` below the release; a missing segment counts as 0), and the
/// text itself as the last tie-break so that order and equality agree.
#[derive(Clone, Debug)]
pub struct Version {
    raw: String,
    semver: Option<semver::Version>,
}

/// Why a string is not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("it is empty")]
    Empty,
    #[error("it is longer than 128 characters")]
    TooLong,
    #[error("it must start with a letter or digit after an optional `v`")]
    BadStart,
    #[error("`{0}` is not allowed in a version (letters, digits, `.`, `-`, `_`, `+`, `~`, `,`)")]
    BadChar(char),
    #[error("it holds no digit")]
    NoDigit,
}

/// One segment of a version, for ordering.
#[derive(Debug, PartialEq, Eq)]
enum Segment<'a> {
    /// A pre-release word (`alpha`, `a`, `beta`, `b`, `pre`, `rc`, `dev`): below a release.
    Pre(u8, &'a str),
    Num(u128),
    Word(&'a str),
}

impl Segment<'_> {
    fn rank(&self) -> u8 {
        match self {
            Segment::Pre(..) => 0,
            Segment::Word(_) => 1,
            Segment::Num(_) => 2,
        }
    }
}

fn segments(bare: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in bare.split(|c: char| !c.is_ascii_alphanumeric()) {
        let mut rest = part;
        while !rest.is_empty() {
            let digits = rest.starts_with(|c: char| c.is_ascii_digit());
            let end = rest
                .find(|c: char| c.is_ascii_digit() != digits)
                .unwrap_or(rest.len());
            let (tok, tail) = rest.split_at(end);
            rest = tail;
            out.push(if digits {
                Segment::Num(tok.parse().unwrap_or(u128::MAX))
            } else {
                let lower = tok.to_ascii_lowercase();
                match lower.as_str() {
                    "dev" => Segment::Pre(0, tok),
                    "alpha" | "a" => Segment::Pre(1, tok),
                    "beta" | "b" => Segment::Pre(2, tok),
                    "pre" | "preview" => Segment::Pre(3, tok),
                    "rc" | "c" => Segment::Pre(4, tok),
                    _ => Segment::Word(tok),
                }
            });
        }
    }
    out
}

fn compare_segments(a: &str, b: &str) -> Ordering {
    let (x, y) = (segments(a), segments(b));
    let n = x.len().max(y.len());
    for i in 0..n {
        let ord = match (x.get(i), y.get(i)) {
            (Some(p), Some(q)) => match (p, q) {
                (Segment::Num(m), Segment::Num(k)) => m.cmp(k),
                (Segment::Pre(m, s), Segment::Pre(k, t)) => m.cmp(k).then_with(|| s.cmp(t)),
                (Segment::Word(s), Segment::Word(t)) => s.cmp(t),
                (p, q) => p.rank().cmp(&q.rank()),
            },
            // A missing segment is a release `0`: `1.0` == `1.0.0` in order, `1.0-rc1` < `1.0`,
            // `1.0.1` > `1.0`.
            (Some(p), None) => match p {
                Segment::Num(0) => Ordering::Equal,
                Segment::Pre(..) => Ordering::Less,
                _ => Ordering::Greater,
            },
            (None, Some(q)) => match q {
                Segment::Num(0) => Ordering::Equal,
                Segment::Pre(..) => Ordering::Greater,
                _ => Ordering::Less,
            },
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    Ordering::Equal
}

impl Version {
    pub fn parse(s: &str) -> Result<Version, VersionError> {
        let trimmed = s.trim();
        let bare = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        if bare.is_empty() {
            return Err(VersionError::Empty);
        }
        if trimmed.len() > 128 {
            return Err(VersionError::TooLong);
        }
        if !bare.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(VersionError::BadStart);
        }
        if let Some(c) = bare
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || ".-_+~,".contains(*c)))
        {
            return Err(VersionError::BadChar(c));
        }
        if !bare.chars().any(|c| c.is_ascii_digit()) {
            return Err(VersionError::NoDigit);
        }
        Ok(Version {
            raw: trimmed.to_string(),
            semver: semver::Version::parse(bare).ok(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The version as semver, when it is one (npm's and cargo's versions always are).
    pub fn semver(&self) -> Option<&semver::Version> {
        self.semver.as_ref()
    }

    /// The version without a leading `v` (what formulas, manifests and npm declare).
    pub fn bare(&self) -> String {
        self.raw
            .strip_prefix(['v', 'V'])
            .unwrap_or(&self.raw)
            .to_string()
    }
}

/// The recorded versions nearest to `asked` (a typo such as `v1.1.O`, a missing `v`), best
/// first, at most three.
pub fn nearest_versions<'a>(
    asked: &str,
    recorded: impl Iterator<Item = &'a Version>,
) -> Vec<String> {
    let bare = |s: &str| {
        s.trim()
            .strip_prefix(['v', 'V'])
            .unwrap_or(s.trim())
            .to_ascii_lowercase()
    };
    let a = bare(asked);
    let mut seen = std::collections::BTreeSet::new();
    let mut scored: Vec<(usize, String)> = recorded
        .filter(|v| seen.insert(v.as_str().to_string()))
        .map(|v| (edit_distance(&a, &bare(v.as_str())), v.as_str().to_string()))
        .filter(|(d, v)| *d <= 2.max(v.len() / 3))
        .collect();
    scored.sort();
    scored.into_iter().take(3).map(|(_, v)| v).collect()
}

/// Levenshtein distance over characters.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        match (&self.semver, &other.semver) {
            (Some(a), Some(b)) => a.cmp(b),
            _ => {
                let (a, b) = (self.bare(), other.bare());
                compare_segments(&a, &b).then_with(|| a.cmp(&b))
            }
        }
    }
}
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

/// An RFC 3339 instant, written back as the user wrote it.
#[derive(Clone, Debug)]
pub struct Timestamp {
    raw: String,
    at: OffsetDateTime,
}

impl Timestamp {
    pub fn parse(s: &str) -> Result<Timestamp, time::error::Parse> {
        let at = OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)?;
        Ok(Timestamp {
            raw: s.trim().to_string(),
            at,
        })
    }

    pub fn now() -> Timestamp {
        let at = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or(OffsetDateTime::now_utc());
        let raw = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        Timestamp { raw, at }
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn at(&self) -> OffsetDateTime {
        self.at
    }
}

impl PartialEq for Timestamp {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}
impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl Deployment {
    /// `environment:` (blue-green): where the release runs.
    pub fn environment(&self) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == "environment")
            .and_then(|(_, n)| n.as_scalar())
            .map(|s| s.text.as_str())
    }

    /// A scalar field bagboy keeps among the entry's other fields (`audit`, `environment`).
    pub fn extra_str(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, n)| n.as_scalar())
            .map(|s| s.text.as_str())
    }

    /// Set (or replace) a field bagboy keeps among the entry's other fields.
    pub fn set_extra(&mut self, key: &str, value: Node) {
        match self.extra.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = value,
            None => self.extra.push((key.to_string(), value)),
        }
    }

    pub fn new(version: Version, status: Status) -> Self {
        Deployment {
            version,
            timestamp: Timestamp::now(),
            commit: None,
            status: Some(status),
            rollback_of: None,
            rollback_safe: None,
            actor: None,
            notes: None,
            packages: Vec::new(),
            health_checks: None,
            extra: Vec::new(),
            loc: Loc::default(),
        }
    }

    /// The entry's status: its own, or else the one its packages agree on (`deployed` wins).
    pub fn effective_status(&self) -> Option<Status> {
        if let Some(s) = self.status {
            return Some(s);
        }
        let statuses: Vec<Status> = self.packages.iter().filter_map(|p| p.status).collect();
        if statuses.contains(&Status::Deployed) {
            return Some(Status::Deployed);
        }
        statuses.first().copied()
    }

    /// Set the entry's status, and the status of every package that carries one, so both
    /// shapes of the file stay consistent.
    pub fn set_status(&mut self, status: Status) {
        self.status = Some(status);
        for p in &mut self.packages {
            if p.status.is_some() {
                p.status = Some(status);
            }
        }
    }

    pub fn is_rollback(&self) -> bool {
        self.rollback_of.is_some()
    }

    pub fn package(&self, registry: &str) -> Option<&Package> {
        self.packages.iter().find(|p| p.registry == registry)
    }
}

impl History {
    /// Indices of the deployments, newest first (by timestamp; file order breaks ties).
    pub fn newest_first(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.deployments.len()).collect();
        // Stable sort keeps file order for equal timestamps; files are written newest first.
        idx.sort_by(|a, b| {
            self.deployments[*b]
                .timestamp
                .at()
                .cmp(&self.deployments[*a].timestamp.at())
        });
        idx
    }

    /// Sort the deployments newest first, the order the file is written in.
    pub fn sort_newest_first(&mut self) {
        let order = self.newest_first();
        let mut slots: Vec<Option<Deployment>> = std::mem::take(&mut self.deployments)
            .into_iter()
            .map(Some)
            .collect();
        self.deployments = order.into_iter().filter_map(|i| slots[i].take()).collect();
    }

    /// The index of the current (`deployed`) entry.
    pub fn current(&self) -> Option<usize> {
        self.newest_first()
            .into_iter()
            .find(|i| self.deployments[*i].effective_status() == Some(Status::Deployed))
    }

    /// The newest entry for a version (a version may appear more than once).
    pub fn find_version(&self, version: &Version) -> Option<usize> {
        self.newest_first()
            .into_iter()
            .find(|i| &self.deployments[*i].version == version)
    }

    /// The entry to roll back to for `version`: the newest one with that version, passing over
    /// records of failed or unfinished rollback attempts when the release itself is there too.
    pub fn find_target(&self, version: &Version) -> Option<usize> {
        let candidates: Vec<usize> = self
            .newest_first()
            .into_iter()
            .filter(|i| &self.deployments[*i].version == version)
            .collect();
        candidates
            .iter()
            .copied()
            .find(|i| {
                let d = &self.deployments[*i];
                !(d.is_rollback()
                    && matches!(
                        d.effective_status(),
                        Some(Status::RollbackFailed | Status::RollingBack)
                    ))
            })
            .or_else(|| candidates.first().copied())
    }

    /// Resolve `current`, `previous` (the entry recorded just before the current one, whatever
    /// its status: after a rollback, the release rolled back from), `target` (the default
    /// rollback target) or a version string to an entry index.
    pub fn resolve(&self, spec: &str) -> Result<usize, String> {
        match spec {
            "current" => self.current().ok_or_else(|| {
                "no entry is `deployed`, so there is no current version".to_string()
            }),
            "previous" => {
                let c = self.current().ok_or_else(|| {
                    "no entry is `deployed`, so there is no previous one".to_string()
                })?;
                let order = self.newest_first();
                let at = order.iter().position(|i| *i == c).unwrap_or(0);
                order
                    .get(at + 1)
                    .copied()
                    .ok_or_else(|| "nothing was recorded before the current entry".to_string())
            }
            "target" => self
                .default_target()
                .ok_or_else(|| "there is no earlier good version to roll back to".to_string()),
            v => {
                let version =
                    Version::parse(v).map_err(|e| format!("`{v}` is not a version: {e}"))?;
                self.find_version(&version)
                    .ok_or_else(|| format!("version {v} is not in the history"))
            }
        }
    }

    /// The default rollback target: the newest entry older than the current one that is not
    /// `failed`/`rollback_failed` (nor an unfinished `rolling_back`), and a different version.
    /// Entries marked `rolled_back_from` are passed over too: a rollback moved away from them
    /// because they were bad, so a second `bagboy rollback` goes further back, never forward
    /// to the broken release.
    ///
    /// An entry marked `rollback_safe: false` is not passed over: it is the target, and the
    /// rollback refuses it without `--force` (contract). Skipping it would silently go back
    /// further than the release before the current one.
    pub fn default_target(&self) -> Option<usize> {
        let order = self.newest_first();
        let current = self.current();
        let start = match current {
            Some(c) => order.iter().position(|i| *i == c)? + 1,
            None => 0,
        };
        let current_version = current.map(|c| &self.deployments[c].version);
        // A version once rolled back from is bad in every entry that names it (a promotion's
        // superseded staged entry of the same release included): a second rollback goes
        // further back, never forward onto it.
        let rolled_back: Vec<&Version> = self
            .deployments
            .iter()
            .filter(|d| d.effective_status() == Some(Status::RolledBackFrom))
            .map(|d| &d.version)
            .collect();
        order[start..].iter().copied().find(|i| {
            let d = &self.deployments[*i];
            !d.effective_status().is_some_and(Status::is_failure)
                && d.effective_status() != Some(Status::RollingBack)
                && d.effective_status() != Some(Status::Staged)
                && d.effective_status() != Some(Status::RolledBackFrom)
                && !rolled_back.contains(&&d.version)
                && Some(&d.version) != current_version
        })
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_version_a_registry_accepts_parses_and_keeps_its_text() {
        for s in [
            "v1.2.3",
            "1.2.3",
            "3.10",
            "0.8",
            "2.9",
            "0.921",
            "2.400",
            "2024.04.05",
            "1.2.3.4",
            "1.0.0-rc.1",
            "2.0b3",
            "1.2.3+build.5",
            "v2024.04.05",
            "1.0,abc",
        ] {
            assert_eq!(v(s).as_str(), s);
        }
        assert_eq!(v("v2024.04.05").bare(), "2024.04.05");
        for bad in ["", "v", "latest", "-1.0", "1.0 beta", "1.0/../x", "1.0\n2"] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions_order_as_their_ecosystems_do() {
        let ordered = [
            "0.8",
            "0.921",
            "1.0.0-rc.1",
            "1.0.0",
            "1.2",
            "2.9",
            "2.400",
            "3.9",
            "3.10",
            "2024.04.05",
            "2024.10.01",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        // semver with and without `v` is the same release.
        assert_eq!(v("v1.2.3"), v("1.2.3"));
        assert!(v("v1.10.0") > v("v1.9.0"));
        // Pre-release words below the release; CalVer zero padding is not a different order.
        assert!(v("2.0b3") < v("2.0"));
        assert!(v("2.0rc1") > v("2.0b3"));
        assert_eq!(
            v("2024.04.05").cmp(&v("2024.4.5")),
            "2024.04.05".cmp("2024.4.5"),
            "equal in order, told apart by text so that order and equality agree"
        );
    }

    #[test]
    fn a_typo_is_answered_with_the_nearest_recorded_versions() {
        let recorded = [v("v1.1.0"), v("v1.2.0"), v("v2.0.0")];
        let near = nearest_versions("v1.1.O", recorded.iter());
        assert_eq!(near.first().map(String::as_str), Some("v1.1.0"), "{near:?}");
        assert!(nearest_versions("9.9.9.9.9", recorded.iter()).is_empty());
    }
}
