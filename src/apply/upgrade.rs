//! Phase "upgrade" (`sealrs upgrade`): the runtime's upgrade plans, batch by
//! batch in [`runtime::upgrade_order`], then on every host what neither
//! the new image nor the one before it references removed (`installer gc`).
//!
//! A host whose upgrade fails goes back to the image it ran before: that
//! image's own upgrade plan, to its own version, from its rootfs, which
//! `installer gc` keeps on every host for this, places its binary, units and
//! config again and restarts the runtime (where the runtime allows it:
//! [`runtime::Runtime::rollback_refused`]). What the upgrade set out to do
//! is saved before any host changes ([`super::save::UpgradeIntent`]), so
//! that a killed upgrade is never silently undone by an older image.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::context::RunContext;
use super::image::AppliedImage;
use super::parallel::per_host;
use super::remote::{
    apply_plan, call_installer, host_context, host_request, query, run_installer_shown,
};
use super::save::UpgradeIntent;
use super::status::{record, record_all};
use super::ApplyError;
use crate::cluster::{Cluster, Host, Phase};
use crate::installer::{GcOutcome, Operation, Request};
use crate::progress::text::{count, size};
use crate::progress::Task as _;
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
    /// Where saved clusters are (`$SEALRS_ROOT`): the upgrade's intent is
    /// saved there before any host changes, and the cluster after each
    /// batch. `None` saves nothing (the caller saves the cluster).
    pub state_root: Option<PathBuf>,
    /// Hosts pull the image's layers from this registry (see `RunOptions`).
    pub layers_from: Option<super::pull::RegistryLayers>,
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions {
            max_unavailable: MaxUnavailable::default(),
            drain: true,
            ready_timeout: Duration::from_secs(300),
            state_root: None,
            layers_from: None,
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
        cmd.push_str(&format!(
            "\nor return every host to the image it ran before the upgrade with:\n  sealrs upgrade --rollback --cluster {cluster}"
        ));
        cmd
    }
}

/// The intent of upgrading `cluster` to `image`: what each host ran before
/// and the images pinned before, kept from `earlier` (an upgrade that did
/// not complete), whose "before" is still where back is.
pub(super) fn intent(
    cluster: &Cluster,
    image: &AppliedImage,
    to: &Version,
    earlier: Option<UpgradeIntent>,
) -> UpgradeIntent {
    let to_image = crate::cluster::InstalledImage {
        name: image.name.clone(),
        digest: image.digest.clone(),
    };
    match earlier {
        Some(earlier) => UpgradeIntent {
            to: to_image,
            to_version: to.to_string(),
            ..earlier
        },
        None => UpgradeIntent {
            to: to_image,
            to_version: to.to_string(),
            from_images: cluster.status.images.clone(),
            before: cluster.status.hosts.clone(),
        },
    }
}

/// Refuses `image` on `cluster` while `intent`'s upgrade to a newer
/// version has not completed: the hosts it reached (the saved status names
/// those it recorded; a killed upgrade may have reached more) would be
/// downgraded. The image it upgrades to, or a newer one, goes on.
pub fn refuse_unfinished_upgrade(
    intent: &UpgradeIntent,
    cluster: &Cluster,
    image: &AppliedImage,
) -> Result<(), ApplyError> {
    let Ok(to) = Version::parse(&intent.to_version) else {
        return Ok(());
    };
    let older = image.info.version.as_ref().is_some_and(|v| *v < to);
    if !older || image.digest == intent.to.digest {
        return Ok(());
    }
    let upgraded: Vec<String> = cluster
        .hosts
        .iter()
        .filter(|h| {
            cluster
                .status
                .hosts
                .get(&h.key())
                .is_some_and(|s| s.images.iter().any(|i| i.digest == intent.to.digest))
        })
        .map(Host::key)
        .collect();
    let reached = if upgraded.is_empty() {
        "no host is recorded as upgraded, but it may have reached the first ones in its order, masters first".to_string()
    } else {
        format!(
            "{} run it already, and it may have reached the next host in its order",
            upgraded.join(", ")
        )
    };
    Err(ApplyError::UnfinishedUpgrade {
        cluster: cluster.name.clone(),
        to: intent.to.name.clone(),
        to_version: intent.to_version.clone(),
        image: format!(
            "{} ({})",
            image.name,
            image
                .info
                .version
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default()
        ),
        reached,
    })
}

/// Whether `host` already runs `ctx`'s image at `to` by `cluster`'s status
/// (an upgrade stopped after it): a resumed upgrade skips it.
fn already_upgraded(ctx: &RunContext, cluster: &Cluster, host: &Host, to: &Version) -> bool {
    cluster.status.hosts.get(&host.key()).is_some_and(|s| {
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
/// touched, and the error names what was upgraded and how to resume. A
/// host that failed goes `back` to the image it ran before where it can.
/// `None` is a rollback itself: nothing goes back, and no host is skipped
/// (a killed upgrade may have changed a host that the saved status does not
/// say; the plan changes nothing on one that runs the image). The cluster
/// is saved after each batch when `options` say where.
pub(super) fn in_batches(
    ctx: &mut RunContext,
    cluster: &mut Cluster,
    snapshot: &Cluster,
    to: &Version,
    options: &UpgradeOptions,
    back: Option<Result<&AppliedImage, String>>,
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
                let done = back.is_some() && already_upgraded(ctx, cluster, h, to);
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
        // The cluster's patch images over the new rootfs before its plan
        // places the rootfs (sealos copies them into the rootfs it runs).
        let in_batch = |h: &Host| batch.iter().any(|b| b.address == h.address);
        super::apps::place_patches(ctx, &in_batch)?;
        let results = one_batch(ctx, snapshot, &first, &batch, to, options, &back);
        let returned: Vec<Host> = results
            .iter()
            .filter(|(_, r)| matches!(r, Err(ApplyError::RolledBack { .. })))
            .map(|(h, _)| h.clone())
            .collect();
        let stopped = record_all(cluster, &ctx.image, &mut ctx.report, results);
        if let Some(Ok(previous)) = &back {
            // Failed, but running again what it ran before.
            for host in &returned {
                record(cluster, host, previous, &mut ctx.report, true);
            }
            if cluster
                .status
                .hosts
                .values()
                .all(|s| s.phase == Phase::Running)
            {
                cluster.status.phase = Phase::Running;
            }
        }
        if let Some(root) = &options.state_root {
            super::save::save_cluster(root, cluster)?;
        }
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
        super::apps::run_patches(ctx, cluster, &in_batch)?;
        if let Some(root) = &options.state_root {
            super::save::save_cluster(root, cluster)?;
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
    back: &Option<Result<&AppliedImage, String>>,
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
    let upgraded = per_host(ctx.max_parallel(), &hosts, |host| {
        let step = ctx.logs.step(
            ctx.progress,
            &snapshot.name,
            &host.key(),
            &format!("{}: {} upgrade to {to}", host.key(), ctx.runtime.name()),
        );
        let mut request = host_request(snapshot, host, &ctx.image, &JoinSecrets::default());
        request.target_version = Some(to.clone());
        let upgraded = ctx.connection(host).and_then(|transport| {
            run_installer_shown(
                transport,
                &ctx.image,
                Operation::Upgrade,
                &request,
                step.as_ref(),
            )
        });
        if upgraded.is_err() {
            step.fail();
        }
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
    let Some(back) = back else {
        return outcomes;
    };
    // Hosts whose upgrade started and failed go back, one by one (a control
    // plane batch is one host; workers of a batch are few).
    outcomes
        .into_iter()
        .map(|(host, result)| {
            // (A host whose drain failed was never ready, nor upgraded.)
            let started = ready.iter().find(|(h, _)| h.address == host.address);
            match (result, started) {
                (Err(error), Some(started)) if !error.is_interrupted() => {
                    let back = roll_back(ctx, snapshot, started, to, options, back, error);
                    (host, Err(back))
                }
                (result, _) => (host, result),
            }
        })
        .collect()
}

/// Returns `host` (with its node name), whose upgrade to `to` failed with
/// `error`, to `back` (the image it ran before, by `snapshot`): that
/// image's upgrade plan to its own version, then, for a node, Ready with
/// that version (asked of the first master) and uncordoned. The error says
/// which way it went.
fn roll_back(
    ctx: &RunContext,
    snapshot: &Cluster,
    (host, node): &(Host, Option<String>),
    to: &Version,
    options: &UpgradeOptions,
    back: &Result<&AppliedImage, String>,
    error: ApplyError,
) -> ApplyError {
    let before = snapshot.images.first().cloned().unwrap_or_default();
    let not = |image: &str, reason: String, error: ApplyError| ApplyError::NotRolledBack {
        host: host.key(),
        image: image.to_string(),
        reason,
        error: Box::new(error),
    };
    let previous = match back {
        Ok(previous) => *previous,
        Err(reason) => return not(&before, reason.clone(), error),
    };
    let status = snapshot.status.hosts.get(&host.key());
    let from = status
        .filter(|s| s.images.iter().any(|i| i.digest == previous.digest))
        .and_then(|s| s.version.as_deref())
        .and_then(|v| Version::parse(v).ok());
    let Some(from) = from else {
        let reason = format!(
            "the saved cluster does not record it as running {} ({}) before this upgrade",
            previous.name, previous.digest
        );
        return not(&previous.name, reason, error);
    };
    if let Some(reason) = ctx.runtime.rollback_refused(Request::role(host), &from, to) {
        return not(&previous.name, reason, error);
    }
    ctx.progress.message(&format!(
        "{}: its upgrade failed; returning it to {} ({from})",
        host.key(),
        previous.name
    ));
    let mut request = host_request(snapshot, host, previous, &JoinSecrets::default());
    request.target_version = Some(from.clone());
    let label = format!(
        "{}: {} upgrade back to {from}",
        host.key(),
        ctx.runtime.name()
    );
    let step = ctx
        .logs
        .step(ctx.progress, &snapshot.name, &host.key(), &label);
    let returned = ctx.connection(host).and_then(|t| {
        run_installer_shown(t, previous, Operation::Upgrade, &request, step.as_ref())
    });
    drop(step);
    if let Err(e) = returned {
        return not(&previous.name, format!("that failed too: {e}"), error);
    }
    if let (Some(node), Some(first)) = (node, snapshot.first_master()) {
        let waited = wait_ready(
            ctx,
            snapshot,
            first,
            vec![(host.clone(), node.clone(), true)],
            &from,
            options,
        );
        if let Some((_, Err(e))) = waited.into_iter().next() {
            return not(&previous.name, format!("its plan ran, but {e}"), error);
        }
    }
    ApplyError::RolledBack {
        host: host.key(),
        image: previous.name.clone(),
        version: from.to_string(),
        error: Box::new(error),
    }
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
    let results = per_host(ctx.max_parallel(), &snapshot.hosts, |host| {
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

#[cfg(test)]
mod tests {
    use super::{intent, refuse_unfinished_upgrade};
    use crate::apply::image::AppliedImage;
    use crate::cluster::{Address, Cluster, Host, HostStatus, InstalledImage, Phase, Role};
    use crate::runtime::{ImageInfo, Version};

    fn image(name: &str, digest: &str, version: &str) -> AppliedImage {
        AppliedImage {
            name: name.into(),
            digest: digest.into(),
            layers: Vec::new(),
            info: ImageInfo::new("k3s", version).unwrap(),
            arch: "amd64".into(),
            installer: None,
            host_files: Default::default(),
            deferred_files: None,
            app_trees: false,
            pull_from: None,
        }
    }

    fn installed(name: &str, digest: &str) -> InstalledImage {
        InstalledImage {
            name: name.into(),
            digest: digest.into(),
        }
    }

    /// Two hosts on image `old` at v1.30.2, the first of them `on` another image.
    fn cluster(on: Option<(&str, &str)>) -> Cluster {
        let mut c = Cluster::new("c");
        for ip in ["10.0.0.1", "10.0.0.2"] {
            c.hosts
                .push(Host::new(Address::parse(ip).unwrap(), &[Role::Master]));
            c.status.hosts.insert(
                ip.into(),
                HostStatus {
                    phase: Phase::Running,
                    version: Some("v1.30.2+k3s1".into()),
                    images: vec![installed("old", "sha256:o")],
                    ..HostStatus::default()
                },
            );
        }
        if let Some((name, digest)) = on {
            c.status.hosts.get_mut("10.0.0.1").unwrap().images = vec![installed(name, digest)];
        }
        c.status.images = vec![installed("old", "sha256:o")];
        c
    }

    #[test]
    fn an_unfinished_upgrade_refuses_an_older_image_and_lets_its_own_or_a_newer_one_go_on() {
        let c = cluster(None);
        let new = image("new", "sha256:n", "v1.30.3+k3s1");
        let saved = intent(&c, &new, &Version::parse("v1.30.3+k3s1").unwrap(), None);
        assert_eq!(saved.from_images, vec![installed("old", "sha256:o")]);

        let old = image("old", "sha256:o", "v1.30.2+k3s1");
        let err = refuse_unfinished_upgrade(&saved, &c, &old)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("its upgrade to new (v1.30.3+k3s1) did not complete (no host is recorded as upgraded")
                && err.contains("old (v1.30.2+k3s1) would downgrade")
                && err.contains("sealrs upgrade --rollback --cluster c"),
            "{err}"
        );
        // Once a host is recorded on the new image, it is named.
        let err = refuse_unfinished_upgrade(&saved, &cluster(Some(("new", "sha256:n"))), &old)
            .unwrap_err()
            .to_string();
        assert!(err.contains("(10.0.0.1 run it already"), "{err}");
        refuse_unfinished_upgrade(&saved, &c, &new).unwrap();
        refuse_unfinished_upgrade(&saved, &c, &image("newer", "sha256:x", "v1.31.0+k3s1")).unwrap();
    }

    #[test]
    fn an_upgrade_resumed_to_another_image_keeps_where_back_is() {
        let first = intent(
            &cluster(None),
            &image("new", "sha256:n", "v1.30.3+k3s1"),
            &Version::parse("v1.30.3+k3s1").unwrap(),
            None,
        );
        // The status now says a host runs `new`: back is still `old`.
        let again = intent(
            &cluster(Some(("new", "sha256:n"))),
            &image("newer", "sha256:x", "v1.30.4+k3s1"),
            &Version::parse("v1.30.4+k3s1").unwrap(),
            Some(first.clone()),
        );
        assert_eq!(again.to, installed("newer", "sha256:x"));
        assert_eq!(again.from_images, first.from_images);
        assert_eq!(again.before, first.before);
    }
}
