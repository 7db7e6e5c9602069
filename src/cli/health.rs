//! `bagboy health` and `bagboy rollback --auto`: samples and decisions, rendered.

use super::text::clean;
use super::{Context, HealthArgs, ListFormat, ReportFormat, RollbackArgs};
use crate::error::{Error, Exit};
use crate::events::Fanout;
use crate::health::{Decision, Sample, Severity, Verdict};
use crate::ops;

fn mark(v: Verdict) -> &'static str {
    match v {
        Verdict::Passing => "✓",
        Verdict::Failing => "✗",
        Verdict::Inconclusive => "?",
    }
}

/// The mark of a verdict, coloured on a terminal: green pass, red fail, yellow unknown.
fn painted(out: &super::Output, v: Verdict) -> String {
    match v {
        Verdict::Passing => out.green(mark(v)),
        Verdict::Failing => out.red(mark(v)),
        Verdict::Inconclusive => out.yellow(mark(v)),
    }
}

fn samples_text(out: &super::Output, samples: &[Sample]) -> String {
    let mut s = String::new();
    for (n, sample) in samples.iter().enumerate() {
        if samples.len() > 1 {
            s.push_str(&format!(
                "round {}/{} at {}\n",
                n + 1,
                samples.len(),
                sample.at
            ));
        }
        for r in &sample.results {
            let latency = r
                .latency_ms
                .map(|ms| format!(" ({ms} ms)"))
                .unwrap_or_default();
            s.push_str(&format!(
                "  {} {:<10} {}  {}{latency}\n",
                painted(out, r.status),
                r.kind,
                clean(&r.target),
                clean(&r.detail)
            ));
        }
    }
    s
}

fn samples_markdown(samples: &[Sample]) -> String {
    use super::text::{md_code, md_text};
    let mut s =
        String::from("| round | check | target | result | detail |\n|---|---|---|---|---|\n");
    for (n, sample) in samples.iter().enumerate() {
        for r in &sample.results {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                n + 1,
                r.kind,
                md_code(&r.target),
                mark(r.status),
                md_text(&r.detail)
            ));
        }
    }
    s
}

pub fn health(ctx: &Context, args: &HealthArgs) -> Result<(), Error> {
    if args.judge {
        return super::judge::health(ctx, args);
    }
    if !args.record {
        return health_with(ctx, args, &super::rollback::listeners());
    }
    let events = super::rollback::writing_listeners(ctx);
    let result = health_with(ctx, args, &events);
    super::rollback::ended(&events, result)
}

fn health_with(ctx: &Context, args: &HealthArgs, events: &Fanout) -> Result<(), Error> {
    let report = ops::health::health(&ctx.ws, args.version.as_deref(), args.record, events)?;
    match args.format {
        ListFormat::Json => ctx
            .out
            .line(&serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into())),
        ListFormat::Text => {
            ctx.out.raw(&samples_text(&ctx.out, &report.samples));
            ctx.out.line(&format!(
                "{}: {}",
                clean(&report.version),
                match report.verdict {
                    Verdict::Passing => ctx.out.green("healthy"),
                    Verdict::Failing => ctx.out.red("UNHEALTHY"),
                    Verdict::Inconclusive => ctx
                        .out
                        .yellow("inconclusive (a check could not be evaluated)"),
                }
            ));
        }
    }
    match report.exit() {
        Exit::Success => Ok(()),
        exit => Err(Error::Failed(
            match exit {
                Exit::Unhealthy => format!("{} failed its health checks", report.version),
                _ => format!(
                    "{}: a health check could not be evaluated; nothing was decided",
                    report.version
                ),
            },
            exit,
        )),
    }
}

pub fn auto(ctx: &Context, args: &RollbackArgs, events: &Fanout) -> Result<(), Error> {
    let window = ops::health::Window {
        watch: args.watch,
        interval: args.interval,
    };
    let (report, prepared) = ops::health::auto(&ctx.ws, window, args.dry_run, events)?;
    let reasons = match &report.decision {
        Decision::Healthy { reasons }
        | Decision::Inconclusive { reasons }
        | Decision::Trigger { reasons, .. } => reasons.clone(),
    };
    let verdict_line = match &report.decision {
        Decision::Healthy { .. } => format!("{}: healthy; nothing to roll back", report.current),
        Decision::Inconclusive { .. } => format!(
            "{}: inconclusive ({}); nothing was changed",
            report.current,
            if report.judge.is_some() {
                "the judge is marginal or lacks data, or checks could not be evaluated: hold"
            } else {
                "checks could not be evaluated"
            }
        ),
        Decision::Trigger { severity, .. } if *severity == Severity::Low => format!(
            "{}: some checks failed, below every threshold; not rolling back",
            report.current
        ),
        Decision::Trigger { severity, .. } => format!(
            "{}: {} trigger; rolling back to the last known-good release {}",
            report.current,
            match severity {
                Severity::Critical => "critical",
                _ => "high",
            },
            report.target.as_deref().unwrap_or("-")
        ),
    };
    match args.format {
        ReportFormat::Json => {}
        ReportFormat::Markdown => {
            ctx.out.raw(&format!(
                "### bagboy health: {}\n\n{}\n",
                super::text::md_code(&report.current),
                samples_markdown(&report.samples)
            ));
            if let Some(j) = &report.judge {
                ctx.out
                    .raw(&format!("```text\n{}```\n", super::judge::text(j)));
            }
            for r in &reasons {
                ctx.out.line(&format!("- {}", super::text::md_text(r)));
            }
            ctx.out.line(&format!(
                "\n**Decision:** {}\n",
                super::text::md_text(&verdict_line)
            ));
        }
        ReportFormat::Text => {
            ctx.out.raw(&samples_text(&ctx.out, &report.samples));
            if let Some(j) = &report.judge {
                ctx.out.raw(&super::judge::text(j));
            }
            for r in &reasons {
                ctx.out.line(&format!("  - {}", clean(r)));
            }
            ctx.out.line(&clean(&verdict_line));
        }
    }
    let json_report = || serde_json::to_value(&report).unwrap_or_default();
    match (&report.decision, prepared) {
        (Decision::Inconclusive { .. }, _) => {
            if args.format == ReportFormat::Json {
                ctx.out
                    .line(&pretty(&serde_json::json!({ "auto": json_report() })));
            }
            Err(Error::Failed(
                "the health checks were inconclusive; nothing was changed".into(),
                Exit::Inconclusive,
            ))
        }
        // A preview: what --auto would decide, and the plan it would run; nothing changes.
        (Decision::Trigger { .. }, Some(prepared)) if args.dry_run => {
            if args.format == ReportFormat::Json {
                ctx.out.line(&pretty(&serde_json::json!({
                    "auto": json_report(),
                    "plan": super::render::plan_json(&prepared.plan),
                })));
            } else {
                ctx.out.line("");
                super::rollback::print_plan(ctx, &prepared.plan, args.format);
                ctx.out.line("(dry-run: nothing was changed)");
            }
            Ok(())
        }
        (Decision::Trigger { .. }, Some(prepared)) => {
            let yes = args.yes || report.without_asking();
            if args.format == ReportFormat::Json {
                if !yes {
                    return Err(Error::refused_with_hint(
                        "a high-severity trigger needs confirmation",
                        "re-run with --yes",
                    ));
                }
                let plan = prepared.plan.clone();
                let outcome = ops::rollback::execute(prepared, events)?;
                ctx.out.line(&pretty(&serde_json::json!({
                    "auto": json_report(),
                    "plan": super::render::plan_json(&plan),
                    "outcome": outcome,
                })));
                return match outcome.exit() {
                    Exit::Success => Ok(()),
                    exit => Err(Error::Failed("the automated rollback failed".into(), exit)),
                };
            }
            ctx.out.line("");
            super::rollback::run_prepared(ctx, prepared, yes, args.format, "roll back", events)
        }
        _ => {
            if args.format == ReportFormat::Json {
                ctx.out
                    .line(&pretty(&serde_json::json!({ "auto": json_report() })));
            }
            Ok(())
        }
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
}
