//! bagboy: roll every registry of a release back to a known-good version.

pub mod registry;
