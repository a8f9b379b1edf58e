//! Reachability: what `index.json` keeps alive (manifests → config + layers,
//! image indexes → their manifests), and the two walks over it: `prune`
//! (delete everything else) and `fsck` (re-hash everything reachable).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fs;
use std::io;

use oci_spec::image::{Descriptor, Digest, ImageIndex};

use super::error::StoreError;
use super::index::{self, is_index, is_manifest};
use super::lock;
use super::{check_size, Store};
use crate::digest::hash_reader;

impl Store {
    /// The descriptors `desc` refers to: config and layers of a manifest,
    /// manifests of an index; nothing for anything else. Reads and verifies
    /// `desc`'s blob when it has children.
    pub(crate) fn children(&self, desc: &Descriptor) -> Result<Vec<Descriptor>, StoreError> {
        let mt = desc.media_type();
        if is_manifest(mt) {
            let m = self.read_manifest(desc)?;
            let mut out = vec![m.config().clone()];
            out.extend(m.layers().iter().cloned());
            Ok(out)
        } else if is_index(mt) {
            let bytes = self.read_verified(desc.digest())?;
            check_size(desc, bytes.len() as u64)?;
            let idx: ImageIndex =
                serde_json::from_slice(&bytes).map_err(|e| StoreError::InvalidJson {
                    what: "image index",
                    digest: desc.digest().clone(),
                    reason: e.to_string(),
                })?;
            Ok(idx.manifests().clone())
        } else {
            Ok(Vec::new())
        }
    }

    /// Checks that every blob under `root` is present with the right size
    /// (manifests and indexes are also re-hashed; layers only stat'ed).
    pub(crate) fn ensure_complete(&self, root: &Descriptor) -> Result<(), StoreError> {
        let mut seen = HashSet::new();
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            if !seen.insert(desc.digest().clone()) {
                continue;
            }
            let path = self.blob_path(desc.digest());
            match fs::metadata(&path) {
                Ok(m) => check_size(&desc, m.len())?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(StoreError::BlobNotFound {
                        digest: desc.digest().clone(),
                    })
                }
                Err(e) => return Err(StoreError::io("inspect blob", path)(e)),
            }
            stack.extend(self.children(&desc)?);
        }
        Ok(())
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub blobs_removed: usize,
    pub bytes_removed: u64,
    pub blobs_kept: usize,
    pub temp_files_removed: usize,
    pub temp_bytes_removed: u64,
}

pub(crate) fn prune(store: &Store) -> Result<PruneReport, StoreError> {
    let _gc = lock::try_exclusive(
        &store.locks_dir().join(lock::GC_LOCK),
        "a build, load, pull, or run of an image from a registry is writing to the store",
    )?;
    // Held through mark and sweep: a concurrent `tag` waits, then checks that
    // its blobs survived.
    let _index = store.lock_index()?;
    let idx = index::read_index(&store.index_path())?;

    // Mark. Any unreadable manifest stops us: we cannot know what it needs.
    let mut reachable: HashSet<String> = HashSet::new();
    let mut stack: Vec<(String, Descriptor)> = idx
        .manifests()
        .iter()
        .map(|d| (index::root_label(d), d.clone()))
        .collect();
    while let Some((image, desc)) = stack.pop() {
        if !reachable.insert(desc.digest().to_string()) {
            continue;
        }
        let children = store.children(&desc).map_err(|e| StoreError::PruneUnsafe {
            reason: format!("image {image}: {e}"),
        })?;
        stack.extend(children.into_iter().map(|c| (image.clone(), c)));
    }

    // Sweep blobs/<algorithm>/<encoded>.
    let mut report = PruneReport::default();
    let blobs = store.layout_dir().join("blobs");
    for alg in read_dir(&blobs)? {
        if !alg.is_dir() {
            continue;
        }
        let alg_name = file_name(&alg);
        for path in read_dir(&alg)? {
            let key = format!("{alg_name}:{}", file_name(&path));
            if reachable.contains(&key) {
                report.blobs_kept += 1;
                continue;
            }
            let len = fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
            remove(&path)?;
            report.blobs_removed += 1;
            report.bytes_removed += len;
        }
    }

    // Temp files: a live writer keeps its file flock'ed; a free lock means
    // the writer died.
    for path in read_dir(&store.tmp_dir())? {
        let Ok(file) = fs::File::open(&path) else {
            continue;
        };
        let meta = file.metadata().map_err(StoreError::io("inspect", &path))?;
        if meta.is_dir() || file.try_lock().is_err() {
            continue;
        }
        remove(&path)?;
        report.temp_files_removed += 1;
        report.temp_bytes_removed += meta.len();
    }
    Ok(report)
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(StoreError::io("list", dir))? {
        out.push(entry.map_err(StoreError::io("list", dir))?.path());
    }
    out.sort();
    Ok(out)
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn remove(path: &std::path::Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", path)(e)),
    }
}

/// What is wrong with one blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobProblem {
    Missing,
    Corrupt {
        found: Digest,
    },
    SizeMismatch {
        expected: u64,
        found: u64,
    },
    /// Present and intact, but not the manifest/index its media type says,
    /// or not readable at all.
    Unreadable {
        reason: String,
    },
}

/// One damaged blob and the images that need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckProblem {
    pub digest: Digest,
    pub problem: BlobProblem,
    pub images: Vec<String>,
}

impl fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            BlobProblem::Missing => write!(f, "blob {} is missing", self.digest)?,
            BlobProblem::Corrupt { found } => {
                write!(f, "blob {} is corrupt (hashes to {found})", self.digest)?
            }
            BlobProblem::SizeMismatch { expected, found } => write!(
                f,
                "blob {} has {found} bytes, expected {expected}",
                self.digest
            )?,
            BlobProblem::Unreadable { reason } => {
                write!(f, "blob {} is unreadable: {reason}", self.digest)?
            }
        }
        write!(f, "; needed by {}", self.images.join(", "))
    }
}

/// The result of [`Store::fsck`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub images_checked: usize,
    pub blobs_checked: usize,
    pub bytes_checked: u64,
    /// Sorted by digest.
    pub problems: Vec<FsckProblem>,
}

impl FsckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

pub(crate) fn fsck(store: &Store) -> Result<FsckReport, StoreError> {
    // Shared with writers, exclusive with prune: no blob vanishes mid-check.
    let _session = store.write_session()?;
    let idx = index::read_index(&store.index_path())?;
    let mut report = FsckReport {
        images_checked: idx.manifests().len(),
        ..FsckReport::default()
    };
    // Per blob: its problem (if any) and its children, computed once.
    let mut checked: BTreeMap<String, (Option<BlobProblem>, Vec<Descriptor>)> = BTreeMap::new();
    let mut problems: BTreeMap<String, FsckProblem> = BTreeMap::new();

    for root in idx.manifests() {
        let image = index::root_label(root);
        let mut seen = HashSet::new();
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            let key = desc.digest().to_string();
            if !seen.insert(key.clone()) {
                continue;
            }
            if !checked.contains_key(&key) {
                let (problem, bytes) = check_blob(store, &desc);
                report.blobs_checked += 1;
                report.bytes_checked += bytes;
                let (problem, children) = match problem {
                    Some(p) => (Some(p), Vec::new()),
                    None => match store.children(&desc) {
                        Ok(c) => (None, c),
                        Err(e) => (
                            Some(BlobProblem::Unreadable {
                                reason: e.to_string(),
                            }),
                            Vec::new(),
                        ),
                    },
                };
                checked.insert(key.clone(), (problem, children));
            }
            let (problem, children) = &checked[&key];
            if let Some(problem) = problem {
                let entry = problems.entry(key).or_insert_with(|| FsckProblem {
                    digest: desc.digest().clone(),
                    problem: problem.clone(),
                    images: Vec::new(),
                });
                if !entry.images.contains(&image) {
                    entry.images.push(image.clone());
                }
            }
            stack.extend(children.iter().cloned());
        }
    }
    report.problems = problems.into_values().collect();
    Ok(report)
}

/// Streams one blob through sha256. Returns its problem and the bytes read.
fn check_blob(store: &Store, desc: &Descriptor) -> (Option<BlobProblem>, u64) {
    let digest = desc.digest();
    if digest.algorithm().as_ref() != "sha256" {
        let problem = BlobProblem::Unreadable {
            reason: format!("unsupported digest algorithm {}", digest.algorithm()),
        };
        return (Some(problem), 0);
    }
    let file = match store.open_blob(digest) {
        Ok(f) => f,
        Err(StoreError::BlobNotFound { .. }) => return (Some(BlobProblem::Missing), 0),
        Err(e) => {
            let problem = BlobProblem::Unreadable {
                reason: e.to_string(),
            };
            return (Some(problem), 0);
        }
    };
    match hash_reader(file) {
        Ok((found, size)) if &found != digest => (Some(BlobProblem::Corrupt { found }), size),
        Ok((_, size)) if size != desc.size() => (
            Some(BlobProblem::SizeMismatch {
                expected: desc.size(),
                found: size,
            }),
            size,
        ),
        Ok((_, size)) => (None, size),
        Err(e) => (
            Some(BlobProblem::Unreadable {
                reason: e.to_string(),
            }),
            0,
        ),
    }
}
