//! Validation before a rollback that needs more than a registry: the target image started
//! through the Docker Engine API (`smoke.rs`, bollard) and the project's migrations
//! (`migrations.rs`, git plumbing). The registries' own checks (manifests, blobs, downloads)
//! are their backends' `verify`.

pub mod migrations;
pub mod smoke;
