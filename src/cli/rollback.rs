//! `bagboy rollback` and `bagboy record`.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use super::render;
use super::{Context, ListFormat, RecordArgs, RecoverArgs, ReportFormat, RollbackArgs};
use crate::coordinator::{self, Reporter, Request, RollbackCoordinator};
use crate::error::{Error, Exit};
use crate::history::{Deployment, Status, Version};
use crate::plan::{Action, Step};

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            context: "starting the async runtime".into(),
            source,
        })
}

/// Progress on stderr: a line per step on a terminal, `info` logs otherwise.
struct Progress {
    tty: bool,
}

impl Reporter for Progress {
    fn step_started(&self, registry: &str, step: &Step) {
        tracing::debug!(registry, reference = %step.reference, "applying");
    }

    fn step_finished(&self, registry: &str, step: &Step, elapsed: Duration, error: Option<&str>) {
        let verb = match step.action {
            Action::MoveTag => "moved",
            Action::RestoreFile => "restored",
            _ => "done",
        };
        let ms = elapsed.as_millis();
        match (error, self.tty) {
            (None, true) => eprintln!("  ✓ {registry} {} {verb} ({ms} ms)", step.reference),
            (Some(e), true) => eprintln!("  ✗ {registry} {} failed: {e}", step.reference),
            (None, false) => tracing::info!(registry, reference = %step.reference, ms, "{verb}"),
            (Some(e), false) => {
                tracing::warn!(registry, reference = %step.reference, "failed: {e}")
            }
        }
    }

    fn undo_finished(&self, registry: &str, step: &Step, error: Option<&str>) {
        match error {
            None => tracing::warn!(registry, reference = %step.reference, "undone"),
            Some(e) => tracing::error!(registry, reference = %step.reference, "undo failed: {e}"),
        }
    }
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
            d.version.to_string(),
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

fn confirm() -> Result<bool, Error> {
    let line = ask("Proceed with the rollback? [y/N] ")?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

pub fn rollback(ctx: &Context, args: &RollbackArgs) -> Result<(), Error> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    // Read the history under the lock, so the compare-and-swap base is what we plan from.
    let lock = if args.dry_run {
        None
    } else {
        Some(ctx.store.lock(&command)?)
    };
    // Only under the lock does a journal mean an unfinished rollback: a running one (which
    // holds the lock) has a journal too, and is reported above as the lock's holder.
    let unfinished = coordinator::unfinished_journals(&ctx.store);
    if let Some(j) = unfinished.first() {
        return Err(Error::refused_with_hint(
            format!(
                "an earlier rollback did not finish (journal {})",
                j.display()
            ),
            "run `bagboy recover` to finish or undo it first",
        ));
    }
    let loaded = ctx.store.load()?;
    if let Some(d) = loaded
        .history
        .deployments
        .iter()
        .find(|d| d.effective_status() == Some(Status::RollingBack))
    {
        return Err(Error::refused_with_hint(
            format!(
                "a rollback to {} ({}) is still marked rolling_back: it was interrupted",
                d.version, d.timestamp
            ),
            "run `bagboy recover` to finish or undo it first",
        ));
    }
    let coordinator = RollbackCoordinator::new(&ctx.config, &ctx.store);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let target_idx = match (&args.version, interactive && !args.yes && !args.dry_run) {
        (None, true) => match pick_interactively(&loaded.history)? {
            Some(i) => i,
            None => coordinator.choose_target(&loaded.history, None)?,
        },
        (v, _) => coordinator.choose_target(&loaded.history, v.as_deref())?,
    };
    let req = Request {
        version: args.version.clone(),
        registries: args.registry.clone(),
        force: args.force,
    };
    let rt = runtime()?;
    let plan = rt.block_on(coordinator.plan(&loaded.history, target_idx, &req))?;

    if args.dry_run {
        match args.format {
            ReportFormat::Text => ctx.out.raw(&render::plan_text(&plan, &ctx.out)),
            ReportFormat::Json => ctx.out.line(&pretty(&render::plan_json(&plan))),
            ReportFormat::Markdown => ctx.out.raw(&render::plan_markdown(&plan)),
        }
        if !plan.refusals.is_empty() {
            return Err(Error::Failed(
                "the rollback would be refused (see the plan); nothing was changed".into(),
                Exit::Usage,
            ));
        }
        return Ok(());
    }

    if !plan.refusals.is_empty() {
        ctx.out.raw(&render::plan_text(&plan, &ctx.out));
        return Err(Error::refused_with_hint(
            plan.refusals.join("\n"),
            "nothing was changed; --force overrides these checks",
        ));
    }
    let already = plan.is_noop()
        && plan.current.as_ref().is_some_and(|c| {
            Version::parse(&c.version).ok() == Version::parse(&plan.target.version).ok()
        });
    if !args.yes && !already {
        if !interactive {
            ctx.out.raw(&render::plan_text(&plan, &ctx.out));
            return Err(Error::refused_with_hint(
                "refusing to roll back without confirmation: no terminal to ask on",
                "re-run with --yes to proceed (the plan above is what would run)",
            ));
        }
        eprint!(
            "{}",
            render::plan_text(&plan, &super::Output::new(ctx.out_color_stderr()))
        );
        if !confirm()? {
            return Err(Error::refused("rollback cancelled; nothing was changed"));
        }
    }
    let progress = Progress {
        tty: std::io::stderr().is_terminal(),
    };
    let outcome =
        rt.block_on(coordinator.execute(&plan, &loaded, target_idx, &command, &progress))?;
    drop(lock);
    match args.format {
        ReportFormat::Json => ctx
            .out
            .line(&pretty(&render::outcome_json(&plan, &outcome))),
        ReportFormat::Text | ReportFormat::Markdown => {
            if args.format == ReportFormat::Markdown {
                ctx.out.raw(&render::plan_markdown(&plan));
            } else if args.yes && !already {
                ctx.out.raw(&render::plan_text(&plan, &ctx.out));
                ctx.out.line("");
            }
            ctx.out
                .raw(&render::outcome_text(&plan, &outcome, &ctx.out));
        }
    }
    match outcome.exit() {
        Exit::Success => Ok(()),
        exit => Err(Error::Failed(
            match exit {
                Exit::Partial => {
                    "the rollback was partly applied and could not be undone; run `bagboy recover`"
                        .into()
                }
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
    let version = Version::parse(&args.version).map_err(|e| {
        Error::refused(format!(
            "--version {} is not a semver version: {e}",
            args.version
        ))
    })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let lock = ctx.store.lock(&command)?;
    let loaded = ctx.store.load_or_empty()?;
    let rt = runtime()?;
    let packages = rt.block_on(coordinator::observe_release(&ctx.config, &version))?;
    let mut entry = Deployment::new(version.clone(), Status::Deployed);
    entry.commit = args.commit.clone();
    entry.notes = args.notes.clone();
    entry.actor = coordinator::actor();
    entry.packages = packages;
    let mut history = loaded.history.clone();
    let previous = history
        .current()
        .map(|c| history.deployments[c].version.to_string());
    coordinator::record_entry(&mut history, entry.clone());
    ctx.store.save(&history, &loaded.fingerprint)?;
    drop(lock);
    let mut s = format!("recorded {version} as deployed");
    if let Some(p) = previous {
        s.push_str(&format!(" ({p} is now superseded)"));
    }
    s.push('\n');
    for p in &entry.packages {
        let what = match (&p.digest, &p.tap_commit) {
            (Some(d), _) => format!(
                "{} tags: {}",
                super::output::short_digest(d),
                p.tags.join(", ")
            ),
            (None, Some(c)) => format!(
                "{} at {}",
                p.formula.as_deref().unwrap_or("-"),
                super::output::short_commit(c)
            ),
            _ => String::new(),
        };
        s.push_str(&format!("  {} {}  {what}\n", p.format, p.registry));
    }
    ctx.out.raw(&s);
    Ok(())
}

pub fn recover(ctx: &Context, args: &RecoverArgs) -> Result<(), Error> {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let lock = ctx.store.lock(&command)?;
    let coordinator = RollbackCoordinator::new(&ctx.config, &ctx.store);
    let rt = runtime()?;
    let report = rt.block_on(coordinator.recover(args.undo))?;
    drop(lock);
    match args.format {
        ListFormat::Json => ctx
            .out
            .line(&pretty(&serde_json::to_value(&report).unwrap_or_default())),
        ListFormat::Text => {
            let mut s = String::new();
            let target = report.target.as_deref().unwrap_or("-");
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
                s.push_str(&format!("  {a}\n"));
            }
            for e in &report.errors {
                s.push_str(&format!("  error: {e}\n"));
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
