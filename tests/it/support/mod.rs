//! Shared integration-test harness: real registries, a token server and test-side image pushing.
// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod cargo_registry;
pub mod cli;
pub mod fake_server;
pub mod fixtures;
pub mod github;
pub mod haproxy;
pub mod npm;
pub mod podman;
pub mod prometheus;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod tap;
pub mod token_server;

pub use registry::{Auth, Request, TestRegistry};
pub use token_server::{TokenRequest, TokenServer, TokenUser};

use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs a future to completion on a fresh runtime, keeping the blocking harness outside async code.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(future)
}

/// 64 hex characters that differ on every call (process, time, counter, hasher seed).
pub fn random_hex() -> String {
    use sha2::Digest as _;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let seed = format!("{}-{nanos}", hasher.finish());
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}
