//! `sealrs run APP... --cluster NAME`: application (and patch) images applied
//! to a cluster sealrs saved, with its hosts and the rootfs image it pinned,
//! as `sealos run APP` does on an existing cluster.
//!
//! Only the images named run; the ones applied before are not run again. The
//! saved rootfs image stays the cluster's first image whatever happens, and
//! each new image is added to the cluster (its name, its pin) once it has
//! run on its hosts: an image that fails is named in the error and left
//! out, so a rerun of the same command tries it again.

use super::apps;
use super::connect;
use super::context::RunContext;
use super::image::{pin, resolve_images, resolve_pinned};
use super::{ApplyError, Connector, RunOptions, RunReport};
use crate::cluster::Cluster;
use crate::layout::labels::{read_labels, ImageType};
use crate::layout::spec::Layouts;
use crate::progress::Progress;
use crate::store::Store;

/// Applies `images` to the saved `cluster`; the report says what it sent (or,
/// for `options.dry_run`, what it would run).
pub fn run_apps(
    store: &Store,
    cluster: &mut Cluster,
    images: &[String],
    connector: &dyn Connector,
    options: &RunOptions,
    progress: &dyn Progress,
) -> (RunReport, Result<(), ApplyError>) {
    let mut report = RunReport::default();
    let result = (|| {
        let rootfs = resolve_pinned(store, &only_rootfs(cluster)?, &|w| progress.message(w))?;
        let apps = resolve_images(store, images)?;
        for app in &apps {
            let info = read_labels(&app.info.labels, Layouts::embedded()).info;
            if info.image_type.map(|t| t.value) == Some(ImageType::Rootfs) {
                return Err(ApplyError::Refused {
                    hosts: vec![format!("cluster {}", cluster.name)],
                    reason: format!(
                        "{} is a rootfs image; run --cluster applies application and patch images to the rootfs the cluster runs, and nothing was changed: move the cluster with sealrs upgrade --cluster {} {}",
                        app.name, cluster.name, app.name
                    ),
                });
            }
        }
        let images: Vec<_> = rootfs.into_iter().chain(apps).collect();
        let mut ctx = RunContext::with_images(store, connector, progress, images, options.clone())?;
        let result = apply(&mut ctx, cluster);
        report = std::mem::take(&mut ctx.report);
        result
    })();
    (report, result)
}

/// The saved cluster with its rootfs image alone (the first it names).
fn only_rootfs(cluster: &Cluster) -> Result<Cluster, ApplyError> {
    let mut only = cluster.clone();
    only.images.truncate(1);
    if only.images.is_empty() {
        return Err(ApplyError::NoImage);
    }
    Ok(only)
}

fn apply(ctx: &mut RunContext, cluster: &mut Cluster) -> Result<(), ApplyError> {
    if ctx.options.dry_run {
        ctx.report.dry_run = apps::dry_run(ctx, cluster)?;
        return Ok(());
    }
    ctx.require_installer()?;
    // Patch images go to every host; applications only need the first master.
    let mut targets = cluster.clone();
    if !ctx.apps.iter().any(apps::is_patch) {
        let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
        targets.hosts = vec![first];
    }
    ctx.progress.message(&format!(
        "connecting to {} hosts of cluster {}",
        targets.hosts.len(),
        cluster.name
    ));
    connect::all(ctx, &targets)?;
    apps::place_patches(ctx, &|_| true)?;
    let result = apps::apply_apps(ctx, cluster);
    // What ran is the cluster's from now on, pinned beside what it had.
    let ran: Vec<_> = ctx
        .apps
        .iter()
        .filter(|app| {
            cluster
                .status
                .hosts
                .values()
                .any(|h| h.images.iter().any(|i| i.digest == app.digest))
        })
        .collect();
    let before = cluster.status.images.clone();
    pin(ctx.store, cluster, &ran)?;
    let mut pins = before;
    pins.retain(|p| !ran.iter().any(|app| app.name == p.name));
    pins.append(&mut cluster.status.images);
    cluster.status.images = pins;
    for app in &ran {
        if !cluster.images.contains(&app.name) {
            cluster.images.push(app.name.clone());
        }
    }
    result
}
