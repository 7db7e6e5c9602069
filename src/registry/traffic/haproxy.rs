//! HAProxy's runtime API (the "stats socket" at `level admin`), over TCP or a unix socket:
//! one command per connection (`get weight app/blue`, `set server app/blue weight 75`), the
//! answer read to the end, bounded in size and time.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::{Color, Switch, TrafficError, Weights, MAX_WEIGHT};
use crate::registry::BoxFuture;

const TIMEOUT: Duration = Duration::from_secs(10);
const MAX_ANSWER: u64 = 1 << 20;

pub struct Haproxy {
    address: String,
    backend: String,
    blue: String,
    green: String,
}

impl Haproxy {
    pub fn new(address: &str, backend: &str, blue: &str, green: &str) -> Haproxy {
        Haproxy {
            address: address.to_string(),
            backend: backend.to_string(),
            blue: blue.to_string(),
            green: green.to_string(),
        }
    }

    fn server(&self, c: Color) -> &str {
        match c {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }

    fn err(&self, message: String, sent: bool) -> TrafficError {
        TrafficError {
            balancer: self.describe(),
            message,
            sent,
        }
    }

    /// Send one command, read the whole answer.
    async fn command(&self, cmd: &str) -> Result<String, TrafficError> {
        let run = async {
            let path = self.address.strip_prefix("unix@").or_else(|| {
                self.address
                    .starts_with('/')
                    .then_some(self.address.as_str())
            });
            match path {
                Some(p) => {
                    let s = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                        self.err(
                            format!("cannot connect to the runtime API socket {p}: {e}"),
                            false,
                        )
                    })?;
                    self.exchange(s, cmd).await
                }
                None => {
                    let s = tokio::net::TcpStream::connect(self.address.as_str())
                        .await
                        .map_err(|e| {
                            self.err(
                                format!(
                                    "cannot connect to the runtime API at {}: {e}",
                                    self.address
                                ),
                                false,
                            )
                        })?;
                    self.exchange(s, cmd).await
                }
            }
        };
        match tokio::time::timeout(TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(self.err(
                format!("no answer to `{cmd}` within {}s", TIMEOUT.as_secs()),
                true,
            )),
        }
    }

    async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut s: S,
        cmd: &str,
    ) -> Result<String, TrafficError> {
        s.write_all(format!("{cmd}\n").as_bytes())
            .await
            .map_err(|e| self.err(format!("sending `{cmd}`: {e}"), false))?;
        let mut buf = Vec::new();
        (&mut s)
            .take(MAX_ANSWER)
            .read_to_end(&mut buf)
            .await
            .map_err(|e| self.err(format!("reading the answer to `{cmd}`: {e}"), true))?;
        Ok(String::from_utf8_lossy(&buf).trim().to_string())
    }

    async fn weight(&self, c: Color) -> Result<u32, TrafficError> {
        let cmd = format!("get weight {}/{}", self.backend, self.server(c));
        let answer = self.command(&cmd).await?;
        // "75 (initial 100)"
        answer
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|w| *w <= MAX_WEIGHT)
            .ok_or_else(|| self.err(format!("`{cmd}` answered {:?}", shorten(&answer)), false))
    }
}

fn shorten(s: &str) -> String {
    let one: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    one
}

impl Switch for Haproxy {
    fn describe(&self) -> String {
        format!("haproxy {} backend {}", self.address, self.backend)
    }

    fn weights(&self) -> BoxFuture<'_, Result<Weights, TrafficError>> {
        Box::pin(async move {
            Ok(Weights {
                blue: self.weight(Color::Blue).await?,
                green: self.weight(Color::Green).await?,
            })
        })
    }

    fn set(&self, color: Color, weight: u32) -> BoxFuture<'_, Result<(), TrafficError>> {
        Box::pin(async move {
            let cmd = format!(
                "set server {}/{} weight {weight}",
                self.backend,
                self.server(color)
            );
            let answer = self.command(&cmd).await?;
            // Success is an empty answer; anything else is HAProxy saying why not.
            if answer.is_empty() {
                Ok(())
            } else {
                Err(self.err(format!("`{cmd}` answered {:?}", shorten(&answer)), false))
            }
        })
    }

    fn runs_a_program(&self) -> bool {
        false
    }
}
