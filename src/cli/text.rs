//! Making untrusted text safe to print: terminals and CI logs (no control characters, no
//! line a value can start), markdown and HTML (nothing escapes its table cell, code span or
//! fence, no mention, link or image).

use std::borrow::Cow;

/// A character that must not reach a terminal or a log as itself: C0 and C1 controls (ESC,
/// CR, newline, ...), DEL, and the bidirectional overrides that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
}

/// A value on one line of text output: every unsafe character shown as an escape
/// (`\n`, `\x1b`, `\u{202e}`), so a value can neither color the terminal nor start a line.
pub fn clean(s: &str) -> Cow<'_, str> {
    // A runner's legacy command marker anywhere in a line (`##[error]`, `##vso[`) is broken up.
    if s.contains("##") && (s.contains("##[") || s.contains("##vso[")) {
        let broken = s.replace("##[", "# #[").replace("##vso[", "# #vso[");
        return Cow::Owned(clean(&broken).into_owned());
    }
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x100 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Multi-line text (a diff, an error): each line cleaned, the line breaks kept.
pub fn clean_lines(s: &str) -> String {
    s.split('\n')
        .map(|l| clean(l.strip_suffix('\r').unwrap_or(l)).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line a CI runner would take as a command is shown so that none does: GitHub's runner
/// trims leading whitespace before it looks for `::` (so an indent is not enough: the line gets
/// a `> ` in front), and its legacy parser, like Azure's `##vso[`, finds `##[` anywhere in a
/// line (broken up as `# #[`).
pub fn defuse_line(line: &str) -> Cow<'_, str> {
    let t = line.trim_start();
    let line: Cow<'_, str> = if line.contains("##") {
        Cow::Owned(line.replace("##", "# #"))
    } else {
        Cow::Borrowed(line)
    };
    if t.starts_with("::") {
        Cow::Owned(format!("> {line}"))
    } else {
        line
    }
}

/// HTML text content: `& < > " '` escaped, unsafe characters shown as escapes.
pub fn html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markdown prose (a note, a warning) inside a list item or a table cell: markdown and HTML
/// punctuation escaped, `@` kept from mentioning anyone, `|` from ending the cell.
pub fn md_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in clean(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '|' | '~' | '!' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            // A word joiner after `@` keeps `@team` from notifying the team.
            '@' => out.push_str("@\u{2060}"),
            c => out.push(c),
        }
    }
    out
}

/// A code span in a markdown table cell: fenced with more backticks than the value holds,
/// `|` escaped (GFM splits cells before it parses code spans), one line.
pub fn md_code(s: &str) -> String {
    let v = clean(s).replace('|', "\\|");
    let longest = longest_run(&v, '`');
    let fence = "`".repeat(longest + 1);
    let pad = if v.starts_with('`') || v.ends_with('`') || v.starts_with(' ') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{v}{pad}{fence}")
}

/// The fence for a fenced code block around `content`: at least three backticks, more than
/// any run of backticks inside.
pub fn md_fence(content: &str) -> String {
    "`".repeat((longest_run(content, '`') + 1).max(3))
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_values_cannot_start_lines_or_color_terminals() {
        assert_eq!(clean("ok"), "ok");
        assert_eq!(
            clean("a\n::set-output name=x::1\x1b[31m\r\u{202e}"),
            "a\\n::set-output name=x::1\\x1b[31m\\r\\u{202e}"
        );
        assert_eq!(defuse_line("::error::x"), "> ::error::x");
        assert_eq!(defuse_line("   ::add-mask::x"), ">    ::add-mask::x");
        assert_eq!(defuse_line("a ##[error]b"), "a # #[error]b");
        assert_eq!(
            defuse_line("##vso[task.setvariable]x"),
            "# #vso[task.setvariable]x"
        );
        assert_eq!(defuse_line("plain line"), "plain line");
        assert_eq!(clean("sha256:ab ##[error]x"), "sha256:ab # #[error]x");
        assert_eq!(clean_lines("a\r\nb\x07"), "a\nb\\x07");
    }

    #[test]
    fn markdown_values_stay_in_their_cell() {
        let evil = "x`</details><img src=//e/p.png> @acme/team [a](//e) | ## Approved";
        let t = md_text(evil);
        assert!(
            !t.contains('<') && !t.contains("@a") && !t.contains(" | "),
            "{t}"
        );
        let c = md_code(evil);
        assert!(
            c.starts_with("``") && c.ends_with("``") && !c.contains(" | "),
            "{c}"
        );
        assert_eq!(md_code("plain"), "`plain`");
        assert_eq!(md_fence("a\n```\nb"), "````");
        assert_eq!(md_fence("none"), "```");
        assert_eq!(html("<code>&"), "&lt;code&gt;&amp;");
    }
}
