//! Test harness shared by the integration tests: real servers, real repos, the real binary.
#![allow(dead_code)]

pub mod cli;
pub mod proxy;
pub mod tap;
