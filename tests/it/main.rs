//! Every integration test of bagboy in one binary (one link instead of thirty): each module is
//! one area, played through the real `bagboy` binary against real servers started per test
//! (`support`).

mod support;

mod apply;
mod blue_green;
mod consumers;
mod crash_safety;
mod examples;
mod exit_codes;
mod fault_proxy;
mod git_registries;
mod github;
mod health;
mod history_props;
mod history_remote;
mod history_scale;
mod homebrew_shapes;
mod homebrew_tap;
mod interactive;
mod judge;
mod monitoring;
mod oci_client;
mod oci_client_secrets;
mod record_from;
mod rollback_brew;
mod rollback_cargo;
mod rollback_docker;
mod rollback_npm;
mod shared_client;
mod smoke;
mod snapshots;
mod untrusted_checkout;
mod validation;
mod versions;
