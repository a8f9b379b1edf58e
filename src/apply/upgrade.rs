//! Phase "upgrade" (`sealrs upgrade`): the runtime's upgrade plans, batch by
//! batch in [`runtime::upgrade_order`], then on every host what neither
//! the new image nor the one before it references removed (`installer gc`).

use super::context::RunContext;
use super::distribute::megabytes;
use super::parallel::per_host;
use super::remote::{call_installer, host_request, run_installer};
use super::status::record_all;
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::installer::{GcOutcome, Operation};
use crate::runtime::{self, Batch, JoinSecrets, Version};

/// Upgrades every host of `snapshot` to version `to`, requests made from
/// `snapshot`, outcomes recorded in `cluster`; stops after the first batch
/// that fails.
pub(super) fn in_batches(
    ctx: &mut RunContext,
    cluster: &mut Cluster,
    snapshot: &Cluster,
    to: &Version,
) -> Result<(), ApplyError> {
    for Batch { role, hosts } in runtime::upgrade_order(snapshot) {
        let batch: Vec<Host> = hosts
            .iter()
            .filter_map(|a| snapshot.host(a).cloned())
            .collect();
        let shared: &RunContext = ctx;
        let results = per_host(&batch, |host| {
            shared.progress.message(&format!(
                "{}: {} upgrade to {to} ({role})",
                host.key(),
                shared.runtime.name()
            ));
            let mut request = host_request(snapshot, host, &shared.image, &JoinSecrets::default());
            request.target_version = Some(to.clone());
            let upgraded = shared.connection(host).and_then(|transport| {
                run_installer(transport, &shared.image, Operation::Upgrade, &request)
            });
            (host.clone(), upgraded.map(|o| o.changed))
        });
        record_all(cluster, &ctx.image, &mut ctx.report, results)?;
    }
    Ok(())
}

/// Removes from every host of `snapshot` what no image it keeps references
/// (`installer gc`): the rootfs and layers of images before the previous one
/// (the image each host ran before this upgrade stays, for a rollback), and
/// leftovers of interrupted transfers; each host's bytes freed are said.
/// Placed files are links or copies of their own, and the hooks run from
/// the new rootfs. Failing on a host does not undo an upgrade that worked;
/// it is said and left.
pub(super) fn prune_old_rootfs(ctx: &RunContext, snapshot: &Cluster) {
    let rootfs = ctx.image.host_rootfs();
    let rootfs_dir = rootfs.rsplit_once('/').map_or(rootfs.as_str(), |(d, _)| d);
    let apps = super::apps::host_app_dir(&ctx.image);
    let apps_dir = apps.rsplit_once('/').map_or(apps.as_str(), |(d, _)| d);
    let results = per_host(&snapshot.hosts, |host| {
        let mut argv: Vec<String> = ["gc", "--rootfs-dir", rootfs_dir, "--pinned-by", apps_dir]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let before = snapshot.status.hosts.get(&host.key());
        let keep_images = std::iter::once(ctx.image.digest.clone()).chain(
            before
                .into_iter()
                .flat_map(|s| s.images.iter().map(|i| i.digest.clone())),
        );
        for digest in keep_images {
            argv.extend(["--keep-image".to_string(), digest]);
        }
        for layer in ctx.apps.iter().chain([&ctx.image]).flat_map(|i| &i.layers) {
            argv.extend(["--keep-layer".to_string(), layer.digest().to_string()]);
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let outcome = ctx.connection(host).and_then(|transport| {
            let (what, output) = call_installer(transport, &ctx.image, &argv, "")?;
            if !output.success() {
                return Err(ApplyError::command(transport.address(), what, &output, 10));
            }
            serde_json::from_slice::<GcOutcome>(&output.stdout).map_err(|e| {
                ApplyError::command(transport.address(), format!("{what}: {e}"), &output, 10)
            })
        });
        (host.clone(), outcome)
    });
    for (host, result) in results {
        match result {
            Ok(gc) if !gc.removed.is_empty() => ctx.progress.message(&format!(
                "{}: removed {} directories no kept image references, {} freed",
                host.key(),
                gc.removed.len(),
                megabytes(gc.freed)
            )),
            Ok(_) => {}
            Err(error) => ctx.progress.message(&format!(
                "warning: {}: the files of the earlier images are still there: {error}",
                host.key()
            )),
        }
    }
}
