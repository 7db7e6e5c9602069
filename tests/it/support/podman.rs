//! A real Docker Engine API per test: `podman system service` (Debian `podman`) with its own
//! storage, runtime config and socket, and images the test builds from Debian's static
//! busybox and pushes to the test's `docker-registry`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Podman {
    dir: tempfile::TempDir,
    child: Child,
}

impl Podman {
    fn global(dir: &Path) -> Vec<String> {
        vec![
            "--root".into(),
            dir.join("root").display().to_string(),
            "--runroot".into(),
            dir.join("run").display().to_string(),
            "--storage-driver".into(),
            "vfs".into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            "/usr/sbin/runc".into(),
        ]
    }

    /// `podman` with this instance's storage and configuration.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(Self::global(self.dir.path()))
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.path().join("registries.conf"),
            )
            .stdin(Stdio::null());
        c
    }

    /// Start the API service; `Err(why)` when podman cannot run on this machine.
    pub fn start(registry_host: &str) -> Result<Podman, String> {
        if Command::new("podman").arg("--version").output().is_err() {
            return Err("podman is not installed (scripts/test.sh installs it)".into());
        }
        let dir = tempfile::tempdir().unwrap();
        // The sandbox may refuse the default rlimits podman asks runc to set: ask for less.
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\nnetns = \"bridge\"\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("registries.conf"),
            format!("unqualified-search-registries = []\n[[registry]]\nlocation = \"{registry_host}\"\ninsecure = true\n"),
        )
        .unwrap();
        let sock = dir.path().join("podman.sock");
        let child = Command::new("podman")
            .args(Self::global(dir.path()))
            .env("CONTAINERS_CONF", dir.path().join("containers.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                dir.path().join("registries.conf"),
            )
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("podman system service: {e}"))?;
        let p = Podman { dir, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !sock.exists() {
            if Instant::now() > deadline {
                return Err("podman system service did not open its socket in 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Build an image from Debian's static busybox with `cmd`, push it as `reference`;
    /// returns the pushed manifest digest. `Err(why)` when the engine cannot build here.
    pub fn build_and_push(&self, reference: &str, cmd: &[&str]) -> Result<String, String> {
        let ctx = self.dir.path().join(format!("ctx-{}", super::random_hex()));
        std::fs::create_dir_all(ctx.join("www")).unwrap();
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("busybox-static is not installed")?;
        std::fs::copy(busybox, ctx.join("busybox")).unwrap();
        std::fs::write(ctx.join("www/index.html"), "ok\n").unwrap();
        let cmd_json = serde_json::to_string(cmd).unwrap();
        std::fs::write(
            ctx.join("Containerfile"),
            format!("FROM scratch\nCOPY busybox /bin/busybox\nCOPY www /www\nEXPOSE 8080\nCMD {cmd_json}\n"),
        )
        .unwrap();
        let out = self
            .cmd()
            .args(["build", "-q", "-t", reference])
            .arg(&ctx)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "podman build: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let digest_file = ctx.join("digest");
        let out = self
            .cmd()
            .args(["push", "-q", "--tls-verify=false", "--digestfile"])
            .arg(&digest_file)
            .arg(reference)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "podman push: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(std::fs::read_to_string(digest_file)
            .unwrap()
            .trim()
            .to_string())
    }

    /// Names of every container the engine has (running or not).
    pub fn containers(&self) -> Vec<String> {
        let out = self
            .cmd()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Whether a container can start here at all (the sandbox may forbid it).
    pub fn can_run(&self, image: &str) -> Result<(), String> {
        let out = self
            .cmd()
            .args(["run", "--rm", image, "/bin/busybox", "true"])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // vfs layers are plain directories; the temp dir takes them with it.
    }
}
