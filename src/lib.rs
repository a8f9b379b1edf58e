//! sealrs: build, store, ship and apply Kubernetes cluster images.
//!
//! Pure modules (`kubefile`, `reference`, `layout`) never touch the disk or the network;
//! `store` and `build` do the I/O; `cli` is the edge that turns flags into calls
//! and adds context to errors for people.

pub mod build;
pub mod cli;
pub mod harvest;
pub mod kubefile;
pub mod layout;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod store;
