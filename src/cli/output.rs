//! Writing to stdout: data only, colored when asked, and a table helper.

use std::io::Write;

/// stdout, with color decided once.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    color: bool,
}

impl Output {
    pub fn new(color: bool) -> Self {
        Output { color }
    }

    /// Print text as-is. A closed pipe (`| head`) is not an error worth a panic.
    pub fn raw(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    pub fn line(&self, text: &str) {
        self.raw(&format!("{text}\n"));
    }

    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }

    pub fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }

    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }

    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }

    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
}

/// Lay out rows in columns; widths count characters, not bytes (`↩`, `→`).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            line.push_str(c);
            if i + 1 < cells.len() {
                let pad = widths[i] - c.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for r in rows {
        push_row(r.iter().map(String::as_str).collect());
    }
    out
}

/// `sha256:0123456789ab…` — enough of a digest to recognise it.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((algo, hex)) if hex.len() > 12 => format!("{algo}:{}", &hex[..12]),
        _ => d.to_string(),
    }
}

pub fn short_commit(c: &str) -> String {
    c.chars().take(10).collect()
}

/// `2d 4h`, `3h 12m`, `45s`.
pub fn human_duration(secs: i64) -> String {
    let neg = secs < 0;
    let s = secs.unsigned_abs();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let text = if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    };
    if neg {
        format!("-{text}")
    } else {
        text
    }
}
