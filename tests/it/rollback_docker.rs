//! The Docker/OCI must-show list: the real `bagboy` binary rolling back tags on real
//! `docker-registry` instances. Every check of a registry's state goes through the harness's
//! plain-HTTP client, never through bagboy's.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;
use support::cli::{text, Project};
use support::{Auth, Request, TestRegistry, TokenUser};

const REPO: &str = "acme/myapp";

/// Every tag any test pushes, so a snapshot sees all of them.
const ALL_TAGS: &[&str] = &[
    "v1.0.0", "v1.1.0", "v1.1.5", "v1.2.0", "latest", "1.0", "1.1", "1.2", "1", "stable", "edge",
    "prod",
];

/// One repository on one registry, as a test sees it.
#[derive(Clone, Copy)]
struct Repo<'a> {
    reg: &'a TestRegistry,
    path: &'a str,
}

impl Repo<'_> {
    /// The registry identity bagboy uses (`127.0.0.1:PORT/acme/myapp`).
    fn name(&self) -> String {
        self.reg.repo(self.path)
    }

    fn digest(&self, tag: &str) -> Option<String> {
        self.reg.tag_digest(self.path, tag)
    }

    /// Every known tag and the digest it points at now.
    fn snapshot(&self) -> BTreeMap<&'static str, Option<String>> {
        ALL_TAGS.iter().map(|t| (*t, self.digest(t))).collect()
    }

    /// Pushes a release image under `version`, then points `aliases` at it.
    fn push_release(&self, version: &str, aliases: &[&str], index: bool) -> String {
        let digest = if index {
            self.reg.push_index(self.path, version)
        } else {
            self.reg.push_image(self.path, version)
        };
        for a in aliases {
            self.reg.put_tag(self.path, a, &digest);
        }
        digest
    }
}

/// A project directory configured for some repositories, with credentials from the environment.
struct Env {
    p: Project,
    /// `(host, user, password)`: env credentials bound to one registry host.
    creds: Option<(String, String, String)>,
}

impl Env {
    fn new(repos: &[Repo<'_>]) -> Env {
        let p = Project::new();
        let mut yaml = String::from("name: myapp\nregistries:\n");
        for r in repos {
            yaml.push_str(&format!(
                "  - format: docker\n    registry: \"{}\"\n    insecure: true\n",
                r.name()
            ));
        }
        p.write("bagboy.yaml", &yaml);
        std::fs::create_dir_all(p.path().join(".docker")).unwrap();
        Env { p, creds: None }
    }

    fn with_creds(mut self, host: &str, user: &str, password: &str) -> Env {
        self.creds = Some((host.into(), user.into(), password.into()));
        self
    }

    fn cmd(&self) -> Command {
        let mut c = self.p.bagboy();
        // An empty Docker config: the machine's credentials are never read.
        c.env("DOCKER_CONFIG", self.p.path().join(".docker"))
            .env("BAGBOY_ACTOR", "ci-test")
            .env("BAGBOY_HTTP_RETRIES", "0");
        match &self.creds {
            Some((h, u, pw)) => c
                .env("BAGBOY_REGISTRY_HOST", h)
                .env("BAGBOY_REGISTRY_USERNAME", u)
                .env("BAGBOY_REGISTRY_PASSWORD", pw),
            None => c
                .env_remove("BAGBOY_REGISTRY_HOST")
                .env_remove("BAGBOY_REGISTRY_USERNAME")
                .env_remove("BAGBOY_REGISTRY_PASSWORD"),
        };
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run bagboy")
    }

    fn record(&self, version: &str) {
        let out = self.run(&["record", "--version", version]);
        assert!(out.status.success(), "record {version}: {:?}", text(&out));
    }

    /// `bagboy versions list --format json`: deployments newest first.
    fn versions(&self) -> Vec<Value> {
        let out = self.run(&["versions", "list", "--format", "json"]);
        assert!(out.status.success(), "versions list: {:?}", text(&out));
        let doc: Value = serde_json::from_slice(&out.stdout).expect("versions json");
        doc["deployments"].as_array().expect("deployments").clone()
    }

    fn history(&self) -> Vec<u8> {
        self.p.history_bytes()
    }
}

/// Digests of the three releases in one repository.
#[derive(Clone, Debug)]
struct Releases {
    v100: String,
    v110: String,
    v120: String,
}

/// The standard story, in every repository at once: v1.0.0 (+latest, 1.0), recorded;
/// v1.1.0 (+latest, 1.1, and `moving`), recorded; v1.2.0 (+latest, 1.2, and `moving`), recorded.
fn three_releases(env: &Env, repos: &[Repo<'_>], index: bool, moving: &[&str]) -> Vec<Releases> {
    let v100: Vec<String> = repos
        .iter()
        .map(|r| r.push_release("v1.0.0", &["latest", "1.0"], index))
        .collect();
    env.record("v1.0.0");
    let mut aliases = vec!["latest", "1.1"];
    aliases.extend_from_slice(moving);
    let v110: Vec<String> = repos
        .iter()
        .map(|r| r.push_release("v1.1.0", &aliases, index))
        .collect();
    env.record("v1.1.0");
    let mut aliases = vec!["latest", "1.2"];
    aliases.extend_from_slice(moving);
    let v120: Vec<String> = repos
        .iter()
        .map(|r| r.push_release("v1.2.0", &aliases, index))
        .collect();
    env.record("v1.2.0");
    (0..repos.len())
        .map(|i| Releases {
            v100: v100[i].clone(),
            v110: v110[i].clone(),
            v120: v120[i].clone(),
        })
        .collect()
}

fn entry<'a>(versions: &'a [Value], version: &str) -> Vec<&'a Value> {
    versions
        .iter()
        .filter(|d| d["version"] == version)
        .collect()
}

fn strs(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// `(registry, tag)` of every `move_tag` step in a plan's JSON.
fn planned_moves(plan: &Value) -> BTreeSet<(String, String)> {
    plan["registries"]
        .as_array()
        .expect("registries")
        .iter()
        .flat_map(|r| {
            let name = r["registry"].as_str().unwrap().to_string();
            r["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["action"] == "move_tag")
                .map(move |s| (name.clone(), s["reference"].as_str().unwrap().to_string()))
        })
        .collect()
}

/// Requests bagboy sent since `from` (an earlier length of `bagboy_requests()`).
fn requests_since(reg: &TestRegistry, from: usize) -> Vec<Request> {
    reg.bagboy_requests().into_iter().skip(from).collect()
}

fn describe(reqs: &[Request]) -> String {
    reqs.iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.status))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts the history after a successful rollback from v1.2.0 to v1.1.0.
fn assert_rolled_back(env: &Env, registries: &[String], digests: &[&str]) {
    let versions = env.versions();
    let newest = &versions[0];
    assert_eq!(newest["version"], "v1.1.0", "{newest:#}");
    assert_eq!(newest["status"], "deployed", "{newest:#}");
    assert_eq!(newest["current"], true, "{newest:#}");
    assert_eq!(newest["rollback_of"], "v1.2.0", "{newest:#}");
    for (name, digest) in registries.iter().zip(digests) {
        let pkg = newest["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["registry"] == name.as_str())
            .unwrap_or_else(|| panic!("no package for {name}: {newest:#}"));
        assert_eq!(pkg["digest"], *digest, "{newest:#}");
        assert_eq!(pkg["status"], "deployed", "{newest:#}");
        assert_eq!(
            strs(&pkg["tags"]),
            ["v1.1.0", "latest", "1.1"].map(String::from).into(),
            "{newest:#}"
        );
    }
    let v120 = entry(&versions, "v1.2.0");
    assert_eq!(v120.len(), 1);
    assert_eq!(v120[0]["status"], "rolled_back_from");
    let deployed = versions
        .iter()
        .filter(|d| d["status"] == "deployed")
        .count();
    assert_eq!(deployed, 1, "at most one entry is deployed: {versions:#?}");
}

/// Rolls back to v1.1.0 and checks the registry and the history; then again, as a no-op.
fn rollback_to_previous_release(index: bool) {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = three_releases(&env, &[repo], index, &[]).remove(0);

    // What `record` saw for v1.1.0: its digest and the tags that pointed at it then.
    let versions = env.versions();
    let recorded = &entry(&versions, "v1.1.0")[0]["packages"][0];
    assert_eq!(recorded["digest"], rel.v110.as_str());
    assert_eq!(
        strs(&recorded["tags"]),
        ["v1.1.0", "latest", "1.1"].map(String::from).into()
    );
    assert_eq!(repo.digest("latest").as_ref(), Some(&rel.v120));

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");

    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(repo.digest(tag).as_ref(), Some(&rel.v110), "tag {tag}");
    }
    // Tags only v1.2.0 (or v1.0.0) had are left alone.
    assert_eq!(repo.digest("v1.2.0").as_ref(), Some(&rel.v120));
    assert_eq!(repo.digest("1.2").as_ref(), Some(&rel.v120));
    assert_eq!(repo.digest("v1.0.0").as_ref(), Some(&rel.v100));
    assert_eq!(repo.digest("1.0").as_ref(), Some(&rel.v100));
    assert!(
        stdout.contains("1.2") && stdout.contains("left in place"),
        "the plan lists the tags left in place: {stdout}"
    );
    if index {
        // The index itself, not one platform's manifest, and byte for byte.
        let (bytes, content_type) = reg.get_manifest(REPO, "latest").unwrap();
        assert_eq!(support::sha256_digest(&bytes), rel.v110);
        assert_eq!(content_type, support::push::OCI_INDEX);
    }
    assert_rolled_back(&env, &[repo.name()], &[rel.v110.as_str()]);

    // Again: nothing to do, nothing written.
    let before = env.history();
    let snapshot = repo.snapshot();
    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("nothing to do"), "{stdout}\n{stderr}");
    assert_eq!(env.history(), before, "a no-op rollback writes nothing");
    assert_eq!(repo.snapshot(), snapshot);

    // Drift: someone points `latest` at v1.2.0 again. The same command repairs it.
    reg.put_tag(REPO, "latest", &rel.v120);
    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("latest"), "{stdout}");
    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(repo.digest(tag).as_ref(), Some(&rel.v110), "tag {tag}");
    }
    let versions = env.versions();
    let v110 = entry(&versions, "v1.1.0");
    assert_eq!(v110.len(), 3, "{versions:#?}");
    assert_eq!(v110[0]["status"], "deployed");
    assert_eq!(v110[1]["status"], "superseded");
    assert_eq!(entry(&versions, "v1.2.0")[0]["status"], "rolled_back_from");
    assert_eq!(
        versions
            .iter()
            .filter(|d| d["status"] == "deployed")
            .count(),
        1
    );
}

#[test]
fn rollback_moves_every_recorded_tag_single_arch() {
    rollback_to_previous_release(false);
}

#[test]
fn rollback_moves_every_recorded_tag_multi_arch_index() {
    rollback_to_previous_release(true);
}

#[test]
fn dry_run_changes_nothing_and_lists_exactly_the_moves() {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = three_releases(&env, &[repo], false, &["stable", "1"]).remove(0);

    let history = env.history();
    let snapshot = repo.snapshot();
    let out = env.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--dry-run",
        "--format",
        "json",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let dry: Value = serde_json::from_str(&stdout).expect("plan json");
    assert_eq!(env.history(), history, "dry-run leaves the history alone");
    assert_eq!(
        repo.snapshot(),
        snapshot,
        "dry-run leaves the registry alone"
    );
    let puts = reg
        .bagboy_requests()
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .count();
    assert_eq!(puts, 0, "dry-run only reads");

    let moves = planned_moves(&dry);
    let name = repo.name();
    let expected: BTreeSet<(String, String)> = ["latest", "stable", "1"]
        .iter()
        .map(|t| (name.clone(), t.to_string()))
        .collect();
    assert_eq!(moves, expected, "{dry:#}");
    for step in dry["registries"][0]["steps"].as_array().unwrap() {
        if step["action"] == "move_tag" {
            assert_eq!(step["before"], rel.v120.as_str(), "{step}");
            assert_eq!(step["after"], rel.v110.as_str(), "{step}");
        }
    }

    let out = env.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--yes",
        "--format",
        "json",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let real: Value = serde_json::from_str(&stdout).expect("outcome json");
    assert_eq!(real["outcome"]["kind"], "rolled_back", "{real:#}");
    let done: BTreeSet<(String, String)> = real["outcome"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"] == "move_tag" && s["ok"] == true && s["undone"] == false)
        .map(|s| {
            (
                s["registry"].as_str().unwrap().to_string(),
                s["reference"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        done, moves,
        "the real run moved exactly what dry-run listed"
    );
    assert_eq!(
        real["outcome"]["steps"].as_array().unwrap().len(),
        moves.len(),
        "{real:#}"
    );
    assert_eq!(
        real["plan"]["registries"], dry["registries"],
        "the executed plan is the previewed one"
    );
    for t in ["v1.1.0", "latest", "1.1", "stable", "1"] {
        assert_eq!(repo.digest(t).as_ref(), Some(&rel.v110), "tag {t}");
    }
}

/// With the right credentials the rollback works; with a wrong password it is refused before
/// anything changes, naming the registry.
fn rollback_with_credentials(auth: Auth, user: &str, password: &str) {
    let reg = TestRegistry::start(auth);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let good = Env::new(&[repo]).with_creds(&reg.host(), user, password);
    let rel = three_releases(&good, &[repo], false, &[]).remove(0);
    // Same project, wrong password.
    let bad = good.with_creds(&reg.host(), user, "not-the-password");

    let history = bad.history();
    let snapshot = repo.snapshot();
    let out = bad.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&repo.name()),
        "the error names the registry: {stderr}"
    );
    assert!(
        stderr.contains("authentication failed") && stderr.contains("rejected"),
        "the error says what is wrong: {stderr}"
    );
    assert!(
        !stderr.contains("not-the-password") && !stdout.contains("not-the-password"),
        "the password never appears: {stderr}"
    );
    assert_eq!(bad.history(), history);
    assert_eq!(repo.snapshot(), snapshot);

    let good = bad.with_creds(&reg.host(), user, password);
    let out = good.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(repo.digest(tag).as_ref(), Some(&rel.v110), "tag {tag}");
    }
    assert_rolled_back(&good, &[repo.name()], &[rel.v110.as_str()]);
}

#[test]
fn htpasswd_registry_needs_the_right_password() {
    rollback_with_credentials(
        Auth::Htpasswd {
            user: "ci".into(),
            password: "ci-password".into(),
        },
        "ci",
        "ci-password",
    );
}

#[test]
fn token_registry_needs_the_right_password() {
    rollback_with_credentials(
        Auth::Token(TokenUser::defaults()),
        "alice",
        "alice-password",
    );
}

#[test]
fn failure_on_second_registry_puts_the_first_back() {
    let open = TestRegistry::start(Auth::None);
    let locked = TestRegistry::start(Auth::Token(TokenUser::defaults()));
    let first = Repo {
        reg: &open,
        path: REPO,
    };
    let second = Repo {
        reg: &locked,
        path: REPO,
    };
    // `reader` may pull everywhere but push nowhere on the token registry.
    let env = Env::new(&[first, second]).with_creds(&locked.host(), "reader", "reader-password");
    let moving = ["stable", "1", "edge", "prod"];
    let rels = three_releases(&env, &[first, second], false, &moving);
    let before_first = first.snapshot();
    let before_second = second.snapshot();
    for t in ["latest", "stable", "1", "edge", "prod"] {
        assert_eq!(before_first[t].as_ref(), Some(&rels[0].v120));
    }
    let history = env.history();
    let seen_first = open.bagboy_requests().len();
    let seen_second = locked.bagboy_requests().len();

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&second.name()), "{stderr}");

    // The first registry really changed, then was put back.
    let first_reqs = requests_since(&open, seen_first);
    let puts: Vec<&Request> = first_reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.is_manifest())
        .collect();
    assert!(
        !puts.is_empty() && puts.iter().all(|r| r.status == 201),
        "the first registry saw tag moves:\n{}",
        describe(&first_reqs)
    );
    assert_eq!(
        puts.len() % 2,
        0,
        "every move has its undo:\n{}",
        describe(&first_reqs)
    );
    let second_reqs = requests_since(&locked, seen_second);
    assert!(
        second_reqs
            .iter()
            .any(|r| r.method == "PUT" && r.is_manifest()),
        "the second registry was asked to move a tag:\n{}",
        describe(&second_reqs)
    );
    assert!(
        second_reqs
            .iter()
            .all(|r| !(r.method == "PUT" && r.status == 201)),
        "the second registry accepted nothing:\n{}",
        describe(&second_reqs)
    );
    assert_eq!(first.snapshot(), before_first, "first registry put back");
    assert_eq!(second.snapshot(), before_second);

    let versions = env.versions();
    assert_ne!(env.history(), history, "the attempt is recorded");
    let newest = &versions[0];
    assert_eq!(newest["version"], "v1.1.0", "{newest:#}");
    assert_eq!(newest["status"], "rollback_failed", "{newest:#}");
    assert_eq!(newest["rollback_of"], "v1.2.0", "{newest:#}");
    let v120 = entry(&versions, "v1.2.0");
    assert_eq!(v120[0]["status"], "deployed");
    assert_eq!(v120[0]["current"], true);
    let journals: Vec<_> = std::fs::read_dir(env.p.path().join(".bagboy/journal"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        journals.is_empty(),
        "no journal is kept when everything was undone: {journals:?}"
    );
}

#[test]
fn tampered_target_is_refused_unless_forced() {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = three_releases(&env, &[repo], false, &[]).remove(0);
    // Someone re-pushes v1.1.0 as a different image.
    let impostor = reg.push_image(REPO, "v1.1.0");
    assert_ne!(impostor, rel.v110);

    let history = env.history();
    let snapshot = repo.snapshot();
    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("v1.1.0") && (stderr.contains("tampered") || stderr.contains("re-pushed")),
        "{stderr}"
    );
    assert!(stderr.contains("--force"), "says how to override: {stderr}");
    assert_eq!(env.history(), history);
    assert_eq!(repo.snapshot(), snapshot);

    // The dry-run shows the same refusal and also exits 2.
    let out = env.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--dry-run",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{:?}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        plan["refusals"].to_string().contains("tampered"),
        "{plan:#}"
    );

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes", "--force"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(
            repo.digest(tag).as_ref(),
            Some(&rel.v110),
            "tag {tag} points at the recorded digest, not the impostor"
        );
    }
    assert_eq!(repo.digest("v1.2.0").as_ref(), Some(&rel.v120));
    assert_rolled_back(&env, &[repo.name()], &[rel.v110.as_str()]);
}

/// Counts what one rollback asks of the registry; returns the total.
fn minimal_requests(auth: Auth, creds: Option<(&str, &str)>, moving: &[&str]) -> usize {
    let reg = TestRegistry::start(auth);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let mut env = Env::new(&[repo]);
    if let Some((u, p)) = creds {
        env = env.with_creds(&reg.host(), u, p);
    }
    let rel = three_releases(&env, &[repo], false, moving).remove(0);
    let k = moving.len() + 1; // and `latest`
    let seen = reg.bagboy_requests().len();
    let tokens = || {
        reg.token_server
            .as_ref()
            .map_or(0, |t| t.bagboy_requests().len())
    };
    let tokens_seen = tokens();

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let reqs = requests_since(&reg, seen);
    let token_requests = tokens() - tokens_seen;
    let all = describe(&reqs);
    assert_eq!(reqs.iter().filter(|r| r.is_blob()).count(), 0, "{all}");
    let gets: Vec<&Request> = reqs
        .iter()
        .filter(|r| r.method == "GET" && r.is_manifest() && r.status == 200)
        .collect();
    assert_eq!(gets.len(), 1, "one manifest fetch:\n{all}");
    // The read of the target's version tag is the fetch: it resolves the tag and brings the
    // manifest the PUTs re-put.
    assert!(
        gets[0].path.ends_with("/manifests/v1.1.0"),
        "by the version tag:\n{all}"
    );
    let _ = &rel.v110;
    let puts = reqs
        .iter()
        .filter(|r| r.method == "PUT" && r.is_manifest() && r.status == 201)
        .count();
    assert_eq!(puts, k, "one PUT per moved tag:\n{all}");
    assert_eq!(
        reqs.iter()
            .filter(|r| r.method == "PUT" || r.method == "POST" || r.method == "PATCH")
            .count(),
        k,
        "nothing else is written:\n{all}"
    );
    for t in ["latest"].iter().chain(moving) {
        assert_eq!(repo.digest(t).as_ref(), Some(&rel.v110), "tag {t}");
    }
    let heads: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method == "HEAD" && r.status != 401)
        .map(|r| r.path.as_str())
        .collect();
    let distinct: BTreeSet<&str> = heads.iter().copied().collect();
    assert_eq!(
        heads.len(),
        distinct.len(),
        "no tag is asked about twice:\n{all}"
    );
    assert!(
        !heads.iter().any(|h| h.ends_with("/manifests/v1.1.0")),
        "the version tag read by GET is not asked about again:\n{all}"
    );
    // One HEAD per other tag that takes part: the recorded `1.1` and moved tags, and the
    // current release's own two (listed as left in place).
    assert_eq!(heads.len(), k + 1 + 2, "{all}");
    assert!(
        token_requests <= 2,
        "one token per scope (pull, then pull,push), not one per request: {token_requests}"
    );
    eprintln!(
        "rollback moving {k} tags: {} registry requests ({} answered 401), {token_requests} token requests:\n{all}",
        reqs.len(),
        reqs.iter().filter(|r| r.status == 401).count()
    );
    reqs.len()
}

#[test]
fn rollback_requests_are_minimal() {
    let anonymous = minimal_requests(Auth::None, None, &["stable", "1"]);
    let basic = minimal_requests(
        Auth::Htpasswd {
            user: "ci".into(),
            password: "ci-password".into(),
        },
        Some(("ci", "ci-password")),
        &["stable", "1"],
    );
    let token = minimal_requests(
        Auth::Token(TokenUser::defaults()),
        Some(("alice", "alice-password")),
        &["stable", "1"],
    );
    eprintln!(
        "requests per rollback (k = 3): anonymous {anonymous}, htpasswd {basic}, token {token}"
    );
}

/// Several repositories on one registry: a rollback reads every tag that takes part once
/// (the target's version tag by GET, which is also the manifest the PUTs re-put) and writes
/// each moved tag once: the floor, nothing more.
#[test]
fn multi_repo_rollback_requests_are_the_floor() {
    let reg = TestRegistry::start(Auth::None);
    let paths = ["acme/a", "acme/b", "acme/c", "acme/d"];
    let repos: Vec<Repo<'_>> = paths.iter().map(|path| Repo { reg: &reg, path }).collect();
    let env = Env::new(&repos);
    let moving = ["stable", "1"];
    let rels = three_releases(&env, &repos, false, &moving);
    let seen = reg.bagboy_requests().len();

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let reqs = requests_since(&reg, seen);
    let all = describe(&reqs);
    // Per repository: the recorded tags of v1.1.0 (v1.1.0, 1.1, latest, stable, 1) and the
    // current release's own (v1.2.0, 1.2), read once each; latest, stable and 1 moved.
    let reads_per_repo = 5 + 2;
    let moved_per_repo = 1 + moving.len();
    let floor = repos.len() * (reads_per_repo + moved_per_repo);
    assert_eq!(reqs.len(), floor, "requests against the floor:\n{all}");
    let mut distinct = BTreeSet::new();
    for r in reqs.iter().filter(|r| r.method != "PUT") {
        assert!(
            distinct.insert(r.path.clone()),
            "{} read twice:\n{all}",
            r.path
        );
    }
    for (repo, rel) in repos.iter().zip(&rels) {
        for t in ["v1.1.0", "latest", "1.1", "stable", "1"] {
            assert_eq!(
                repo.digest(t).as_ref(),
                Some(&rel.v110),
                "{} {t}",
                repo.path
            );
        }
        assert_eq!(repo.digest("v1.2.0").as_ref(), Some(&rel.v120));
    }
}

#[test]
fn partial_rollback_changes_only_the_named_registry() {
    let one = TestRegistry::start(Auth::None);
    let two = TestRegistry::start(Auth::None);
    let first = Repo {
        reg: &one,
        path: REPO,
    };
    let second = Repo {
        reg: &two,
        path: "acme/other",
    };
    let env = Env::new(&[first, second]);
    let rels = three_releases(&env, &[first, second], false, &["stable"]);
    let untouched = first.snapshot();
    let seen = one.bagboy_requests().len();

    let out = env.run(&[
        "rollback",
        "--version",
        "v1.1.0",
        "--yes",
        "--registry",
        &second.name(),
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        first.snapshot(),
        untouched,
        "the other registry is untouched"
    );
    assert!(
        requests_since(&one, seen).is_empty(),
        "the other registry is not even asked:\n{}",
        describe(&requests_since(&one, seen))
    );
    for t in ["v1.1.0", "latest", "1.1", "stable"] {
        assert_eq!(second.digest(t).as_ref(), Some(&rels[1].v110), "tag {t}");
    }
    assert_eq!(first.digest("latest").as_ref(), Some(&rels[0].v120));
    let versions = env.versions();
    let newest = &versions[0];
    assert_eq!(newest["version"], "v1.1.0", "{newest:#}");
    assert_eq!(newest["rollback_of"], "v1.2.0", "{newest:#}");
    let registries: Vec<&str> = newest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["registry"].as_str().unwrap())
        .collect();
    assert_eq!(
        registries,
        [second.name()],
        "the entry does not claim the registry it did not touch: {newest:#}"
    );
    assert!(
        newest["notes"]
            .as_str()
            .unwrap_or_default()
            .contains("partial"),
        "{newest:#}"
    );
}

/// A hand-written history over releases pushed to `repo`: v1.0.0, v1.1.0 (with `v110_extra`
/// lines), a failed v1.1.5, and v1.2.0 deployed. Returns the digests of v1.1.0 and v1.2.0.
fn history_with_failed_entry(env: &Env, repo: Repo<'_>, v110_extra: &str) -> Releases {
    let v100 = repo.push_release("v1.0.0", &["1.0"], false);
    let v110 = repo.push_release("v1.1.0", &["1.1"], false);
    let v115 = repo.push_release("v1.1.5", &[], false);
    let v120 = repo.push_release("v1.2.0", &["latest", "1.2"], false);
    let name = repo.name();
    let pkg = |digest: &str, tags: &str| {
        format!(
            "    packages:\n      - format: docker\n        registry: \"{name}\"\n        digest: \"{digest}\"\n        tags: [{tags}]\n"
        )
    };
    let mut yaml = String::from("deployments:\n");
    yaml.push_str(
        "  - version: \"v1.2.0\"\n    timestamp: \"2026-01-04T00:00:00Z\"\n    status: deployed\n",
    );
    yaml.push_str(&pkg(&v120, "\"v1.2.0\", \"latest\", \"1.2\""));
    yaml.push_str(
        "  - version: \"v1.1.5\"\n    timestamp: \"2026-01-03T00:00:00Z\"\n    status: failed\n",
    );
    yaml.push_str(&pkg(&v115, "\"v1.1.5\", \"latest\""));
    yaml.push_str("  - version: \"v1.1.0\"\n    timestamp: \"2026-01-02T00:00:00Z\"\n    status: superseded\n");
    yaml.push_str(v110_extra);
    yaml.push_str(&pkg(&v110, "\"v1.1.0\", \"latest\", \"1.1\""));
    yaml.push_str("  - version: \"v1.0.0\"\n    timestamp: \"2026-01-01T00:00:00Z\"\n    status: superseded\n");
    yaml.push_str(&pkg(&v100, "\"v1.0.0\", \"latest\", \"1.0\""));
    env.p.write_history(&yaml);
    Releases { v100, v110, v120 }
}

#[test]
fn default_target_skips_failed_entries() {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = history_with_failed_entry(&env, repo, "");

    let out = env.run(&["rollback", "--yes"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("v1.2.0 → v1.1.0"), "{stdout}");
    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(repo.digest(tag).as_ref(), Some(&rel.v110), "tag {tag}");
    }
    assert_rolled_back(&env, &[repo.name()], &[rel.v110.as_str()]);
    let versions = env.versions();
    assert_eq!(entry(&versions, "v1.1.5")[0]["status"], "failed");
}

#[test]
fn failed_or_unsafe_targets_need_force() {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = history_with_failed_entry(&env, repo, "    rollback_safe: false\n");
    let history = env.history();
    let snapshot = repo.snapshot();

    for (args, needle) in [
        (vec!["--version", "v1.1.0"], "rollback_safe: false"),
        (vec!["--version", "v1.1.5"], "failed"),
        // The default target is the newest earlier entry that did not fail: v1.1.0, which is
        // unsafe. It is refused, not silently passed over for an even older release.
        (vec![], "rollback_safe: false"),
    ] {
        let out = env
            .cmd()
            .arg("rollback")
            .args(&args)
            .arg("--yes")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(needle) && stderr.contains("--force"),
            "{args:?}: {stderr}"
        );
        assert_eq!(env.history(), history, "{args:?}");
        assert_eq!(repo.snapshot(), snapshot, "{args:?}");
    }

    let out = env.run(&["rollback", "--version", "v1.1.0", "--yes", "--force"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    for tag in ["v1.1.0", "latest", "1.1"] {
        assert_eq!(repo.digest(tag).as_ref(), Some(&rel.v110), "tag {tag}");
    }
    assert_eq!(repo.digest("v1.0.0").as_ref(), Some(&rel.v100));
    assert_rolled_back(&env, &[repo.name()], &[rel.v110.as_str()]);
}

#[test]
fn without_a_terminal_and_without_yes_it_refuses() {
    let reg = TestRegistry::start(Auth::None);
    let repo = Repo {
        reg: &reg,
        path: REPO,
    };
    let env = Env::new(&[repo]);
    let rel = three_releases(&env, &[repo], false, &[]).remove(0);
    let history = env.history();
    let snapshot = repo.snapshot();
    let seen = reg.bagboy_requests().len();

    for args in [vec!["rollback", "--version", "v1.1.0"], vec!["rollback"]] {
        let out = env.cmd().args(&args).write_stdin("y\n").output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains("--yes"), "{args:?}: {stderr}");
        assert!(
            stdout.contains("v1.2.0 → v1.1.0"),
            "the plan that would run is shown: {stdout}"
        );
        assert_eq!(env.history(), history, "{args:?}");
        assert_eq!(repo.snapshot(), snapshot, "{args:?}");
    }
    let writes = requests_since(&reg, seen)
        .into_iter()
        .filter(|r| r.method != "GET" && r.method != "HEAD")
        .count();
    assert_eq!(writes, 0);
    assert_eq!(repo.digest("latest").as_ref(), Some(&rel.v120));
}
