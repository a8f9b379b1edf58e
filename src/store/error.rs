//! Errors of the store: each variant carries what a caller needs to match on
//! (the digests, the name, the path) and its message says what went wrong,
//! where, and what to do about it.

use std::path::PathBuf;

use oci_spec::image::Digest;

/// Everything that can go wrong in the local store and its archives.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem call failed. `action` is a verb phrase ("create directory").
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `$SEALRS_ROOT` (or one of the directories the store needs) is not a directory.
    #[error("store root {path} is not a directory; point SEALRS_ROOT at a directory")]
    NotADirectory { path: PathBuf },

    /// The store directory exists but this process may not write to it.
    #[error("store at {path} is not writable ({source}); check its permissions or set SEALRS_ROOT to a directory you own")]
    NotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `index.json` (or `oci-layout`) cannot be parsed: the store refuses to
    /// guess rather than overwrite it and lose every tag.
    #[error("corrupt OCI layout file {path}: {reason}; repair or move it away (the blobs are untouched)")]
    CorruptIndex { path: PathBuf, reason: String },

    /// `oci-layout` declares a version this store does not write.
    #[error("unsupported OCI layout version {version:?} in {path} (expected \"1.0.0\")")]
    UnsupportedLayout { path: PathBuf, version: String },

    /// Content does not hash to the digest that names it. `location` says
    /// which copy was read (a blob in the store, an archive entry, a stream).
    #[error("content of {location} does not match its digest: expected {expected}, found {found}; the data is corrupt or was altered — get it again from a good copy")]
    DigestMismatch {
        expected: Digest,
        found: Digest,
        location: String,
    },

    /// A blob's size differs from the size its descriptor promises.
    #[error("blob {digest} has {found} bytes but its descriptor says {expected}; the data is corrupt — remove the image and pull or load it again")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        found: u64,
    },

    /// The store only writes sha256 blobs.
    #[error("unsupported digest {digest}: only sha256 is supported")]
    UnsupportedDigest { digest: Digest },

    #[error("blob {digest} is not in the store; pull or load the image again")]
    BlobNotFound { digest: Digest },

    /// A blob read into memory (manifest, config, index) is larger than the cap.
    #[error(
        "blob {digest} is {size} bytes, over the {limit} byte limit for manifests and configs"
    )]
    BlobTooLarge {
        digest: Digest,
        size: u64,
        limit: u64,
    },

    #[error("image {name} is not in the local store; see `sealrs images`")]
    ImageNotFound { name: String },

    /// A manifest, index or config blob is not the JSON its media type says.
    #[error("invalid {what} {digest}: {reason}")]
    InvalidJson {
        what: &'static str,
        digest: Digest,
        reason: String,
    },

    /// The tag points at something that is not a single image manifest
    /// (e.g. a multi-platform index).
    #[error("{name} refers to a {media_type}, not an image manifest")]
    NotAnImage { name: String, media_type: String },

    /// A name that the OCI layout cannot store as `org.opencontainers.image.ref.name`.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },

    /// Another process holds a lock that this operation needs exclusively.
    #[error("the store is busy: {holder} ({path}); retry when it has finished")]
    Locked { path: PathBuf, holder: String },

    /// `prune` could not tell what a tagged image needs, so it deleted nothing.
    #[error("prune stopped before deleting anything: {reason}; run `sealrs fsck`, remove the broken image with `sealrs rmi`, then prune again")]
    PruneUnsafe { reason: String },

    /// An archive given to `load` is malformed; nothing was tagged.
    #[error("invalid archive {path}: {reason}; nothing was loaded")]
    InvalidArchive { path: PathBuf, reason: String },
}

impl StoreError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}
