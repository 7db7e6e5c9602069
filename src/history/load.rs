//! Reading a history file: YAML tree → validated model, with every problem located.

use std::path::Path;

use crate::history::model::{Deployment, History, Package, Status, Timestamp, Version};
use crate::yaml::{self, Loc, Node, ScalarKind, Value};

/// One thing wrong with a file, at a position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub loc: Loc,
    pub message: String,
}

/// Collects problems while walking a tree.
#[derive(Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// `value` with its warnings when nothing was wrong, else every problem found.
    pub fn finish<T>(
        self,
        value: T,
        warnings: Vec<Problem>,
    ) -> Result<(T, Vec<Problem>), Vec<Problem>> {
        if self.0.is_empty() {
            Ok((value, warnings))
        } else {
            Err(self.0)
        }
    }

    pub fn push(&mut self, loc: Loc, message: impl Into<String>) {
        self.0.push(Problem {
            loc,
            message: message.into(),
        });
    }

    /// A string field: strings as-is, numbers and booleans by their source text.
    pub fn string(&mut self, key: &str, node: &Node) -> Option<String> {
        match &node.value {
            Value::Scalar(s) => Some(s.text.clone()),
            _ => {
                self.push(
                    node.loc,
                    format!("`{key}` must be a string, found {}", node.type_name()),
                );
                None
            }
        }
    }

    /// Keys bagboy keeps for write-back must be strings: `1:` and `"1":` would collide.
    pub fn string_key(&mut self, key: &Node) -> bool {
        match key.as_scalar() {
            Some(s) if s.kind == ScalarKind::Str => true,
            _ => {
                self.push(
                    key.loc,
                    format!("keys must be strings, found {}; quote it", key.type_name()),
                );
                false
            }
        }
    }

    pub fn boolean(&mut self, key: &str, node: &Node) -> Option<bool> {
        match node.as_scalar() {
            Some(s) if s.kind == ScalarKind::Bool => Some(matches!(
                s.text.to_ascii_lowercase().as_str(),
                "true" | "yes" | "on" | "y"
            )),
            _ => {
                self.push(
                    node.loc,
                    format!("`{key}` must be true or false, found {}", node.type_name()),
                );
                None
            }
        }
    }

    pub fn list<'n>(&mut self, key: &str, node: &'n Node) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.push(
                    node.loc,
                    format!("`{key}` must be a list, found {}", node.type_name()),
                );
                &[]
            }
        }
    }

    pub fn string_list(&mut self, key: &str, node: &Node) -> Vec<String> {
        let items = self.list(key, node);
        items
            .iter()
            .filter_map(|i| match i.as_scalar() {
                Some(s) => Some(s.text.clone()),
                None => {
                    self.push(
                        i.loc,
                        format!("`{key}` items must be strings, found {}", i.type_name()),
                    );
                    None
                }
            })
            .collect()
    }

    pub fn version(&mut self, key: &str, node: &Node) -> Option<Version> {
        let Some(s) = node.as_scalar() else {
            self.push(
                node.loc,
                format!(
                    "`{key}` must be a version string, found {}",
                    node.type_name()
                ),
            );
            return None;
        };
        let parsed = Version::parse(&s.text);
        match (s.kind, parsed) {
            // `version: 3.10` is a number to YAML but a version to its writer: the text as
            // written is the version (never the float 3.1).
            (ScalarKind::Str | ScalarKind::Float | ScalarKind::Int, Ok(v)) => Some(v),
            (ScalarKind::Bool, _) => {
                self.push(
                    node.loc,
                    format!("`{key}` must be a version string, found a boolean"),
                );
                None
            }
            (_, Err(e)) => {
                self.push(
                    node.loc,
                    format!(
                        "`{key}` \"{}\" is not a version: {e}",
                        s.text.escape_debug()
                    ),
                );
                None
            }
        }
    }
}

/// Is `s` a content digest such as `sha256:<64 hex>`?
pub fn is_digest(s: &str) -> bool {
    let Some((algo, hex)) = s.split_once(':') else {
        return false;
    };
    let len = match algo {
        "sha256" => 64,
        "sha512" => 128,
        _ => return false,
    };
    hex.len() == len
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Is `s` a full git object id (SHA-1 or SHA-256)?
pub fn is_git_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Is `s` a valid OCI tag?
pub fn is_tag(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn check_single_current(p: &mut Problems, history: &History) {
    let deployed: Vec<&Deployment> = history
        .deployments
        .iter()
        .filter(|d| d.effective_status() == Some(Status::Deployed))
        .collect();
    if let Some(first) = deployed.first() {
        for other in &deployed[1..] {
            p.push(
                other.loc,
                format!(
                    "{} is `deployed`, but so is {} at line {}: at most one entry may be current; mark the older one `superseded`",
                    other.version, first.version, first.loc.line
                ),
            );
        }
    }
}

fn deployment(p: &mut Problems, node: &Node) -> Option<Deployment> {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("a deployment must be a mapping, found {}", node.type_name()),
        );
        return None;
    };
    let before = p.0.len();
    let (mut version, mut timestamp) = (None, None);
    let mut d = Deployment {
        version: Version::parse("0.0.0").ok()?,
        timestamp: Timestamp::now(),
        commit: None,
        status: None,
        rollback_of: None,
        rollback_safe: None,
        actor: None,
        notes: None,
        packages: Vec::new(),
        health_checks: None,
        extra: Vec::new(),
        loc: node.loc,
    };
    for (key, key_node, v) in entries {
        if !p.string_key(key_node) {
            continue;
        }
        match key {
            "version" => version = p.version("version", v),
            "timestamp" => timestamp = timestamp_field(p, v),
            "commit" => d.commit = p.string(key, v),
            "status" => d.status = status_field(p, v),
            "rollback_of" => d.rollback_of = p.version("rollback_of", v).map(|v| v.to_string()),
            "rollback_safe" => d.rollback_safe = p.boolean(key, v),
            "actor" => d.actor = p.string(key, v),
            "notes" => d.notes = p.string(key, v),
            "packages" => {
                for item in p.list(key, v) {
                    if let Some(pkg) = package(p, item) {
                        d.packages.push(pkg);
                    }
                }
            }
            "health_checks" => {
                p.list(key, v);
                d.health_checks = Some(v.clone());
            }
            _ => d.extra.push((key.to_string(), v.clone())),
        }
    }
    if version.is_none() && !entries_have(node, "version") {
        p.push(node.loc, "deployment is missing `version`");
    }
    if timestamp.is_none() && !entries_have(node, "timestamp") {
        p.push(
            node.loc,
            "deployment is missing `timestamp` (RFC 3339, e.g. \"2026-02-01T18:00:00Z\")",
        );
    }
    if d.status.is_none() && d.packages.iter().all(|p| p.status.is_none()) && p.0.len() == before {
        p.push(
            node.loc,
            "deployment has no `status` (set it on the entry or on each package)",
        );
    }
    d.version = version?;
    d.timestamp = timestamp?;
    (p.0.len() == before).then_some(d)
}

fn entries_have(node: &Node, key: &str) -> bool {
    node.entries()
        .is_some_and(|mut e| e.any(|(k, _, _)| k == key))
}

fn timestamp_field(p: &mut Problems, v: &Node) -> Option<Timestamp> {
    let s = p.string("timestamp", v)?;
    match Timestamp::parse(&s) {
        Ok(t) => Some(t),
        Err(e) => {
            p.push(
                v.loc,
                format!("`timestamp` \"{s}\" is not an RFC 3339 date-time (e.g. \"2026-02-01T18:00:00Z\"): {e}"),
            );
            None
        }
    }
}

fn status_field(p: &mut Problems, v: &Node) -> Option<Status> {
    let s = p.string("status", v)?;
    match Status::parse(&s) {
        Some(st) => Some(st),
        None => {
            let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
            p.push(
                v.loc,
                format!(
                    "unknown status `{s}`; expected one of: {}",
                    known.join(", ")
                ),
            );
            None
        }
    }
}

fn package(p: &mut Problems, node: &Node) -> Option<Package> {
    let Some(entries) = node.entries() else {
        p.push(
            node.loc,
            format!("a package must be a mapping, found {}", node.type_name()),
        );
        return None;
    };
    let before = p.0.len();
    let mut pkg = Package::new("", "");
    pkg.loc = node.loc;
    let (mut format, mut registry) = (None, None);
    for (key, key_node, v) in entries {
        if !p.string_key(key_node) {
            continue;
        }
        match key {
            "format" => format = p.string(key, v),
            "registry" => registry = p.string(key, v),
            "status" => pkg.status = status_field(p, v),
            "formula" => pkg.formula = p.string(key, v),
            "tap_commit" => {
                pkg.tap_commit = p.string(key, v);
                if let Some(c) = &pkg.tap_commit {
                    if !is_git_oid(c) {
                        p.push(
                            v.loc,
                            format!(
                                "`tap_commit` \"{c}\" is not a full git commit id (40 hex digits)"
                            ),
                        );
                    }
                }
            }
            "digest" => {
                pkg.digest = p.string(key, v);
                if let Some(dg) = &pkg.digest {
                    if !is_digest(dg) {
                        p.push(v.loc, format!("`digest` \"{dg}\" is not a content digest (sha256:<64 lowercase hex>)"));
                    }
                }
            }
            "tags" => {
                pkg.tags = p.string_list(key, v);
                for t in &pkg.tags {
                    if !is_tag(t) {
                        p.push(v.loc, format!("tag \"{t}\" is not a valid OCI tag"));
                    }
                }
            }
            _ => pkg.extra.push((key.to_string(), v.clone())),
        }
    }
    match format {
        Some(f) if !f.trim().is_empty() => pkg.format = f,
        _ => p.push(
            node.loc,
            "package is missing `format` (docker, oci-layout, brew)",
        ),
    }
    match registry {
        Some(r) if !r.trim().is_empty() => pkg.registry = r,
        _ => p.push(node.loc, "package is missing `registry`"),
    }
    (p.0.len() == before).then_some(pkg)
}

/// Parse a history file's bytes. `path` names the file in messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<History, super::HistoryError> {
    // One entry at a time: each deployment goes from its YAML nodes into the typed model and
    // its nodes are dropped, so memory follows the model, not the file's tree.
    type Acc = (Problems, Vec<Deployment>);
    let acc: std::rc::Rc<std::cell::RefCell<Acc>> = Default::default();
    // Room for about as many entries as bagboy's entries of ~500 bytes make: a 100k-entry
    // history is not copied over and over as the list grows.
    acc.borrow_mut().1.reserve(bytes.len() / 512);
    let sink = {
        let acc = acc.clone();
        Box::new(move |item: Node| {
            let mut a = acc.borrow_mut();
            let (p, ds) = &mut *a;
            if let Some(d) = deployment(p, &item) {
                ds.push(d);
            }
        })
    };
    let mut restart = {
        let acc = acc.clone();
        move || *acc.borrow_mut() = Default::default()
    };
    let root = yaml::parse_streaming(path, bytes, "deployments", sink, &mut restart)
        .map_err(super::HistoryError::Parse)?;
    let (p, deployments) = std::mem::take(&mut *acc.borrow_mut());
    from_streamed(&root, p, deployments).map_err(|problems| super::HistoryError::Invalid {
        path: path.to_path_buf(),
        problems,
    })
}

/// The history from a root whose `deployments` were already read into `deployments`. Every
/// problem found is returned, not only the first.
fn from_streamed(
    root: &Node,
    mut p: Problems,
    deployments: Vec<Deployment>,
) -> Result<History, Vec<Problem>> {
    let mut history = History::default();
    let Some(entries) = root.entries() else {
        p.push(
            root.loc,
            format!(
                "the history must be a mapping with a `deployments` list, found {}",
                root.type_name()
            ),
        );
        return Err(p.0);
    };
    let mut saw_deployments = false;
    for (key, key_node, value) in entries {
        if !p.string_key(key_node) {
            continue;
        }
        if key == "deployments" {
            saw_deployments = true;
            // A sequence was streamed (and is empty here); anything else is reported.
            for item in p.list("deployments", value) {
                if let Some(d) = deployment(&mut p, item) {
                    history.deployments.push(d);
                }
            }
        } else {
            history.extra.push((key.to_string(), value.clone()));
        }
    }
    // Moved, not copied, when the whole list was streamed (the usual case).
    if history.deployments.is_empty() {
        history.deployments = deployments;
    } else {
        history.deployments.extend(deployments);
    }
    if !saw_deployments {
        p.push(root.loc, "missing `deployments:` list");
    }
    check_single_current(&mut p, &history);
    if p.0.is_empty() {
        Ok(history)
    } else {
        p.0.sort_by_key(|x| x.loc);
        Err(p.0)
    }
}
