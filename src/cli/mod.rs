//! The command line: clap types, dispatch, and every line bagboy prints.

mod audit;
mod check;
pub mod complete;
mod health;
mod judge;
mod output;
mod promote;
mod render;
mod rollback;
pub mod text;
mod versions;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use clap_complete::engine::ArgValueCandidates;

use crate::config::Config;
use crate::error::Error;
use crate::history::Store;
use crate::ops::Workspace;
pub use output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "bagboy",
    version,
    about = "Roll every registry of a release back to a known-good version",
    long_about = "Roll every registry of a release back to a known-good version.\n\n\
bagboy keeps a deployment history (.bagboy/deployment-history.yml), plans a rollback per \
registry (Docker/OCI tags, OCI layouts, Homebrew taps, npm dist-tags, GitHub Releases, \
Scoop buckets, AUR packages, Helm chart indexes, GitOps image tags, cargo crates, blue-green traffic), previews it, applies it with compensation on failure, and records the outcome.",
    after_help = "Exit codes: 0 success, 1 failed and undone, 2 bad usage or input (nothing changed), \
3 partly applied (run `bagboy recover`), 4 locked, or the history or a registry changed underneath, \
5 a health check failed, 6 a health check could not be evaluated (nothing changed)."
)]
pub struct Cli {
    /// Project configuration file [default: ./bagboy.yaml]
    #[arg(long, global = true, value_name = "PATH", env = "BAGBOY_CONFIG")]
    pub config: Option<PathBuf>,

    /// Deployment history file [default: .bagboy/deployment-history.yml]
    #[arg(long, global = true, value_name = "PATH", env = "BAGBOY_HISTORY")]
    pub history: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Only errors on stderr
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// When to use colors (NO_COLOR is honoured with `auto`)
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to color a stream that is (or is not) a terminal.
    pub fn enabled(self, is_terminal: bool) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Put every registry back to a known-good release
    Rollback(RollbackArgs),
    /// Execute exactly a plan saved from `rollback --dry-run --format json`
    Apply(ApplyArgs),
    /// Run the configured health checks once: exit 0 passing, 5 failing, 6 inconclusive
    Health(HealthArgs),
    /// Record a release: observe the registries for version V and mark it deployed
    Record(RecordArgs),
    /// Blue-green: move traffic step by step to a release staged on the idle environment,
    /// health-checked after each step, then point the registries at it
    Promote(PromoteArgs),
    /// Finish or undo a rollback that was interrupted (crash, kill, lost network)
    Recover(RecoverArgs),
    /// Inspect and maintain the deployment history
    #[command(subcommand)]
    Versions(VersionsCommand),
    /// Break the lock left by a bagboy that is gone (say, on a CI runner that no longer exists)
    Unlock(UnlockArgs),
    /// Read and check the audit log (`.bagboy/audit.jsonl`)
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check the config, the history, credentials and that every registry answers; exit 0 / 2
    Check(CheckArgs),
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Subcommand)]
pub enum VersionsCommand {
    /// List recorded deployments, newest first
    List(ListArgs),
    /// Show what differs between two deployments (versions, `current`, `previous`, `target`)
    Compare(CompareArgs),
    /// Drop old entries, keeping the N newest and always the current one
    Prune(PruneArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// Target version [default: the newest good entry before the current one]
    #[arg(long, value_name = "V", add = ArgValueCandidates::new(complete::versions))]
    pub version: Option<String>,
    /// Print the exact plan from the live registries; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Only these registries (a format such as `docker`, or a registry as in bagboy.yaml)
    #[arg(long, value_name = "FORMAT|REGISTRY", add = ArgValueCandidates::new(complete::registries))]
    pub registry: Vec<String>,
    /// Output format of the plan and the outcome
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Roll back even to failed or rollback-unsafe entries, or a target whose tag was re-pushed
    #[arg(long)]
    pub force: bool,
    /// Roll back only if the health checks and `auto_trigger` thresholds say so, to the last
    /// known-good release (critical triggers roll back without a prompt)
    /// (with --dry-run: what it would decide and the plan it would run; `command` checks are
    /// not run)
    #[arg(long, conflicts_with = "version")]
    pub auto: bool,
    /// With --auto: sample over this window (e.g. 5m) [default: as many rounds as the
    /// consecutive-failure limit]
    #[arg(long, value_name = "DURATION", requires = "auto", value_parser = parse_duration_arg)]
    pub watch: Option<std::time::Duration>,
    /// With --auto: time between samples
    #[arg(long, value_name = "DURATION", requires = "auto", value_parser = parse_duration_arg, default_value = "10s")]
    pub interval: std::time::Duration,
    /// Run without `rollback.validation` (dependencies, smoke tests, migrations); warns
    #[arg(long)]
    pub skip_validation: bool,
    /// With --dry-run: post the plan as one sticky comment on this pull request (`auto`: the
    /// one in GITHUB_EVENT_PATH), updated in place on later runs; needs GITHUB_TOKEN and
    /// GITHUB_REPOSITORY, appends to GITHUB_STEP_SUMMARY when set
    #[arg(long, value_name = "N|auto", requires = "dry_run")]
    pub comment_pr: Option<String>,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::health::parse_duration(s)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{s}` is not a duration (e.g. 30s, 500ms, 5m)"))
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check this release [default: the current one]
    #[arg(long, value_name = "V", add = ArgValueCandidates::new(complete::versions))]
    pub version: Option<String>,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Write the results onto that history entry's `health_checks:`
    #[arg(long, conflicts_with = "judge")]
    pub record: bool,
    /// Judge the release against a baseline with `deployment.rollback.judge` (Mann-Whitney
    /// per metric, weighted score): exit 0 pass, 5 fail, 6 marginal or not enough data
    #[arg(long)]
    pub judge: bool,
    /// With --judge: compare with this release [default: the judge's `baseline:`]
    #[arg(long, value_name = "V", requires = "judge")]
    pub baseline: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "The plan is checked again under the lock before anything runs: if the \
history changed, or a registry no longer holds what the plan observed (a step's `before`), the \
plan is stale and bagboy exits 4; a step that bagboy would not plan from the history and config \
(say, a tag pointed at a digest the history never recorded) exits 2. Nothing is changed either way."
)]
pub struct ApplyArgs {
    /// The plan file (JSON from `bagboy rollback --dry-run --format json`)
    #[arg(value_name = "PLAN.json")]
    pub plan: PathBuf,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Apply although the history's checks refuse the target (only on the command line: a
    /// saved plan's own `force` counts for nothing)
    #[arg(long)]
    pub force: bool,
    /// Output format of the outcome
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The released version (semver, optional leading v)
    #[arg(long, value_name = "V")]
    pub version: String,
    /// Source commit of the release
    #[arg(long, value_name = "SHA")]
    pub commit: Option<String>,
    #[arg(long, value_name = "TEXT")]
    pub notes: Option<String>,
    /// Output format: text, or json (the entry recorded and every warning)
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Record a version that an automated rollback held
    #[arg(long)]
    pub force: bool,
    /// Blue-green: the environment the release runs on; on the idle one it is recorded
    /// `staged` until `bagboy promote` switches traffic to it
    #[arg(long, value_name = "COLOR", value_parser = ["blue", "green"])]
    pub environment: Option<String>,
    /// Record what a release tool's file names (still observed live): goreleaser[=DIR]
    /// (default dist) or cargo-dist[=FILE] (default target/distrib/dist-manifest.json)
    #[arg(long, value_name = "TOOL[=PATH]", value_parser = crate::release_file::Source::parse)]
    pub from: Option<crate::release_file::Source>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Print the `registries:` block matching a release tool's file: goreleaser[=DIR] or
    /// cargo-dist[=FILE]
    #[arg(long, value_name = "TOOL[=PATH]", value_parser = crate::release_file::Source::parse)]
    pub from: Option<crate::release_file::Source>,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The staged release to promote
    #[arg(long, value_name = "V", add = ArgValueCandidates::new(complete::versions))]
    pub version: String,
    /// Print the plan (every traffic step and the registries); change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// Undo the interrupted rollback instead of finishing it
    #[arg(long)]
    pub undo: bool,
    /// Do not ask for confirmation (the steps are shown first otherwise)
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the audit log, newest last
    List(AuditListArgs),
    /// Check the hash chain: exit 1 naming the first line that was edited, deleted or inserted
    Verify,
}

#[derive(Debug, Args)]
pub struct AuditListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Only this operation (rollback, apply, record, prune, recover, unlock)
    #[arg(long, value_name = "OP")]
    pub operation: Option<String>,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Do not ask for confirmation (the holder is shown first otherwise)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value_t = ListFormat::Text)]
    pub format: ListFormat,
    /// Show at most N entries (a whole number: 0 shows none)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub limit: Option<usize>,
}

fn parse_count(s: &str) -> Result<usize, String> {
    s.trim()
        .parse::<usize>()
        .map_err(|_| format!("`{s}` is not a whole number of entries (0, 1, 2, ...)"))
}

#[derive(Debug, Args)]
#[command(
    after_help = "Names: `current` is the deployed entry; `previous` the entry recorded just \
before it (after a rollback: the release rolled back from); `target` the release a bare \
`bagboy rollback` would go to."
)]
pub struct CompareArgs {
    /// A version, `current`, `previous` or `target`
    #[arg(add = ArgValueCandidates::new(complete::versions_and_names))]
    pub a: String,
    /// A version, `current`, `previous` or `target`
    #[arg(add = ArgValueCandidates::new(complete::versions_and_names))]
    pub b: String,
    /// Output format (markdown fits a pull request or an issue)
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// How many of the newest entries to keep (the current one is always kept)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub keep: usize,
    /// Print what would be removed; change nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask on a terminal (cron never asks: without a terminal prune runs as told)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// What every command gets: the workspace (config and history) and output.
pub struct Context {
    pub ws: Workspace,
    pub out: Output,
    color: ColorChoice,
}

impl Context {
    pub fn new(cli: &Cli) -> Result<Context, Error> {
        let config = Config::discover(cli.config.as_deref())?;
        for w in &config.warnings {
            let file = config
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            tracing::warn!("{file}:{}: {}", w.loc, w.message);
        }
        let store = Store::new(config.history_path(cli.history.as_deref()))
            .with_remote(config.history_remote.as_ref())?;
        let out = Output::new(cli.color.enabled(std::io::stdout().is_terminal()));
        Ok(Context {
            ws: Workspace::new(config, store),
            out,
            color: cli.color,
        })
    }

    /// Whether text shown on stderr (prompts, previews) may be colored.
    pub fn out_color_stderr(&self) -> bool {
        self.color.enabled(std::io::stderr().is_terminal())
    }
}

/// What tells one project's PR comment from another's: the config file as given.
fn comment_key(cli: &Cli) -> String {
    cli.config
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "bagboy.yaml".into())
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> Result<(), Error> {
    // One span per operation: its id is in every log line of `--log-format json`.
    let _span = tracing::info_span!("bagboy", op = %crate::ops::operation_id()).entered();
    match &cli.command {
        Command::Completions { shell } => {
            // The dynamic registration: the shell asks bagboy itself (`BAGBOY_COMPLETE=<shell>
            // bagboy -- ...`), so `--version` offers the recorded versions and `--registry`
            // the configured registries of the project the user is in.
            let mut buf = Vec::new();
            complete::registration(*shell, &mut buf).map_err(|source| Error::Io {
                context: "writing the completion script".into(),
                source,
            })?;
            Output::new(false).raw(&String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|source| Error::Io {
                    context: "rendering the man page".into(),
                    source,
                })?;
            Output::new(false).raw(&String::from_utf8_lossy(&buf));
            Ok(())
        }
        Command::Rollback(a) => match Context::new(&cli) {
            Ok(ctx) => rollback::rollback(&ctx, a, &comment_key(&cli)),
            // A pull request that breaks the config still gets its comment: the error.
            Err(e) if a.comment_pr.is_some() => rollback::comment_error(a, &comment_key(&cli), e),
            Err(e) => Err(e),
        },
        Command::Apply(a) => rollback::apply(&Context::new(&cli)?, a),
        Command::Health(a) => health::health(&Context::new(&cli)?, a),
        Command::Record(a) => rollback::record(&Context::new(&cli)?, a),
        // Not through `Context`: a config with problems is what check reports, not an error.
        Command::Check(a) => check::run(&cli, a),
        Command::Promote(a) => promote::promote(&Context::new(&cli)?, a),
        Command::Recover(a) => rollback::recover(&Context::new(&cli)?, a),
        Command::Unlock(a) => rollback::unlock(&Context::new(&cli)?, a),
        Command::Audit(a) => audit::run(&Context::new(&cli)?, a),
        Command::Versions(v) => {
            let ctx = Context::new(&cli)?;
            match v {
                VersionsCommand::List(a) => versions::list(&ctx, a),
                VersionsCommand::Compare(a) => versions::compare(&ctx, a),
                VersionsCommand::Prune(a) => versions::prune(&ctx, a),
            }
        }
    }
}
