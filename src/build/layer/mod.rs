//! One COPY/ADD instruction → deterministic, streamed, compressed layer blobs.
//!
//! The bytes flow in one pass: tar writer → sha256 (the diff_id) → compressor →
//! blob sink (which hashes the compressed blob). Files are read through a
//! fixed-size buffer, so memory stays flat whatever their size.
//!
//! Determinism: entries sorted by path bytes; every mtime set to
//! `SOURCE_DATE_EPOCH`; uid/gid 0 with empty names; no device numbers, xattrs or
//! atimes. The same inputs therefore give the same diff_id, and with the same
//! compressor settings the same blob digest.
//!
//! Big files (≥ `split_threshold`) get a layer each, emitted *before* the layer
//! of everything else, in path order. Their implicit parent directories are
//! always `0755`, independent of the context, so two images that carry the same
//! binary at the same path share the blob; the main layer comes after and sets
//! the real directory modes over them.
//!
//! `tree` gathers what one instruction copies (the COPY tree), `archive`
//! adds the members of the archives an ADD unpacks, and `encode` writes
//! each planned layer: tar, diff_id, compressor, blob.

mod archive;
mod encode;
mod tree;

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

use oci_spec::image::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use super::cache::{self, LayerCache};
use super::context::{self, Context};
use super::error::{BuildError, SinkError};
use crate::compression::Compression;
use crate::kubefile::CopyStep;
use crate::progress::Progress;

pub(crate) use encode::header;
use encode::write_layer;
use tree::Tree;

/// Read and write buffer size: large enough that syscalls and hash/compressor
/// calls are cheap per byte, small enough not to matter for memory.
const BUF: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// How layer blobs are compressed.
    ///
    /// Zstd is the default: at level 3 with one worker per core it compresses
    /// several times faster than gzip at a similar or better ratio, and
    /// decompresses faster on hosts. Cluster images are often gigabytes, so
    /// build and install time dominate. Containerd, CRI-O and every current
    /// registry accept `+zstd` layers; use `gzip` for old Docker engines.
    pub compression: Compression,
    /// Regular files at least this big get a layer of their own.
    pub split_threshold: u64,
    /// Every mtime in the layer; `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: u64,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Zstd,
            split_threshold: 32 * 1024 * 1024,
            source_date_epoch: 0,
        }
    }
}

/// A layer blob in the store and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Where layer blobs go: the store implements this (a few lines of adapter),
/// tests use a directory.
pub trait BlobSink {
    /// A writer for one new blob.
    fn create(&self) -> Result<Box<dyn BlobWrite + '_>, SinkError>;
    /// Is this blob present? The cache only trusts entries whose blobs exist.
    fn has_blob(&self, digest: &Digest) -> bool;
    /// The paths of the layer blob `digest` just written, in tar order (the
    /// store keeps them, so that a run finds an image's templates without
    /// reading its layers); nothing by default.
    fn layer_written(&self, _digest: &Digest, _paths: &[String]) {}
}

/// One blob being written. Dropping it without `finish` must leave no blob.
pub trait BlobWrite: Write {
    /// Commits the blob; returns the sha256 digest and size of what was written.
    fn finish(self: Box<Self>) -> Result<(Digest, u64), SinkError>;
}

/// Builds (or finds in `cache`) the layers of one COPY/ADD.
///
/// Usually one layer; more when big files are split off (see the module docs).
pub fn copy_layers(
    sink: &dyn BlobSink,
    ctx: &Context,
    step: &CopyStep,
    opts: &LayerOptions,
    cache: &mut LayerCache,
    progress: &dyn Progress,
) -> Result<Vec<Layer>, BuildError> {
    let instr = context::instruction_name(step);
    let inputs = context::resolve(ctx, step)?;
    let key = cache::key(step, opts, &inputs);
    if let Some(layers) = cache.get(&key, sink) {
        progress.message(&format!(
            "{}: {instr} {}: cache hit ({} layer{})",
            step.location,
            step.dest,
            layers.len(),
            if layers.len() == 1 { "" } else { "s" }
        ));
        return Ok(layers);
    }
    let tree = Tree::build(step, &inputs)?;
    let mut layers = Vec::new();
    for plan in tree.plan(opts) {
        layers.push(write_layer(
            sink,
            step,
            &plan,
            opts.source_date_epoch,
            progress,
        )?);
    }
    cache.put(key, layers.clone());
    Ok(layers)
}

/// Opens file content. Every content read goes through here, which lets tests
/// prove that a cache hit reads none.
fn open_content(path: &Path) -> io::Result<File> {
    #[cfg(test)]
    tests::CONTENT_OPENS.with(|n| n.set(n.get() + 1));
    File::open(path)
}

#[cfg(test)]
pub(crate) mod tests;
