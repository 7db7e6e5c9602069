//! Property tests of the YAML loaders: no input panics or hangs them, and written histories read back unchanged.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bagboy::config::Config;
use bagboy::history::{self, Deployment, History, Package, Status, Store, Timestamp, Version};
use bagboy::yaml::{self, Node, Scalar, ScalarKind, Value};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, TestCaseError};

/// A debug build parses a few hundred KiB in well under this; a hang or blow-up does not.
const SLOW: Duration = Duration::from_secs(5);

/// Each proptest function owns one temp dir and rewrites one file in it per case.
struct Scratch {
    _dir: tempfile::TempDir,
    history: PathBuf,
    config: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let history = dir.path().join(".bagboy/deployment-history.yml");
        std::fs::create_dir_all(history.parent().unwrap()).unwrap();
        let config = dir.path().join("bagboy.yaml");
        Scratch {
            _dir: dir,
            history,
            config,
        }
    }

    /// Feed `bytes` to both loaders; any panic fails the case (proptest catches it).
    fn load_both(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
        std::fs::write(&self.history, bytes).unwrap();
        std::fs::write(&self.config, bytes).unwrap();
        let start = Instant::now();
        let _ = Store::new(&self.history).load();
        let _ = Config::load(&self.config);
        let _ = yaml::parse(Path::new("x.yml"), bytes);
        let took = start.elapsed();
        prop_assert!(took < SLOW, "loading {} bytes took {took:?}", bytes.len());
        Ok(())
    }
}

/// Defaults (so `PROPTEST_CASES` applies); failures persist next to this file, which proptest
/// cannot find on its own for an integration test.
fn config(max_shrink_iters: u32) -> ProptestConfig {
    ProptestConfig {
        max_shrink_iters,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/history_props.proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// (a) hostile input

/// Pieces of YAML that stress the scanner: structure, anchors, quoting, indentation, tabs.
fn fragment() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        "deployments:",
        "registries:",
        "rollback:",
        "name: ",
        "history: ",
        "version: ",
        "timestamp: ",
        "status: ",
        "packages:",
        "format: ",
        "registry: ",
        "tags: ",
        "digest: ",
        "tap_commit: ",
        "health_checks:",
        "move_tags: ",
        "insecure: ",
        "deployed",
        "superseded",
        "docker",
        "brew",
        "v1.2.3",
        "1.10",
        "2026-02-01T18:00:00Z",
        "sha256:",
        "- ",
        "-",
        "\n",
        "\n",
        "\n",
        "  ",
        "  ",
        "    ",
        "\t",
        "\r\n",
        "&a ",
        "&b ",
        "*a",
        "*b",
        "<<: *a",
        "<<: ",
        "\"",
        "'",
        "\\",
        "\\u",
        "\\x",
        ": ",
        ":",
        "? ",
        "# ",
        "[",
        "]",
        "{",
        "}",
        ", ",
        "|",
        "|-",
        ">",
        ">+",
        "---",
        "...",
        "%YAML 1.2",
        "%TAG ! tag:x,2000:",
        "!!str ",
        "!!binary ",
        "!x ",
        "null",
        "~",
        "yes",
        "0x1F",
        ".inf",
        "1e999",
        "99999999999999999999999999",
        "\u{feff}",
        "\u{85}",
        "\u{2028}",
        "é",
        "\u{0}",
        "\u{7f}",
    ];
    prop_oneof![
        8 => proptest::sample::select(fixed).prop_map(str::to_string),
        1 => "[a-z_]{1,8}",
        1 => "[ -~]{0,12}",
        // A very long line.
        1 => (1usize..200_000).prop_map(|n| "x".repeat(n)),
        // Deep nesting, flow and block.
        1 => (1usize..400).prop_map(|n| "[".repeat(n)),
        1 => (1usize..400).prop_map(|n| "{a: ".repeat(n)),
        1 => (1usize..200).prop_map(|n| {
            (0..n).map(|i| format!("{}k{i}:\n", " ".repeat(i))).collect()
        }),
        1 => (1usize..200).prop_map(|n| {
            (0..n).map(|i| format!("{}- ", " ".repeat(2 * i))).collect::<Vec<_>>().join("\n")
        }),
    ]
}

fn yamlish() -> impl Strategy<Value = String> {
    proptest::collection::vec(fragment(), 0..80).prop_map(|v| v.concat())
}

/// Valid histories with a few bytes changed: near-misses reach deeper into the validator.
fn mutated_history() -> impl Strategy<Value = Vec<u8>> {
    (
        history(),
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    )
        .prop_map(|(h, edits)| {
            let mut b = history::to_yaml(&h).into_bytes();
            for (i, byte) in edits {
                if !b.is_empty() {
                    let at = i.index(b.len());
                    b[at] = byte;
                }
            }
            b
        })
}

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        thread_local!(static S: Scratch = Scratch::new());
        S.with(|s| s.load_both(&bytes))?;
    }

    #[test]
    fn yamlish_text_never_panics(text in yamlish()) {
        thread_local!(static S: Scratch = Scratch::new());
        S.with(|s| s.load_both(text.as_bytes()))?;
    }

    #[test]
    fn mutated_histories_never_panic(bytes in mutated_history()) {
        thread_local!(static S: Scratch = Scratch::new());
        S.with(|s| s.load_both(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// (b) round trip of valid histories

/// Strings that a naive emitter would get wrong.
fn nasty_string() -> impl Strategy<Value = String> {
    let fixed: Vec<&'static str> = vec![
        "",
        " ",
        "  leading",
        "trailing ",
        "yes",
        "no",
        "Yes",
        "ON",
        "off",
        "y",
        "n",
        "true",
        "False",
        "null",
        "Null",
        "~",
        "1.10",
        "1.0",
        "0x1F",
        "0o17",
        "017",
        "+1",
        "-1",
        "1e3",
        ".inf",
        "-.inf",
        ".nan",
        "NaN",
        "2026-02-01",
        "12:30:00",
        "a: b",
        "a:b",
        "a #b",
        "#x",
        "- x",
        "-",
        "? x",
        "&a",
        "*a",
        "!tag",
        "%x",
        "@x",
        "`x",
        "|",
        ">",
        "'q'",
        "\"q\"",
        "back\\slash",
        "line\nbreak",
        "cr\rlf",
        "tab\there",
        "trail\n",
        "\n\nlead",
        "é ü 日本",
        "emoji 🚀",
        "nel\u{85}x",
        "ls\u{2028}x",
        "bom\u{feff}x",
        "{a: 1}",
        "[1, 2]",
        "<<",
        "---",
        "...",
        "key:",
        " : ",
        "\u{1}ctl",
        "del\u{7f}x",
    ];
    prop_oneof![
        3 => proptest::sample::select(fixed).prop_map(str::to_string),
        2 => "[ -~]{0,24}",
        1 => "\\PC{0,16}",
        1 => any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

fn scalar(kind: ScalarKind, text: &str) -> Node {
    Node::new(Value::Scalar(Scalar {
        kind,
        text: text.to_string(),
    }))
}

/// Scalars as a human may have written them in an unknown field (kept verbatim by the loader).
fn extra_scalar() -> impl Strategy<Value = Node> {
    prop_oneof![
        4 => nasty_string().prop_map(Node::str),
        1 => any::<i64>().prop_map(yaml::int),
        1 => any::<bool>().prop_map(yaml::boolean),
        1 => Just(Node::new(Value::Null)),
        // `.inf`/`.nan` are refused by the reader, so no loaded history can hold them.
        1 => proptest::sample::select(vec!["1.5", "1.10", "-0.25", "1e3", "6.02e+23", "-0.0"])
            .prop_map(|t| scalar(ScalarKind::Float, t)),
        1 => proptest::sample::select(vec!["0x1F", "0o17", "+12", "-0"])
            .prop_map(|t| scalar(ScalarKind::Int, t)),
    ]
}

fn dedup(entries: Vec<(String, Node)>, reserved: &[&str]) -> Vec<(String, Node)> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()) && seen.insert(k.clone()))
        .collect()
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z][a-z_]{0,10}", 1 => nasty_string()]
}

fn to_map(entries: Vec<(String, Node)>) -> Node {
    Node::new(Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Node::str(k), v))
            .collect(),
    ))
}

/// Nested maps and lists of scalars, as unknown fields may hold.
fn extra_value() -> impl Strategy<Value = Node> {
    extra_scalar().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(yaml::seq),
            proptest::collection::vec((key(), inner), 0..5).prop_map(|e| to_map(dedup(e, &[]))),
        ]
    })
}

fn extras(reserved: &'static [&'static str]) -> impl Strategy<Value = Vec<(String, Node)>> {
    proptest::collection::vec((key(), extra_value()), 0..4).prop_map(move |e| dedup(e, reserved))
}

const DEPLOYMENT_KEYS: &[&str] = &[
    "version",
    "timestamp",
    "commit",
    "status",
    "rollback_of",
    "rollback_safe",
    "actor",
    "notes",
    "packages",
    "health_checks",
];
const PACKAGE_KEYS: &[&str] = &[
    "format",
    "registry",
    "status",
    "formula",
    "tap_commit",
    "digest",
    "tags",
];

fn version() -> impl Strategy<Value = Version> {
    (
        proptest::sample::select(vec!["", "v", "V"]),
        0u64..30,
        0u64..30,
        0u64..300,
        proptest::option::of("[0-9A-Za-z-]{1,6}(\\.[0-9A-Za-z-]{1,6}){0,2}"),
        proptest::option::of("[0-9A-Za-z-]{1,6}"),
    )
        .prop_filter_map("valid semver", |(v, a, b, c, pre, build)| {
            let mut s = format!("{v}{a}.{b}.{c}");
            if let Some(p) = pre {
                s.push('-');
                s.push_str(&p);
            }
            if let Some(b) = build {
                s.push('+');
                s.push_str(&b);
            }
            Version::parse(&s).ok()
        })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (
        1970i32..2100,
        1u8..13,
        1u8..29,
        0u8..24,
        0u8..60,
        0u8..60,
        proptest::option::of("[0-9]{1,9}"),
        proptest::sample::select(vec!["Z", "z", "+00:00", "-05:30", "+14:00"]),
        proptest::sample::select(vec!["T", "t"]),
    )
        .prop_filter_map("valid RFC 3339", |(y, mo, d, h, mi, s, frac, off, t)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            Timestamp::parse(&format!(
                "{y:04}-{mo:02}-{d:02}{t}{h:02}:{mi:02}:{s:02}{frac}{off}"
            ))
            .ok()
        })
}

fn status(allow_deployed: bool) -> impl Strategy<Value = Status> {
    let all: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|s| allow_deployed || *s != Status::Deployed)
        .collect();
    proptest::sample::select(all)
}

fn non_blank() -> impl Strategy<Value = String> {
    nasty_string().prop_filter("non-blank", |s| !s.trim().is_empty())
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"
}

/// A package; its status is drawn with or without `deployed` allowed.
fn package(allow_deployed: bool) -> impl Strategy<Value = Package> {
    (
        prop_oneof![
            3 => proptest::sample::select(vec!["docker", "brew", "oci-layout"]).prop_map(str::to_string),
            1 => non_blank(),
        ],
        non_blank(),
        proptest::option::of(status(allow_deployed)),
        proptest::option::of(nasty_string()),
        proptest::option::of("[0-9a-f]{40}|[0-9A-F]{40}|[0-9a-f]{64}"),
        proptest::option::of("sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"),
        proptest::collection::vec(tag(), 0..5),
        extras(PACKAGE_KEYS),
    )
        .prop_map(
            |(format, registry, status, formula, tap_commit, digest, tags, extra)| Package {
                format,
                registry,
                status,
                formula,
                tap_commit,
                digest,
                tags,
                extra,
                loc: Default::default(),
            },
        )
}

fn health_checks() -> impl Strategy<Value = Option<Node>> {
    proptest::option::of(prop_oneof![
        1 => Just(Node::new(Value::Null)),
        4 => proptest::collection::vec(
            proptest::collection::vec((key(), extra_value()), 0..4).prop_map(|e| to_map(dedup(e, &[]))),
            0..3,
        ).prop_map(yaml::seq),
    ])
}

/// A deployment that may (`current`) or may not be the `deployed` one.
fn deployment(current: bool) -> impl Strategy<Value = Deployment> {
    let entry_status = if current {
        Just(Some(Status::Deployed)).boxed()
    } else {
        proptest::option::of(status(false)).boxed()
    };
    (
        (version(), timestamp(), entry_status),
        (
            proptest::option::of(nasty_string()),
            proptest::option::of(version()),
            proptest::option::of(any::<bool>()),
            proptest::option::of(nasty_string()),
            proptest::option::of(nasty_string()),
        ),
        // Packages may claim `deployed` only where the entry status overrides them.
        proptest::collection::vec(package(false), 0..3),
        proptest::collection::vec(package(true), 0..3),
        health_checks(),
        extras(DEPLOYMENT_KEYS),
    )
        .prop_filter_map(
            "an entry needs a status somewhere",
            |(
                (version, timestamp, status),
                (commit, rollback_of, rollback_safe, actor, notes),
                plain,
                any_status,
                health_checks,
                extra,
            )| {
                let packages = if status.is_some() { any_status } else { plain };
                let d = Deployment {
                    version,
                    timestamp,
                    commit,
                    status,
                    rollback_of: rollback_of.map(|v| v.to_string()),
                    rollback_safe,
                    actor,
                    notes,
                    packages,
                    health_checks,
                    extra,
                    loc: Default::default(),
                };
                d.effective_status().is_some().then_some(d)
            },
        )
}

fn history() -> impl Strategy<Value = History> {
    (
        proptest::collection::vec(deployment(false), 0..6),
        proptest::option::of((deployment(true), any::<prop::sample::Index>())),
        extras(&["deployments"]),
    )
        .prop_map(|(mut deployments, current, extra)| {
            if let Some((d, at)) = current {
                let at = at.index(deployments.len() + 1);
                deployments.insert(at, d);
            }
            History { deployments, extra }
        })
}

/// Nodes compared without positions.
fn strip(n: &Node) -> Node {
    let value = match &n.value {
        Value::Seq(i) => Value::Seq(i.iter().map(strip).collect()),
        Value::Map(e) => Value::Map(e.iter().map(|(k, v)| (strip(k), strip(v))).collect()),
        v => v.clone(),
    };
    Node::new(value)
}

fn strip_extra(e: &[(String, Node)]) -> Vec<(String, Node)> {
    e.iter().map(|(k, v)| (k.clone(), strip(v))).collect()
}

fn assert_same(want: &History, got: &History) -> Result<(), TestCaseError> {
    prop_assert_eq!(want.deployments.len(), got.deployments.len());
    prop_assert_eq!(strip_extra(&want.extra), strip_extra(&got.extra));
    for (w, g) in want.deployments.iter().zip(&got.deployments) {
        prop_assert_eq!(w.version.as_str(), g.version.as_str());
        prop_assert_eq!(w.timestamp.as_str(), g.timestamp.as_str());
        prop_assert_eq!(&w.commit, &g.commit);
        prop_assert_eq!(w.status, g.status);
        prop_assert_eq!(&w.rollback_of, &g.rollback_of);
        prop_assert_eq!(w.rollback_safe, g.rollback_safe);
        prop_assert_eq!(&w.actor, &g.actor);
        prop_assert_eq!(&w.notes, &g.notes);
        prop_assert_eq!(
            w.health_checks.as_ref().map(strip),
            g.health_checks.as_ref().map(strip)
        );
        prop_assert_eq!(strip_extra(&w.extra), strip_extra(&g.extra));
        prop_assert_eq!(w.packages.len(), g.packages.len());
        for (wp, gp) in w.packages.iter().zip(&g.packages) {
            let mut gp = gp.clone();
            gp.loc = wp.loc;
            gp.extra = strip_extra(&gp.extra);
            let mut wp = wp.clone();
            wp.extra = strip_extra(&wp.extra);
            prop_assert_eq!(wp, gp);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(5_000))]

    #[test]
    fn written_histories_read_back_unchanged(h in history()) {
        thread_local!(static S: Scratch = Scratch::new());
        let first = history::to_yaml(&h);
        let loaded = S.with(|s| {
            std::fs::write(&s.history, &first).unwrap();
            Store::new(&s.history).load()
        });
        let loaded = match loaded {
            Ok(l) => l.history,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n--- written:\n{first}"))),
        };
        let second = history::to_yaml(&loaded);
        prop_assert_eq!(&first, &second);
        let mut want = h.clone();
        want.sort_newest_first();
        assert_same(&want, &loaded)?;
    }
}

/// The checked-in fixtures survive a load → write → load cycle (also the fuzz seed corpus).
#[test]
fn fixtures_round_trip() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let scratch = Scratch::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let h = Store::new(&path).load().unwrap().history;
        let first = history::to_yaml(&h);
        std::fs::write(&scratch.history, &first).unwrap();
        let again = Store::new(&scratch.history).load().unwrap().history;
        assert_eq!(first, history::to_yaml(&again), "{}", path.display());
    }
}

/// Unknown fields whose keys are not strings: each key must keep its identity on write-back,
/// or two distinct keys (`1` and `"1"`) collide and the file can no longer be read.
#[test]
fn typed_keys_in_unknown_fields_round_trip() {
    let scratch = Scratch::new();
    for extra in [
        "x:\n  1: a\n  \"1\": b\n",
        "x:\n  true: a\n  \"true\": b\n",
        "x:\n  1.10: a\n  \"1.10\": b\n",
        "x:\n  ~: a\n  \"\": b\n",
        "x:\n  ? [a]\n  : 1\n  ? [b]\n  : 2\n",
    ] {
        let text = format!("deployments: []\n{extra}");
        std::fs::write(&scratch.history, &text).unwrap();
        let Ok(loaded) = Store::new(&scratch.history).load() else {
            continue; // refusing such keys is fine too
        };
        let first = history::to_yaml(&loaded.history);
        std::fs::write(&scratch.history, &first).unwrap();
        let again = Store::new(&scratch.history)
            .load()
            .unwrap_or_else(|e| panic!("{text:?} was written back unreadable: {e}\n{first}"));
        assert_eq!(first, history::to_yaml(&again.history), "{text:?}");
        assert_eq!(
            strip_extra(&loaded.history.extra),
            strip_extra(&again.history.extra),
            "{text:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (c) the fast reader of bagboy's own subset gives what the full parser gives

/// Root and streamed items of `text`, by the fast-then-full reader or the full parser alone;
/// positions included. `Err` carries the message (the fast path never decides an error).
fn streamed(text: &[u8], full: bool) -> Result<(Node, Vec<Node>), String> {
    let items = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = {
        let items = items.clone();
        Box::new(move |n: Node| items.borrow_mut().push(n))
    };
    let path = Path::new("h.yml");
    let root = if full {
        yaml::parse_streaming_full(path, text, "deployments", sink)
    } else {
        let mut restart = {
            let items = items.clone();
            move || items.borrow_mut().clear()
        };
        yaml::parse_streaming(path, text, "deployments", sink, &mut restart)
    };
    let root = root.map_err(|e| e.to_string())?;
    let items = items.take();
    Ok((root, items))
}

fn same_as_full_parser(text: &[u8]) -> Result<(), TestCaseError> {
    let fast = streamed(text, false);
    let full = streamed(text, true);
    prop_assert_eq!(&fast, &full, "--- text:\n{}", String::from_utf8_lossy(text));
    Ok(())
}

proptest! {
    #![proptest_config(config(2_000))]

    /// Every history bagboy writes: the same nodes, positions included, so the same model and
    /// the same errors with their line and column.
    #[test]
    fn fast_reader_matches_full_parser_on_written_histories(h in history()) {
        same_as_full_parser(history::to_yaml(&h).as_bytes())?;
    }

    /// Near-misses: whatever the fast reader accepts, the full parser reads the same way.
    #[test]
    fn fast_reader_matches_full_parser_on_mutated_histories(bytes in mutated_history()) {
        same_as_full_parser(&bytes)?;
    }

    #[test]
    fn fast_reader_matches_full_parser_on_yamlish_text(text in yamlish()) {
        same_as_full_parser(text.as_bytes())?;
    }
}

/// The shape of the benchmark's histories (hand-written, not by bagboy's emitter) and a few
/// near-misses, each compared node for node.
#[test]
fn fast_reader_matches_full_parser_on_hand_written_shapes() {
    let entry = "  - version: \"v1.2.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: deployed\n    packages:\n      - format: oci-layout\n        registry: \"oci\"\n        tags: [\"v1.2.0\", \"latest\", \"1.2\"]\n    notes: \"r\"\n";
    for text in [
        format!("deployments:\n{entry}"),
        format!("# c\ndeployments:\n\n{entry}  # trailing comment line\nextra: {{}}\n"),
        format!("deployments:\n{entry}x:\n  - a\n  - \"b\"\n  - {{}}\n  - []\n"),
        "deployments: []\n".to_string(),
        "deployments: [\"a\"]\n".to_string(),
        "deployments:\n- version: \"v1\"\n".to_string(),
        "deployments:\n  - version: v1\n    notes: a b\n".to_string(),
        "deployments:\n  - version: \"v1\"\n      notes: \"x\"\n".to_string(),
        "deployments:\n  - version: \"v1\"\n    version: \"v2\"\n".to_string(),
        "deployments:\n  -   version: \"v1\"\n      notes: \"é\"\n".to_string(),
        "deployments:\n  - notes: \"é日本🚀\\u0085 \\\" \\\\ \\n\"\n    tags: [\"é\", b]\n"
            .to_string(),
        "deployments:\n  - x: true\n    y: True\n".to_string(),
        "deployments:\n  - x:\n      deep:\n        - k: \"v\"\n          l: [a]\n".to_string(),
        "deployments:\n  - x:\n    - a\n".to_string(),
        "deployments:\n  - \"q k\": a\n    k2:b\n".to_string(),
    ] {
        let fast = streamed(text.as_bytes(), false);
        let full = streamed(text.as_bytes(), true);
        assert_eq!(fast, full, "{text}");
    }
}
