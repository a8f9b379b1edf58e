//! What a host no longer needs: after an upgrade has completed there, the
//! rootfs directories and layer directories that no image it keeps
//! references. The operator names the images to keep (the one the host runs
//! now and the one before it, for a rollback) and their layers; the rootfs
//! and application directories that stay name their own layers in their
//! stamps, so those stay too. Leftovers of interrupted runs go as in every
//! unpack. Only digest-named entries are ever removed: anything else under
//! these directories is not sealrs' to judge.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::unpack::{remove_all, remove_garbage, stamped_layers};
use super::InstallerError;

/// What [`gc`] removed, and the bytes the filesystem got back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcOutcome {
    /// Layer and rootfs directories removed, and leftovers of interrupted runs.
    pub removed: Vec<PathBuf>,
    /// Bytes freed: the blocks of every file and directory whose last link
    /// went (a rootfs file that is also a kept layer's frees nothing).
    pub freed: u64,
}

/// Removes from `rootfs_dir` every image rootfs (named by its image digest's
/// hex) not in `keep_images`, then from `layers_dir` every layer directory
/// (named by its blob digest's hex) that is neither in `keep_layers` nor in
/// the stamp of a rootfs that stays or of a directory under `pinned_by`
/// (application images' rootfs). Refuses to run with nothing to keep.
pub fn gc(
    layers_dir: &Path,
    rootfs_dir: &Path,
    keep_images: &[String],
    keep_layers: &[String],
    pinned_by: &[PathBuf],
) -> Result<GcOutcome, InstallerError> {
    if keep_images.is_empty() {
        return Err(InstallerError::Gc(
            "no image to keep was named: refusing to remove every rootfs".into(),
        ));
    }
    let keep_images: BTreeSet<String> = keep_images.iter().map(|d| hex_of(d)).collect();
    let mut removed = remove_garbage(layers_dir)?;
    removed.extend(remove_garbage(rootfs_dir)?);

    let mut doomed = Vec::new();
    let mut kept_layers: BTreeSet<String> = keep_layers.iter().map(|d| hex_of(d)).collect();
    for (name, path) in digest_named(rootfs_dir) {
        if keep_images.contains(&name) {
            kept_layers.extend(stamped_layers(&path).iter().map(|d| hex_of(d)));
        } else {
            doomed.push(path);
        }
    }
    for dir in pinned_by {
        for (_, path) in digest_named(dir) {
            kept_layers.extend(stamped_layers(&path).iter().map(|d| hex_of(d)));
        }
    }
    doomed.extend(
        digest_named(layers_dir)
            .into_iter()
            .filter(|(name, _)| !kept_layers.contains(name))
            .map(|(_, path)| path),
    );

    let freed = freed_by_removing(&doomed);
    for path in doomed {
        remove_all(&path).map_err(InstallerError::io("removing", &path))?;
        removed.push(path);
    }
    Ok(GcOutcome { removed, freed })
}

/// `<hex>` of `sha256:<hex>` or of a bare hex, lower case.
fn hex_of(digest: &str) -> String {
    digest
        .strip_prefix("sha256:")
        .unwrap_or(digest)
        .to_ascii_lowercase()
}

/// The entries of `dir` named by a SHA-256 hex, with their paths.
fn digest_named(dir: &Path) -> Vec<(String, PathBuf)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = read
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let hex = name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit());
            hex.then(|| (name.to_ascii_lowercase(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The bytes that removing every tree in `paths` gives back: an inode
/// counts once all its links are among them.
fn freed_by_removing(paths: &[PathBuf]) -> u64 {
    let mut inodes: HashMap<(u64, u64), (u64, u64, u64)> = HashMap::new();
    for path in paths {
        for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let seen = inodes.entry((meta.dev(), meta.ino())).or_insert((
                meta.nlink(),
                0,
                meta.blocks() * 512,
            ));
            seen.1 += 1;
        }
    }
    inodes
        .values()
        .filter(|(nlink, seen, _)| seen >= nlink)
        .map(|(_, _, bytes)| bytes)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installer::unpack;

    fn layer(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes).unwrap();
        let blob = tar.into_inner().unwrap();
        let digest = crate::digest::sha256_digest(&blob);
        let tmp = dir.join("blob");
        fs::write(&tmp, &blob).unwrap();
        let layer = dir.join("layers").join(digest.digest());
        // Received as a host receives it: unpacked into its layer directory.
        let source = crate::installer::LayerSource::Incoming {
            dir: layer.clone(),
            size: blob.len() as u64,
        };
        crate::installer::receive(
            &[source],
            &mut &blob[..],
            &dir.join("scratch"),
            crate::installer::BlobCheck::Hash,
        )
        .unwrap();
        fs::remove_dir_all(dir.join("scratch")).unwrap();
        fs::remove_file(tmp).unwrap();
        layer
    }

    /// Three upgrades: images 1 → 2 → 3 → 4, each sharing a base layer and
    /// adding its own. After each gc only the current and the previous
    /// image's rootfs and layers are left, the shared base kept, the bytes
    /// of the rest reported.
    #[test]
    fn three_upgrades_leave_the_current_and_previous_images_layers() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let layers_dir = root.join("layers");
        let rootfs_dir = root.join("rootfs");
        let apps = root.join("apps");
        let base = layer(root, "bin/base", b"base");
        // An application image's rootfs pins its layer.
        let app = layer(root, "manifests/app.yaml", b"kind: App\n");
        unpack(std::slice::from_ref(&app), &apps.join("b".repeat(64))).unwrap();
        let mut images: Vec<(String, PathBuf)> = Vec::new();
        // Not ours: stays.
        fs::write(layers_dir.join("README"), "x").unwrap();
        for i in 1..=4u8 {
            // Upgrading to image i: its own layer arrives, its rootfs is
            // assembled, the upgrade completes, then gc.
            let own = layer(root, "bin/k3s", &vec![i; 300_000]);
            let now = format!("{i}").repeat(64);
            unpack(&[base.clone(), own.clone()], &rootfs_dir.join(&now)).unwrap();
            images.push((now.clone(), own.clone()));
            if i == 1 {
                continue;
            }
            if i == 2 {
                // A leftover of a transfer that was cut (a pid that is gone).
                fs::create_dir(layers_dir.join(".incoming-999999999-x")).unwrap();
            }
            let previous = images[images.len() - 2].clone();
            let keep = [now.clone(), previous.0.clone()];
            let keep_layers = [
                format!("sha256:{}", base.file_name().unwrap().to_string_lossy()),
                format!("sha256:{}", own.file_name().unwrap().to_string_lossy()),
            ];
            let out = gc(
                &layers_dir,
                &rootfs_dir,
                &keep,
                &keep_layers,
                std::slice::from_ref(&apps),
            )
            .unwrap();
            let rootfs: BTreeSet<String> =
                digest_named(&rootfs_dir).into_iter().map(|e| e.0).collect();
            assert_eq!(rootfs, keep.into_iter().collect(), "after upgrade to {i}");
            let left: BTreeSet<PathBuf> =
                digest_named(&layers_dir).into_iter().map(|e| e.1).collect();
            let want: BTreeSet<PathBuf> = [base.clone(), app.clone(), previous.1, own].into();
            assert_eq!(left, want, "after upgrade to {i}");
            if i == 2 {
                // Nothing but the cut transfer's leftover to remove yet.
                assert_eq!(out.removed, vec![layers_dir.join(".incoming-999999999-x")]);
                assert_eq!(out.freed, 0);
            } else {
                // The image before the previous one: its rootfs and its own
                // 300 kB layer.
                assert_eq!(out.removed.len(), 2, "{out:?}");
                assert!(out.freed >= 300_000, "{out:?}");
            }
            assert!(layers_dir.join("README").exists());
        }
        assert!(gc(&layers_dir, &rootfs_dir, &[], &[], &[]).is_err());
    }
}
