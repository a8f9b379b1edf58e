//! sealrs: build, store, ship and apply Kubernetes cluster images.
//!
//! Pure modules (`kubefile`, `reference`, `layout`, `plan`, `runtime`, `cluster`) never touch the disk or the network;
//! `store` and `build` do the I/O; `cli` is the edge that turns flags into calls
//! and adds context to errors for people.

pub mod apply;
pub mod build;
pub mod cli;
pub mod cluster;
pub mod harvest;
pub mod installer;
pub mod kubefile;
pub mod layout;
pub mod plan;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod secret;
pub mod shell;
pub mod store;
pub mod transport;
