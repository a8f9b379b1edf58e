//! Content-addressed blobs: streamed into a temp file under `root/tmp` while
//! hashing, then renamed to `oci/blobs/sha256/<hex>`. A blob path therefore
//! only ever holds complete, verified content; a crash leaves at most a temp
//! file, which `prune` removes.
//!
//! Every temp file is flock'ed by its writer for as long as it lives. That is
//! how `prune` tells a live writer's file (lock busy: keep it) from the
//! leftover of a killed process (lock free: delete it) without timestamps.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest};
use tempfile::NamedTempFile;

use super::error::StoreError;
use crate::digest::Hashing;

/// Buffer size for streaming copies: memory stays flat whatever the blob size.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// Creates a temp file in `dir` and locks it so `prune` leaves it alone.
pub(crate) fn locked_temp(dir: &Path, prefix: &str) -> Result<NamedTempFile, StoreError> {
    let tmp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(StoreError::io("create temp file in", dir))?;
    // Nobody else can know this fresh name yet, so the lock cannot be busy.
    tmp.as_file()
        .try_lock()
        .map_err(|e| StoreError::io("lock temp file", tmp.path())(io::Error::other(e)))?;
    Ok(tmp)
}

/// Writes one blob into the store. Hashes sha256 and counts bytes while
/// streaming; [`finish`](Self::finish) makes it visible under its digest.
/// Dropping an unfinished writer deletes its temp file.
pub struct BlobWriter {
    out: Hashing<BufWriter<NamedTempFile>>,
    blobs_dir: PathBuf,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.out.get_ref().get_ref().path())
            .field("size", &self.out.size())
            .finish()
    }
}

impl BlobWriter {
    /// `tmp_dir` and `blobs_dir` must be on one filesystem so that the final
    /// rename is atomic.
    pub(crate) fn new(tmp_dir: &Path, blobs_dir: PathBuf) -> Result<BlobWriter, StoreError> {
        let tmp = locked_temp(tmp_dir, "blob-")?;
        Ok(BlobWriter {
            out: Hashing::new(BufWriter::with_capacity(BUF_SIZE, tmp)),
            blobs_dir,
        })
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.out.size()
    }

    /// The digest of the bytes written so far: what [`finish`](Self::finish)
    /// would name the blob.
    pub fn digest(&self) -> Digest {
        self.out.digest()
    }

    /// Moves the blob to `blobs/sha256/<hex>` and returns its digest and size.
    /// If the store already has a blob of that digest and size, the temp file
    /// is dropped instead.
    pub fn finish(self) -> Result<(Digest, u64), StoreError> {
        let digest = self.digest();
        let size = self.size();
        self.commit(&digest)?;
        Ok((digest, size))
    }

    /// Like [`finish`](Self::finish), but if the content does not hash to
    /// `expected`, fails with [`StoreError::DigestMismatch`] and writes nothing.
    pub fn finish_expecting(self, expected: &Digest) -> Result<u64, StoreError> {
        let found = self.digest();
        if &found != expected {
            if expected.algorithm().as_ref() != "sha256" {
                return Err(StoreError::UnsupportedDigest {
                    digest: expected.clone(),
                });
            }
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                found,
                location: "a blob being written to the store".to_string(),
            });
        }
        let size = self.size();
        self.commit(&found)?;
        Ok(size)
    }

    fn commit(self, digest: &Digest) -> Result<(), StoreError> {
        let temp_path = self.out.get_ref().get_ref().path().to_path_buf();
        let (out, _, size) = self.out.into_parts();
        let tmp = out
            .into_inner()
            .map_err(|e| StoreError::io("write", &temp_path)(e.into_error()))?;
        let target = self.blobs_dir.join(digest.digest());
        // An existing blob of the right size is kept (blobs are immutable); a
        // wrong size means a damaged copy, which this write repairs.
        if let Ok(meta) = std::fs::metadata(&target) {
            if meta.is_file() && meta.len() == size {
                return Ok(());
            }
        }
        // Durable before visible: a power cut must not leave a short blob
        // under a valid name.
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("sync", &temp_path))?;
        tmp.persist(&target)
            .map_err(|e| StoreError::io("move blob into place at", &target)(e.error))?;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Opens a file for reading, mapping "not found" to [`StoreError::BlobNotFound`].
pub(crate) fn open_blob_file(path: &Path, digest: &Digest) -> Result<File, StoreError> {
    File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            StoreError::BlobNotFound {
                digest: digest.clone(),
            }
        } else {
            StoreError::io("open blob", path)(e)
        }
    })
}

/// A blob being read out of the store, hashed and counted on the way, so
/// that whoever streams it catches a damaged store: [`check`](Self::check)
/// after the last read.
pub struct VerifiedBlob {
    file: Hashing<io::Take<File>>,
    desc: Descriptor,
    path: PathBuf,
}

impl VerifiedBlob {
    /// Opens the blob of `desc` at `path`; its size must be the descriptor's.
    pub(crate) fn open(path: PathBuf, desc: &Descriptor) -> Result<VerifiedBlob, StoreError> {
        let file = open_blob_file(&path, desc.digest())?;
        let len = file
            .metadata()
            .map_err(StoreError::io("inspect blob", &path))?
            .len();
        super::check_size(desc, len)?;
        Ok(VerifiedBlob {
            file: Hashing::new(file.take(len)),
            desc: desc.clone(),
            path,
        })
    }

    /// After the last read: was it all there, and did it hash to its digest?
    pub fn check(&self) -> Result<(), StoreError> {
        super::check_size(&self.desc, self.file.size())?;
        let found = self.file.digest();
        if &found != self.desc.digest() {
            return Err(StoreError::DigestMismatch {
                expected: self.desc.digest().clone(),
                found,
                location: format!("blob {}", self.path.display()),
            });
        }
        Ok(())
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}
