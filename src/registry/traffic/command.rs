//! Any other load balancer: a script from the config, run without a shell of bagboy's own
//! (`sh -c`, as health-check commands are), `<command> get` printing `blue N` and `green N`
//! lines, `<command> set COLOR N` setting one weight. Bounded in time and output.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;

use super::{Color, Switch, TrafficError, Weights, MAX_WEIGHT};
use crate::registry::BoxFuture;

const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Script {
    command: String,
}

impl Script {
    pub fn new(command: &str) -> Script {
        Script {
            command: command.to_string(),
        }
    }

    fn err(&self, message: String, sent: bool) -> TrafficError {
        TrafficError {
            balancer: self.describe(),
            message,
            sent,
        }
    }

    async fn run(&self, args: &[&str]) -> Result<String, TrafficError> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{} \"$@\"", self.command))
            .arg("bagboy-traffic")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| self.err(format!("cannot run: {e}"), false))?;
        let mut out = child.stdout.take();
        let mut errs = child.stderr.take();
        let work = async {
            let mut o = Vec::new();
            let mut e = Vec::new();
            if let Some(s) = out.as_mut() {
                let _ = s.take(1 << 20).read_to_end(&mut o).await;
            }
            if let Some(s) = errs.as_mut() {
                let _ = s.take(1 << 16).read_to_end(&mut e).await;
            }
            let status = child.wait().await;
            (o, e, status)
        };
        let (o, e, status) = tokio::time::timeout(TIMEOUT, work).await.map_err(|_| {
            self.err(
                format!(
                    "`{}` did not finish within {}s",
                    args.join(" "),
                    TIMEOUT.as_secs()
                ),
                true,
            )
        })?;
        let status = status.map_err(|e| self.err(e.to_string(), true))?;
        if !status.success() {
            let why: String = String::from_utf8_lossy(&e)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .take(300)
                .collect();
            return Err(self.err(
                format!("`{}` exited with {status}: {}", args.join(" "), why.trim()),
                args.first() == Some(&"set"),
            ));
        }
        Ok(String::from_utf8_lossy(&o).into_owned())
    }
}

impl Switch for Script {
    fn describe(&self) -> String {
        format!("command {}", self.command)
    }

    fn weights(&self) -> BoxFuture<'_, Result<Weights, TrafficError>> {
        Box::pin(async move {
            let out = self.run(&["get"]).await?;
            let mut w = (None, None);
            for line in out.lines() {
                let mut it = line.split_whitespace();
                let (Some(c), Some(n)) = (it.next(), it.next()) else {
                    continue;
                };
                let n = n.parse::<u32>().ok().filter(|n| *n <= MAX_WEIGHT);
                match Color::parse(c) {
                    Some(Color::Blue) => w.0 = n,
                    Some(Color::Green) => w.1 = n,
                    None => {}
                }
            }
            match w {
                (Some(blue), Some(green)) => Ok(Weights { blue, green }),
                _ => Err(self.err(
                    "`get` must print `blue N` and `green N` lines (weights 0-256)".into(),
                    false,
                )),
            }
        })
    }

    fn set(&self, color: Color, weight: u32) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(async move {
            self.run(&["set", color.as_str(), &weight.to_string()])
                .await
                .map(|_| ())
        })
    }

    fn runs_a_program(&self) -> bool {
        true
    }
}
