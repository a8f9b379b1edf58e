//! Writing harvested images where a runtime imports them.
//!
//! **oci-archive** (k3s, k0s, containerd's `ctr import`): one tar per image,
//! an OCI image layout whose `index.json` has a single manifest named by both
//! `org.opencontainers.image.ref.name` (skopeo, sealrs) and
//! `io.containerd.image.name` (containerd, hence k3s and k0s) with the full
//! normalized name. The tar is a function of the name and the manifest digest
//! alone: fixed entry order (layout, index, then manifest, config, layers),
//! mtime 0, uid/gid 0, no user names, fixed modes, and no platform in the
//! index (it would depend on how the image was pulled). So the same images
//! give the same archives byte for byte, and the rootfs layer that carries
//! them keeps its digest.
//!
//! **registry** (kubeadm hosts that serve images with `docker-registry`): the
//! storage tree of the distribution registry's filesystem driver,
//! `docker/registry/v2/{blobs,repositories}`, with each blob once and the
//! links a registry needs to serve `GET /v2/<repository>/manifests/<tag>` and
//! every blob. Repositories are named without their registry host (containerd
//! mirrors send `/v2/library/nginx/...` for `docker.io/library/nginx`).
//!
//! Every blob is copied in chunks from the store and re-hashed on the way: a
//! corrupt store never yields a rootfs that looks fine.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndexBuilder, MediaType};

use super::error::HarvestError;
use super::exclude::IGNORE_FILE;
use crate::reference::Reference;
use crate::store::archive::write_oci_tar;
use crate::store::{Store, REF_NAME};

/// containerd's (and so k3s's and k0s's) image name annotation.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

const BUF: usize = 256 * 1024;
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// How images are laid into the rootfs (the layout's `archive_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// One OCI archive per image (`oci-archive`).
    OciArchive,
    /// A distribution registry storage tree (`registry`).
    Registry,
}

impl std::str::FromStr for ArchiveFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "oci-archive" => Ok(ArchiveFormat::OciArchive),
            "registry" => Ok(ArchiveFormat::Registry),
            other => Err(format!(
                "unknown archive format {other:?}; use \"oci-archive\" or \"registry\""
            )),
        }
    }
}

impl std::fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArchiveFormat::OciArchive => "oci-archive",
            ArchiveFormat::Registry => "registry",
        })
    }
}

/// `docker.io/library/nginx:1.25` → `docker.io_library_nginx_1.25.tar`:
/// readable, one path component, the same on every machine.
pub fn archive_file_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.push_str(".tar");
    out
}

/// Writes `name` (tagged as `manifest` in `store`) to `out` as an OCI
/// archive, through a temp file in the same directory and a rename.
/// Returns the archive's size.
pub fn write_oci_archive(
    store: &Store,
    name: &str,
    manifest: &Descriptor,
    out: &Path,
) -> Result<u64, HarvestError> {
    let parsed = store.read_manifest(manifest)?;
    let mut blobs: Vec<Descriptor> = vec![manifest_descriptor(manifest)];
    for b in std::iter::once(parsed.config()).chain(parsed.layers()) {
        if !blobs.iter().any(|x| x.digest() == b.digest()) {
            blobs.push(b.clone());
        }
    }
    let mut entry = manifest_descriptor(manifest);
    entry.set_annotations(Some(
        [
            (CONTAINERD_NAME.to_string(), name.to_string()),
            (REF_NAME.to_string(), name.to_string()),
        ]
        .into_iter()
        .collect(),
    ));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![entry])
        .build()
        .expect("an index of one descriptor is valid");
    // Sorted keys: the same index gives the same bytes (annotations are a HashMap).
    let index_bytes =
        serde_json::to_vec(&serde_json::to_value(&index).expect("an index serializes"))
            .expect("a JSON value serializes");

    Ok(write_oci_tar(
        store,
        &index_bytes,
        &blobs,
        out,
        Some(FILE_MODE),
    )?)
}

/// The manifest's own descriptor without the store's annotations or platform.
fn manifest_descriptor(stored: &Descriptor) -> Descriptor {
    Descriptor::new(
        stored.media_type().clone(),
        stored.size(),
        stored.digest().clone(),
    )
}

/// One image for the registry tree.
pub struct TreeImage<'a> {
    pub reference: &'a Reference,
    pub manifest: &'a Descriptor,
}

/// Writes a distribution registry storage tree under `root` (which becomes
/// the registry's `rootdirectory`) holding `images`. Returns the files
/// written, relative to `root`, sorted, and warnings for people.
pub fn write_registry_tree(
    store: &Store,
    images: &[TreeImage<'_>],
    root: &Path,
) -> Result<(Vec<String>, Vec<String>), HarvestError> {
    let mut warnings = Vec::new();
    // repository → tag → (manifest digest, reference for messages)
    let mut tags: BTreeMap<(String, String), (Digest, String)> = BTreeMap::new();
    let mut links: BTreeSet<String> = BTreeSet::new();
    let mut blobs: BTreeMap<String, Descriptor> = BTreeMap::new();
    for image in images {
        let reference = image.reference;
        let repo = &reference.repository;
        let manifest = store.read_manifest(image.manifest)?;
        let mdigest = image.manifest.digest().clone();
        if let Some(tag) = &reference.tag {
            let key = (repo.clone(), tag.clone());
            if let Some((other, first)) = tags.get(&key) {
                if other != &mdigest {
                    return Err(HarvestError::NameClash {
                        first: first.clone(),
                        second: reference.to_string(),
                        target: format!("repository {repo}, tag {tag} of the registry tree"),
                        ignore_file: IGNORE_FILE,
                    });
                }
            }
            tags.insert(key, (mdigest.clone(), reference.to_string()));
        }
        if let Some(d) = &reference.digest {
            if d != mdigest.as_ref() {
                warnings.push(format!(
                    "{reference} names an image index; the registry tree holds the {} manifest {mdigest} of it, which hosts can pull by tag or by {mdigest}, not by the index digest; reference {}@{mdigest} instead",
                    platform_of(image.manifest),
                    reference.name()
                ));
            }
        }
        links.insert(format!(
            "{REPOS}/{repo}/_manifests/revisions/sha256/{}/link",
            mdigest.digest()
        ));
        blobs.insert(mdigest.to_string(), manifest_descriptor(image.manifest));
        for b in std::iter::once(manifest.config()).chain(manifest.layers()) {
            links.insert(format!(
                "{REPOS}/{repo}/_layers/sha256/{}/link",
                b.digest().digest()
            ));
            blobs.insert(b.digest().to_string(), b.clone());
        }
    }
    let mut files = Vec::new();
    for desc in blobs.values() {
        let hex = desc.digest().digest();
        let rel = format!("{BLOBS}/{}/{hex}/data", &hex[..2]);
        let path = make_parents(root, &rel)?;
        let mut reader = store.open_verified(desc)?;
        let mut out = BufWriter::with_capacity(
            BUF,
            File::create(&path).map_err(HarvestError::io("create", &path))?,
        );
        io::copy(&mut reader, &mut out).map_err(HarvestError::io("write", &path))?;
        reader.check()?;
        out.into_inner()
            .map_err(|e| HarvestError::io("write", &path)(e.into_error()))?
            .sync_all()
            .map_err(HarvestError::io("write", &path))?;
        set_mode(&path, FILE_MODE)?;
        files.push(rel);
    }
    let write_link = |rel: &str, digest: &str, files: &mut Vec<String>| {
        let path = make_parents(root, rel)?;
        fs::write(&path, digest).map_err(HarvestError::io("write", &path))?;
        set_mode(&path, FILE_MODE)?;
        files.push(rel.to_string());
        Ok::<(), HarvestError>(())
    };
    for rel in &links {
        // `.../sha256/<hex>/link` holds `sha256:<hex>`.
        let hex = rel
            .rsplit('/')
            .nth(1)
            .expect("link paths end in <hex>/link");
        write_link(rel, &format!("sha256:{hex}"), &mut files)?;
    }
    for ((repo, tag), (digest, _)) in &tags {
        let base = format!("{REPOS}/{repo}/_manifests/tags/{tag}");
        write_link(&format!("{base}/current/link"), digest.as_ref(), &mut files)?;
        write_link(
            &format!("{base}/index/sha256/{}/link", digest.digest()),
            digest.as_ref(),
            &mut files,
        )?;
    }
    files.sort();
    Ok((files, warnings))
}

const BLOBS: &str = "docker/registry/v2/blobs/sha256";
const REPOS: &str = "docker/registry/v2/repositories";

fn platform_of(desc: &Descriptor) -> String {
    desc.platform()
        .as_ref()
        .map(|p| format!("{}/{}", p.os(), p.architecture()))
        .unwrap_or_else(|| "single-platform".to_string())
}

/// Creates the parents of `root/rel` with mode 0755 (whatever the umask) and
/// returns the full path.
pub(crate) fn make_parents(root: &Path, rel: &str) -> Result<PathBuf, HarvestError> {
    let path = root.join(rel);
    let mut dir = root.to_path_buf();
    if let Some(parent) = Path::new(rel).parent() {
        for c in parent.components() {
            dir.push(c);
            match fs::create_dir(&dir) {
                Ok(()) => set_mode(&dir, DIR_MODE)?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(HarvestError::io("create directory", &dir)(e)),
            }
        }
    }
    Ok(path)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), HarvestError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(HarvestError::io("set the mode of", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_one_safe_component() {
        assert_eq!(
            archive_file_name("docker.io/library/nginx:1.25"),
            "docker.io_library_nginx_1.25.tar"
        );
        assert_eq!(
            archive_file_name("127.0.0.1:5000/a/b@sha256:ab"),
            "127.0.0.1_5000_a_b_sha256_ab.tar"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!("oci-archive".parse(), Ok(ArchiveFormat::OciArchive));
        assert_eq!("registry".parse(), Ok(ArchiveFormat::Registry));
        assert!("docker-archive".parse::<ArchiveFormat>().is_err());
    }
}
