//! A bounded, span-aware YAML tree: the parser front end for every file bagboy reads.
//!
//! bagboy parses YAML into [`Node`]s (value + line/column) instead of straight into structs so
//! that validation can report *every* problem with its position, keep unknown fields for
//! write-back, and recover the exact source text of unquoted scalars (`version: 1.10` must not
//! silently become `1.1`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

mod subset;

/// Files larger than this are refused before they are read (override: `BAGBOY_MAX_FILE_BYTES`).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A position in a file, 1-based. `line == 0` means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A YAML node with the position it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

/// The shape of a YAML node. Scalars keep their text; `kind` says how YAML typed them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scalar {
    pub kind: ScalarKind,
    /// The decoded string for strings; the source text for numbers and booleans.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    Str,
    Int,
    Float,
    Bool,
}

impl Node {
    pub fn new(value: Value) -> Self {
        Node {
            value,
            loc: Loc::default(),
        }
    }

    pub fn str(s: impl Into<String>) -> Self {
        Node::new(Value::Scalar(Scalar {
            kind: ScalarKind::Str,
            text: s.into(),
        }))
    }

    /// A short name of the node's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Scalar(s) => match s.kind {
                ScalarKind::Str => "a string",
                ScalarKind::Int => "an integer",
                ScalarKind::Float => "a number",
                ScalarKind::Bool => "a boolean",
            },
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// Map entries by key text, in file order.
    pub fn entries(&self) -> Option<impl Iterator<Item = (&str, &Node, &Node)>> {
        match &self.value {
            Value::Map(entries) => Some(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_scalar().map_or("", |s| s.text.as_str()), k, v)),
            ),
            _ => None,
        }
    }
}

/// Why a file could not be parsed as YAML at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path}: file is {size} bytes, over the limit of {limit} bytes (BAGBOY_MAX_FILE_BYTES)"
    )]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{path}:{loc}: {message}")]
    Syntax {
        path: PathBuf,
        loc: Loc,
        message: String,
    },
    #[error("{path}: file is empty")]
    Empty { path: PathBuf },
    #[error("{path}: is {kind}, not a regular file (bagboy reads no symlinks, devices or FIFOs)")]
    NotRegular { path: PathBuf, kind: &'static str },
}

impl ParseError {
    pub fn path(&self) -> &Path {
        match self {
            ParseError::Read { path, .. }
            | ParseError::TooLarge { path, .. }
            | ParseError::Syntax { path, .. }
            | ParseError::Empty { path }
            | ParseError::NotRegular { path, .. } => path,
        }
    }
}

/// The file-size limit in force.
pub fn max_file_bytes() -> u64 {
    std::env::var("BAGBOY_MAX_FILE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_FILE_BYTES)
}

/// Read a file, refusing oversized ones before reading them, and anything that is not a
/// regular file reached without a symlink (a checkout may plant `/dev/zero` or a FIFO).
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, ParseError> {
    let limit = max_file_bytes();
    crate::files::read_regular(path, limit).map_err(|e| match e {
        crate::files::ReadError::Io(source) => ParseError::Read {
            path: path.to_path_buf(),
            source,
        },
        crate::files::ReadError::NotRegular(kind) => ParseError::NotRegular {
            path: path.to_path_buf(),
            kind,
        },
        crate::files::ReadError::TooLarge { size, limit } => ParseError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        },
    })
}

/// Deepest nesting accepted: see [`options`].
pub const MAX_DEPTH: usize = 32;

/// The parser's budget follows the file-size cap: every event and node consumes at least one
/// byte of input (aliases are bounded apart), so a file under the cap never runs out of budget
/// however many entries it holds, and a larger cap (`BAGBOY_MAX_FILE_BYTES`) raises it too.
fn options() -> serde_saphyr::Options {
    let cap = max_file_bytes().max(1 << 20) as usize;
    let budget = serde_saphyr::budget! {
        max_reader_input_bytes: Some(cap),
        max_events: cap.saturating_add(1 << 16),
        max_aliases: 10_000,
        max_anchors: 10_000,
        max_nodes: cap.saturating_add(1 << 16),
        // The deserializer recurses once per level with large frames (~37 KiB each in a debug
        // build), so 64 levels overflowed a 2 MiB thread stack (tokio workers, test threads)
        // before this budget could refuse them. bagboy's files nest 5 levels; 32 leaves room for
        // users' extra fields.
        max_depth: MAX_DEPTH,
        max_documents: 1,
        max_recorded_anchor_bytes: 4 * 1024 * 1024,
    };
    let alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: 100_000,
        max_replay_stack_depth: 16,
    };
    serde_saphyr::options! {
        budget: budget,
        alias_limits: alias_limits,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

/// The bytes as text: UTF-8 and not blank, or the error naming where.
fn text_of<'b>(path: &Path, bytes: &'b [u8]) -> Result<&'b str, ParseError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_col_of_byte(bytes, e.valid_up_to());
        ParseError::Syntax {
            path: path.to_path_buf(),
            loc: Loc { line, column },
            message: "file is not valid UTF-8".into(),
        }
    })?;
    if text.trim().is_empty() {
        return Err(ParseError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

fn syntax(path: &Path, e: serde_saphyr::Error) -> ParseError {
    let loc = e
        .location()
        .map(|l| Loc {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or_default();
    ParseError::Syntax {
        path: path.to_path_buf(),
        loc,
        message: first_line(&e.without_snippet().to_string()),
    }
}

/// bagboy's files never need collection keys, and the writer has no faithful way back for them.
fn collection_key_error(path: &Path, loc: Loc) -> ParseError {
    ParseError::Syntax {
        path: path.to_path_buf(),
        loc,
        message:
            "a mapping key must be a plain value (string, number, boolean), not a list or mapping"
                .into(),
    }
}

/// Parse YAML text into a tree. `path` is only used in error messages.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Node, ParseError> {
    let text = text_of(path, bytes)?;
    let spanned: Spanned<Raw> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| syntax(path, e))?;
    let root = to_node(spanned, text);
    if let Some(loc) = collection_key(&root) {
        return Err(collection_key_error(path, loc));
    }
    Ok(root)
}

/// Parse YAML text whose root is a mapping, handing each item of the top-level sequence under
/// `key` to `on_item` as soon as it is read instead of keeping it: the whole file is never held
/// as a tree (the history's `deployments` go straight into the typed model, one at a time).
/// The returned root has an empty sequence under `key`.
///
/// Text in the subset bagboy writes is read by a fast reader giving the same nodes; anything
/// else goes to serde-saphyr. When the fast reader gives up part way, `restart` is called
/// first: the items handed out so far come again.
pub fn parse_streaming(
    path: &Path,
    bytes: &[u8],
    key: &str,
    mut on_item: Box<dyn FnMut(Node)>,
    restart: &mut dyn FnMut(),
) -> Result<Node, ParseError> {
    let text = text_of(path, bytes)?;
    match subset::parse_streaming(text, key, &mut *on_item) {
        Ok(root) => return Ok(root),
        Err(subset::OutOfSubset) => {
            tracing::debug!(path = %path.display(), "not in the subset bagboy writes; full YAML parser");
            restart();
        }
    }
    streaming_full(path, text, key, on_item)
}

/// [`parse_streaming`] with serde-saphyr only (the reference the fast reader is tested against).
pub fn parse_streaming_full(
    path: &Path,
    bytes: &[u8],
    key: &str,
    on_item: Box<dyn FnMut(Node)>,
) -> Result<Node, ParseError> {
    streaming_full(path, text_of(path, bytes)?, key, on_item)
}

fn streaming_full(
    path: &Path,
    text: &str,
    key: &str,
    mut on_item: Box<dyn FnMut(Node)>,
) -> Result<Node, ParseError> {
    let bad_key = std::rc::Rc::new(std::cell::Cell::new(None::<Loc>));
    let src: std::rc::Rc<str> = std::rc::Rc::from(text);
    let sink: Box<dyn FnMut(Spanned<Raw>)> = {
        let (bad_key, src) = (bad_key.clone(), src.clone());
        Box::new(move |item: Spanned<Raw>| {
            let node = to_node(item, &src);
            if bad_key.get().is_none() {
                if let Some(loc) = collection_key(&node) {
                    bad_key.set(Some(loc));
                    return;
                }
            }
            on_item(node);
        })
    };
    STREAM.with(|s| *s.borrow_mut() = Some((key.to_string(), sink)));
    let spanned: Result<Spanned<StreamRoot>, _> =
        serde_saphyr::from_str_with_options(text, options());
    STREAM.with(|s| *s.borrow_mut() = None);
    let spanned = spanned.map_err(|e| syntax(path, e))?;
    let root = to_node(
        Spanned {
            value: spanned.value.0,
            referenced: spanned.referenced,
            defined: spanned.defined,
        },
        text,
    );
    if let Some(loc) = bad_key.get().or_else(|| collection_key(&root)) {
        return Err(collection_key_error(path, loc));
    }
    Ok(root)
}

type Sink = (String, Box<dyn FnMut(Spanned<Raw>)>);

thread_local! {
    /// The item sink of the [`parse_streaming`] call running on this thread.
    static STREAM: std::cell::RefCell<Option<Sink>> = const { std::cell::RefCell::new(None) };
}

/// The root of a streamed document: a [`Raw`] whose sequence under the streamed key was
/// handed out item by item.
struct StreamRoot(Raw);

impl<'de> Deserialize<'de> for StreamRoot {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor {
            stream_key: true,
            stream_seq: false,
        })
        .map(StreamRoot)
    }
}

/// The value under the streamed key: a sequence is streamed, anything else kept.
struct Streamed(Raw);

impl<'de> Deserialize<'de> for Streamed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor {
            stream_key: false,
            stream_seq: true,
        })
        .map(Streamed)
    }
}

/// The position of the first mapping key that is a list or a mapping.
fn collection_key(n: &Node) -> Option<Loc> {
    match &n.value {
        Value::Seq(items) => items.iter().find_map(collection_key),
        Value::Map(entries) => entries.iter().find_map(|(k, v)| match k.value {
            Value::Seq(_) | Value::Map(_) => Some(k.loc),
            _ => collection_key(v),
        }),
        _ => None,
    }
}

fn first_line(s: &str) -> String {
    let s = s.trim();
    // serde-saphyr prefixes messages with its own position; ours is in the Loc already.
    let s = s.lines().next().unwrap_or(s);
    s.to_string()
}

fn line_col_of_byte(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
    (line, col)
}

/// Raw deserialized value; converted to [`Node`] once the source text is at hand.
enum Raw {
    Null,
    Str(String),
    Int(String),
    Float(String),
    Bool(bool),
    Seq(Vec<Spanned<Raw>>),
    Map(Vec<(Spanned<Raw>, Spanned<Raw>)>),
}

fn to_node(s: Spanned<Raw>, src: &str) -> Node {
    let loc = Loc {
        line: s.referenced.line(),
        column: s.referenced.column(),
    };
    let span = s.referenced.span();
    let source_text = || -> Option<String> {
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        let t = src.get(start..start.checked_add(len)?)?.trim();
        (!t.is_empty()).then(|| t.to_string())
    };
    let value = match s.value {
        Raw::Null => Value::Null,
        Raw::Str(t) => Value::Scalar(Scalar {
            kind: ScalarKind::Str,
            text: t,
        }),
        Raw::Int(t) => Value::Scalar(Scalar {
            kind: ScalarKind::Int,
            text: source_text().unwrap_or(t),
        }),
        Raw::Float(t) => Value::Scalar(Scalar {
            kind: ScalarKind::Float,
            text: source_text().unwrap_or(t),
        }),
        // Keep the source text: a tag written `y`, `on` or `no` (YAML 1.1 booleans) is that
        // tag where a string is wanted, not "true".
        Raw::Bool(b) => Value::Scalar(Scalar {
            kind: ScalarKind::Bool,
            text: source_text().unwrap_or_else(|| b.to_string()),
        }),
        Raw::Seq(items) => Value::Seq(items.into_iter().map(|i| to_node(i, src)).collect()),
        Raw::Map(entries) => Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (to_node(k, src), to_node(v, src)))
                .collect(),
        ),
    };
    Node { value, loc }
}

impl<'de> Deserialize<'de> for Raw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RawVisitor::default())
    }
}

/// Builds a [`Raw`]; at a streamed document's root (`stream_key`), the value under the
/// streamed key goes through [`Streamed`].
#[derive(Default)]
struct RawVisitor {
    stream_key: bool,
    /// This sequence's items go to the thread's stream sink, not into the value.
    stream_seq: bool,
}

impl<'de> Visitor<'de> for RawVisitor {
    type Value = Raw;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_none<E>(self) -> Result<Raw, E> {
        Ok(Raw::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Raw, D::Error> {
        if self.stream_seq {
            return Streamed::deserialize(d).map(|s| s.0);
        }
        Raw::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Raw, E> {
        Ok(Raw::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Raw, E> {
        Ok(Raw::Int(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Raw, E> {
        Ok(Raw::Int(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Raw, E> {
        Ok(Raw::Int(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Raw, E> {
        Ok(Raw::Int(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Raw, E> {
        Ok(Raw::Float(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Raw, E> {
        Ok(Raw::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Raw, E> {
        Ok(Raw::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Raw, E> {
        Ok(Raw::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Raw, A::Error> {
        if self.stream_seq {
            // Taken out while items are read (their own parts never stream), put back after.
            let mut sink = STREAM.with(|s| s.borrow_mut().take());
            let result = (|| {
                while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
                    if let Some((_, f)) = sink.as_mut() {
                        f(item);
                    }
                }
                Ok(Raw::Seq(Vec::new()))
            })();
            STREAM.with(|s| *s.borrow_mut() = sink);
            return result;
        }
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Raw>>()? {
            items.push(item);
        }
        Ok(Raw::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Raw, A::Error> {
        let streamed = if self.stream_key {
            STREAM.with(|s| s.borrow().as_ref().map(|(k, _)| k.clone()))
        } else {
            None
        };
        let mut entries = Vec::new();
        while let Some(k) = map.next_key::<Spanned<Raw>>()? {
            let is_streamed = matches!((&k.value, &streamed), (Raw::Str(s), Some(key)) if s == key);
            let v = if is_streamed {
                let v = map.next_value::<Spanned<Streamed>>()?;
                Spanned {
                    value: v.value.0,
                    referenced: v.referenced,
                    defined: v.defined,
                }
            } else {
                map.next_value::<Spanned<Raw>>()?
            };
            entries.push((k, v));
        }
        Ok(Raw::Map(entries))
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// A small block-style YAML emitter with predictable quoting: every string is double-quoted
/// unless it is a plain word that no YAML 1.1 or 1.2 reader can mistype.
pub struct Emitter {
    out: String,
}

impl Default for Emitter {
    fn default() -> Self {
        Self::new()
    }
}

/// A field value the history writer has at hand, written without building a [`Node`] (a
/// 100k-entry history has a million of them).
#[derive(Clone, Copy, Debug)]
pub enum Field<'a> {
    /// A string, quoted as [`quote`] does.
    Str(&'a str),
    /// A word written as is when it is a plain word, else quoted (as [`word`]).
    Word(&'a str),
    Bool(bool),
    /// A flow list of strings.
    Strs(&'a [String]),
}

impl Emitter {
    pub fn new() -> Self {
        Emitter { out: String::new() }
    }

    /// An emitter whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> Self {
        Emitter {
            out: String::with_capacity(bytes),
        }
    }

    /// `key: value` for a [`Field`], at `indent` spaces (`inline`: right after an item's `- `);
    /// the same text [`Emitter::field`] writes for the equivalent node.
    pub fn field_of(&mut self, indent: usize, key: &str, value: Field<'_>, inline: bool) {
        if !inline {
            self.pad(indent);
        }
        match quote_key(key) {
            std::borrow::Cow::Borrowed(k) => self.out.push_str(k),
            std::borrow::Cow::Owned(k) => self.out.push_str(&k),
        }
        self.out.push_str(": ");
        match value {
            Field::Str(s) => quote_into(&mut self.out, s),
            Field::Word(w) if is_plain_word(w) => self.out.push_str(w),
            Field::Word(w) => quote_into(&mut self.out, w),
            Field::Bool(b) => self.out.push_str(if b { "true" } else { "false" }),
            Field::Strs(items) => {
                self.out.push('[');
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    quote_into(&mut self.out, s);
                }
                self.out.push(']');
            }
        }
        self.out.push('\n');
    }

    pub fn finish(self) -> String {
        self.out
    }

    pub fn comment(&mut self, text: &str) {
        for line in text.lines() {
            self.out.push_str("# ");
            self.out.push_str(line);
            self.out.push('\n');
        }
    }

    /// `key: value` for a node, at `indent` spaces.
    pub fn field(&mut self, indent: usize, key: &str, value: &Node) {
        self.pad(indent);
        self.keyed(indent, &quote_key(key), value);
    }

    /// `key: value` with the key already rendered.
    fn keyed(&mut self, indent: usize, key: &str, value: &Node) {
        self.out.push_str(key);
        self.out.push(':');
        self.value_after_key(indent, value);
    }

    /// A `- ` item start for a mapping item; returns the indent for the item's fields.
    pub fn item_start(&mut self, indent: usize) -> usize {
        self.pad(indent);
        self.out.push_str("- ");
        indent + 2
    }

    /// Writes `key:` then a field continuation; used for the first field of a list item.
    pub fn field_inline(&mut self, indent: usize, key: &str, value: &Node) {
        self.keyed(indent, &quote_key(key), value);
    }

    pub fn raw_line(&mut self, indent: usize, text: &str) {
        self.pad(indent);
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn value_after_key(&mut self, indent: usize, value: &Node) {
        match &value.value {
            Value::Seq(items) if items.is_empty() => self.out.push_str(" []\n"),
            Value::Map(entries) if entries.is_empty() => self.out.push_str(" {}\n"),
            Value::Seq(items) if items.iter().all(|i| i.as_scalar().is_some()) => {
                let parts: Vec<String> = items.iter().map(scalar_text).collect();
                self.out.push_str(" [");
                self.out.push_str(&parts.join(", "));
                self.out.push_str("]\n");
            }
            Value::Seq(_) | Value::Map(_) => {
                self.out.push('\n');
                self.block(indent + 2, value);
            }
            _ => {
                self.out.push(' ');
                match &value.value {
                    Value::Scalar(s) if s.kind == ScalarKind::Str => {
                        quote_into(&mut self.out, &s.text)
                    }
                    _ => self.out.push_str(&scalar_text(value)),
                }
                self.out.push('\n');
            }
        }
    }

    fn block(&mut self, indent: usize, node: &Node) {
        match &node.value {
            Value::Map(entries) => {
                for (k, v) in entries {
                    self.pad(indent);
                    self.keyed(indent, &render_key(k), v);
                }
            }
            Value::Seq(items) => {
                for item in items {
                    match &item.value {
                        Value::Map(entries) if !entries.is_empty() => {
                            let inner = self.item_start(indent);
                            for (i, (k, v)) in entries.iter().enumerate() {
                                if i > 0 {
                                    self.pad(inner);
                                }
                                self.keyed(inner, &render_key(k), v);
                            }
                        }
                        Value::Seq(inner) if !inner.is_empty() => {
                            self.pad(indent);
                            self.out.push_str("-\n");
                            self.block(indent + 2, item);
                        }
                        Value::Seq(_) => self.raw_line(indent, "- []"),
                        Value::Map(_) => self.raw_line(indent, "- {}"),
                        _ => {
                            let t = scalar_text(item);
                            self.raw_line(indent, &format!("- {t}"));
                        }
                    }
                }
            }
            _ => {
                let t = scalar_text(node);
                self.raw_line(indent, &t);
            }
        }
    }

    fn pad(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push(' ');
        }
    }
}

fn scalar_text(node: &Node) -> String {
    match &node.value {
        Value::Null => "null".into(),
        Value::Scalar(s) => match s.kind {
            ScalarKind::Str => quote(&s.text),
            _ => s.text.clone(),
        },
        // Nested collections inside flow lists are not produced by bagboy's own model.
        Value::Seq(_) | Value::Map(_) => "null".into(),
    }
}

/// A key of a kept (unknown) mapping, keeping its YAML type: writing `1` and `"1"` both as
/// `"1"` would make two distinct keys collide, and the file unreadable.
fn render_key(key: &Node) -> String {
    match &key.value {
        Value::Scalar(s) if s.kind == ScalarKind::Str => quote_key(&s.text).into_owned(),
        Value::Scalar(s) => s.text.clone(),
        Value::Null => "null".into(),
        // `parse` refuses collection keys, so only a hand-built tree can get here.
        Value::Seq(_) | Value::Map(_) => quote(""),
    }
}

fn quote_key(key: &str) -> std::borrow::Cow<'_, str> {
    if is_plain_word(key) {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(quote(key))
    }
}

/// Double-quoted YAML scalar.
///
/// Not JSON escaping: JSON leaves DEL, C1 controls and U+FFFE/U+FFFF literal, and YAML readers
/// refuse those characters, so a string read from an escape (`"a\x7f"`) would be written back as
/// a file bagboy cannot read again. NEL, LS, PS and BOM are escaped too, so that no reader can
/// take them for line breaks or a byte-order mark.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// [`quote`], appended to `out`.
fn quote_into(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.push('"');
    // Most strings (versions, digests, registries) need no escape: copied whole.
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push_str(s);
        out.push('"');
        return;
    }
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Characters outside YAML's printable set, or that some reader treats as a break or BOM.
/// All of them are below U+10000, so a `\uXXXX` escape fits.
fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{2028}'
        | '\u{2029}'
        | '\u{feff}'
        | '\u{fffe}'
        | '\u{ffff}'
    )
}

/// Words that read back as the same string in YAML 1.1 and 1.2 (no numbers, booleans, nulls).
fn is_plain_word(s: &str) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return false;
    }
    // Words YAML 1.1 readers take for booleans, null or numbers, in any case (no allocation:
    // every key of a large history passes here).
    s.len() > 5
        || ![
            "y", "n", "yes", "no", "on", "off", "true", "false", "null", "nan", "inf",
        ]
        .iter()
        .any(|w| w.eq_ignore_ascii_case(s))
}

/// A plain word (enum values such as statuses) written unquoted.
pub fn word(s: &str) -> Node {
    if is_plain_word(s) {
        Node::new(Value::Scalar(Scalar {
            kind: ScalarKind::Bool, // written verbatim, never quoted
            text: s.to_string(),
        }))
    } else {
        Node::str(s)
    }
}

pub fn boolean(b: bool) -> Node {
    Node::new(Value::Scalar(Scalar {
        kind: ScalarKind::Bool,
        text: b.to_string(),
    }))
}

pub fn int(n: i64) -> Node {
    Node::new(Value::Scalar(Scalar {
        kind: ScalarKind::Int,
        text: n.to_string(),
    }))
}

pub fn seq(items: Vec<Node>) -> Node {
    Node::new(Value::Seq(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Node, ParseError> {
        parse(Path::new("t.yml"), s.as_bytes())
    }

    #[test]
    fn keeps_locations_and_source_text() {
        let n = p("a:\n  version: 1.10\n  b: [x, \"y\"]\n").unwrap();
        let (_, _, a) = n.entries().unwrap().next().unwrap();
        let (k, _, v) = a.entries().unwrap().next().unwrap();
        assert_eq!(k, "version");
        assert_eq!(
            v.loc,
            Loc {
                line: 2,
                column: 12
            }
        );
        let s = v.as_scalar().unwrap();
        assert_eq!((s.kind, s.text.as_str()), (ScalarKind::Float, "1.10"));
    }

    #[test]
    fn yaml_1_1_booleans_keep_their_text() {
        // `tags: [y, on]` names the tags `y` and `on`, not `true`.
        let n = p("tags: [y, on, No]\n").unwrap();
        let (_, _, v) = n.entries().unwrap().next().unwrap();
        let Value::Seq(items) = &v.value else {
            panic!("a list")
        };
        let texts: Vec<&str> = items
            .iter()
            .map(|i| i.as_scalar().unwrap().text.as_str())
            .collect();
        assert_eq!(texts, ["y", "on", "No"]);
    }

    #[test]
    fn syntax_error_has_position() {
        let err = p("a:\n  b: 1\n c: 2\n").unwrap_err();
        match err {
            ParseError::Syntax { loc, .. } => assert_eq!(loc.line, 3),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut s = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        let mut prev = 'a';
        for c in 'b'..='j' {
            s.push_str(&format!(
                "{c}: &{c} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
            prev = c;
        }
        assert!(p(&s).is_err());
    }

    #[test]
    fn quoted_strings_read_back() {
        for text in [
            "plain",
            "q\"b\\s",
            "nl\ncr\rtab\t",
            "del\u{7f}",
            "c1\u{85}\u{9b}",
            "ls\u{2028}ps\u{2029}",
            "bom\u{feff}",
            "nonchar\u{fffe}\u{ffff}",
            "nul\u{0}bel\u{7}",
            "é日本🚀",
        ] {
            let doc = format!("k: {}\n", quote(text));
            let n = p(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
            let (_, _, v) = n.entries().unwrap().next().unwrap();
            assert_eq!(v.as_scalar().unwrap().text, text, "{doc:?}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_a_small_stack() {
        for depth in [MAX_DEPTH, MAX_DEPTH + 1, 200] {
            let flow = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
            let block: String = (0..depth)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect();
            for text in [flow, block] {
                // 2 MiB: the default for spawned threads and tokio workers.
                let ok = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn(move || p(&text).is_ok())
                    .unwrap()
                    .join()
                    .unwrap();
                assert_eq!(ok, depth <= MAX_DEPTH, "depth {depth}");
            }
        }
    }

    #[test]
    fn emitter_round_trips() {
        let src = "deployments:\n  - version: \"v1\"\n    tags: [\"a\", \"b\"]\n    nested:\n      k: 1\n      l:\n        - x: \"y\"\n          z: true\n";
        let n = p(src).unwrap();
        let mut e = Emitter::new();
        e.field(
            0,
            "deployments",
            &n.entries().unwrap().next().unwrap().2.clone(),
        );
        let out = e.finish();
        assert_eq!(out, src);
        let again = p(&out).unwrap();
        assert_eq!(strip(&again), strip(&n));
    }

    fn strip(n: &Node) -> Node {
        let value = match &n.value {
            Value::Seq(i) => Value::Seq(i.iter().map(strip).collect()),
            Value::Map(e) => Value::Map(e.iter().map(|(k, v)| (strip(k), strip(v))).collect()),
            v => v.clone(),
        };
        Node::new(value)
    }
}
