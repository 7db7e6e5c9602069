//! Migrations added between the target's and the current release's commits must each have a
//! down migration, or the rolled-back code meets a schema it does not know. Read with git
//! plumbing only (`diff-tree`, `ls-tree`): nothing from the work tree, no hooks, no pager, no
//! external diff — the repository may be a pull request's checkout.

use std::path::Path;

use crate::health::config::Migrations;

/// The migrations added in `from..to` under `m.dir` that lack a down migration at `to`:
/// `(added file, expected down file)`. `Err` when git cannot answer.
pub fn missing_downs(
    repo: &Path,
    m: &Migrations,
    from: &str,
    to: &str,
) -> Result<(usize, Vec<(String, String)>), String> {
    // The repository is the checkout's: read its objects through bagboy's own empty
    // repository, never its configuration (a promisor remote there would run a command).
    let cache = crate::registry::homebrew::cache_root()
        .unwrap_or_else(|| std::env::temp_dir().join("bagboy"));
    let runner = crate::git::Git::foreign(repo, &cache).map_err(|f| f.stderr)?;
    let git = |args: &[&str]| -> Result<String, String> {
        runner.run(args).map_err(|f| {
            f.stderr
                .lines()
                .next()
                .unwrap_or("git failed")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect()
        })
    };
    for c in [from, to] {
        if c.is_empty() || !c.chars().all(|ch| ch.is_ascii_hexdigit()) || c.len() > 64 {
            return Err(format!("`{}` is not a commit id", c.escape_debug()));
        }
        git(&["cat-file", "-e", &format!("{c}^{{commit}}")])
            .map_err(|_| format!("commit {c} is not in {}", repo.display()))?;
    }
    let dir = m.dir.trim_end_matches('/');
    let added = git(&[
        "diff-tree",
        "-r",
        "--name-only",
        "--no-renames",
        "--diff-filter=A",
        "-z",
        from,
        to,
        "--",
        dir,
    ])?;
    let at_to = git(&["ls-tree", "-r", "--name-only", "-z", to, "--", dir])?;
    let present: std::collections::HashSet<&str> = at_to.split('\0').collect();
    let mut ups = 0;
    let mut missing = Vec::new();
    for f in added.split('\0').filter(|f| !f.is_empty()) {
        if f.ends_with(&m.down_suffix) {
            continue;
        }
        ups += 1;
        let down = match f.strip_suffix(&m.up_suffix) {
            Some(stem) => format!("{stem}{}", m.down_suffix),
            None => match f.rsplit_once('.') {
                Some((stem, _)) => format!("{stem}{}", m.down_suffix),
                None => format!("{f}{}", m.down_suffix),
            },
        };
        if !present.contains(down.as_str()) {
            missing.push((f.to_string(), down));
        }
    }
    Ok((ups, missing))
}
