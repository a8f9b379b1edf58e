//! The backup file: one tar holding the snapshot (`snapshot`), the small
//! secret files the cluster needs back with it (`secrets/NAME`), the saved
//! cluster (`state/...`: hosts, env, pinned image digests) and, last, a
//! `manifest.json` that says what the snapshot is and its SHA-256. The
//! manifest comes last because the digest is known only once the snapshot
//! streamed through; a file cut short therefore lacks it and is refused.
//! Written 0600 whole or not at all (a temp file beside it, renamed).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::BackupError;
use crate::atomic_file;
use crate::digest::Hashing;
use crate::runtime::backup::SnapshotKind;
use crate::secret::Secret;

/// The manifest's `format`: what this sealrs writes and reads.
pub const FORMAT: u32 = 1;
const SNAPSHOT: &str = "snapshot";
const MANIFEST: &str = "manifest.json";
const SECRETS: &str = "secrets/";
const STATE: &str = "state/";

/// What a backup file holds, as `manifest.json` says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub cluster: String,
    pub runtime: String,
    pub version: String,
    /// The masters' keys (address, with the port when not 22), sorted.
    pub masters: Vec<String>,
    /// The master the snapshot was taken on.
    pub taken_on: String,
    pub kind: SnapshotKind,
    pub snapshot_size: u64,
    /// `sha256:<hex>` of the snapshot.
    pub snapshot_sha256: String,
    /// Unix seconds.
    pub created: u64,
}

/// A backup file being written: the snapshot first, then the rest.
pub struct Writer {
    tar: tar::Builder<tempfile::NamedTempFile>,
    path: PathBuf,
}

fn io_at(path: &Path) -> impl Fn(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

impl Writer {
    /// Starts `path`'s temp file (0600) beside it.
    pub fn create(path: &Path) -> Result<Writer, BackupError> {
        let tmp = atomic_file::temp_beside(path).map_err(io_at(path))?;
        Ok(Writer {
            tar: tar::Builder::new(tmp),
            path: path.to_path_buf(),
        })
    }

    /// The snapshot, `size` bytes read from `from`; its digest and size as
    /// they streamed.
    pub fn snapshot(&mut self, size: u64, from: impl Read) -> Result<(String, u64), BackupError> {
        let mut hashing = Hashing::new(from.take(size));
        let mut h = header(size, 0o600);
        self.tar
            .append_data(&mut h, SNAPSHOT, &mut hashing)
            .map_err(io_at(&self.path))?;
        let (_, digest, got) = hashing.into_parts();
        Ok((digest.to_string(), got))
    }

    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<(), BackupError> {
        let mut h = header(bytes.len() as u64, 0o600);
        self.tar
            .append_data(&mut h, name, bytes)
            .map_err(io_at(&self.path))
    }

    pub fn secret(&mut self, name: &str, value: &[u8]) -> Result<(), BackupError> {
        self.bytes(&format!("{SECRETS}{name}"), value)
    }

    /// Every file under `dir` but the lock, as `state/<relative path>`.
    pub fn state(&mut self, dir: &Path) -> Result<(), BackupError> {
        for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
            let entry = entry.map_err(|e| BackupError::Io {
                path: dir.to_path_buf(),
                source: e.into(),
            })?;
            let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
            if !entry.file_type().is_file() || rel == Path::new("lock") {
                continue;
            }
            let bytes = std::fs::read(entry.path()).map_err(io_at(entry.path()))?;
            self.bytes(&format!("{STATE}{}", rel.display()), &bytes)?;
        }
        Ok(())
    }

    /// The manifest, then the file under its name, 0600, durably.
    pub fn finish(mut self, manifest: &Manifest) -> Result<(), BackupError> {
        let json = serde_json::to_vec_pretty(manifest).expect("a manifest serializes");
        self.bytes(MANIFEST, &json)?;
        let path = self.path.clone();
        let mut tmp = self.tar.into_inner().map_err(io_at(&path))?;
        tmp.flush().map_err(io_at(&path))?;
        atomic_file::persist(tmp, &path).map_err(io_at(&path))
    }
}

/// A backup file read whole and checked: its snapshot in a private temp
/// directory, its secrets in memory.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub snapshot: PathBuf,
    pub secrets: Vec<(String, Secret)>,
    _dir: tempfile::TempDir,
}

/// Reads and checks `path`: a tar with a manifest of a format this sealrs
/// knows, and a snapshot of the size and SHA-256 it names. Nothing reaches
/// a host before this passed.
pub fn load(path: &Path) -> Result<Loaded, BackupError> {
    let unreadable = |detail: String| BackupError::Unreadable {
        path: path.to_path_buf(),
        detail,
    };
    let file = File::open(path).map_err(io_at(path))?;
    let dir = tempfile::tempdir().map_err(io_at(path))?;
    let snapshot = dir.path().join(SNAPSHOT);
    let mut archive = tar::Archive::new(file);
    let mut manifest: Option<Manifest> = None;
    let mut taken: Option<(String, u64)> = None;
    let mut secrets = Vec::new();
    let entries = archive.entries().map_err(|e| unreadable(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| unreadable(e.to_string()))?;
        let name = entry
            .path()
            .map_err(|e| unreadable(e.to_string()))?
            .to_string_lossy()
            .into_owned();
        if name == SNAPSHOT {
            let out = File::create(&snapshot).map_err(io_at(&snapshot))?;
            let mut hashing = Hashing::new(out);
            io::copy(&mut entry, &mut hashing).map_err(|e| unreadable(e.to_string()))?;
            let (_, digest, size) = hashing.into_parts();
            taken = Some((digest.to_string(), size));
        } else if name == MANIFEST {
            let mut text = Vec::new();
            entry
                .read_to_end(&mut text)
                .map_err(|e| unreadable(e.to_string()))?;
            manifest = Some(
                serde_json::from_slice(&text)
                    .map_err(|e| unreadable(format!("its manifest.json: {e}")))?,
            );
        } else if let Some(secret) = name.strip_prefix(SECRETS) {
            let mut value = String::new();
            entry
                .read_to_string(&mut value)
                .map_err(|e| unreadable(e.to_string()))?;
            secrets.push((secret.to_string(), Secret::new(value.trim_end())));
        }
    }
    let manifest = manifest.ok_or_else(|| {
        unreadable("it ends before its manifest.json (a sealrs backup ends with one)".into())
    })?;
    if manifest.format != FORMAT {
        return Err(unreadable(format!(
            "format {} (this sealrs reads format {FORMAT})",
            manifest.format
        )));
    }
    let (found, size) = taken.ok_or_else(|| unreadable("it holds no snapshot".into()))?;
    if found != manifest.snapshot_sha256 || size != manifest.snapshot_size {
        return Err(BackupError::Checksum {
            path: path.to_path_buf(),
            expected: format!(
                "{} ({} bytes)",
                manifest.snapshot_sha256, manifest.snapshot_size
            ),
            found: format!("{found} ({size} bytes)"),
        });
    }
    Ok(Loaded {
        manifest,
        snapshot,
        secrets,
        _dir: dir,
    })
}
