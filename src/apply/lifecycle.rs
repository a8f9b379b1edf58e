//! What happens to a saved cluster after `sealrs run`: add and delete hosts,
//! upgrade to another image, reset everything sealrs put on the hosts.
//!
//! Each command reuses the phases of `run`: verify with the runtime, connect
//! (and check) the hosts it concerns, send the blobs a host lacks, then have
//! the image's installer plan and run the runtime's operation on each host. Per-host work runs on
//! plain threads and failures are collected per host, naming the host, the
//! step, its exit code and the last lines of its output.
//!
//! The functions change `cluster` in place (hosts, status); saving it, or
//! deleting it after a reset, is the caller's job, as for `run`.

use std::collections::BTreeMap;

use super::{
    apply_plan, connection_for, distribute, host_context, host_request, hosts, mark_failed, record,
    record_all, record_node_names, resolve_images, run_checked, run_installer, settle,
    AppliedImage, ApplyError, Connections, Connector, HostFailure, RunReport, HOST_DIR,
};
use crate::cluster::{Address, Cluster, Host, Phase};
use crate::installer::Operation;
use crate::progress::Progress;
use crate::runtime::{self, Batch, JoinSecrets, Runtime};
use crate::store::Store;
use crate::transport::Transport;

/// What a lifecycle command did, for the summary and for tests.
#[derive(Debug, Default)]
pub struct LifecycleReport {
    /// Blob bytes sent, per host (hosts that were sent nothing show 0).
    pub bytes_sent: BTreeMap<String, u64>,
    /// Hosts whose plan changed something.
    pub changed: Vec<String>,
    /// Hosts added, deleted or reset.
    pub hosts: Vec<String>,
    /// Hosts that could not be reached (`reset --force` goes on without them).
    pub unreachable: Vec<HostFailure>,
}

impl LifecycleReport {
    fn absorb(&mut self, run: RunReport) {
        self.bytes_sent.extend(run.bytes_sent);
        self.changed.extend(run.changed);
    }
}

/// Reads `$SEALRS_ROOT/clusters/NAME/Clusterfile`.
pub fn load_cluster(root: &std::path::Path, name: &str) -> Result<Cluster, ApplyError> {
    let path = super::cluster_file(root, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApplyError::NoCluster {
                name: name.to_string(),
                path,
            })
        }
        Err(source) => return Err(ApplyError::State { path, source }),
    };
    Cluster::from_yaml(&text, &path.display().to_string()).map_err(|source| {
        ApplyError::SavedCluster {
            path,
            source: Box::new(source),
        }
    })
}

/// Removes `$SEALRS_ROOT/clusters/NAME/` (after a reset).
pub fn forget_cluster(root: &std::path::Path, name: &str) -> Result<(), ApplyError> {
    let file = super::cluster_file(root, name);
    let dir = file.parent().unwrap_or(root).to_path_buf();
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ApplyError::State { path: dir, source }),
    }
}

/// The cluster image and its runtime, from the saved cluster's images.
fn cluster_image(
    store: &Store,
    names: &[String],
) -> Result<(AppliedImage, Box<dyn Runtime>), ApplyError> {
    let image = resolve_images(store, names)?.swap_remove(0);
    let runtime =
        runtime::runtime_for(&image.info.runtime).ok_or_else(|| ApplyError::NoRuntime {
            image: image.name.clone(),
            runtime: image.info.runtime.clone(),
        })?;
    if image.installer.is_none() {
        return Err(ApplyError::NoInstaller {
            image: image.name.clone(),
        });
    }
    Ok((image, runtime))
}

/// A copy of `cluster` with only the hosts at `addresses` (in cluster order).
fn only(cluster: &Cluster, addresses: &[Address]) -> Cluster {
    let mut sub = cluster.clone();
    sub.hosts.retain(|h| addresses.contains(&h.address));
    sub
}

fn verify(
    cluster: &Cluster,
    runtime: &dyn Runtime,
    image: &AppliedImage,
) -> Result<(), ApplyError> {
    runtime
        .verify(cluster, &image.info)
        .map_err(|violations| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations,
        })
}

/// Adds `new_hosts` to the cluster and joins them; hosts already in the
/// cluster with the same roles are joined again (idempotently), so a failed
/// `add` is rerun as is.
pub fn add(
    store: &Store,
    cluster: &mut Cluster,
    new_hosts: Vec<Host>,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let mut clash = Vec::new();
    for host in &new_hosts {
        if let Some(existing) = cluster.host(&host.address) {
            if existing.roles != host.roles {
                clash.push(host.key());
            }
        }
    }
    if !clash.is_empty() {
        return Err(ApplyError::Refused {
            hosts: clash,
            reason: "already in the cluster with another role; delete them first".into(),
        });
    }
    let (image, runtime) = cluster_image(store, &cluster.images)?;
    let mut grown = cluster.clone();
    for host in &new_hosts {
        if grown.host(&host.address).is_none() {
            grown.hosts.push(host.clone());
        }
    }
    verify(&grown, runtime.as_ref(), &image)?;
    let first = grown.first_master().ok_or(ApplyError::NoMaster)?.clone();

    let targets: Vec<Address> = new_hosts.iter().map(|h| h.address.clone()).collect();
    let mut reach = targets.clone();
    reach.push(first.address.clone());
    progress.message(&format!(
        "connecting to {} new hosts and the first master {}",
        targets.len(),
        first.key()
    ));
    let connections = hosts::connect_all(&only(&grown, &reach), connector)?;
    // Check the new hosts only: the first master already runs the cluster.
    let (mut connections, known): (Connections, Connections) = connections
        .into_iter()
        .partition(|(h, _)| targets.contains(&h.address));
    let ports = |host: &Host| host.roles.iter().flat_map(|r| runtime.ports(*r)).collect();
    let checks = hosts::check_all(&connections, &image, &ports, Some(&grown), false)?;
    connections.extend(known);

    let mut run = RunReport::default();
    progress.message("sending layers");
    distribute(
        store,
        &connections,
        &image,
        &checks,
        Some(&grown),
        progress,
        &mut run,
    )?;

    // From here on the hosts are part of the cluster, even if a join fails:
    // the saved state then names them, and `add` again picks up.
    *cluster = grown;
    record_node_names(cluster, &checks);
    for host in &new_hosts {
        let status = cluster.status.hosts.entry(host.key()).or_default();
        if status.phase != Phase::Running {
            status.phase = Phase::Installing;
        }
    }

    // Secrets: the first master's install plan again (idempotent; it captures them).
    progress.message(&format!(
        "{}: {} install (for the join secrets)",
        first.key(),
        runtime.name()
    ));
    let snapshot = cluster.clone();
    let request = host_request(&snapshot, &first, &image, &JoinSecrets::default());
    let outcome = run_installer(
        connection_for(&connections, &first)?,
        &image,
        Operation::Install,
        &request,
    )?;
    if outcome.changed {
        run.changed.push(first.key());
    }
    let secrets =
        JoinSecrets::from_captures(&outcome.captures).map_err(ApplyError::runtime(&first))?;

    let joining: Vec<Host> = snapshot
        .hosts
        .iter()
        .filter(|h| targets.contains(&h.address) && h.address != first.address)
        .cloned()
        .collect();
    let (masters, nodes): (Vec<Host>, Vec<Host>) = joining.into_iter().partition(Host::is_master);
    let mut failures = Vec::new();
    for host in &masters {
        progress.message(&format!(
            "{}: {} join (control plane)",
            host.key(),
            runtime.name()
        ));
        match join_one(&snapshot, host, &image, &secrets, &connections) {
            Ok(changed) => record(cluster, host, &image, &mut run, changed),
            Err(error) => {
                mark_failed(cluster, host);
                failures.push(HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                });
                // The next control plane would join a cluster missing this one.
                return Err(ApplyError::Hosts(failures));
            }
        }
    }
    let results = parallel(&nodes, |host| {
        progress.message(&format!("{}: {} join (node)", host.key(), runtime.name()));
        join_one(&snapshot, host, &image, &secrets, &connections)
    });
    record_all(cluster, &image, &mut run, results)?;
    if cluster
        .status
        .hosts
        .values()
        .all(|s| s.phase == Phase::Running)
    {
        cluster.status.phase = Phase::Running;
    }
    let mut report = LifecycleReport {
        hosts: new_hosts.iter().map(Host::key).collect(),
        ..LifecycleReport::default()
    };
    report.absorb(run);
    Ok(report)
}

fn join_one(
    cluster: &Cluster,
    host: &Host,
    image: &AppliedImage,
    secrets: &JoinSecrets,
    connections: &Connections,
) -> Result<bool, ApplyError> {
    let request = host_request(cluster, host, image, secrets);
    run_installer(
        connection_for(connections, host)?,
        image,
        Operation::Join,
        &request,
    )
    .map(|o| o.changed)
}

/// Runs `work` for every host on a thread of its own; results in host order.
fn parallel<T: Send>(
    hosts: &[Host],
    work: impl Fn(&Host) -> Result<T, ApplyError> + Sync,
) -> Vec<(Host, Result<T, ApplyError>)> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|host| {
                let work = &work;
                scope.spawn(move || (host.clone(), work(host)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a host thread panicked"))
            .collect()
    })
}

/// Uninstalls the runtime from `host` and removes what sealrs put there.
fn teardown(
    cluster: &Cluster,
    host: &Host,
    image: &AppliedImage,
    transport: &dyn Transport,
) -> Result<bool, ApplyError> {
    let request = host_request(cluster, host, image, &JoinSecrets::default());
    let report = run_installer(transport, image, Operation::Uninstall, &request)?;
    // Layer directories, unpacked rootfs, placed-file records, markers.
    run_checked(transport, &["rm", "-rf", "--one-file-system", HOST_DIR])?;
    Ok(report.changed)
}

/// The host's Kubernetes node name: the one recorded when sealrs first
/// reached it, else what the host says now (`None` when it is down).
fn node_name(
    cluster: &Cluster,
    host: &Host,
    transport: Option<&dyn Transport>,
) -> Result<Option<String>, ApplyError> {
    let recorded = cluster
        .status
        .hosts
        .get(&host.key())
        .and_then(|s| s.node_name.clone());
    let name = match (recorded, transport) {
        (Some(name), _) => name,
        (None, Some(t)) => hosts::query(t, &["uname", "-n"])?,
        (None, None) => return Ok(None),
    };
    crate::cluster::node_name_from_hostname(&name)
        .map(Some)
        .ok_or_else(|| ApplyError::runtime(host)(runtime::RuntimeError::BadNodeName { node: name }))
}

/// What a connection failure says, without the host it is about.
fn unreachable_reason(failure: &HostFailure) -> String {
    match failure.error.as_ref() {
        ApplyError::Transport { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Drains the node and deletes it from Kubernetes, on the first master; a
/// drain that did not finish is reported, and the node deleted all the same.
fn remove_from_kubernetes(
    cluster: &Cluster,
    first: &Host,
    node: &str,
    image: &AppliedImage,
    runtime: &dyn Runtime,
    transport: &dyn Transport,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    let ctx = host_context(cluster, first, &image.info, JoinSecrets::default(), image)?;
    let plan = runtime
        .remove_node(&ctx, node)
        .map_err(ApplyError::runtime(first))?;
    let report = apply_plan(transport, image, &plan)?;
    for step in &report.steps {
        if let Some(code) = step.exit_code.filter(|c| *c != 0) {
            progress.message(&format!(
                "warning: {}: {} ended with exit code {code}; going on:\n{}",
                first.key(),
                step.title,
                step.output.join("\n")
            ));
        }
    }
    Ok(())
}

/// Drains the hosts at `addresses` and deletes their nodes from Kubernetes
/// (on the first master), then uninstalls the runtime from them and removes
/// them from the cluster. The first master cannot be deleted (reset the
/// cluster). A host that is down is still removed from Kubernetes when its
/// node name is known, and stays in the cluster, failed, until a rerun can
/// uninstall it; when its name is not known, nothing changes.
pub fn delete(
    store: &Store,
    cluster: &mut Cluster,
    addresses: &[Address],
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let unknown: Vec<String> = addresses
        .iter()
        .filter(|a| cluster.host(a).is_none())
        .map(|a| a.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(ApplyError::Refused {
            hosts: unknown,
            reason: format!("not in cluster {}", cluster.name),
        });
    }
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    if addresses.contains(&first.address) {
        return Err(ApplyError::Refused {
            hosts: vec![first.key()],
            reason: "the first master holds the cluster and cannot be deleted; use sealrs reset to remove the whole cluster".into(),
        });
    }
    let (image, runtime) = cluster_image(store, &cluster.images)?;
    let mut shrunk = cluster.clone();
    shrunk.hosts.retain(|h| !addresses.contains(&h.address));
    verify(&shrunk, runtime.as_ref(), &image)?;

    let targets = only(cluster, addresses);
    let mut reach = addresses.to_vec();
    reach.push(first.address.clone());
    progress.message(&format!(
        "connecting to {} hosts and the first master {}",
        targets.hosts.len(),
        first.key()
    ));
    let (connections, down) = hosts::connect_each(&only(cluster, &reach), connector);
    // The first master drains and deletes the nodes: nothing goes without it.
    let (first_down, down): (Vec<HostFailure>, Vec<HostFailure>) =
        down.into_iter().partition(|f| f.host == first.key());
    ApplyError::all_hosts_ok(first_down)?;

    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for host in &targets.hosts {
        let transport = connection_for(&connections, host).ok();
        match node_name(cluster, host, transport) {
            Ok(Some(name)) => named.push((host.clone(), name)),
            Ok(None) => unnamed.push(HostFailure {
                host: host.key(),
                error: Box::new(ApplyError::NodeNameUnknown {
                    host: host.key(),
                    reason: down
                        .iter()
                        .find(|f| f.host == host.key())
                        .map(unreachable_reason)
                        .unwrap_or_default(),
                }),
            }),
            Err(error) => unnamed.push(HostFailure {
                host: host.key(),
                error: Box::new(error),
            }),
        }
    }
    ApplyError::all_hosts_ok(unnamed)?;
    for (host, name) in &named {
        cluster
            .status
            .hosts
            .entry(host.key())
            .or_default()
            .node_name = Some(name.clone());
    }

    let mut run = RunReport::default();
    // The installer and rootfs the plans need (nothing is sent to a host that
    // still has them).
    distribute(store, &connections, &image, &[], None, progress, &mut run)?;

    let snapshot = cluster.clone();
    let on_first = connection_for(&connections, &first)?;
    let mut results = Vec::new();
    let mut removed = Vec::new();
    for (host, name) in &named {
        progress.message(&format!(
            "{}: drain and delete node {name} ({})",
            first.key(),
            host.key()
        ));
        match remove_from_kubernetes(
            &snapshot,
            &first,
            name,
            &image,
            runtime.as_ref(),
            on_first,
            progress,
        ) {
            Ok(()) => match down.iter().find(|f| f.host == host.key()) {
                Some(failure) => results.push((
                    host.clone(),
                    Err(ApplyError::NotUninstalled {
                        host: host.key(),
                        node: name.clone(),
                        reason: unreachable_reason(failure),
                    }),
                )),
                None => removed.push(host.clone()),
            },
            Err(error) => results.push((host.clone(), Err(error))),
        }
    }

    let (masters, nodes): (Vec<Host>, Vec<Host>) = removed.into_iter().partition(Host::is_master);
    results.extend(parallel(&nodes, |host| {
        progress.message(&format!("{}: {} uninstall", host.key(), runtime.name()));
        teardown(&snapshot, host, &image, connection_for(&connections, host)?)
    }));
    for host in &masters {
        progress.message(&format!("{}: {} uninstall", host.key(), runtime.name()));
        let result = teardown(&snapshot, host, &image, connection_for(&connections, host)?);
        let failed = result.is_err();
        results.push((host.clone(), result));
        if failed {
            break;
        }
    }
    let mut report = LifecycleReport::default();
    let failures = settle(cluster, results, |cluster, host, changed| {
        if changed {
            run.changed.push(host.key());
        }
        cluster.hosts.retain(|h| h.address != host.address);
        cluster.status.hosts.remove(&host.key());
        report.hosts.push(host.key());
    });
    report.absorb(run);
    ApplyError::all_hosts_ok(failures)?;
    Ok(report)
}

/// Upgrades every host to `image_name`: verified first (downgrades and minor
/// skips refused, every one at once), blobs each host lacks sent, then the
/// runtime's upgrade plans in [`runtime::upgrade_order`]. Stops after the
/// first batch that fails.
pub fn upgrade(
    store: &Store,
    cluster: &mut Cluster,
    image_name: &str,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let (image, runtime) = cluster_image(store, &[image_name.to_string()])?;
    verify(cluster, runtime.as_ref(), &image)?;
    let to = image
        .info
        .version
        .clone()
        .ok_or_else(|| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations: vec![runtime::Violation::MissingVersion],
        })?;

    progress.message(&format!(
        "connecting to {} hosts of cluster {}",
        cluster.hosts.len(),
        cluster.name
    ));
    // Every host runs the cluster already: its ports are ours.
    let (connections, checks) =
        hosts::connect_and_check(cluster, connector, &image, &|_| Vec::new(), None, false)?;
    record_node_names(cluster, &checks);
    let mut run = RunReport::default();
    progress.message("sending the layers the hosts lack");
    distribute(
        store,
        &connections,
        &image,
        &checks,
        None,
        progress,
        &mut run,
    )?;

    cluster.status.phase = Phase::Upgrading;
    let snapshot = cluster.clone();
    for Batch { role, hosts } in runtime::upgrade_order(&snapshot) {
        let batch: Vec<Host> = hosts
            .iter()
            .filter_map(|a| snapshot.host(a).cloned())
            .collect();
        let results = parallel(&batch, |host| {
            progress.message(&format!(
                "{}: {} upgrade to {to} ({role})",
                host.key(),
                runtime.name()
            ));
            let mut request = host_request(&snapshot, host, &image, &JoinSecrets::default());
            request.target_version = Some(to.clone());
            run_installer(
                connection_for(&connections, host)?,
                &image,
                Operation::Upgrade,
                &request,
            )
            .map(|o| o.changed)
        });
        record_all(cluster, &image, &mut run, results)?;
    }
    // Placed files are links or copies of their own, and the hooks run from
    // the new rootfs: the old ones are dead weight. Failing to remove one
    // does not undo an upgrade that worked; it is said and left.
    for (host, result) in parallel(&snapshot.hosts, |host| {
        let rootfs = image.host_rootfs();
        let (dir, keep) = rootfs.rsplit_once('/').unwrap_or((&rootfs, ""));
        run_checked(
            connection_for(&connections, host)?,
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
    }) {
        if let Err(error) = result {
            progress.message(&format!(
                "warning: {}: the rootfs of the earlier image is still there: {error}",
                host.key()
            ));
        }
    }
    cluster.images = vec![image.name.clone()];
    cluster.status.phase = Phase::Running;
    let mut report = LifecycleReport {
        hosts: cluster.hosts.iter().map(Host::key).collect(),
        ..LifecycleReport::default()
    };
    report.absorb(run);
    Ok(report)
}

/// Uninstalls the runtime from every host (workers, then the other masters,
/// the first master last) and removes what sealrs put there. A host that
/// cannot be reached stops the reset before anything changes, unless `force`:
/// then it is reported in [`LifecycleReport::unreachable`] and skipped.
pub fn reset(
    store: &Store,
    cluster: &mut Cluster,
    force: bool,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let (image, runtime) = cluster_image(store, &cluster.images)?;
    progress.message(&format!(
        "connecting to {} hosts of cluster {}",
        cluster.hosts.len(),
        cluster.name
    ));
    let mut report = LifecycleReport::default();
    let connections = match hosts::connect_all(cluster, connector) {
        Ok(connections) => connections,
        Err(ApplyError::Hosts(failed)) => {
            if !force {
                return Err(ApplyError::Unreachable(failed));
            }
            for f in &failed {
                progress.message(&format!("{}: unreachable, skipped (--force)", f.host));
            }
            let down: Vec<String> = failed.iter().map(|f| f.host.clone()).collect();
            report.unreachable = failed;
            let up: Vec<Address> = cluster
                .hosts
                .iter()
                .filter(|h| !down.contains(&h.key()))
                .map(|h| h.address.clone())
                .collect();
            hosts::connect_all(&only(cluster, &up), connector)?
        }
        Err(other) => return Err(other),
    };
    let mut run = RunReport::default();
    distribute(store, &connections, &image, &[], None, progress, &mut run)?;

    cluster.status.phase = Phase::Resetting;
    let snapshot = cluster.clone();
    let reachable = |h: &&Host| connections.iter().any(|(c, _)| c.address == h.address);
    let first = snapshot.first_master().cloned();
    let workers: Vec<Host> = snapshot
        .workers()
        .filter(reachable)
        .cloned()
        .collect::<Vec<_>>();
    let mut masters: Vec<Host> = snapshot.masters().filter(reachable).cloned().collect();
    // The first master last (it is the first of the masters, when reachable).
    let first_is_up = first
        .as_ref()
        .is_some_and(|f| masters.first().is_some_and(|m| m.address == f.address));
    if first_is_up {
        masters.rotate_left(1);
    }
    let teardown_on = |host: &Host| {
        progress.message(&format!("{}: {} uninstall", host.key(), runtime.name()));
        teardown(&snapshot, host, &image, connection_for(&connections, host)?)
    };
    let mut results = parallel(&workers, teardown_on);
    for host in &masters {
        results.push((host.clone(), teardown_on(host)));
    }
    let failures = settle(cluster, results, |cluster, host, changed| {
        if changed {
            run.changed.push(host.key());
        }
        report.hosts.push(host.key());
        if let Some(status) = cluster.status.hosts.get_mut(&host.key()) {
            status.phase = Phase::Pending;
            status.version = None;
            status.images.clear();
            status.runtime = None;
        }
    });
    report.absorb(run);
    ApplyError::all_hosts_ok(failures)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterArgs;

    fn cluster() -> Cluster {
        Cluster::from_args(&ClusterArgs {
            masters: vec!["10.0.0.1".into()],
            nodes: vec!["10.0.0.2".into()],
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn only_keeps_the_named_hosts_in_cluster_order() {
        let c = cluster();
        let sub = only(&c, &[c.hosts[1].address.clone()]);
        assert_eq!(sub.hosts.len(), 1);
        assert_eq!(sub.hosts[0].key(), "10.0.0.2");
        assert_eq!(sub.name, c.name);
    }
}
