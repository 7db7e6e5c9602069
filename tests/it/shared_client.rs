//! One HTTP layer: a 50-registry rollback on one real `docker-registry` (through a counting
//! proxy) builds one HTTP client, and pooled connections carry many requests each.

use crate::support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use support::cli::Project;
use support::proxy::FaultProxy;
use support::{Auth, TestRegistry};

const REGISTRIES: usize = 50;

#[test]
fn fifty_registries_share_one_client_and_pooled_connections() {
    let reg = TestRegistry::start(Auth::None);
    let proxy = FaultProxy::start(SocketAddr::from(([127, 0, 0, 1], reg.port())));
    let project = Project::new();
    std::fs::create_dir_all(project.path().join("docker-config")).unwrap();
    let mut yaml = String::from("name: myapp\nregistries:\n");
    let repos: Vec<String> = (0..REGISTRIES).map(|i| format!("acme/app{i}")).collect();
    for r in &repos {
        yaml.push_str(&format!(
            "  - format: docker\n    registry: \"{}/{r}\"\n    insecure: true\n",
            proxy.addr()
        ));
    }
    project.write("bagboy.yaml", &yaml);
    let run = |args: &[&str]| {
        let out = Command::new(assert_cmd::cargo::cargo_bin("bagboy"))
            .current_dir(project.path())
            .args(args)
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", project.path().join("docker-config"))
            .env("BAGBOY_HTTP_RETRIES", "0")
            .env_remove("BAGBOY_LOG")
            .env_remove("RUST_LOG")
            .env_remove("BAGBOY_REGISTRY_USERNAME")
            .env_remove("BAGBOY_REGISTRY_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        stderr
    };
    let mut v100 = Vec::new();
    for v in ["v1.0.0", "v1.1.0"] {
        for r in &repos {
            let d = reg.push_image(r, v);
            reg.put_tag(r, "latest", &d);
            if v == "v1.0.0" {
                v100.push(d);
            }
        }
        run(&["record", "--version", v]);
    }

    let (requests0, connections0) = (proxy.count(), proxy.connections());
    let stderr = run(&["-vv", "rollback", "--version", "v1.0.0", "--yes"]);
    let requests = proxy.count() - requests0;
    let connections = proxy.connections() - connections0;
    for (r, d) in repos.iter().zip(&v100) {
        assert_eq!(reg.tag_digest(r, "latest").as_ref(), Some(d), "{r}");
    }
    // One client per process, however many registries (the debug line is the process's
    // own count, logged after planning and after applying).
    assert!(
        stderr.contains("clients=1") && !stderr.contains("clients=2"),
        "{stderr}"
    );
    eprintln!(
        "50-registry rollback: {requests} requests over {connections} connections ({:.1} per connection)",
        requests as f64 / connections as f64
    );
    assert!(requests >= 3 * REGISTRIES, "{requests} requests");
    // Pooled: the connections are bounded by the concurrency (8), not by the registries
    // (50) or the requests; allow for the pool replacing a connection now and then.
    assert!(
        connections <= 24,
        "{connections} connections for {requests} requests"
    );
}
