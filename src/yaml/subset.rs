//! A fast reader for the block-YAML subset bagboy's own emitter writes; `None` for anything else.
//!
//! A history written by bagboy is block mappings and sequences indented by spaces, plain words,
//! `true`/`false`, one-line double-quoted strings and one-line flow lists of those. This reader
//! accepts exactly that (full-line comments and blank lines too) and builds the same [`Node`]s,
//! positions included, as the full parser does, many times faster. At the first thing outside the
//! subset (an anchor, a single-quoted or multi-line scalar, a number, a tab, a duplicate key,
//! anything it is unsure of) it gives up and the caller parses the file with serde-saphyr, which
//! also reports every syntax error: the subset never decides that a file is invalid.

use super::{Loc, Node, Scalar, ScalarKind, Value};

/// Deeper nesting is left to the full parser, which enforces the depth budget.
const MAX_DEPTH: usize = 16;

/// The reason a file is left to the full parser; never shown to a user.
#[derive(Debug)]
pub struct OutOfSubset;

type R<T> = Result<T, OutOfSubset>;

/// Parse `text` whose root is a block mapping, handing each item of the block sequence under
/// `key` to `on_item` (see [`super::parse_streaming`]). `Err` when the text is outside the
/// subset; items handed out before that are to be forgotten.
pub fn parse_streaming(
    text: &str,
    key: &str,
    on_item: &mut dyn FnMut(Node),
) -> Result<Node, OutOfSubset> {
    check_characters(text)?;
    let mut p = Parser {
        lines: text.split('\n').enumerate(),
        current: None,
        stream_key: Some(key),
    };
    p.advance()?;
    let Some(first) = p.current else {
        return Err(OutOfSubset);
    };
    if first.indent != 0 || first.rest().starts_with('-') {
        return Err(OutOfSubset);
    }
    let root = p.map(0, None, 0, on_item)?;
    if p.current.is_some() {
        return Err(OutOfSubset);
    }
    Ok(root)
}

/// Characters the emitter always escapes; any of them, raw, is left to the full parser (some
/// are errors there, some are line breaks or a byte-order mark).
fn check_characters(text: &str) -> R<()> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' | 0x20..=0x7e => {}
            0..=0x1f | 0x7f => return Err(OutOfSubset),
            // C1 controls (NEL among them): U+0080..U+009F.
            0xc2 if (0x80..=0x9f).contains(&b.get(i + 1).copied().unwrap_or(0)) => {
                return Err(OutOfSubset)
            }
            // U+2028, U+2029.
            0xe2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xa8 | 0xa9)) => {
                return Err(OutOfSubset)
            }
            // U+FEFF, U+FFFE, U+FFFF.
            0xef if (b.get(i + 1) == Some(&0xbb) && b.get(i + 2) == Some(&0xbf))
                || (b.get(i + 1) == Some(&0xbf) && matches!(b.get(i + 2), Some(0xbe | 0xbf))) =>
            {
                return Err(OutOfSubset)
            }
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// One significant line: its number, indentation and text.
#[derive(Clone, Copy)]
struct Line<'t> {
    /// 1-based.
    number: u64,
    indent: usize,
    text: &'t str,
}

impl<'t> Line<'t> {
    fn rest(&self) -> &'t str {
        &self.text[self.indent..]
    }
}

struct Parser<'t, 'k> {
    lines: std::iter::Enumerate<std::str::Split<'t, char>>,
    current: Option<Line<'t>>,
    /// The root key whose sequence is streamed; taken once used.
    stream_key: Option<&'k str>,
}

impl<'t> Parser<'t, '_> {
    /// Move to the next line that is neither blank nor a comment.
    fn advance(&mut self) -> R<()> {
        self.current = None;
        for (i, text) in self.lines.by_ref() {
            let indent = text.bytes().take_while(|b| *b == b' ').count();
            let rest = &text[indent..];
            if rest.is_empty() || rest.starts_with('#') {
                continue;
            }
            if indent == 0
                && (rest.starts_with("---") || rest.starts_with("...") || rest.starts_with('%'))
            {
                return Err(OutOfSubset);
            }
            self.current = Some(Line {
                number: i as u64 + 1,
                indent,
                text,
            });
            return Ok(());
        }
        Ok(())
    }

    /// A block mapping whose keys sit at `indent`. `first` is a key already started on the
    /// current line (after `- `) at byte `first_at`.
    fn map(
        &mut self,
        indent: usize,
        first: Option<usize>,
        depth: usize,
        on_item: &mut dyn FnMut(Node),
    ) -> R<Node> {
        if depth > MAX_DEPTH {
            return Err(OutOfSubset);
        }
        let mut entries: Vec<(Node, Node)> = Vec::new();
        let mut loc = None;
        let mut at = first;
        while let Some(line) = self.current {
            let start = match at.take() {
                Some(s) => s,
                None if line.indent == indent => {
                    if line.rest().starts_with('-') {
                        return Err(OutOfSubset);
                    }
                    indent
                }
                None if line.indent < indent => break,
                None => return Err(OutOfSubset),
            };
            let (key, after) = key_at(line, start)?;
            loc.get_or_insert(key.loc);
            let key_text = key.as_scalar().map(|s| s.text.as_str()).unwrap_or("");
            if entries
                .iter()
                .any(|(k, _)| k.as_scalar().map(|s| s.text.as_str()) == Some(key_text))
            {
                return Err(OutOfSubset);
            }
            let streamed = depth == 0 && self.stream_key == Some(key_text);
            let value = match inline_value(line, after)? {
                // The full parser hands out a flow list's items too; rare enough to leave to it.
                Some(Node {
                    value: Value::Seq(items),
                    ..
                }) if streamed && !items.is_empty() => return Err(OutOfSubset),
                Some(v) => {
                    self.advance()?;
                    self.no_deeper(indent)?;
                    v
                }
                None => {
                    // The value is a block on the following lines, indented deeper.
                    self.advance()?;
                    let Some(next) = self.current else {
                        return Err(OutOfSubset);
                    };
                    if next.indent <= indent {
                        return Err(OutOfSubset);
                    }
                    if next.rest().starts_with('-') {
                        if streamed {
                            self.stream_key = None;
                            self.seq(next.indent, depth + 1, Some(on_item))?
                        } else {
                            self.seq(next.indent, depth + 1, None)?
                        }
                    } else {
                        self.map(next.indent, None, depth + 1, on_item)?
                    }
                }
            };
            entries.push((key, value));
        }
        Ok(Node {
            value: Value::Map(entries),
            loc: loc.ok_or(OutOfSubset)?,
        })
    }

    /// A block sequence whose `-` sit at `indent`; items go to `stream` when given.
    fn seq(
        &mut self,
        indent: usize,
        depth: usize,
        mut stream: Option<&mut dyn FnMut(Node)>,
    ) -> R<Node> {
        if depth > MAX_DEPTH {
            return Err(OutOfSubset);
        }
        let mut items = Vec::new();
        let mut loc = None;
        while let Some(line) = self.current {
            if line.indent < indent {
                break;
            }
            if line.indent > indent {
                return Err(OutOfSubset);
            }
            let rest = line.rest();
            if !rest.starts_with("- ") {
                return Err(OutOfSubset);
            }
            loc.get_or_insert(loc_at(line, indent));
            let content = indent + 2 + rest[2..].bytes().take_while(|b| *b == b' ').count();
            let item = if starts_key(&line.text[content..]) {
                let mut ignore = |_: Node| {};
                self.map(content, Some(content), depth + 1, &mut ignore)?
            } else {
                let v = inline_value(line, content)?.ok_or(OutOfSubset)?;
                self.advance()?;
                self.no_deeper(indent)?;
                v
            };
            match stream.as_mut() {
                Some(f) => f(item),
                None => items.push(item),
            }
        }
        Ok(Node {
            value: Value::Seq(items),
            loc: loc.ok_or(OutOfSubset)?,
        })
    }

    /// After a one-line value, the next line may not be indented deeper than its key (it would
    /// continue a multi-line scalar, or be an error).
    fn no_deeper(&self, indent: usize) -> R<()> {
        match self.current {
            Some(l) if l.indent > indent => Err(OutOfSubset),
            _ => Ok(()),
        }
    }
}

fn loc_at(line: Line<'_>, byte: usize) -> Loc {
    Loc {
        line: line.number,
        column: line.text[..byte].chars().count() as u64 + 1,
    }
}

/// Whether `s` starts with `key:` (a plain word or a double-quoted string, then a colon).
fn starts_key(s: &str) -> bool {
    if s.starts_with('"') {
        return match quoted_end(s) {
            Some(end) => s[end..].starts_with(':'),
            None => false,
        };
    }
    let n = word_len(s);
    n > 0 && s[n..].starts_with(':')
}

/// A key at byte `at` of `line`; returns it and the byte after its colon.
fn key_at(line: Line<'_>, at: usize) -> R<(Node, usize)> {
    let s = &line.text[at..];
    let loc = loc_at(line, at);
    let (text, len) = if s.starts_with('"') {
        let end = quoted_end(s).ok_or(OutOfSubset)?;
        (decode_quoted(&s[1..end - 1])?, end)
    } else {
        let n = word_len(s);
        let w = &s[..n];
        if n == 0 || !matches!(word_kind(w)?, ScalarKind::Str) {
            return Err(OutOfSubset);
        }
        (w.to_string(), n)
    };
    if !s[len..].starts_with(':') {
        return Err(OutOfSubset);
    }
    let key = Node {
        value: Value::Scalar(Scalar {
            kind: ScalarKind::Str,
            text,
        }),
        loc,
    };
    Ok((key, at + len + 1))
}

/// The value after a key's colon (at byte `at`): `None` when the line ends there (a block
/// follows), else a one-line scalar, flow list or `{}` filling the rest of the line.
fn inline_value(line: Line<'_>, at: usize) -> R<Option<Node>> {
    let s = &line.text[at..];
    let spaces = s.bytes().take_while(|b| *b == b' ').count();
    let s = &s[spaces..];
    if s.is_empty() {
        return Ok(None);
    }
    if spaces == 0 && at > 0 && line.text.as_bytes()[at - 1] == b':' {
        // `key:value` is one plain scalar in YAML, not a pair.
        return Err(OutOfSubset);
    }
    let start = at + spaces;
    let loc = loc_at(line, start);
    let (value, len) = if s.starts_with('[') {
        flow_list(line, start)?
    } else if s.starts_with("{}") {
        (Value::Map(Vec::new()), 2)
    } else {
        let (sc, len) = scalar(s)?;
        (Value::Scalar(sc), len)
    };
    if !s[len..].is_empty() {
        return Err(OutOfSubset);
    }
    Ok(Some(Node { value, loc }))
}

/// `[a, "b"]` at byte `at`: its value and length.
fn flow_list(line: Line<'_>, at: usize) -> R<(Value, usize)> {
    let s = &line.text[at..];
    let mut i = 1;
    let mut items = Vec::new();
    let skip = |i: &mut usize| {
        while s.as_bytes().get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    skip(&mut i);
    if s[i..].starts_with(']') {
        return Ok((Value::Seq(items), i + 1));
    }
    loop {
        let loc = loc_at(line, at + i);
        let (sc, len) = scalar(&s[i..])?;
        items.push(Node {
            value: Value::Scalar(sc),
            loc,
        });
        i += len;
        skip(&mut i);
        match s.as_bytes().get(i) {
            Some(b',') => {
                i += 1;
                skip(&mut i);
                if s[i..].starts_with(']') {
                    return Err(OutOfSubset);
                }
            }
            Some(b']') => return Ok((Value::Seq(items), i + 1)),
            _ => return Err(OutOfSubset),
        }
    }
}

/// A double-quoted string or a plain word at the start of `s`, and its length.
fn scalar(s: &str) -> R<(Scalar, usize)> {
    if s.starts_with('"') {
        let end = quoted_end(s).ok_or(OutOfSubset)?;
        let text = decode_quoted(&s[1..end - 1])?;
        return Ok((
            Scalar {
                kind: ScalarKind::Str,
                text,
            },
            end,
        ));
    }
    let n = word_len(s);
    if n == 0 {
        return Err(OutOfSubset);
    }
    let w = &s[..n];
    Ok((
        Scalar {
            kind: word_kind(w)?,
            text: w.to_string(),
        },
        n,
    ))
}

/// Length of a plain word `[A-Za-z][A-Za-z0-9_-]*` at the start of `s`.
fn word_len(s: &str) -> usize {
    let b = s.as_bytes();
    if !b.first().is_some_and(u8::is_ascii_alphabetic) {
        return 0;
    }
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-'))
        .count()
}

/// How YAML types a plain word: `true`/`false` are booleans, the words some reader takes for
/// a boolean, null or number are left to the full parser, the rest are strings.
fn word_kind(w: &str) -> R<ScalarKind> {
    match w {
        "true" | "false" => Ok(ScalarKind::Bool),
        _ => {
            let lower = w.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "nan" | "inf"
            ) {
                Err(OutOfSubset)
            } else {
                Ok(ScalarKind::Str)
            }
        }
    }
}

/// The byte after the closing quote of the double-quoted string `s` starts with.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The text of a double-quoted string's body; only the escapes the emitter writes.
fn decode_quoted(body: &str) -> R<String> {
    if !body.contains('\\') {
        return Ok(body.to_string());
    }
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next().ok_or(OutOfSubset)? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(OutOfSubset);
                }
                let n = u32::from_str_radix(&hex, 16).map_err(|_| OutOfSubset)?;
                out.push(char::from_u32(n).ok_or(OutOfSubset)?);
            }
            _ => return Err(OutOfSubset),
        }
    }
    Ok(out)
}
