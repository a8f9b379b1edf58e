//! This machine's own reads of an image whose layers stay in its registry
//! (hosts pull them): the few blobs it needs itself, streamed, with its own
//! credentials and CAs. Checking each blob against its digest is the
//! reader's job, as for any stream.

use oci_spec::image::Digest;

use super::error::RegistryError;
use super::hosts::{BlobStream, PullTicket};
use super::RegistryOptions;

/// The blobs `wanted` read one after the other from `repository` of
/// `registry` as this machine reaches it with `opts`: through the same
/// mirrors and fallbacks as a host's pull (but for those `opts` skips),
/// with a ticket of its own (with its credentials, which never leave this
/// process).
pub fn blob_stream(
    registry: &str,
    repository: &str,
    opts: &RegistryOptions,
    wanted: Vec<(Digest, u64)>,
) -> Result<BlobStream, RegistryError> {
    let mut ticket =
        current_thread(registry)?.block_on(PullTicket::new(registry, repository, opts, true))?;
    ticket
        .mirrors
        .retain(|m| !opts.skip_mirrors.contains(&m.registry));
    super::hosts::blob_stream(&ticket, wanted)
}

/// A runtime for one blocking use of `registry` from synchronous code.
pub fn current_thread(registry: &str) -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::Protocol {
            registry: registry.to_string(),
            action: "start the async runtime".into(),
            detail: e.to_string(),
        })
}
