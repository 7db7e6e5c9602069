//! bagboy: roll every registry of a release back to a known-good version.

pub mod check;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod events;
pub mod files;
pub mod git;
pub mod github;
pub mod health;
pub mod history;
pub mod http;
pub mod journal;
pub mod monitor;
pub mod ops;
pub mod plan;
pub mod registry;
pub mod release_file;
pub mod suggest;
pub mod validate;
pub mod yaml;

#[cfg(test)]
mod never_panics;

pub use error::{Error, Exit};
