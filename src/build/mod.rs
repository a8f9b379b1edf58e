//! Turns a Kubefile and its context into an image in the store.
//!
//! `context` (with [`crate::ignore`]) decides which files an instruction sees, `layer` turns
//! one COPY/ADD into deterministic blobs, `cache` skips that work when the
//! inputs' metadata proves nothing changed, and `executor` ties them to the
//! Kubefile's evaluation, the image config and the store.

pub mod cache;
pub mod context;
pub mod error;
mod executor;
pub mod flags;
pub mod installer;
pub mod layer;

pub use cache::LayerCache;
pub use context::Context;
pub use error::{BuildError, Instruction, SinkError};
pub use executor::{
    build, epoch_rfc3339, harvested_layers, BaseFetcher, BuildOutcome, BuildRequest, LocalOnly,
    KUBEFILE_NAMES,
};
pub use flags::ConfigFlags;
pub use installer::{installer_layer, InstallerChoice};
pub use layer::{copy_layers, BlobSink, BlobWrite, Layer, LayerOptions};

use crate::store::{BlobWriter, Digest, Store};

impl BlobSink for Store {
    fn create(&self) -> Result<Box<dyn BlobWrite + '_>, SinkError> {
        Ok(Box::new(self.blob_writer()?))
    }
    fn has_blob(&self, digest: &Digest) -> bool {
        Store::has_blob(self, digest)
    }
    fn layer_written(&self, digest: &Digest, paths: &[String]) {
        // A cache: without it the run reads the layer once and keeps them.
        let _ = self.remember_layer_paths(digest, paths);
    }
}

impl BlobWrite for BlobWriter {
    fn finish(self: Box<Self>) -> Result<(Digest, u64), SinkError> {
        Ok((*self).finish()?)
    }
}
