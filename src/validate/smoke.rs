//! Smoke test: pull the target image by digest, start it with the configured command and/or
//! an HTTP probe on a published loopback port, and remove it afterwards. Works against the
//! Docker Engine and `podman system service` (`DOCKER_HOST`, default
//! `unix:///var/run/docker.sock`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;

use crate::health::config::Smoke;

/// A server that is still up after this long (and has no probe) passes.
const SETTLE: Duration = Duration::from_secs(5);

fn engine_host() -> String {
    std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into())
}

fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(400)
        .collect::<String>()
        .trim()
        .to_string()
}

/// Run the smoke test of `image` (`repo@sha256:…`). `Ok(what passed)` or `Err(why not)`.
pub async fn run(image: &str, s: &Smoke, name: &str) -> Result<String, String> {
    let host = engine_host();
    let docker = Docker::connect_with_defaults()
        .map_err(|e| format!("no Docker engine at {host}: {}", clean(&e.to_string())))?;
    tokio::time::timeout(Duration::from_secs(10), docker.ping())
        .await
        .map_err(|_| format!("the Docker engine at {host} does not answer"))?
        .map_err(|e| {
            format!(
                "no Docker engine answers at {host}: {}",
                clean(&e.to_string())
            )
        })?;
    let deadline = Instant::now() + s.timeout + Duration::from_secs(120);
    // Pull by digest: exactly the manifest the rollback would point the tags at.
    let pull = async {
        let mut stream = docker.create_image(
            Some(
                CreateImageOptionsBuilder::default()
                    .from_image(image)
                    .build(),
            ),
            None,
            None,
        );
        while let Some(item) = stream.next().await {
            item.map_err(|e| format!("pulling {image}: {}", clean(&e.to_string())))?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout_at(deadline.into(), pull)
        .await
        .map_err(|_| format!("pulling {image} took too long"))??;

    let mut config = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: s.command.clone(),
        labels: Some(HashMap::from([(
            "bagboy".to_string(),
            "smoke-test".to_string(),
        )])),
        ..Default::default()
    };
    if let Some((port, _)) = &s.http {
        let key = format!("{port}/tcp");
        config.exposed_ports = Some(vec![key.clone()]);
        config.host_config = Some(HostConfig {
            port_bindings: Some(HashMap::from([(
                key,
                Some(vec![PortBinding {
                    host_ip: Some("127.0.0.1".into()),
                    host_port: Some(String::new()),
                }]),
            )])),
            ..Default::default()
        });
    }
    let created = docker
        .create_container(
            Some(CreateContainerOptionsBuilder::default().name(name).build()),
            config,
        )
        .await
        .map_err(|e| format!("creating the container: {}", clean(&e.to_string())))?;
    let id = created.id;
    let result = exercise(&docker, &id, s).await;
    let _ = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await;
    result
}

async fn exercise(docker: &Docker, id: &str, s: &Smoke) -> Result<String, String> {
    docker
        .start_container(id, None)
        .await
        .map_err(|e| format!("starting the container: {}", clean(&e.to_string())))?;
    let started = Instant::now();
    if let Some((port, path)) = &s.http {
        let info = docker
            .inspect_container(id, None)
            .await
            .map_err(|e| clean(&e.to_string()))?;
        let host_port = info
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|p| p.get(&format!("{port}/tcp")).cloned().flatten())
            .and_then(|b| b.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| format!("the engine published no host port for {port}/tcp"))?;
        let url = format!("http://127.0.0.1:{host_port}{path}");
        let mut last = String::from("no answer");
        while started.elapsed() < s.timeout {
            // The probe loop is the retry: one request per round.
            match crate::http::send(&crate::http::RetryPolicy::NONE, |client| {
                client.get(&url).timeout(Duration::from_secs(5))
            })
            .await
            {
                Ok(r) if r.status().is_success() => {
                    return Ok(format!(
                        "{path} on {port}/tcp answered {} after {} ms",
                        r.status().as_u16(),
                        started.elapsed().as_millis()
                    ))
                }
                Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
                Err(_) => {}
            }
            if let Ok(i) = docker.inspect_container(id, None).await {
                if i.state.and_then(|s| s.running) == Some(false) {
                    return Err(format!(
                        "the container exited before {path} answered{}",
                        logs(docker, id).await
                    ));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        return Err(format!(
            "{path} on {port}/tcp did not answer 2xx within {} s (last: {last}){}",
            s.timeout.as_secs(),
            logs(docker, id).await
        ));
    }
    // No probe: the command's exit status decides (a server still up after a while passes).
    let wait_for = if s.command.is_some() {
        s.timeout
    } else {
        SETTLE.min(s.timeout)
    };
    let mut wait = docker.wait_container(
        id,
        Some(
            WaitContainerOptionsBuilder::default()
                .condition("not-running")
                .build(),
        ),
    );
    match tokio::time::timeout(wait_for, wait.next()).await {
        Ok(Some(Ok(r))) if r.status_code == 0 => Ok("exited 0".into()),
        Ok(Some(Ok(r))) => Err(format!(
            "exited {}{}",
            r.status_code,
            logs(docker, id).await
        )),
        Ok(Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. }))) => {
            Err(format!("exited {code}{}", logs(docker, id).await))
        }
        Ok(Some(Err(e))) => Err(clean(&e.to_string())),
        Ok(None) => Err("the engine stopped answering".into()),
        Err(_) if s.command.is_none() => {
            Ok(format!("still running after {} s", wait_for.as_secs()))
        }
        Err(_) => Err(format!(
            "did not finish within {} s{}",
            wait_for.as_secs(),
            logs(docker, id).await
        )),
    }
}

/// The container's last lines of output, for the failure message.
async fn logs(docker: &Docker, id: &str) -> String {
    let mut out = String::new();
    let mut s = docker.logs(
        id,
        Some(
            LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .tail("5")
                .build(),
        ),
    );
    while let Ok(Some(Ok(l))) = tokio::time::timeout(Duration::from_secs(2), s.next()).await {
        out.push_str(&l.to_string());
        if out.len() > 2000 {
            break;
        }
    }
    let lines: Vec<String> = out.lines().map(clean).filter(|l| !l.is_empty()).collect();
    if lines.is_empty() {
        String::new()
    } else {
        format!("; output: {}", lines.join(" | "))
    }
}
