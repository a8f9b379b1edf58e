//! One COPY/ADD instruction → deterministic, streamed, compressed layer blobs.
//!
//! The bytes flow in one pass: tar writer → sha256 (the diff_id) → compressor →
//! blob sink (which hashes the compressed blob). Files are read through a
//! fixed-size buffer, so memory stays flat whatever their size.
//!
//! Determinism: entries sorted by path bytes; every mtime set to
//! `SOURCE_DATE_EPOCH`; uid/gid 0 with empty names; no device numbers, xattrs or
//! atimes. The same inputs therefore give the same diff_id, and with the same
//! compressor settings the same blob digest.
//!
//! Big files (≥ `split_threshold`) get a layer each, emitted *before* the layer
//! of everything else, in path order. Their implicit parent directories are
//! always `0755`, independent of the context, so two images that carry the same
//! binary at the same path share the blob; the main layer comes after and sets
//! the real directory modes over them.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

use super::cache::{self, LayerCache};
use super::context::{self, Context, Input, InputKind};
use super::error::{BuildError, Instruction, SinkError};
use crate::compression::{self, Compression};
use crate::digest::Hashing;
use crate::kubefile::{CopyStep, Location};
use crate::progress::{Progress, Task};

/// Read and write buffer size: large enough that syscalls and hash/compressor
/// calls are cheap per byte, small enough not to matter for memory.
const BUF: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// How layer blobs are compressed.
    ///
    /// Zstd is the default: at level 3 with one worker per core it compresses
    /// several times faster than gzip at a similar or better ratio, and
    /// decompresses faster on hosts. Cluster images are often gigabytes, so
    /// build and install time dominate. Containerd, CRI-O and every current
    /// registry accept `+zstd` layers; use `gzip` for old Docker engines.
    pub compression: Compression,
    /// Regular files at least this big get a layer of their own.
    pub split_threshold: u64,
    /// Every mtime in the layer; `SOURCE_DATE_EPOCH`, else 0.
    pub source_date_epoch: u64,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Zstd,
            split_threshold: 32 * 1024 * 1024,
            source_date_epoch: 0,
        }
    }
}

/// A layer blob in the store and the digest of its uncompressed tar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
}

/// Where layer blobs go: the store implements this (a few lines of adapter),
/// tests use a directory.
pub trait BlobSink {
    /// A writer for one new blob.
    fn create(&self) -> Result<Box<dyn BlobWrite + '_>, SinkError>;
    /// Is this blob present? The cache only trusts entries whose blobs exist.
    fn has_blob(&self, digest: &Digest) -> bool;
}

/// One blob being written. Dropping it without `finish` must leave no blob.
pub trait BlobWrite: Write {
    /// Commits the blob; returns the sha256 digest and size of what was written.
    fn finish(self: Box<Self>) -> Result<(Digest, u64), SinkError>;
}

/// Builds (or finds in `cache`) the layers of one COPY/ADD.
///
/// Usually one layer; more when big files are split off (see the module docs).
pub fn copy_layers(
    sink: &dyn BlobSink,
    ctx: &Context,
    step: &CopyStep,
    opts: &LayerOptions,
    cache: &mut LayerCache,
    progress: &dyn Progress,
) -> Result<Vec<Layer>, BuildError> {
    let instr = context::instruction_name(step);
    let inputs = context::resolve(ctx, step)?;
    let key = cache::key(step, opts, &inputs);
    if let Some(layers) = cache.get(&key, sink) {
        progress.message(&format!(
            "{}: {instr} {}: cache hit ({} layer{})",
            step.location,
            step.dest,
            layers.len(),
            if layers.len() == 1 { "" } else { "s" }
        ));
        return Ok(layers);
    }
    let tree = Tree::build(step, &inputs)?;
    let mut layers = Vec::new();
    for plan in tree.plan(opts) {
        layers.push(write_layer(
            sink,
            step,
            &plan,
            opts.source_date_epoch,
            progress,
        )?);
    }
    cache.put(key, layers.clone());
    Ok(layers)
}

// ---------------------------------------------------------------------------
// The layer's file tree

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LinkKey {
    /// A context file with several names (dev, inode).
    Inode(u64, u64),
    /// An archive member (archive number, data offset), shared by its hard links.
    Member(usize, u64),
}

#[derive(Debug, Clone)]
enum Data {
    Disk(PathBuf),
    /// A member of an archive; read with positioned reads so that members can
    /// be visited in path order, not archive order.
    Member {
        archive: Arc<File>,
        offset: u64,
        name: PathBuf,
    },
}

#[derive(Debug, Clone)]
enum NodeKind {
    Dir,
    File {
        data: Data,
        size: u64,
        link: Option<LinkKey>,
    },
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Node {
    mode: u32,
    /// False for parents we created; a copied directory's mode wins over them.
    explicit: bool,
    kind: NodeKind,
}

static IMPLICIT_DIR: Node = Node {
    mode: 0o755,
    explicit: false,
    kind: NodeKind::Dir,
};

/// Everything one instruction puts into the image, keyed by path bytes
/// (relative, no trailing `/`), so iteration is the tar order.
struct Tree<'a> {
    nodes: BTreeMap<Vec<u8>, Node>,
    step: &'a CopyStep,
    instr: Instruction,
}

impl<'a> Tree<'a> {
    fn build(step: &'a CopyStep, inputs: &[Input]) -> Result<Tree<'a>, BuildError> {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            step,
            instr: context::instruction_name(step),
        };
        let mode_of = |input: &Input| step.chmod.unwrap_or(input.meta.mode() & 0o7777);
        let mut archives = 0;
        for input in inputs {
            let node = match &input.kind {
                InputKind::Dir => Node {
                    mode: mode_of(input),
                    explicit: true,
                    kind: NodeKind::Dir,
                },
                InputKind::Symlink(target) => Node {
                    mode: 0o777,
                    explicit: true,
                    kind: NodeKind::Symlink(target.as_os_str().as_bytes().to_vec()),
                },
                InputKind::File => {
                    if input.maybe_archive {
                        if let Some(archive) = open_archive(step, &input.path)? {
                            archives += 1;
                            tree.extract(
                                &input.path,
                                Arc::new(archive),
                                archives,
                                &context::dest_rel(step),
                            )?;
                            continue;
                        }
                    }
                    Node {
                        mode: mode_of(input),
                        explicit: true,
                        kind: NodeKind::File {
                            data: Data::Disk(input.path.clone()),
                            size: input.meta.len(),
                            link: context::inode_key(&input.meta)
                                .map(|(dev, ino)| LinkKey::Inode(dev, ino)),
                        },
                    }
                }
            };
            tree.insert(&input.target, node)?;
        }
        Ok(tree)
    }

    fn conflict(&self, path: &[u8]) -> BuildError {
        BuildError::DestinationConflict {
            location: self.step.location.clone(),
            instruction: self.instr,
            path: String::from_utf8_lossy(path).into_owned(),
        }
    }

    /// Adds `node` at `path` with its parents; a later node replaces an earlier
    /// one at the same path, as a later COPY source overwrites an earlier one.
    fn insert(&mut self, path: &Path, node: Node) -> Result<(), BuildError> {
        let key = path.as_os_str().as_bytes();
        if key.is_empty() {
            return Ok(()); // `/` itself is never an entry
        }
        for (i, _) in key.iter().enumerate().filter(|(_, b)| **b == b'/') {
            match self.nodes.get(&key[..i]) {
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => {}
                Some(_) => return Err(self.conflict(&key[..i])),
                None => {
                    self.nodes.insert(key[..i].to_vec(), IMPLICIT_DIR.clone());
                }
            }
        }
        match self.nodes.get(key) {
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) if !matches!(node.kind, NodeKind::Dir) => {
                let mut lo = key.to_vec();
                lo.push(b'/');
                let mut hi = key.to_vec();
                hi.push(b'/' + 1);
                if self.nodes.range(lo..hi).next().is_some() {
                    return Err(self.conflict(key));
                }
            }
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) if !node.explicit => return Ok(()),
            _ => {}
        }
        self.nodes.insert(key.to_vec(), node);
        Ok(())
    }

    /// Unpacks the members of a tar archive at `dest` (ADD).
    fn extract(
        &mut self,
        path: &Path,
        archive: Arc<File>,
        number: usize,
        dest: &Path,
    ) -> Result<(), BuildError> {
        let location = self.step.location.clone();
        let read_err = |source| BuildError::ArchiveRead {
            location: location.clone(),
            archive: path.to_path_buf(),
            source,
        };
        let mut reader = tar::Archive::new(&*archive);
        let mut members: HashMap<PathBuf, (u64, u64, u32)> = HashMap::new();
        for entry in reader.entries_with_seek().map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let raw = entry.path_bytes().into_owned();
            let shown = String::from_utf8_lossy(&raw).into_owned();
            let escape = || BuildError::ArchiveEscape {
                location: location.clone(),
                archive: path.to_path_buf(),
                entry: shown.clone(),
            };
            let unsupported = |kind: &str| BuildError::ArchiveUnsupportedEntry {
                location: location.clone(),
                archive: path.to_path_buf(),
                entry: shown.clone(),
                kind: kind.to_string(),
            };
            let rel = member_path(&raw).ok_or_else(escape)?;
            let header = entry.header();
            // Link members often carry no mode at all: only parse it where it counts.
            let mode = || header.mode().map(|m| m & 0o7777).map_err(read_err);
            let (mode, kind) = match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (offset, mode) = (entry.raw_file_position(), mode()?);
                    members.insert(rel.clone(), (offset, entry.size(), mode));
                    let data = Data::Member {
                        archive: archive.clone(),
                        offset,
                        name: path.join(&rel),
                    };
                    (
                        mode,
                        NodeKind::File {
                            data,
                            size: entry.size(),
                            link: Some(LinkKey::Member(number, offset)),
                        },
                    )
                }
                tar::EntryType::Directory => (mode()?, NodeKind::Dir),
                tar::EntryType::Symlink => (
                    0o777,
                    NodeKind::Symlink(entry.link_name_bytes().unwrap_or_default().into_owned()),
                ),
                tar::EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                    let target = member_path(&target).ok_or_else(escape)?;
                    let Some(&(offset, size, mode)) = members.get(&target) else {
                        return Err(unsupported(
                            "a hard link to a file that is not earlier in the archive",
                        ));
                    };
                    let data = Data::Member {
                        archive: archive.clone(),
                        offset,
                        name: path.join(&target),
                    };
                    (
                        mode,
                        NodeKind::File {
                            data,
                            size,
                            link: Some(LinkKey::Member(number, offset)),
                        },
                    )
                }
                tar::EntryType::GNUSparse => return Err(unsupported("a sparse file")),
                tar::EntryType::Char | tar::EntryType::Block => {
                    return Err(unsupported("a device node"))
                }
                tar::EntryType::Fifo => return Err(unsupported("a FIFO")),
                other => {
                    return Err(unsupported(&format!(
                        "of tar type {:?}",
                        other.as_byte() as char
                    )))
                }
            };
            if rel.as_os_str().is_empty() && !matches!(kind, NodeKind::Dir) {
                return Err(escape());
            }
            self.insert(
                &dest.join(&rel),
                Node {
                    mode,
                    explicit: true,
                    kind,
                },
            )?;
        }
        Ok(())
    }

    /// Splits the tree into layers: big files first (one each), then the rest.
    fn plan(&self, opts: &LayerOptions) -> Vec<LayerPlan<'_>> {
        let mut names: HashMap<LinkKey, usize> = HashMap::new();
        for node in self.nodes.values() {
            if let NodeKind::File {
                link: Some(key), ..
            } = &node.kind
            {
                *names.entry(*key).or_default() += 1;
            }
        }
        let is_big = |node: &Node| match &node.kind {
            // A hard-linked file stays with its other names: links cannot cross layers.
            NodeKind::File { size, link, .. } => {
                *size >= opts.split_threshold && link.is_none_or(|k| names.get(&k) == Some(&1))
            }
            _ => false,
        };
        let mut plans = Vec::new();
        let mut rest = Vec::new();
        for (path, node) in &self.nodes {
            if !is_big(node) {
                rest.push((path.clone(), node));
                continue;
            }
            let mut entries: Vec<(Vec<u8>, &Node)> = path
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| (path[..i].to_vec(), &IMPLICIT_DIR))
                .collect();
            entries.push((path.clone(), node));
            let compression = match (&node.kind, opts.compression) {
                (_, Compression::None) => Compression::None,
                (NodeKind::File { data, size, .. }, chosen) => {
                    if looks_compressed(data, *size) {
                        Compression::None
                    } else {
                        chosen
                    }
                }
                (_, chosen) => chosen,
            };
            plans.push(LayerPlan {
                label: format!("{} /{}", self.instr, String::from_utf8_lossy(path)),
                entries,
                compression,
            });
        }
        if !rest.is_empty() || plans.is_empty() {
            plans.push(LayerPlan {
                label: format!("{} {}", self.instr, self.step.dest),
                entries: rest,
                compression: opts.compression,
            });
        }
        plans
    }
}

/// Cleans an archive member name; `None` when it would leave the destination.
fn member_path(raw: &[u8]) -> Option<PathBuf> {
    if raw.starts_with(b"/") {
        return None;
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.iter().map(|p| OsStr::from_bytes(p)).collect())
}

// ---------------------------------------------------------------------------
// Reading content

/// Opens file content. Every content read goes through here, which lets tests
/// prove that a cache hit reads none.
fn open_content(path: &Path) -> io::Result<File> {
    #[cfg(test)]
    tests::CONTENT_OPENS.with(|n| n.set(n.get() + 1));
    File::open(path)
}

const TAR_MAGIC_OFFSET: usize = 257;

fn has_tar_magic(head: &[u8]) -> bool {
    head.get(TAR_MAGIC_OFFSET..TAR_MAGIC_OFFSET + 5) == Some(b"ustar")
}

fn read_head(reader: &mut dyn Read, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    reader.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// If `path` is a tar, tar.gz or tar.zst (by content), returns it as a plain,
/// seekable tar: the file itself, or an anonymous temp file holding the
/// decompressed stream. Anything else (including xz and bzip2) is `None` and
/// gets copied as a file.
fn open_archive(step: &CopyStep, path: &Path) -> Result<Option<File>, BuildError> {
    let read_err = |source| BuildError::ArchiveRead {
        location: step.location.clone(),
        archive: path.to_path_buf(),
        source,
    };
    let unreadable = |source| BuildError::Unreadable {
        location: step.location.clone(),
        instruction: Instruction::Add,
        path: path.to_path_buf(),
        source,
    };
    let mut file = open_content(path).map_err(unreadable)?;
    let head = read_head(&mut file, 512).map_err(unreadable)?;
    if has_tar_magic(&head) {
        file.rewind().map_err(read_err)?;
        return Ok(Some(file));
    }
    let packed = Compression::of(&head);
    if packed == Compression::None {
        return Ok(None);
    }
    let decoder = |file: File| compression::decoder(packed, BufReader::with_capacity(BUF, file));
    let mut probe = decoder(open_content(path).map_err(unreadable)?).map_err(read_err)?;
    // A compressed file that is not a tar inside is copied as is, like Docker.
    if !read_head(&mut probe, 512).is_ok_and(|inner| has_tar_magic(&inner)) {
        return Ok(None);
    }
    let mut plain = tempfile::tempfile().map_err(read_err)?;
    file.rewind().map_err(read_err)?;
    let mut stream = decoder(file).map_err(read_err)?;
    let mut out = BufWriter::with_capacity(BUF, &mut plain);
    io::copy(&mut stream, &mut out).map_err(read_err)?;
    out.flush().map_err(read_err)?;
    drop(out);
    plain.rewind().map_err(read_err)?;
    Ok(Some(plain))
}

/// True when a big file would not shrink: compressed formats by magic, else a
/// few samples that zstd cannot shrink by 5%. Compressing it again would only
/// cost time on every build and every host.
fn looks_compressed(data: &Data, size: u64) -> bool {
    // Besides gzip and zstd.
    const MAGICS: &[&[u8]] = &[
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        b"BZh",                                // bzip2
        b"PK\x03\x04",                         // zip, jar
        &[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], // 7z
    ];
    const SAMPLE: u64 = 256 * 1024;
    const SAMPLES: u64 = 4;
    let (file, base) = match data {
        Data::Disk(path) => match open_content(path) {
            Ok(file) => (Arc::new(file), 0),
            Err(_) => return false, // the writer reports the error with context
        },
        Data::Member {
            archive, offset, ..
        } => (archive.clone(), *offset),
    };
    // Small enough: the whole file once; else windows spread over it, so a
    // compressible header does not hide a compressed body.
    let windows: Vec<(u64, u64)> = if size <= SAMPLE * SAMPLES {
        vec![(0, size)]
    } else {
        (0..SAMPLES)
            .map(|i| ((size - SAMPLE) * i / (SAMPLES - 1), SAMPLE))
            .collect()
    };
    let mut buf = vec![0u8; windows.iter().map(|w| w.1).max().unwrap_or(0) as usize];
    let mut sampled = Vec::new();
    for (i, (at, want)) in windows.into_iter().enumerate() {
        let Ok(n) = file.read_at(&mut buf[..want as usize], base + at) else {
            return false;
        };
        let head = &buf[..n];
        if i == 0
            && (Compression::of(head) != Compression::None
                || MAGICS.iter().any(|m| head.starts_with(m)))
        {
            return true;
        }
        sampled.extend_from_slice(&buf[..n]);
    }
    match zstd::bulk::compress(&sampled, 1) {
        Ok(packed) => packed.len() as u64 * 100 >= sampled.len() as u64 * 95,
        Err(_) => false,
    }
}

/// Yields exactly `size` bytes of a file and reports progress. A file that
/// shrinks while we read would otherwise corrupt the tar stream.
struct Content<'t> {
    source: Box<dyn Read + 't>,
    remaining: u64,
    task: &'t dyn Task,
    failure: Option<(PathBuf, io::Error)>,
    name: PathBuf,
}

impl Read for Content<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let result = self.source.read(&mut buf[..want]).and_then(|n| match n {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            )),
            n => Ok(n),
        });
        match result {
            Ok(n) => {
                self.remaining -= n as u64;
                self.task.advance(n as u64);
                Ok(n)
            }
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failure = Some((self.name.clone(), e));
                Err(copy)
            }
        }
    }
}

/// Positioned reads of an archive member, so members can be read out of order.
struct MemberReader {
    archive: Arc<File>,
    offset: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.archive.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// Writing a layer

struct LayerPlan<'a> {
    label: String,
    entries: Vec<(Vec<u8>, &'a Node)>,
    compression: Compression,
}

enum Encoder<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    fn new(compression: Compression, out: W) -> io::Result<Self> {
        Ok(match compression {
            Compression::Zstd => {
                let mut encoder = zstd::stream::write::Encoder::new(out, 3)?;
                // Always multithreaded, even with one core: zstd's output then
                // does not depend on the worker count, so digests do not
                // depend on the machine that built the image.
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
                encoder.multithread(workers.max(1))?;
                Encoder::Zstd(encoder)
            }
            Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            Compression::None => Encoder::None(out),
        })
    }

    fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Zstd(e) => e.finish(),
            Encoder::Gzip(e) => e.finish(),
            Encoder::None(w) => Ok(w),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Zstd(e) => e.write(buf),
            Encoder::Gzip(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Zstd(e) => e.flush(),
            Encoder::Gzip(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// A root-owned GNU tar header with a fixed mtime: what makes layers reproducible.
pub(crate) fn header(entry_type: tar::EntryType, mode: u32, size: u64, epoch: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(entry_type);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(epoch);
    h.set_size(size);
    h
}

fn write_layer(
    sink: &dyn BlobSink,
    step: &CopyStep,
    plan: &LayerPlan<'_>,
    epoch: u64,
    progress: &dyn Progress,
) -> Result<Layer, BuildError> {
    let instr = context::instruction_name(step);
    let location = &step.location;
    let store_err = |source| BuildError::Store {
        location: location.clone(),
        instruction: instr,
        source,
    };
    let write_err = |source| BuildError::LayerWrite {
        location: location.clone(),
        instruction: instr,
        source,
    };
    let total = plan
        .entries
        .iter()
        .map(|(_, node)| match node.kind {
            NodeKind::File { size, .. } => size,
            _ => 0,
        })
        .sum();
    let task = progress.begin(&plan.label, Some(total));
    let blob = sink.create().map_err(store_err)?;
    let encoder = Encoder::new(plan.compression, blob).map_err(write_err)?;
    // The uncompressed tar is hashed on its way to the compressor.
    let diff = Hashing::new(encoder);
    let mut tar = tar::Builder::new(BufWriter::with_capacity(BUF, diff));
    let mut first_names: HashMap<LinkKey, Vec<u8>> = HashMap::new();
    for (path, node) in &plan.entries {
        append(
            &mut tar,
            location,
            instr,
            path,
            node,
            epoch,
            &mut first_names,
            &*task,
        )?;
    }
    let diff = tar
        .into_inner()
        .and_then(|buffered| buffered.into_inner().map_err(|e| e.into_error()))
        .map_err(write_err)?;
    let (encoder, diff_id, _) = diff.into_parts();
    let blob = encoder.finish().map_err(write_err)?;
    let (digest, size) = blob.finish().map_err(store_err)?;
    task.finish(&format!("{} → {} ({} bytes)", plan.label, digest, size));
    Ok(Layer {
        descriptor: Descriptor::new(plan.compression.layer_media_type(), size, digest),
        diff_id,
    })
}

#[allow(clippy::too_many_arguments)]
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    location: &Location,
    instr: Instruction,
    path: &[u8],
    node: &Node,
    epoch: u64,
    first_names: &mut HashMap<LinkKey, Vec<u8>>,
    task: &dyn Task,
) -> Result<(), BuildError> {
    let write_err = |source| BuildError::LayerWrite {
        location: location.clone(),
        instruction: instr,
        source,
    };
    let name = OsStr::from_bytes(path);
    match &node.kind {
        NodeKind::Dir => {
            let mut dir = path.to_vec();
            dir.push(b'/');
            let mut h = header(tar::EntryType::Directory, node.mode, 0, epoch);
            tar.append_data(&mut h, OsStr::from_bytes(&dir), io::empty())
                .map_err(write_err)
        }
        NodeKind::Symlink(target) => {
            let mut h = header(tar::EntryType::Symlink, node.mode, 0, epoch);
            tar.append_link(&mut h, name, OsStr::from_bytes(target))
                .map_err(write_err)
        }
        NodeKind::File { data, size, link } => {
            if let Some(first) = link.and_then(|k| first_names.get(&k)) {
                let mut h = header(tar::EntryType::Link, node.mode, 0, epoch);
                return tar
                    .append_link(&mut h, name, OsStr::from_bytes(first))
                    .map_err(write_err);
            }
            if let Some(key) = link {
                first_names.insert(*key, path.to_vec());
            }
            let (source, shown): (Box<dyn Read>, PathBuf) = match data {
                Data::Disk(disk) => {
                    let file = open_content(disk).map_err(|source| BuildError::Unreadable {
                        location: location.clone(),
                        instruction: instr,
                        path: disk.clone(),
                        source,
                    })?;
                    (Box::new(BufReader::with_capacity(BUF, file)), disk.clone())
                }
                Data::Member {
                    archive,
                    offset,
                    name,
                } => (
                    Box::new(BufReader::with_capacity(
                        BUF,
                        MemberReader {
                            archive: archive.clone(),
                            offset: *offset,
                        },
                    )),
                    name.clone(),
                ),
            };
            let mut content = Content {
                source,
                remaining: *size,
                task,
                failure: None,
                name: shown,
            };
            let mut h = header(tar::EntryType::Regular, node.mode, *size, epoch);
            match tar.append_data(&mut h, name, &mut content) {
                Ok(()) => Ok(()),
                Err(e) => Err(match content.failure.take() {
                    Some((path, e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        BuildError::FileChanged {
                            location: location.clone(),
                            instruction: instr,
                            path,
                        }
                    }
                    Some((path, source)) => BuildError::Unreadable {
                        location: location.clone(),
                        instruction: instr,
                        path,
                        source,
                    },
                    None => write_err(e),
                }),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::progress::Silent;
    use oci_spec::image::MediaType;
    use std::cell::Cell;
    use std::os::unix::fs::{symlink, PermissionsExt};

    thread_local! {
        pub(crate) static CONTENT_OPENS: Cell<usize> = const { Cell::new(0) };
    }

    /// A blob directory standing in for the store.
    pub(crate) struct DirSink(pub tempfile::TempDir);

    impl DirSink {
        pub(crate) fn new() -> Self {
            DirSink(tempfile::tempdir().unwrap())
        }
        fn path(&self, digest: &Digest) -> PathBuf {
            self.0.path().join(digest.digest())
        }
        pub(crate) fn read(&self, layer: &Layer) -> Vec<u8> {
            let raw = std::fs::read(self.path(layer.descriptor.digest())).unwrap();
            let mut out = Vec::new();
            compression::decompressed(&raw[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        }
    }

    struct DirBlob {
        file: Hashing<tempfile::NamedTempFile>,
        dir: PathBuf,
    }

    impl Write for DirBlob {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.file.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.file.flush()
        }
    }

    impl BlobWrite for DirBlob {
        fn finish(self: Box<Self>) -> Result<(Digest, u64), SinkError> {
            let (file, digest, size) = self.file.into_parts();
            file.persist(self.dir.join(digest.digest()))?;
            Ok((digest, size))
        }
    }

    impl BlobSink for DirSink {
        fn create(&self) -> Result<Box<dyn BlobWrite + '_>, SinkError> {
            Ok(Box::new(DirBlob {
                file: Hashing::new(tempfile::NamedTempFile::new_in(self.0.path())?),
                dir: self.0.path().to_path_buf(),
            }))
        }
        fn has_blob(&self, digest: &Digest) -> bool {
            self.path(digest).exists()
        }
    }

    pub(crate) fn step(sources: &[&str], dest: &str) -> CopyStep {
        CopyStep {
            location: Location {
                file: "Kubefile".into(),
                line: 3,
                column: 1,
            },
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: dest.to_string(),
            chmod: None,
            extract_archives: false,
        }
    }

    pub(crate) fn write(root: &Path, rel: &str, content: &[u8]) -> PathBuf {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn opts() -> LayerOptions {
        LayerOptions {
            source_date_epoch: 1_700_000_000,
            ..LayerOptions::default()
        }
    }

    struct Fixture {
        ctx: tempfile::TempDir,
        sink: DirSink,
        cache_dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture {
                ctx: tempfile::tempdir().unwrap(),
                sink: DirSink::new(),
                cache_dir: tempfile::tempdir().unwrap(),
            }
        }
        fn root(&self) -> &Path {
            self.ctx.path()
        }
        fn cache(&self) -> LayerCache {
            LayerCache::open(&self.cache_dir.path().join("layers.json"))
        }
        /// Builds without a cache.
        fn build(&self, step: &CopyStep, opts: &LayerOptions) -> Result<Vec<Layer>, BuildError> {
            let ctx = Context::open(self.root())?;
            copy_layers(&self.sink, &ctx, step, opts, &mut self.cache(), &Silent)
        }
        fn build_cached(
            &self,
            step: &CopyStep,
            cache: &mut LayerCache,
        ) -> Result<Vec<Layer>, BuildError> {
            let ctx = Context::open(self.root())?;
            copy_layers(&self.sink, &ctx, step, &opts(), cache, &Silent)
        }
        fn entries(&self, layer: &Layer) -> Vec<Entry> {
            entries(&self.sink.read(layer))
        }
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Entry {
        path: String,
        kind: char,
        mode: u32,
        mtime: u64,
        uid: u64,
        gid: u64,
        link: Option<String>,
        content: Vec<u8>,
    }

    fn entries(tar_bytes: &[u8]) -> Vec<Entry> {
        let mut archive = tar::Archive::new(tar_bytes);
        let mut out = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let h = entry.header().clone();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
            out.push(Entry {
                path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                kind: h.entry_type().as_byte() as char,
                mode: h.mode().unwrap(),
                mtime: h.mtime().unwrap(),
                uid: h.uid().unwrap(),
                gid: h.gid().unwrap(),
                link: entry
                    .link_name_bytes()
                    .map(|l| String::from_utf8(l.into_owned()).unwrap()),
                content,
            });
        }
        out
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn same_context_twice_gives_identical_digests() {
        let f = Fixture::new();
        write(f.root(), "bin/k3s", b"binary");
        write(f.root(), "manifests/a.yaml", b"a: 1");
        let s = step(&["."], "/");
        let first = f.build(&s, &opts()).unwrap();
        let second = f.build(&s, &opts()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].descriptor.media_type(), &MediaType::ImageLayerZstd);
        let e = f.entries(&first[0]);
        assert_eq!(
            paths(&e),
            ["bin/", "bin/k3s", "manifests/", "manifests/a.yaml"]
        );
        assert!(e
            .iter()
            .all(|e| e.mtime == 1_700_000_000 && e.uid == 0 && e.gid == 0));
    }

    #[test]
    fn mtime_change_keeps_digests_but_content_change_does_not() {
        let f = Fixture::new();
        let file = write(f.root(), "a.txt", b"one");
        let s = step(&["a.txt"], "/a.txt");
        let before = f.build(&s, &opts()).unwrap();
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345))
            .unwrap();
        assert_eq!(f.build(&s, &opts()).unwrap(), before);
        std::fs::write(&file, b"two").unwrap();
        let after = f.build(&s, &opts()).unwrap();
        assert_ne!(after[0].diff_id, before[0].diff_id);
        assert_ne!(after[0].descriptor.digest(), before[0].descriptor.digest());
    }

    #[test]
    fn modes_symlinks_and_dirs_survive() {
        let f = Fixture::new();
        let tool = write(f.root(), "src/bin/tool", b"#!/bin/sh\n");
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let secret = write(f.root(), "src/etc/secret", b"s");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(
            f.root().join("src/etc"),
            std::fs::Permissions::from_mode(0o750),
        )
        .unwrap();
        symlink("../bin/tool", f.root().join("src/etc/link")).unwrap();
        symlink("/nowhere/at/all", f.root().join("src/dangling")).unwrap();
        let layers = f.build(&step(&["src"], "/opt/app"), &opts()).unwrap();
        let e = f.entries(&layers[0]);
        let find = |p: &str| {
            e.iter()
                .find(|x| x.path == p)
                .unwrap_or_else(|| panic!("{p} in {e:?}"))
        };
        assert_eq!(
            paths(&e),
            [
                "opt/",
                "opt/app/",
                "opt/app/bin/",
                "opt/app/bin/tool",
                "opt/app/dangling",
                "opt/app/etc/",
                "opt/app/etc/link",
                "opt/app/etc/secret"
            ]
        );
        assert_eq!(find("opt/").mode, 0o755);
        assert_eq!(find("opt/app/bin/tool").mode, 0o4755);
        assert_eq!(find("opt/app/etc/secret").mode, 0o600);
        assert_eq!(find("opt/app/etc/").mode, 0o750);
        assert_eq!(find("opt/app/etc/link").kind, '2');
        assert_eq!(
            find("opt/app/etc/link").link.as_deref(),
            Some("../bin/tool")
        );
        assert_eq!(
            find("opt/app/dangling").link.as_deref(),
            Some("/nowhere/at/all")
        );
        assert_eq!(find("opt/app/bin/tool").content, b"#!/bin/sh\n");
    }

    #[test]
    fn chmod_overrides_copied_files_and_dirs_but_not_implicit_parents() {
        let f = Fixture::new();
        write(f.root(), "d/sub/x", b"x");
        let mut s = step(&["d"], "/deep/dest/");
        s.chmod = Some(0o700);
        let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
        let modes: Vec<(&str, u32)> = e.iter().map(|e| (e.path.as_str(), e.mode)).collect();
        assert_eq!(
            modes,
            [
                ("deep/", 0o755),
                ("deep/dest/", 0o700),
                ("deep/dest/sub/", 0o700),
                ("deep/dest/sub/x", 0o700)
            ]
        );
    }

    #[test]
    fn hardlinks_become_tar_links() {
        let f = Fixture::new();
        let a = write(f.root(), "a", b"same inode");
        std::fs::hard_link(&a, f.root().join("b")).unwrap();
        let e = f.entries(&f.build(&step(&["."], "/x/"), &opts()).unwrap()[0]);
        let b = e.iter().find(|e| e.path == "x/b").unwrap();
        assert_eq!(b.kind, '1');
        assert_eq!(b.link.as_deref(), Some("x/a"));
        assert_eq!(
            e.iter().find(|e| e.path == "x/a").unwrap().content,
            b"same inode"
        );
    }

    #[test]
    fn long_names_and_link_targets_round_trip() {
        let f = Fixture::new();
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(120));
        write(f.root(), &long, b"deep");
        symlink("t".repeat(200), f.root().join("l")).unwrap();
        let e = f.entries(&f.build(&step(&["."], "/"), &opts()).unwrap()[0]);
        assert!(e.iter().any(|e| e.path == long && e.content == b"deep"));
        assert_eq!(
            e.iter().find(|e| e.path == "l").unwrap().link.as_deref(),
            Some("t".repeat(200).as_str())
        );
    }

    #[test]
    fn glob_sources_copy_matches_into_a_directory() {
        let f = Fixture::new();
        write(f.root(), "manifests/a.yaml", b"a");
        write(f.root(), "manifests/b.yaml", b"b");
        write(f.root(), "manifests/c.json", b"c");
        write(f.root(), "manifests/sub/d.yaml", b"d");
        let e = f.entries(
            &f.build(&step(&["manifests/*.yaml"], "/m/"), &opts())
                .unwrap()[0],
        );
        assert_eq!(paths(&e), ["m/", "m/a.yaml", "m/b.yaml"]);
        let e = f.entries(
            &f.build(&step(&["manifests/?.json", "*/sub"], "/m/"), &opts())
                .unwrap()[0],
        );
        assert_eq!(paths(&e), ["m/", "m/c.json", "m/d.yaml"]);
    }

    #[test]
    fn glob_sees_no_ignored_files() {
        let f = Fixture::new();
        write(f.root(), ".dockerignore", b"*.bak\n");
        write(f.root(), "a.conf", b"a");
        write(f.root(), "a.bak", b"b");
        let e = f.entries(&f.build(&step(&["a.*"], "/etc/"), &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["etc/", "etc/a.conf"]);
        let err = f.build(&step(&["*.bak"], "/etc/"), &opts()).unwrap_err();
        assert!(matches!(err, BuildError::SourceNotFound { .. }), "{err}");
    }

    #[test]
    fn ignore_file_applies_inside_copied_directories() {
        let f = Fixture::new();
        write(
            f.root(),
            ".kubefileignore",
            b"# test\n**/*.log\ndocs\n!docs/keep.md\n",
        );
        write(f.root(), ".dockerignore", b"everything-else\n");
        write(f.root(), "a/b/x.log", b"");
        write(f.root(), "a/b/x.txt", b"");
        write(f.root(), "docs/keep.md", b"");
        write(f.root(), "docs/drop.md", b"");
        write(f.root(), "everything-else", b"");
        let e = f.entries(&f.build(&step(&["."], "/"), &opts()).unwrap()[0]);
        // Not special-cased: both ignore files are ordinary files, `.dockerignore` is unused.
        assert_eq!(
            paths(&e),
            [
                ".dockerignore",
                ".kubefileignore",
                "a/",
                "a/b/",
                "a/b/x.txt",
                "docs/",
                "docs/keep.md",
                "everything-else"
            ]
        );
    }

    #[test]
    fn file_dest_rules() {
        let f = Fixture::new();
        write(f.root(), "k3s", b"bin");
        let e = f.entries(
            &f.build(&step(&["k3s"], "/usr/bin/k3s-renamed"), &opts())
                .unwrap()[0],
        );
        assert_eq!(paths(&e), ["usr/", "usr/bin/", "usr/bin/k3s-renamed"]);
        let e = f.entries(&f.build(&step(&["k3s"], "/usr/bin/"), &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["usr/", "usr/bin/", "usr/bin/k3s"]);
        let e = f.entries(&f.build(&step(&["./k3s"], "/"), &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["k3s"]);
    }

    #[test]
    fn several_sources_need_a_slash_dest() {
        let f = Fixture::new();
        write(f.root(), "a", b"a");
        write(f.root(), "b", b"b");
        let err = f.build(&step(&["a", "b"], "/dir"), &opts()).unwrap_err();
        assert!(
            matches!(err, BuildError::DestNotDirectory { count: 2, .. }),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("Kubefile:3:1: COPY has 2 sources"),
            "{err}"
        );
        let err = f.build(&step(&["*"], "/dir"), &opts()).unwrap_err();
        assert!(matches!(err, BuildError::DestNotDirectory { .. }), "{err}");
        let e = f.entries(&f.build(&step(&["a", "b"], "/dir/"), &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["dir/", "dir/a", "dir/b"]);
    }

    #[test]
    fn later_sources_overwrite_and_type_conflicts_are_errors() {
        let f = Fixture::new();
        write(f.root(), "one/f", b"first");
        write(f.root(), "two/f", b"second");
        let e = f.entries(&f.build(&step(&["one", "two"], "/d/"), &opts()).unwrap()[0]);
        assert_eq!(
            e.iter().find(|e| e.path == "d/f").unwrap().content,
            b"second"
        );
        write(f.root(), "three/f/inner", b"dir first");
        let err = f
            .build(&step(&["three", "one"], "/d/"), &opts())
            .unwrap_err();
        assert!(
            matches!(err, BuildError::DestinationConflict { .. }),
            "{err}"
        );
    }

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o640);
            h.set_size(data.len() as u64);
            h.set_mtime(99);
            h.set_uid(1000);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn raw_tar_with_name(name: &[u8]) -> Vec<u8> {
        // tar::Builder refuses `..`, so write the header by hand.
        let mut h = tar::Header::new_ustar();
        h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_mode(0o644);
        h.set_size(1);
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.push(b'x');
        out.resize(1024 + 1024, 0);
        out
    }

    #[test]
    fn add_extracts_tar_gzip_and_zstd_by_content() {
        let f = Fixture::new();
        let plain = tar_of(&[("bin/tool", b"tool"), ("./etc/conf", b"conf")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&plain).unwrap();
        std::fs::write(f.root().join("a.tar"), &plain).unwrap();
        std::fs::write(f.root().join("b.tgz"), gz.finish().unwrap()).unwrap();
        std::fs::write(
            f.root().join("c.noext"),
            zstd::bulk::compress(&plain, 3).unwrap(),
        )
        .unwrap();
        for name in ["a.tar", "b.tgz", "c.noext"] {
            let mut s = step(&[name], "/opt");
            s.extract_archives = true;
            let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
            assert_eq!(
                paths(&e),
                [
                    "opt/",
                    "opt/bin/",
                    "opt/bin/tool",
                    "opt/etc/",
                    "opt/etc/conf"
                ],
                "{name}"
            );
            let tool = &e[2];
            assert_eq!(
                (tool.mode, tool.uid, tool.mtime, tool.content.as_slice()),
                (0o640, 0, 1_700_000_000, &b"tool"[..])
            );
        }
        // COPY never extracts.
        let e = f.entries(&f.build(&step(&["a.tar"], "/opt/"), &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["opt/", "opt/a.tar"]);
    }

    #[test]
    fn add_copies_non_archives_and_compressed_non_tars_as_files() {
        let f = Fixture::new();
        write(f.root(), "notes.tar", b"not really a tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"just text").unwrap();
        std::fs::write(f.root().join("text.gz"), gz.finish().unwrap()).unwrap();
        let mut s = step(&["notes.tar", "text.gz"], "/d/");
        s.extract_archives = true;
        let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
        assert_eq!(paths(&e), ["d/", "d/notes.tar", "d/text.gz"]);
    }

    #[test]
    fn add_keeps_archive_hardlinks_and_symlinks() {
        let f = Fixture::new();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o755);
        b.append_data(&mut h, "z/orig", &b"abc"[..]).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "a/hard", "z/orig").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "a/soft", "../z/orig").unwrap();
        std::fs::write(f.root().join("l.tar"), b.into_inner().unwrap()).unwrap();
        let mut s = step(&["l.tar"], "/");
        s.extract_archives = true;
        let e = f.entries(&f.build(&s, &opts()).unwrap()[0]);
        // Path order puts a/hard first, so it carries the data and z/orig links to it.
        assert_eq!(paths(&e), ["a/", "a/hard", "a/soft", "z/", "z/orig"]);
        assert_eq!((e[1].kind, e[1].content.as_slice()), ('0', &b"abc"[..]));
        assert_eq!((e[4].kind, e[4].link.as_deref()), ('1', Some("a/hard")));
        assert_eq!(e[2].link.as_deref(), Some("../z/orig"));
    }

    #[test]
    fn add_refuses_archives_that_escape_dest() {
        let f = Fixture::new();
        for (i, name) in [&b"../evil"[..], b"a/../../evil", b"/etc/passwd"]
            .iter()
            .enumerate()
        {
            let file = format!("bad{i}.tar");
            std::fs::write(f.root().join(&file), raw_tar_with_name(name)).unwrap();
            let mut s = step(&[&file], "/opt/");
            s.extract_archives = true;
            let err = f.build(&s, &opts()).unwrap_err();
            assert!(matches!(err, BuildError::ArchiveEscape { .. }), "{err}");
            assert!(err.to_string().contains("outside the destination"), "{err}");
        }
        // A symlink member followed by a file "through" it is refused as well.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "etc", "/etc").unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "etc/passwd", &b"x"[..]).unwrap();
        std::fs::write(f.root().join("through.tar"), b.into_inner().unwrap()).unwrap();
        let mut s = step(&["through.tar"], "/");
        s.extract_archives = true;
        let err = f.build(&s, &opts()).unwrap_err();
        assert!(
            matches!(err, BuildError::DestinationConflict { .. }),
            "{err}"
        );
    }

    #[test]
    fn add_from_url_is_refused() {
        let f = Fixture::new();
        for url in [
            "https://example.com/k3s",
            "http://x/y.tgz",
            "git@github.com:a/b.git",
        ] {
            let mut s = step(&[url], "/opt/");
            s.extract_archives = true;
            let err = f.build(&s, &opts()).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("Kubefile:3:1: ADD from a URL ({url}) is not supported; download it into the context first")
            );
        }
    }

    fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn big_files_get_their_own_layers_first_and_compressed_ones_stay_uncompressed() {
        let f = Fixture::new();
        write(f.root(), "small", b"small");
        write(
            f.root(),
            "bin/big-text",
            &b"compressible line\n".repeat(4000),
        );
        write(f.root(), "bin/big-random", &pseudo_random(70_000, 7));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&b"abc".repeat(100_000)).unwrap();
        write(f.root(), "images/big.tar.gz", &gz.finish().unwrap());
        let o = LayerOptions {
            split_threshold: 1000,
            ..opts()
        };
        let layers = f.build(&step(&["."], "/rootfs/"), &o).unwrap();
        let media: Vec<_> = layers
            .iter()
            .map(|l| l.descriptor.media_type().to_string())
            .collect();
        let all: Vec<Vec<String>> = layers
            .iter()
            .map(|l| f.entries(l).into_iter().map(|e| e.path).collect())
            .collect();
        assert_eq!(
            all,
            [
                vec!["rootfs/", "rootfs/bin/", "rootfs/bin/big-random"],
                vec!["rootfs/", "rootfs/bin/", "rootfs/bin/big-text"],
                vec!["rootfs/", "rootfs/images/", "rootfs/images/big.tar.gz"],
                vec!["rootfs/", "rootfs/bin/", "rootfs/images/", "rootfs/small"],
            ]
        );
        assert_eq!(
            media,
            [
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar+zstd",
                "application/vnd.oci.image.layer.v1.tar",
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ]
        );
        // The same binary at the same path shares its blob, whatever else the image holds
        // and whatever mode the context gives its directory.
        let g = Fixture::new();
        write(
            g.root(),
            "bin/big-text",
            &b"compressible line\n".repeat(4000),
        );
        std::fs::set_permissions(g.root().join("bin"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        write(g.root(), "other", b"other");
        let again = g.build(&step(&["."], "/rootfs/"), &o).unwrap();
        assert_eq!(again[0].descriptor.digest(), layers[1].descriptor.digest());
    }

    /// Digests must not depend on the builder's core count: zstd's multithreaded
    /// mode gives the same bytes for any worker count (given > 1 job of input).
    #[test]
    fn zstd_output_does_not_depend_on_worker_count() {
        let input: Vec<u8> = pseudo_random(24 << 20, 3)
            .iter()
            .map(|b| b'a' + b % 8)
            .collect();
        let compress = |workers: u32| {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
            e.multithread(workers).unwrap();
            e.write_all(&input).unwrap();
            e.finish().unwrap()
        };
        assert_eq!(compress(1), compress(3));
    }

    #[test]
    fn gzip_and_none_compression() {
        let f = Fixture::new();
        write(f.root(), "a", b"aaaa");
        for (c, media) in [
            (Compression::Gzip, MediaType::ImageLayerGzip),
            (Compression::None, MediaType::ImageLayer),
        ] {
            let layers = f
                .build(
                    &step(&["a"], "/a"),
                    &LayerOptions {
                        compression: c,
                        ..opts()
                    },
                )
                .unwrap();
            assert_eq!(layers[0].descriptor.media_type(), &media);
            assert_eq!(f.entries(&layers[0])[0].content, b"aaaa");
        }
    }

    #[test]
    fn cache_hit_reads_no_content_and_survives_save_and_reopen() {
        let f = Fixture::new();
        write(f.root(), "a", b"aaaa");
        write(f.root(), "d/b", b"bbbb");
        let s = step(&["."], "/");
        let mut cache = f.cache();
        let first = f.build_cached(&s, &mut cache).unwrap();
        cache.save().unwrap();
        let mut cache = f.cache();
        CONTENT_OPENS.with(|n| n.set(0));
        let second = f.build_cached(&s, &mut cache).unwrap();
        assert_eq!(CONTENT_OPENS.with(Cell::get), 0);
        assert_eq!(first, second);
        // A missing blob turns the hit into a rebuild.
        std::fs::remove_file(f.sink.path(first[0].descriptor.digest())).unwrap();
        let third = f.build_cached(&s, &mut cache).unwrap();
        assert!(CONTENT_OPENS.with(Cell::get) > 0);
        assert_eq!(third, first);
    }

    /// Same size, mtime put back: still a miss, because ctime changed. (A
    /// change that leaves ctime and inode alone is not detected: see cache.rs.)
    #[test]
    fn cache_misses_on_content_change_with_same_size_and_mtime() {
        let f = Fixture::new();
        let file = write(f.root(), "a", b"aaaa");
        let mtime = std::fs::metadata(&file).unwrap().modified().unwrap();
        let s = step(&["a"], "/a");
        let mut cache = f.cache();
        let first = f.build_cached(&s, &mut cache).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"bbbb").unwrap();
        File::options()
            .write(true)
            .open(&file)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let second = f.build_cached(&s, &mut cache).unwrap();
        assert_ne!(first[0].diff_id, second[0].diff_id);
    }

    #[test]
    fn corrupt_cache_file_is_an_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layers.json");
        std::fs::write(&path, b"{ not json").unwrap();
        let mut cache = LayerCache::open(&path);
        assert!(cache.get("anything", &DirSink::new()).is_none());
        cache.save().unwrap();
    }

    /// Streams a 300 MB sparse file; nothing may hold a whole file in memory
    /// (the test would still pass if something did, but slowly and visibly).
    #[test]
    fn sparse_300mb_file_streams() {
        let f = Fixture::new();
        let file = File::create(f.root().join("sparse")).unwrap();
        file.set_len(300 * 1024 * 1024).unwrap();
        let o = LayerOptions {
            compression: Compression::Zstd,
            split_threshold: u64::MAX,
            ..opts()
        };
        let layers = f.build(&step(&["sparse"], "/sparse"), &o).unwrap();
        assert!(layers[0].descriptor.size() < 1024 * 1024);
    }

    #[test]
    fn shrinking_file_is_reported_not_written() {
        let f = Fixture::new();
        let file = write(f.root(), "a", b"four");
        let s = step(&["a"], "/a");
        let ctx = Context::open(f.root()).unwrap();
        let inputs = context::resolve(&ctx, &s).unwrap();
        std::fs::write(&file, b"2").unwrap();
        let tree = Tree::build(&s, &inputs).unwrap();
        let plan = tree.plan(&opts()).remove(0);
        let err = write_layer(&f.sink, &s, &plan, 0, &Silent).unwrap_err();
        assert!(matches!(err, BuildError::FileChanged { .. }), "{err}");
        std::fs::remove_file(&file).unwrap();
        let err = write_layer(&f.sink, &s, &plan, 0, &Silent).unwrap_err();
        assert!(matches!(err, BuildError::Unreadable { .. }), "{err}");
        assert!(
            err.to_string().contains("Kubefile:3:1: COPY: cannot read"),
            "{err}"
        );
    }
}

#[cfg(test)]
mod bench {
    use super::tests::DirSink;
    use super::*;
    use crate::progress::Silent;

    /// `SEALRS_BENCH_CONTEXT=dir cargo test --release --lib build::layer::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn throughput() {
        let Ok(dir) = std::env::var("SEALRS_BENCH_CONTEXT") else {
            return;
        };
        let ctx = Context::open(Path::new(&dir)).unwrap();
        let sink = DirSink::new();
        let cache_dir = tempfile::tempdir().unwrap();
        for compression in [Compression::Zstd, Compression::Gzip] {
            let mut cache = LayerCache::open(&cache_dir.path().join(compression.as_str()));
            let step = super::tests::step(&["."], "/");
            let opts = LayerOptions {
                compression,
                ..LayerOptions::default()
            };
            let start = std::time::Instant::now();
            let layers = copy_layers(&sink, &ctx, &step, &opts, &mut cache, &Silent).unwrap();
            let secs = start.elapsed().as_secs_f64();
            let input: u64 = walkdir::WalkDir::new(&dir)
                .into_iter()
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum();
            println!(
                "{compression}: {:.0} MB in {secs:.2}s = {:.0} MB/s",
                input as f64 / 1e6,
                input as f64 / 1e6 / secs
            );
            for l in &layers {
                println!(
                    "  {} {} bytes",
                    l.descriptor.media_type(),
                    l.descriptor.size()
                );
            }
        }
    }
}
