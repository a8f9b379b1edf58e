//! Integration tests: the real `sealrs` binary, in a fresh temp directory each,
//! checked with real peer tools (skopeo, umoci, buildah).

mod common;
mod hosts;

mod bad_input;
mod build;
mod buildah_diff;
mod harvest;
mod image_hooks;
mod installer;
mod labels;
mod layout;
mod lifecycle;
mod registry;
mod registry_cli;
mod registry_server;
mod robustness;
mod run;
mod run_apps;
mod run_hosts;
mod store_cmds;
mod transport;
