//! Plans and outcomes as text, JSON and markdown (for pull-request comments).

use serde_json::json;

use super::output::{short_digest, table, Output};
use super::text::{clean, html, md_code, md_fence, md_text};
use crate::coordinator::{Outcome, OutcomeKind};
use crate::plan::{Plan, RegistryPlan, Step};

/// Digests shortened, commits shortened, absent shown as `-`.
fn short(v: Option<&str>) -> String {
    match v {
        None => "(absent)".into(),
        Some(s) if s.contains(':') => clean(&short_digest(s)).into_owned(),
        // Commits shortened; other values (weights, versions, release states) as they are.
        Some(s) if s.len() > 12 && s.chars().all(|c| c.is_ascii_hexdigit()) => s[..10].to_string(),
        Some(s) => clean(s).into_owned(),
    }
}

fn summary_line(plan: &Plan) -> String {
    let s = plan.summary();
    let mut line = format!(
        "{} change{}, {} unchanged, {} left in place",
        s.changes,
        if s.changes == 1 { "" } else { "s" },
        s.unchanged,
        s.left_in_place
    );
    if let Some(v) = &plan.validation {
        let count = |r: &str| v.checks.iter().filter(|c| c.result == r).count();
        let mut parts = Vec::new();
        for r in ["passed", "failed", "warning", "not_run", "skipped"] {
            let n = count(r);
            if n > 0 {
                parts.push(format!("{n} {}", r.replace('_', " ")));
            }
        }
        line.push_str(&format!(
            "; validation: {} ({} request{})",
            if parts.is_empty() {
                "nothing to check".to_string()
            } else {
                parts.join(", ")
            },
            v.requests,
            if v.requests == 1 { "" } else { "s" }
        ));
    }
    if !plan.refusals.is_empty() {
        line.push_str(&format!(
            "; REFUSED ({} reason{})",
            plan.refusals.len(),
            if plan.refusals.len() == 1 { "" } else { "s" }
        ));
    }
    line
}

fn title(plan: &Plan) -> String {
    let from = plan
        .current
        .as_ref()
        .map(|c| c.version.as_str())
        .unwrap_or("(no current release)");
    format!("{} → {}", clean(from), clean(&plan.target.version))
}

fn is_promotion(plan: &Plan) -> bool {
    plan.operation.as_deref() == Some("promote")
}

fn verb(plan: &Plan) -> &'static str {
    if is_promotion(plan) {
        "Promote"
    } else {
        "Roll back"
    }
}

pub fn plan_text(plan: &Plan, o: &Output) -> String {
    let mut s = String::new();
    s.push_str(&o.bold(&format!("{} {}", verb(plan), title(plan))));
    if plan.partial {
        s.push_str(" (partial)");
    }
    s.push('\n');
    for rp in &plan.registries {
        s.push('\n');
        s.push_str(&o.bold(&format!("{} {}", clean(&rp.format), clean(&rp.registry))));
        s.push('\n');
        let width = rp
            .steps
            .iter()
            .map(|st| clean(&st.reference).chars().count())
            .max()
            .unwrap_or(0);
        for st in &rp.steps {
            s.push_str(&step_text(st, width, o));
        }
        for n in &rp.notes {
            s.push_str(&format!("  note: {}\n", clean(n)));
        }
    }
    if let Some(v) = plan.validation.as_ref().filter(|v| !v.checks.is_empty()) {
        s.push('\n');
        s.push_str(&o.bold("validation"));
        s.push('\n');
        for c in &v.checks {
            let mark = match c.result.as_str() {
                "passed" => o.green("passed  "),
                "failed" => o.red("FAILED  "),
                other => o.yellow(&format!("{:<8}", other.replace('_', " "))),
            };
            s.push_str(&format!(
                "  {mark}{} {}{}\n",
                clean(&c.check),
                c.registry
                    .as_deref()
                    .map(|r| format!("{}: ", clean(r)))
                    .unwrap_or_default(),
                clean(&c.detail)
            ));
        }
    }
    if !plan.warnings.is_empty() || !plan.refusals.is_empty() {
        s.push('\n');
    }
    for w in &plan.warnings {
        s.push_str(&format!("{} {}\n", o.yellow("warning:"), clean(w)));
    }
    for r in &plan.refusals {
        s.push_str(&format!("{} {}\n", o.red("refused:"), clean(r)));
    }
    s.push_str(&format!("\nPlan: {}.\n", summary_line(plan)));
    s
}

fn step_text(st: &Step, width: usize, o: &Output) -> String {
    let word = format!("{:<9}", clean(st.action.verb()));
    let word = if st.action.changes() {
        o.green(&word)
    } else if st.action.is_left_in_place() {
        o.yellow(&word)
    } else {
        o.dim(&word)
    };
    let reference = clean(&st.reference);
    let pad = width.saturating_sub(reference.chars().count());
    let mut line = format!("  {word}  {reference}{}  ", " ".repeat(pad));
    if st.action.changes() {
        line.push_str(&format!(
            "{} → {}",
            short(st.before.as_deref()),
            short(st.after.as_deref())
        ));
    } else {
        line.push_str(&short(st.before.as_deref()));
    }
    if let Some(d) = &st.detail {
        line.push_str(&format!("  ({})", clean(d)));
    }
    let mut out = line.trim_end().to_string();
    out.push('\n');
    if let Some(diff) = &st.diff {
        for l in diff.lines() {
            let l = &*clean(l);
            let colored = if l.starts_with('+') && !l.starts_with("+++") {
                o.green(l)
            } else if l.starts_with('-') && !l.starts_with("---") {
                o.red(l)
            } else {
                l.to_string()
            };
            out.push_str(&format!("    {colored}\n"));
        }
    }
    out
}

pub fn plan_json(plan: &Plan) -> serde_json::Value {
    let mut v = serde_json::to_value(plan).unwrap_or_default();
    v["summary"] = serde_json::to_value(plan.summary()).unwrap_or_default();
    v
}

pub fn plan_markdown(plan: &Plan) -> String {
    let (head, sections, foot) = markdown_parts(plan);
    format!("{head}{}{foot}", sections.concat())
}

/// The markdown plan's heading and refusals, one section per registry, and its warnings and
/// summary line.
fn markdown_parts(plan: &Plan) -> (String, Vec<String>, String) {
    let from = plan
        .current
        .as_ref()
        .map(|c| c.version.as_str())
        .unwrap_or("(no current release)");
    let mut head = format!(
        "### bagboy {} plan: {} → {}",
        if is_promotion(plan) {
            "promotion"
        } else {
            "rollback"
        },
        md_code(from),
        md_code(&plan.target.version)
    );
    if plan.partial {
        head.push_str(" (partial)");
    }
    head.push_str("\n\n");
    for r in &plan.refusals {
        head.push_str(&format!("> **Refused:** {}\n>\n", md_text(r)));
    }
    if !plan.refusals.is_empty() {
        head.push('\n');
    }
    let sections = plan.registries.iter().map(registry_markdown).collect();
    let mut foot = String::new();
    if let Some(v) = plan.validation.as_ref().filter(|v| !v.checks.is_empty()) {
        foot.push_str("| validation | registry | result | detail |\n|---|---|---|---|\n");
        for c in &v.checks {
            foot.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                md_text(&c.check),
                c.registry
                    .as_deref()
                    .map(md_code)
                    .unwrap_or_else(|| "-".into()),
                md_text(&c.result),
                md_text(&c.detail)
            ));
        }
        foot.push('\n');
    }
    for w in &plan.warnings {
        foot.push_str(&format!("- :warning: {}\n", md_text(w)));
    }
    if !plan.warnings.is_empty() {
        foot.push('\n');
    }
    foot.push_str(&format!("**Plan:** {}.\n", summary_line(plan)));
    (head, sections, foot)
}

/// The markdown plan in at most `max` bytes (a PR comment has a size limit): diffs are folded
/// away first, then registries beyond the budget are counted instead of shown. The heading,
/// refusals, warnings and the summary line (of the whole plan) always stay.
pub fn plan_markdown_bounded(plan: &Plan, max: usize) -> String {
    let full = plan_markdown(plan);
    if full.len() <= max {
        return full;
    }
    let mut lean = plan.clone();
    for rp in &mut lean.registries {
        for st in &mut rp.steps {
            if st.diff.take().is_some() {
                let d = st
                    .detail
                    .take()
                    .map(|d| format!("{d}; "))
                    .unwrap_or_default();
                st.detail = Some(format!(
                    "{d}diff not shown: the plan is too long for a comment"
                ));
            }
        }
    }
    let (head, sections, foot) = markdown_parts(&lean);
    let budget = max.saturating_sub(head.len() + foot.len() + 300);
    let (mut used, mut shown) = (0, 0);
    for s in &sections {
        if used + s.len() > budget {
            break;
        }
        used += s.len();
        shown += 1;
    }
    let mut out = head;
    out.push_str(&sections[..shown].concat());
    if shown < sections.len() {
        let rest = &lean.registries[shown..];
        let steps: usize = rest.iter().map(|r| r.steps.len()).sum();
        out.push_str(&format!(
            "> {} more registr{} ({} step{}) not shown: the plan is too long for a comment; the job's log and summary hold all of it.\n\n",
            rest.len(),
            if rest.len() == 1 { "y" } else { "ies" },
            steps,
            if steps == 1 { "" } else { "s" }
        ));
    }
    out.push_str(&foot);
    if out.len() > max {
        // Only refusals or warnings this long are left: cut them at a character boundary.
        let mut end = max.saturating_sub(60);
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("\n\n> (cut: too long for a comment)\n");
    }
    out
}

/// A PR comment for a plan that could not be computed: the error, fenced.
pub fn error_markdown(error: &str) -> String {
    let body = super::text::clean_lines(error);
    let body: String = body.chars().take(20_000).collect();
    let fence = md_fence(&body);
    format!(
        "### bagboy rollback plan\n\n> **bagboy could not compute the plan.** Nothing was changed.\n\n{fence}text\n{body}\n{fence}\n"
    )
}

fn registry_markdown(rp: &RegistryPlan) -> String {
    let mut s = format!("#### {} {}\n\n", md_text(&rp.format), md_code(&rp.registry));
    s.push_str("| action | reference | before | after | note |\n|---|---|---|---|---|\n");
    for st in &rp.steps {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            md_text(st.action.verb()),
            md_code(&st.reference),
            md_code(&short(st.before.as_deref())),
            if st.after.is_some() {
                md_code(&short(st.after.as_deref()))
            } else {
                "-".into()
            },
            md_text(st.detail.as_deref().unwrap_or(""))
        ));
    }
    s.push('\n');
    for st in &rp.steps {
        if let Some(diff) = &st.diff {
            let body = super::text::clean_lines(diff.strip_suffix('\n').unwrap_or(diff));
            let fence = md_fence(&body);
            s.push_str(&format!(
                "<details><summary>diff of <code>{}</code></summary>\n\n{fence}diff\n{body}\n{fence}\n\n</details>\n\n",
                html(&st.reference),
            ));
        }
    }
    for n in &rp.notes {
        s.push_str(&format!("- {}\n", md_text(n)));
    }
    if !rp.notes.is_empty() {
        s.push('\n');
    }
    s
}

pub fn outcome_text(plan: &Plan, outcome: &Outcome, o: &Output) -> String {
    let secs = outcome.millis as f64 / 1000.0;
    let mut s =
        match outcome.kind {
            OutcomeKind::AlreadyCurrent => format!(
                "{} is already current and every registry matches it; nothing to do.\n",
                plan.target.version
            ),
            OutcomeKind::RolledBack => o.green(&format!(
                "{} {} in {secs:.2}s\n",
                if is_promotion(plan) {
                    "Promoted"
                } else {
                    "Rolled back"
                },
                title(plan)
            )),
            OutcomeKind::FailedUndone if outcome.refused => o.red(&format!(
                "{} {} STOPPED before any change ({secs:.2}s)\n",
                if is_promotion(plan) {
                    "Promotion"
                } else {
                    "Rollback"
                },
                title(plan)
            )),
            OutcomeKind::FailedUndone => o.red(&format!(
                "{} {} FAILED; every applied step was undone ({secs:.2}s)\n",
                if is_promotion(plan) {
                    "Promotion"
                } else {
                    "Rollback"
                },
                title(plan)
            )),
            OutcomeKind::Partial => {
                o.red(&format!(
            "{} {} FAILED and could not be fully undone: run `bagboy recover` ({secs:.2}s)\n",
            if is_promotion(plan) { "Promotion" } else { "Rollback" },
            title(plan)
        ))
            }
        };
    let rows: Vec<Vec<String>> = outcome
        .steps
        .iter()
        .map(|r| {
            let state = match (r.ok, r.undone) {
                (true, true) => "applied, undone".to_string(),
                (true, false) => r.action.done(),
                (false, _) => "FAILED".to_string(),
            };
            let format = plan
                .registries
                .iter()
                .find(|p| p.registry == r.registry)
                .map(|p| p.format.as_str())
                .unwrap_or("");
            vec![
                String::new(),
                format!("{} {}", clean(format), clean(&r.registry)),
                clean(&r.reference).into_owned(),
                state,
                format!("{} ms", r.millis),
            ]
        })
        .collect();
    if !rows.is_empty() {
        s.push_str(&table(
            &["", "REGISTRY", "REFERENCE", "RESULT", "TIME"],
            &rows,
        ));
    }
    for e in &outcome.errors {
        s.push_str(&format!("  {} {}\n", o.red("error:"), clean(e)));
    }
    if let Some(j) = &outcome.journal {
        s.push_str(&format!("  journal kept: {}\n", clean(j)));
    }
    match outcome.kind {
        OutcomeKind::RolledBack => {
            let from = plan
                .current
                .as_ref()
                .map(|c| c.version.as_str())
                .unwrap_or("-");
            if is_promotion(plan) {
                s.push_str(&format!(
                    "History: {} is deployed (promoted from {from}); {from} is superseded and keeps running for an instant rollback.\n",
                    clean(&plan.target.version),
                    from = clean(from)
                ));
            } else {
                s.push_str(&format!(
                    "History: {} is deployed (rollback of {from}); {from} is rolled_back_from.\n",
                    clean(&plan.target.version),
                    from = clean(from)
                ));
            }
        }
        OutcomeKind::FailedUndone => s.push_str(&format!(
            "History: the attempt is recorded as {}; {} is still current.\n",
            if is_promotion(plan) {
                "failed"
            } else {
                "rollback_failed"
            },
            clean(
                plan.current
                    .as_ref()
                    .map(|c| c.version.as_str())
                    .unwrap_or("-")
            )
        )),
        _ => {}
    }
    s
}

pub fn outcome_json(plan: &Plan, outcome: &Outcome) -> serde_json::Value {
    json!({ "plan": plan_json(plan), "outcome": outcome })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, Release};

    fn plan(registries: usize, steps: usize, diff: usize) -> Plan {
        let rel = |v: &str| Release {
            version: v.into(),
            timestamp: "2026-11-01T00:00:00Z".into(),
            status: None,
            commit: None,
        };
        Plan {
            schema: crate::plan::PLAN_SCHEMA,
            history: "h".into(),
            history_sha256: None,
            current: Some(rel("v2.0.0")),
            target: rel("v1.0.0"),
            partial: false,
            only: Vec::new(),
            force: false,
            registries: (0..registries)
                .map(|r| RegistryPlan {
                    format: "docker".into(),
                    registry: format!("ghcr.io/acme/app{r}"),
                    steps: (0..steps)
                        .map(|s| {
                            let mut st = Step::new(Action::change("move_tag"), format!("tag{s}"));
                            st.diff = (diff > 0).then(|| "+x\n".repeat(diff));
                            st
                        })
                        .collect(),
                    notes: Vec::new(),
                })
                .collect(),
            refusals: vec!["refused: something".into()],
            warnings: Vec::new(),
            operation: None,
            validation: None,
        }
    }

    #[test]
    fn bounded_markdown_fits_and_keeps_refusals_and_the_summary() {
        let small = plan(1, 2, 0);
        assert_eq!(plan_markdown_bounded(&small, 65_000), plan_markdown(&small));
        // Big diffs: folded away first.
        let diffs = plan(2, 3, 10_000);
        let b = plan_markdown_bounded(&diffs, 65_000);
        assert!(
            b.len() <= 65_000 && b.contains("diff not shown"),
            "{}",
            b.len()
        );
        assert!(b.contains("ghcr.io/acme/app1"));
        // Many registries: the tail is counted, not shown.
        let many = plan(400, 20, 0);
        let b = plan_markdown_bounded(&many, 65_000);
        assert!(b.len() <= 65_000, "{}", b.len());
        assert!(b.contains("more registries") && b.contains("**Refused:**"));
        assert!(
            b.contains("**Plan:** 8000 changes"),
            "the summary counts every step"
        );
    }
}
