//! Walks an image's layer blobs, as streams, into a [`Rootfs`]: tar headers
//! give paths, types and modes; the first bytes of every file give its magic;
//! files that some layout wants checked get their content probed on the way
//! (image archives streamed, text parsed under [`TEXT_CAP`]). Nothing is
//! unpacked to disk and memory stays flat, whatever the size of a layer.
//!
//! The caller opens the blobs (`open`), so this module touches no file itself.

use std::io::{self, Read};

use oci_spec::image::Descriptor;

use super::check::{normalize, Entry, EntryType, Facts, Rootfs};
use super::error::ScanError;
use super::probe::{self, Magic, HEAD};
use super::spec::{Kind, Layouts};
use crate::compression::decompressed;

/// Text files (YAML, TOML, image lists) bigger than this are not parsed.
pub const TEXT_CAP: u64 = 32 << 20;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Reads the layers in order, applying whiteouts, into the final rootfs.
pub fn scan_layers<'a, F>(
    layers: &[Descriptor],
    mut open: F,
    layouts: &Layouts,
) -> Result<Rootfs, ScanError>
where
    F: FnMut(&Descriptor) -> io::Result<Box<dyn Read + 'a>>,
{
    let mut rootfs = Rootfs::default();
    for (index, layer) in layers.iter().enumerate() {
        let fail = |source: io::Error| ScanError {
            layer: layer.digest().to_string(),
            source,
        };
        let blob = open(layer).map_err(fail)?;
        scan_layer(blob, index, layouts, &mut rootfs).map_err(fail)?;
    }
    Ok(rootfs)
}

fn scan_layer(
    blob: Box<dyn Read + '_>,
    index: usize,
    layouts: &Layouts,
    rootfs: &mut Rootfs,
) -> io::Result<()> {
    // By its first bytes: the media type is not trusted.
    let mut archive = tar::Archive::new(decompressed(blob)?);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let Some(path) = normalize(&raw_path) else {
            continue;
        };
        let (dir, name) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path.as_str()),
        };
        if name == OPAQUE {
            let prefix = format!("{dir}/");
            rootfs
                .entries
                .retain(|p, e| !(p.starts_with(&prefix) && e.layer < index));
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            let gone = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            let below = format!("{gone}/");
            rootfs
                .entries
                .retain(|p, _| p != &gone && !p.starts_with(&below));
            continue;
        }
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let link = || {
            entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default()
        };
        let entry_type = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => EntryType::File,
            tar::EntryType::Directory => EntryType::Dir,
            tar::EntryType::Symlink => EntryType::Symlink(link()),
            tar::EntryType::Link => EntryType::Hardlink(link()),
            tar::EntryType::Char => EntryType::Other("character device".into()),
            tar::EntryType::Block => EntryType::Other("block device".into()),
            tar::EntryType::Fifo => EntryType::Other("fifo".into()),
            other => EntryType::Other(format!("tar entry of type {:?}", other.as_byte() as char)),
        };
        let size = entry.size();
        let (magic, facts) = if entry_type == EntryType::File {
            probe_file(&mut entry, &path, size, layouts)?
        } else {
            (Magic::Empty, Facts::default())
        };
        // A directory entry over an existing one only changes its mode.
        rootfs.entries.insert(
            path.clone(),
            Entry {
                path,
                entry_type,
                mode,
                size,
                magic,
                facts,
                layer: index,
            },
        );
    }
    Ok(())
}

/// Reads a file's head and, when a layout wants it, checks its content.
fn probe_file(
    entry: &mut impl Read,
    path: &str,
    size: u64,
    layouts: &Layouts,
) -> io::Result<(Magic, Facts)> {
    let mut head = Vec::with_capacity(HEAD);
    entry.take(HEAD as u64).read_to_end(&mut head)?;
    let magic = Magic::of(&head);
    let kinds = layouts.kinds_for(path);
    let mut facts = Facts::default();
    let wants = |k: Kind| kinds.contains(&k);
    if wants(Kind::ImageArchive) {
        // Read errors of the layer itself must not pass for a bad archive:
        // the probe sees its own reader, and a failing layer shows up in the
        // next tar header read.
        let content = io::Cursor::new(&head[..]).chain(&mut *entry);
        facts.archive = Some(probe::probe_archive(content));
    } else if wants(Kind::Yaml) || wants(Kind::Toml) || wants(Kind::ImageList) {
        if size > TEXT_CAP {
            facts.unchecked = Some(format!(
                "bigger than {}, its content was not checked",
                crate::progress::text::size(TEXT_CAP)
            ));
        } else {
            let mut content = head.clone();
            entry.read_to_end(&mut content)?;
            if wants(Kind::Yaml) {
                facts.yaml = Some(probe::check_yaml(&content));
                if matches!(facts.yaml, Some(Ok(_))) {
                    facts.yaml_docs = Some(probe::yaml_docs(&content));
                }
            }
            if wants(Kind::Toml) {
                facts.toml = Some(probe::check_toml(&content));
            }
            if wants(Kind::ImageList) {
                facts.list = Some(probe::check_image_list(&content));
            }
        }
    }
    Ok((magic, facts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, MediaType};

    fn layer(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, mode, content) in files {
            let mut header = tar::Header::new_ustar();
            header.set_size(content.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            builder.append_data(&mut header, path, *content).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn scan(layers: Vec<Vec<u8>>) -> Rootfs {
        let descriptors: Vec<Descriptor> = (0..layers.len())
            .map(|i| {
                DescriptorBuilder::default()
                    .media_type(MediaType::ImageLayer)
                    .digest(
                        format!("sha256:{:064x}", i)
                            .parse::<oci_spec::image::Digest>()
                            .unwrap(),
                    )
                    .size(0u64)
                    .build()
                    .unwrap()
            })
            .collect();
        let mut blobs = layers.into_iter();
        scan_layers(
            &descriptors,
            |_| Ok(Box::new(io::Cursor::new(blobs.next().unwrap())) as Box<dyn Read>),
            Layouts::embedded(),
        )
        .unwrap()
    }

    #[test]
    fn modes_magic_and_yaml_facts_come_from_the_stream() {
        let plain = layer(&[
            ("bin/k3s", 0o755, b"#!/bin/sh\necho k3s\n"),
            ("manifests/bad.yaml", 0o644, b"a: [1\n"),
            ("manifests/good.yaml", 0o644, b"a: 1\n"),
            ("images/shim/list", 0o644, b"nginx:1\n"),
        ]);
        let compressed = zstd::encode_all(&plain[..], 3).unwrap();
        let rootfs = scan(vec![compressed]);
        let k3s = &rootfs.entries["bin/k3s"];
        assert_eq!((k3s.mode, k3s.magic), (0o755, Magic::Shebang));
        assert!(matches!(
            rootfs.entries["manifests/bad.yaml"].facts.yaml,
            Some(Err(_))
        ));
        assert_eq!(
            rootfs.entries["manifests/good.yaml"].facts.yaml,
            Some(Ok(1))
        );
        assert_eq!(rootfs.entries["images/shim/list"].facts.list, Some(Ok(1)));
    }

    #[test]
    fn later_layers_override_and_whiteouts_delete() {
        let first = layer(&[
            ("bin/k3s", 0o644, b"old"),
            ("etc/a/x.conf", 0o644, b"x"),
            ("etc/b/y.conf", 0o644, b"y"),
        ]);
        let second = layer(&[
            ("bin/k3s", 0o755, b"#!/bin/sh\n"),
            ("etc/.wh.a", 0o644, b""),
            ("etc/b/.wh..wh..opq", 0o644, b""),
            ("etc/b/z.conf", 0o644, b"z"),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &second).unwrap();
        let rootfs = scan(vec![first, gz.finish().unwrap()]);
        let paths: Vec<&str> = rootfs.entries.keys().map(String::as_str).collect();
        assert_eq!(paths, vec!["bin/k3s", "etc/b/z.conf"]);
        assert_eq!(rootfs.entries["bin/k3s"].mode, 0o755);
    }

    #[test]
    fn a_broken_layer_is_an_error_naming_it() {
        let descriptors = vec![DescriptorBuilder::default()
            .media_type(MediaType::ImageLayerZstd)
            .digest(
                format!("sha256:{:064x}", 7)
                    .parse::<oci_spec::image::Digest>()
                    .unwrap(),
            )
            .size(0u64)
            .build()
            .unwrap()];
        let mut bad = zstd::encode_all(&layer(&[("a", 0o644, &[1u8; 4000][..])])[..], 3).unwrap();
        bad.truncate(bad.len() - 10);
        let err = scan_layers(
            &descriptors,
            |_| Ok(Box::new(io::Cursor::new(bad.clone())) as Box<dyn Read>),
            Layouts::embedded(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("0000007"), "{err}");
    }
}
