//! Shell completion that knows the project: `--version` offers the versions the history
//! records, `--registry` the configured registries and their formats. The shell asks bagboy
//! itself (clap's dynamic completion: `BAGBOY_COMPLETE=<shell> bagboy -- <words>`); what it reads is
//! the local config and history only: no network, no shared-history fetch, no write.

use clap::CommandFactory as _;
use clap_complete::engine::CompletionCandidate;

use crate::config::Config;
use crate::history::Store;

/// The environment variable the registration scripts set to ask for completions.
pub const VAR: &str = "BAGBOY_COMPLETE";

/// Answer a completion request when the shell asks (`BAGBOY_COMPLETE` set; a generic `COMPLETE` in the environment is left alone): prints the candidates
/// and exits; otherwise returns and bagboy runs as usual.
pub fn handle() {
    clap_complete::CompleteEnv::with_factory(super::Cli::command)
        .var(VAR)
        .complete();
}

/// The registration script for `shell` (what `bagboy completions <shell>` prints).
pub fn registration(
    shell: clap_complete::Shell,
    buf: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let name = match shell {
        clap_complete::Shell::Bash => "bash",
        clap_complete::Shell::Zsh => "zsh",
        clap_complete::Shell::Fish => "fish",
        clap_complete::Shell::Elvish => "elvish",
        clap_complete::Shell::PowerShell => "powershell",
        _ => "bash",
    };
    let shells = clap_complete::env::Shells::builtins();
    match shells.completer(name) {
        Some(c) => c.write_registration(VAR, "bagboy", "bagboy", "bagboy", buf),
        None => Err(std::io::Error::other(format!("no completion for {name}"))),
    }
}

fn project() -> Option<(Config, Store)> {
    let explicit = std::env::var_os("BAGBOY_CONFIG").map(std::path::PathBuf::from);
    let config = Config::discover(explicit.as_deref()).ok()?;
    let history = std::env::var_os("BAGBOY_HISTORY").map(std::path::PathBuf::from);
    let store = Store::new(config.history_path(history.as_deref()));
    Some((config, store))
}

/// The recorded versions, newest first, each with its status.
pub fn versions() -> Vec<CompletionCandidate> {
    let Some((_, store)) = project() else {
        return Vec::new();
    };
    let Ok(loaded) = store.load() else {
        return Vec::new();
    };
    let h = &loaded.history;
    let mut seen = std::collections::HashSet::new();
    h.newest_first()
        .into_iter()
        .map(|i| &h.deployments[i])
        .filter(|d| seen.insert(d.version.as_str().to_string()))
        .map(|d| {
            let status = d.effective_status().map(|s| s.as_str()).unwrap_or("-");
            CompletionCandidate::new(d.version.as_str())
                .help(Some(format!("{status}, {}", d.timestamp).into()))
        })
        .collect()
}

/// [`versions`], and the names `versions compare` understands.
pub fn versions_and_names() -> Vec<CompletionCandidate> {
    let mut out: Vec<CompletionCandidate> = ["current", "previous", "target"]
        .into_iter()
        .map(CompletionCandidate::new)
        .collect();
    out.extend(versions());
    out
}

/// The configured registries and their formats.
pub fn registries() -> Vec<CompletionCandidate> {
    let Some((config, _)) = project() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut formats = Vec::new();
    for r in &config.registries {
        out.push(CompletionCandidate::new(&r.registry).help(Some(r.format.clone().into())));
        if !formats.contains(&r.format) {
            formats.push(r.format.clone());
        }
    }
    for f in formats {
        out.push(CompletionCandidate::new(&f).help(Some("every registry of this format".into())));
    }
    out
}
