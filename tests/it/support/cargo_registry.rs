//! `TestCargoRegistry`: a real cargo registry (kellnr 6.6.0, installed by the test command
//! under /opt/bagboy-cargo-registry) per test on an ephemeral loopback port, with its own data
//! directory, an admin token set at start, and the real `cargo` publishing to it and resolving
//! from it in a `CARGO_HOME` of the test's own.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const NAME: &str = "kellnr";

pub fn kellnr_bin() -> PathBuf {
    let dir = std::env::var("BAGBOY_CARGO_REGISTRY_DIR")
        .unwrap_or_else(|_| "/opt/bagboy-cargo-registry".into());
    Path::new(&dir).join("bin/kellnr")
}

pub struct TestCargoRegistry {
    child: Child,
    pub port: u16,
    /// The admin's token (owner of everything it publishes).
    pub token: String,
    pub dir: tempfile::TempDir,
    http: reqwest::blocking::Client,
}

impl Drop for TestCargoRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl TestCargoRegistry {
    pub fn start() -> TestCargoRegistry {
        Self::start_behind(|_| None)
    }

    /// A registry whose clients reach it at another port (a proxy in front of it): `origin`
    /// gets the registry's own address and returns the port clients use, which the index's
    /// `config.json` then names as the API.
    pub fn start_behind(
        origin: impl FnOnce(std::net::SocketAddr) -> Option<u16>,
    ) -> TestCargoRegistry {
        Self::start_with(origin, &[])
    }

    /// A registry that wants a token for every read (`auth_required`), the index included.
    pub fn start_auth_required() -> TestCargoRegistry {
        Self::start_with(|_| None, &[("KELLNR_REGISTRY__AUTH_REQUIRED", "true")])
    }

    fn start_with(
        origin: impl FnOnce(std::net::SocketAddr) -> Option<u16>,
        env: &[(&str, &str)],
    ) -> TestCargoRegistry {
        let bin = kellnr_bin();
        assert!(
            bin.exists(),
            "{} missing: run ./scripts/test.sh (it builds kellnr 6.6.0 from crates.io)",
            bin.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let token = format!("admintoken{}", &super::random_hex()[..24]);
        let port = free_port();
        let origin_port =
            origin(std::net::SocketAddr::from(([127, 0, 0, 1], port))).unwrap_or(port);
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(dir.path().join("kellnr.log")).unwrap();
        let child = Command::new(&bin)
            .arg("start")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("KELLNR_REGISTRY__DATA_DIR", &data)
            .env("KELLNR_LOCAL__IP", "127.0.0.1")
            .env("KELLNR_LOCAL__PORT", port.to_string())
            .env("KELLNR_ORIGIN__HOSTNAME", "127.0.0.1")
            .env("KELLNR_ORIGIN__PORT", origin_port.to_string())
            .env("KELLNR_SETUP__ADMIN_TOKEN", &token)
            .env("KELLNR_SETUP__ADMIN_PWD", "admin-password-1")
            .env("KELLNR_DOCS__ENABLED", "false")
            .env("KELLNR_PROXY__ENABLED", "false")
            .env("KELLNR_LOG__LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start kellnr");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let mut reg = TestCargoRegistry {
            child,
            port,
            token,
            dir,
            http,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if reg
                .http
                .get(format!("{}/api/v1/health", reg.url()))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return reg;
            }
            let exited = matches!(reg.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let log =
                    std::fs::read_to_string(reg.dir.path().join("kellnr.log")).unwrap_or_default();
                panic!("kellnr did not start on {port}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The index URL as cargo's config and bagboy.yaml write it.
    pub fn index(&self) -> String {
        format!("sparse+http://127.0.0.1:{}/api/v1/crates/", self.port)
    }

    /// A `CARGO_HOME` under `at` that knows this registry as `kellnr`, with `token` in its
    /// credentials.toml (none: no credentials file).
    pub fn cargo_home(&self, at: &Path, token: Option<&str>) -> PathBuf {
        self.cargo_home_for(at, token, &self.index())
    }

    /// The same, with the registry known at `index` (a proxy's address).
    pub fn cargo_home_for(&self, at: &Path, token: Option<&str>, index: &str) -> PathBuf {
        let home = at.join("cargo-home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(
            home.join("config.toml"),
            format!("[registries.{NAME}]\nindex = \"{index}\"\n\n[registry]\nglobal-credential-providers = [\"cargo:token\"]\n\n[net]\nretry = 0\n"),
        )
        .unwrap();
        match token {
            Some(t) => std::fs::write(
                home.join("credentials.toml"),
                format!("[registries.{NAME}]\ntoken = \"{t}\"\n"),
            )
            .unwrap(),
            None => {
                let _ = std::fs::remove_file(home.join("credentials.toml"));
            }
        }
        home
    }

    /// `cargo publish` of a library crate `name@version` (optionally depending on other
    /// crates of this registry, `(name, requirement)`).
    pub fn publish(&self, name: &str, version: &str, deps: &[(&str, &str)]) {
        let work = self.dir.path().join(format!("src-{name}-{version}"));
        std::fs::create_dir_all(work.join("src")).unwrap();
        let mut manifest = format!(
            "[package]\nname = \"{name}\"\nversion = \"{version}\"\nedition = \"2021\"\ndescription = \"bagboy test crate\"\nlicense = \"MIT\"\npublish = [\"{NAME}\"]\n\n[dependencies]\n"
        );
        for (d, req) in deps {
            manifest.push_str(&format!(
                "{d} = {{ version = \"{req}\", registry = \"{NAME}\" }}\n"
            ));
        }
        std::fs::write(work.join("Cargo.toml"), manifest).unwrap();
        std::fs::write(
            work.join("src/lib.rs"),
            format!("pub const VERSION: &str = \"{version}\";\n"),
        )
        .unwrap();
        let home = self.cargo_home(self.dir.path(), Some(&self.token));
        let out = self
            .cargo(&home, &work)
            .args([
                "publish",
                "--registry",
                NAME,
                "--no-verify",
                "--allow-dirty",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo publish {name}@{version}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // kellnr indexes a published crate asynchronously on some versions: wait for it.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.versions(name).iter().any(|(v, _)| v == version) {
            assert!(
                Instant::now() < deadline,
                "{name}@{version} never reached the index"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The real `cargo` with `CARGO_HOME=home`, run in `dir`, offline from everything but
    /// this registry.
    pub fn cargo(&self, home: &Path, dir: &Path) -> Command {
        let mut c = Command::new("cargo");
        c.current_dir(dir)
            .env("CARGO_HOME", home)
            .env("CARGO_TARGET_DIR", self.dir.path().join("target"))
            .env_remove("CARGO_REGISTRY_TOKEN")
            .env("CARGO_TERM_COLOR", "never")
            .stdin(Stdio::null());
        if let Some(h) = std::env::var_os("RUSTUP_HOME").or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".rustup").into_os_string())
        }) {
            c.env("RUSTUP_HOME", h);
        }
        c
    }

    /// `(version, yanked)` of a crate as the sparse index serves it to cargo.
    pub fn versions(&self, name: &str) -> Vec<(String, bool)> {
        let n = name.to_ascii_lowercase();
        let path = match n.len() {
            1 => format!("1/{n}"),
            2 => format!("2/{n}"),
            3 => format!("3/{}/{n}", &n[..1]),
            _ => format!("{}/{}/{n}", &n[..2], &n[2..4]),
        };
        let resp = self
            .http
            .get(format!("{}/api/v1/crates/{path}", self.url()))
            .header("Authorization", &self.token)
            .send()
            .unwrap();
        if !resp.status().is_success() {
            return Vec::new();
        }
        resp.text()
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["vers"].as_str().unwrap().to_string(),
                    v["yanked"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    }

    pub fn yanked(&self, name: &str, version: &str) -> bool {
        self.versions(name).iter().any(|(v, y)| v == version && *y)
    }

    /// Yank (or unyank) with the admin token, as `cargo yank` does.
    pub fn set_yanked(&self, name: &str, version: &str, yanked: bool) {
        let url = format!(
            "{}/api/v1/crates/{name}/{version}/{}",
            self.url(),
            if yanked { "yank" } else { "unyank" }
        );
        let req = if yanked {
            self.http.delete(url)
        } else {
            self.http.put(url)
        };
        let resp = req.header("Authorization", &self.token).send().unwrap();
        assert!(resp.status().is_success(), "{}", resp.text().unwrap());
    }

    fn login(&self, user: &str, pwd: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/api/v1/auth/login", self.url()))
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"user": user, "pwd": pwd}).to_string())
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "login {user}: {}",
            resp.status()
        );
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A second user, owner of nothing, and a token of theirs: it may read and publish new
    /// crates but not yank the admin's.
    pub fn user_token(&self, name: &str) -> String {
        let admin = self.login("admin", "admin-password-1");
        let pwd = "user-password-0001";
        let resp = self
            .http
            .post(format!("{}/api/v1/users", self.url()))
            .header("Content-Type", "application/json")
            .header("Cookie", &admin)
            .body(serde_json::json!({"name": name, "pwd1": pwd, "pwd2": pwd}).to_string())
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "add user: {}", resp.status());
        let cookie = self.login(name, pwd);
        let resp = self
            .http
            .post(format!("{}/api/v1/users/me/tokens", self.url()))
            .header("Content-Type", "application/json")
            .header("Cookie", &cookie)
            .body(serde_json::json!({"name": "ci"}).to_string())
            .send()
            .unwrap();
        assert!(resp.status().is_success(), "add token: {}", resp.status());
        let v: Value = serde_json::from_str(&resp.text().unwrap()).unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

/// A fresh consumer project depending on `deps` (`(crate, requirement)`) from the registry:
/// `cargo generate-lockfile`, then the version Cargo.lock chose for each.
pub fn resolve(
    reg: &TestCargoRegistry,
    at: &Path,
    deps: &[(&str, &str)],
) -> Result<Vec<(String, String)>, String> {
    let work = at.join(format!("consumer-{}", &super::random_hex()[..8]));
    std::fs::create_dir_all(work.join("src")).unwrap();
    let mut manifest =
        "[package]\nname = \"consumer\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n".to_string();
    for (d, req) in deps {
        manifest.push_str(&format!(
            "{d} = {{ version = \"{req}\", registry = \"{NAME}\" }}\n"
        ));
    }
    std::fs::write(work.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(work.join("src/lib.rs"), "").unwrap();
    let home = reg.cargo_home(&work, None);
    let out = reg
        .cargo(&home, &work)
        .arg("generate-lockfile")
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(locked(&work))
}

/// `(name, version)` of every package in `dir/Cargo.lock`.
pub fn locked(dir: &Path) -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(dir.join("Cargo.lock")).unwrap();
    let mut out = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
            out.push((n, v.trim_matches('"').to_string()));
        }
    }
    out
}

/// kellnr behind a fault proxy that its index names as the API (cargo and bagboy go through
/// it, so the proxy sees and can fail every request).
pub fn behind_proxy() -> (TestCargoRegistry, super::proxy::FaultProxy) {
    let mut proxy = None;
    let reg = TestCargoRegistry::start_behind(|upstream: std::net::SocketAddr| {
        let p = super::proxy::FaultProxy::start(upstream);
        let port = p.addr().port();
        proxy = Some(p);
        Some(port)
    });
    (reg, proxy.expect("proxy"))
}

/// The proxied registry's index URL.
pub fn proxied_index(proxy: &super::proxy::FaultProxy) -> String {
    format!("sparse+http://{}/api/v1/crates/", proxy.addr())
}
