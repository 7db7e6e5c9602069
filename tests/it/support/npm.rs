//! `TestNpm`: a real npm registry (Verdaccio, installed by the test command) per test on an
//! ephemeral loopback port, a user with a token, and `npm publish` of real tarballs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn verdaccio_bin() -> PathBuf {
    let dir =
        std::env::var("BAGBOY_VERDACCIO_DIR").unwrap_or_else(|_| "/opt/bagboy-verdaccio".into());
    Path::new(&dir).join("node_modules/.bin/verdaccio")
}

pub struct TestNpm {
    child: Child,
    pub port: u16,
    pub token: String,
    dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Drop for TestNpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestNpm {
    pub fn start() -> TestNpm {
        let bin = verdaccio_bin();
        assert!(
            bin.exists(),
            "{} missing: run ./scripts/test.sh (it installs verdaccio from the npm registry)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = dir.path().join("config.yaml");
        std::fs::write(
            &cfg,
            format!(
                "storage: {storage}\nauth:\n  htpasswd:\n    file: {htpasswd}\n    max_users: 100\nuplinks: {{}}\npackages:\n  '@*/*':\n    access: $all\n    publish: $authenticated\n    unpublish: $authenticated\n  '**':\n    access: $all\n    publish: $authenticated\n    unpublish: $authenticated\nweb:\n  enable: false\nlog: {{ type: stdout, format: pretty, level: warn }}\nlisten: 127.0.0.1:{port}\n",
                storage = dir.path().join("storage").display(),
                htpasswd = dir.path().join("htpasswd").display(),
            ),
        )
        .unwrap();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start verdaccio");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut npm = TestNpm {
            child,
            port,
            token: String::new(),
            dir,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if npm
                .http
                .get(format!("{}-/ping", npm.url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "verdaccio did not start on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        npm.token = npm.add_user("ci", "ci-password-0001");
        npm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// A user (npm's `adduser` API); returns its token.
    pub fn add_user(&self, name: &str, password: &str) -> String {
        let resp = self
            .http
            .put(format!("{}-/user/org.couchdb.user:{name}", self.url()))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"name": name, "password": password}).to_string())
            .send()
            .unwrap();
        let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
        v["token"].as_str().expect("a token").to_string()
    }

    /// An `.npmrc` holding this registry's token (as setup-node writes it).
    pub fn npmrc(&self, at: &Path) -> PathBuf {
        let p = at.join("user.npmrc");
        std::fs::write(
            &p,
            format!("//127.0.0.1:{}/:_authToken={}\n", self.port, self.token),
        )
        .unwrap();
        p
    }

    /// `npm publish` of `name@version` (a real tarball npm packs).
    pub fn publish(&self, name: &str, version: &str) {
        let work = self
            .dir
            .path()
            .join(format!("pkg-{}-{version}", name.replace('/', "_")));
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(
            work.join("package.json"),
            serde_json::json!({"name": name, "version": version, "main": "index.js", "license": "MIT"}).to_string(),
        )
        .unwrap();
        std::fs::write(
            work.join("index.js"),
            format!("module.exports = '{version}';\n"),
        )
        .unwrap();
        let rc = self.npmrc(&work);
        let out = Command::new("npm")
            .args(["publish", "--registry", &self.url(), "--userconfig"])
            .arg(&rc)
            .args([
                "--access",
                "public",
                "--no-audit",
                "--no-fund",
                "--loglevel",
                "error",
            ])
            .current_dir(&work)
            .env("npm_config_cache", self.dir.path().join("npm-cache"))
            .output()
            .expect("npm");
        assert!(
            out.status.success(),
            "npm publish {name}@{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn packument(&self, name: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{}", self.url(), name.replacen('/', "%2f", 1)))
            .send()
            .unwrap();
        serde_json::from_str(&r.text().unwrap()).unwrap()
    }

    pub fn dist_tag(&self, name: &str, tag: &str) -> Option<String> {
        self.packument(name)["dist-tags"][tag]
            .as_str()
            .map(str::to_string)
    }

    pub fn deprecated(&self, name: &str, version: &str) -> Option<String> {
        self.packument(name)["versions"][version]["deprecated"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Point `tag` of `name` at `version` (what `npm dist-tag add` sends).
    pub fn set_dist_tag(&self, name: &str, tag: &str, version: &str) {
        let r = self
            .http
            .put(format!(
                "{}-/package/{}/dist-tags/{tag}",
                self.url(),
                name.replacen('/', "%2f", 1)
            ))
            .bearer_auth(&self.token)
            .header("Content-Type", "application/json")
            .body(serde_json::json!(version).to_string())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "dist-tag {tag}: {}", r.status());
    }

    /// The real npm CLI, as a consumer runs it: `npm <args>` in `dir` against this registry,
    /// with a cache of its own (no answer from an earlier run). Returns stdout and stderr.
    pub fn npm(&self, dir: &Path, args: &[&str]) -> (String, String) {
        std::fs::create_dir_all(dir).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let out = Command::new("npm")
            .args(args)
            .args(["--registry", &self.url(), "--no-audit", "--no-fund"])
            .current_dir(dir)
            .env("npm_config_cache", cache.path())
            .env("npm_config_userconfig", dir.join("none.npmrc"))
            .env("npm_config_update_notifier", "false")
            .output()
            .expect("npm");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "npm {args:?}: {stderr}");
        (stdout, stderr)
    }

    /// `npm install <spec>` in a fresh project: the version that landed in node_modules and
    /// what npm printed on stderr (its `deprecated` warnings).
    pub fn install(&self, spec: &str) -> (String, String) {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("consumer");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(
            project.join("package.json"),
            r#"{ "name": "consumer", "version": "1.0.0", "private": true }"#,
        )
        .unwrap();
        let (_, stderr) = self.npm(&project, &["install", spec]);
        let name = spec[1..]
            .find('@')
            .map(|at| &spec[..at + 1])
            .unwrap_or(spec);
        let manifest: Value = serde_json::from_str(
            &std::fs::read_to_string(project.join("node_modules").join(name).join("package.json"))
                .unwrap(),
        )
        .unwrap();
        (manifest["version"].as_str().unwrap().to_string(), stderr)
    }
}
