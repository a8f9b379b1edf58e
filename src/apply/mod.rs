//! The processor: `sealrs run` and the lifecycle commands as named phases
//! sharing one run context, as k0sctl's actions are.
//!
//! A command builds a `RunContext` (`context.rs`: the store, the progress
//! reporter, the connector, the options, the images resolved from the store,
//! the runtime the first one names) and runs phases on it in order. Each phase
//! is a function in the file named for it; it reads what earlier phases left
//! in the context (connections, host checks, the report) and adds its own, and
//! the command stops at the first phase that fails. The runtime says what
//! each host needs; the installer embedded in the image makes each host's plan
//! itself from a `Request` (the cluster without its SSH settings, the host,
//! the image, the join secrets) with the same runtime code `--dry-run` uses
//! here. Closing the connections is no phase: dropping the context closes
//! them (each transport's `Drop`), whichever phase stopped the command.
//!
//! The phases of `run`, and why each exists:
//! - verify (`verify.rs`): refuse a cluster the runtime cannot build before
//!   any host is reached. Its dry-run form (`--dry-run`, in `install.rs`)
//!   stops here and prints every host's install or join plan.
//! - connect (`connect.rs`): one connection per host, opened in parallel.
//! - check hosts (`check.rs`): find every unfit host (OS, arch, disk, ports)
//!   before anything changes, and what of the image each has; each host is
//!   checked as soon as it is connected.
//! - distribute (`distribute.rs`, `bootstrap.rs`): send each host only the
//!   layers it lacks, the installer first; the installer's host verify
//!   (`verify.rs`) runs as soon as a host's rootfs is in, and every host must
//!   pass it before anything but the image changes.
//! - install first master (`install.rs`): make the cluster and capture the
//!   join secrets; skipped with the joins when every host's installer found
//!   that nothing would change (`installer::probe`).
//! - join masters, join nodes (`join.rs`): control planes one by one (each
//!   joins the ones before it), then the nodes in parallel; up to
//!   `--max-failed` of them may fail (`tolerance.rs`), left Failed.
//! - apply applications (`apps.rs`): the images after the first, as sealos
//!   runs them: patch images placed over every host's rootfs right after
//!   distribute, then, once the cluster is up, each image's commands, an
//!   application's on the first master and a patch's on every host
//!   (`app_script.rs` makes the bash script; `app_run.rs` does the same onto
//!   a saved cluster, `run APP --cluster NAME`).
//! - save (`save.rs`): keep the cluster and its status, even after a failure,
//!   so that a rerun picks up where this one stopped (the CLI calls it).
//!
//! `add`, `delete`, `upgrade` and `reset` (`lifecycle.rs`) are the same phases
//! with other options (which hosts to connect to and check, what to verify,
//! the install run only for its secrets) and, for what `run` never does, two
//! phases of their own: uninstall (`uninstall.rs`) and upgrade in batches
//! (`upgrade.rs`).
//!
//! Beside the phases: `parallel.rs` runs per-host work, at most
//! `--max-parallel` hosts at once, and every phase that works on several
//! hosts collects their failures per host ("failed on 2 hosts: h1: …");
//! `remote.rs` calls the installer on a host; `status.rs` records what each
//! host runs; `image.rs` resolves the images and says where they go on a host.
//!
//! Around the commands: `lock.rs` lets one command at a time work on a saved
//! cluster; `dry_run.rs` renders what `add`, `delete`, `upgrade` and `reset`
//! would do, reaching no host; `image.rs` also pins the digests a saved
//! cluster runs; `kubeconfig.rs` reads the admin kubeconfig from the first
//! master and lists the saved clusters; `interrupt.rs` stops a command at
//! Ctrl-C between host steps (each installer call and each host's layers
//! check it before they start), and `run` saves the cluster before its first
//! host change (`RunOptions::state_root`) for an operator that is killed.
//!
//! Nothing here quotes a value into a shell string: commands are argv, and
//! requests (with env values and join tokens) travel to the installer on stdin.

mod app_run;
mod app_script;
mod apps;
pub mod backup;
mod bootstrap;
pub mod certs;
mod check;
mod connect;
mod context;
mod distribute;
pub mod dry_run;
mod error;
pub mod health;
mod hub;
mod image;
mod image_files;
mod install;
pub mod integrity;
pub mod interrupt;
mod join;
pub mod kubeconfig;
mod lifecycle;
mod lock;
mod output_log;
mod parallel;
pub mod pull;
mod remote;
mod save;
mod status;
mod tolerance;
mod uninstall;
mod upgrade;
mod verify;

use std::collections::BTreeMap;

pub use app_run::run_apps;
pub use check::HostCheck;
pub use connect::{Connections, Connector};
pub use error::{ApplyError, HostFailure};
pub use image::{resolve_images, resolve_with, AppliedImage};
pub use lifecycle::{add, delete, delete_with, reset, rollback, upgrade, LifecycleReport};
pub use lock::{lock_file, ClusterLock};
pub use parallel::MaxParallel;
pub use save::{
    clear_upgrade_intent, cluster_file, forget_cluster, load_cluster, load_upgrade_intent,
    save_cluster, UpgradeIntent,
};
pub use tolerance::MaxFailed;
pub use upgrade::{refuse_unfinished_upgrade, UpgradeOptions};

use crate::cluster::{Cluster, Phase};
use crate::progress::text::count;
use crate::progress::Progress;
use crate::store::Store;
use check::Checks;
use context::RunContext;
use install::Install;
use join::MasterFailure;
use status::{planned_status, record, record_node_names};

/// What `sealrs run` was asked to do, beyond the cluster itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print every host's plan and touch nothing.
    pub dry_run: bool,
    /// Where the cluster is saved (`$SEALRS_ROOT`): once the hosts are
    /// checked, and before any of them changes, `run` saves it there with
    /// its images pinned and each host's state (Pending on a first run), so
    /// that an operator killed at any moment leaves a cluster that `reset`
    /// knows and the same `run` converges.
    pub state_root: Option<std::path::PathBuf>,
    /// `--cmd`: replaces CMD of the first application image, one shell
    /// command each.
    pub cmd: Option<Vec<String>>,
    /// How many node joins may fail while the cluster comes up with the
    /// others (`--max-failed`); the failed ones stay Failed in the status.
    pub max_failed: MaxFailed,
    /// Hosts pull the cluster image's layers from this registry, each one
    /// that cannot falling back to the operator's routes.
    pub layers_from: Option<pull::RegistryLayers>,
}

/// What a run did, for the summary line and for tests.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Blob bytes sent, per host.
    pub bytes_sent: BTreeMap<String, u64>,
    /// Hosts whose plan changed something.
    pub changed: Vec<String>,
    /// The plans' rendering, when `dry_run`.
    pub dry_run: String,
    /// Per host, the damaged files this run repaired (host paths).
    pub repaired: BTreeMap<String, Vec<String>>,
    /// The node joins that failed within `--max-failed` (an
    /// [`ApplyError::Hosts`]): the command went on without them.
    pub tolerated: Option<ApplyError>,
}

/// Creates or converges the cluster: the phases of the module docs, in order.
pub fn run(
    store: &Store,
    cluster: &mut Cluster,
    connector: &dyn Connector,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, ApplyError> {
    let (report, result) = run_reporting(store, cluster, connector, options, progress);
    result.map(|()| report)
}

/// [`run`], with what it did (bytes sent, hosts changed) also when it
/// failed: for a result that says so per host (`--format json`).
pub fn run_reporting(
    store: &Store,
    cluster: &mut Cluster,
    connector: &dyn Connector,
    options: &RunOptions,
    progress: &dyn Progress,
) -> (RunReport, Result<(), ApplyError>) {
    let mut ctx =
        match RunContext::new(store, connector, progress, &cluster.images, options.clone()) {
            Ok(ctx) => ctx,
            Err(e) => return (RunReport::default(), Err(e)),
        };
    let result = phases(&mut ctx, store, cluster, progress);
    (std::mem::take(&mut ctx.report), result)
}

fn phases(
    ctx: &mut RunContext,
    store: &Store,
    cluster: &mut Cluster,
    progress: &dyn Progress,
) -> Result<(), ApplyError> {
    refuse_moved_pins(cluster, ctx)?;
    hub::ensure_password(cluster)?;
    ctx.hub_host = hub::serving(cluster);
    verify::cluster(cluster, ctx)?;
    if ctx.options.dry_run {
        ctx.report.dry_run = install::dry_run(ctx, cluster)?;
        ctx.report.dry_run.push_str(&apps::dry_run(ctx, cluster)?);
        return Ok(());
    }
    ctx.require_installer()?;

    progress.message(&format!(
        "connecting to {} of cluster {}",
        count(cluster.hosts.len(), "host"),
        cluster.name
    ));
    let checks = Checks {
        ports: Some(cluster),
        verify: Some(cluster),
        probe: true,
    };
    check::connect_and_check(ctx, cluster, checks)?;
    // Recorded only now: a run stopped by the checks above saves nothing.
    let pinned: Vec<&AppliedImage> = std::iter::once(&ctx.image).chain(&ctx.apps).collect();
    image::pin(store, cluster, &pinned)?;
    let probed = planned_status(&cluster.status);
    record_node_names(cluster, &ctx.checks);
    for host in &cluster.hosts {
        cluster.status.hosts.entry(host.key()).or_default();
    }
    if let Some(root) = &ctx.options.state_root {
        save::save_cluster(root, cluster)?;
    }
    progress.message("sending layers");
    distribute::distribute(ctx, Some(cluster))?;
    apps::place_patches(ctx, &|_| true)?;

    // The first master makes the cluster; the others join with its secrets,
    // unless every host's installer found that this would change nothing.
    // (The probes planned with the status as it was before the names were
    // recorded: theirs are the plans that would run only if no other part
    // of it differs.)
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    if planned_status(&cluster.status) == probed
        && check::converged(cluster, &ctx.checks, ctx.runtime.as_ref())
    {
        progress.message(&format!(
            "{}: their installers found nothing to change ({} install and join skipped)",
            count(cluster.hosts.len(), "host"),
            ctx.runtime.name()
        ));
        for host in cluster.hosts.clone() {
            record(cluster, &host, &ctx.image, &mut ctx.report, false);
        }
    } else {
        let snapshot = cluster.clone();
        let secrets = install::first_master(ctx, cluster, &snapshot, &first, Install::Cluster)?;
        let others: Vec<_> = snapshot
            .hosts
            .iter()
            .filter(|h| h.address != first.address)
            .cloned()
            .collect();
        let joined = join::join(
            ctx,
            cluster,
            &snapshot,
            others,
            &secrets,
            MasterFailure::Propagate,
        );
        let after = join::after_joins(ctx, &snapshot, &first, &secrets);
        joined?;
        after?;
    }
    apps::apply_apps(ctx, cluster)?;
    cluster.status.phase = Phase::Running;
    Ok(())
}

/// A saved cluster runs the digests it pinned: a `run` whose image name now
/// points elsewhere would change what it runs, which is `upgrade`'s job.
fn refuse_moved_pins(cluster: &Cluster, ctx: &RunContext) -> Result<(), ApplyError> {
    let moved: Vec<String> = std::iter::once(&ctx.image)
        .chain(&ctx.apps)
        .filter_map(|image| {
            let pin = cluster
                .status
                .images
                .iter()
                .find(|p| p.name == image.name)?;
            (pin.digest != image.digest).then(|| {
                format!(
                    "{} now points to {}, but the cluster runs {}",
                    image.name, image.digest, pin.digest
                )
            })
        })
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Refused {
        hosts: vec![format!("cluster {}", cluster.name)],
        reason: format!(
            "{}; nothing was changed: move the cluster with sealrs upgrade --cluster {} IMAGE",
            moved.join("; "),
            cluster.name
        ),
    })
}
