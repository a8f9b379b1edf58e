//! An image that is only in a registry: the cluster is checked against its
//! manifest and config (runtime, labels, version, installer) before any of
//! its layers moves, so a wrong image costs two small requests, not a pull;
//! then hosts pull the layers straight from the registry.

use oci_spec::image::{ImageConfiguration, ImageManifest};

use super::image::{applied, AppliedImage};
use super::ApplyError;
use crate::cluster::Cluster;
use crate::registry::hosts::{PullTicket, UNREACHED};
use crate::runtime;
use crate::transport::{Output, Transport};

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

/// Has the host's installer pull the incoming layers of `argv` (an
/// `installer unpack` command) from `ticket`'s registry, the ticket on
/// stdin. `Ok(Err(why))`: the host cannot use the registry and nothing
/// changed, so the operator sends the layers; a failure after that (a blob
/// that is not what its digest says) is the host's output, for the caller
/// to report.
pub(super) fn from_registry(
    transport: &dyn Transport,
    ticket: &PullTicket,
    argv: &[String],
) -> Result<Result<Output, String>, ApplyError> {
    let mut pull = argv.to_vec();
    pull.push("--from-registry".to_string());
    let stdin = serde_json::to_string(ticket).expect("a ticket serializes");
    let output = transport
        .run(&pull, &[], Some(stdin.as_bytes()))
        .map_err(ApplyError::transport(transport.address()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.success() {
        if let Some(line) = stderr.lines().find(|l| l.contains(UNREACHED)) {
            return Ok(Err(line.trim().to_string()));
        }
        // The installer is the image's: one built before this cannot pull.
        if stderr.contains("unexpected argument '--from-registry'") {
            return Ok(Err(
                "the image's installer predates pulling from a registry".into(),
            ));
        }
    }
    Ok(Ok(output))
}
