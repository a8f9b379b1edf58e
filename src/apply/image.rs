//! The images a command applies, resolved from the store, and where their
//! parts go on a host.

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::ApplyError;
use crate::atomic_file;
use crate::cluster::InstalledImage;
use crate::host_paths::{HOST_DIR, HOST_LAYERS, INSTALLER_ANNOTATION, INSTALLER_PATH};
use crate::runtime::ImageInfo;
use crate::store::{Digest, Store};

/// A cluster image resolved from the store.
#[derive(Debug, Clone)]
pub struct AppliedImage {
    pub name: String,
    pub digest: String,
    pub layers: Vec<Descriptor>,
    pub info: ImageInfo,
    pub arch: String,
    /// The layer that carries `opt/sealrs/sealrs` (a plain tar; gzip in
    /// images built before).
    pub installer: Option<Descriptor>,
    /// By host key: the image's files as that host gets them (Configs
    /// applied, templates rendered), made by verify (`image_files`).
    pub host_files: BTreeMap<String, Vec<crate::installer::ImageFile>>,
    /// In registry mode: what makes `host_files` once a host holds the
    /// layers (distribute does, from the first host that does).
    pub(super) deferred_files: Option<super::image_files::Deferred>,
    /// The cluster's application images carry registry trees (marked by
    /// build) that the in-cluster registry serves beside this image's.
    pub app_trees: bool,
    /// The registry the layers stay in, if they do: hosts pull them (else
    /// the operator sends them), and the operator reads only those it needs.
    pub pull_from: Option<super::pull::RegistryLayers>,
}

impl AppliedImage {
    pub(super) fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// Where the installer unpacks this image's rootfs on a host.
    pub fn host_rootfs(&self) -> String {
        format!("{HOST_DIR}/rootfs/{}", self.hex())
    }

    /// The installer binary on a host, once distribute put it there.
    pub(super) fn host_installer(&self) -> Option<String> {
        self.installer
            .as_ref()
            .map(|layer| format!("{}/{INSTALLER_PATH}", host_layer(layer)))
    }

    /// [`AppliedImage::host_installer`], or why there is none to run.
    pub(super) fn installer_on_host(&self) -> Result<String, ApplyError> {
        self.host_installer()
            .ok_or_else(|| ApplyError::NoInstaller {
                image: self.name.clone(),
            })
    }
}

/// A layer's directory on a host.
pub(super) fn host_layer(layer: &Descriptor) -> String {
    format!("{HOST_LAYERS}/{}", layer.digest().digest())
}

/// Looks up the images of the cluster in the store; the first must be a
/// rootfs image whose runtime sealrs knows.
pub fn resolve_images(store: &Store, names: &[String]) -> Result<Vec<AppliedImage>, ApplyError> {
    resolve_with(store, names, None)
}

/// [`resolve_images`], an image that `remote` serves (it came from its
/// registry this command, and the store lacks it) resolved from there.
pub fn resolve_with(
    store: &Store,
    names: &[String],
    remote: Option<&super::pull::RegistryLayers>,
) -> Result<Vec<AppliedImage>, ApplyError> {
    if names.is_empty() {
        return Err(ApplyError::NoImage);
    }
    let mut images = Vec::new();
    for name in names {
        let full = crate::reference::normalize(name).map_err(|source| ApplyError::ImageName {
            name: name.clone(),
            source,
        })?;
        if let Some(served) = remote.and_then(|r| r.image(&full)) {
            images.push(served?);
            continue;
        }
        let stored = store.image(&full).map_err(|source| ApplyError::Image {
            name: full.clone(),
            source: Box::new(source),
        })?;
        images.push(applied(
            full,
            stored.descriptor.digest().to_string(),
            &stored.manifest,
            &stored.config,
        ));
    }
    Ok(images)
}

/// An image as the phases use it, from its manifest and config.
pub(super) fn applied(
    name: String,
    digest: String,
    manifest: &ImageManifest,
    config: &ImageConfiguration,
) -> AppliedImage {
    let arch = config.architecture().to_string();
    let config = config.config().clone().unwrap_or_default();
    let labels: BTreeMap<String, String> = config
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let env = config.env().clone().unwrap_or_default();
    let layers = manifest.layers().clone();
    let installer = layers
        .iter()
        .find(|l| {
            l.annotations()
                .as_ref()
                .is_some_and(|a| a.contains_key(INSTALLER_ANNOTATION))
        })
        .cloned();
    AppliedImage {
        name,
        digest,
        layers,
        info: ImageInfo::from_labels(&labels).with_config_env(&env),
        arch,
        installer,
        host_files: BTreeMap::new(),
        deferred_files: None,
        app_trees: false,
        pull_from: None,
    }
}

/// `$SEALRS_ROOT/clusters/NAME/images/<hex>/`: a copy of the manifest and
/// config of each image the cluster runs, so that `reset` and `delete` plan
/// with the installer already on the hosts once the image is gone from the
/// store.
fn pinned_dir(store: &Store, cluster: &str, digest: &str) -> PathBuf {
    store
        .root()
        .join("clusters")
        .join(cluster)
        .join("images")
        .join(digest.trim_start_matches("sha256:"))
}

/// Pins `images` in `cluster`'s status (name and digest) and keeps a copy of
/// their manifest and config beside the saved cluster.
pub(super) fn pin(
    store: &Store,
    cluster: &mut crate::cluster::Cluster,
    images: &[&AppliedImage],
) -> Result<(), ApplyError> {
    for image in images {
        let dir = pinned_dir(store, &cluster.name, &image.digest);
        let io = |path: &std::path::Path| {
            let path = path.to_path_buf();
            move |source| ApplyError::State { path, source }
        };
        if !dir.join("config.json").exists() {
            let served = image
                .pull_from
                .as_ref()
                .and_then(|r| r.metadata(&image.digest));
            let (manifest, config) = match served {
                Some((manifest, config)) => (manifest.to_vec(), config.to_vec()),
                None => stored_metadata(store, image)?,
            };
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
            let m = dir.join("manifest.json");
            atomic_file::write(&m, &manifest, None).map_err(io(&m))?;
            let c = dir.join("config.json");
            atomic_file::write(&c, &config, None).map_err(io(&c))?;
        }
    }
    cluster.status.images = images
        .iter()
        .map(|i| InstalledImage {
            name: i.name.clone(),
            digest: i.digest.clone(),
        })
        .collect();
    Ok(())
}

/// The manifest and config of `image` as the store has them, checked.
fn stored_metadata(store: &Store, image: &AppliedImage) -> Result<(Vec<u8>, Vec<u8>), ApplyError> {
    let digest: Digest = image.digest.parse().map_err(|_| {
        ApplyError::Unsupported(format!("image {}: bad digest {}", image.name, image.digest))
    })?;
    let image_err = |source| ApplyError::Image {
        name: image.name.clone(),
        source: Box::new(source),
    };
    let manifest = store.read_verified(&digest).map_err(image_err)?;
    let parsed: ImageManifest = serde_json::from_slice(&manifest)
        .map_err(|e| ApplyError::Unsupported(format!("image {}: manifest: {e}", image.name)))?;
    let config = store
        .read_verified(parsed.config().digest())
        .map_err(image_err)?;
    Ok((manifest, config))
}

/// The images of a saved cluster as it runs them: by the digest pinned in
/// its status (the tag may have moved since; `warn` is told), from the store
/// when it has the manifest, else from the copy kept beside the saved
/// cluster. Images without a pin (a cluster saved by an older sealrs) are
/// resolved by name.
pub(super) fn resolve_pinned(
    store: &Store,
    cluster: &crate::cluster::Cluster,
    warn: &dyn Fn(&str),
) -> Result<Vec<AppliedImage>, ApplyError> {
    let mut out = Vec::new();
    for name in &cluster.images {
        let full = crate::reference::normalize(name).map_err(|source| ApplyError::ImageName {
            name: name.clone(),
            source,
        })?;
        let Some(pin) = cluster.status.images.iter().find(|i| i.name == full) else {
            out.extend(resolve_images(store, std::slice::from_ref(&full))?);
            continue;
        };
        let now = store.lookup(&full).ok().flatten();
        if let Some(now) = now
            .as_ref()
            .filter(|d| d.digest().to_string() != pin.digest)
        {
            warn(&format!(
                "warning: {full} now points to {}, but cluster {} runs {}: this command uses {} (sealrs upgrade {full} moves the cluster to the new one)",
                now.digest(),
                cluster.name,
                pin.digest,
                pin.digest
            ));
        }
        out.push(pinned_image(store, &cluster.name, &full, &pin.digest)?);
    }
    if out.is_empty() {
        return Err(ApplyError::NoImage);
    }
    Ok(out)
}

fn pinned_image(
    store: &Store,
    cluster: &str,
    name: &str,
    digest: &str,
) -> Result<AppliedImage, ApplyError> {
    let gone = |detail: String| ApplyError::PinnedImageGone {
        name: name.to_string(),
        digest: digest.to_string(),
        detail,
    };
    let parsed: Option<Digest> = digest.parse().ok();
    let (manifest, config) = match parsed.as_ref().filter(|d| store.has_blob(d)) {
        Some(d) => {
            let manifest = store.read_verified(d).map_err(|e| gone(e.to_string()))?;
            let m: ImageManifest =
                serde_json::from_slice(&manifest).map_err(|e| gone(e.to_string()))?;
            let config = store
                .read_verified(m.config().digest())
                .map_err(|e| gone(e.to_string()))?;
            (manifest, config)
        }
        None => {
            let dir = pinned_dir(store, cluster, digest);
            let read = |f: &str| {
                std::fs::read(dir.join(f))
                    .map_err(|e| gone(format!("{}: {e}", dir.join(f).display())))
            };
            let manifest = read("manifest.json")?;
            if crate::digest::sha256_digest(&manifest).to_string() != digest {
                return Err(gone(format!(
                    "the copy in {} does not have that digest",
                    dir.display()
                )));
            }
            (manifest, read("config.json")?)
        }
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&manifest).map_err(|e| gone(e.to_string()))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&config).map_err(|e| gone(e.to_string()))?;
    Ok(applied(
        name.to_string(),
        digest.to_string(),
        &manifest,
        &config,
    ))
}
