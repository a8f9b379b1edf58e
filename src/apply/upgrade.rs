//! Phase "upgrade" (`sealrs upgrade`): the runtime's upgrade plans, batch by
//! batch in [`runtime::upgrade_order`], then the earlier image's rootfs
//! removed from every host.

use super::context::RunContext;
use super::parallel::per_host;
use super::remote::{host_request, run_checked, run_installer};
use super::status::record_all;
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::installer::Operation;
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

/// Removes the rootfs of earlier images from every host of `snapshot`.
/// Placed files are links or copies of their own, and the hooks run from
/// the new rootfs: the old ones are dead weight. Failing to remove one does
/// not undo an upgrade that worked; it is said and left.
pub(super) fn prune_old_rootfs(ctx: &RunContext, snapshot: &Cluster) {
    let rootfs = ctx.image.host_rootfs();
    let (dir, keep) = rootfs.rsplit_once('/').unwrap_or((&rootfs, ""));
    let results = per_host(&snapshot.hosts, |host| {
        let removed = ctx.connection(host).and_then(|transport| {
            run_checked(
                transport,
                &[
                    "find",
                    dir,
                    "-mindepth",
                    "1",
                    "-maxdepth",
                    "1",
                    "!",
                    "-name",
                    keep,
                    "-exec",
                    "rm",
                    "-rf",
                    "--",
                    "{}",
                    "+",
                ],
            )
        });
        (host.clone(), removed)
    });
    for (host, result) in results {
        if let Err(error) = result {
            ctx.progress.message(&format!(
                "warning: {}: the rootfs of the earlier image is still there: {error}",
                host.key()
            ));
        }
    }
}
