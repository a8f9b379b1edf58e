//! This machine's own reads of an image whose layers stay in its registry
//! (hosts pull them): the few blobs it needs itself, streamed, with its own
//! credentials and CAs. Checking each blob against its digest is the
//! reader's job, as for any stream.

use oci_spec::image::Digest;

use super::client::{Access, Session};
use super::error::RegistryError;
use super::hosts::BlobStream;
use super::{auth, RegistryOptions};

/// The blobs `wanted` read one after the other from `repository` of
/// `registry` as this machine reaches it with `opts`.
pub fn blob_stream(
    registry: &str,
    repository: &str,
    opts: &RegistryOptions,
    wanted: Vec<(Digest, u64)>,
) -> Result<BlobStream, RegistryError> {
    let runtime = current_thread(registry)?;
    let creds = auth::lookup(registry, repository, opts)?;
    let session = runtime.block_on(Session::open(
        registry,
        repository,
        Access::Pull,
        creds,
        opts,
    ))?;
    BlobStream::feed(runtime, session, wanted, ())
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
