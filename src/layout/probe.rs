//! Facts about one file's bytes: what its first bytes say it is, whether it
//! parses as YAML or TOML, whether it is an image archive, whether an image
//! list holds image references. Pure functions over bytes and readers.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::arch;
use crate::compression::{self, Compression};

/// Bytes of a file's beginning that the scan keeps: enough for a tar header.
pub const HEAD: usize = 512;

/// What a file's first bytes say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum Magic {
    Empty,
    /// An ELF object for this `e_machine` (see [`crate::arch::of_elf`]).
    Elf {
        machine: u16,
        /// `EI_DATA` says big-endian: ppc64, not ppc64le. Left out when
        /// false, so rootfs stamps written before read the same.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        big_endian: bool,
    },
    /// Starts with `#!`.
    Shebang,
    Gzip,
    Zstd,
    /// A POSIX or GNU tar header.
    Tar,
    Other,
}

impl Magic {
    pub fn of(head: &[u8]) -> Magic {
        if head.is_empty() {
            Magic::Empty
        } else if head.starts_with(b"\x7fELF") && head.len() >= 20 {
            let big_endian = head[5] == 2;
            let machine = if big_endian {
                u16::from_be_bytes([head[18], head[19]])
            } else {
                u16::from_le_bytes([head[18], head[19]])
            };
            Magic::Elf {
                machine,
                big_endian,
            }
        } else if head.starts_with(b"#!") {
            Magic::Shebang
        } else {
            match Compression::of(head) {
                Compression::Gzip => Magic::Gzip,
                Compression::Zstd => Magic::Zstd,
                Compression::None if head.len() >= 262 && &head[257..262] == b"ustar" => Magic::Tar,
                Compression::None => Magic::Other,
            }
        }
    }

    /// What the file at `path` is, from its first [`HEAD`] bytes.
    pub fn of_file(path: &std::path::Path) -> io::Result<Magic> {
        let mut head = Vec::with_capacity(HEAD);
        std::fs::File::open(path)?
            .take(HEAD as u64)
            .read_to_end(&mut head)?;
        Ok(Magic::of(&head))
    }

    /// For messages: "an ELF binary for arm64", "gzip data", ...
    pub fn describe(self) -> String {
        match self {
            Magic::Empty => "an empty file".into(),
            Magic::Elf {
                machine,
                big_endian,
            } => format!("an ELF binary for {}", arch::elf_name(machine, big_endian)),
            Magic::Shebang => "a script".into(),
            Magic::Gzip => "gzip data".into(),
            Magic::Zstd => "zstd data".into(),
            Magic::Tar => "a tar archive".into(),
            Magic::Other => "data of another kind".into(),
        }
    }
}

/// A YAML syntax error: line and column are 1-based (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses every document of a YAML stream; returns how many there are.
pub fn check_yaml(bytes: &[u8]) -> Result<usize, YamlError> {
    let text = std::str::from_utf8(bytes).map_err(|e| YamlError {
        line: 0,
        column: 0,
        message: format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.valid_up_to()
        ),
    })?;
    match yaml_rust2::YamlLoader::load_from_str(text) {
        Ok(docs) => Ok(docs.len()),
        Err(e) => Err(YamlError {
            line: e.marker().line(),
            column: e.marker().col() + 1,
            message: e.info().to_string(),
        }),
    }
}

/// One document of a YAML stream: where it starts (1-based line) and the
/// `apiVersion` and `kind` it declares, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct YamlDoc {
    pub line: usize,
    pub api_version: Option<String>,
    pub kind: Option<String>,
}

/// The non-empty documents of a YAML stream that [`check_yaml`] accepted,
/// with the line each starts on (after its `---`).
pub fn yaml_docs(bytes: &[u8]) -> Vec<YamlDoc> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Vec::new();
    };
    let Ok(docs) = yaml_rust2::YamlLoader::load_from_str(text) else {
        return Vec::new();
    };
    let mut starts = vec![1];
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            starts.push(i + 2);
        }
    }
    // A stream that opens with `---` has no document before it.
    if text
        .lines()
        .find(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .is_some_and(|l| l.trim_end() == "---" || l.starts_with("--- "))
    {
        starts.remove(0);
    }
    let field = |doc: &yaml_rust2::Yaml, key: &str| doc[key].as_str().map(str::to_string);
    docs.iter()
        .enumerate()
        .filter(|(_, d)| !d.is_null())
        .map(|(i, d)| YamlDoc {
            line: starts.get(i).copied().unwrap_or(0),
            api_version: field(d, "apiVersion"),
            kind: field(d, "kind"),
        })
        .collect()
}

/// Parses a TOML document.
pub fn check_toml(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    text.parse::<toml::Table>()
        .map(|_| ())
        .map_err(|e| e.to_string().trim_end().replace('\n', " "))
}

/// A line of an image list that is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListError {
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// Checks an image list: one reference a line; blank lines and `#` comments
/// are skipped. Returns the number of references, or every bad line.
pub fn check_image_list(bytes: &[u8]) -> Result<usize, Vec<ListError>> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(vec![ListError {
            line: 1,
            text: String::new(),
            reason: "the file is not UTF-8 text".into(),
        }]);
    };
    let mut count = 0;
    let mut errors = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match crate::reference::Reference::parse(line) {
            Ok(_) => count += 1,
            Err(e) => errors.push(ListError {
                line: i + 1,
                text: line.to_string(),
                reason: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(count)
    } else {
        Err(errors)
    }
}

/// What kind of image archive a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveFormat {
    /// A tar of an OCI image layout (`index.json`).
    OciArchive,
    /// A `docker save` tar (`manifest.json`).
    DockerArchive,
}

/// What [`probe_archive`] found: the format and the outer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ArchiveFacts {
    pub format: ArchiveFormat,
    pub compression: &'static str,
}

impl std::fmt::Display for ArchiveFacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let format = match self.format {
            ArchiveFormat::OciArchive => "oci-archive",
            ArchiveFormat::DockerArchive => "docker-archive",
        };
        if self.compression == "none" {
            f.write_str(format)
        } else {
            write!(f, "{format}, {}", self.compression)
        }
    }
}

/// Reads an archive's content (from its first byte) far enough to tell whether
/// it is an OCI or docker image archive: it stops at the first `index.json` or
/// `manifest.json`, so memory stays flat. The error says what it is instead.
pub fn probe_archive(reader: impl Read) -> Result<ArchiveFacts, String> {
    let mut reader = io::BufReader::new(reader);
    let mut first = Vec::with_capacity(HEAD);
    (&mut reader)
        .take(HEAD as u64)
        .read_to_end(&mut first)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let outer = Magic::of(&first);
    if !matches!(outer, Magic::Gzip | Magic::Zstd | Magic::Tar) {
        return Err(format!(
            "it is {}, not a tar, tar.gz or tar.zst",
            outer.describe()
        ));
    }
    let packed = Compression::of(&first);
    let whole = io::BufReader::new(io::Cursor::new(first).chain(reader));
    let inner = compression::decoder(packed, whole).map_err(|e| e.to_string())?;
    let compression = packed.as_str();
    let mut inner = io::BufReader::new(inner);
    let mut head = Vec::with_capacity(HEAD);
    (&mut inner)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("the {compression} stream is broken: {e}"))?;
    if compression != "none" && Magic::of(&head) != Magic::Tar {
        return Err(format!(
            "the {compression} stream holds {}, not a tar archive",
            Magic::of(&head).describe()
        ));
    }
    let mut archive = tar::Archive::new(io::Cursor::new(head).chain(inner));
    let entries = archive
        .entries()
        .map_err(|e| format!("broken tar archive: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("broken tar archive: {e}"))?;
        let path = entry.path_bytes();
        let name = path.strip_prefix(b"./").unwrap_or(&path);
        let format = match name {
            b"index.json" => ArchiveFormat::OciArchive,
            b"manifest.json" => ArchiveFormat::DockerArchive,
            _ => continue,
        };
        return Ok(ArchiveFacts {
            format,
            compression,
        });
    }
    Err("a tar archive without index.json or manifest.json: neither an OCI nor a docker image archive".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(names: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for name in names {
            let mut header = tar::Header::new_ustar();
            header.set_size(2);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, name, &b"{}"[..]).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn magic_tells_elf_machines_scripts_and_archives() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(20, 0);
        elf[18] = 62;
        assert_eq!(
            Magic::of(&elf),
            Magic::Elf {
                machine: 62,
                big_endian: false
            }
        );
        elf[18] = 183;
        assert_eq!(Magic::of(&elf).describe(), "an ELF binary for arm64");
        assert_eq!(Magic::of(b"#!/bin/sh\n"), Magic::Shebang);
        assert_eq!(Magic::of(b""), Magic::Empty);
        assert_eq!(Magic::of(&tar_with(&["a"])), Magic::Tar);
        assert_eq!(Magic::of(&[0x1f, 0x8b, 8]), Magic::Gzip);
        assert_eq!(Magic::of(b"hello"), Magic::Other);
        elf[5] = 2;
        elf[18..20].copy_from_slice(&21u16.to_be_bytes());
        assert_eq!(Magic::of(&elf).describe(), "an ELF binary for ppc64");
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        assert_eq!(check_yaml(b"a: 1\n---\nb: 2\n"), Ok(2));
        assert_eq!(check_yaml(b""), Ok(0));
        let err = check_yaml(b"kind: Pod\nmetadata:\n  name: [x\n").unwrap_err();
        assert!(err.line >= 3, "{err:?}");
        let err = check_yaml(b"a: 1\nb: c: d\n").unwrap_err();
        assert_eq!((err.line, err.column), (2, 5), "{err:?}");
        let err = check_yaml(b"a: \xff\n").unwrap_err();
        assert!(err.message.contains("UTF-8"), "{err:?}");
    }

    #[test]
    fn toml_errors_are_one_line() {
        assert!(check_toml(b"version = 2\n[plugins]\n").is_ok());
        let err = check_toml(b"version = \n").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn image_lists_report_every_bad_line() {
        assert_eq!(check_image_list(b"# images\nnginx:1.25\n\nquay.io/a/b@sha256:0123456789012345678901234567890123456789012345678901234567890123 # pinned\n"), Ok(2));
        let errors = check_image_list(b"nginx\nNOT VALID\nfoo:bar:baz\n").unwrap_err();
        assert_eq!(
            errors.iter().map(|e| e.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn archives_are_told_by_their_index_or_manifest() {
        let oci = tar_with(&["oci-layout", "index.json", "blobs/sha256/x"]);
        assert_eq!(
            probe_archive(&oci[..]).unwrap().format,
            ArchiveFormat::OciArchive
        );
        let docker = tar_with(&["abc/layer.tar", "manifest.json", "repositories"]);
        assert_eq!(
            probe_archive(&docker[..]).unwrap().format,
            ArchiveFormat::DockerArchive
        );
        let zst = zstd::encode_all(&docker[..], 3).unwrap();
        let facts = probe_archive(&zst[..]).unwrap();
        assert_eq!(facts.to_string(), "docker-archive, zstd");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &oci).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(probe_archive(&gz[..]).unwrap().compression, "gzip");
    }

    #[test]
    fn things_that_are_not_image_archives_say_what_they_are() {
        let err = probe_archive(&b"just text\n"[..]).unwrap_err();
        assert!(err.contains("not a tar"), "{err}");
        let err = probe_archive(&tar_with(&["a.txt"])[..]).unwrap_err();
        assert!(err.contains("without index.json or manifest.json"), "{err}");
        let text_zst = zstd::encode_all(&b"hello"[..], 3).unwrap();
        let err = probe_archive(&text_zst[..]).unwrap_err();
        assert!(err.contains("not a tar archive"), "{err}");
        let mut truncated =
            zstd::encode_all(&tar_with(&["a", "b", "c", "manifest.json"])[..], 3).unwrap();
        truncated.truncate(truncated.len() / 2);
        assert!(probe_archive(&truncated[..]).is_err());
    }
}
