//! One command per saved cluster at a time: an exclusive `flock(2)` on
//! `$SEALRS_ROOT/clusters/NAME/lock`, taken before the saved cluster is read
//! and held until the command has saved it (or forgotten it). The holder
//! writes who it is into the file (pid, command, since when), so that the
//! second command fails at once naming the first. As for the store's locks,
//! the kernel drops the lock when its holder dies: a killed command never
//! leaves the cluster locked.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::ApplyError;

/// `$SEALRS_ROOT/clusters/NAME/lock`.
pub fn lock_file(root: &Path, name: &str) -> PathBuf {
    root.join("clusters").join(name).join("lock")
}

/// The held lock of one saved cluster; released when dropped. A command
/// that leaves no saved cluster behind (a typo in `--cluster`, a first `run`
/// stopped before any host changed, a reset) leaves no lock file either: it
/// is unlinked while still held, so a command that opened it meanwhile
/// fails as busy, and one that comes later makes a new one.
#[derive(Debug)]
pub struct ClusterLock {
    _file: File,
    path: PathBuf,
}

impl Drop for ClusterLock {
    fn drop(&mut self) {
        let Some(dir) = self.path.parent() else {
            return;
        };
        if !dir.join("Clusterfile").exists() {
            let _ = std::fs::remove_file(&self.path);
            // Only when empty: nothing else of the cluster is removed here.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl ClusterLock {
    /// Takes the lock of cluster `name` for `command` (what the holder is
    /// doing, shown to a second command: `run`, `reset`, …), or fails at once
    /// with [`ApplyError::Busy`] naming the command that holds it.
    pub fn acquire(root: &Path, name: &str, command: &str) -> Result<ClusterLock, ApplyError> {
        let path = lock_file(root, name);
        let io = |source| ApplyError::State {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(ApplyError::Busy {
                    cluster: name.to_string(),
                    holder: if holder.is_empty() {
                        "another sealrs command".into()
                    } else {
                        holder.to_string()
                    },
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let who = format!(
            "sealrs {command} (pid {}, since {})\n",
            std::process::id(),
            crate::build::epoch_rfc3339(since)
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(who.as_bytes()).map_err(io)?;
        Ok(ClusterLock { _file: file, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_fails_at_once_naming_the_first_and_a_dropped_lock_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let held = ClusterLock::acquire(dir.path(), "c1", "reset").unwrap();
        let err = ClusterLock::acquire(dir.path(), "c1", "run").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cluster c1 is busy")
                && text.contains("sealrs reset (pid ")
                && text.contains(&std::process::id().to_string())
                && text.contains(", since 20"),
            "{text}"
        );
        // Another cluster is another lock.
        let other = ClusterLock::acquire(dir.path(), "c2", "run").unwrap();
        drop(held);
        let again = ClusterLock::acquire(dir.path(), "c1", "run").unwrap();
        drop((again, other));
        // No saved cluster: nothing is left behind.
        assert!(!dir.path().join("clusters/c1").exists());
        std::fs::create_dir_all(dir.path().join("clusters/c3")).unwrap();
        std::fs::write(dir.path().join("clusters/c3/Clusterfile"), "x").unwrap();
        drop(ClusterLock::acquire(dir.path(), "c3", "run").unwrap());
        assert!(
            lock_file(dir.path(), "c3").exists(),
            "a saved cluster keeps it"
        );
    }
}
