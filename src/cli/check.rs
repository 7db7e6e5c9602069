//! `bagboy check`: render what `crate::check` found, as text or JSON; exit 2 on any problem.

use std::io::IsTerminal;

use super::text::clean;
use super::{CheckArgs, Cli, ListFormat, Output};
use crate::check::{self, CheckRequest, Finding, Report};
use crate::error::Error;

pub fn run(cli: &Cli, args: &CheckArgs) -> Result<(), Error> {
    let out = Output::new(cli.color.enabled(std::io::stdout().is_terminal()));
    let report = check::check(&CheckRequest {
        config: cli.config.clone(),
        history: cli.history.clone(),
        from: args.from.clone(),
    });
    match args.format {
        ListFormat::Json => {
            out.line(&serde_json::to_string_pretty(&report).unwrap_or_else(|_| "{}".into()))
        }
        ListFormat::Text => out.raw(&text(&out, &report)),
    }
    match check::problems_error(&report) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn finding(out: &Output, f: &Finding) -> String {
    format!(
        "  {} {}: {}\n",
        out.red("✗"),
        clean(&f.at),
        clean(&f.message)
    )
}

fn text(out: &Output, r: &Report) -> String {
    let ok = |s: &str| format!("  {} {s}\n", out.green("✓"));
    let mut s = String::new();
    s.push_str(&out.bold("config"));
    s.push('\n');
    if r.config.problems.is_empty() {
        if let Some(f) = &r.config.file {
            s.push_str(&ok(&format!(
                "{}: {} registr{}",
                clean(f),
                r.config.registries,
                if r.config.registries == 1 { "y" } else { "ies" }
            )));
        } else {
            s.push_str("  no bagboy.yaml (the block below starts one)\n");
        }
    }
    for f in &r.config.problems {
        s.push_str(&finding(out, f));
    }
    if let Some(file) = &r.history.file {
        s.push_str(&out.bold("history"));
        s.push('\n');
        if !r.history.problems.is_empty() {
            for f in &r.history.problems {
                s.push_str(&finding(out, f));
            }
        } else if !r.history.exists {
            s.push_str(&format!(
                "  {} {}: no history yet (the first `bagboy record` writes it)\n",
                out.dim("-"),
                clean(file)
            ));
        } else {
            let statuses: Vec<String> = r
                .history
                .statuses
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            s.push_str(&ok(&format!(
                "{}: {} entr{} ({}); current: {}",
                clean(file),
                r.history.entries,
                if r.history.entries == 1 { "y" } else { "ies" },
                statuses.join(", "),
                r.history.current.as_deref().map_or("none".into(), clean)
            )));
        }
    }
    if !r.registries.is_empty() {
        s.push_str(&out.bold("registries"));
        s.push('\n');
    }
    for reg in &r.registries {
        let mark = match reg.reachable {
            Some(true) => out.green("✓"),
            Some(false) => out.red("✗"),
            None => out.dim("-"),
        };
        s.push_str(&format!(
            "  {mark} {} {}\n      credentials: {}\n      {}\n",
            clean(&reg.format),
            clean(&reg.registry),
            reg.credential
                .as_deref()
                .map_or("none found (anonymous)".into(), clean),
            clean(&reg.detail)
        ));
    }
    if let Some(from) = &r.from {
        s.push_str(&out.bold(&format!("registries named by {}", clean(&from.file))));
        s.push('\n');
        for n in &from.notes {
            s.push_str(&format!("  {} {}\n", out.yellow("!"), clean(n)));
        }
        s.push('\n');
        s.push_str(&super::text::clean_lines(&from.registries_yaml));
        if !from.registries_yaml.ends_with('\n') {
            s.push('\n');
        }
    }
    if r.problems == 0 {
        s.push_str(&format!("{} no problems\n", out.green("ok:")));
    }
    s
}
