//! `index.json`: the only mutable file of the layout. It is read without a
//! lock (it is only ever replaced by rename, so a reader sees the old or the
//! new file, never half of one) and rewritten under `locks/index.lock`.

use std::io::Write;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use super::blob::locked_temp;
use super::error::StoreError;
use crate::atomic_file;

/// The annotation that names an image in an OCI layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Docker's media types, which a layout may hold when filled by other tools.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest `index.json`, manifest or config we read into memory.
pub(crate) const MAX_JSON: u64 = 16 * 1024 * 1024;

pub(crate) fn is_manifest(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageManifest) || mt.as_ref() == DOCKER_MANIFEST
}

pub(crate) fn is_index(mt: &MediaType) -> bool {
    matches!(mt, MediaType::ImageIndex) || mt.as_ref() == DOCKER_MANIFEST_LIST
}

pub(crate) fn ref_name(desc: &Descriptor) -> Option<&str> {
    desc.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

pub(crate) fn with_ref_name(desc: &Descriptor, name: &str) -> Descriptor {
    let mut desc = desc.clone();
    let mut annotations = desc.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME.to_string(), name.to_string());
    desc.set_annotations(Some(annotations));
    desc
}

pub(crate) fn empty_index() -> ImageIndex {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .build()
        .expect("static index is valid")
}

/// Checks `name` against the grammar the image-spec gives for
/// `org.opencontainers.image.ref.name` (the same regexp skopeo and umoci
/// enforce): components of `[A-Za-z0-9]+` joined by one of `-._:@+` or `--`,
/// separated by `/`. `docker.io/library/app:1.0`, `127.0.0.1:5000/a/b:1` and
/// `app@sha256:…` all pass.
pub fn validate_ref_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| StoreError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    for component in name.split('/') {
        if component.is_empty() {
            return Err(bad(
                "empty path component (leading, trailing or double '/')",
            ));
        }
        let bytes = component.as_bytes();
        let mut i = 0;
        let mut expect_alnum = true;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_alphanumeric() {
                expect_alnum = false;
                i += 1;
                continue;
            }
            if expect_alnum {
                return Err(bad(
                    "each separator (-._:@+) must sit between letters or digits",
                ));
            }
            let len = if c == b'-' && bytes.get(i + 1) == Some(&b'-') {
                2
            } else if matches!(c, b'-' | b'.' | b'_' | b':' | b'@' | b'+') {
                1
            } else {
                return Err(bad(&format!(
                    "character {:?} is not allowed (letters, digits, -._:@+ and /)",
                    c as char
                )));
            };
            i += len;
            expect_alnum = true;
        }
        if expect_alnum {
            return Err(bad("a name may not end with a separator"));
        }
    }
    Ok(())
}

pub(crate) fn read_index(path: &Path) -> Result<ImageIndex, StoreError> {
    let bytes = std::fs::read(path).map_err(StoreError::io("read", path))?;
    parse_index(path, &bytes)
}

pub(crate) fn parse_index(path: &Path, bytes: &[u8]) -> Result<ImageIndex, StoreError> {
    let index: ImageIndex =
        serde_json::from_slice(bytes).map_err(|e| StoreError::CorruptIndex {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if index.schema_version() != 2 {
        return Err(StoreError::CorruptIndex {
            path: path.to_path_buf(),
            reason: format!("schemaVersion is {}, expected 2", index.schema_version()),
        });
    }
    Ok(index)
}

/// Serializes with sorted object keys, so that equal content gives equal
/// bytes (oci-spec keeps annotations and labels in `HashMap`s, whose order
/// is random). Relies on serde_json's default `BTreeMap` maps, i.e. on the
/// `preserve_order` feature being off.
pub(crate) fn canonical_json<T: serde::Serialize>(value: &T) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&serde_json::to_value(value)?)
}

/// Writes `index` to `path` through a temp file in `tmp_dir` and a rename.
/// The caller holds the index lock.
pub(crate) fn write_index(
    path: &Path,
    tmp_dir: &Path,
    index: &ImageIndex,
) -> Result<(), StoreError> {
    let bytes = canonical_json(index).map_err(|e| StoreError::CorruptIndex {
        path: path.to_path_buf(),
        reason: format!("cannot serialize: {e}"),
    })?;
    write_atomic(path, tmp_dir, &bytes)
}

/// Replaces `path` with `bytes` atomically, through a temp file in `tmp_dir`
/// that `prune` leaves alone while it lives.
pub(crate) fn write_atomic(path: &Path, tmp_dir: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut tmp = locked_temp(tmp_dir, "meta-")?;
    tmp.write_all(bytes)
        .map_err(StoreError::io("write", tmp.path().to_path_buf()))?;
    atomic_file::persist(tmp, path).map_err(StoreError::io("replace", path))
}

/// Names of the tagged entries, for messages and fsck.
pub(crate) fn root_label(desc: &Descriptor) -> String {
    match ref_name(desc) {
        Some(n) => n.to_string(),
        None => format!("<unnamed {}>", desc.digest()),
    }
}

/// Applies tag changes to an index. `Some(desc)` tags `name`, `None` removes
/// it; returns what each name pointed to before.
pub(crate) fn apply_tags(
    index: &mut ImageIndex,
    changes: &[(String, Option<Descriptor>)],
) -> Vec<Option<Descriptor>> {
    let mut manifests = index.manifests().clone();
    let mut previous = Vec::with_capacity(changes.len());
    for (name, new) in changes {
        let mut old = None;
        let mut slot = None;
        let mut i = 0;
        while i < manifests.len() {
            if ref_name(&manifests[i]) == Some(name.as_str()) {
                let removed = manifests.remove(i);
                if old.is_none() {
                    old = Some(removed);
                    slot = Some(i);
                }
            } else {
                i += 1;
            }
        }
        if let Some(desc) = new {
            // Keep a retagged name where it was, so `index.json` diffs stay small.
            let at = slot.unwrap_or(manifests.len());
            manifests.insert(at, with_ref_name(desc, name));
        }
        previous.push(old);
    }
    index.set_manifests(manifests);
    previous
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_name_grammar() {
        for ok in [
            "docker.io/library/app:1.0",
            "127.0.0.1:5000/a/b:1",
            "localhost:5000/x",
            "app",
            "a--b",
            "ghcr.io/o/r@sha256:0123abcd",
            "x+y",
        ] {
            validate_ref_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "", "/a", "a/", "a//b", "-a", "a-", "a b", "a:", "a..b", "a/.b", "é",
        ] {
            assert!(validate_ref_name(bad).is_err(), "{bad} should be rejected");
        }
    }
}
