//! Layer blobs → the image's rootfs directory.
//!
//! Layers are applied in order, streamed (zstd, gzip or plain tar, told by
//! their first bytes), from blob files or, for [`receive`], straight from the
//! operator's stream as it arrives (each blob is kept as it passes, and only
//! once its digest checks out: a blob is written once and read never), into `DEST.tmp-XXXX` next to the destination, which is
//! renamed over `DEST` only when every layer went in: a killed unpack leaves
//! the previous rootfs as it was. A stamp file inside the result names the
//! layer digests, so unpacking the same layers again is a no-op.
//!
//! Nothing in a layer may land outside the destination: entries with `..` or
//! an absolute path are refused, and so is any entry whose parent directory
//! is a symlink (a layer could otherwise plant `a -> /etc` and then write
//! `a/passwd`). Symlinks themselves may point anywhere: they are created, never
//! followed. Whiteouts (`.wh.NAME`) and opaque directories (`.wh..wh..opq`)
//! hide what lower layers put there, as the OCI image spec says.
//!
//! Files get the mode and mtime of their tar header; ownership is the
//! installer's (root on a host). Devices and fifos are skipped: a cluster
//! image has no use for them.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::InstallerError;
use crate::layout::probe::Magic;

/// The completion stamp inside an unpacked rootfs.
pub const STAMP: &str = ".sealrs-unpacked.json";

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
}

/// Where one layer's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerSource {
    /// A blob file already on this host.
    File(PathBuf),
    /// The next `size` bytes of the input: kept as `blob` (which is named by
    /// its digest) once they hash to that digest.
    Incoming { blob: PathBuf, size: u64 },
}

impl LayerSource {
    fn blob(&self) -> &Path {
        match self {
            LayerSource::File(path) => path,
            LayerSource::Incoming { blob, .. } => blob,
        }
    }
}

/// Unpacks `layer_files` (in order) into `dest`; see the module docs.
pub fn unpack(layer_files: &[PathBuf], dest: &Path) -> Result<UnpackOutcome, InstallerError> {
    let sources: Vec<LayerSource> = layer_files.iter().cloned().map(LayerSource::File).collect();
    receive(&sources, &mut io::empty(), dest)
}

/// Unpacks `layers` (in order) into `dest`, reading the incoming ones from
/// `input` one after another and keeping them as blobs on the way.
pub fn receive(
    layers: &[LayerSource],
    input: &mut dyn Read,
    dest: &Path,
) -> Result<UnpackOutcome, InstallerError> {
    let incoming = layers
        .iter()
        .any(|l| matches!(l, LayerSource::Incoming { .. }));
    let existing = read_stamp(dest);
    if !incoming {
        let files: Vec<PathBuf> = layers.iter().map(|l| l.blob().to_path_buf()).collect();
        if let Some(done) = already_unpacked(&files, existing.as_ref(), dest)? {
            return Ok(done);
        }
    }

    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(InstallerError::io("creating", &parent))?;
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "rootfs".into());
    let tmp = tempfile::Builder::new()
        .prefix(&format!("{name}.tmp-"))
        .tempdir_in(&parent)
        .map_err(InstallerError::io("creating a directory in", &parent))?;
    let mut digests = Vec::new();
    let mut skipped = 0;
    for layer in layers {
        let (digest, n) = match layer {
            LayerSource::File(path) => {
                let file = File::open(path).map_err(InstallerError::io("opening", path))?;
                let applied = apply_layer(file, path, tmp.path())?;
                check_digest_name(path, &applied.0)?;
                applied
            }
            LayerSource::Incoming { blob, size } => {
                receive_layer(&mut *input, blob, *size, tmp.path())?
            }
        };
        digests.push(digest);
        skipped += n;
    }
    let stats: Vec<FileStat> = layers
        .iter()
        .map(|l| FileStat::of(l.blob()))
        .collect::<Result<_, _>>()?;
    write_stamp(
        tmp.path(),
        &Stamp {
            layers: digests.clone(),
            files: stats,
        },
    )?;
    let tmp = tmp.keep();
    // Unpacked layers may have made the top directory read-only or odd.
    let _ = fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755));
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
    Ok(UnpackOutcome {
        unpacked: true,
        digests,
        skipped_entries: skipped,
    })
}

/// `Some` when `dest`'s stamp says it holds exactly these blobs: by stat when
/// the files are the ones stamped, by digest otherwise.
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
    };
    if stamp.files == stats {
        return Ok(Some(same(stamp.layers.clone())));
    }
    let digests = layer_files
        .iter()
        .map(|p| hash_file(p))
        .collect::<Result<Vec<_>, _>>()?;
    if digests != stamp.layers {
        return Ok(None);
    }
    write_stamp(
        dest,
        &Stamp {
            layers: digests.clone(),
            files: stats,
        },
    )?;
    Ok(Some(same(digests)))
}

/// Unpacks the next `size` bytes of `input` as a layer, writing them to a
/// temp file beside `blob` as they pass; the file becomes `blob` only if the
/// bytes have the digest `blob` is named by.
fn receive_layer(
    input: &mut dyn Read,
    blob: &Path,
    size: u64,
    root: &Path,
) -> Result<(String, usize), InstallerError> {
    let expected = digest_of_name(blob).ok_or_else(|| InstallerError::UnnamedBlob {
        layer: blob.to_path_buf(),
    })?;
    let dir = match blob.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(InstallerError::io("creating", &dir))?;
    let temp = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempfile_in(&dir)
        .map_err(InstallerError::io("creating a file in", &dir))?;
    let mut tee = Tee {
        inner: input.take(size),
        copy: io::BufWriter::with_capacity(BUF, temp.as_file()),
        seen: 0,
    };
    let applied = apply_layer(&mut tee, blob, root);
    if applied.is_err() {
        // A stream that stopped early breaks the tar first: say that instead.
        let _ = io::copy(&mut tee.inner, &mut io::sink()).map(|n| tee.seen += n);
    }
    let got = tee.seen;
    if got != size {
        return Err(InstallerError::ShortLayer {
            layer: blob.to_path_buf(),
            got,
            size,
        });
    }
    let (digest, skipped) = applied?;
    tee.copy
        .flush()
        .map_err(InstallerError::io("writing", temp.path()))?;
    drop(tee);
    if digest != expected {
        return Err(InstallerError::DigestMismatch {
            layer: blob.to_path_buf(),
            expected,
            found: digest,
        });
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(InstallerError::io("writing", blob))?;
    temp.persist(blob).map_err(|e| InstallerError::Io {
        op: "keeping",
        path: blob.to_path_buf(),
        source: e.error,
    })?;
    Ok((digest, skipped))
}

/// Copies what passes through it to a file.
struct Tee<R, W> {
    inner: R,
    copy: W,
    seen: u64,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n])?;
        self.seen += n as u64;
        Ok(n)
    }
}

fn read_stamp(dest: &Path) -> Option<Stamp> {
    let bytes = fs::read(dest.join(STAMP)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_stamp(dir: &Path, stamp: &Stamp) -> Result<(), InstallerError> {
    let path = dir.join(STAMP);
    let tmp = dir.join(format!("{STAMP}.tmp"));
    let json = serde_json::to_vec_pretty(stamp).expect("a stamp serializes");
    fs::write(&tmp, json).map_err(InstallerError::io("writing", &tmp))?;
    fs::rename(&tmp, &path).map_err(InstallerError::io("writing", &path))
}

fn hash_file(path: &Path) -> Result<String, InstallerError> {
    let mut file = File::open(path).map_err(InstallerError::io("opening", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(InstallerError::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
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

/// Hashes what it reads: the blob's digest comes for free with the unpack.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn decompressed<'a>(reader: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(BUF, reader);
    let head = reader.fill_buf()?;
    Ok(match Magic::of(&head[..head.len().min(4)]) {
        Magic::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Magic::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        _ => Box::new(reader),
    })
}

/// Applies one layer read from `blob` (named `path` in messages); returns
/// its digest and how many entries were skipped.
fn apply_layer(
    blob: impl Read,
    path: &Path,
    root: &Path,
) -> Result<(String, usize), InstallerError> {
    let layer_err = |source| InstallerError::Layer {
        layer: path.to_path_buf(),
        source,
    };
    let mut hashing = Hashing {
        inner: blob,
        hasher: Sha256::new(),
    };
    let mut skipped = 0;
    {
        let mut archive = tar::Archive::new(decompressed(&mut hashing).map_err(layer_err)?);
        let mut layer = LayerState {
            layer: path,
            root,
            created: HashSet::new(),
            dir_modes: Vec::new(),
        };
        for entry in archive.entries().map_err(layer_err)? {
            let mut entry = entry.map_err(layer_err)?;
            if !layer.apply(&mut entry)? {
                skipped += 1;
            }
        }
        // Directory modes last, deepest first: a read-only directory must not
        // stop its own children from being written.
        layer.dir_modes.sort_by(|a, b| b.0.cmp(&a.0));
        for (dir, mode) in &layer.dir_modes {
            fs::set_permissions(dir, fs::Permissions::from_mode(*mode))
                .map_err(InstallerError::io("setting the mode of", dir))?;
        }
        // Drain what the tar reader left (padding), so the digest covers the blob.
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(layer_err)?;
    }
    io::copy(&mut hashing.inner, &mut io::sink()).map_err(layer_err)?;
    let digest = format!("sha256:{}", hex::encode(hashing.hasher.finalize()));
    Ok((digest, skipped))
}

struct LayerState<'a> {
    layer: &'a Path,
    root: &'a Path,
    /// Paths (relative) this layer wrote: an opaque marker keeps them.
    created: HashSet<PathBuf>,
    dir_modes: Vec<(PathBuf, u32)>,
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
        let mut out = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(n) => out.push(n),
                Component::CurDir => {}
                Component::ParentDir => return Err(self.refuse(shown, "it contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(shown, "it is an absolute path"))
                }
            }
        }
        Ok(out)
    }

    /// Every directory above `rel` must be a real directory (created when
    /// missing), never a symlink.
    fn safe_parent(&self, rel: &Path, shown: &str) -> Result<PathBuf, InstallerError> {
        let mut dir = self.root.to_path_buf();
        if let Some(parent) = rel.parent() {
            for c in parent.components() {
                dir.push(c);
                match fs::symlink_metadata(&dir) {
                    Ok(m) if m.file_type().is_symlink() => {
                        return Err(self.refuse(shown, "a directory above it is a symlink"))
                    }
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        // A file where a directory is needed: the later layer wins.
                        fs::remove_file(&dir).map_err(|e| self.io(e))?;
                        fs::create_dir(&dir).map_err(|e| self.io(e))?;
                    }
                    Err(_) => fs::create_dir(&dir).map_err(|e| self.io(e))?,
                }
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
        if name == OPAQUE {
            let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
            let full = self.safe_parent(&rel, &shown)?;
            let full_dir = full.parent().unwrap_or(self.root).to_path_buf();
            self.clear_opaque(&dir, &full_dir)?;
            self.created.insert(dir);
            return Ok(true);
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
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
                match fs::symlink_metadata(&full) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        fs::remove_file(&full).map_err(|e| self.io(e))?;
                        fs::create_dir(&full).map_err(|e| self.io(e))?;
                    }
                    Err(_) => fs::create_dir(&full).map_err(|e| self.io(e))?,
                }
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
                copy(entry, &mut out).map_err(|e| self.io(e))?;
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
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => return Ok(true),
            _ => return Ok(false),
        }
        self.created.insert(rel);
        Ok(true)
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

fn copy(from: &mut impl Read, to: &mut File) -> io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n])?;
    }
}

/// Makes room for a new entry at `path`: whatever is there goes.
fn replace(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
}

/// Removes a file, symlink or directory tree; missing is fine.
pub(crate) fn remove_all(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            // Read-only directories from a layer must not stop removal.
            make_writable(path);
            fs::remove_dir_all(path)
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn make_writable(dir: &Path) {
    if let Ok(m) = fs::symlink_metadata(dir) {
        if m.is_dir() {
            let mode = m.permissions().mode();
            if mode & 0o700 != 0o700 {
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700));
            }
            if let Ok(read) = fs::read_dir(dir) {
                for child in read.flatten() {
                    make_writable(&child.path());
                }
            }
        }
    }
}
