//! An image that is only in a registry: the cluster is checked against its
//! manifest and config (runtime, labels, version, installer) before any of
//! its layers moves, so a wrong image costs two small requests, not a pull.

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::image::{applied, AppliedImage};
use super::ApplyError;
use crate::cluster::Cluster;
use crate::runtime;

/// The image as the phases would use it, from what a registry served.
pub fn remote_image(
    name: &str,
    digest: &str,
    manifest: &ImageManifest,
    config: &[u8],
) -> Result<AppliedImage, ApplyError> {
    let config: ImageConfiguration = serde_json::from_slice(config).map_err(|e| {
        ApplyError::Unsupported(format!(
            "image {name}: its config is not an image config: {e}"
        ))
    })?;
    Ok(applied(
        name.to_string(),
        digest.to_string(),
        manifest,
        &config,
    ))
}

/// Whether `image` can be the cluster image of `cluster`: a runtime sealrs
/// knows, that accepts the cluster as asked, and an installer to run on the
/// hosts. Every violation at once, as the run's verify phase reports them.
pub fn check_cluster_image(cluster: &Cluster, image: &AppliedImage) -> Result<(), ApplyError> {
    let runtime =
        runtime::runtime_for(&image.info.runtime).ok_or_else(|| ApplyError::NoRuntime {
            image: image.name.clone(),
            runtime: image.info.runtime.clone(),
        })?;
    runtime
        .verify(cluster, &image.info)
        .map_err(|violations| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations,
        })?;
    image.installer_on_host().map(|_| ())
}
