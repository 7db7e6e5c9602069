//! Writing the history: canonical YAML, newest first, unknown fields kept.

use crate::history::model::{Deployment, History, Package};
use crate::yaml::{self, Emitter, Node};

const HEADER: &str = "bagboy deployment history: newest first. Written by bagboy; edits are kept,\ncomments are not. Format: docs/history-format.md";

/// Render a history as YAML text.
pub fn to_yaml(history: &History) -> String {
    // Newest first, by index: a 100k-entry history is not copied to be sorted.
    let mut e = Emitter::new();
    e.comment(HEADER);
    if history.deployments.is_empty() {
        e.raw_line(0, "deployments: []");
    } else {
        e.raw_line(0, "deployments:");
        for i in history.newest_first() {
            deployment(&mut e, &history.deployments[i]);
        }
    }
    for (k, v) in &history.extra {
        e.field(0, k, v);
    }
    e.finish()
}

fn deployment(e: &mut Emitter, d: &Deployment) {
    let mut fields: Vec<(&str, Node)> = vec![
        ("version", Node::str(d.version.as_str())),
        ("timestamp", Node::str(d.timestamp.as_str())),
    ];
    if let Some(c) = &d.commit {
        fields.push(("commit", Node::str(c)));
    }
    if let Some(s) = d.status {
        fields.push(("status", yaml::word(s.as_str())));
    }
    if let Some(r) = &d.rollback_of {
        fields.push(("rollback_of", Node::str(r)));
    }
    if let Some(b) = d.rollback_safe {
        fields.push(("rollback_safe", yaml::boolean(b)));
    }
    if let Some(a) = &d.actor {
        fields.push(("actor", Node::str(a)));
    }
    if let Some(n) = &d.notes {
        fields.push(("notes", Node::str(n)));
    }
    write_item(e, 2, &fields, &d.extra, |e, indent| {
        if !d.packages.is_empty() {
            e.raw_line(indent, "packages:");
            for p in &d.packages {
                package(e, indent + 2, p);
            }
        }
        if let Some(h) = &d.health_checks {
            e.field(indent, "health_checks", h);
        }
    });
}

fn package(e: &mut Emitter, indent: usize, p: &Package) {
    let mut fields: Vec<(&str, Node)> = vec![
        ("format", yaml::word(&p.format)),
        ("registry", Node::str(&p.registry)),
    ];
    if let Some(s) = p.status {
        fields.push(("status", yaml::word(s.as_str())));
    }
    if let Some(f) = &p.formula {
        fields.push(("formula", Node::str(f)));
    }
    if let Some(c) = &p.tap_commit {
        fields.push(("tap_commit", Node::str(c)));
    }
    if let Some(d) = &p.digest {
        fields.push(("digest", Node::str(d)));
    }
    if !p.tags.is_empty() {
        fields.push(("tags", yaml::seq(p.tags.iter().map(Node::str).collect())));
    }
    write_item(e, indent, &fields, &p.extra, |_, _| {});
}

/// A `- key: value` list item: known fields, then `nested` blocks, then unknown fields.
fn write_item(
    e: &mut Emitter,
    indent: usize,
    fields: &[(&str, Node)],
    extra: &[(String, Node)],
    nested: impl FnOnce(&mut Emitter, usize),
) {
    let inner = e.item_start(indent);
    for (i, (k, v)) in fields.iter().enumerate() {
        if i == 0 {
            e.field_inline(inner, k, v);
        } else {
            e.field(inner, k, v);
        }
    }
    nested(e, inner);
    for (k, v) in extra {
        e.field(inner, k, v);
    }
}
