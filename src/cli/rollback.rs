//! `bagboy rollback`, `apply`, `record` and `recover`: parse, confirm, render. The operations
//! themselves (lock, journal, history) live in `ops`.

use std::io::{BufRead, IsTerminal, Write};

use super::render;
use super::text::clean;
use super::{
    ApplyArgs, Context, ListFormat, RecordArgs, RecoverArgs, ReportFormat, RollbackArgs, UnlockArgs,
};
use crate::coordinator::{self, Outcome, Request};
use crate::error::{Error, Exit};
use crate::events::{Event, Fanout, Listener};
use crate::ops::{self, rollback::Prepared};
use crate::plan::Plan;

/// Progress on stderr: a line per step on a terminal, `info` logs otherwise.
struct Progress {
    tty: bool,
}

impl Listener for Progress {
    fn on(&self, event: &Event<'_>) {
        match event {
            Event::StepStarted { registry, step } => {
                // On a terminal, what is in flight shows at once (a slow registry is visible).
                if self.tty {
                    eprintln!(
                        "  … {} {} {}",
                        clean(registry),
                        clean(&step.reference),
                        step.action
                    );
                }
                tracing::debug!(registry, reference = %step.reference, "applying");
            }
            Event::StepFinished {
                registry,
                step,
                elapsed,
                error,
            } => {
                let verb = step.action.done();
                let ms = elapsed.as_millis();
                let (registry, reference) = (clean(registry), clean(&step.reference));
                match (error, self.tty) {
                    (None, true) => eprintln!("  ✓ {registry} {reference} {verb} ({ms} ms)"),
                    (Some(e), true) => eprintln!("  ✗ {registry} {reference} failed: {}", clean(e)),
                    (None, false) => {
                        tracing::info!(%registry, %reference, ms, "{verb}")
                    }
                    (Some(e), false) => {
                        tracing::warn!(%registry, %reference, "failed: {e}")
                    }
                }
            }
            Event::UndoFinished {
                registry,
                step,
                error,
            } => match error {
                None => tracing::warn!(registry, reference = %step.reference, "undone"),
                Some(e) => {
                    tracing::error!(registry, reference = %step.reference, "undo failed: {e}")
                }
            },
            _ => {}
        }
    }
}

pub(super) fn listeners() -> Fanout {
    Fanout::new().with(Progress {
        tty: std::io::stderr().is_terminal(),
    })
}

/// Progress, plus the audit log, metrics and webhooks: the listeners of a writing command.
pub(super) fn writing_listeners(ctx: &Context) -> Fanout {
    ctx.ws.writing_events(listeners())
}

/// Tell the listeners how the command ended, and return its result.
pub(super) fn ended(events: &dyn Listener, result: Result<(), Error>) -> Result<(), Error> {
    let (exit, msg) = match &result {
        Ok(()) => (0, None),
        Err(e) => (e.exit() as u8, Some(e.to_string())),
    };
    events.on(&Event::Ended {
        exit,
        error: msg.as_deref(),
    });
    result
}

pub(super) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// On a terminal without --version: offer the candidates, default first.
fn pick_interactively(history: &crate::history::History) -> Result<Option<usize>, Error> {
    let current = history.current();
    let default = history.default_target();
    let candidates: Vec<usize> = history
        .newest_first()
        .into_iter()
        .filter(|i| Some(*i) != current)
        .take(15)
        .collect();
    if candidates.is_empty() {
        return Ok(None);
    }
    eprintln!("Roll back to which version?");
    for (n, i) in candidates.iter().enumerate() {
        let d = &history.deployments[*i];
        eprintln!(
            "  {:>2}) {:<12} {:<18} {}{}",
            n + 1,
            clean(d.version.as_str()),
            d.effective_status().map(|s| s.as_str()).unwrap_or("-"),
            d.timestamp,
            if Some(*i) == default {
                "  (default)"
            } else {
                ""
            }
        );
    }
    let prompt = format!(
        "Number [default {}]: ",
        default
            .and_then(|d| candidates.iter().position(|c| *c == d))
            .map_or(1, |p| p + 1)
    );
    let line = ask(&prompt)?;
    let line = line.trim();
    if line.is_empty() {
        return Ok(default.or(candidates.first().copied()));
    }
    match line.parse::<usize>() {
        Ok(n) if (1..=candidates.len()).contains(&n) => Ok(Some(candidates[n - 1])),
        _ => Err(Error::refused(format!(
            "`{line}` is not one of the numbers offered"
        ))),
    }
}

/// Ask on stderr, read one line from stdin.
fn ask(prompt: &str) -> Result<String, Error> {
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| Error::Io {
            context: "reading an answer from the terminal".into(),
            source,
        })?;
    Ok(line)
}

/// Ask `question` on a terminal; without one (and without --yes) refuse rather than hang.
pub(super) fn confirm(question: &str, what: &str) -> Result<(), Error> {
    if !interactive() {
        return Err(Error::refused_with_hint(
            format!("refusing to {what} without confirmation: no terminal to ask on"),
            "re-run with --yes to proceed (the plan above is what would run)",
        ));
    }
    let line = ask(&format!("{question} [y/N] "))?;
    if matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(Error::refused(format!(
            "{what} cancelled; nothing was changed"
        )))
    }
}

pub(super) fn print_plan(ctx: &Context, plan: &Plan, format: ReportFormat) {
    match format {
        ReportFormat::Text => ctx.out.raw(&render::plan_text(plan, &ctx.out)),
        ReportFormat::Json => ctx.out.line(&pretty(&render::plan_json(plan))),
        ReportFormat::Markdown => ctx.out.raw(&render::plan_markdown(plan)),
    }
}

pub fn rollback(ctx: &Context, args: &RollbackArgs, comment_key: &str) -> Result<(), Error> {
    let req = Request {
        version: args.version.clone(),
        registries: args.registry.clone(),
        force: args.force,
        skip_validation: args.skip_validation,
    };
    if let (true, Some(pr)) = (args.dry_run, &args.comment_pr) {
        return dry_run_commented(ctx, args, req, pr, comment_key);
    }
    if args.auto && args.dry_run {
        // A preview of the decision: no audit, no metrics, no webhook.
        return super::health::auto(ctx, args, &listeners());
    }
    if args.dry_run {
        return rollback_with(ctx, args, req, &listeners());
    }
    if args.auto {
        let events = writing_listeners(ctx);
        let result = super::health::auto(ctx, args, &events);
        return ended(&events, result);
    }
    let events = writing_listeners(ctx);
    let result = rollback_with(ctx, args, req, &events);
    ended(&events, result)
}

fn rollback_with(
    ctx: &Context,
    args: &RollbackArgs,
    req: Request,
    events: &Fanout,
) -> Result<(), Error> {
    let pick = interactive() && !args.yes && !args.dry_run;
    let picker: &dyn Fn(&crate::history::History) -> Result<Option<usize>, Error> =
        &pick_interactively;
    let prepared =
        ops::rollback::prepare(&ctx.ws, &req, args.dry_run, pick.then_some(picker), events)?;
    if args.dry_run {
        print_plan(ctx, &prepared.plan, args.format);
        if !prepared.plan.refusals.is_empty() {
            return Err(Error::Failed(
                "the rollback would be refused (see the plan); nothing was changed".into(),
                Exit::Usage,
            ));
        }
        return Ok(());
    }
    run_prepared(ctx, prepared, args.yes, args.format, "roll back", events)
}

/// `rollback --dry-run --comment-pr`: the plan on stdout as asked, in the job summary, and
/// as bagboy's one comment on the pull request. A plan that cannot be computed is posted as
/// its error, so the comment never shows a stale plan.
fn dry_run_commented(
    ctx: &Context,
    args: &RollbackArgs,
    req: Request,
    pr: &str,
    comment_key: &str,
) -> Result<(), Error> {
    let target = comment_target(pr)?;
    // Whatever ends the run, a bug included, the comment says the plan could not be computed
    // (a stale plan from an earlier push would mislead reviewers); a panic is re-raised after.
    let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ops::rollback::prepare(&ctx.ws, &req, true, None, &listeners())
    }));
    let plan = match plan {
        Ok(plan) => plan,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an internal error".into());
            let md = render::error_markdown(&format!(
                "bagboy stopped on an internal error (a bug; please report it): {why}"
            ));
            let _ = post_comment(target, comment_key, &md, &md, Ok(()));
            std::panic::resume_unwind(panic);
        }
    };
    let (markdown, summary, result) = match plan {
        Ok(prepared) => {
            let plan = &prepared.plan;
            print_plan(ctx, plan, args.format);
            let result = if plan.refusals.is_empty() {
                Ok(())
            } else {
                Err(Error::Failed(
                    "the rollback would be refused (see the plan); nothing was changed".into(),
                    Exit::Usage,
                ))
            };
            (
                render::plan_markdown_bounded(plan, crate::github::comment::MAX_BODY - 200),
                render::plan_markdown_bounded(plan, 1 << 20),
                result,
            )
        }
        Err(e) => {
            let md = render::error_markdown(&e.to_string());
            (md.clone(), md, Err(e))
        }
    };
    post_comment(target, comment_key, &markdown, &summary, result)
}

/// The config could not be loaded: say so on the pull request, then fail as without it.
pub fn comment_error(args: &RollbackArgs, comment_key: &str, e: Error) -> Result<(), Error> {
    let Some(pr) = &args.comment_pr else {
        return Err(e);
    };
    let target = comment_target(pr)?;
    let md = render::error_markdown(&e.to_string());
    post_comment(target, comment_key, &md, &md, Err(e))
}

/// Where the comment goes: the pull request and the repository (checked before any work).
fn comment_target(pr: &str) -> Result<(u64, String), Error> {
    let number = crate::github::pull_request_number(pr).map_err(comment_failed)?;
    let repo = crate::github::repository_from_env().map_err(comment_failed)?;
    Ok((number, repo))
}

fn comment_failed(e: crate::github::GithubError) -> Error {
    Error::Failed(
        format!("the plan was not posted to the pull request: {e}"),
        Exit::FailedUndone,
    )
}

fn post_comment(
    (number, repo): (u64, String),
    comment_key: &str,
    markdown: &str,
    summary: &str,
    result: Result<(), Error>,
) -> Result<(), Error> {
    if let Err(e) = crate::github::comment::append_step_summary(summary) {
        tracing::warn!("GITHUB_STEP_SUMMARY could not be written: {e}");
    }
    let posted = crate::github::comment::publish(&repo, number, comment_key, markdown)
        .map_err(comment_failed);
    match posted {
        Ok(p) => {
            let verb = match p {
                crate::github::comment::Posted::Created { .. } => "posted",
                crate::github::comment::Posted::Updated { .. } => "updated",
            };
            tracing::info!(pr = number, url = %clean(p.url()), "{verb} the plan on the pull request");
            eprintln!(
                "{verb} the plan on pull request #{number}: {}",
                clean(p.url())
            );
            result
        }
        Err(e) => match result {
            Ok(()) => Err(e),
            Err(plan_error) => {
                tracing::error!("{e}");
                Err(plan_error)
            }
        },
    }
}

pub fn apply(ctx: &Context, args: &ApplyArgs) -> Result<(), Error> {
    let events = writing_listeners(ctx);
    let result = apply_with(ctx, args, &events);
    ended(&events, result)
}

fn apply_with(ctx: &Context, args: &ApplyArgs, events: &Fanout) -> Result<(), Error> {
    let saved = ops::apply::read_plan(&args.plan)?;
    let prepared = ops::apply::prepare(&ctx.ws, &saved, args.force, events)?;
    run_prepared(
        ctx,
        prepared,
        args.yes,
        args.format,
        "apply the plan",
        events,
    )
}

/// Confirm (showing the plan once), execute, render the outcome.
pub(super) fn run_prepared(
    ctx: &Context,
    prepared: Prepared<'_>,
    yes: bool,
    format: ReportFormat,
    what: &str,
    events: &dyn Listener,
) -> Result<(), Error> {
    let plan = prepared.plan.clone();
    if !plan.refusals.is_empty() {
        ctx.out.raw(&render::plan_text(&plan, &ctx.out));
        return Err(Error::refused_with_hint(
            plan.refusals.join("\n"),
            "nothing was changed; --force overrides the history's checks, --skip-validation the validation's",
        ));
    }
    let already = prepared.already_current();
    let mut shown = false;
    if !yes && !already {
        if interactive() {
            eprint!(
                "{}",
                render::plan_text(&plan, &super::Output::new(ctx.out_color_stderr()))
            );
        } else {
            ctx.out.raw(&render::plan_text(&plan, &ctx.out));
        }
        shown = true;
        confirm(&format!("Proceed? ({what})"), what)?;
    } else if !already && format == ReportFormat::Text {
        // With --yes there is no question, but what will be done is still shown before it is
        // done (a saved plan or a journal is input: the reader sees it first).
        ctx.out.raw(&render::plan_text(&plan, &ctx.out));
        ctx.out.line("");
        shown = true;
    }
    let outcome = ops::rollback::execute(prepared, events)?;
    render_outcome(ctx, &plan, &outcome, format, shown || already);
    outcome_result(&outcome)
}

pub(super) fn render_outcome(
    ctx: &Context,
    plan: &Plan,
    outcome: &Outcome,
    format: ReportFormat,
    shown: bool,
) {
    match format {
        ReportFormat::Json => ctx.out.line(&pretty(&render::outcome_json(plan, outcome))),
        ReportFormat::Markdown => {
            ctx.out.raw(&render::plan_markdown(plan));
            ctx.out.raw(&render::outcome_text(plan, outcome, &ctx.out));
        }
        ReportFormat::Text => {
            if !shown {
                ctx.out.raw(&render::plan_text(plan, &ctx.out));
                ctx.out.line("");
            }
            ctx.out.raw(&render::outcome_text(plan, outcome, &ctx.out));
        }
    }
}

pub(super) fn outcome_result(outcome: &Outcome) -> Result<(), Error> {
    match outcome.exit() {
        Exit::Success => Ok(()),
        exit => Err(Error::Failed(
            match exit {
                Exit::Partial => {
                    "the rollback was partly applied and could not be undone; run `bagboy recover`"
                        .into()
                }
                _ if outcome.refused => format!(
                    "the rollback stopped before any change: {}",
                    outcome.errors.join("; ")
                ),
                _ => format!(
                    "the rollback failed and was undone: {}",
                    outcome.errors.join("; ")
                ),
            },
            exit,
        )),
    }
}

fn pretty(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into())
}

pub fn record(ctx: &Context, args: &RecordArgs) -> Result<(), Error> {
    let events = writing_listeners(ctx);
    let result = record_with(ctx, args, &events);
    ended(&events, result)
}

fn record_with(ctx: &Context, args: &RecordArgs, events: &Fanout) -> Result<(), Error> {
    let req = ops::record::RecordRequest {
        version: args.version.clone(),
        commit: args.commit.clone(),
        notes: args.notes.clone(),
        force: args.force,
        environment: args.environment.clone(),
        from: args.from.clone(),
    };
    let recorded = ops::record::record(&ctx.ws, &req, events)?;
    for w in &recorded.warnings {
        tracing::warn!("{w}");
    }
    let entry = &recorded.entry;
    if args.format == ListFormat::Json {
        let mut doc = super::versions::deployment_json(entry, true);
        doc["superseded"] = serde_json::json!(recorded.superseded);
        doc["warnings"] = serde_json::json!(recorded.warnings);
        ctx.out.line(&pretty(&doc));
        return Ok(());
    }
    let mut s = format!(
        "recorded {} as {}",
        entry.version,
        entry
            .effective_status()
            .map(|s| s.as_str())
            .unwrap_or("deployed")
    );
    if let Some(env) = entry.environment() {
        s.push_str(&format!(" on {}", clean(env)));
    }
    if entry.effective_status() == Some(crate::history::Status::Staged) {
        s.push_str(&format!(
            " (the idle environment; `bagboy promote --version {}` switches traffic to it)",
            entry.version
        ));
    }
    if let Some(p) = &recorded.superseded {
        s.push_str(&format!(" ({p} is now superseded)"));
    }
    s.push('\n');
    for p in &entry.packages {
        s.push_str(&format!(
            "  {} {}  {}\n",
            clean(&p.format),
            clean(&p.registry),
            clean(&crate::registry::describe(p))
        ));
    }
    ctx.out.raw(&s);
    Ok(())
}

pub fn recover(ctx: &Context, args: &RecoverArgs) -> Result<(), Error> {
    let events = writing_listeners(ctx);
    let result = recover_with(ctx, args, &events);
    ended(&events, result)
}

fn recover_with(ctx: &Context, args: &RecoverArgs, events: &Fanout) -> Result<(), Error> {
    let prepared = ops::recover::prepare(&ctx.ws, args.undo, events)?;
    let preview = &prepared.preview;
    use ops::recover::Mode;
    if preview.mode != Mode::Nothing {
        // Show what will be done before doing it (with --yes too); a journal is input.
        let mut s = String::new();
        match preview.mode {
            Mode::Finish => s.push_str(&format!(
                "The rollback to {} was interrupted ({}). recover will finish it:\n",
                clean(preview.target.as_deref().unwrap_or("-")),
                clean(preview.journal.as_deref().unwrap_or("-"))
            )),
            Mode::Undo => s.push_str(&format!(
                "The rollback to {} was interrupted ({}). recover will undo it:\n",
                clean(preview.target.as_deref().unwrap_or("-")),
                clean(preview.journal.as_deref().unwrap_or("-"))
            )),
            Mode::MarkInterrupted => s.push_str(
                "These rollbacks were interrupted before any registry changed; recover marks them rollback_failed:\n",
            ),
            Mode::Nothing => {}
        }
        for a in &preview.steps {
            s.push_str(&format!(
                "  {:<5}  {} {}  {} → {}\n",
                a.action,
                clean(&a.registry),
                clean(&a.reference),
                clean(a.from.as_deref().unwrap_or("(absent)")),
                clean(a.to.as_deref().unwrap_or("(absent)"))
            ));
        }
        for e in &preview.entries {
            s.push_str(&format!("  {}\n", clean(e)));
        }
        if interactive() && !args.yes {
            eprint!("{s}");
        } else if args.format == ListFormat::Text {
            ctx.out.raw(&s);
        } else {
            eprint!("{s}");
        }
        if !args.yes {
            confirm("Proceed? (recover)", "recover")?;
        }
    }
    let report = ops::recover::run(prepared, events)?;
    match args.format {
        ListFormat::Json => ctx
            .out
            .line(&pretty(&serde_json::to_value(&report).unwrap_or_default())),
        ListFormat::Text => {
            let mut s = String::new();
            let target = clean(report.target.as_deref().unwrap_or("-")).into_owned();
            s.push_str(&match report.result {
                coordinator::Recovered::Nothing => "nothing to recover\n".to_string(),
                coordinator::Recovered::Finished => {
                    format!("finished the interrupted rollback to {target}\n")
                }
                coordinator::Recovered::Undone => {
                    format!("undid the interrupted rollback to {target}\n")
                }
                coordinator::Recovered::Stuck => {
                    "could not undo the interrupted rollback; the journal is kept\n".to_string()
                }
            });
            for a in &report.actions {
                s.push_str(&format!("  {}\n", clean(a)));
            }
            for e in &report.errors {
                s.push_str(&format!("  error: {}\n", clean(e)));
            }
            ctx.out.raw(&s);
        }
    }
    if report.result == coordinator::Recovered::Stuck {
        return Err(Error::Failed(
            format!(
                "recovery is stuck; fix the registry named above and run `bagboy recover` again (journal {})",
                report.journal.unwrap_or_default()
            ),
            Exit::Partial,
        ));
    }
    Ok(())
}

pub fn unlock(ctx: &Context, args: &UnlockArgs) -> Result<(), Error> {
    let Some(holder) = ops::unlock::holder(&ctx.ws)? else {
        ctx.out.line("no lock is held");
        return Ok(());
    };
    let shown = format!(
        "{} is held by {}",
        ctx.ws.store.lock_path().display(),
        clean(&holder.to_string())
    );
    if !args.yes {
        if interactive() {
            eprintln!("{shown}");
            eprintln!(
                "Break it only if that bagboy is gone: two bagboys at once can tear the history."
            );
        } else {
            ctx.out.line(&shown);
        }
        confirm("Break the lock?", "break the lock")?;
    }
    if ops::unlock::unlock(&ctx.ws, &holder)? {
        ctx.out.line(&format!(
            "broke the lock of pid {} on {}; run `bagboy recover` if that run was rolling back",
            holder.pid,
            clean(&holder.host)
        ));
        Ok(())
    } else {
        Err(Error::Failed(
            "the lock changed hands while you were asked; nothing was removed".into(),
            Exit::Busy,
        ))
    }
}
