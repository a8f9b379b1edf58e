//! Phase "verify": the runtime checks the cluster as asked (before any host is
//! reached), and the image's installer checks each host (what only the host
//! can see), every host before anything changes. The host side runs inside
//! the check phase where the image is on the host already, else in
//! distribute as soon as the host's rootfs is in.

use super::context::RunContext;
use super::image::AppliedImage;
use super::image_files;
use super::remote::call_installer_env;
use super::ApplyError;
use crate::cluster::Cluster;
use crate::installer::{Operation, Request, VerifyReport};
use crate::transport::{Output, Transport};

/// The runtime's verdict on `cluster` built from the context's image: every
/// violation at once; then each image's files prepared for every host
/// (Configs, templates: [`image_files`]), still before any host is reached.
/// What it lets through with a warning is printed.
pub(super) fn cluster(cluster: &Cluster, ctx: &mut RunContext) -> Result<(), ApplyError> {
    ctx.runtime
        .verify(cluster, &ctx.image.info)
        .map_err(|violations| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations,
        })?;
    for warning in ctx.runtime.warnings(cluster) {
        ctx.progress.message(&format!("warning: {warning}"));
    }
    image_files::prepare(ctx, cluster)
}

/// The image's installer checks the host as a member of the cluster `request`
/// is for; with `probe`, it also tells whether that operation would change
/// the host (as the check phase asks, `SEALRS_PROBE`).
pub(super) fn verify_host(
    transport: &dyn Transport,
    image: &AppliedImage,
    request: &Request,
    probe: Option<Operation>,
) -> Result<VerifyReport, ApplyError> {
    let env: Vec<(String, String)> = probe
        .map(|op| ("SEALRS_PROBE".to_string(), op.to_string()))
        .into_iter()
        .collect();
    let (command, output) =
        call_installer_env(transport, image, &["verify"], &request.to_json(), &env)?;
    verdict(transport.address(), command, &output, &output.stdout)
}

/// What `installer verify` said: its `report` (its stdout, or the part of
/// it that is the report) and how `output` ended.
pub(super) fn verdict(
    host: &str,
    command: String,
    output: &Output,
    report: &[u8],
) -> Result<VerifyReport, ApplyError> {
    match serde_json::from_slice::<VerifyReport>(report) {
        Ok(report) if report.holds() && output.success() => Ok(report),
        Ok(report) if !report.holds() => Err(ApplyError::Violations {
            host: host.to_string(),
            violations: report.violations.iter().map(|v| v.to_string()).collect(),
        }),
        _ => Err(ApplyError::command(host, command, output, 20)),
    }
}
