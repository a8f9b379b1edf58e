//! Phase "save": the cluster, with its status, under
//! `$SEALRS_ROOT/clusters/NAME/`. The CLI runs it after every command that
//! changed a host, even one that then failed; `run` and the lifecycle
//! commands read it back. Beside it, while an upgrade has not completed,
//! what that upgrade set out to do ([`UpgradeIntent`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ApplyError;
use crate::atomic_file;
use crate::cluster::{Cluster, HostStatus, InstalledImage};

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

/// An upgrade that has not completed: saved before it changes any host and
/// removed once every host runs the new image (or went back), so that after
/// an upgrade killed before it could save a host, no command downgrades
/// the hosts it reached unawares, and `upgrade --rollback` knows where back is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpgradeIntent {
    /// The image upgraded to.
    pub to: InstalledImage,
    /// Its Kubernetes version.
    pub to_version: String,
    /// The images the cluster pinned before: a rollback returns to them.
    pub from_images: Vec<InstalledImage>,
    /// What each host ran before, by host key.
    pub before: BTreeMap<String, HostStatus>,
}

/// `$SEALRS_ROOT/clusters/NAME/upgrade.json`.
pub fn upgrade_intent_file(root: &Path, name: &str) -> PathBuf {
    cluster_file(root, name).with_file_name("upgrade.json")
}

/// Saves `intent` whole and durably (see [`atomic_file`]) before a host changes.
pub fn save_upgrade_intent(
    root: &Path,
    name: &str,
    intent: &UpgradeIntent,
) -> Result<(), ApplyError> {
    let path = upgrade_intent_file(root, name);
    let json = serde_json::to_vec_pretty(intent).expect("an upgrade intent serializes");
    let io = |source| ApplyError::State {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(path.parent().unwrap_or(root)).map_err(io)?;
    atomic_file::write(&path, &json, None).map_err(io)
}

/// The unfinished upgrade of cluster `name`, if there is one.
pub fn load_upgrade_intent(root: &Path, name: &str) -> Result<Option<UpgradeIntent>, ApplyError> {
    let path = upgrade_intent_file(root, name);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ApplyError::State { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ApplyError::State {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
}

/// Forgets the upgrade of cluster `name`: it completed, or went back.
pub fn clear_upgrade_intent(root: &Path, name: &str) -> Result<(), ApplyError> {
    let path = upgrade_intent_file(root, name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ApplyError::State { path, source }),
    }
}
