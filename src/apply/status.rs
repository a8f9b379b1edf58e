//! The cluster's status as the phases leave it: what each host runs, which
//! host failed, the node names seen. Saved after the command, so that a rerun
//! picks up where a failed one stopped.

use super::check::HostCheck;
use super::image::AppliedImage;
use super::{ApplyError, HostFailure, RunReport};
use crate::cluster::{Cluster, ClusterStatus, Host, HostStatus, InstalledImage, Phase};

/// Records that `host` runs `image` (and whether its plan changed it).
pub(super) fn record(
    cluster: &mut Cluster,
    host: &Host,
    image: &AppliedImage,
    report: &mut RunReport,
    changed: bool,
) {
    if changed {
        report.changed.push(host.key());
    }
    let status = cluster.status.hosts.entry(host.key()).or_default();
    *status = HostStatus {
        phase: Phase::Running,
        runtime: Some(image.info.runtime.clone()),
        version: image.info.version.as_ref().map(|v| v.to_string()),
        images: vec![InstalledImage {
            name: image.name.clone(),
            digest: image.digest.clone(),
        }],
        node_name: status.node_name.take(),
    };
}

/// The status as runtimes plan with it: without node names, which no plan
/// uses (`runtime::tests::plans_do_not_depend_on_recorded_node_names`), and
/// without the hosts that have nothing else recorded.
pub(super) fn planned_status(status: &ClusterStatus) -> ClusterStatus {
    let mut status = status.clone();
    for host in status.hosts.values_mut() {
        host.node_name = None;
    }
    status
        .hosts
        .retain(|_, host| *host != HostStatus::default());
    status
}

/// Records each checked host's Kubernetes node name, the first time it is
/// seen: a node keeps the name it registered with.
pub(super) fn record_node_names(cluster: &mut Cluster, checks: &[(String, HostCheck)]) {
    for (key, found) in checks {
        let status = cluster.status.hosts.entry(key.clone()).or_default();
        if status.node_name.is_none() {
            status.node_name = crate::cluster::node_name_from_hostname(&found.hostname);
        }
    }
}

/// Records each host's outcome in the cluster status; every failure in one error.
pub(super) fn record_all(
    cluster: &mut Cluster,
    image: &AppliedImage,
    report: &mut RunReport,
    results: Vec<(Host, Result<bool, ApplyError>)>,
) -> Result<(), ApplyError> {
    let failures = settle(cluster, results, |cluster, host, changed| {
        record(cluster, host, image, report, changed)
    });
    ApplyError::all_hosts_ok(failures)
}

/// Hands each host that succeeded to `ok`; marks the others failed in the
/// status and returns them, for [`ApplyError::all_hosts_ok`].
pub(super) fn settle<T>(
    cluster: &mut Cluster,
    results: Vec<(Host, Result<T, ApplyError>)>,
    mut ok: impl FnMut(&mut Cluster, &Host, T),
) -> Vec<HostFailure> {
    let mut failures = Vec::new();
    for (host, result) in results {
        match result {
            Ok(value) => ok(cluster, &host, value),
            Err(error) => {
                // A host that Ctrl-C kept from starting is as it was.
                if !error.is_interrupted() {
                    mark_failed(cluster, &host);
                }
                failures.push(HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                });
            }
        }
    }
    failures
}

pub(super) fn mark_failed(cluster: &mut Cluster, host: &Host) {
    cluster.status.hosts.entry(host.key()).or_default().phase = Phase::Failed;
    cluster.status.phase = Phase::Failed;
}
