//! Phase "upgrade" (`sealrs upgrade`): the runtime's upgrade plans, batch by
//! batch in [`runtime::upgrade_order`], then on every host what neither
//! the new image nor the one before it references removed (`installer gc`).

use std::time::{Duration, Instant};

use super::context::RunContext;
use super::parallel::per_host;
use super::remote::{apply_plan, call_installer, host_context, host_request, query, run_installer};
use super::status::record_all;
use super::ApplyError;
use crate::cluster::{Cluster, Host, Phase};
use crate::installer::{GcOutcome, Operation};
use crate::progress::text::{count, size};
use crate::runtime::{self, Batch, JoinSecrets, MaxUnavailable, NodeStep, Version};

/// How an upgrade moves through the cluster.
#[derive(Debug, Clone)]
pub struct UpgradeOptions {
    /// Workers upgraded at once (control planes go one at a time).
    pub max_unavailable: MaxUnavailable,
    /// Drain each node before its upgrade (`--no-drain`: cordon only).
    pub drain: bool,
    /// How long a node has to report Ready with the new version.
    pub ready_timeout: Duration,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            max_unavailable: MaxUnavailable::default(),
            drain: true,
            ready_timeout: Duration::from_secs(300),
        }
    }
}

impl UpgradeOptions {
    /// The command that runs this upgrade again (hosts already upgraded are
    /// skipped).
    pub fn resume_command(&self, cluster: &str, image: &str) -> String {
        let mut cmd = format!("sealrs upgrade --cluster {cluster} {image}");
        if self.max_unavailable != MaxUnavailable::default() {
            cmd.push_str(&format!(" --max-unavailable {}", self.max_unavailable));
        }
        if !self.drain {
            cmd.push_str(" --no-drain");
        }
        if self.ready_timeout != UpgradeOptions::default().ready_timeout {
            cmd.push_str(&format!(
                " --ready-timeout {}",
                self.ready_timeout.as_secs()
            ));
        }
        cmd
    }
}

/// Whether `host` already runs `ctx`'s image at `to` (an upgrade stopped
/// after it): a resumed upgrade skips it.
fn already_upgraded(ctx: &RunContext, snapshot: &Cluster, host: &Host, to: &Version) -> bool {
    snapshot.status.hosts.get(&host.key()).is_some_and(|s| {
        s.phase == Phase::Running
            && s.version.as_deref() == Some(to.to_string().as_str())
            && s.images.iter().any(|i| i.digest == ctx.image.digest)
    })
}

/// Upgrades every host of `snapshot` to version `to`, requests made from
/// `snapshot`, outcomes recorded in `cluster`, batch by batch in
/// [`runtime::upgrade_order`]: control planes one at a time, workers
/// `options.max_unavailable` at a time. Each node of a batch is cordoned
/// and drained from the first master, upgraded, waited for until it reports
/// Ready with `to`, and uncordoned: the order of k0sctl's worker upgrade
/// (<https://github.com/k0sproject/k0sctl/blob/main/phase/upgrade_workers.go>:
/// cordon, drain, upgrade, wait for Ready, uncordon, 10% at a time) and of
/// kubeadm's upgrade guide, which drains a node before its kubelet is
/// upgraded (<https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/#drain-the-node>).
/// The first batch with a failure stops the upgrade: later batches are not
/// touched, and the error names what was upgraded and how to resume.
pub(super) fn in_batches(
    ctx: &mut RunContext,
    cluster: &mut Cluster,
    snapshot: &Cluster,
    to: &Version,
    options: &UpgradeOptions,
) -> Result<(), ApplyError> {
    let first = snapshot
        .first_master()
        .cloned()
        .ok_or_else(|| ApplyError::Verify {
            cluster: snapshot.name.clone(),
            violations: vec![runtime::Violation::NoMaster],
        })?;
    let order = runtime::upgrade_order(snapshot, options.max_unavailable);
    for (i, Batch { role, hosts }) in order.iter().enumerate() {
        let batch: Vec<Host> = hosts
            .iter()
            .filter_map(|a| snapshot.host(a).cloned())
            .filter(|h| {
                let done = already_upgraded(ctx, snapshot, h, to);
                if done {
                    ctx.progress.message(&format!(
                        "{}: already upgraded to {to} with this image; skipped",
                        h.key()
                    ));
                }
                !done
            })
            .collect();
        if batch.is_empty() {
            continue;
        }
        let names: Vec<String> = batch.iter().map(Host::key).collect();
        ctx.progress.message(&format!(
            "batch {} of {} ({role}): {}",
            i + 1,
            order.len(),
            names.join(", ")
        ));
        let results = one_batch(ctx, snapshot, &first, &batch, to, options);
        let stopped = record_all(cluster, &ctx.image, &mut ctx.report, results);
        if let Err(failed) = stopped {
            let upgraded: Vec<String> = snapshot
                .hosts
                .iter()
                .filter(|h| already_upgraded(ctx, cluster, h, to))
                .map(Host::key)
                .collect();
            let pending: Vec<String> = snapshot
                .hosts
                .iter()
                .filter(|h| !already_upgraded(ctx, cluster, h, to))
                .map(Host::key)
                .collect();
            let list = |l: &[String]| {
                if l.is_empty() {
                    "none".to_string()
                } else {
                    l.join(", ")
                }
            };
            return Err(ApplyError::UpgradeStopped {
                failed: Box::new(failed),
                upgraded: list(&upgraded),
                pending: list(&pending),
                resume: options.resume_command(&snapshot.name, &ctx.image.name),
            });
        }
    }
    Ok(())
}

/// The node name `host` has in Kubernetes, as recorded.
fn node_of(snapshot: &Cluster, host: &Host) -> Option<String> {
    snapshot
        .status
        .hosts
        .get(&host.key())
        .and_then(|s| s.node_name.clone())
}

/// A [`NodeStep`] on `node`, run on the first master `first`.
fn node_step(
    ctx: &RunContext,
    snapshot: &Cluster,
    first: &Host,
    node: &str,
    step: NodeStep,
) -> Result<(), ApplyError> {
    let hctx = host_context(snapshot, first, &ctx.image, JoinSecrets::default())?;
    let plan = ctx
        .runtime
        .upgrade_node_step(&hctx, node, step)
        .map_err(ApplyError::runtime(first))?;
    ctx.progress
        .message(&format!("{}: {step} node {node}", first.key()));
    apply_plan(ctx.connection(first)?, &ctx.image, &plan).map(|_| ())
}

/// One batch: cordon (and drain) each node, upgrade them all at once, wait
/// for each to report Ready with `to`, uncordon it. A node whose drain
/// fails is uncordoned and not upgraded; one that does not come back stays
/// cordoned.
fn one_batch(
    ctx: &RunContext,
    snapshot: &Cluster,
    first: &Host,
    batch: &[Host],
    to: &Version,
    options: &UpgradeOptions,
) -> Vec<(Host, Result<bool, ApplyError>)> {
    let mut outcomes = Vec::new();
    let mut ready: Vec<(Host, Option<String>)> = Vec::new();
    for host in batch {
        let Some(node) = node_of(snapshot, host) else {
            ctx.progress.message(&format!(
                "warning: {}: its node name was never recorded; upgraded without cordon, drain or waiting for Ready",
                host.key()
            ));
            ready.push((host.clone(), None));
            continue;
        };
        let mut cordoned = node_step(ctx, snapshot, first, &node, NodeStep::Cordon);
        if cordoned.is_ok() && options.drain {
            cordoned = node_step(ctx, snapshot, first, &node, NodeStep::Drain);
            if cordoned.is_err() {
                let _ = node_step(ctx, snapshot, first, &node, NodeStep::Uncordon);
            }
        }
        match cordoned {
            Ok(()) => ready.push((host.clone(), Some(node))),
            Err(error) => outcomes.push((host.clone(), Err(error))),
        }
    }

    let hosts: Vec<Host> = ready.iter().map(|(h, _)| h.clone()).collect();
    let upgraded = per_host(&hosts, |host| {
        let _step = ctx.progress.step(&format!(
            "{}: {} upgrade to {to}",
            host.key(),
            ctx.runtime.name()
        ));
        let mut request = host_request(snapshot, host, &ctx.image, &JoinSecrets::default());
        request.target_version = Some(to.clone());
        let upgraded = ctx.connection(host).and_then(|transport| {
            run_installer(transport, &ctx.image, Operation::Upgrade, &request)
        });
        (host.clone(), upgraded.map(|o| o.changed))
    });

    let mut waiting = Vec::new();
    for (host, result) in upgraded {
        let node = ready
            .iter()
            .find(|(h, _)| h.address == host.address)
            .and_then(|(_, n)| n.clone());
        match (result, node) {
            (Ok(changed), Some(node)) => waiting.push((host, node, changed)),
            (result, _) => outcomes.push((host, result)),
        }
    }
    outcomes.extend(wait_ready(ctx, snapshot, first, waiting, to, options));
    outcomes
}

/// Polls the first master until each node reports Ready with `to`, then
/// uncordons it; a node still not there after `options.ready_timeout` is a
/// [`ApplyError::NodeNotReady`] naming it. A query that fails (the API
/// server restarting on the first master) is asked again.
fn wait_ready(
    ctx: &RunContext,
    snapshot: &Cluster,
    first: &Host,
    mut waiting: Vec<(Host, String, bool)>,
    to: &Version,
    options: &UpgradeOptions,
) -> Vec<(Host, Result<bool, ApplyError>)> {
    let mut outcomes = Vec::new();
    let deadline = Instant::now() + options.ready_timeout;
    let mut last: std::collections::BTreeMap<String, String> = Default::default();
    for (_, node, _) in &waiting {
        ctx.progress.message(&format!(
            "{}: waiting for node {node} to report Ready with {to}",
            first.key()
        ));
    }
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for (host, node, changed) in waiting {
            let argv = ctx.runtime.node_state_query(&node);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let answer = ctx
                .connection(first)
                .and_then(|t| query(t, &argv))
                .unwrap_or_else(|e| format!("({e})"));
            if runtime::node_ready_with(&answer, to) {
                let uncordoned = node_step(ctx, snapshot, first, &node, NodeStep::Uncordon);
                outcomes.push((host, uncordoned.map(|()| changed)));
            } else {
                last.insert(node.clone(), answer);
                still.push((host, node, changed));
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for (host, node, _) in waiting {
                outcomes.push((
                    host.clone(),
                    Err(ApplyError::NodeNotReady {
                        last: last.get(&node).cloned().unwrap_or_default(),
                        node,
                        host: host.key(),
                        version: to.to_string(),
                        secs: options.ready_timeout.as_secs(),
                    }),
                ));
            }
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    outcomes
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
                "{}: removed {} no kept image references, {} freed",
                host.key(),
                count(gc.removed.len(), "directory"),
                size(gc.freed)
            )),
            Ok(_) => {}
            Err(error) => ctx.progress.message(&format!(
                "warning: {}: the files of the earlier images are still there: {error}",
                host.key()
            )),
        }
    }
}
