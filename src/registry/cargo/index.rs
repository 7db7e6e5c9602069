//! The sparse index as cargo reads it (<https://doc.rust-lang.org/cargo/reference/registry-index.html>):
//! `config.json` at its root, one file per crate at a path made from the lower-cased name, one
//! JSON object per published version and line. Only the fields bagboy needs are read; every
//! other field, and every line that is not an object, is someone else's business.

use serde::Deserialize;

/// What `config.json` says bagboy needs.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct IndexConfig {
    #[serde(default)]
    pub api: Option<String>,
    #[serde(default, rename = "auth-required")]
    pub auth_required: bool,
}

/// One published version of a crate.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    pub version: semver::Version,
    /// The raw `vers` (what the API's URLs take).
    pub vers: String,
    pub cksum: Option<String>,
    pub yanked: bool,
}

#[derive(Deserialize)]
struct Line {
    name: String,
    vers: String,
    #[serde(default)]
    cksum: Option<String>,
    #[serde(default)]
    yanked: Option<bool>,
}

/// Whether `n` is a crate name crates.io and cargo accept: ASCII letters, digits, `-` and
/// `_`, starting with a letter, at most 64 characters.
pub fn valid_name(n: &str) -> bool {
    n.len() <= 64
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The crate's file under the index root: `1/a`, `2/ab`, `3/a/abc`, `se/rd/serde`.
pub fn path(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    match n.len() {
        1 => format!("1/{n}"),
        2 => format!("2/{n}"),
        3 => format!("3/{}/{n}", &n[..1]),
        _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
    }
}

/// The versions a crate's index file lists, or the line that is not one (1-based, and why).
pub fn parse(name: &str, body: &[u8]) -> Result<Vec<Published>, (usize, String)> {
    let text = std::str::from_utf8(body).map_err(|_| (0, "the file is not UTF-8".to_string()))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| (i + 1, e.to_string()))?;
        if !line.name.eq_ignore_ascii_case(name) {
            return Err((i + 1, format!("names crate `{}`", line.name)));
        }
        let version = semver::Version::parse(&line.vers)
            .map_err(|e| (i + 1, format!("`{}` is not a version: {e}", line.vers)))?;
        out.push(Published {
            version,
            vers: line.vers,
            cksum: line.cksum,
            yanked: line.yanked.unwrap_or(false),
        });
    }
    Ok(out)
}

/// The version cargo picks for a fresh resolution of `req` (the highest that is not yanked).
pub fn resolves<'a>(
    versions: impl IntoIterator<Item = (&'a semver::Version, bool)>,
    req: &semver::VersionReq,
) -> Option<&'a semver::Version> {
    versions
        .into_iter()
        .filter(|(v, yanked)| !yanked && req.matches(v))
        .map(|(v, _)| v)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_as_cargo_lays_them_out() {
        assert_eq!(path("a"), "1/a");
        assert_eq!(path("ab"), "2/ab");
        assert_eq!(path("abc"), "3/a/abc");
        assert_eq!(path("Serde"), "se/rd/serde");
        assert_eq!(path("cargo-dist"), "ca/rg/cargo-dist");
    }

    #[test]
    fn names() {
        assert!(valid_name("serde_json"));
        assert!(valid_name("a-b"));
        assert!(!valid_name("1abc"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(65)));
    }

    #[test]
    fn reads_lines_and_refuses_what_is_not_one() {
        let body = br#"{"name":"foo","vers":"1.0.0","deps":[],"cksum":"aa","features":{},"yanked":false}
{"name":"foo","vers":"1.1.0","deps":[],"cksum":"bb","features":{},"yanked":true,"v":2,"features2":{}}
"#;
        let got = parse("foo", body).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[1].yanked);
        assert_eq!(got[1].cksum.as_deref(), Some("bb"));
        assert_eq!(
            parse("foo", b"{\"name\":\"bar\",\"vers\":\"1.0.0\"}")
                .unwrap_err()
                .0,
            1
        );
        assert_eq!(parse("foo", b"\n\nnot json").unwrap_err().0, 3);
        assert!(parse("foo", b"{\"name\":\"foo\",\"vers\":\"one\"}").is_err());
        assert!(parse("foo", &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn fresh_resolution_is_the_highest_unyanked_match() {
        let v = |s: &str| semver::Version::parse(s).unwrap();
        let vs = [
            (v("1.0.0"), false),
            (v("1.1.0"), false),
            (v("1.2.0"), true),
            (v("1.3.0-beta.1"), false),
            (v("2.0.0"), false),
        ];
        let req = semver::VersionReq::parse("^1.0.0").unwrap();
        assert_eq!(
            resolves(vs.iter().map(|(a, b)| (a, *b)), &req),
            Some(&v("1.1.0"))
        );
    }
}
