//! What happens to a saved cluster after `sealrs run`: add and delete hosts,
//! upgrade to another image, reset everything sealrs put on the hosts.
//!
//! Each command is the phases of `run` (see the module docs of `apply`) with
//! other options: which hosts it connects to and checks, what it verifies,
//! then its own operation on each host (join, uninstall, upgrade) through the
//! image's installer. Failures are collected per host, naming the host, the
//! step, its exit code and the last lines of its output.
//!
//! The functions change `cluster` in place (hosts, status); saving it, or
//! deleting it after a reset, is the caller's job, as for `run`.

use std::collections::BTreeMap;

use super::check::{self, Checks};
use super::connect::{self, Connector};
use super::context::RunContext;
use super::distribute::distribute;
use super::image::{pin, resolve_pinned};
use super::install::{self, Install};
use super::join::{after_joins, join, MasterFailure};
use super::save::{clear_upgrade_intent, load_upgrade_intent, save_cluster, save_upgrade_intent};
use super::status::{record_node_names, settle};
use super::uninstall::{
    node_name, refuse_stores, remove_from_kubernetes, uninstall, unreachable_reason, Removal,
};
use super::{upgrade as upgrading, verify, ApplyError, HostFailure, RunOptions, RunReport};
use crate::cluster::{Address, Cluster, Host, Phase};
use crate::progress::text::count;
use crate::progress::Progress;
use crate::runtime;
use crate::store::Store;

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
    /// Per host, the damaged files the command repaired (host paths).
    pub repaired: BTreeMap<String, Vec<String>>,
    /// Node joins that failed within `add --max-failed`.
    pub tolerated: Option<ApplyError>,
}

impl LifecycleReport {
    fn absorb(&mut self, run: RunReport) {
        self.bytes_sent.extend(run.bytes_sent);
        self.changed.extend(run.changed);
        self.repaired.extend(run.repaired);
        self.tolerated = run.tolerated;
    }
}

/// The context of a lifecycle command: the saved cluster's images, by the
/// digests it pins (see [`resolve_pinned`]), the first with its runtime,
/// which must have an installer.
pub(super) fn open<'a>(
    store: &'a Store,
    connector: &'a dyn Connector,
    progress: &'a dyn Progress,
    cluster: &Cluster,
) -> Result<RunContext<'a>, ApplyError> {
    let images = resolve_pinned(store, cluster, &|m| progress.message(m))?;
    let mut ctx =
        RunContext::with_images(store, connector, progress, images, RunOptions::default())?;
    ctx.require_installer()?;
    ctx.hub_host = super::hub::serving(cluster);
    Ok(ctx)
}

/// The context of `upgrade`: the image `name` as the store has it now,
/// then `cluster`'s images after its rootfs one, as it pins them.
fn open_named<'a>(
    store: &'a Store,
    connector: &'a dyn Connector,
    progress: &'a dyn Progress,
    name: &str,
    cluster: &Cluster,
    remote: Option<&super::pull::RegistryLayers>,
) -> Result<RunContext<'a>, ApplyError> {
    let mut images = super::image::resolve_with(store, &[name.to_string()], remote)?;
    images.extend(super::apps::saved_apps(store, cluster, &|m| {
        progress.message(m)
    })?);
    let ctx = RunContext::with_images(store, connector, progress, images, RunOptions::default())?;
    ctx.require_installer()?;
    Ok(ctx)
}

/// The cluster with `new_hosts` added; refused when one is in the cluster
/// already with other roles.
pub(super) fn grown(cluster: &Cluster, new_hosts: &[Host]) -> Result<Cluster, ApplyError> {
    let mut clash = Vec::new();
    for host in new_hosts {
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
    let mut grown = cluster.clone();
    for host in new_hosts {
        if grown.host(&host.address).is_none() {
            grown.hosts.push(host.clone());
        }
    }
    Ok(grown)
}

/// The first master, once `addresses` are known to be hosts of the cluster
/// that may be deleted (the first master may not).
pub(super) fn deletable(cluster: &Cluster, addresses: &[Address]) -> Result<Host, ApplyError> {
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
    Ok(first)
}

/// Adds `new_hosts` to the cluster and joins them; hosts already in the
/// cluster with the same roles are joined again (idempotently), so a failed
/// `add` is rerun as is. Up to `max_failed` node joins may fail. With
/// `layers_from`, the new hosts pull the layers from the image's registry.
pub fn add(
    store: &Store,
    cluster: &mut Cluster,
    new_hosts: Vec<Host>,
    max_failed: super::MaxFailed,
    layers_from: Option<super::pull::RegistryLayers>,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let grown = grown(cluster, &new_hosts)?;
    let mut ctx = open(store, connector, progress, cluster)?;
    ctx.options.max_failed = max_failed;
    ctx.image.pull_from = layers_from;
    verify::cluster(&grown, &mut ctx)?;
    let first = grown.first_master().ok_or(ApplyError::NoMaster)?.clone();

    let targets: Vec<Address> = new_hosts.iter().map(|h| h.address.clone()).collect();
    let mut reach = targets.clone();
    reach.push(first.address.clone());
    progress.message(&format!(
        "connecting to {} and the first master {}",
        count(targets.len(), "new host"),
        first.key()
    ));
    connect::all(&mut ctx, &grown.only(&reach))?;
    // Check the new hosts only: the first master already runs the cluster.
    let checks = Checks {
        ports: Some(&grown),
        verify: Some(&grown),
        probe: false,
    };
    check::hosts(&mut ctx, &targets, checks)?;
    progress.message("sending layers");
    distribute(&mut ctx, Some(&grown))?;
    let new = |h: &Host| targets.contains(&h.address);
    super::apps::place_patches(&mut ctx, &new)?;

    // From here on the hosts are part of the cluster, even if a join fails:
    // the saved state then names them, and `add` again picks up.
    *cluster = grown;
    record_node_names(cluster, &ctx.checks);
    for host in &new_hosts {
        let status = cluster.status.hosts.entry(host.key()).or_default();
        if status.phase != Phase::Running {
            status.phase = Phase::Installing;
        }
    }

    // Secrets: the first master's install plan again (idempotent; it captures them).
    let snapshot = cluster.clone();
    let secrets = install::first_master(&mut ctx, cluster, &snapshot, &first, Install::Secrets)?;
    let joining: Vec<Host> = snapshot
        .hosts
        .iter()
        .filter(|h| targets.contains(&h.address) && h.address != first.address)
        .cloned()
        .collect();
    let joined = join(
        &mut ctx,
        cluster,
        &snapshot,
        joining,
        &secrets,
        MasterFailure::MarkFailed,
    );
    let after = after_joins(&ctx, &snapshot, &first, &secrets);
    joined?;
    after?;
    super::apps::run_patches(&ctx, cluster, &new)?;
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
    report.absorb(ctx.report);
    Ok(report)
}

/// The role a host's plans are made for (`Master` for any control-plane).
fn request_role(host: &Host) -> crate::cluster::Role {
    crate::installer::Request::role(host)
}

/// Drains the hosts at `addresses` and deletes their nodes from Kubernetes
/// (on the first master), then uninstalls the runtime from them and removes
/// them from the cluster; a host whose runtime keeps its node until its
/// uninstall ran (`Runtime::deletes_node_after_uninstall`: a kubeadm
/// control-plane) is drained, uninstalled, and then deleted. The first master cannot be deleted (reset the
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
    delete_with(store, cluster, addresses, false, connector, progress)
}

/// [`delete`]; with `force`, a host that cannot be reached is forgotten once
/// its Node is deleted: the runtime's [`runtime::Runtime::forget_member`]
/// runs on the first master (a control plane's etcd member), and what
/// sealrs put on the host stays there.
pub fn delete_with(
    store: &Store,
    cluster: &mut Cluster,
    addresses: &[Address],
    force: bool,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let first = deletable(cluster, addresses)?;
    let mut ctx = open(store, connector, progress, cluster)?;
    let mut shrunk = cluster.clone();
    shrunk.hosts.retain(|h| !addresses.contains(&h.address));
    verify::cluster(&shrunk, &mut ctx)?;

    let targets = cluster.only(addresses);
    let mut reach = addresses.to_vec();
    reach.push(first.address.clone());
    progress.message(&format!(
        "connecting to {} and the first master {}",
        count(targets.hosts.len(), "host"),
        first.key()
    ));
    let down = connect::each(&mut ctx, &cluster.only(&reach));
    // The first master drains and deletes the nodes: nothing goes without it.
    let (first_down, down): (Vec<HostFailure>, Vec<HostFailure>) =
        down.into_iter().partition(|f| f.host == first.key());
    ApplyError::all_hosts_ok(first_down)?;
    let down = connect::unreachable_only(down)?;

    let mut named = Vec::new();
    let mut unnamed = Vec::new();
    for host in &targets.hosts {
        let transport = ctx.connection(host).ok();
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

    let up: Vec<Host> = named
        .iter()
        .map(|(h, _)| h.clone())
        .filter(|h| ctx.connection(h).is_ok())
        .collect();
    refuse_stores(&ctx, &up)?;

    // The installer and rootfs the plans need (nothing is sent to a host that
    // still has them).
    distribute(&mut ctx, None)?;

    let snapshot = cluster.clone();
    let mut results = Vec::new();
    let mut removed = Vec::new();
    // Hosts whose node the runtime deletes only after their uninstall (a
    // host that is down cannot be uninstalled: its node goes at once).
    let late = |host: &Host| {
        ctx.runtime.deletes_node_after_uninstall(request_role(host))
            && !down.iter().any(|f| f.host == host.key())
    };
    for (host, name) in &named {
        let part = if late(host) {
            Removal::Drain
        } else {
            Removal::All
        };
        progress.message(&format!(
            "{}: {} node {name} ({})",
            first.key(),
            if part == Removal::Drain {
                "drain (deleted after its uninstall)"
            } else {
                "drain and delete"
            },
            host.key()
        ));
        match remove_from_kubernetes(&ctx, &snapshot, &first, name, part) {
            Ok(()) => match down.iter().find(|f| f.host == host.key()) {
                Some(failure) if force => {
                    progress.message(&format!(
                        "{}: unreachable ({}); forgotten (--force), what sealrs put there stays",
                        host.key(),
                        unreachable_reason(failure)
                    ));
                    let forgot = forget_member(&ctx, &snapshot, &first, host, name);
                    results.push((host.clone(), forgot.map(|()| false)));
                }
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
    let uninstalled = uninstall(&ctx, &snapshot, &nodes, &masters, true);
    for (host, outcome) in uninstalled {
        let outcome = match (
            outcome,
            named.iter().find(|(h, _)| h.address == host.address),
        ) {
            (Ok(changed), Some((_, name))) if late(&host) => {
                progress.message(&format!(
                    "{}: delete node {name} ({})",
                    first.key(),
                    host.key()
                ));
                remove_from_kubernetes(&ctx, &snapshot, &first, name, Removal::Delete)
                    .map(|()| changed)
            }
            (outcome, _) => outcome,
        };
        results.push((host, outcome));
    }
    let mut report = LifecycleReport::default();
    let mut run = ctx.report;
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

/// The runtime's [`runtime::Runtime::forget_member`] plan for `host`, run on
/// the first master when it has steps; a step allowed to fail is a warning.
fn forget_member(
    ctx: &RunContext,
    cluster: &Cluster,
    first: &Host,
    host: &Host,
    node: &str,
) -> Result<(), ApplyError> {
    let first_ctx =
        super::remote::host_context(cluster, first, &ctx.image, runtime::JoinSecrets::default())?;
    let plan = ctx
        .runtime
        .forget_member(&first_ctx, host, node)
        .map_err(ApplyError::runtime(first))?;
    if plan.steps.is_empty() {
        return Ok(());
    }
    ctx.progress.message(&format!(
        "{}: {} forgets {} ({})",
        first.key(),
        ctx.runtime.name(),
        host.key(),
        plan.steps
            .iter()
            .map(|s| s.title.as_str())
            .collect::<Vec<_>>()
            .join("; ")
    ));
    let report = super::remote::apply_plan(ctx.connection(first)?, &ctx.image, &plan)?;
    super::join::warn_failed_steps(ctx, first, &report);
    Ok(())
}

/// Upgrades every host to `image_name`: verified first (downgrades and minor
/// skips refused, every one at once), blobs each host lacks sent, then the
/// runtime's upgrade plans in [`runtime::upgrade_order`], each node
/// cordoned, drained, upgraded, waited for until Ready with the new version
/// and uncordoned (see [`upgrading::in_batches`]). Stops after the first
/// batch that fails, saying how to resume.
///
/// With `options.state_root`, what the upgrade sets out to do is saved
/// there before any host changes and forgotten once it completed; an
/// upgrade to the image the cluster ran before an unfinished upgrade is
/// that upgrade's [`rollback`]. A host whose upgrade fails goes back to
/// the image it ran before where the runtime allows it
/// ([`upgrading::in_batches`]).
pub fn upgrade(
    store: &Store,
    cluster: &mut Cluster,
    image_name: &str,
    options: &super::UpgradeOptions,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let remote = options.layers_from.as_ref();
    let mut ctx = open_named(store, connector, progress, image_name, cluster, remote)?;
    ctx.image.pull_from = options.layers_from.clone();
    let earlier = match &options.state_root {
        Some(root) => load_upgrade_intent(root, &cluster.name)?,
        None => None,
    };
    if let Some(earlier) = &earlier {
        if earlier
            .from_images
            .first()
            .is_some_and(|i| i.digest == ctx.image.digest)
        {
            drop(ctx);
            return rollback(store, cluster, options, connector, progress);
        }
        upgrading::refuse_unfinished_upgrade(earlier, cluster, &ctx.image)?;
    }
    ctx.hub_host = super::hub::serving(cluster);
    verify::cluster(cluster, &mut ctx)?;
    let to = ctx.target_version(cluster)?;
    // Where a host whose upgrade fails goes back to: the image it ran,
    // as the saved cluster pins it.
    let previous = resolve_pinned(store, cluster, &|_| {})
        .map_err(|e| format!("the image it ran before cannot be read: {e}"))
        .and_then(|mut images| {
            if images.is_empty() {
                Err("the saved cluster names no image it ran before".to_string())
            } else {
                Ok(images.remove(0))
            }
        });

    progress.message(&format!(
        "connecting to {} of cluster {}",
        count(cluster.hosts.len(), "host"),
        cluster.name
    ));
    // Every host runs the cluster already: its ports are ours.
    let checks = Checks {
        ports: None,
        verify: None,
        probe: false,
    };
    check::connect_and_check(&mut ctx, cluster, checks)?;
    record_node_names(cluster, &ctx.checks);
    if let Some(root) = &options.state_root {
        let intent = upgrading::intent(cluster, &ctx.image, &to, earlier);
        save_upgrade_intent(root, &cluster.name, &intent)?;
    }
    progress.message("sending the layers the hosts lack");
    distribute(&mut ctx, None)?;

    cluster.status.phase = Phase::Upgrading;
    let snapshot = cluster.clone();
    let back = Some(previous.as_ref().map_err(Clone::clone));
    upgrading::in_batches(&mut ctx, cluster, &snapshot, &to, options, back)?;
    upgrading::prune_old_rootfs(&ctx, &snapshot);
    let pinned: Vec<&super::AppliedImage> = std::iter::once(&ctx.image).chain(&ctx.apps).collect();
    cluster.images = pinned.iter().map(|i| i.name.clone()).collect();
    pin(store, cluster, &pinned)?;
    cluster.status.phase = Phase::Running;
    completed(cluster, options)?;
    let mut report = LifecycleReport {
        hosts: cluster.hosts.iter().map(Host::key).collect(),
        ..LifecycleReport::default()
    };
    report.absorb(ctx.report);
    Ok(report)
}

/// Saves the cluster, then forgets the upgrade it completed (in that order:
/// killed between the two, the upgrade is still known).
fn completed(cluster: &Cluster, options: &super::UpgradeOptions) -> Result<(), ApplyError> {
    if let Some(root) = &options.state_root {
        save_cluster(root, cluster)?;
        clear_upgrade_intent(root, &cluster.name)?;
    }
    Ok(())
}

/// `sealrs upgrade --rollback`: returns every host of the unfinished
/// upgrade saved in `options.state_root` to the image it ran before, with
/// that image's upgrade plans to its own version, batch by batch as an
/// upgrade goes, on every host (after a kill the saved status may be behind
/// a host; on one that runs the image already the plan changes nothing,
/// though its node is still cordoned and drained). Hosts the runtime
/// cannot take back ([`runtime::Runtime::rollback_refused`]) are refused,
/// all at once, before any host changes.
pub fn rollback(
    store: &Store,
    cluster: &mut Cluster,
    options: &super::UpgradeOptions,
    connector: &dyn Connector,
    progress: &dyn Progress,
) -> Result<LifecycleReport, ApplyError> {
    let nothing = |reason: &str| ApplyError::NothingToRollBack {
        cluster: cluster.name.clone(),
        reason: reason.to_string(),
    };
    let root = options
        .state_root
        .as_deref()
        .ok_or_else(|| nothing("no saved cluster directory was given"))?;
    let intent = load_upgrade_intent(root, &cluster.name)?.ok_or_else(|| {
        nothing("its last upgrade completed on every host, and going to an older image from there is a downgrade, which sealrs refuses")
    })?;
    let mut before = cluster.clone();
    before.images = intent.from_images.iter().map(|i| i.name.clone()).collect();
    before.status.images = intent.from_images.clone();
    let mut ctx = open(store, connector, progress, &before)?;
    let from = ctx.target_version(cluster)?;
    // The plans as each host was before the upgrade: the image's upgrade
    // plan to its own version, which is no downgrade from there.
    let mut snapshot = cluster.clone();
    for (key, was) in &intent.before {
        if let Some(status) = snapshot.status.hosts.get_mut(key) {
            status.runtime = was.runtime.clone();
            status.version = was.version.clone();
            status.images = was.images.clone();
        }
    }
    let mut refused = Vec::new();
    for host in &cluster.hosts {
        let now = cluster
            .status
            .hosts
            .get(&host.key())
            .and_then(|s| s.version.as_deref())
            .and_then(|v| runtime::Version::parse(v).ok());
        if let Some(now) = now.filter(|v| *v != from) {
            if let Some(reason) = ctx
                .runtime
                .rollback_refused(request_role(host), &from, &now)
            {
                refused.push(HostFailure {
                    host: host.key(),
                    error: Box::new(ApplyError::Unsupported(reason)),
                });
            }
        }
    }
    ApplyError::all_hosts_ok(refused)?;
    progress.message(&format!(
        "returning cluster {} from {} ({}) to {} ({from}): connecting to {} hosts",
        cluster.name,
        intent.to.name,
        intent.to_version,
        ctx.image.name,
        cluster.hosts.len()
    ));
    let checks = Checks {
        ports: None,
        verify: None,
        probe: false,
    };
    check::connect_and_check(&mut ctx, cluster, checks)?;
    record_node_names(cluster, &ctx.checks);
    distribute(&mut ctx, None)?;
    cluster.status.phase = Phase::Upgrading;
    upgrading::in_batches(&mut ctx, cluster, &snapshot, &from, options, None)?;
    cluster.images = before.images;
    let pinned: Vec<&super::AppliedImage> = std::iter::once(&ctx.image).chain(&ctx.apps).collect();
    pin(store, cluster, &pinned)?;
    cluster.status.phase = Phase::Running;
    completed(cluster, options)?;
    let mut report = LifecycleReport {
        hosts: cluster.hosts.iter().map(Host::key).collect(),
        ..LifecycleReport::default()
    };
    report.absorb(ctx.report);
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
    let mut ctx = open(store, connector, progress, cluster)?;
    progress.message(&format!(
        "connecting to {} of cluster {}",
        count(cluster.hosts.len(), "host"),
        cluster.name
    ));
    let mut report = LifecycleReport::default();
    match connect::all(&mut ctx, cluster) {
        Ok(()) => {}
        Err(ApplyError::Hosts(failed)) => {
            let failed = connect::unreachable_only(failed)?;
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
            connect::all(&mut ctx, &cluster.only(&up))?;
        }
        Err(other) => return Err(other),
    }
    let up: Vec<Host> = cluster
        .hosts
        .iter()
        .filter(|h| ctx.connection(h).is_ok())
        .cloned()
        .collect();
    refuse_stores(&ctx, &up)?;
    distribute(&mut ctx, None)?;

    cluster.status.phase = Phase::Resetting;
    let snapshot = cluster.clone();
    let reachable = |h: &&Host| ctx.connections.iter().any(|(c, _)| c.address == h.address);
    let first = snapshot.first_master().cloned();
    let workers: Vec<Host> = snapshot.workers().filter(reachable).cloned().collect();
    let mut masters: Vec<Host> = snapshot.masters().filter(reachable).cloned().collect();
    // The first master last (it is the first of the masters, when reachable).
    let first_is_up = first
        .as_ref()
        .is_some_and(|f| masters.first().is_some_and(|m| m.address == f.address));
    if first_is_up {
        masters.rotate_left(1);
    }
    let results = uninstall(&ctx, &snapshot, &workers, &masters, false);
    let mut run = ctx.report;
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
