//! The layer cache: from "these inputs, this instruction, these options" to the
//! layers they produced, so an unchanged COPY costs a walk of `stat` calls.
//!
//! The key covers each input's path, size, mtime, ctime, inode and mode, but not
//! its content: hashing content would mean reading every byte, which is what the
//! cache exists to avoid. Editing a file changes its ctime (which userspace
//! cannot set back) and usually its mtime and size, so that is detected; what is
//! not detected is content changed behind the filesystem's back (a raw block
//! write, a filesystem that does not maintain ctime). `sealrs build --no-cache`
//! is the way out then.
//!
//! The file is JSON, written to a temp file and renamed: readers never see a
//! torn file. Two builds saving at once: each merges its new entries into what
//! is on disk at save time, and the last rename wins for any entry both wrote.

use crate::atomic_file;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::context::{Input, InputKind};
use super::error::BuildError;
use super::layer::{BlobSink, Layer, LayerOptions};
use crate::kubefile::CopyStep;

/// Bumped whenever the tar bytes we write for the same inputs change.
const LAYER_FORMAT: u32 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    version: u32,
    entries: BTreeMap<String, Vec<Layer>>,
}

/// The cached layers of COPY/ADD instructions, by input key.
#[derive(Debug)]
pub struct LayerCache {
    path: PathBuf,
    entries: BTreeMap<String, Vec<Layer>>,
    added: BTreeSet<String>,
    dropped: BTreeSet<String>,
    /// Layers served from the cache so far, for the build summary.
    hit_layers: usize,
}

impl LayerCache {
    /// Loads the cache at `path`; a missing or unreadable file is an empty cache
    /// (the cache is an accelerator, never a reason for a build to fail).
    pub fn open(path: &Path) -> LayerCache {
        LayerCache {
            path: path.to_path_buf(),
            entries: read(path),
            added: BTreeSet::new(),
            dropped: BTreeSet::new(),
            hit_layers: 0,
        }
    }

    /// A cache that finds nothing but still records what this build makes
    /// (`--no-cache`): the next build can use it.
    pub fn empty(path: &Path) -> LayerCache {
        LayerCache {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
            added: BTreeSet::new(),
            dropped: BTreeSet::new(),
            hit_layers: 0,
        }
    }

    /// How many layers lookups have served so far.
    pub fn hit_layers(&self) -> usize {
        self.hit_layers
    }

    /// Writes new entries, merged into whatever the file holds now.
    pub fn save(&self) -> Result<(), BuildError> {
        if self.added.is_empty() && self.dropped.is_empty() {
            return Ok(());
        }
        let err = |source| BuildError::CacheWrite {
            path: self.path.clone(),
            source,
        };
        let mut entries = read(&self.path);
        for key in &self.dropped {
            entries.remove(key);
        }
        for key in &self.added {
            if let Some(layers) = self.entries.get(key) {
                entries.insert(key.clone(), layers.clone());
            }
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = CacheFile {
            version: LAYER_FORMAT,
            entries,
        };
        let json = serde_json::to_vec(&file).map_err(|e| err(e.into()))?;
        atomic_file::write(&self.path, &json, None).map_err(err)
    }

    /// The layers for `key`, if every blob is still in the store.
    pub(crate) fn get(&mut self, key: &str, sink: &dyn BlobSink) -> Option<Vec<Layer>> {
        let layers = self.entries.get(key)?;
        if layers.iter().all(|l| sink.has_blob(l.descriptor.digest())) {
            self.hit_layers += layers.len();
            return Some(layers.clone());
        }
        self.entries.remove(key);
        self.added.remove(key);
        self.dropped.insert(key.to_string());
        None
    }

    pub(crate) fn put(&mut self, key: String, layers: Vec<Layer>) {
        self.dropped.remove(&key);
        self.added.insert(key.clone());
        self.entries.insert(key, layers);
    }
}

fn read(path: &Path) -> BTreeMap<String, Vec<Layer>> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CacheFile>(&bytes).ok())
        .filter(|file| file.version == LAYER_FORMAT)
        .map(|file| file.entries)
        .unwrap_or_default()
}

/// Feeds length-prefixed fields, so that no two different inputs hash alike.
struct KeyHasher(Sha256);

impl KeyHasher {
    fn bytes(&mut self, b: &[u8]) {
        self.0.update((b.len() as u64).to_le_bytes());
        self.0.update(b);
    }
    fn num(&mut self, n: u64) {
        self.0.update(n.to_le_bytes());
    }
    fn signed(&mut self, n: i64) {
        self.0.update(n.to_le_bytes());
    }
}

/// The cache key of one instruction over its resolved inputs (stat data only).
pub(crate) fn key(step: &CopyStep, opts: &LayerOptions, inputs: &[Input]) -> String {
    let mut h = KeyHasher(Sha256::new());
    h.num(LAYER_FORMAT.into());
    h.num(step.sources.len() as u64);
    for source in &step.sources {
        h.bytes(source.as_bytes());
    }
    h.bytes(step.dest.as_bytes());
    h.num(step.chmod.map_or(u64::MAX, u64::from));
    h.num(step.extract_archives.into());
    h.bytes(opts.compression.as_str().as_bytes());
    h.num(opts.split_threshold);
    h.num(opts.source_date_epoch);
    h.num(inputs.len() as u64);
    for input in inputs {
        let m = &input.meta;
        h.bytes(input.rel.as_os_str().as_bytes());
        h.bytes(input.target.as_os_str().as_bytes());
        h.num(m.len());
        h.signed(m.mtime());
        h.signed(m.mtime_nsec());
        h.signed(m.ctime());
        h.signed(m.ctime_nsec());
        h.num(m.dev());
        h.num(m.ino());
        h.num(m.nlink());
        h.num(m.mode().into());
        h.num(input.maybe_archive.into());
        match &input.kind {
            InputKind::Dir => h.num(0),
            InputKind::File => h.num(1),
            InputKind::Symlink(target) => {
                h.num(2);
                h.bytes(target.as_os_str().as_bytes());
            }
        }
    }
    hex::encode(h.0.finalize())
}
