//! Advisory locks under `root/locks`, on top of `File::lock` (flock(2)).
//!
//! flock locks belong to an open file description, so two `Store`s in one
//! process exclude each other exactly like two processes do, and the kernel
//! drops a lock when its holder dies: a SIGKILLed build never leaves the store
//! locked.
//!
//! Two locks, always taken in this order:
//! - `gc.lock`: shared by every writer for its whole run ([`WriteSession`]),
//!   exclusive for `prune`. A blob that a build has put but not yet tagged is
//!   unreachable from `index.json`; the shared lock is what keeps prune away
//!   from it.
//! - `index.lock`: exclusive around each read-modify-write of `index.json`,
//!   so two taggers never lose each other's entries. Readers need no lock:
//!   `index.json` is only ever replaced by rename.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::error::StoreError;

pub(crate) const GC_LOCK: &str = "gc.lock";
pub(crate) const INDEX_LOCK: &str = "index.lock";

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub(crate) struct Held {
    _file: File,
}

fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(StoreError::io("open lock file", path))
}

/// Blocks until the exclusive lock is ours.
pub(crate) fn exclusive(path: &Path) -> Result<Held, StoreError> {
    let file = open_lock_file(path)?;
    file.lock().map_err(StoreError::io("lock", path))?;
    Ok(Held { _file: file })
}

/// Blocks until a shared lock is ours.
pub(crate) fn shared(path: &Path) -> Result<Held, StoreError> {
    let file = open_lock_file(path)?;
    file.lock_shared().map_err(StoreError::io("lock", path))?;
    Ok(Held { _file: file })
}

/// Takes the exclusive lock or fails at once with [`StoreError::Locked`].
pub(crate) fn try_exclusive(path: &Path, holder: &str) -> Result<Held, StoreError> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Held { _file: file }),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_path_buf(),
            holder: holder.to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::io("lock", path)(e)),
    }
}

/// Held (shared) by a build, load or pull for its whole duration, and by a
/// run of an image from a registry (whose blobs are never tagged) while it
/// may send them, so that `prune` never deletes blobs written but not yet
/// tagged. Dropping it ends the session.
#[derive(Debug)]
pub struct WriteSession {
    _held: Held,
    path: PathBuf,
}

impl WriteSession {
    pub(crate) fn begin(path: PathBuf) -> Result<WriteSession, StoreError> {
        let held = shared(&path)?;
        Ok(WriteSession { _held: held, path })
    }

    /// The lock file this session holds shared.
    pub fn lock_path(&self) -> &Path {
        &self.path
    }
}
