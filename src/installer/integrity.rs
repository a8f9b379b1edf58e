//! What a kept layer directory holds, recorded once, and checked on every
//! run.
//!
//! A layer directory is trusted by its name, so a byte flipped in one of its
//! files (or a truncation) would otherwise be trusted forever, and carried
//! by every rootfs and placed binary that shares the inode. So [`receive`]
//! (`super::unpack`) records, for each regular file it writes, the size and
//! SHA-256 of its bytes (hashed as they are written: no second pass) and the
//! stat it got, in [`RECORD`] inside the temp directory, synced with it
//! before the directory gets its digest name.
//!
//! Fetched from the operator over TLS, the sums come with the blob instead
//! ([`blob_sums`], made by the operator in the read that hashes the blob,
//! once for every host): each host checks their paths and sizes against the
//! files it wrote, and hashes nothing.
//!
//! [`check_layer`] compares a layer's files with its record: cheaply by
//! stat (size, mtime, inode), re-hashing only a file whose stat moved, or
//! every file when asked (`sealrs verify`). A damaged layer is treated as
//! missing: the operator sends it again, and [`replace_damaged`] swaps the
//! good copy in. A layer without a record (received before records existed,
//! or put there by the installer bootstrap's `tar`) cannot be checked.
//!
//! [`receive`]: super::unpack::receive

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::unpack::{entry_path, remove_all};
use super::InstallerError;
use crate::atomic_file;
use crate::compression::decompressed;
use crate::host_paths::HOST_LAYERS;

/// The record's name inside a layer directory; never merged into a rootfs
/// (a layer's own file of that name at its top is replaced by the record).
pub const RECORD: &str = ".sealrs-files.json";

/// Size and SHA-256 (hex) of a file's bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sum {
    pub size: u64,
    pub sha256: String,
}

/// One recorded file: its sum, and the stat that says it was not touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileRecord {
    #[serde(flatten)]
    sum: Sum,
    mtime_ns: i128,
    ino: u64,
}

/// A layer directory's [`RECORD`]: relative path → file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct LayerRecord {
    files: BTreeMap<String, FileRecord>,
}

/// One file whose bytes are not what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Damage {
    /// The file, as a host path.
    pub path: String,
    /// The layer directory it is in (host path), when it is a layer's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// What was recorded (`N bytes, sha256 HEX`).
    pub expected: String,
    /// What is there (`N bytes, sha256 HEX`, or `missing`, `not a file`).
    pub found: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: expected {}, found {}",
            self.path, self.expected, self.found
        )
    }
}

impl Sum {
    pub(super) fn shown(&self) -> String {
        format!("{} bytes, sha256 {}", self.size, self.sha256)
    }

    /// A file's size alone, while its SHA-256 is still to come.
    pub(super) fn unhashed(size: u64) -> Sum {
        Sum {
            size,
            sha256: String::new(),
        }
    }
}

/// The sum of each regular file of a layer blob (gzip, zstd or plain tar),
/// by path, as [`receive`] records them when it hashes them itself: a hard
/// link shares its target's. Serialized, for `transport::direct` to send
/// after the blob's digest ([`sent_sums`] reads it on the host). Entries a
/// host refuses are left out: their host fails on them anyway.
///
/// [`receive`]: super::unpack::receive
pub fn blob_sums(blob: &mut dyn Read) -> io::Result<Vec<u8>> {
    let mut sums: BTreeMap<PathBuf, Sum> = BTreeMap::new();
    let mut archive = tar::Archive::new(decompressed(blob)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = match entry_path(&entry.path()?) {
            Ok(rel) if !rel.as_os_str().is_empty() => rel,
            _ => continue,
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut summing = Summing::new(io::sink());
                io::copy(&mut entry, &mut summing)?;
                sums.insert(rel, summing.sum());
            }
            tar::EntryType::Link => {
                let target = entry.link_name()?.map(|t| entry_path(&t));
                if let Some(sum) = target.and_then(|t| sums.get(&t.ok()?).cloned()) {
                    sums.insert(rel, sum);
                }
            }
            _ => {}
        }
    }
    Ok(serde_json::to_vec(&sums).expect("sums serialize"))
}

/// Reads the operator's sums of the layer just received ([`blob_sums`]) from
/// `input`, and returns them if they name exactly the files `written` (by
/// path, each with its size); anything else is an error naming the layer.
pub(super) fn sent_sums(
    input: &mut dyn Read,
    layer: &Path,
    written: &BTreeMap<PathBuf, Sum>,
) -> Result<BTreeMap<PathBuf, Sum>, InstallerError> {
    let refused = |detail: String| InstallerError::SentSums {
        layer: layer.to_path_buf(),
        detail,
    };
    let bytes = crate::transport::direct::read_trailer(input)
        .map_err(|e| refused(format!("they did not arrive ({e})")))?;
    let sent: BTreeMap<PathBuf, Sum> =
        serde_json::from_slice(&bytes).map_err(|e| refused(format!("they are not valid: {e}")))?;
    for (rel, sum) in written {
        match sent.get(rel) {
            Some(s) if s.size == sum.size => {}
            Some(s) => {
                return Err(refused(format!(
                    "{} is {} bytes here, {} in them",
                    rel.display(),
                    sum.size,
                    s.size
                )))
            }
            None => return Err(refused(format!("{} is not in them", rel.display()))),
        }
    }
    if let Some(extra) = sent.keys().find(|rel| !written.contains_key(*rel)) {
        return Err(refused(format!(
            "they name {}, which the layer did not hold",
            extra.display()
        )));
    }
    Ok(sent)
}

/// Hashes and counts what is written through it.
pub(super) struct Summing<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> Summing<W> {
    pub(super) fn new(inner: W) -> Self {
        Summing {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    pub(super) fn sum(self) -> Sum {
        Sum {
            size: self.size,
            sha256: hex::encode(self.hasher.finalize()),
        }
    }
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The sum of the file at `path`, read whole.
pub(super) fn sum_file(path: &Path) -> io::Result<Sum> {
    let mut summing = Summing::new(io::sink());
    io::copy(&mut File::open(path)?, &mut summing)?;
    Ok(summing.sum())
}

fn mtime_ns(m: &fs::Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// Writes `dir`'s record of the files summed while they were written
/// (relative path → sum); a path that is no longer a regular file (a later
/// entry replaced it) is left out. Not synced: the caller syncs the tree.
pub(super) fn write_record(dir: &Path, sums: &BTreeMap<PathBuf, Sum>) -> io::Result<()> {
    let mut record = LayerRecord::default();
    // A layer's own file of the record's name is replaced by the record.
    for (rel, sum) in sums.iter().filter(|(rel, _)| *rel != Path::new(RECORD)) {
        let Ok(meta) = fs::symlink_metadata(dir.join(rel)) else {
            continue;
        };
        let Some(name) = rel.to_str() else { continue };
        if meta.is_file() && meta.size() == sum.size {
            record.files.insert(
                name.to_string(),
                FileRecord {
                    sum: sum.clone(),
                    mtime_ns: mtime_ns(&meta),
                    ino: meta.ino(),
                },
            );
        }
    }
    let json = serde_json::to_vec(&record).expect("a record serializes");
    let mut file = File::create(dir.join(RECORD))?;
    file.write_all(&json)
}

fn read_record(dir: &Path) -> Option<LayerRecord> {
    serde_json::from_slice(&fs::read(dir.join(RECORD)).ok()?).ok()
}

/// The sums a layer directory recorded (relative path → sum); empty when
/// it has no record.
pub(super) fn recorded_sums(dir: &Path) -> BTreeMap<String, Sum> {
    read_record(dir)
        .map(|r| r.files.into_iter().map(|(k, v)| (k, v.sum)).collect())
        .unwrap_or_default()
}

/// How hard to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Re-hash only the files whose size, mtime or inode moved (every run).
    Stat,
    /// Re-hash every file (`sealrs verify`).
    Full,
}

/// What differs between the file at `path` and `expected`, or `None` when it
/// holds those bytes. `same_stat` says its stat matches the record's, which
/// spares the hash unless `depth` is [`Depth::Full`].
pub(super) fn check_file(
    path: &Path,
    expected: &Sum,
    same_stat: impl FnOnce(&fs::Metadata) -> bool,
    depth: Depth,
) -> Option<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(_) => return Some("missing".into()),
    };
    if !meta.is_file() {
        return Some("not a regular file".into());
    }
    if meta.size() != expected.size {
        return Some(format!("{} bytes", meta.size()));
    }
    if depth == Depth::Stat && same_stat(&meta) {
        return None;
    }
    match sum_file(path) {
        Ok(found) if found == *expected => None,
        Ok(found) => Some(found.shown()),
        Err(e) => Some(format!("unreadable ({e})")),
    }
}

/// The damaged files of the layer directory `dir` (`shown` is its host
/// path); none when it has no record.
pub fn check_layer(dir: &Path, shown: &str, depth: Depth) -> Vec<Damage> {
    let Some(record) = read_record(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (rel, file) in &record.files {
        let same = |m: &fs::Metadata| mtime_ns(m) == file.mtime_ns && m.ino() == file.ino;
        if let Some(found) = check_file(&dir.join(rel), &file.sum, same, depth) {
            out.push(Damage {
                path: format!("{shown}/{rel}"),
                layer: Some(shown.to_string()),
                expected: file.sum.shown(),
                found,
            });
        }
    }
    out
}

/// Records the files of the layer directory `dir` as they are now, when it
/// has no record: for the one layer the installer bootstrap unpacks with
/// the host's `tar`, whose blob the host's `sha256sum` checked moments
/// before. False when it had a record already.
pub fn record_kept(dir: &Path) -> Result<bool, InstallerError> {
    if dir.join(RECORD).exists() {
        return Ok(false);
    }
    let mut sums = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.map_err(|e| InstallerError::io("reading", dir)(io::Error::other(e)))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let sum = sum_file(entry.path()).map_err(InstallerError::io("reading", entry.path()))?;
        if let Ok(rel) = entry.path().strip_prefix(dir) {
            sums.insert(rel.to_path_buf(), sum);
        }
    }
    write_record(dir, &sums).map_err(InstallerError::io("writing", dir.join(RECORD)))?;
    File::open(dir.join(RECORD))
        .and_then(|f| f.sync_all())
        .and_then(|()| atomic_file::sync_dir(dir))
        .map_err(InstallerError::io("syncing", dir))?;
    Ok(true)
}

/// Every damaged file on this host: in each layer directory of `layers`
/// (host paths, resolved under `host_root`), then in every placed file.
pub fn check_host(host_root: &Path, layers: &[String], depth: Depth) -> Vec<Damage> {
    let mut out: Vec<Damage> = layers
        .iter()
        .flat_map(|l| check_layer(&host_root.join(l.trim_start_matches('/')), l, depth))
        .collect();
    out.extend(super::place::damaged_placed(host_root, depth));
    out
}

/// The layer directories kept on this host (host paths, named by digest).
pub fn kept_layers(host_root: &Path) -> Vec<String> {
    let dir = host_root.join(HOST_LAYERS.trim_start_matches('/'));
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|read| {
            read.flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .filter(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit()))
                .map(|n| format!("{HOST_LAYERS}/{n}"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// Puts the freshly received `fresh` (synced) in place of the layer
/// directory `dir` when `dir` is damaged, keeping `dir` when it is whole (a
/// concurrent unpack kept the same bytes meanwhile). True when it replaced.
pub(super) fn replace_damaged(fresh: &Path, dir: &Path) -> Result<bool, InstallerError> {
    let shown = dir.display().to_string();
    if check_layer(dir, &shown, Depth::Stat).is_empty() && dir.join(RECORD).exists() {
        remove_all(fresh).map_err(InstallerError::io("removing", fresh))?;
        return Ok(false);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A name the garbage rule knows (`<hex>.old-<pid>`): a kill between
    // the two renames leaves it for the next run to remove.
    let old = parent.join(format!("{name}.old-{}", std::process::id()));
    let _ = remove_all(&old);
    fs::rename(dir, &old).map_err(InstallerError::io("moving aside", dir))?;
    fs::rename(fresh, dir).map_err(InstallerError::io("renaming into place", dir))?;
    atomic_file::sync_dir(parent).map_err(InstallerError::io("syncing", parent))?;
    remove_all(&old).map_err(InstallerError::io("removing", &old))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layer");
        let mut sums = BTreeMap::new();
        for (rel, bytes) in files {
            let path = dir.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut summing = Summing::new(File::create(&path).unwrap());
            summing.write_all(bytes).unwrap();
            sums.insert(PathBuf::from(rel), summing.sum());
        }
        write_record(&dir, &sums).unwrap();
        (tmp, dir)
    }

    #[test]
    fn a_flipped_byte_or_a_truncation_in_a_layer_file_is_found_and_named() {
        let (_tmp, dir) = layer_with(&[("bin/k3s", b"k3s binary"), ("etc/a.yaml", b"a: 1\n")]);
        assert!(check_layer(&dir, "/L", Depth::Stat).is_empty());
        assert!(check_layer(&dir, "/L", Depth::Full).is_empty());
        // A flipped byte: same size, the mtime moves, so even the cheap check hashes it.
        fs::write(dir.join("bin/k3s"), b"k3s binarY").unwrap();
        let found = check_layer(&dir, "/L", Depth::Stat);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].path, "/L/bin/k3s");
        assert_eq!(found[0].layer.as_deref(), Some("/L"));
        assert!(found[0].expected.starts_with("10 bytes, sha256 "));
        assert!(found[0].found.starts_with("10 bytes, sha256 "));
        assert_ne!(found[0].expected, found[0].found);
        // A truncation: the size alone says it.
        fs::write(dir.join("etc/a.yaml"), b"a").unwrap();
        let found = check_layer(&dir, "/L", Depth::Stat);
        assert_eq!(found[1].found, "1 bytes");
        fs::remove_file(dir.join("etc/a.yaml")).unwrap();
        assert_eq!(check_layer(&dir, "/L", Depth::Stat)[1].found, "missing");
    }

    #[test]
    fn an_untouched_file_is_not_read_unless_asked_to_hash_everything() {
        let (_tmp, dir) = layer_with(&[("f", b"abc")]);
        // Replaced behind the record's back with the stat kept: only a full check sees it.
        let meta = fs::metadata(dir.join("f")).unwrap();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .open(dir.join("f"))
            .unwrap();
        file.write_all(b"abd").unwrap();
        file.set_modified(meta.modified().unwrap()).unwrap();
        assert!(check_layer(&dir, "/L", Depth::Stat).is_empty());
        assert_eq!(check_layer(&dir, "/L", Depth::Full).len(), 1);
    }

    /// Received as from the operator: the record is written with the
    /// layer, the rootfs stamp carries its sums; a damaged layer sent again
    /// replaces the old one, and the rootfs is assembled anew from it.
    #[test]
    fn a_received_layer_is_recorded_and_a_damaged_one_received_again_is_repaired() {
        use super::super::unpack::{receive, BlobCheck, LayerSource};
        let tmp = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o755);
        h.set_cksum();
        tar.append_data(&mut h, "bin/k3s", &b"k3s\n"[..]).unwrap();
        let blob = tar.into_inner().unwrap();
        let hex = crate::digest::sha256_digest(&blob).digest().to_string();
        let dir = tmp.path().join("layers").join(&hex);
        let dest = tmp.path().join("rootfs/image");
        let source = || LayerSource::Incoming {
            dir: dir.clone(),
            size: blob.len() as u64,
        };
        receive(&[source()], &mut &blob[..], &dest, BlobCheck::Hash).unwrap();
        let sum = recorded_sums(&dir)["bin/k3s"].clone();
        assert_eq!(sum.size, 4);
        assert_eq!(super::super::unpack::recorded_sums(&dest)["bin/k3s"], sum);
        assert!(!dest.join(RECORD).exists(), "the record stays in the layer");
        // A byte flipped through the rootfs (the same inode).
        fs::write(dest.join("bin/k3s"), b"k3x\n").unwrap();
        let shown = dir.display().to_string();
        assert_eq!(check_layer(&dir, &shown, Depth::Stat).len(), 1);
        let out = receive(&[source()], &mut &blob[..], &dest, BlobCheck::Hash).unwrap();
        assert_eq!(out.repaired, vec![dir.clone()]);
        assert!(out.unpacked, "the rootfs linked the damaged files");
        assert_eq!(fs::read(dest.join("bin/k3s")).unwrap(), b"k3s\n");
        assert!(check_layer(&dir, &shown, Depth::Full).is_empty());
    }

    /// A layer with nested files, a hard link, a whiteout, a file written
    /// twice, a file replaced by a symlink and a file of the record's name,
    /// zstd-compressed as a build makes it.
    fn mixed_layer() -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let entries: [(&str, tar::EntryType, &[u8], Option<&str>); 9] = [
            ("./", tar::EntryType::Directory, b"", None),
            ("bin/k3s", tar::EntryType::Regular, b"k3s binary", None),
            ("bin/kubectl", tar::EntryType::Link, b"", Some("bin/k3s")),
            ("etc/.wh.old.yaml", tar::EntryType::Regular, b"", None),
            ("etc/a.yaml", tar::EntryType::Regular, b"a: 1\n", None),
            (
                "etc/a.yaml",
                tar::EntryType::Regular,
                b"a: 2, again\n",
                None,
            ),
            ("etc/b.yaml", tar::EntryType::Regular, b"b", None),
            ("etc/b.yaml", tar::EntryType::Symlink, b"", Some("a.yaml")),
            (RECORD, tar::EntryType::Regular, b"the image's own", None),
        ];
        for (path, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o755);
            h.set_size(data.len() as u64);
            if let Some(link) = link {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            tar.append_data(&mut h, path, data).unwrap();
        }
        zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap()
    }

    /// The stream a host reads from the operator for `blob`: its bytes, its
    /// SHA-256, then `sums` as a trailer.
    fn sent_with(blob: &[u8], sums: &[u8]) -> Vec<u8> {
        let digest = crate::digest::sha256_digest(blob);
        let mut stream = blob.to_vec();
        stream.extend(hex::decode(digest.digest()).unwrap());
        stream.extend((sums.len() as u32).to_be_bytes());
        stream.extend(sums);
        stream
    }

    #[test]
    fn a_layer_received_with_the_operators_sums_records_what_hashing_it_here_records() {
        use super::super::unpack::{receive, BlobCheck, LayerSource};
        let blob = mixed_layer();
        let hex = crate::digest::sha256_digest(&blob).digest().to_string();
        let received = |check: BlobCheck, stream: &[u8]| {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("layers").join(&hex);
            let source = LayerSource::Incoming {
                dir: dir.clone(),
                size: blob.len() as u64,
            };
            let dest = tmp.path().join("rootfs");
            receive(&[source], &mut &stream[..], &dest, check).unwrap();
            let sums = recorded_sums(&dir);
            assert!(check_layer(&dir, "/L", Depth::Full).is_empty());
            (tmp, sums)
        };
        let (_here, hashed_here) = received(BlobCheck::Hash, &blob);
        let sums = blob_sums(&mut &blob[..]).unwrap();
        let (_sent, from_operator) = received(BlobCheck::SentWithSums, &sent_with(&blob, &sums));
        assert_eq!(from_operator, hashed_here);
        let paths: Vec<&str> = hashed_here.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            ["bin/k3s", "bin/kubectl", "etc/.wh.old.yaml", "etc/a.yaml"],
            "the symlink and the layer's own record file are not recorded"
        );
        assert_eq!(hashed_here["bin/kubectl"], hashed_here["bin/k3s"]);
        assert_eq!(
            hashed_here["etc/a.yaml"].size, 12,
            "the later entry's bytes"
        );
    }

    #[test]
    fn sums_that_do_not_name_exactly_the_files_received_keep_nothing() {
        use super::super::unpack::{receive, BlobCheck, LayerSource};
        let blob = mixed_layer();
        let hex = crate::digest::sha256_digest(&blob).digest().to_string();
        let good: BTreeMap<String, Sum> =
            serde_json::from_slice(&blob_sums(&mut &blob[..]).unwrap()).unwrap();
        let mut wrong_size = good.clone();
        wrong_size.get_mut("bin/k3s").unwrap().size += 1;
        let mut missing = good.clone();
        missing.remove("etc/a.yaml");
        let mut extra = good.clone();
        extra.insert("etc/c.yaml".into(), Sum::unhashed(0));
        let cases = [
            (wrong_size, "bin/k3s is 10 bytes here, 11 in them"),
            (missing, "etc/a.yaml is not in them"),
            (extra, "they name etc/c.yaml, which the layer did not hold"),
        ];
        for (sums, why) in cases {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("layers").join(&hex);
            let source = LayerSource::Incoming {
                dir: dir.clone(),
                size: blob.len() as u64,
            };
            let stream = sent_with(&blob, &serde_json::to_vec(&sums).unwrap());
            let dest = tmp.path().join("rootfs");
            let err =
                receive(&[source], &mut &stream[..], &dest, BlobCheck::SentWithSums).unwrap_err();
            assert!(matches!(err, InstallerError::SentSums { .. }), "{err}");
            assert!(err.to_string().contains(why), "{err}");
            assert!(!dir.exists() && !dest.exists(), "{err}");
        }
        // Sums that never came: refused as well.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layers").join(&hex);
        let source = LayerSource::Incoming {
            dir: dir.clone(),
            size: blob.len() as u64,
        };
        let cut = sent_with(&blob, &[]);
        let cut = &cut[..cut.len() - 4];
        let err = receive(
            &[source],
            &mut &cut[..],
            &tmp.path().join("r"),
            BlobCheck::SentWithSums,
        )
        .unwrap_err();
        assert!(err.to_string().contains("did not arrive"), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn a_layer_the_bootstrap_unpacked_is_recorded_once_then_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("layer");
        fs::create_dir_all(dir.join("opt/sealrs")).unwrap();
        fs::write(dir.join("opt/sealrs/sealrs"), b"installer").unwrap();
        assert!(record_kept(&dir).unwrap());
        assert!(!record_kept(&dir).unwrap(), "recorded once");
        assert!(check_layer(&dir, "/L", Depth::Full).is_empty());
        fs::write(dir.join("opt/sealrs/sealrs"), b"installer!").unwrap();
        assert!(!record_kept(&dir).unwrap());
        assert_eq!(
            check_layer(&dir, "/L", Depth::Stat)[0].path,
            "/L/opt/sealrs/sealrs"
        );
    }

    #[test]
    fn a_damaged_layer_is_replaced_by_the_fresh_copy_and_a_whole_one_kept() {
        let (_tmp, dir) = layer_with(&[("f", b"abc")]);
        let (_t2, fresh) = layer_with(&[("f", b"abc")]);
        assert!(!replace_damaged(&fresh, &dir).unwrap());
        assert!(!fresh.exists());
        fs::write(dir.join("f"), b"ab").unwrap();
        let (_t3, fresh) = layer_with(&[("f", b"abc")]);
        assert!(replace_damaged(&fresh, &dir).unwrap());
        assert_eq!(fs::read(dir.join("f")).unwrap(), b"abc");
        assert!(check_layer(&dir, "/L", Depth::Full).is_empty());
        let left: Vec<_> = fs::read_dir(dir.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
