//! Reading and editing formula/cask Ruby source as text: names, versions and `version_scheme`.

use std::cmp::Ordering;

/// Why a formula or cask name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub name: String,
    pub reason: &'static str,
}

/// Accept only names Homebrew itself could produce, because the name becomes a path in the tap.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    let refuse = |reason| {
        Err(NameError {
            name: name.to_owned(),
            reason,
        })
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return refuse("is empty"),
        Some(c) if !c.is_ascii_alphanumeric() => {
            return refuse("must start with an ASCII letter or digit")
        }
        Some(_) => {}
    }
    if name.contains('/') || name.contains('\\') {
        return refuse("must not contain a path separator");
    }
    if name.contains("..") {
        return refuse("must not contain `..`");
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || "@._+-".contains(c)) {
        return refuse("may only contain ASCII letters, digits and `@._+-`");
    }
    Ok(())
}

/// Leading `v`/`V` is a tag convention, not part of the version.
pub fn normalize_version(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix(['v', 'V']).unwrap_or(v)
}

pub fn same_version(a: &str, b: &str) -> bool {
    normalize_version(a) == normalize_version(b)
}

/// Whether `target` is strictly older than `current` in Homebrew's order (numbers compared
/// numerically, `3.10 > 3.9`, `2024.04.05 < 2024.10.01`, pre-releases below releases); when
/// either side is not a version bagboy can order, any difference counts as older so a
/// rollback still downgrades users.
pub fn is_older(target: &str, current: &str) -> bool {
    let (t, c) = (normalize_version(target), normalize_version(current));
    match (
        crate::history::Version::parse(t),
        crate::history::Version::parse(c),
    ) {
        (Ok(t), Ok(c)) => t.cmp(&c) == Ordering::Less,
        _ => t != c,
    }
}

/// The version a formula or cask declares, as Homebrew derives it (see
/// [`super::ruby::Source::version`]); `None` when the file is not Ruby bagboy can read.
pub fn declared_version(content: &str) -> Option<String> {
    super::ruby::Source::parse(content).ok()?.version()
}

/// Whether a declared version is the release `wanted`: equal (leading `v` ignored), or a
/// cask's `X,Y` / `X_Y` whose first part is `wanted`.
pub fn version_matches(declared: &str, wanted: &str) -> bool {
    same_version(declared, wanted)
        || declared
            .split([',', '_'])
            .next()
            .is_some_and(|first| first != declared && same_version(first, wanted))
}

/// Homebrew-style inference: the archive name first (`myapp-1.2.0.tar.gz`,
/// `myapp_1.2.0_darwin_arm64.tar.gz`), then a path segment that is a tag (`…/v1.2.0/…`).
pub fn version_from_url(url: &str) -> Option<String> {
    if url.contains("#{") {
        return None;
    }
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let file = segments.last()?;
    if let Some(v) = version_in_name(strip_archive_ext(file)) {
        return Some(v);
    }
    if let Some(v) = segments
        .iter()
        .rev()
        .skip(1)
        .find_map(|s| whole_segment_version(s))
    {
        return Some(v);
    }
    // Mirrors that name the file in the query: `closer.lua?path=ant/apache-ant-1.10.13.tar.xz`.
    if let Some(query) = url.split_once('?').map(|(_, q)| q) {
        if let Some(v) = query
            .split('&')
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
            .find_map(|v| version_from_url(&format!("q/{v}")))
        {
            return Some(v);
        }
    }
    // A single-number release at the end of the name: `adwaita-icon-theme-43.tar.xz`.
    let stem = strip_archive_ext(file);
    let (head, num) = stem.rsplit_once('-')?;
    let num = num.strip_prefix(['v', 'V']).unwrap_or(num);
    (!head.is_empty() && !num.is_empty() && num.chars().all(|c| c.is_ascii_digit()))
        .then(|| num.to_string())
}

fn strip_archive_ext(file: &str) -> &str {
    const EXTS: [&str; 12] = [
        ".tar.gz", ".tar.xz", ".tar.bz2", ".tar.zst", ".tgz", ".txz", ".tbz", ".zip", ".dmg",
        ".pkg", ".gz", ".tar",
    ];
    EXTS.iter()
        .find_map(|e| file.strip_suffix(e))
        .unwrap_or(file)
}

/// `v1.2.0` or `1.2.0-rc.1`: the whole segment is a version.
fn whole_segment_version(s: &str) -> Option<String> {
    let v = normalize_version(s);
    let (core, len) = dotted_numbers(v)?;
    let rest = &v[len..];
    let ok_rest = rest.is_empty()
        || (rest.starts_with(['-', '+'])
            && rest[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-'));
    ok_rest.then(|| format!("{core}{rest}"))
}

/// The first dotted number run (`1.2.0`) that starts a `-`/`_`/`v` separated token.
fn version_in_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    for i in 0..bytes.len() {
        let at_boundary =
            i == 0 || matches!(bytes[i - 1], b'-' | b'_' | b'.') || is_v_boundary(bytes, i);
        if !at_boundary || !bytes[i].is_ascii_digit() {
            continue;
        }
        if let Some((core, len)) = dotted_numbers(&name[i..]) {
            let rest = &name[i + len..];
            // Keep a pre-release like `-rc.1`, but not the `_darwin` platform suffix.
            let pre = rest
                .strip_prefix('-')
                .filter(|r| {
                    r.split(['-', '_', '.'])
                        .next()
                        .is_some_and(|w| matches!(w, "rc" | "alpha" | "beta" | "pre" | "dev"))
                })
                .map(|r| {
                    let end = r.find('_').unwrap_or(r.len());
                    format!("-{}", &r[..end])
                });
            return Some(format!("{core}{}", pre.unwrap_or_default()));
        }
    }
    None
}

fn is_v_boundary(bytes: &[u8], i: usize) -> bool {
    i >= 1
        && matches!(bytes[i - 1], b'v' | b'V')
        && (i == 1 || matches!(bytes[i - 2], b'-' | b'_' | b'.'))
}

/// At least two dot-separated number groups at the start of `s`: (text, byte length).
fn dotted_numbers(s: &str) -> Option<(String, usize)> {
    let mut len = 0;
    let mut groups = 0;
    let bytes = s.as_bytes();
    loop {
        let start = len;
        while len < bytes.len() && bytes[len].is_ascii_digit() {
            len += 1;
        }
        if len == start {
            // A trailing dot is not part of the version.
            if groups > 0 {
                len -= 1;
            }
            break;
        }
        groups += 1;
        if len < bytes.len() && bytes[len] == b'.' {
            len += 1;
        } else {
            break;
        }
    }
    (groups >= 2).then(|| (s[..len].to_owned(), len))
}

/// Top-level `version_scheme N`.
pub fn version_scheme(content: &str) -> Option<u32> {
    super::ruby::Source::parse(content).ok()?.version_scheme()
}

/// The content with its top-level `version_scheme` line removed, to compare two files
/// "apart from the scheme" (unparsable content is returned as is).
pub fn without_version_scheme(content: &str) -> String {
    match super::ruby::Source::parse(content) {
        Ok(src) => src.without_version_scheme(),
        Err(_) => content.to_string(),
    }
}

/// Set the top-level `version_scheme` to `n` where Homebrew's component order wants it,
/// keeping every other byte; the result is checked to parse.
pub fn with_version_scheme(content: &str, n: u32) -> Result<String, super::ruby::RubyError> {
    super::ruby::Source::parse(content)?.with_version_scheme(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GORELEASER: &str = r#"# typed: false
class Myapp < Formula
  desc "My app"
  homepage "https://example.com"
  version "1.2.0"
  license "MIT"

  on_macos do
    if Hardware::CPU.intel?
      url "https://github.com/acme/myapp/releases/download/v1.2.0/myapp_1.2.0_darwin_amd64.tar.gz"
      sha256 "aa"
    end
  end

  def install
    bin.install "myapp"
  end
end
"#;

    #[test]
    fn names() {
        for ok in ["myapp", "node@20", "c++-lib", "a.b_c", "0ad"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..", "a..b", "-x", ".x", "a b", "a\\b", "a;b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cask_versions_match_their_first_part() {
        assert!(version_matches("4.70.0,224270", "4.70.0"));
        assert!(version_matches("1.2.3_4", "v1.2.3"));
        assert!(version_matches("1.2.3", "1.2.3"));
        assert!(!version_matches("4.70.1,224270", "4.70.0"));
    }

    #[test]
    fn versions() {
        assert_eq!(declared_version(GORELEASER).as_deref(), Some("1.2.0"));
        let no_version = "class A < Formula\n  url \"https://x.org/dl/myapp-1.2.0.tar.gz\"\nend\n";
        assert_eq!(declared_version(no_version).as_deref(), Some("1.2.0"));
        assert_eq!(
            version_from_url("https://github.com/a/b/releases/download/v1.2.0/b_darwin_arm64.tgz")
                .as_deref(),
            Some("1.2.0")
        );
        assert_eq!(
            version_from_url("https://x/b_1.3.0-rc.1_linux_amd64.tar.gz").as_deref(),
            Some("1.3.0-rc.1")
        );
        assert_eq!(
            version_from_url("https://x/v2.0.0/tool").as_deref(),
            Some("2.0.0")
        );
        assert_eq!(
            version_from_url("https://www.apache.org/dyn/closer.lua?path=ant/binaries/apache-ant-1.10.13-bin.tar.xz").as_deref(),
            Some("1.10.13")
        );
        assert_eq!(
            version_from_url(
                "https://download.gnome.org/sources/x/43/adwaita-icon-theme-43.tar.xz"
            )
            .as_deref(),
            Some("43")
        );
        assert_eq!(version_from_url("https://e/tool_linux_x86_64"), None);
        assert!(is_older("v1.1.0", "1.2.0"));
        assert!(!is_older("1.2.0", "v1.2.0"));
        assert!(!is_older("1.3.0", "1.2.0"));
        assert!(is_older("2024.1", "2024.2"));
    }

    #[test]
    fn scheme_inserted_after_license_before_on_blocks() {
        let out = with_version_scheme(GORELEASER, 1).unwrap();
        assert!(out.contains("  license \"MIT\"\n  version_scheme 1\n\n  on_macos do"));
        assert_eq!(version_scheme(&out), Some(1));
        let again = with_version_scheme(&out, 3).unwrap();
        assert_eq!(version_scheme(&again), Some(3));
        assert_eq!(again.matches("version_scheme").count(), 1);
        assert_eq!(without_version_scheme(&again), GORELEASER);
    }

    #[test]
    fn scheme_skips_nested_and_continuations() {
        let src = "class A < Formula\n  url \"https://x/a-1.0.tar.gz\",\n      using: :homebrew_curl\n  sha256 \"x\"\n  head \"https://x.git\"\n  on_linux do\n    version_scheme 9\n  end\nend\n";
        assert_eq!(version_scheme(src), None);
        let out = with_version_scheme(src, 2).unwrap();
        assert!(out.contains("  sha256 \"x\"\n  version_scheme 2\n  head"));
    }
}
