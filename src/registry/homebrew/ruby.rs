//! Formulas and casks read with a real Ruby parser (lib-ruby-parser): the class or cask body's
//! top-level stanzas, the version Homebrew derives, and `version_scheme` edits that keep every
//! other byte and are checked to parse before anything is pushed.

use lib_ruby_parser::{Node, Parser, ParserOptions};

/// Why a file is not Ruby bagboy can work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RubyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for RubyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

/// Formula or cask, by the shape of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// `class X < Formula` (or any superclass: `AbstractPhpExtension`, ...).
    Formula,
    /// `cask "x" do ... end`.
    Cask,
}

/// One top-level statement of the body: `url "…"`, `livecheck do … end`, `def install`.
#[derive(Debug, Clone)]
pub struct Stanza {
    /// The method called (`url`, `license`, `disable!`), `def` for method definitions,
    /// empty for anything else.
    pub name: String,
    /// Byte range of the whole statement (a multi-line `license any_of: [...]` included).
    pub start: usize,
    pub end: usize,
    node: Node,
}

/// A parsed formula or cask.
pub struct Source<'a> {
    pub text: &'a str,
    pub shape: Shape,
    pub stanzas: Vec<Stanza>,
    /// Where the body starts (after the `class …` / `cask … do` line) when it has no stanza.
    body_start: usize,
}

fn parse_node(text: &str) -> Result<Node, RubyError> {
    let result = Parser::new(
        text.as_bytes().to_vec(),
        ParserOptions {
            buffer_name: "formula.rb".into(),
            ..Default::default()
        },
    )
    .do_parse();
    if let Some(d) = result.diagnostics.iter().find(|d| d.is_error()) {
        let (line, column) = line_col(text, d.loc.begin);
        return Err(RubyError {
            line,
            column,
            message: d.render_message(),
        });
    }
    result.ast.map(|b| *b).ok_or(RubyError {
        line: 1,
        column: 1,
        message: "the file holds no Ruby code".into(),
    })
}

/// Whether `text` parses as Ruby (checked before a restored file is pushed).
pub fn check(text: &str) -> Result<(), RubyError> {
    parse_node(text).map(|_| ())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() + 1;
    (line, col)
}

/// The top-level node that defines the formula or cask (other top-level code — `require`,
/// constants, helper modules — is skipped).
fn definition(root: &Node) -> Option<(Shape, Option<&Node>, usize)> {
    let candidates: Vec<&Node> = match root {
        Node::Begin(b) => b.statements.iter().collect(),
        n => vec![n],
    };
    for n in candidates {
        match n {
            Node::Class(c) if c.superclass.is_some() => {
                let header_end = c
                    .superclass
                    .as_ref()
                    .map_or(c.keyword_l.end, |s| s.expression().end);
                return Some((Shape::Formula, c.body.as_deref(), header_end));
            }
            Node::Block(b) if call_name(&b.call) == Some("cask") => {
                return Some((Shape::Cask, b.body.as_deref(), b.begin_l.end));
            }
            _ => {}
        }
    }
    None
}

fn call_name(n: &Node) -> Option<&str> {
    match n {
        Node::Send(s) if s.recv.is_none() => Some(&s.method_name),
        _ => None,
    }
}

fn stanza_name(n: &Node) -> String {
    match n {
        Node::Send(s) if s.recv.is_none() => s.method_name.clone(),
        Node::Block(b) => call_name(&b.call).unwrap_or_default().to_string(),
        Node::Def(_) => "def".into(),
        _ => String::new(),
    }
}

impl<'a> Source<'a> {
    pub fn parse(text: &'a str) -> Result<Source<'a>, RubyError> {
        let root = parse_node(text)?;
        let (shape, body, header_end) = definition(&root).ok_or(RubyError {
            line: 1,
            column: 1,
            message: "neither `class … < Formula` nor `cask \"…\" do` was found".into(),
        })?;
        let statements: Vec<Node> = match body {
            Some(Node::Begin(b)) => b.statements.clone(),
            Some(n) => vec![n.clone()],
            None => Vec::new(),
        };
        let stanzas = statements
            .into_iter()
            .map(|n| Stanza {
                name: stanza_name(&n),
                start: n.expression().begin,
                end: n.expression().end,
                node: n,
            })
            .collect();
        let body_start = text[header_end..]
            .find('\n')
            .map_or(text.len(), |i| header_end + i + 1);
        Ok(Source {
            text,
            shape,
            stanzas,
            body_start,
        })
    }

    pub fn stanza(&self, name: &str) -> Option<&Stanza> {
        self.stanzas.iter().find(|s| s.name == name)
    }

    fn first_arg(&self, name: &str) -> Option<&Node> {
        match &self.stanza(name)?.node {
            Node::Send(s) => s.args.first(),
            _ => None,
        }
    }

    /// Top-level `version_scheme N`.
    pub fn version_scheme(&self) -> Option<u32> {
        match self.first_arg("version_scheme")? {
            Node::Int(i) => i.value.replace('_', "").parse().ok(),
            _ => None,
        }
    }

    /// The version Homebrew derives: `version "…"`, else the top-level `url`'s `tag:`, else
    /// the top-level url, else any `url` in the body (GoReleaser's per-platform blocks).
    /// Casks' `version :latest` is `latest`.
    pub fn version(&self) -> Option<String> {
        match self.first_arg("version") {
            Some(Node::Str(s)) => return s.value.as_str_lossy().ok().map(str::to_string),
            Some(Node::Sym(s)) => return s.name.as_str_lossy().ok().map(str::to_string),
            _ => {}
        }
        if let Some(Node::Send(url)) = self.stanza("url").map(|s| &s.node) {
            if let Some(tag) = kwarg_str(&url.args, "tag") {
                let v = super::formula::normalize_version(&tag);
                if v.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                    // A tag like `release-1.2` or `1.2.0` names the version.
                    return Some(v.to_string());
                }
                if let Some(v) = super::formula::version_from_url(&format!("x/{tag}.tar.gz")) {
                    return Some(v);
                }
            }
            if let Some(Node::Str(s)) = url.args.first() {
                if let Some(v) = s
                    .value
                    .as_str_lossy()
                    .ok()
                    .and_then(super::formula::version_from_url)
                {
                    return Some(v);
                }
            }
        }
        let mut urls = Vec::new();
        for s in &self.stanzas {
            collect_urls(&s.node, &mut urls);
        }
        urls.iter()
            .find_map(|u| super::formula::version_from_url(u))
    }

    /// Every `url "…"` with the `sha256 "…"` beside it in the same block (the formula's own,
    /// per-platform blocks, resources, patches); `head` and `bottle` blocks are not downloads
    /// to verify. A url whose block has no plain `sha256` comes with `None`.
    pub fn downloads(&self) -> Vec<(String, Option<String>)> {
        let mut out = Vec::new();
        let top: Vec<&Node> = self.stanzas.iter().map(|s| &s.node).collect();
        collect_downloads(&top, &mut out);
        out
    }

    /// `disable!` / `deprecate!` with their arguments as written, for the plan.
    pub fn retired(&self) -> Option<String> {
        self.stanzas
            .iter()
            .find(|s| s.name == "disable!" || s.name == "deprecate!")
            .map(|s| {
                self.text[s.start..s.end]
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
    }

    /// A cask `brew upgrade` skips without `--greedy`: `auto_updates true` or `version :latest`.
    pub fn needs_greedy(&self) -> Option<&'static str> {
        if self.shape != Shape::Cask {
            return None;
        }
        if matches!(self.first_arg("auto_updates"), Some(Node::True(_))) {
            return Some("auto_updates true");
        }
        if matches!(self.first_arg("version"), Some(Node::Sym(_))) {
            return Some("version :latest");
        }
        None
    }

    /// The text with `version_scheme` set to `n`: the existing number replaced, or a line
    /// inserted where Homebrew's component order puts it — after the last of `include`,
    /// `desc`, `homepage`, `url`, `mirror`, `version`, `sha256`, `license`, `revision` that
    /// opens the body, before anything else. Every other byte is kept; the result must parse.
    pub fn with_version_scheme(&self, n: u32) -> Result<String, RubyError> {
        let text = self.text;
        let out = if let Some(Node::Int(i)) = self.first_arg("version_scheme") {
            let r = &i.expression_l;
            format!("{}{n}{}", &text[..r.begin], &text[r.end..])
        } else {
            // The components that come after `version_scheme` start at the first of them;
            // the scheme goes after the last earlier component before that point (other
            // statements, such as a `require`, are left where they are).
            let first_after = self
                .stanzas
                .iter()
                .position(|s| is_after_scheme(&s.name))
                .unwrap_or(self.stanzas.len());
            let last_before = self.stanzas[..first_after]
                .iter()
                .rev()
                .find(|s| BEFORE_SCHEME.contains(&s.name.as_str()));
            let (at, indent) = match (last_before, self.stanzas.get(first_after)) {
                (Some(last), _) => {
                    // After the statement's line (a trailing comment stays with it).
                    let eol = text[last.end..]
                        .find('\n')
                        .map_or(text.len(), |i| last.end + i);
                    (eol, indent_at(text, last.start))
                }
                (None, Some(first)) => {
                    let line_start = text[..first.start].rfind('\n').map_or(0, |i| i + 1);
                    (line_start.saturating_sub(1), indent_at(text, first.start))
                }
                (None, None) => match self.stanzas.last() {
                    Some(last) => {
                        let eol = text[last.end..]
                            .find('\n')
                            .map_or(text.len(), |i| last.end + i);
                        (eol, indent_at(text, last.start))
                    }
                    None => (self.body_start.saturating_sub(1), "  ".to_string()),
                },
            };
            let (head, tail) = text.split_at(at);
            if head.is_empty() {
                format!("{indent}version_scheme {n}\n{tail}")
            } else {
                format!("{head}\n{indent}version_scheme {n}{tail}")
            }
        };
        check(&out)?;
        Ok(out)
    }

    /// The text without its `version_scheme` statement's line, to compare two files "apart
    /// from the scheme".
    pub fn without_version_scheme(&self) -> String {
        match self.stanza("version_scheme") {
            Some(s) => {
                let start = self.text[..s.start].rfind('\n').map_or(0, |i| i + 1);
                let end = self.text[s.end..]
                    .find('\n')
                    .map_or(self.text.len(), |i| s.end + i + 1);
                format!("{}{}", &self.text[..start], &self.text[end..])
            }
            None => self.text.to_string(),
        }
    }
}

/// Components Homebrew's order (`ast_constants.rb`) puts before `version_scheme`.
pub const BEFORE_SCHEME: [&str; 9] = [
    "include", "desc", "homepage", "url", "mirror", "version", "sha256", "license", "revision",
];

/// Components Homebrew's order puts after `version_scheme`: `head`, `stable`, `livecheck`,
/// `bottle`, dependencies, `on_*` blocks, resources, methods, `test do`, ...
pub fn is_after_scheme(name: &str) -> bool {
    name.starts_with("on_")
        || matches!(
            name,
            "head"
                | "stable"
                | "livecheck"
                | "no_autobump!"
                | "bottle"
                | "pour_bottle?"
                | "keg_only"
                | "option"
                | "deprecated_option"
                | "disable!"
                | "deprecate!"
                | "depends_on"
                | "uses_from_macos"
                | "conflicts_with"
                | "skip_clean"
                | "cxxstdlib_check"
                | "link_overwrite"
                | "fails_with"
                | "go_resource"
                | "resource"
                | "patch"
                | "needs"
                | "def"
                | "service"
                | "test"
                | "caveats"
                | "plist_options"
        )
}

fn indent_at(text: &str, offset: usize) -> String {
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..offset]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

fn kwarg_str(args: &[Node], key: &str) -> Option<String> {
    for a in args {
        if let Node::Kwargs(k) = a {
            for p in &k.pairs {
                if let Node::Pair(p) = p {
                    let name = match &*p.key {
                        Node::Sym(s) => s.name.as_str_lossy().ok(),
                        _ => None,
                    };
                    if name == Some(key) {
                        if let Node::Str(s) = &*p.value {
                            return s.value.as_str_lossy().ok().map(str::to_string);
                        }
                    }
                }
            }
        }
    }
    None
}

fn plain_str_arg(s: &lib_ruby_parser::nodes::Send) -> Option<String> {
    match s.args.first() {
        Some(Node::Str(v)) => v.value.as_str_lossy().ok().map(str::to_string),
        _ => None,
    }
}

fn collect_downloads(stmts: &[&Node], out: &mut Vec<(String, Option<String>)>) {
    let mut urls = Vec::new();
    let mut shas = Vec::new();
    for n in stmts {
        match n {
            Node::Send(s) if s.recv.is_none() && s.method_name == "url" => {
                if let Some(u) = plain_str_arg(s) {
                    urls.push(u);
                }
            }
            Node::Send(s) if s.recv.is_none() && s.method_name == "sha256" => {
                if let Some(h) = plain_str_arg(s) {
                    shas.push(h);
                }
            }
            Node::Block(b) => {
                if matches!(call_name(&b.call), Some("head" | "bottle" | "livecheck")) {
                    continue;
                }
                let inner: Vec<&Node> = match b.body.as_deref() {
                    Some(Node::Begin(bb)) => bb.statements.iter().collect(),
                    Some(other) => vec![other],
                    None => Vec::new(),
                };
                collect_downloads(&inner, out);
            }
            Node::If(i) => {
                for branch in [&i.if_true, &i.if_false].into_iter().flatten() {
                    let inner: Vec<&Node> = match &**branch {
                        Node::Begin(bb) => bb.statements.iter().collect(),
                        other => vec![other],
                    };
                    collect_downloads(&inner, out);
                }
            }
            _ => {}
        }
    }
    for (i, u) in urls.into_iter().enumerate() {
        out.push((u, shas.get(i).cloned()));
    }
}

fn collect_urls(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::Send(s) if s.recv.is_none() && s.method_name == "url" => {
            if let Some(Node::Str(u)) = s.args.first() {
                if let Ok(u) = u.value.as_str_lossy() {
                    out.push(u.to_string());
                }
            }
        }
        Node::Block(b) => {
            if let Some(body) = &b.body {
                collect_urls(body, out);
            }
        }
        Node::Begin(b) => b.statements.iter().for_each(|s| collect_urls(s, out)),
        Node::If(i) => {
            for branch in [&i.if_true, &i.if_false].into_iter().flatten() {
                collect_urls(branch, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheme(text: &str, n: u32) -> String {
        Source::parse(text).unwrap().with_version_scheme(n).unwrap()
    }

    #[test]
    fn inserts_after_a_multi_line_license() {
        let f = "class Git < Formula\n  desc \"x\"\n  # mirrors\n  url \"https://e/git-2.47.1.tar.xz\"\n  sha256 \"ab\"\n  license any_of: [\n    \"GPL-2.0-only\",\n    \"MIT\",\n  ]\n  head \"https://e/git.git\", branch: \"master\"\nend\n";
        let out = scheme(f, 1);
        assert_eq!(
            out,
            f.replace("  ]\n  head", "  ]\n  version_scheme 1\n  head"),
            "{out}"
        );
        assert_eq!(Source::parse(&out).unwrap().without_version_scheme(), f);
    }

    #[test]
    fn includes_and_comments_stay_above() {
        let f = "class Foo < Formula\n  include Language::Python::Virtualenv\n  include Bar\n\n  desc \"d\"\n  # the homepage\n  homepage \"https://e\"\n  url \"https://e/foo-1.0.tar.gz\" # pinned\n  revision 2\n\n  livecheck do\n    url :stable\n  end\nend\n";
        let out = scheme(f, 3);
        assert!(
            out.contains("  revision 2\n  version_scheme 3\n\n  livecheck"),
            "{out}"
        );
        let raised = scheme(&out, 4);
        assert_eq!(raised, out.replace("version_scheme 3", "version_scheme 4"));
    }

    #[test]
    fn a_require_before_the_components_stays_first() {
        let f = "class Pnpm < Formula\n  require \"language/node\"\n\n  desc \"d\"\n  url \"https://e/pnpm-7.9.3.tgz\"\n  license \"MIT\"\n\n  livecheck do\n    url \"x\"\n  end\nend\n";
        assert!(scheme(f, 1).contains("  license \"MIT\"\n  version_scheme 1\n\n  livecheck"));
    }

    #[test]
    fn versions_as_homebrew_derives_them() {
        let tag = "class Foo < Formula\n  url \"https://github.com/a/foo.git\",\n      tag:      \"v1.1.0\",\n      revision: \"0123\"\nend\n";
        assert_eq!(
            Source::parse(tag).unwrap().version().as_deref(),
            Some("1.1.0")
        );
        let cask = "cask \"app\" do\n  version \"4.70.0,224270\"\n  auto_updates true\nend\n";
        let c = Source::parse(cask).unwrap();
        assert_eq!(c.shape, Shape::Cask);
        assert_eq!(c.version().as_deref(), Some("4.70.0,224270"));
        assert_eq!(c.needs_greedy(), Some("auto_updates true"));
        let platform = "class Foo < Formula\n  on_macos do\n    if Hardware::CPU.arm?\n      url \"https://e/v1.2.3/foo_1.2.3_darwin_arm64.tar.gz\"\n    end\n  end\nend\n";
        assert_eq!(
            Source::parse(platform).unwrap().version().as_deref(),
            Some("1.2.3")
        );
    }

    #[test]
    fn downloads_pair_each_url_with_its_sha256() {
        let text = r#"class Myapp < Formula
  desc "x"
  url "https://example.com/myapp-1.0.tar.gz"
  sha256 "aaaa"
  head "https://example.com/myapp.git", branch: "main"
  bottle do
    sha256 arm64_sonoma: "bbbb"
  end
  on_macos do
    if Hardware::CPU.arm?
      url "https://example.com/myapp-arm.tar.gz"
      sha256 "cccc"
    end
  end
  resource "extra" do
    url "https://example.com/extra.tar.gz"
    sha256 "dddd"
  end
  head do
    url "https://example.com/myapp.git"
  end
end
"#;
        let s = Source::parse(text).unwrap();
        assert_eq!(
            s.downloads(),
            vec![
                (
                    "https://example.com/myapp-arm.tar.gz".into(),
                    Some("cccc".into())
                ),
                (
                    "https://example.com/extra.tar.gz".into(),
                    Some("dddd".into())
                ),
                (
                    "https://example.com/myapp-1.0.tar.gz".into(),
                    Some("aaaa".into())
                ),
            ]
        );
    }

    #[test]
    fn broken_ruby_is_reported_with_a_position() {
        let err = Source::parse("class Foo < Formula\n  url \"x\n")
            .err()
            .unwrap();
        assert!(err.line >= 2, "{err}");
    }
}
