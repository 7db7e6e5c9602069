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
        .with_writer(|| SafeStderr)
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
    // Messages carry values from the config, the history and servers: each line is cleaned of
    // control characters, and no line can pass for a CI runner's command.
    let safe = |msg: &str| -> String {
        bagboy::cli::text::clean_lines(msg)
            .split('\n')
            .map(|l| bagboy::cli::text::defuse_line(l).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut text = format!("{} {}\n", paint("1;31", "error:"), safe(&e.to_string()));
    let mut source = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        let msg = s.to_string();
        // thiserror(transparent) and messages that embed their source repeat it; skip repeats.
        if !last.contains(&msg) {
            text.push_str(&format!("  {} {}\n", paint("1", "caused by:"), safe(&msg)));
        }
        last = msg;
        source = s.source();
    }
    if let Some(h) = e.hint() {
        text.push_str(&format!("  {} {}\n", paint("1;36", "hint:"), safe(&h)));
    }
    eprint!("{text}");
}

/// stderr for log lines: one event is one line, so a value with a newline or CR cannot start
/// a line of its own (tracing-subscriber already escapes ANSI sequences in values).
struct SafeStderr;

impl std::io::Write for SafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in body {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b => out.push(b),
            }
        }
        if body.len() != buf.len() {
            out.push(b'\n');
        }
        std::io::stderr().write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
