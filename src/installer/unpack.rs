//! Layers → the image's rootfs directory.
//!
//! A host keeps each layer it received as a *layer directory* named by the
//! blob's digest (the containerd snapshot model): [`receive`] unpacks a blob
//! as it arrives from the operator's stream (zstd, gzip or plain tar, told by
//! its first bytes) into a temp directory beside it, and renames it into place
//! only once the bytes are known to have that digest: hashed on the way, or,
//! fetched from the operator over TLS, by the digest the operator found for
//! its copy, which follows the bytes ([`BlobCheck`]). So each
//! byte is written once, and a later image that shares the layer needs none
//! of its bytes again. The rootfs is then assembled from the layer directories
//! in order, by hard links, into `DEST.tmp-XXXX`, which is renamed over `DEST`
//! only when every layer went in: a killed unpack leaves the previous rootfs as
//! it was. A stamp file inside the result names the layer digests, so
//! assembling the same layers again is a no-op. (A blob file may stand for a
//! layer too; it is applied straight from its tar.)
//!
//! Nothing in a layer may land outside the destination: entries with `..` or
//! an absolute path are refused, and so is any entry whose parent directory
//! is a symlink (a layer could otherwise plant `a -> /etc` and then write
//! `a/passwd`). Symlinks themselves may point anywhere: they are created, never
//! followed. Whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`)
//! are kept as they are in a layer directory and hide what lower layers put
//! there when the rootfs is assembled, as the OCI image spec says.
//!
//! Files get the mode and mtime of their tar header; ownership is the
//! installer's (root on a host). Devices and fifos are skipped: a cluster
//! image has no use for them. The rootfs shares its files' inodes with the
//! layer directories: nothing writes through them, files are only replaced.
//! Each received layer directory also holds the record of its files' sizes
//! and SHA-256 ([`integrity`]), hashed as they are written, or sent by the
//! operator after the blob ([`BlobCheck::SentWithSums`]); the rootfs stamp
//! carries them per path, for placement to check its copies against.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::atomic_file;
use crate::compression::decompressed;
use crate::digest::{hash_reader, Hashing};
use crate::transport::direct::DIGEST_LEN;

use super::integrity::{self, Sum, Summing, RECORD};
use super::InstallerError;
use crate::layout::probe::Magic;

/// The completion stamp inside an unpacked rootfs.
pub const STAMP: &str = ".sealrs-unpacked.json";

/// The mode of a layer directory and of a rootfs: an image's files may hold
/// secrets (`etc/config.yaml` with a token, `registries.yaml` with a
/// password) in modes the image gave them, so nobody but root gets in.
/// Placed files keep their own modes where they land.
pub const PRIVATE_DIR: u32 = 0o700;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const BUF: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    /// `sha256:<hex>` of each layer blob, in order.
    layers: Vec<String>,
    /// What the layer files looked like when they were hashed, so that an
    /// unchanged file is not re-read to learn its digest.
    files: Vec<FileStat>,
    /// What each regular file's first bytes say it is, by path in the
    /// rootfs: the installer's verify of an unchanged rootfs (every re-apply)
    /// then opens none of its files. Absent from stamps written before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    heads: Option<BTreeMap<String, Magic>>,
    /// Each regular file's size and SHA-256, by path in the rootfs, as its
    /// layer's record has them: what a placed copy of it must hold. Absent
    /// when a layer had no record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sums: Option<BTreeMap<String, Sum>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FileStat {
    path: PathBuf,
    size: u64,
    mtime_ns: i128,
    ino: u64,
    dev: u64,
}

impl FileStat {
    fn of(path: &Path) -> Result<FileStat, InstallerError> {
        let m = fs::metadata(path).map_err(InstallerError::io("reading", path))?;
        Ok(FileStat {
            path: path.to_path_buf(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        })
    }
}

/// What [`unpack`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackOutcome {
    /// False when `dest` already held exactly these layers.
    pub unpacked: bool,
    /// The layer digests, in order.
    pub digests: Vec<String>,
    /// Entries skipped because a rootfs cannot hold them (devices, fifos).
    pub skipped_entries: usize,
    /// What interrupted earlier unpacks had left and this one removed.
    pub removed_garbage: Vec<PathBuf>,
    /// Layer directories found damaged and replaced by the copy received.
    pub repaired: Vec<PathBuf>,
}

/// Who checks an incoming blob against its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobCheck {
    /// This host hashes the bytes as they arrive (over SSH).
    Hash,
    /// The operator did, once for every host: each blob is followed by the
    /// SHA-256 it found, over TLS, which vouches that these are the bytes it
    /// hashed (`transport::direct`).
    Sent,
    /// As [`BlobCheck::Sent`], and the digest is followed by the operator's
    /// sums of the blob's files ([`integrity::blob_sums`], made in the same
    /// read): this host records them and hashes nothing. Their paths and
    /// sizes must be the files it wrote.
    SentWithSums,
    /// The input hashed each blob on the thread that received it and hands
    /// over a blob's last byte only once it matched its digest
    /// (`registry::hosts::BlobStream`): a wrong blob never ends, so it is
    /// refused as short. Hashing there runs beside the unpacking here.
    Verified,
}

/// Where one layer comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// On this host already: a layer directory that [`receive`] kept (named
    /// by its blob's digest), or a blob file.
    File(PathBuf),
    /// The next `size` bytes of the input: a blob, unpacked as it arrives into
    /// the layer directory `dir` (named by its digest), which is kept only once
    /// the bytes hash to that digest.
    Incoming { dir: PathBuf, size: u64 },
}

impl LayerSource {
    fn path(&self) -> &Path {
        match self {
            LayerSource::File(path) => path,
            LayerSource::Incoming { dir, .. } => dir,
        }
    }
}

/// Assembles the rootfs from layers already on this host.
pub fn unpack(layers: &[PathBuf], dest: &Path) -> Result<UnpackOutcome, InstallerError> {
    let sources: Vec<LayerSource> = layers.iter().cloned().map(LayerSource::File).collect();
    receive(&sources, &mut io::empty(), dest, BlobCheck::Hash)
}

/// Makes `dest` the rootfs of `layers` (in order), first receiving the
/// incoming ones from `input`, one after another, into their layer
/// directories, checked as `check` says.
pub fn receive(
    layers: &[LayerSource],
    input: &mut dyn Read,
    dest: &Path,
    check: BlobCheck,
) -> Result<UnpackOutcome, InstallerError> {
    let mut skipped = 0;
    let mut dirs: Vec<PathBuf> = layers
        .iter()
        .filter(|l| matches!(l, LayerSource::Incoming { .. }) || l.path().is_dir())
        .map(|l| parent_dir(l.path()))
        .collect();
    dirs.push(parent_dir(dest));
    dirs.sort();
    dirs.dedup();
    let mut removed_garbage = Vec::new();
    for dir in &dirs {
        removed_garbage.extend(remove_garbage(dir)?);
    }
    let mut repaired = Vec::new();
    for layer in layers {
        if let LayerSource::Incoming { dir, size } = layer {
            let (n, replaced) = receive_layer(&mut *input, dir, *size, check)?;
            skipped += n;
            if replaced {
                repaired.push(dir.clone());
            }
        }
    }
    let paths: Vec<PathBuf> = layers.iter().map(|l| l.path().to_path_buf()).collect();
    if let Some(mut done) = already_unpacked(&paths, read_stamp(dest).as_ref(), dest)? {
        done.removed_garbage = removed_garbage;
        return Ok(done);
    }

    let parent = parent_dir(dest);
    fs::create_dir_all(&parent).map_err(InstallerError::io("creating", &parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.tmp-{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(InstallerError::io("creating a directory in", &parent))?;
    let mut digests = Vec::new();
    // Blob files carry no record: then no file of the rootfs gets a sum.
    let mut sums = paths.iter().all(|p| p.is_dir()).then(BTreeMap::new);
    for path in &paths {
        let digest = if path.is_dir() {
            merge_layer(path, tmp.path(), sums.as_mut())?;
            layer_digest(path)?
        } else {
            let file = File::open(path).map_err(InstallerError::io("opening", path))?;
            let mut hashing = Hashing::new(file);
            let (n, _) = apply_layer(&mut hashing, path, tmp.path(), Whiteouts::Apply, false)?;
            let digest = hashing.digest().to_string();
            check_digest_name(path, &digest)?;
            skipped += n;
            digest
        };
        digests.push(digest);
    }
    let stats: Vec<FileStat> = paths
        .iter()
        .map(|p| FileStat::of(p))
        .collect::<Result<_, _>>()?;
    let heads = heads(tmp.path()).map_err(InstallerError::io("reading", tmp.path()))?;
    write_stamp(
        tmp.path(),
        &Stamp {
            layers: digests.clone(),
            files: stats,
            heads: Some(heads),
            sums,
        },
    )?;
    let tmp = tmp.keep();
    // Unpacked layers may have made the top directory read-only or odd; and
    // an image's files may hold secrets (a config with a token): root only.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(PRIVATE_DIR))
        .map_err(InstallerError::io("setting the mode of", &tmp))?;
    // Durable before named (see `receive_layer`): the links, directories
    // and stamp of the new rootfs reach the disk before it takes `dest`.
    atomic_file::sync_tree(&tmp).map_err(InstallerError::io("syncing", &tmp))?;
    match fs::symlink_metadata(dest) {
        Ok(_) => {
            let old = parent.join(format!("{name}.old-{}", std::process::id()));
            let _ = remove_all(&old);
            fs::rename(dest, &old).map_err(InstallerError::io("moving aside", dest))?;
            fs::rename(&tmp, dest).map_err(InstallerError::io("renaming into place", dest))?;
            remove_all(&old).map_err(InstallerError::io("removing", &old))?;
        }
        Err(_) => {
            fs::rename(&tmp, dest).map_err(InstallerError::io("renaming into place", dest))?;
        }
    }
    atomic_file::sync_dir(&parent).map_err(InstallerError::io("syncing", &parent))?;
    Ok(UnpackOutcome {
        unpacked: true,
        digests,
        skipped_entries: skipped,
        removed_garbage,
        repaired,
    })
}

/// `Some` when `dest`'s stamp says it holds exactly these layers: by stat
/// when the layers are the ones stamped, by digest otherwise.
fn already_unpacked(
    layer_files: &[PathBuf],
    existing: Option<&Stamp>,
    dest: &Path,
) -> Result<Option<UnpackOutcome>, InstallerError> {
    let Some(stamp) = existing else {
        return Ok(None);
    };
    let stats: Vec<FileStat> = layer_files
        .iter()
        .map(|p| FileStat::of(p))
        .collect::<Result<_, _>>()?;
    let same = |digests: Vec<String>| UnpackOutcome {
        unpacked: false,
        digests,
        skipped_entries: 0,
        removed_garbage: Vec::new(),
        repaired: Vec::new(),
    };
    if stamp.files == stats {
        return Ok(Some(same(stamp.layers.clone())));
    }
    // Another layer directory under the same name (a damaged one was
    // replaced): the rootfs still links the old one's files.
    let moved = |s: &FileStat| s.path.is_dir() && !stamp.files.contains(s);
    if stats.iter().any(moved) {
        return Ok(None);
    }
    let digests = layer_files
        .iter()
        .map(|p| layer_digest(p))
        .collect::<Result<Vec<_>, _>>()?;
    if digests != stamp.layers {
        return Ok(None);
    }
    write_stamp(
        dest,
        &Stamp {
            layers: digests.clone(),
            files: stats,
            heads: stamp.heads.clone(),
            sums: stamp.sums.clone(),
        },
    )?;
    Ok(Some(same(digests)))
}

/// Unpacks the next `size` bytes of `input` as a blob into a temp directory
/// beside `dir`, which becomes `dir` only if the bytes have the digest `dir`
/// is named by, as `check` learns it. Returns how many entries were skipped,
/// and whether a damaged `dir` was replaced by it.
///
/// Durable before named: a layer directory is trusted by its name alone
/// (the next run finds `dir` and sends nothing), so the name must never
/// stand for less than the whole layer, whatever stops the host. The order:
/// 1. every entry is written into `.incoming-<pid>-XXXX`, a name nothing
///    trusts (and the next run removes: [`remove_garbage`]);
/// 2. the bytes are checked against the digest;
/// 3. `syncfs` makes every file's data, every directory entry and the temp
///    directory itself durable ([`atomic_file::sync_tree`]);
/// 4. only then the temp directory is renamed to `dir`;
/// 5. `dir`'s parent is fsynced, so the rename itself survives.
///
/// A power cut before 4 leaves a temp directory (garbage, removed next
/// time) and no `dir`; after 4 the rename can only reach the disk after
/// the content did (step 3 returned before the rename was issued), so a
/// `dir` found after a reboot holds every byte. After 5 the next run finds
/// the layer and need not send it again. The record of each file's sum
/// ([`integrity`]) is written before 3, so it is named with the files.
fn receive_layer(
    input: &mut dyn Read,
    dir: &Path,
    size: u64,
    check: BlobCheck,
) -> Result<(usize, bool), InstallerError> {
    let expected = digest_of_name(dir).ok_or_else(|| InstallerError::UnnamedBlob {
        layer: dir.to_path_buf(),
    })?;
    let parent = parent_dir(dir);
    fs::create_dir_all(&parent).map_err(InstallerError::io("creating", &parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".incoming-{}-", std::process::id()))
        .tempdir_in(&parent)
        .map_err(InstallerError::io("creating a directory in", &parent))?;
    let mut counted = Counted {
        inner: (&mut *input).take(size),
        seen: 0,
    };
    // Hashed here only when asked: the operator may have vouched for it.
    let hash_files = check != BlobCheck::SentWithSums;
    let (applied, hashed) = if check == BlobCheck::Hash {
        let mut hashing = Hashing::new(&mut counted);
        let applied = apply_stream(&mut hashing, dir, tmp.path(), hash_files);
        (applied, Some(hashing.digest().to_string()))
    } else {
        (
            apply_stream(&mut counted, dir, tmp.path(), hash_files),
            None,
        )
    };
    if counted.seen != size {
        return Err(InstallerError::ShortLayer {
            layer: dir.to_path_buf(),
            got: counted.seen,
            size,
        });
    }
    let (skipped, mut sums) = applied?;
    let layer = dir.to_path_buf();
    match hashed {
        Some(found) if found != expected => {
            return Err(InstallerError::DigestMismatch {
                layer,
                expected,
                found,
            })
        }
        Some(_) => {}
        None if check == BlobCheck::Verified => {}
        None => {
            let mut sent = [0u8; DIGEST_LEN];
            input
                .read_exact(&mut sent)
                .map_err(|_| InstallerError::NoDigestSent {
                    layer: layer.clone(),
                })?;
            let found = format!("sha256:{}", hex::encode(sent));
            if found != expected {
                return Err(InstallerError::OperatorDigestMismatch {
                    layer,
                    expected,
                    found,
                });
            }
            if check == BlobCheck::SentWithSums {
                sums = integrity::sent_sums(&mut *input, &layer, &sums)?;
            }
        }
    }
    integrity::write_record(tmp.path(), &sums)
        .map_err(InstallerError::io("writing", tmp.path()))?;
    let kept = tmp.keep();
    // Root only, as the rootfs: the layer's files are the rootfs's.
    let _ = fs::set_permissions(&kept, fs::Permissions::from_mode(PRIVATE_DIR));
    let gone = |e| {
        let _ = remove_all(&kept);
        InstallerError::io("keeping", dir)(e)
    };
    atomic_file::sync_tree(&kept).map_err(gone)?;
    if dir.is_dir() {
        // Sent again because it is damaged, or kept meanwhile by another
        // unpack (the same bytes): the damaged one is replaced.
        return Ok((skipped, integrity::replace_damaged(&kept, dir)?));
    }
    fs::rename(&kept, dir).map_err(gone)?;
    atomic_file::sync_dir(&parent).map_err(InstallerError::io("syncing", &parent))?;
    Ok((skipped, false))
}

/// What an interrupted transfer or assembly leaves in `dir`, by the names
/// the temp directories get: `.incoming-<pid>-*` (a layer being received),
/// `<hex>.incoming-<pid>*` (the installer bootstrap's, see
/// `apply::bootstrap`), `<name>.tmp-<pid>-*` and `<name>.old-<pid>` (a
/// rootfs being assembled and the one it replaces). A power cut or a kill
/// leaves them forever, so every unpack removes those whose process is
/// gone: a running unpack's own (its pid is alive) stay. Names from before
/// the pid was in them go once they are an hour old.
pub fn remove_garbage(dir: &Path) -> Result<Vec<PathBuf>, InstallerError> {
    let Ok(read) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut removed = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = leftover_pid(&name) else {
            continue;
        };
        let stale = match pid {
            Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
            None => entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(3600)),
        };
        if stale {
            let path = entry.path();
            remove_all(&path).map_err(InstallerError::io("removing", &path))?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// `Some(pid)` when `name` is a temp name of an unpack or the bootstrap
/// (`Some(None)` when it has no pid in it); `None` for anything else.
fn leftover_pid(name: &str) -> Option<Option<u32>> {
    let rest = if let Some(rest) = name.strip_prefix(".incoming-") {
        rest
    } else {
        let (base, rest) = [".incoming-", ".tmp-", ".old-"]
            .iter()
            .find_map(|m| name.split_once(m))?;
        // The layer or rootfs it was to become: a digest name, or the
        // default rootfs directory's.
        let hex = base.len() == 64 && base.chars().all(|c| c.is_ascii_hexdigit());
        if !hex && base != "rootfs" {
            return None;
        }
        rest
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let end = rest[digits.len()..].chars().next();
    match (digits.parse::<u32>(), end) {
        (Ok(pid), None | Some('-') | Some('.')) => Some(Some(pid)),
        _ => Some(None),
    }
}

/// The directory `path` is in (`.` for a bare name): where its temp twin goes.
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Counts what passes through it.
/// Applies a received layer, then reads what the tar left of the stream: a
/// stream that stopped early breaks the tar first, and the count says so.
fn apply_stream(
    reader: &mut dyn Read,
    dir: &Path,
    tmp: &Path,
    hash_files: bool,
) -> Result<(usize, BTreeMap<PathBuf, Sum>), InstallerError> {
    let applied = apply_layer(&mut *reader, dir, tmp, Whiteouts::Keep, hash_files);
    if applied.is_err() {
        let _ = io::copy(reader, &mut io::sink());
    }
    applied
}

struct Counted<R> {
    inner: R,
    seen: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen += n as u64;
        Ok(n)
    }
}

/// Adds the layer directory `dir` on top of `root`: its whiteouts remove
/// what lower layers put there, its files become hard links to its own.
/// `sums` (the rootfs's, by path) takes the sums its record has for them.
fn merge_layer(
    dir: &Path,
    root: &Path,
    sums: Option<&mut BTreeMap<String, Sum>>,
) -> Result<(), InstallerError> {
    let mut layer = LayerState {
        layer: dir,
        root,
        whiteouts: Whiteouts::Apply,
        hash_files: false,
        created: HashSet::new(),
        dir_modes: Vec::new(),
        sums: BTreeMap::new(),
    };
    layer.merge_dir(dir, Path::new(""))?;
    layer.set_dir_modes()?;
    if let Some(sums) = sums {
        let recorded = integrity::recorded_sums(dir);
        for rel in layer.created {
            let Some(rel) = rel.to_str() else { continue };
            match recorded.get(rel) {
                Some(sum) => sums.insert(rel.to_string(), sum.clone()),
                None => sums.remove(rel),
            };
        }
    }
    Ok(())
}

/// What the first bytes of each regular file under `root` say it is, by
/// path relative to `root` (the stamp's own file left out).
fn heads(root: &Path) -> io::Result<BTreeMap<String, Magic>> {
    let mut heads = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1) {
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_string_lossy().into_owned();
        if rel != STAMP {
            heads.insert(rel, Magic::of_file(entry.path())?);
        }
    }
    Ok(heads)
}

/// The rootfs `dest`'s files' heads as its stamp recorded them, if it did.
pub(super) fn recorded_heads(dest: &Path) -> Option<BTreeMap<String, Magic>> {
    read_stamp(dest)?.heads
}

/// The size and SHA-256 of the rootfs `dest`'s files, by path, as its
/// stamp recorded them from its layers' records (empty when it did not).
pub(super) fn recorded_sums(dest: &Path) -> BTreeMap<String, Sum> {
    read_stamp(dest).and_then(|s| s.sums).unwrap_or_default()
}

/// Drops the recorded sums of `paths`, files written into the rootfs `dest`
/// after it was assembled (an image's rendered templates and Configs): they
/// no longer hold their layer's bytes, so placement compares their copies
/// with them directly.
pub(super) fn forget_sums<'a>(
    dest: &Path,
    paths: impl IntoIterator<Item = &'a str>,
) -> Result<(), InstallerError> {
    let Some(mut stamp) = read_stamp(dest) else {
        return Ok(());
    };
    let Some(sums) = stamp.sums.as_mut() else {
        return Ok(());
    };
    let before = sums.len();
    for path in paths {
        sums.remove(path.trim_start_matches("./").trim_start_matches('/'));
    }
    if sums.len() == before {
        return Ok(());
    }
    write_stamp(dest, &stamp)
}

/// The layer digests (`sha256:<hex>`) the rootfs `dest`'s stamp names;
/// none when it has no readable stamp.
pub(super) fn stamped_layers(dest: &Path) -> Vec<String> {
    read_stamp(dest).map(|s| s.layers).unwrap_or_default()
}

fn read_stamp(dest: &Path) -> Option<Stamp> {
    let bytes = fs::read(dest.join(STAMP)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<(), InstallerError> {
    let path = dir.join(STAMP);
    let json = serde_json::to_vec_pretty(stamp).expect("a stamp serializes");
    atomic_file::write(&path, &json, Some(0o644)).map_err(InstallerError::io("writing", &path))
}

/// A layer directory's digest is its name (it was checked when kept); a blob
/// file's is hashed.
fn layer_digest(path: &Path) -> Result<String, InstallerError> {
    if path.is_dir() {
        return digest_of_name(path).ok_or_else(|| InstallerError::UnnamedBlob {
            layer: path.to_path_buf(),
        });
    }
    hash_file(path)
}

fn hash_file(path: &Path) -> Result<String, InstallerError> {
    let file = File::open(path).map_err(InstallerError::io("opening", path))?;
    let (digest, _) = hash_reader(file).map_err(InstallerError::io("reading", path))?;
    Ok(digest.to_string())
}

/// A layer file named by its digest (`<hex>` or `sha256:<hex>`, as a blob
/// cache names them) must have that digest.
fn check_digest_name(path: &Path, digest: &str) -> Result<(), InstallerError> {
    match digest_of_name(path) {
        Some(expected) if expected != digest => Err(InstallerError::DigestMismatch {
            layer: path.to_path_buf(),
            expected,
            found: digest.to_string(),
        }),
        _ => Ok(()),
    }
}

/// `sha256:<hex>` when the file is named `<hex>` or `sha256:<hex>`.
fn digest_of_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| format!("sha256:{}", hex.to_ascii_lowercase()))
}

/// What a whiteout entry of a layer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whiteouts {
    /// Hide what lower layers put in the rootfs.
    Apply,
    /// Stay as the (empty) file it is: a layer directory keeps it for later.
    Keep,
}

/// Applies one layer read from `blob` (named `path` in messages); returns
/// how many entries were skipped and, for a layer directory being received
/// ([`Whiteouts::Keep`]), the sum of each regular file it wrote: its size,
/// and its SHA-256 when `hash_files` (else empty: the operator sends them).
fn apply_layer(
    mut blob: impl Read,
    path: &Path,
    root: &Path,
    whiteouts: Whiteouts,
    hash_files: bool,
) -> Result<(usize, BTreeMap<PathBuf, Sum>), InstallerError> {
    let layer_err = |source| InstallerError::Layer {
        layer: path.to_path_buf(),
        source,
    };
    let mut skipped = 0;
    let sums = {
        let mut archive = tar::Archive::new(decompressed(&mut blob).map_err(layer_err)?);
        let mut layer = LayerState {
            layer: path,
            root,
            whiteouts,
            hash_files,
            created: HashSet::new(),
            dir_modes: Vec::new(),
            sums: BTreeMap::new(),
        };
        for entry in archive.entries().map_err(layer_err)? {
            let mut entry = entry.map_err(layer_err)?;
            if !layer.apply(&mut entry)? {
                skipped += 1;
            }
        }
        layer.set_dir_modes()?;
        // Drain what the tar reader left (padding), so a digest covers the blob.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(layer_err)?;
        layer.sums
    };
    io::copy(&mut blob, &mut io::sink()).map_err(layer_err)?;
    Ok((skipped, sums))
}

struct LayerState<'a> {
    layer: &'a Path,
    root: &'a Path,
    whiteouts: Whiteouts,
    /// Received: each regular file is hashed as it is written.
    hash_files: bool,
    /// Paths (relative) this layer wrote: an opaque marker keeps them.
    created: HashSet<PathBuf>,
    dir_modes: Vec<(PathBuf, u32)>,
    /// Received into a layer directory: each regular file's sum, hashed as
    /// it is written (the record, [`integrity`]), or only its size.
    sums: BTreeMap<PathBuf, Sum>,
}

impl LayerState<'_> {
    fn refuse(&self, entry: &str, reason: &'static str) -> InstallerError {
        InstallerError::UnsafeEntry {
            layer: self.layer.to_path_buf(),
            entry: entry.to_string(),
            reason,
        }
    }

    fn io(&self, source: io::Error) -> InstallerError {
        InstallerError::Layer {
            layer: self.layer.to_path_buf(),
            source,
        }
    }

    /// A tar path made relative and clean; `..` and absolute paths refused.
    fn relative(&self, raw: &Path, shown: &str) -> Result<PathBuf, InstallerError> {
        entry_path(raw).map_err(|reason| self.refuse(shown, reason))
    }

    /// Every directory above `rel` must be a real directory (created when
    /// missing), never a symlink.
    fn safe_parent(&self, rel: &Path, shown: &str) -> Result<PathBuf, InstallerError> {
        let mut dir = self.root.to_path_buf();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                dir.push(c);
                if fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
                    return Err(self.refuse(shown, "a directory above it is a symlink"));
                }
                ensure_dir(&dir).map_err(|e| self.io(e))?;
            }
        }
        Ok(self.root.join(rel))
    }

    /// Applies one entry; false when it was skipped.
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<bool, InstallerError> {
        let raw = entry.path().map_err(|e| self.io(e))?.into_owned();
        let shown = raw.display().to_string();
        let rel = self.relative(&raw, &shown)?;
        if rel.as_os_str().is_empty() {
            return Ok(true); // `./` itself
        }
        let name = rel
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.whiteouts == Whiteouts::Keep {
            // Kept as the empty files they are (checked below like any file).
        } else if name == OPAQUE {
            let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let full = self.safe_parent(&rel, &shown)?;
            let full_dir = full.parent().unwrap_or(self.root).to_path_buf();
            self.clear_opaque(&dir, &full_dir)?;
            self.created.insert(dir);
            return Ok(true);
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let gone = rel.with_file_name(hidden);
            let full = self.safe_parent(&gone, &shown)?;
            remove_all(&full).map_err(|e| self.io(e))?;
            return Ok(true);
        }
        let header = entry.header();
        let mode = header.mode().map_err(|e| self.io(e))? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        let full = self.safe_parent(&rel, &shown)?;
        match kind {
            tar::EntryType::Directory => {
                ensure_dir(&full).map_err(|e| self.io(e))?;
                self.dir_modes.push((full, mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace(&full).map_err(|e| self.io(e))?;
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&full)
                    .map_err(|e| self.io(e))?;
                preallocate(&out, entry.size()).map_err(|e| self.io(e))?;
                if self.whiteouts == Whiteouts::Keep && self.hash_files {
                    let mut summing = Summing::new(&mut out);
                    copy(entry, &mut summing).map_err(|e| self.io(e))?;
                    self.sums.insert(rel.clone(), summing.sum());
                } else if self.whiteouts == Whiteouts::Keep {
                    let size = copy(entry, &mut out).map_err(|e| self.io(e))?;
                    self.sums.insert(rel.clone(), Sum::unhashed(size));
                } else {
                    copy(entry, &mut out).map_err(|e| self.io(e))?;
                }
                out.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|e| self.io(e))?;
                let _ = out.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.io(e))?
                    .ok_or_else(|| self.refuse(&shown, "a symlink without a target"))?
                    .into_owned();
                replace(&full).map_err(|e| self.io(e))?;
                std::os::unix::fs::symlink(&target, &full).map_err(|e| self.io(e))?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| self.io(e))?
                    .ok_or_else(|| self.refuse(&shown, "a hard link without a target"))?
                    .into_owned();
                let target_rel = self.relative(&target, &shown)?;
                let target_full = self.safe_parent(&target_rel, &shown)?;
                match fs::symlink_metadata(&target_full) {
                    Ok(m) if m.is_file() => {}
                    _ => return Err(self.refuse(&shown, "a hard link to no file of the layers")),
                }
                replace(&full).map_err(|e| self.io(e))?;
                fs::hard_link(&target_full, &full).map_err(|e| self.io(e))?;
                if let Some(sum) = self.sums.get(&target_rel).cloned() {
                    self.sums.insert(rel.clone(), sum);
                }
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(true),
            _ => return Ok(false),
        }
        self.created.insert(rel);
        Ok(true)
    }

    /// Directory modes last, deepest first: a read-only directory must not
    /// stop its own children from being written.
    fn set_dir_modes(&mut self) -> Result<(), InstallerError> {
        self.dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
        for (dir, mode) in &self.dir_modes {
            fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
                .map_err(InstallerError::io("setting the mode of", dir))?;
        }
        Ok(())
    }

    /// Merges the layer directory `src` (at `rel` in the rootfs): its opaque
    /// marker and whiteouts act first, then its entries land, files as hard
    /// links to the layer's own.
    fn merge_dir(&mut self, src: &Path, rel: &Path) -> Result<(), InstallerError> {
        let mut names: Vec<std::ffi::OsString> = fs::read_dir(src)
            .map_err(|e| self.io(e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| self.io(e))?;
        names.sort();
        let target = self.root.join(rel);
        if names.iter().any(|n| n == OPAQUE) {
            if let Ok(read) = fs::read_dir(&target) {
                for child in read {
                    let child = child.map_err(|e| self.io(e))?;
                    remove_all(&child.path()).map_err(|e| self.io(e))?;
                }
            }
        }
        for name in &names {
            let text = name.to_string_lossy();
            if let Some(hidden) = text.strip_prefix(WHITEOUT).filter(|_| text != OPAQUE) {
                let gone = rel.join(hidden);
                let full = self.safe_parent(&gone, &gone.display().to_string())?;
                remove_all(&full).map_err(|e| self.io(e))?;
            }
        }
        // The layer's record is sealrs', not the image's.
        let top = rel.as_os_str().is_empty();
        for name in names
            .iter()
            .filter(|n| !n.to_string_lossy().starts_with(WHITEOUT))
            .filter(|n| !(top && *n == RECORD))
        {
            let from = src.join(name);
            let rel = rel.join(name);
            let full = self.safe_parent(&rel, &rel.display().to_string())?;
            let meta = fs::symlink_metadata(&from).map_err(|e| self.io(e))?;
            let kind = meta.file_type();
            if kind.is_dir() {
                ensure_dir(&full).map_err(|e| self.io(e))?;
                self.dir_modes.push((full, meta.mode() & 0o7777));
                self.merge_dir(&from, &rel)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).map_err(|e| self.io(e))?;
                replace(&full).map_err(|e| self.io(e))?;
                std::os::unix::fs::symlink(&target, &full).map_err(|e| self.io(e))?;
                self.created.insert(rel);
            } else if kind.is_file() {
                replace(&full).map_err(|e| self.io(e))?;
                link_or_copy(&from, &full).map_err(|e| self.io(e))?;
                self.created.insert(rel);
            }
        }
        Ok(())
    }

    /// Removes what lower layers put in `dir`, keeping what this layer wrote.
    fn clear_opaque(&self, dir: &Path, full_dir: &Path) -> Result<(), InstallerError> {
        let Ok(read) = fs::read_dir(full_dir) else {
            return Ok(());
        };
        for child in read {
            let child = child.map_err(|e| self.io(e))?;
            let rel = dir.join(child.file_name());
            let full = child.path();
            if self.created.contains(&rel) {
                let is_dir = fs::symlink_metadata(&full).is_ok_and(|m| m.is_dir());
                if is_dir {
                    self.clear_opaque(&rel, &full)?;
                }
            } else {
                remove_all(&full).map_err(|e| self.io(e))?;
            }
        }
        Ok(())
    }
}

/// A tar entry's path made relative and clean, or why it is refused (`..`,
/// an absolute path): the one rule for the host that writes an entry and
/// the operator that sums it ([`integrity::blob_sums`]).
pub(super) fn entry_path(raw: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err("it contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("it is an absolute path"),
        }
    }
    Ok(out)
}

/// Reserves a large file's blocks before it is written: ext4 then skips its
/// per-page delayed-allocation bookkeeping (a third of the CPU of writing a
/// 400 MB file here), and a full disk fails now rather than at writeback.
/// Filesystems that cannot preallocate are written as before.
fn preallocate(file: &File, size: u64) -> io::Result<()> {
    if size < BUF as u64 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, size) {
        Err(e) if e == rustix::io::Errno::NOSPC || e == rustix::io::Errno::DQUOT => Err(e.into()),
        _ => Ok(()),
    }
}

/// Copies in writes of up to [`BUF`]: a TLS stream yields a record (16 KiB)
/// per read, and a write per record would cost a 400 MB file 25,000 calls.
/// Returns how many bytes it copied.
fn copy(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut copied = 0;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(copied);
        }
        to.write_all(&buf[..filled])?;
        copied += filled as u64;
    }
}

/// A hard link where the filesystem allows it (the layer directories and the
/// rootfs share one), else a copy with the same mode and mtime.
fn link_or_copy(from: &Path, to: &Path) -> io::Result<()> {
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    fs::copy(from, to)?;
    let mtime = fs::metadata(from)?.modified()?;
    File::options().write(true).open(to)?.set_modified(mtime)
}

/// A directory at `path`: kept if there is one, else made (a file or symlink
/// there goes: the later layer wins).
fn ensure_dir(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => {
            fs::remove_file(path)?;
            fs::create_dir(path)
        }
        Err(_) => fs::create_dir(path),
    }
}

/// Makes room for a new entry at `path`: whatever is there goes.
fn replace(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

pub(crate) use super::mounts::remove_all;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Layer directories and the rootfs are root's alone (0700), whatever
    /// modes the image's files have; the placed copies keep theirs.
    #[test]
    fn layer_directories_and_the_rootfs_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        for (path, mode) in [("./", 0o755), ("etc/config.yaml", 0o644)] {
            let mut header = tar::Header::new_gnu();
            header.set_size(if mode == 0o644 { 6 } else { 0 });
            header.set_mode(mode);
            header.set_entry_type(if mode == 0o644 {
                tar::EntryType::Regular
            } else {
                tar::EntryType::Directory
            });
            header.set_cksum();
            let data: &[u8] = if mode == 0o644 { b"token\n" } else { b"" };
            tar.append_data(&mut header, path, data).unwrap();
        }
        let blob = tar.into_inner().unwrap();
        let hex = crate::digest::sha256_digest(&blob).digest().to_string();
        let layer = dir.path().join("layers/sha256").join(&hex);
        let dest = dir.path().join("rootfs/image");
        let source = LayerSource::Incoming {
            dir: layer.clone(),
            size: blob.len() as u64,
        };
        receive(&[source], &mut &blob[..], &dest, BlobCheck::Hash).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&layer), 0o700);
        assert_eq!(mode(&dest), 0o700);
        assert_eq!(mode(&dest.join("etc/config.yaml")), 0o644);
        // Assembled again (a stale stamp): still private.
        fs::remove_file(dest.join(STAMP)).unwrap();
        unpack(std::slice::from_ref(&layer), &dest).unwrap();
        assert_eq!(mode(&dest), 0o700);
    }

    #[test]
    fn a_large_file_gets_its_blocks_before_its_bytes_and_keeps_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let size = 3 * BUF as u64 + 17;
        let file = File::create(dir.path().join("big")).unwrap();
        preallocate(&file, size).unwrap();
        let meta = file.metadata().unwrap();
        // The size is what gets written, not what was reserved.
        assert_eq!(meta.len(), 0);
        match rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::KEEP_SIZE, 0, 1) {
            Ok(()) => assert!(meta.blocks() * 512 >= size, "{} blocks", meta.blocks()),
            // A filesystem that cannot preallocate is written as before.
            Err(e) => assert_eq!(e, rustix::io::Errno::OPNOTSUPP),
        }
        // Small files are left to the filesystem.
        let small = File::create(dir.path().join("small")).unwrap();
        preallocate(&small, 4096).unwrap();
        assert_eq!(small.metadata().unwrap().blocks(), 0);
        // A layer with the large file: its bytes, exactly.
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "images/big.tar", &bytes[..])
            .unwrap();
        let blob = dir.path().join("layer.tar");
        fs::write(&blob, tar.into_inner().unwrap()).unwrap();
        let dest = dir.path().join("rootfs");
        unpack(&[blob], &dest).unwrap();
        assert_eq!(fs::read(dest.join("images/big.tar")).unwrap(), bytes);
    }
}
