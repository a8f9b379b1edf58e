//! Which paths each layer's tar holds, kept in the store by layer digest.
//! Finding an image's templates and Config targets (`apply`'s image files)
//! then opens only the layers that hold one, instead of decompressing every
//! layer on every run. Build writes an entry for each layer it makes; other
//! layers get theirs the first time they are read. Layers are
//! content-addressed, so an entry never goes stale; it is a cache, written
//! without fsync, and one that cannot be read is made again.

use std::fs;
use std::io;
use std::path::PathBuf;

use super::{Digest, Store};
use crate::atomic_file;

/// A tar entry's name as the layer paths are kept: without a leading `./`
/// or `/`.
pub fn layer_path(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

impl Store {
    fn layer_paths_file(&self, digest: &Digest) -> PathBuf {
        self.root().join("cache").join("layer-paths").join(format!(
            "{}-{}.json",
            digest.algorithm().as_ref(),
            digest.digest()
        ))
    }

    /// The paths the layer `digest` holds, in tar order, when known.
    pub fn layer_paths(&self, digest: &Digest) -> Option<Vec<String>> {
        let bytes = fs::read(self.layer_paths_file(digest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps `paths` (made by [`layer_path`]) as the layer `digest`'s.
    pub fn remember_layer_paths(&self, digest: &Digest, paths: &[String]) -> io::Result<()> {
        let file = self.layer_paths_file(digest);
        if let Some(dir) = file.parent() {
            fs::create_dir_all(dir)?;
        }
        let mut tmp = atomic_file::temp_beside(&file)?;
        serde_json::to_writer(&mut tmp, paths)?;
        tmp.persist(&file).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layers_paths_are_kept_by_digest_and_a_damaged_entry_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let digest: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(store.layer_paths(&digest), None);
        let paths = vec![layer_path(b"./etc/a.yaml.tmpl"), layer_path(b"/bin/k3s")];
        assert_eq!(paths, ["etc/a.yaml.tmpl", "bin/k3s"]);
        store.remember_layer_paths(&digest, &paths).unwrap();
        assert_eq!(store.layer_paths(&digest), Some(paths));
        fs::write(store.layer_paths_file(&digest), b"[\"cut").unwrap();
        assert_eq!(store.layer_paths(&digest), None);
    }
}
