//! The images a command applies, resolved from the store, and where their
//! parts go on a host.

use std::collections::BTreeMap;

use oci_spec::image::Descriptor;

use super::ApplyError;
use crate::host_paths::{HOST_DIR, HOST_LAYERS, INSTALLER_ANNOTATION, INSTALLER_PATH};
use crate::runtime::ImageInfo;
use crate::store::Store;

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
    if names.is_empty() {
        return Err(ApplyError::NoImage);
    }
    let mut images = Vec::new();
    for name in names {
        let full = crate::reference::normalize(name).map_err(|source| ApplyError::ImageName {
            name: name.clone(),
            source,
        })?;
        let stored = store.image(&full).map_err(|source| ApplyError::Image {
            name: full.clone(),
            source: Box::new(source),
        })?;
        let config = stored.config.config().clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = config
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let env = config.env().clone().unwrap_or_default();
        let layers = stored.manifest.layers().clone();
        let installer = layers
            .iter()
            .find(|l| {
                l.annotations()
                    .as_ref()
                    .is_some_and(|a| a.contains_key(INSTALLER_ANNOTATION))
            })
            .cloned();
        images.push(AppliedImage {
            name: full,
            digest: stored.descriptor.digest().to_string(),
            layers,
            info: ImageInfo::from_labels(&labels).with_config_env(&env),
            arch: stored.config.architecture().to_string(),
            installer,
        });
    }
    Ok(images)
}
