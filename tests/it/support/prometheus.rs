//! A real Prometheus (Debian `prometheus`) on an ephemeral loopback port, scraping one target
//! every second, with its own data directory; killed when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Prometheus {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Start scraping `target` (host:port) every second; ready once `ready_query` returns a
    /// series.
    pub fn start(target: &str, ready_query: &str) -> Prometheus {
        let bin = "/usr/bin/prometheus";
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} missing: apt-get install -y prometheus"
        );
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let prom = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let mut url =
                reqwest::Url::parse(&format!("http://127.0.0.1:{port}/api/v1/query")).unwrap();
            url.query_pairs_mut().append_pair("query", ready_query);
            if let Ok(r) = reqwest::blocking::get(url) {
                if let Ok(v) = r
                    .text()
                    .map(|t| serde_json::from_str::<serde_json::Value>(&t).unwrap_or_default())
                {
                    if v["data"]["result"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty())
                    {
                        return prom;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("Prometheus did not scrape {target} in time");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
