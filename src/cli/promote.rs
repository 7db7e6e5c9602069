//! `bagboy promote`: show every traffic step and registry step, confirm, run, report.

use super::rollback::{confirm, ended, interactive, listeners, print_plan, writing_listeners};
use super::text::clean;
use super::{Context, PromoteArgs, ReportFormat};
use crate::error::{Error, Exit};
use crate::events::Fanout;
use crate::health::Verdict;
use crate::ops;

pub fn promote(ctx: &Context, args: &PromoteArgs) -> Result<(), Error> {
    if args.dry_run {
        let p = ops::promote::prepare(&ctx.ws, &args.version, true, &listeners())?;
        print_plan(ctx, &p.shown, args.format);
        return refused(&p.shown);
    }
    let events = writing_listeners(ctx);
    let result = promote_with(ctx, args, &events);
    ended(&events, result)
}

fn refused(plan: &crate::plan::Plan) -> Result<(), Error> {
    if plan.refusals.is_empty() {
        Ok(())
    } else {
        Err(Error::refused_with_hint(
            plan.refusals.join("\n"),
            "nothing was changed",
        ))
    }
}

fn promote_with(ctx: &Context, args: &PromoteArgs, events: &Fanout) -> Result<(), Error> {
    let p = ops::promote::prepare(&ctx.ws, &args.version, false, events)?;
    if p.already_live {
        ctx.out.line(&format!(
            "{} is current and {} already takes all traffic; nothing to do",
            clean(&p.shown.target.version),
            p.color
        ));
        return Ok(());
    }
    let shown = p.shown.clone();
    if !shown.refusals.is_empty() {
        print_plan(ctx, &shown, ReportFormat::Text);
        return refused(&shown);
    }
    if args.yes || !interactive() {
        print_plan(ctx, &shown, args.format);
        ctx.out.line("");
    } else {
        eprint!(
            "{}",
            super::render::plan_text(&shown, &super::Output::new(ctx.out_color_stderr()))
        );
    }
    if !args.yes {
        confirm("Proceed? (promote)", "promote")?;
    }
    let color = p.color;
    let p_from = p.from.shown();
    let (report, outcome) = ops::promote::run(p, events)?;
    let steps: Vec<String> = report
        .steps
        .iter()
        .map(|(pct, took, verdict)| {
            format!(
                "{pct}% ({} ms, {})",
                took.as_millis(),
                match verdict {
                    Verdict::Passing => "healthy",
                    Verdict::Failing => "failing",
                    Verdict::Inconclusive => "inconclusive",
                }
            )
        })
        .collect();
    ctx.out
        .line(&format!("traffic to {color}: {}", steps.join(" → ")));
    match outcome {
        Some(o) => {
            let plan = &shown;
            super::rollback::render_outcome(ctx, plan, &o, args.format, true);
            super::rollback::outcome_result(&o).map_err(|e| match e {
                Error::Failed(msg, Exit::FailedUndone) => Error::Failed(
                    format!(
                        "{}; traffic is back at {}",
                        msg.replacen("the rollback", "the promotion", 1),
                        p_from
                    ),
                    Exit::FailedUndone,
                ),
                Error::Failed(msg, exit) => {
                    Error::Failed(msg.replacen("the rollback", "the promotion", 1), exit)
                }
                other => other,
            })
        }
        None => Ok(()),
    }
}
