//! Phase "save": the cluster, with its status, under
//! `$SEALRS_ROOT/clusters/NAME/`. The CLI runs it after every command that
//! changed a host, even one that then failed; `run` and the lifecycle
//! commands read it back.

use std::path::{Path, PathBuf};

use super::ApplyError;
use crate::atomic_file;
use crate::cluster::Cluster;

/// `$SEALRS_ROOT/clusters/NAME/Clusterfile`.
pub fn cluster_file(root: &Path, name: &str) -> PathBuf {
    root.join("clusters").join(name).join("Clusterfile")
}

/// Saves the cluster with its status, whole (see [`atomic_file`]): a crash
/// leaves the old status or the new one.
pub fn save_cluster(root: &Path, cluster: &Cluster) -> Result<PathBuf, ApplyError> {
    let path = cluster_file(root, &cluster.name);
    let io = |source| ApplyError::State {
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(io)?;
    atomic_file::write(&path, cluster.to_yaml().as_bytes(), None).map_err(io)?;
    Ok(path)
}

/// Reads `$SEALRS_ROOT/clusters/NAME/Clusterfile`.
pub fn load_cluster(root: &Path, name: &str) -> Result<Cluster, ApplyError> {
    let path = cluster_file(root, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApplyError::NoCluster {
                name: name.to_string(),
                path,
            })
        }
        Err(source) => return Err(ApplyError::State { path, source }),
    };
    Cluster::from_yaml(&text, &path.display().to_string()).map_err(|source| {
        ApplyError::SavedCluster {
            path,
            source: Box::new(source),
        }
    })
}

/// Removes `$SEALRS_ROOT/clusters/NAME/` (after a reset).
pub fn forget_cluster(root: &Path, name: &str) -> Result<(), ApplyError> {
    let file = cluster_file(root, name);
    let dir = file.parent().unwrap_or(root).to_path_buf();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ApplyError::State { path: dir, source }),
    }
}
