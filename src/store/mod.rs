//! The local store: a plain OCI image layout (image-spec 1.1) under
//! `$SEALRS_ROOT/oci`, so that skopeo, umoci and crane read it directly
//! (`skopeo inspect oci:$SEALRS_ROOT/oci:docker.io/library/app:1.0`).
//!
//! ```text
//! $SEALRS_ROOT/
//!   oci/oci-layout          {"imageLayoutVersion":"1.0.0"}
//!   oci/index.json          one descriptor per name (annotation org.opencontainers.image.ref.name)
//!   oci/blobs/sha256/<hex>  immutable, content-addressed
//!   tmp/                    temp files of writers in flight (same filesystem: rename is atomic)
//!   locks/                  gc.lock, index.lock (see `lock`)
//! ```
//!
//! Why it is safe to kill a writer at any moment: blobs appear under
//! `blobs/` only by rename of a complete, hashed temp file; `index.json` is
//! replaced by rename under an exclusive lock; leftovers in `tmp/` are
//! removed by `prune`. Readers need no lock at all.
//!
//! One [`Store`] type owns the layout; nothing else in the crate builds paths
//! into it.
//!
//! Interop notes (checked with skopeo 1.9 and umoci 0.4.7):
//! - Names are stored whole, e.g. `docker.io/library/app:1.0` or
//!   `127.0.0.1:5000/a/b:1`; both tools accept `/`, `:`, `@` and ports in
//!   the ref name (they enforce the grammar of [`validate_ref_name`]).
//! - Both split `oci:DIR:NAME` at the *first* colon, so they cannot read a
//!   store whose path contains `:`. sealrs itself does not care.
//! - Other tools may add images (`skopeo copy … oci:$SEALRS_ROOT/oci:NAME`)
//!   and sealrs sees them, but they do not take `locks/index.lock`: run them
//!   only while no sealrs command writes to the store.

mod blob;
mod error;
mod gc;
mod index;
mod lock;
mod paths;
mod resolve;

pub mod archive;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use oci_spec::image::{Descriptor, Digest, ImageConfiguration, ImageManifest, MediaType};

pub use blob::{BlobWriter, VerifiedBlob};
pub use error::StoreError;
pub use gc::{BlobProblem, FsckProblem, FsckReport, PruneReport};
pub use index::{validate_ref_name, REF_NAME};
pub use lock::WriteSession;
pub use paths::layer_path;
pub use resolve::{ImageId, ListedImage};

use index::{is_manifest, MAX_JSON};

const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";
const LAYOUT_VERSION: &str = "1.0.0";

/// An image name in `index.json` and what it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedImage {
    pub name: String,
    pub descriptor: Descriptor,
}

/// A tagged image with its manifest and config read and verified.
#[derive(Debug, Clone)]
pub struct StoredImage {
    pub name: String,
    pub descriptor: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
    pub config_digest: Digest,
}

/// The local OCI image layout and its scratch and lock directories.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating the layout if it is missing.
    ///
    /// Fails with [`StoreError::NotADirectory`] if `root` is a file,
    /// [`StoreError::NotWritable`] if it cannot be written, and
    /// [`StoreError::CorruptIndex`] if `index.json` or `oci-layout` cannot be
    /// parsed (never overwritten: that would drop every tag).
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let store = Store { root: root.into() };
        match fs::metadata(&store.root) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::NotADirectory {
                    path: store.root.clone(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("inspect store root", &store.root)(e)),
        }
        for dir in [store.blobs_dir(), store.tmp_dir(), store.locks_dir()] {
            if let Err(e) = fs::create_dir_all(&dir) {
                return Err(match e.kind() {
                    io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                        StoreError::NotWritable {
                            path: store.root.clone(),
                            source: e,
                        }
                    }
                    _ if dir.exists() || dir.ancestors().any(Path::is_file) => {
                        StoreError::NotADirectory { path: dir }
                    }
                    _ => StoreError::io("create directory", &dir)(e),
                });
            }
            if !dir.is_dir() {
                return Err(StoreError::NotADirectory { path: dir });
            }
        }
        // Probe writability once here, rather than failing halfway through a build.
        let probe = store.locks_dir().join(lock::INDEX_LOCK);
        if let Err(e) = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&probe)
        {
            return Err(StoreError::NotWritable {
                path: store.root.clone(),
                source: e,
            });
        }

        let layout_file = store.layout_dir().join(LAYOUT_FILE);
        let index_file = store.index_path();
        if !layout_file.exists() || !index_file.exists() {
            // Two processes may open a fresh store at once; the check and the
            // creation must be one step or one could clobber the other's tags.
            let _held = store.lock_index()?;
            if !layout_file.exists() {
                let body = format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}");
                index::write_atomic(&layout_file, &store.tmp_dir(), body.as_bytes())?;
            }
            if !index_file.exists() {
                index::write_index(&index_file, &store.tmp_dir(), &index::empty_index())?;
            }
        }
        store.check_layout_file(&layout_file)?;
        index::read_index(&index_file)?;
        Ok(store)
    }

    fn check_layout_file(&self, path: &Path) -> Result<(), StoreError> {
        let bytes = fs::read(path).map_err(StoreError::io("read", path))?;
        check_layout_bytes(path, &bytes)
    }

    /// `$SEALRS_ROOT`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The OCI image layout directory, `root/oci`.
    pub fn layout_dir(&self) -> PathBuf {
        self.root.join("oci")
    }

    /// Scratch space for temp files, on the same filesystem as the blobs.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    fn blobs_dir(&self) -> PathBuf {
        self.layout_dir().join("blobs").join("sha256")
    }

    fn index_path(&self) -> PathBuf {
        self.layout_dir().join(INDEX_FILE)
    }

    fn lock_index(&self) -> Result<lock::Held, StoreError> {
        lock::exclusive(&self.locks_dir().join(lock::INDEX_LOCK))
    }

    /// Starts a write session: hold it for the whole of a build, load or pull
    /// so that `prune` cannot delete blobs put but not yet tagged.
    pub fn write_session(&self) -> Result<WriteSession, StoreError> {
        WriteSession::begin(self.locks_dir().join(lock::GC_LOCK))
    }

    /// A writer for one new blob (a temp file in `root/tmp`).
    pub fn blob_writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(&self.tmp_dir(), self.blobs_dir())
    }

    /// Whether the blob file exists (its content is not checked).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// `root/oci/blobs/<algorithm>/<encoded>`.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout_dir()
            .join("blobs")
            .join(digest.algorithm().as_ref())
            .join(digest.digest())
    }

    /// Opens a blob for streaming. The content is not verified here: wrap it
    /// or use [`read_verified`](Self::read_verified) for small blobs.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs::File, StoreError> {
        blob::open_blob_file(&self.blob_path(digest), digest)
    }

    /// Opens the blob of `desc` for streaming, hashed on the way: call
    /// [`VerifiedBlob::check`] after the last read.
    pub fn open_verified(&self, desc: &Descriptor) -> Result<VerifiedBlob, StoreError> {
        VerifiedBlob::open(self.blob_path(desc.digest()), desc)
    }

    /// Stores `bytes` as a blob.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(Digest, u64), StoreError> {
        let mut w = self.blob_writer()?;
        io::Write::write_all(&mut w, bytes)
            .map_err(StoreError::io("write temp blob in", self.tmp_dir()))?;
        w.finish()
    }

    /// Stores `value` as JSON with sorted keys (same value, same digest) and
    /// returns its descriptor.
    pub fn put_json<T: serde::Serialize>(
        &self,
        media_type: MediaType,
        value: &T,
    ) -> Result<Descriptor, StoreError> {
        let bytes = index::canonical_json(value).map_err(|e| {
            StoreError::io("serialize JSON for", self.tmp_dir())(io::Error::other(e))
        })?;
        let (digest, size) = self.put_bytes(&bytes)?;
        Ok(Descriptor::new(media_type, size, digest))
    }

    /// Reads a small blob (manifest, config, index) and re-hashes it.
    /// Fails with [`StoreError::DigestMismatch`] if it was corrupted on disk.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        if digest.algorithm().as_ref() != "sha256" {
            return Err(StoreError::UnsupportedDigest {
                digest: digest.clone(),
            });
        }
        let path = self.blob_path(digest);
        let file = blob::open_blob_file(&path, digest)?;
        let len = file
            .metadata()
            .map_err(StoreError::io("inspect blob", &path))?
            .len();
        if len > MAX_JSON {
            return Err(StoreError::BlobTooLarge {
                digest: digest.clone(),
                size: len,
                limit: MAX_JSON,
            });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        file.take(MAX_JSON + 1)
            .read_to_end(&mut bytes)
            .map_err(StoreError::io("read blob", &path))?;
        let found = crate::digest::sha256_digest(&bytes);
        if &found != digest {
            return Err(StoreError::DigestMismatch {
                expected: digest.clone(),
                found,
                location: format!("blob {}", path.display()),
            });
        }
        Ok(bytes)
    }

    /// Tags `manifest` as `name` (a full, normalized reference such as
    /// `docker.io/library/app:1.0`), replacing any entry of that name, and
    /// returns the replaced entry. Fails if the image's blobs are not all in
    /// the store, so a tag never points at a half-written image.
    pub fn tag(&self, name: &str, manifest: &Descriptor) -> Result<Option<Descriptor>, StoreError> {
        let mut previous = self.set_tags(&[(name.to_string(), Some(manifest.clone()))])?;
        Ok(previous.pop().flatten())
    }

    /// Removes the name `name`; fails with [`StoreError::ImageNotFound`] if absent.
    /// The blobs stay until `prune`.
    pub fn untag(&self, name: &str) -> Result<Descriptor, StoreError> {
        let mut previous = self.set_tags(&[(name.to_string(), None)])?;
        previous
            .pop()
            .flatten()
            .ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_string(),
            })
    }

    /// Applies several tag changes in one rewrite of `index.json`: all land
    /// or none do. `None` removes a name (absent names are ignored; see
    /// [`untag`](Self::untag)).
    pub(crate) fn set_tags(
        &self,
        changes: &[(String, Option<Descriptor>)],
    ) -> Result<Vec<Option<Descriptor>>, StoreError> {
        for (name, desc) in changes {
            validate_ref_name(name)?;
            if let Some(desc) = desc {
                if !is_manifest(desc.media_type()) && !index::is_index(desc.media_type()) {
                    return Err(StoreError::NotAnImage {
                        name: name.clone(),
                        media_type: desc.media_type().to_string(),
                    });
                }
            }
        }
        let _held = self.lock_index()?;
        // Checked under the lock: prune holds it while it sweeps, so what we
        // see here cannot vanish before the new index.json is in place.
        for (_, desc) in changes {
            if let Some(desc) = desc {
                self.ensure_complete(desc)?;
            }
        }
        let path = self.index_path();
        let mut index = index::read_index(&path)?;
        let previous = index::apply_tags(&mut index, changes);
        if changes.iter().any(|(_, d)| d.is_some()) || previous.iter().any(Option::is_some) {
            index::write_index(&path, &self.tmp_dir(), &index)?;
        }
        Ok(previous)
    }

    /// What `name` points to, if it is tagged.
    pub fn lookup(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        let index = index::read_index(&self.index_path())?;
        Ok(index
            .manifests()
            .iter()
            .find(|d| index::ref_name(d) == Some(name))
            .cloned())
    }

    /// Every named image, sorted by name. Entries without a name (put there
    /// by other tools) are not listed but are kept by `prune`.
    pub fn list(&self) -> Result<Vec<TaggedImage>, StoreError> {
        let index = index::read_index(&self.index_path())?;
        let mut out: Vec<TaggedImage> = index
            .manifests()
            .iter()
            .filter_map(|d| {
                index::ref_name(d).map(|n| TaggedImage {
                    name: n.to_string(),
                    descriptor: d.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The image tagged `name` with its manifest and config, both re-hashed.
    pub fn image(&self, name: &str) -> Result<StoredImage, StoreError> {
        let descriptor = self
            .lookup(name)?
            .ok_or_else(|| StoreError::ImageNotFound {
                name: name.to_string(),
            })?;
        if !is_manifest(descriptor.media_type()) {
            return Err(StoreError::NotAnImage {
                name: name.to_string(),
                media_type: descriptor.media_type().to_string(),
            });
        }
        let manifest = self.read_manifest(&descriptor)?;
        let config_desc = manifest.config();
        let bytes = self.read_verified(config_desc.digest())?;
        check_size(config_desc, bytes.len() as u64)?;
        let config: ImageConfiguration =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidJson {
                what: "image config",
                digest: config_desc.digest().clone(),
                reason: e.to_string(),
            })?;
        Ok(StoredImage {
            name: name.to_string(),
            config_digest: config_desc.digest().clone(),
            descriptor,
            manifest,
            config,
        })
    }

    /// Reads, verifies and parses the manifest `desc` points to.
    pub fn read_manifest(&self, desc: &Descriptor) -> Result<ImageManifest, StoreError> {
        let bytes = self.read_verified(desc.digest())?;
        check_size(desc, bytes.len() as u64)?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidJson {
            what: "image manifest",
            digest: desc.digest().clone(),
            reason: e.to_string(),
        })
    }

    /// Removes every blob unreachable from `index.json` and every temp file
    /// left by a dead writer. Fails with [`StoreError::Locked`] while a write
    /// session is open.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        gc::prune(self)
    }

    /// Re-hashes every reachable blob and reports what is missing or corrupt,
    /// and which images need it.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        gc::fsck(self)
    }
}

pub(crate) fn check_layout_bytes(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    #[derive(serde::Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let layout: Layout = serde_json::from_slice(bytes).map_err(|e| StoreError::CorruptIndex {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if layout.version != LAYOUT_VERSION {
        return Err(StoreError::UnsupportedLayout {
            path: path.to_path_buf(),
            version: layout.version,
        });
    }
    Ok(())
}

pub(crate) fn check_size(desc: &Descriptor, found: u64) -> Result<(), StoreError> {
    if desc.size() != found {
        return Err(StoreError::SizeMismatch {
            digest: desc.digest().clone(),
            expected: desc.size(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
