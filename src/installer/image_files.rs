//! The image files the operator prepared for this host (the Clusterfile's
//! Config documents applied, the `*.tmpl` files rendered; see
//! `apply::image_files`), written into the unpacked rootfs before the host's
//! plan is made, so that the runtime reads them and placement puts them
//! where the layout says, as if the image carried them.
//!
//! A file is replaced (temp and rename), never written through: the rootfs
//! shares inodes with the layer directories. One whose content and mode are
//! already those is left alone, so an unchanged rerun changes nothing.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{unpack, InstallerError, Request};
use crate::atomic_file;
use crate::cluster::inside_image;

/// One file of an image as a host gets it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageFile {
    /// Relative to the image's root, inside it.
    pub path: String,
    pub content: String,
    pub mode: u32,
}

impl fmt::Debug for ImageFile {
    /// A rendered file may hold a password: only its path and size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} bytes, mode {:o})",
            self.path,
            self.content.len(),
            self.mode
        )
    }
}

/// Writes `files` into `dir` (an unpacked image); how many changed.
pub fn write_files(dir: &Path, files: &[ImageFile]) -> Result<usize, InstallerError> {
    let mut changed = 0;
    for file in files {
        if let Err(reason) = inside_image(&file.path) {
            return Err(InstallerError::UnsafePath {
                path: file.path.clone(),
                reason: format!("an image file's path {reason}"),
            });
        }
        let path = dir.join(&file.path);
        if is_current(&path, file) {
            continue;
        }
        let parent = path.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(InstallerError::io("creating", parent))?;
        atomic_file::write(&path, file.content.as_bytes(), Some(file.mode))
            .map_err(InstallerError::io("writing", &path))?;
        changed += 1;
    }
    Ok(changed)
}

/// Whether `path` holds `file` already (content and mode).
fn is_current(path: &Path, file: &ImageFile) -> bool {
    fs::read(path).is_ok_and(|old| old == file.content.as_bytes())
        && fs::symlink_metadata(path)
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == file.mode)
}

/// The first of the request's image files that its rootfs does not hold as
/// it should (a probe's answer: writing it is work to do).
pub fn pending_file(request: &Request, host_root: &Path) -> Option<String> {
    let rootfs = host_root.join(request.rootfs.trim_start_matches('/'));
    request
        .files
        .iter()
        .find(|f| !is_current(&rootfs.join(&f.path), f))
        .map(|f| f.path.clone())
}

/// Before planning: the request's image files in its rootfs, which is
/// assembled first from the request's layers when they are given (the
/// execution's own assembly is then a no-op).
pub fn write_request_files(request: &Request, host_root: &Path) -> Result<usize, InstallerError> {
    if request.files.is_empty() {
        return Ok(0);
    }
    let under = |p: &str| host_root.join(p.trim_start_matches('/'));
    let rootfs = under(&request.rootfs);
    if !request.layers.is_empty() {
        let layers: Vec<PathBuf> = request.layers.iter().map(|l| under(l)).collect();
        unpack(&layers, &rootfs)?;
    }
    let written = write_files(&rootfs, &request.files)?;
    super::unpack::forget_sums(&rootfs, request.files.iter().map(|f| f.path.as_str()))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, mode: u32) -> ImageFile {
        ImageFile {
            path: path.into(),
            content: content.into(),
            mode,
        }
    }

    #[test]
    fn files_are_replaced_once_and_paths_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("manifests/a.yaml");
        fs::create_dir_all(original.parent().unwrap()).unwrap();
        fs::write(&original, "old").unwrap();
        // A hard link, as the rootfs shares inodes with its layers.
        let layer_copy = dir.path().join("layer-a.yaml");
        fs::hard_link(&original, &layer_copy).unwrap();
        let files = [
            file("manifests/a.yaml", "new: 1\n", 0o644),
            file("scripts/x/run.sh", "echo $HOME `x`\n", 0o755),
        ];
        assert_eq!(write_files(dir.path(), &files).unwrap(), 2);
        assert_eq!(fs::read_to_string(&original).unwrap(), "new: 1\n");
        assert_eq!(
            fs::read_to_string(&layer_copy).unwrap(),
            "old",
            "the layer is untouched"
        );
        let script = dir.path().join("scripts/x/run.sh");
        assert_eq!(
            fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(write_files(dir.path(), &files).unwrap(), 0, "unchanged");
        for bad in ["../escape", "/etc/passwd"] {
            let err = write_files(dir.path(), &[file(bad, "x", 0o644)]).unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
        assert!(format!("{:?}", files[0]).contains("7 bytes"));
    }
}
