//! The `bagboy` binary: parse, set up logging, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use bagboy::cli::{Cli, LogFormat};
use bagboy::{Error, Exit};
use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = cli.color.enabled(std::io::stderr().is_terminal());
    init_tracing(&cli, color);
    match bagboy::cli::run(cli) {
        Ok(()) => ExitCode::from(Exit::Success as u8),
        Err(e) => {
            render_error(&e, color);
            ExitCode::from(e.exit() as u8)
        }
    }
}

fn init_tracing(cli: &Cli, color: bool) {
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "bagboy=info,warn",
        (false, 2) => "bagboy=debug,info",
        (false, _) => "trace",
    };
    let filter = std::env::var("BAGBOY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|s| EnvFilter::try_new(s).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.with_ansi(color).without_time().init(),
    }
}

/// `error:` / `caused by:` / `hint:`, the way users of uv and cargo expect.
fn render_error(e: &Error, color: bool) {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut text = format!("{} {e}\n", paint("1;31", "error:"));
    let mut source = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        let msg = s.to_string();
        // thiserror(transparent) and messages that embed their source repeat it; skip repeats.
        if !last.contains(&msg) {
            text.push_str(&format!("  {} {msg}\n", paint("1", "caused by:")));
        }
        last = msg;
        source = s.source();
    }
    if let Some(h) = e.hint() {
        text.push_str(&format!("  {} {h}\n", paint("1;36", "hint:")));
    }
    eprint!("{text}");
}
