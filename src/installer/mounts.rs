//! The host's mount table, and removing a tree without crossing a mount.
//!
//! A directory bind-mounted from the same filesystem has the same `st_dev`
//! as its parent, so a device check alone does not see it: the mount table
//! (`/proc/self/mountinfo`) is what names every mount point. k3s leaves such
//! mounts under `/run/k3s` (containers' root filesystems) and
//! `/var/lib/kubelet/pods` (volumes); a recursive removal that went through
//! one would delete the data behind it, so [`remove_all`] never does.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The mount points in a `mountinfo` text (field 5), in its order (a mount
/// comes after the mounts below which it was made).
pub(crate) fn parse_mountinfo(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .collect()
}

/// The kernel writes space, tab, newline and `\` in paths as `\ooo`.
fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |v, b| v.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mount points of this process's mount namespace.
pub(crate) fn mount_points() -> io::Result<Vec<PathBuf>> {
    Ok(parse_mountinfo(&fs::read_to_string(MOUNTINFO)?))
}

/// `path` with its symlinks resolved, as the mount table names it; as given
/// when it cannot be resolved.
pub(crate) fn resolved(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Removes a file, symlink or directory tree; missing is fine. A directory
/// below `path` that is a mount point (in the mount table, or on another
/// device) is left as it is, with everything behind it, and so are the
/// directories that lead to it; the error then names every such mount point.
/// `path` itself may be a mount point: what is in it on its own filesystem
/// goes, and the directory stays (reported like the others).
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        other => other?,
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    let top = resolved(path);
    let mounts: HashSet<PathBuf> = mount_points()?
        .into_iter()
        .filter(|m| m.starts_with(&top))
        .collect();
    let mut left = Vec::new();
    remove_tree(&top, meta.dev(), &mounts, true, &mut left)?;
    if left.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
    Err(io::Error::other(format!(
        "{} is a mount point, left in place with what is behind it; unmount it and run again",
        names.join(", ")
    )))
}

/// Removes `dir` and what is below it on device `dev`; mount points go to
/// `left`. Returns whether `dir` is gone.
fn remove_tree(
    dir: &Path,
    dev: u64,
    mounts: &HashSet<PathBuf>,
    top: bool,
    left: &mut Vec<PathBuf>,
) -> io::Result<bool> {
    let meta = fs::symlink_metadata(dir)?;
    if !top && (mounts.contains(dir) || meta.dev() != dev) {
        left.push(dir.to_path_buf());
        return Ok(false);
    }
    // Read-only directories from a layer must not stop removal.
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    let mut all_gone = true;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let child = entry.path();
        if entry.file_type()?.is_dir() {
            all_gone &= remove_tree(&child, dev, mounts, false, left)?;
        } else if mounts.contains(&child) {
            // A file bind-mounted over a file.
            left.push(child);
            all_gone = false;
        } else {
            match fs::remove_file(&child) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    if !all_gone {
        return Ok(false);
    }
    if top && mounts.contains(dir) {
        left.push(dir.to_path_buf());
        return Ok(false);
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_names_each_mount_point_with_escapes_undone() {
        let text = "22 1 0:21 / / rw,relatime - overlay overlay rw\n\
                    90 22 0:45 / /run/k3s rw - tmpfs tmpfs rw\n\
                    91 90 0:21 /srv/a\\040b /run/k3s/c\\040d/rootfs rw - overlay overlay rw\n\
                    92 22 0:21 /x /var/lib/kubelet/pods/u/volumes/back\\134slash rw - overlay overlay rw\n";
        assert_eq!(
            parse_mountinfo(text),
            [
                "/",
                "/run/k3s",
                "/run/k3s/c d/rootfs",
                "/var/lib/kubelet/pods/u/volumes/back\\slash"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn a_tree_without_mounts_goes_and_a_file_or_nothing_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        fs::create_dir_all(tree.join("a/b")).unwrap();
        fs::write(tree.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", tree.join("a/etc")).unwrap();
        fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o500)).unwrap();
        remove_all(&tree).unwrap();
        assert!(!tree.exists());
        assert!(Path::new("/etc/hostname").exists() || Path::new("/etc").is_dir());
        fs::write(dir.path().join("f"), "x").unwrap();
        remove_all(&dir.path().join("f")).unwrap();
        remove_all(&dir.path().join("missing")).unwrap();
    }

    #[test]
    fn a_mount_point_below_is_left_with_what_is_behind_it_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let tree = resolved(dir.path()).join("t");
        fs::create_dir_all(tree.join("keep/mnt")).unwrap();
        fs::create_dir_all(tree.join("gone")).unwrap();
        fs::write(tree.join("gone/f"), "x").unwrap();
        fs::write(tree.join("keep/f"), "x").unwrap();
        fs::write(tree.join("keep/mnt/data"), "behind").unwrap();
        let mounts: HashSet<PathBuf> = [tree.join("keep/mnt")].into();
        let dev = fs::metadata(&tree).unwrap().dev();
        let mut left = Vec::new();
        let gone = remove_tree(&tree, dev, &mounts, true, &mut left).unwrap();
        assert!(!gone);
        assert_eq!(left, [tree.join("keep/mnt")]);
        assert!(!tree.join("gone").exists() && !tree.join("keep/f").exists());
        assert_eq!(
            fs::read_to_string(tree.join("keep/mnt/data")).unwrap(),
            "behind"
        );
    }
}
