//! Sweep every formula and cask of a tap checkout through bagboy's restore edit, in dry-run:
//! does it parse, where does `version_scheme` go, and is everything else byte-identical.
//! Used by `scripts/sweep-tap.sh`; prints a markdown report.
//!
//! Usage: cargo run --release --example sweep -- <tap-dir> [--write-out DIR]

use std::path::{Path, PathBuf};

use bagboy::registry::homebrew::ruby::{is_after_scheme, Shape, Source, BEFORE_SCHEME};

#[derive(Default)]
struct Counts {
    files: usize,
    formulas: usize,
    casks: usize,
    unparsed: Vec<String>,
    unversioned: Vec<String>,
    versioned: usize,
    inserted: usize,
    raised: usize,
    misplaced: Vec<String>,
    not_identical: Vec<String>,
    edit_failed: Vec<String>,
    retired: usize,
    greedy: usize,
    deep: usize,
}

fn rb_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rb_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rb") {
            out.push(p);
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(root) = args.get(1).map(PathBuf::from) else {
        eprintln!("usage: sweep <tap-dir> [--write-out DIR]");
        std::process::exit(2);
    };
    let write_out = args
        .iter()
        .position(|a| a == "--write-out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let mut files = Vec::new();
    for sub in ["Formula", "HomebrewFormula", "Casks"] {
        rb_files(&root.join(sub), &mut files);
    }
    if let Ok(rd) = std::fs::read_dir(&root) {
        files.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rb")),
        );
    }
    files.sort();
    let mut c = Counts::default();
    for path in &files {
        let rel = path
            .strip_prefix(&root)
            .unwrap_or(path)
            .display()
            .to_string();
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        c.files += 1;
        if rel.matches('/').count() >= 2 {
            c.deep += 1;
        }
        let src = match Source::parse(&text) {
            Ok(s) => s,
            Err(e) => {
                c.unparsed.push(format!("{rel}:{e}"));
                continue;
            }
        };
        if src.version().is_some() {
            c.versioned += 1;
        } else {
            c.unversioned.push(rel.clone());
        }
        if src.retired().is_some() {
            c.retired += 1;
        }
        if src.shape == Shape::Cask {
            c.casks += 1;
            if src.needs_greedy().is_some() {
                c.greedy += 1;
            }
            continue;
        }
        c.formulas += 1;
        let had = src.version_scheme();
        let n = had.unwrap_or(0) + 1;
        let out = match src.with_version_scheme(n) {
            Ok(o) => o,
            Err(e) => {
                c.edit_failed.push(format!("{rel}: {e}"));
                continue;
            }
        };
        let after = match Source::parse(&out) {
            Ok(a) => a,
            Err(e) => {
                c.edit_failed
                    .push(format!("{rel}: result does not parse: {e}"));
                continue;
            }
        };
        if after.version_scheme() != Some(n) {
            c.edit_failed
                .push(format!("{rel}: version_scheme not {n} after the edit"));
            continue;
        }
        if had.is_some() {
            c.raised += 1;
        } else {
            c.inserted += 1;
            // Placed by component order: right after the leading run of components that come
            // before it, and before everything else.
            let idx = after
                .stanzas
                .iter()
                .position(|s| s.name == "version_scheme")
                .unwrap_or(usize::MAX);
            // Placed by component order: no later component before it, and no earlier one
            // after it before the later ones start (a file already out of order elsewhere is
            // not held against the edit).
            let st = &after.stanzas;
            let after_before = st[..idx.min(st.len())]
                .iter()
                .any(|s| is_after_scheme(&s.name));
            let next_after = st
                .iter()
                .skip(idx + 1)
                .position(|s| is_after_scheme(&s.name))
                .map_or(st.len(), |p| idx + 1 + p);
            let before_after = st[(idx + 1).min(st.len())..next_after]
                .iter()
                .any(|s| BEFORE_SCHEME.contains(&s.name.as_str()));
            if after_before || before_after {
                c.misplaced.push(rel.clone());
            }
        }
        if after.without_version_scheme() != src.without_version_scheme() {
            c.not_identical.push(rel.clone());
        }
        if let Some(dir) = &write_out {
            let dest = dir.join(&rel);
            if let Some(p) = dest.parent() {
                let _ = std::fs::create_dir_all(p);
            }
            let _ = std::fs::write(dest, &out);
        }
    }
    let pct = |n: usize, of: usize| {
        if of == 0 {
            "-".to_string()
        } else {
            format!("{:.2} %", 100.0 * n as f64 / of as f64)
        }
    };
    println!("| | count | share |\n|---|---|---|");
    println!(
        "| files (`.rb` under Formula/, HomebrewFormula/, Casks/, root) | {} | |",
        c.files
    );
    println!(
        "| at depth ≥ 2 (`Formula/l/x.rb`, `Casks/font/font-c/x.rb`) | {} | {} |",
        c.deep,
        pct(c.deep, c.files)
    );
    println!(
        "| parsed | {} | {} |",
        c.files - c.unparsed.len(),
        pct(c.files - c.unparsed.len(), c.files)
    );
    println!("| formulas / casks | {} / {} | |", c.formulas, c.casks);
    println!(
        "| version derived | {} | {} |",
        c.versioned,
        pct(c.versioned, c.files - c.unparsed.len())
    );
    println!(
        "| formulas: `version_scheme` inserted / raised in place | {} / {} | |",
        c.inserted, c.raised
    );
    println!(
        "| inserted at Homebrew's component order | {} | {} |",
        c.inserted - c.misplaced.len(),
        pct(c.inserted - c.misplaced.len(), c.inserted)
    );
    println!(
        "| edited and re-parsed | {} | {} |",
        c.formulas - c.edit_failed.len(),
        pct(c.formulas - c.edit_failed.len(), c.formulas)
    );
    println!(
        "| byte-identical apart from `version_scheme` | {} | {} |",
        c.formulas - c.edit_failed.len() - c.not_identical.len(),
        pct(
            c.formulas - c.edit_failed.len() - c.not_identical.len(),
            c.formulas - c.edit_failed.len()
        )
    );
    println!(
        "| `disable!`/`deprecate!` (named in plans) | {} | |",
        c.retired
    );
    println!(
        "| casks needing `--greedy` (named in plans) | {} | |",
        c.greedy
    );
    for (what, list) in [
        ("not parsed", &c.unparsed),
        ("edit refused", &c.edit_failed),
        ("misplaced", &c.misplaced),
        ("not identical", &c.not_identical),
        ("no version derived", &c.unversioned),
    ] {
        if !list.is_empty() {
            eprintln!("{what} ({}):", list.len());
            for l in list.iter().take(20) {
                eprintln!("  {l}");
            }
        }
    }
}
