//! The registry tree a host will serve (`runtime::hub`), checked by the
//! installer's verify before anything changes: the registry binary is there,
//! and every blob's bytes have the digest its path names. A distribution
//! registry serves a blob by its path without hashing it, so a broken one
//! would reach every node that pulls it. Trees already merged (their marker
//! is there) were checked then and are not read again.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::request::Request;
use crate::digest::hash_reader;
use crate::runtime::hub::{self, REGISTRY_BIN, TREE};

/// What is wrong with the registry tree this host would serve; empty when
/// it serves none.
pub(super) fn violations(request: &Request, host_root: &Path) -> Vec<String> {
    let cluster = request.cluster();
    let Ok(host) = request.this_host(&cluster) else {
        return Vec::new();
    };
    let rootfs = host_root.join(request.rootfs.trim_start_matches('/'));
    let tree = rootfs.join(TREE).is_dir();
    if cluster.status.hub_password.is_none()
        || !hub::serves(&cluster, host)
        || !(tree || request.hub_elsewhere)
    {
        return Vec::new();
    }
    let mut out = Vec::new();
    let executable = fs::metadata(rootfs.join(REGISTRY_BIN))
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !executable {
        out.push(format!(
            "the cluster's images carry a registry tree (registry/) for the in-cluster registry {}, but the cluster image has no executable {REGISTRY_BIN} to serve it: add the distribution registry's binary (registry serve CONFIG) as {REGISTRY_BIN} and build again",
            hub::HUB_ENDPOINT
        ));
    }
    let marker = host_root.join(hub::merged_marker(&request.rootfs).trim_start_matches('/'));
    if tree && !marker.exists() {
        out.extend(broken_blobs(&rootfs));
    }
    out
}

/// Each blob `registry/docker/registry/v2/blobs/sha256/<ab>/<hex>/data`
/// whose bytes do not hash to `sha256:<hex>`, or that cannot be read.
fn broken_blobs(rootfs: &Path) -> Vec<String> {
    let blobs = rootfs.join(TREE).join("blobs/sha256");
    let mut out = Vec::new();
    let fix = "the image's registry tree is broken: rebuild the image from an intact tree (sealrs build harvests it again) and run again";
    for entry in walkdir::WalkDir::new(&blobs)
        .min_depth(3)
        .max_depth(3)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file() && e.file_name() == "data")
    {
        let path = entry.path();
        let shown = path
            .strip_prefix(rootfs)
            .unwrap_or(path)
            .display()
            .to_string();
        let named = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match File::open(path).and_then(hash_reader) {
            Ok((digest, _)) if digest.digest() == named => {}
            Ok((digest, _)) => out.push(format!(
                "{shown}: its bytes hash to {digest}, not to the sha256:{named} its path names; {fix}"
            )),
            Err(e) => out.push(format!("{shown}: cannot be read ({e}); {fix}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(root: &Path, bytes: &[u8], named: &str) {
        let dir = root
            .join(TREE)
            .join(format!("blobs/sha256/{}/{named}", &named[..2]));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("data"), bytes).unwrap();
    }

    #[test]
    fn a_blob_whose_bytes_do_not_match_its_path_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = crate::digest::sha256_digest(b"layer");
        blob(dir.path(), b"layer", good.digest());
        assert!(broken_blobs(dir.path()).is_empty());

        let named = crate::digest::sha256_digest(b"config");
        blob(dir.path(), b"config, one byte changed", named.digest());
        let found = broken_blobs(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        let shown = format!(
            "registry/docker/registry/v2/blobs/sha256/{}/{}/data",
            &named.digest()[..2],
            named.digest()
        );
        assert!(found[0].starts_with(&shown), "{}", found[0]);
        assert!(found[0].contains("rebuild the image"), "{}", found[0]);
    }
}
