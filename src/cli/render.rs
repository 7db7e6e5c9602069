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
        Some(s) => clean(&s.chars().take(10).collect::<String>()).into_owned(),
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

pub fn plan_text(plan: &Plan, o: &Output) -> String {
    let mut s = String::new();
    s.push_str(&o.bold(&format!("Roll back {}", title(plan))));
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
    let from = plan
        .current
        .as_ref()
        .map(|c| c.version.as_str())
        .unwrap_or("(no current release)");
    let mut s = format!(
        "### bagboy rollback plan: {} → {}",
        md_code(from),
        md_code(&plan.target.version)
    );
    if plan.partial {
        s.push_str(" (partial)");
    }
    s.push_str("\n\n");
    for r in &plan.refusals {
        s.push_str(&format!("> **Refused:** {}\n>\n", md_text(r)));
    }
    if !plan.refusals.is_empty() {
        s.push('\n');
    }
    for rp in &plan.registries {
        s.push_str(&registry_markdown(rp));
    }
    for w in &plan.warnings {
        s.push_str(&format!("- :warning: {}\n", md_text(w)));
    }
    if !plan.warnings.is_empty() {
        s.push('\n');
    }
    s.push_str(&format!("**Plan:** {}.\n", summary_line(plan)));
    s
}

/// The markdown plan in at most `max` characters (a PR comment has a size limit): diffs are
/// folded away first, then registries beyond the budget are summarised by count.
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
    let folded = plan_markdown(&lean);
    if folded.len() <= max {
        return folded;
    }
    let mut cut = lean.clone();
    let mut left = Vec::new();
    while cut.registries.len() > 0 && {
        let s = plan_markdown(&cut);
        s.len() + 400 > max
    } {
        if let Some(rp) = cut.registries.pop() {
            left.push(rp);
        }
    }
    let mut s = plan_markdown(&cut);
    let steps: usize = left.iter().map(|r| r.steps.len()).sum();
    let note = format!(
        "\n> {} more registr{} ({} step{}) not shown: the plan is too long for a comment; the job's log and summary hold all of it.\n",
        left.len(),
        if left.len() == 1 { "y" } else { "ies" },
        steps,
        if steps == 1 { "" } else { "s" }
    );
    s.push_str(&note);
    if s.len() > max {
        s = s.chars().take(max.saturating_sub(200)).collect();
        s.push_str("\n\n> (cut: too long for a comment)\n");
    }
    s
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
    let mut s = match outcome.kind {
        OutcomeKind::AlreadyCurrent => format!(
            "{} is already current and every registry matches it; nothing to do.\n",
            plan.target.version
        ),
        OutcomeKind::RolledBack => o.green(&format!("Rolled back {} in {secs:.2}s\n", title(plan))),
        OutcomeKind::FailedUndone => o.red(&format!(
            "Rollback {} FAILED; every applied step was undone ({secs:.2}s)\n",
            title(plan)
        )),
        OutcomeKind::Partial => o.red(&format!(
            "Rollback {} FAILED and could not be fully undone: run `bagboy recover` ({secs:.2}s)\n",
            title(plan)
        )),
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
            s.push_str(&format!(
                "History: {} is deployed (rollback of {from}); {from} is rolled_back_from.\n",
                clean(&plan.target.version),
                from = clean(from)
            ));
        }
        OutcomeKind::FailedUndone => s.push_str(&format!(
            "History: the attempt is recorded as rollback_failed; {} is still current.\n",
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
