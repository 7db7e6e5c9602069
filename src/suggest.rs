//! "Did you mean": the known name nearest to a misspelt one, for unknown-key messages.

use crate::history::Problem;
use crate::yaml::Loc;

/// Levenshtein distance over chars (keys are short; quadratic is fine).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The known name nearest to `word`, when it is near enough to be a slip: at most half the
/// word's length in edits (at least 1, at most 3), so `registry` finds `registries`.
pub fn nearest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    let w = word.to_ascii_lowercase();
    let (d, best) = known
        .iter()
        .map(|k| (distance(&w, k), *k))
        .min_by_key(|(d, _)| *d)?;
    let limit = (w.chars().count() / 2).clamp(1, 3);
    (d <= limit).then_some(best)
}

/// The unknown-key finding: `unknown <what> key `x` ignored; did you mean `y`? (known: ...)`.
/// `what` names the block (`""` for the top level).
pub fn unknown_key(loc: Loc, what: &str, key: &str, known: &[&str]) -> Problem {
    let what = if what.is_empty() {
        String::new()
    } else {
        format!("{what} ")
    };
    let hint = match nearest(key, known) {
        Some(k) => format!("; did you mean `{k}`?"),
        None => String::new(),
    };
    Problem {
        loc,
        message: format!(
            "unknown {what}key `{}` ignored{hint} (known: {})",
            key.escape_debug(),
            known.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        let top = [
            "name",
            "history",
            "registries",
            "rollback",
            "deployment",
            "monitoring",
        ];
        assert_eq!(nearest("registry", &top), Some("registries"));
        assert_eq!(nearest("rolback", &top), Some("rollback"));
        assert_eq!(nearest("histroy", &top), Some("history"));
        assert_eq!(nearest("colour", &top), None);
        assert_eq!(nearest("", &top), None);
        assert_eq!(nearest("ünïcode", &top), None);
    }
}
