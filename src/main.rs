//! The `bagboy` binary: parse, set up logging, run, map the outcome to an exit code.

use std::io::IsTerminal;
use std::process::ExitCode;

use bagboy::cli::{Cli, LogFormat};
use bagboy::{Error, Exit};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: loading and writing a large history is millions of small
/// allocations, and glibc's free/consolidate was a fifth of `record`'s time on a 100k-entry
/// history (docs/decisions.md, "Allocator").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // A shell asking for completions (`BAGBOY_COMPLETE=<shell>`): answered, then exit.
    bagboy::cli::complete::handle();
    let cli = Cli::parse();
    let color = cli.color.enabled(std::io::stderr().is_terminal());
    init_tracing(&cli, color);
    on_interrupt();
    let json = cli.log_format == LogFormat::Json;
    match bagboy::cli::run(cli) {
        Ok(()) => ExitCode::from(Exit::Success as u8),
        Err(e) if json => {
            // With --log-format json, the final error is a JSON log line too.
            tracing::error!(
                exit = e.exit() as u8,
                hint = e.hint().unwrap_or_default(),
                "{e}"
            );
            ExitCode::from(e.exit() as u8)
        }
        Err(e) => {
            render_error(&e, color);
            ExitCode::from(e.exit() as u8)
        }
    }
}

/// Ctrl-C (or SIGTERM): say what state things are left in, then die of the signal as before.
/// Everything in the handler is async-signal-safe: one `write` of a fixed text, then the
/// default action re-raised.
fn on_interrupt() {
    extern "C" fn handler(sig: libc::c_int) {
        const MSG: &[u8] = b"\nbagboy: interrupted. A rollback, apply, promote or recover that was changing registries left its journal under .bagboy/journal/: run `bagboy recover` to finish or undo it (nothing else is needed otherwise).\n";
        // SAFETY: write(2), signal(2) and raise(3) are async-signal-safe.
        unsafe {
            libc::write(2, MSG.as_ptr().cast(), MSG.len());
            libc::signal(sig, libc::SIG_DFL);
            libc::raise(sig);
        }
    }
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                sig,
                handler as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
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
