//! The files of an image that a run changes before applying it (its
//! templates and the targets of the Clusterfile's Configs), as its layers
//! leave them: later layers win, whiteouts remove. The operator reads them
//! from layer tars (`apply::image_files`); in registry mode, where it keeps
//! no layer, a host reads them from the layer directories it pulled
//! (`sealrs installer originals`). Both go by [`Originals`].

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::integrity::RECORD;
use super::InstallerError;
use crate::store::layer_path;

/// Files bigger than this are not read for Configs or templates.
pub const MAX_FILE: u64 = 16 << 20;

/// An original file of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    #[serde(with = "base64_bytes")]
    pub content: Vec<u8>,
    pub mode: u32,
}

/// What `sealrs installer originals` reads on standard input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginalsRequest {
    /// The image's layer directories on this host, lowest first.
    pub layers: Vec<PathBuf>,
    /// Paths (inside the image) the Clusterfile's Configs change.
    pub config_paths: Vec<String>,
}

/// The image's files as its layers leave them, by path inside the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Originals {
    pub files: BTreeMap<String, Original>,
}

impl Originals {
    /// Applies `path` if it is a whiteout (`.wh..wh..opq` empties its
    /// directory, `.wh.NAME` removes NAME, each of what lower layers put);
    /// whether it was one.
    pub fn whiteout(&mut self, path: &str) -> bool {
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        if name == ".wh..wh..opq" {
            let prefix = format!("{dir}/");
            self.files.retain(|p, _| !p.starts_with(&prefix));
            return true;
        }
        let Some(hidden) = name.strip_prefix(".wh.") else {
            return false;
        };
        let gone = if dir.is_empty() {
            hidden.to_string()
        } else {
            format!("{dir}/{hidden}")
        };
        let below = format!("{gone}/");
        self.files
            .retain(|p, _| p != &gone && !p.starts_with(&below));
        true
    }

    /// A wanted path that is not a regular file of at most [`MAX_FILE`]
    /// bytes in this layer: what a lower layer had there is gone.
    pub fn shadow(&mut self, path: &str) {
        self.files.remove(path);
    }

    pub fn put(&mut self, path: String, original: Original) {
        self.files.insert(path, original);
    }
}

/// Whether a run changes the file at `path` of an image: a template, or
/// the target of one of `config_paths`.
pub fn wanted(path: &str, config_paths: &[String]) -> bool {
    crate::template::is_template(path) || config_paths.iter().any(|c| c == path)
}

/// [`Originals`] of the layer directories `request` names (received by
/// `unpack::receive`: a layer's whiteouts are kept there as the empty files
/// its tar had). A layer's whiteouts are applied before its files, as a tar
/// lists an opaque marker before the directory's contents.
pub fn read_originals(request: &OriginalsRequest) -> Result<Originals, InstallerError> {
    let mut originals = Originals::default();
    for dir in &request.layers {
        let mut entries = Vec::new();
        for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                InstallerError::io("reading", &path)(e.into())
            })?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            let path = layer_path(rel.as_os_str().as_bytes());
            if path == RECORD {
                continue;
            }
            entries.push((path, entry));
        }
        entries.retain(|(path, _)| !originals.whiteout(path));
        for (path, entry) in entries {
            if !wanted(&path, &request.config_paths) {
                continue;
            }
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(InstallerError::io("reading", entry.path()))?;
            if !meta.is_file() || meta.len() > MAX_FILE {
                originals.shadow(&path);
                continue;
            }
            let content =
                fs::read(entry.path()).map_err(InstallerError::io("reading", entry.path()))?;
            let mode = meta.permissions().mode() & 0o7777;
            originals.put(path, Original { content, mode });
        }
    }
    Ok(originals)
}

/// The layer directories of `request` must be where layers are kept.
pub fn check_request(request: &OriginalsRequest, layers_dir: &Path) -> Result<(), InstallerError> {
    match request
        .layers
        .iter()
        .find(|l| l.parent() != Some(layers_dir))
    {
        Some(bad) => Err(InstallerError::UnsafePath {
            path: bad.display().to_string(),
            reason: format!("not a layer directory of {}", layers_dir.display()),
        }),
        None => Ok(()),
    }
}

/// Bytes as base64 in JSON: a template may hold any byte.
mod base64_bytes {
    use super::*;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, path: &str, content: &str, mode: u32) {
        let full = root.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, content).unwrap();
        fs::set_permissions(&full, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_hosts_layer_directories_give_the_templates_and_config_targets_as_the_layers_leave_them() {
        let dir = tempfile::tempdir().unwrap();
        let (low, high) = (
            dir.path().join("sha256-low"),
            dir.path().join("sha256-high"),
        );
        write(&low, "etc/a.yaml.tmpl", "a: {{ .A }}", 0o640);
        write(&low, "etc/gone.tmpl", "gone", 0o644);
        write(&low, "manifests/old/x.yaml.tmpl", "old", 0o644);
        write(&low, "etc/config.yaml", "base: 1", 0o600);
        write(&low, "bin/k3s", "not wanted", 0o755);
        write(&low, "scripts/init.sh.tmpl", "echo low", 0o755);
        write(&low, RECORD, "{}", 0o600);
        // The upper layer: a whiteout, an opaque directory, a newer template,
        // and a directory where a template was.
        write(&high, "etc/.wh.gone.tmpl", "", 0o644);
        write(&high, "manifests/old/.wh..wh..opq", "", 0o644);
        write(&high, "manifests/old/y.yaml.tmpl", "new", 0o644);
        write(&high, "scripts/init.sh.tmpl", "echo high", 0o700);
        fs::create_dir_all(high.join("etc/a.yaml.tmpl")).unwrap();
        let request = OriginalsRequest {
            layers: vec![low, high],
            config_paths: vec!["etc/config.yaml".into()],
        };
        let files = read_originals(&request).unwrap().files;
        let got: Vec<(&str, &[u8], u32)> = files
            .iter()
            .map(|(p, o)| (p.as_str(), o.content.as_slice(), o.mode))
            .collect();
        assert_eq!(
            got,
            [
                ("etc/config.yaml", &b"base: 1"[..], 0o600),
                ("manifests/old/y.yaml.tmpl", b"new", 0o644),
                ("scripts/init.sh.tmpl", b"echo high", 0o700),
            ]
        );
    }

    #[test]
    fn originals_travel_as_json_byte_for_byte() {
        let original = Original {
            content: vec![0, 0xff, b'$', b'{'],
            mode: 0o644,
        };
        let json = serde_json::to_string(&original).unwrap();
        assert_eq!(serde_json::from_str::<Original>(&json).unwrap(), original);
    }

    #[test]
    fn a_request_naming_a_directory_outside_the_layers_is_refused() {
        let layers = Path::new("/var/lib/sealrs-host/layers");
        let ok = OriginalsRequest {
            layers: vec![layers.join("abc")],
            config_paths: vec![],
        };
        assert!(check_request(&ok, layers).is_ok());
        let bad = OriginalsRequest {
            layers: vec![PathBuf::from("/etc")],
            config_paths: vec![],
        };
        assert!(check_request(&bad, layers).is_err());
    }
}
