//! `sealrs save` / `sealrs load`: image archives.
//!
//! `save` writes an **oci-archive**: a tar of an OCI image layout whose
//! `index.json` names each image with `org.opencontainers.image.ref.name`
//! (skopeo reads it as `oci-archive:FILE:NAME`).
//!
//! `load` reads oci-archives and **docker-archives** (`docker save`,
//! `skopeo copy … docker-archive:`), plain or gzip/zstd-compressed, in one
//! streaming pass over the tar: every regular file goes straight into a
//! [`BlobWriter`](super::BlobWriter), and files named `blobs/sha256/<hex>`
//! are verified against that name as they stream. Only when the whole archive
//! is in, and every blob each image needs has been found in it, are the
//! names tagged — all in one rewrite of `index.json`. On any error nothing
//! is tagged (the blobs written so far are unreachable and go at the next
//! `prune`).
//!
//! Names. Archives carry names in several shapes: full references from
//! sealrs and skopeo (`docker.io/library/app:1.0`), short ones from docker
//! (`app:1.0` in `RepoTags`), a bare tag in newer docker's `index.json`
//! (where the full name is in `io.containerd.image.name`). `load` therefore
//! takes a `normalize` function (the crate's `reference` module) and passes
//! every name through it; the store itself never guesses registries.
//! An image without any name is an error, not an untagged load: an image
//! nobody can refer to would only be deleted by the next prune.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

use oci_spec::image::{
    Descriptor, Digest, ImageConfiguration, ImageIndex, ImageIndexBuilder, ImageManifestBuilder,
    MediaType,
};

use super::blob::BUF_SIZE;
use super::error::StoreError;
use super::index::{self, canonical_json, MAX_JSON, REF_NAME};
use super::Store;
use crate::atomic_file;
use crate::compression::{decoder, decompressed, sniff, Compression};
use crate::digest::hash_reader;

/// How `load` turns a name found in an archive into the name it tags.
/// `Err` carries the reason shown to the user.
pub type Normalize<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// docker and containerd put the full image name here (newer `docker save`).
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Writes the images `names` (as tagged in `store`) to `out` as an
/// oci-archive. The archive is written to a temp file next to `out` and
/// renamed, so `out` is either the old file or the complete new one. Every
/// blob is re-hashed while it streams: a corrupt store never yields an
/// archive that looks fine.
pub fn save(store: &Store, names: &[String], out: &Path) -> Result<(), StoreError> {
    let _session = store.write_session()?;
    if names.is_empty() {
        return Err(StoreError::InvalidArchive {
            path: out.to_path_buf(),
            reason: "no images given to save".to_string(),
        });
    }
    let mut roots: Vec<Descriptor> = Vec::new();
    let mut seen_names = HashSet::new();
    for name in names {
        if !seen_names.insert(name.as_str()) {
            continue;
        }
        let desc = store
            .lookup(name)?
            .ok_or_else(|| StoreError::ImageNotFound { name: name.clone() })?;
        roots.push(index::with_ref_name(&desc, name));
    }

    // Every blob once, parents before children.
    let mut blobs: Vec<Descriptor> = Vec::new();
    let mut seen = HashSet::new();
    for root in &roots {
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            if !seen.insert(desc.digest().clone()) {
                continue;
            }
            let mut children = store.children(&desc)?;
            children.reverse();
            stack.extend(children);
            blobs.push(desc);
        }
    }

    let archive_index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(roots)
        .build()
        .expect("index with descriptors is valid");
    let index_bytes = canonical_json(&archive_index)
        .map_err(io::Error::other)
        .map_err(StoreError::io("serialize index for", out))?;

    write_oci_tar(store, &index_bytes, &blobs, out, None)?;
    Ok(())
}

/// Writes an OCI archive of `blobs` (from `store`) with `index` as its
/// `index.json` to `out`, replacing it whole; `mode` for the file, else
/// 0600. Every blob is re-hashed while it streams: a corrupt store never
/// yields an archive that looks fine. The same index and blobs give the same
/// bytes. Returns the archive's size.
pub(crate) fn write_oci_tar(
    store: &Store,
    index: &[u8],
    blobs: &[Descriptor],
    out: &Path,
    mode: Option<u32>,
) -> Result<u64, StoreError> {
    let tmp =
        atomic_file::temp_beside(out).map_err(StoreError::io("create temp file beside", out))?;
    let tmp_path = tmp.path().to_path_buf();
    let wio = |e| StoreError::io("write archive", tmp_path.clone())(e);
    let mut tar = tar::Builder::new(BufWriter::with_capacity(BUF_SIZE, tmp));
    for d in ["blobs/", "blobs/sha256/"] {
        let mut h = header(tar::EntryType::Directory, 0, 0o755);
        tar.append_data(&mut h, d, io::empty()).map_err(wio)?;
    }
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
    let mut h = header(tar::EntryType::Regular, layout.len() as u64, 0o644);
    tar.append_data(&mut h, "oci-layout", &layout[..])
        .map_err(wio)?;
    let mut h = header(tar::EntryType::Regular, index.len() as u64, 0o644);
    tar.append_data(&mut h, "index.json", index).map_err(wio)?;
    for desc in blobs {
        let digest = desc.digest();
        let mut reader = store.open_verified(desc)?;
        let mut h = header(tar::EntryType::Regular, desc.size(), 0o644);
        let name = format!("blobs/{}/{}", digest.algorithm(), digest.digest());
        tar.append_data(&mut h, &name, &mut reader).map_err(wio)?;
        reader.check()?;
    }
    let buf = tar.into_inner().map_err(wio)?;
    let tmp = buf.into_inner().map_err(|e| wio(e.into_error()))?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(wio)?;
    }
    let size = tmp.as_file().metadata().map_err(wio)?.len();
    atomic_file::persist(tmp, out).map_err(StoreError::io("move archive into place at", out))?;
    Ok(size)
}

/// A header with fixed owner and time, so equal images give equal archives.
fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// What one regular file of the archive became in the store.
#[derive(Debug, Clone)]
struct Stored {
    digest: Digest,
    size: u64,
}

#[derive(Default)]
struct Pass {
    /// Archive path → blob, for every regular file streamed into the store.
    files: HashMap<String, Stored>,
    /// Symlinks and hard links: archive path → archive path they point to.
    links: HashMap<String, String>,
    /// Digests whose content came from this archive, with sizes.
    content: HashMap<Digest, u64>,
    oci_layout: Option<Vec<u8>>,
    index_json: Option<Vec<u8>>,
    manifest_json: Option<Vec<u8>>,
    entries: usize,
}

/// Loads an oci-archive or docker-archive into `store` and returns the names
/// it tagged (each passed through `normalize`). See the module docs for the
/// rules; on any error nothing is tagged.
pub fn load(
    store: &Store,
    input: &Path,
    normalize: Normalize<'_>,
) -> Result<Vec<String>, StoreError> {
    let _session = store.write_session()?;
    let bad = |reason: String| StoreError::InvalidArchive {
        path: input.to_path_buf(),
        reason,
    };
    let file = File::open(input).map_err(StoreError::io("open archive", input))?;
    let reader = decompressed(file).map_err(StoreError::io("read archive", input))?;

    let mut pass = read_entries(store, input, reader)?;
    if pass.entries == 0 {
        return Err(bad("empty archive, or not a tar archive".to_string()));
    }

    let roots: Vec<(Vec<String>, Descriptor)> = if let Some(bytes) = &pass.index_json {
        if let Some(layout) = &pass.oci_layout {
            super::check_layout_bytes(&input.join("oci-layout"), layout)?;
        }
        oci_roots(input, bytes, normalize)?
    } else if let Some(bytes) = pass.manifest_json.take() {
        docker_roots(store, input, &mut pass, &bytes, normalize)?
    } else {
        return Err(bad(
            "neither index.json (oci-archive) nor manifest.json (docker-archive) found".to_string(),
        ));
    };

    // Every blob each image needs must have come from this archive, with the
    // size its descriptor promises: a broken archive is an error even if the
    // store happens to hold the blob already.
    for (names, root) in &roots {
        let mut seen = HashSet::new();
        let mut stack = vec![root.clone()];
        while let Some(desc) = stack.pop() {
            if !seen.insert(desc.digest().clone()) {
                continue;
            }
            match pass.content.get(desc.digest()) {
                None => {
                    return Err(bad(format!(
                        "blob {} needed by {} is missing from the archive",
                        desc.digest(),
                        names.join(", ")
                    )))
                }
                Some(&size) => super::check_size(&desc, size)?,
            }
            stack.extend(store.children(&desc)?);
        }
    }

    let mut changes = Vec::new();
    let mut tagged = Vec::new();
    for (names, desc) in roots {
        for name in names {
            if !tagged.contains(&name) {
                tagged.push(name.clone());
            }
            changes.push((name, Some(desc.clone())));
        }
    }
    store.set_tags(&changes)?;
    Ok(tagged)
}

/// The single pass over the tar.
fn read_entries(store: &Store, input: &Path, reader: impl Read) -> Result<Pass, StoreError> {
    let bad = |reason: String| StoreError::InvalidArchive {
        path: input.to_path_buf(),
        reason,
    };
    let mut pass = Pass::default();
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    let mut buf = vec![0u8; BUF_SIZE];
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if pass.entries == 0 {
                bad(
                    "not a tar archive (expected an oci-archive or docker-archive, \
                     optionally gzip- or zstd-compressed)"
                        .to_string(),
                )
            } else {
                bad(format!("corrupt tar after {} entries: {e}", pass.entries))
            }
        })?;
        pass.entries += 1;
        let raw_path = entry
            .path()
            .map_err(|e| bad(format!("entry with unreadable path: {e}")))?
            .into_owned();
        let path = clean(&raw_path);
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                if let Ok(Some(target)) = entry.link_name() {
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let parent = raw_path.parent().unwrap_or(Path::new(""));
                        clean(&parent.join(target))
                    } else {
                        clean(&target)
                    };
                    pass.links.insert(path, target);
                }
                continue;
            }
            _ => continue,
        }
        let small = |entry: &mut tar::Entry<_>| -> Result<Vec<u8>, StoreError> {
            let mut bytes = Vec::new();
            entry
                .take(MAX_JSON + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| bad(format!("cannot read {path}: {e}")))?;
            if bytes.len() as u64 > MAX_JSON {
                return Err(bad(format!("{path} is larger than {MAX_JSON} bytes")));
            }
            Ok(bytes)
        };
        match path.as_str() {
            "oci-layout" => {
                pass.oci_layout = Some(small(&mut entry)?);
                continue;
            }
            "index.json" => {
                pass.index_json = Some(small(&mut entry)?);
                continue;
            }
            "manifest.json" => {
                pass.manifest_json = Some(small(&mut entry)?);
                continue;
            }
            "repositories" => continue,
            _ => {}
        }
        let expected = blob_digest_from_path(&path)
            .map_err(|reason| bad(format!("entry {path}: {reason}")))?;
        let mut writer = store.blob_writer()?;
        loop {
            let n = entry
                .read(&mut buf)
                .map_err(|e| bad(format!("truncated or corrupt while reading {path}: {e}")))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(StoreError::io("write temp blob in", store.tmp_dir()))?;
        }
        let declared = entry.size();
        if writer.size() != declared {
            return Err(bad(format!(
                "truncated: entry {path} has {} of its {declared} bytes",
                writer.size()
            )));
        }
        let (digest, size) = match expected {
            Some(expected) => {
                let size = writer.finish_expecting(&expected).map_err(|e| match e {
                    StoreError::DigestMismatch {
                        expected, found, ..
                    } => StoreError::DigestMismatch {
                        expected,
                        found,
                        location: format!("entry {path} of archive {}", input.display()),
                    },
                    other => other,
                })?;
                (expected, size)
            }
            None => writer.finish()?,
        };
        pass.content.insert(digest.clone(), size);
        pass.files.insert(path, Stored { digest, size });
    }
    Ok(pass)
}

/// `blobs/<alg>/<encoded>` → the digest the content must have; other paths → None.
fn blob_digest_from_path(path: &str) -> Result<Option<Digest>, String> {
    let mut parts = path.split('/');
    let (Some("blobs"), Some(alg), Some(enc), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let digest: Digest = format!("{alg}:{enc}")
        .parse()
        .map_err(|e| format!("not a valid digest: {e}"))?;
    if digest.algorithm().as_ref() != "sha256" {
        return Err(format!(
            "digest algorithm {alg} is not supported (only sha256)"
        ));
    }
    Ok(Some(digest))
}

/// A tar path as a plain relative string: no `./`, no leading `/`.
fn clean(path: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

impl Pass {
    /// The blob stored for archive path `path`, following links.
    fn file(&self, path: &str) -> Option<&Stored> {
        let mut p = clean(Path::new(path));
        for _ in 0..32 {
            if let Some(s) = self.files.get(&p) {
                return Some(s);
            }
            p = self.links.get(&p)?.clone();
        }
        None
    }
}

fn normalized(input: &Path, normalize: Normalize<'_>, name: &str) -> Result<String, StoreError> {
    let full = normalize(name).map_err(|reason| StoreError::InvalidArchive {
        path: input.to_path_buf(),
        reason: format!("image name {name:?} is invalid: {reason}"),
    })?;
    index::validate_ref_name(&full)?;
    Ok(full)
}

/// Images of an oci-archive (or of a docker-archive that carries an OCI
/// layout): their manifests are kept byte for byte.
fn oci_roots(
    input: &Path,
    bytes: &[u8],
    normalize: Normalize<'_>,
) -> Result<Vec<(Vec<String>, Descriptor)>, StoreError> {
    let idx: ImageIndex =
        index::parse_index(&input.join("index.json"), bytes).map_err(|e| match e {
            StoreError::CorruptIndex { reason, .. } => StoreError::InvalidArchive {
                path: input.to_path_buf(),
                reason: format!("index.json: {reason}"),
            },
            other => other,
        })?;
    let mut roots = Vec::new();
    for desc in idx.manifests() {
        let annotations = desc.annotations().clone().unwrap_or_default();
        // Newer docker writes ref.name = "1.0" and the full name under the
        // containerd key; prefer the full one.
        let name = annotations
            .get(CONTAINERD_NAME)
            .or_else(|| annotations.get(REF_NAME))
            .ok_or_else(|| StoreError::InvalidArchive {
                path: input.to_path_buf(),
                reason: format!(
                    "image {} has no name ({REF_NAME} annotation); save it again with a name",
                    desc.digest()
                ),
            })?;
        let name = normalized(input, normalize, name)?;
        // The tag's own descriptor keeps only the name; other annotations of
        // the archive's index entry (docker's, containerd's) are dropped.
        let mut clean = desc.clone();
        clean.set_annotations(None);
        roots.push((vec![name], clean));
    }
    if roots.is_empty() {
        return Err(StoreError::InvalidArchive {
            path: input.to_path_buf(),
            reason: "index.json lists no images".to_string(),
        });
    }
    Ok(roots)
}

#[derive(serde::Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

/// Images of a docker-archive, converted to OCI manifests. The config blob
/// is kept byte for byte (its digest stays docker's image ID); layers keep
/// their bytes and get the OCI media type of their compression.
fn docker_roots(
    store: &Store,
    input: &Path,
    pass: &mut Pass,
    bytes: &[u8],
    normalize: Normalize<'_>,
) -> Result<Vec<(Vec<String>, Descriptor)>, StoreError> {
    let bad = |reason: String| StoreError::InvalidArchive {
        path: input.to_path_buf(),
        reason,
    };
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
    if entries.is_empty() {
        return Err(bad("manifest.json lists no images".to_string()));
    }
    let mut roots = Vec::new();
    for entry in entries {
        let config = pass.file(&entry.config).ok_or_else(|| {
            bad(format!(
                "config {} is missing from the archive",
                entry.config
            ))
        })?;
        let config_bytes = store.read_verified(&config.digest)?;
        let image_config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("config {}: {e}", entry.config)))?;
        let diff_ids = image_config.rootfs().diff_ids();
        if diff_ids.len() != entry.layers.len() {
            return Err(bad(format!(
                "config {} lists {} layers but manifest.json lists {}",
                entry.config,
                diff_ids.len(),
                entry.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let layer = pass
                .file(path)
                .ok_or_else(|| bad(format!("layer {path} is missing from the archive")))?;
            let (media_type, uncompressed) = sniff_layer(store, &layer.digest)?;
            let found = uncompressed.unwrap_or_else(|| layer.digest.clone());
            if found.as_ref() != diff_id {
                let expected: Digest = diff_id.parse().map_err(|e| {
                    bad(format!(
                        "config {}: bad diff_id {diff_id}: {e}",
                        entry.config
                    ))
                })?;
                return Err(StoreError::DigestMismatch {
                    expected,
                    found,
                    location: format!(
                        "uncompressed layer {path} of archive {} (checked against the config's rootfs.diff_ids)",
                        input.display()
                    ),
                });
            }
            layers.push(Descriptor::new(
                media_type,
                layer.size,
                layer.digest.clone(),
            ));
        }
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(Descriptor::new(
                MediaType::ImageConfig,
                config.size,
                config.digest.clone(),
            ))
            .layers(layers)
            .build()
            .map_err(|e| bad(format!("cannot build a manifest: {e}")))?;
        let desc = store.put_json(MediaType::ImageManifest, &manifest)?;
        // Made here from archive content, so it counts as coming from the archive.
        pass.content.insert(desc.digest().clone(), desc.size());
        let names = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|n| normalized(input, normalize, n))
            .collect::<Result<Vec<_>, _>>()?;
        if names.is_empty() {
            return Err(bad(format!(
                "image with config {} has no RepoTags; save it again by name (docker save NAME:TAG)",
                entry.config
            )));
        }
        roots.push((names, desc));
    }
    Ok(roots)
}

/// A layer's media type by its magic bytes, and its uncompressed digest if
/// it is compressed (a second, streaming read of the stored blob).
fn sniff_layer(store: &Store, digest: &Digest) -> Result<(MediaType, Option<Digest>), StoreError> {
    let path = store.blob_path(digest);
    let (compression, file) =
        sniff(store.open_blob(digest)?).map_err(StoreError::io("read blob", &path))?;
    let layer_err = |e: io::Error| StoreError::InvalidArchive {
        path: path.clone(),
        reason: format!("layer {digest} cannot be decompressed: {e}"),
    };
    let diff_id = match compression {
        Compression::None => None,
        packed => {
            let plain = decoder(packed, file).map_err(layer_err)?;
            Some(hash_reader(plain).map_err(layer_err)?.0)
        }
    };
    Ok((compression.layer_media_type(), diff_id))
}

/// The names an image archive (oci- or docker-archive, plain or
/// gzip/zstd-compressed) gives its images, as written: every
/// `org.opencontainers.image.ref.name` and `io.containerd.image.name` of
/// `index.json`, every `RepoTags` entry of `manifest.json`. Reads only
/// until both files were seen or the tar ends; nothing is stored.
pub fn image_names(path: &Path) -> io::Result<Vec<String>> {
    let file = File::open(path)?;
    let reader = decompressed(file)?;
    let mut tar = tar::Archive::new(reader);
    let mut names = Vec::new();
    let (mut index, mut manifest) = (false, false);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let name = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if name != "index.json" && name != "manifest.json" {
            continue;
        }
        let mut bytes = Vec::new();
        entry.by_ref().take(MAX_JSON).read_to_end(&mut bytes)?;
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{name}: {e}")))?;
        if name == "index.json" {
            index = true;
            for m in json["manifests"].as_array().into_iter().flatten() {
                for key in [REF_NAME, CONTAINERD_NAME] {
                    if let Some(n) = m["annotations"][key].as_str() {
                        names.push(n.to_string());
                    }
                }
            }
        } else {
            manifest = true;
            for m in json.as_array().into_iter().flatten() {
                for t in m["RepoTags"].as_array().into_iter().flatten() {
                    if let Some(n) = t.as_str() {
                        names.push(n.to_string());
                    }
                }
            }
        }
        if index && manifest {
            break;
        }
    }
    Ok(names)
}
