//! Plans and outcomes as text, JSON and markdown (for pull-request comments).

use serde_json::json;

use super::output::{short_digest, table, Output};
use crate::coordinator::{Outcome, OutcomeKind};
use crate::plan::{Plan, RegistryPlan, Step};

/// Digests shortened, commits shortened, absent shown as `-`.
fn short(v: Option<&str>) -> String {
    match v {
        None => "(absent)".into(),
        Some(s) if s.contains(':') => short_digest(s),
        Some(s) => s.chars().take(10).collect(),
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
    format!("{from} → {}", plan.target.version)
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
        s.push_str(&o.bold(&format!("{} {}", rp.format, rp.registry)));
        s.push('\n');
        let width = rp
            .steps
            .iter()
            .map(|st| st.reference.chars().count())
            .max()
            .unwrap_or(0);
        for st in &rp.steps {
            s.push_str(&step_text(st, width, o));
        }
        for n in &rp.notes {
            s.push_str(&format!("  note: {n}\n"));
        }
    }
    if !plan.warnings.is_empty() || !plan.refusals.is_empty() {
        s.push('\n');
    }
    for w in &plan.warnings {
        s.push_str(&format!("{} {w}\n", o.yellow("warning:")));
    }
    for r in &plan.refusals {
        s.push_str(&format!("{} {r}\n", o.red("refused:")));
    }
    s.push_str(&format!("\nPlan: {}.\n", summary_line(plan)));
    s
}

fn step_text(st: &Step, width: usize, o: &Output) -> String {
    let word = format!("{:<9}", st.action.verb());
    let word = if st.action.changes() {
        o.green(&word)
    } else if st.action.is_left_in_place() {
        o.yellow(&word)
    } else {
        o.dim(&word)
    };
    let pad = width.saturating_sub(st.reference.chars().count());
    let mut line = format!("  {word}  {}{}  ", st.reference, " ".repeat(pad));
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
        line.push_str(&format!("  ({d})"));
    }
    let mut out = line.trim_end().to_string();
    out.push('\n');
    if let Some(diff) = &st.diff {
        for l in diff.lines() {
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

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn plan_markdown(plan: &Plan) -> String {
    let mut s = format!("### bagboy rollback plan: `{}`", title(plan));
    if plan.partial {
        s.push_str(" (partial)");
    }
    s.push_str("\n\n");
    for r in &plan.refusals {
        s.push_str(&format!("> **Refused:** {}\n>\n", md_escape(r)));
    }
    if !plan.refusals.is_empty() {
        s.push('\n');
    }
    for rp in &plan.registries {
        s.push_str(&registry_markdown(rp));
    }
    for w in &plan.warnings {
        s.push_str(&format!("- :warning: {}\n", md_escape(w)));
    }
    if !plan.warnings.is_empty() {
        s.push('\n');
    }
    s.push_str(&format!("**Plan:** {}.\n", summary_line(plan)));
    s
}

fn registry_markdown(rp: &RegistryPlan) -> String {
    let mut s = format!("#### {} `{}`\n\n", rp.format, rp.registry);
    s.push_str("| action | reference | before | after | note |\n|---|---|---|---|---|\n");
    for st in &rp.steps {
        s.push_str(&format!(
            "| {} | `{}` | `{}` | `{}` | {} |\n",
            st.action.verb(),
            md_escape(&st.reference),
            short(st.before.as_deref()),
            if st.after.is_some() {
                short(st.after.as_deref())
            } else {
                "-".into()
            },
            md_escape(st.detail.as_deref().unwrap_or(""))
        ));
    }
    s.push('\n');
    for st in &rp.steps {
        if let Some(diff) = &st.diff {
            s.push_str(&format!(
                "<details><summary>diff of <code>{}</code></summary>\n\n```diff\n{}```\n\n</details>\n\n",
                st.reference,
                if diff.ends_with('\n') { diff.clone() } else { format!("{diff}\n") }
            ));
        }
    }
    for n in &rp.notes {
        s.push_str(&format!("- {}\n", md_escape(n)));
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
                format!("{format} {}", r.registry),
                r.reference.clone(),
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
        s.push_str(&format!("  {} {e}\n", o.red("error:")));
    }
    if let Some(j) = &outcome.journal {
        s.push_str(&format!("  journal kept: {j}\n"));
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
                plan.target.version
            ));
        }
        OutcomeKind::FailedUndone => s.push_str(&format!(
            "History: the attempt is recorded as rollback_failed; {} is still current.\n",
            plan.current
                .as_ref()
                .map(|c| c.version.as_str())
                .unwrap_or("-")
        )),
        _ => {}
    }
    s
}

pub fn outcome_json(plan: &Plan, outcome: &Outcome) -> serde_json::Value {
    json!({ "plan": plan_json(plan), "outcome": outcome })
}
