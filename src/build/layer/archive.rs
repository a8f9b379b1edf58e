//! ADD archives: a tar, tar.gz or tar.zst source is unpacked into the COPY
//! tree, its members read in place (positioned reads), never extracted to disk.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::tree::{Data, LinkKey, Node, NodeKind, Tree};
use super::{open_content, BUF};
use crate::build::error::{BuildError, Instruction};
use crate::compression::{self, Compression};
use crate::kubefile::CopyStep;

impl Tree<'_> {
    /// Unpacks the members of a tar archive at `dest` (ADD).
    pub(super) fn extract(
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
pub(super) fn open_archive(step: &CopyStep, path: &Path) -> Result<Option<File>, BuildError> {
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

/// Positioned reads of an archive member, so members can be read out of order.
pub(super) struct MemberReader {
    pub(super) archive: Arc<File>,
    pub(super) offset: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.archive.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}
