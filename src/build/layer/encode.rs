//! Writing a planned layer in one pass: tar writer → sha256 (the diff_id) →
//! compressor → blob sink, with file content read through a fixed buffer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use oci_spec::image::Descriptor;

use super::archive::MemberReader;
use super::tree::{Data, LayerPlan, LinkKey, Node, NodeKind};
use super::{open_content, BlobSink, Layer, BUF};
use crate::build::context;
use crate::build::error::{BuildError, Instruction};
use crate::compression::Compression;
use crate::digest::Hashing;
use crate::kubefile::{CopyStep, Location};
use crate::progress::{Progress, Task};

/// True when a big file would not shrink: compressed formats by magic, else a
/// few samples that zstd cannot shrink by 5%. Compressing it again would only
/// cost time on every build and every host.
pub(super) fn looks_compressed(data: &Data, size: u64) -> bool {
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

pub(super) fn write_layer(
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
    let paths: Vec<String> = plan
        .entries
        .iter()
        .map(|(path, _)| crate::store::layer_path(path))
        .collect();
    sink.layer_written(&digest, &paths);
    task.finish(&format!(
        "{} → {} ({})",
        plan.label,
        crate::progress::text::short_digest(digest.as_ref()),
        crate::progress::text::size(size)
    ));
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
