//! Surgical edits of block-style YAML by line ranges (a chart index, a kustomization, a values
//! file): find a key, a sequence item or a scalar's bytes, and change only those, so every
//! other byte (comments, key order, quoting, `generated:`) stays as it was.

/// One line of a text: its byte range without the line break.
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    pub start: usize,
    /// End of the line's text; the line break (if any) follows.
    pub end: usize,
    pub text: &'a str,
}

pub fn lines(s: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for piece in s.split_inclusive('\n') {
        let text = piece.strip_suffix('\n').unwrap_or(piece);
        let text = text.strip_suffix('\r').unwrap_or(text);
        out.push(Line {
            start,
            end: start + text.len(),
            text,
        });
        start += piece.len();
    }
    out
}

pub fn indent(t: &str) -> usize {
    t.len() - t.trim_start_matches(' ').len()
}

/// Not blank and not a comment.
pub fn is_content(t: &str) -> bool {
    let s = t.trim();
    !s.is_empty() && !s.starts_with('#')
}

fn is_item(t: &str) -> bool {
    let s = t.trim_start_matches(' ');
    s == "-" || s.starts_with("- ")
}

/// `key: rest` after the indent (and a leading `- ` of a sequence item): the key, unquoted,
/// and the byte offset in `t` where the value starts.
pub fn split_key(t: &str) -> Option<(String, usize)> {
    let mut off = indent(t);
    let mut rest = &t[off..];
    if let Some(r) = rest.strip_prefix("- ") {
        let spaces = r.len() - r.trim_start_matches(' ').len();
        off += 2 + spaces;
        rest = &t[off..];
    }
    let (key, after) = if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let close = rest[1..].find(q)? + 1;
        (rest[1..close].to_owned(), close + 1)
    } else {
        let colon = rest
            .find(": ")
            .or_else(|| rest.strip_suffix(':').map(|k| k.len()))?;
        let key = &rest[..colon];
        if key.is_empty() || key.contains(" #") {
            return None;
        }
        (key.trim_end().to_owned(), colon)
    };
    let tail = &rest[after..];
    if !(tail.starts_with(": ") || tail == ":" || tail.starts_with(":\t")) {
        return None;
    }
    Some((key, off + after + 1))
}

/// The scalar at `from` in `t`: its byte span, without surrounding spaces or a comment.
pub fn value_span(t: &str, from: usize) -> (usize, usize) {
    let rest = t.get(from..).unwrap_or("");
    let lead = rest.len() - rest.trim_start().len();
    let start = from + lead;
    let body = &t[start..];
    let mut end = body.len();
    let mut quote: Option<char> = None;
    let mut prev_space = true;
    for (i, c) in body.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') if i == 0 => quote = Some(c),
            (None, '#') if prev_space => {
                end = i;
                break;
            }
            _ => {}
        }
        prev_space = c == ' ' || c == '\t';
    }
    let token = body[..end].trim_end();
    (start, start + token.len())
}

/// A scalar token's text: quotes removed (`''` in single quotes is `'`).
pub fn unquote(tok: &str) -> String {
    let t = tok.trim();
    if t.len() >= 2 && t.starts_with('"') && t.ends_with('"') {
        t[1..t.len() - 1].replace("\\\"", "\"")
    } else if t.len() >= 2 && t.starts_with('\'') && t.ends_with('\'') {
        t[1..t.len() - 1].replace("''", "'")
    } else {
        t.to_owned()
    }
}

/// The lines that belong to the key at `idx`: `[start, end)`, trailing comments and blank
/// lines left to what follows. A sequence may sit at the key's own indent.
pub fn block_after(ls: &[Line<'_>], idx: usize) -> (usize, usize) {
    let Some(key) = ls.get(idx) else {
        return (idx, idx);
    };
    let i = indent(key.text);
    let mut end = ls.len();
    for (k, l) in ls.iter().enumerate().skip(idx + 1) {
        if is_content(l.text) {
            let n = indent(l.text);
            if n < i || (n == i && !is_item(l.text)) {
                end = k;
                break;
            }
        }
    }
    while end > idx + 1 && !is_content(ls[end - 1].text) {
        end -= 1;
    }
    (idx + 1, end)
}

/// The mapping key `key` among the lines `[start, end)`, at the indent of their first content
/// line (`Some(0)` to require the top level).
pub fn map_key(
    ls: &[Line<'_>],
    start: usize,
    end: usize,
    key: &str,
    at: Option<usize>,
) -> Option<usize> {
    let lines = ls.get(start..end)?;
    let level = at.or_else(|| {
        lines
            .iter()
            .find(|l| is_content(l.text))
            .map(|l| indent(l.text))
    })?;
    lines
        .iter()
        .position(|l| {
            is_content(l.text)
                && indent(l.text) == level
                && !is_item(l.text)
                && split_key(l.text).is_some_and(|(k, _)| k == key)
        })
        .map(|p| p + start)
}

/// The items of the block sequence in `[start, end)`, each `[first, last+1)`.
pub fn seq_items(ls: &[Line<'_>], start: usize, end: usize) -> Vec<(usize, usize)> {
    let Some(first) = (start..end).find(|&k| is_content(ls[k].text)) else {
        return Vec::new();
    };
    if !is_item(ls[first].text) {
        return Vec::new();
    }
    let j = indent(ls[first].text);
    let starts: Vec<usize> = (first..end)
        .filter(|&k| is_item(ls[k].text) && indent(ls[k].text) == j)
        .collect();
    let mut items = Vec::new();
    for (n, &s) in starts.iter().enumerate() {
        let mut e = starts.get(n + 1).copied().unwrap_or(end);
        while e > s + 1 && !is_content(ls[e - 1].text) {
            e -= 1;
        }
        items.push((s, e));
    }
    items
}

/// `key` of the mapping that is the sequence item `[s, e)`: its line and value span.
pub fn item_key(
    ls: &[Line<'_>],
    item: (usize, usize),
    key: &str,
) -> Option<(usize, (usize, usize))> {
    let (s, e) = item;
    let first = ls.get(s)?;
    let (k0, v0) = split_key(first.text)?;
    // The item's keys sit where its first key starts.
    let content = indent(first.text) + 2 + {
        let r = first.text.trim_start_matches(' ').get(2..).unwrap_or("");
        r.len() - r.trim_start_matches(' ').len()
    };
    if k0 == key {
        return Some((s, value_span(first.text, v0)));
    }
    (s + 1..e).find_map(|k| {
        let t = ls[k].text;
        if !is_content(t) || indent(t) != content || is_item(t) {
            return None;
        }
        let (kk, v) = split_key(t)?;
        (kk == key).then(|| (k, value_span(t, v)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values() {
        assert_eq!(
            split_key("  tag: \"1.2.0\" # pinned"),
            Some(("tag".into(), 6))
        );
        let t = "  tag: \"1.2.0\" # pinned";
        let (a, b) = value_span(t, 6);
        assert_eq!(&t[a..b], "\"1.2.0\"");
        assert_eq!(unquote(&t[a..b]), "1.2.0");
        assert_eq!(split_key("- name: x").map(|k| k.0), Some("name".into()));
        assert_eq!(split_key("plain"), None);
        let t = "x: a#b";
        let (a, b) = value_span(t, 2);
        assert_eq!(&t[a..b], "a#b");
    }

    #[test]
    fn sequences_at_key_indent() {
        let s = "entries:\n  a:\n  - version: 2\n    name: a\n  - version: 1\n  b:\n  - version: 9\ngenerated: x\n";
        let ls = lines(s);
        let e = map_key(&ls, 0, ls.len(), "entries", Some(0)).unwrap_or(99);
        let (cs, ce) = block_after(&ls, e);
        let a = map_key(&ls, cs, ce, "a", None).unwrap_or(99);
        let (is, ie) = block_after(&ls, a);
        let items = seq_items(&ls, is, ie);
        assert_eq!(items, vec![(2, 4), (4, 5)]);
        let v = item_key(&ls, items[0], "name").map(|(l, _)| l);
        assert_eq!(v, Some(3));
    }

    #[test]
    fn odd_bytes_never_panic() {
        for s in [
            "- ",
            ":",
            "\"",
            "- \"a",
            "a: \"",
            "é: ü # x",
            "-\n-\n",
            "k:\n - \n",
        ] {
            let ls = lines(s);
            for (i, l) in ls.iter().enumerate() {
                let _ = split_key(l.text).map(|(_, v)| value_span(l.text, v));
                let (a, b) = block_after(&ls, i);
                let _ = seq_items(&ls, a, b);
                let _ = map_key(&ls, a, b, "k", None);
            }
        }
    }
}
