//! Writing the history: canonical YAML, newest first, unknown fields kept.

use crate::history::model::{Deployment, History, Package};
use crate::yaml::{Emitter, Field, Node};

const HEADER: &str = "bagboy deployment history: newest first. Written by bagboy; edits are kept,\ncomments are not. Format: docs/history-format.md";

/// Render a history as YAML text.
pub fn to_yaml(history: &History) -> String {
    // Newest first, by index: a 100k-entry history is not copied to be sorted. The buffer
    // starts at about the size bagboy's entries take, so it is not copied as it grows.
    let mut e = Emitter::with_capacity(512 * history.deployments.len() + 256);
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
    let mut fields: Vec<(&str, Field)> = Vec::with_capacity(8);
    fields.push(("version", Field::Str(d.version.as_str())));
    fields.push(("timestamp", Field::Str(d.timestamp.as_str())));
    if let Some(c) = &d.commit {
        fields.push(("commit", Field::Str(c)));
    }
    if let Some(s) = d.status {
        fields.push(("status", Field::Word(s.as_str())));
    }
    if let Some(r) = &d.rollback_of {
        fields.push(("rollback_of", Field::Str(r)));
    }
    if let Some(b) = d.rollback_safe {
        fields.push(("rollback_safe", Field::Bool(b)));
    }
    if let Some(a) = &d.actor {
        fields.push(("actor", Field::Str(a)));
    }
    if let Some(n) = &d.notes {
        fields.push(("notes", Field::Str(n)));
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
    let mut fields: Vec<(&str, Field)> = Vec::with_capacity(7);
    fields.push(("format", Field::Word(&p.format)));
    fields.push(("registry", Field::Str(&p.registry)));
    if let Some(s) = p.status {
        fields.push(("status", Field::Word(s.as_str())));
    }
    if let Some(f) = &p.formula {
        fields.push(("formula", Field::Str(f)));
    }
    if let Some(c) = &p.tap_commit {
        fields.push(("tap_commit", Field::Str(c)));
    }
    if let Some(d) = &p.digest {
        fields.push(("digest", Field::Str(d)));
    }
    if !p.tags.is_empty() {
        fields.push(("tags", Field::Strs(&p.tags)));
    }
    write_item(e, indent, &fields, &p.extra, |_, _| {});
}

/// A `- key: value` list item: known fields, then `nested` blocks, then unknown fields.
fn write_item(
    e: &mut Emitter,
    indent: usize,
    fields: &[(&str, Field)],
    extra: &[(String, Node)],
    nested: impl FnOnce(&mut Emitter, usize),
) {
    let inner = e.item_start(indent);
    for (i, (k, v)) in fields.iter().enumerate() {
        e.field_of(inner, k, *v, i == 0);
    }
    nested(e, inner);
    for (k, v) in extra {
        e.field(inner, k, v);
    }
}
