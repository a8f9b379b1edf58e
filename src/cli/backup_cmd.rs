//! `sealrs backup` and `sealrs restore`: a saved cluster in, the backup file
//! out (or back in); the work is `apply::backup`'s.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::args::{BackupArgs, RestoreArgs};
use super::lifecycle_cmd::{connector, locked, print, with_ssh};
use crate::apply::{self, backup};
use crate::progress::Progress;
use crate::store::Store;

/// `-o`, or `./CLUSTER-backup-UNIXTIME.tar`.
fn output(args: &BackupArgs) -> PathBuf {
    args.output.clone().unwrap_or_else(|| {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from(format!("{}-backup-{secs}.tar", args.cluster))
    })
}

pub fn backup(root: &Path, args: &BackupArgs, progress: &dyn Progress) -> Result<()> {
    let connector = connector(&args.ssh)?;
    let output = output(args);
    if args.dry_run {
        let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
        return print(&backup::backup_dry_run(&cluster, &connector, &output)?);
    }
    let (cluster, _lock) = locked(root, &args.cluster, "backup", &args.ssh)?;
    // Ctrl-C lets the running step finish and the cleanup run (a k3s
    // stopped for its SQLite copy is started again) before it exits.
    apply::interrupt::handle_ctrl_c();
    let state = apply::cluster_file(root, &cluster.name)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let report = backup::backup(&cluster, &state, &connector, &output, progress)?;
    let m = &report.manifest;
    eprintln!(
        "backed up cluster {} ({} {}, {} taken on {}) to {}: {} bytes, {}",
        m.cluster,
        m.runtime,
        m.version,
        m.kind,
        m.taken_on,
        report.output.display(),
        m.snapshot_size,
        m.snapshot_sha256
    );
    Ok(())
}

/// The restore, then the other masters joined again when the runtime's
/// plan says so (as `sealrs add` joins them).
pub fn restore(
    store: &Store,
    root: &Path,
    args: &RestoreArgs,
    progress: &dyn Progress,
) -> Result<()> {
    let connector = connector(&args.ssh)?;
    if args.dry_run {
        let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
        return print(&backup::restore_dry_run(&cluster, &connector, &args.input)?);
    }
    let (mut cluster, _lock) = locked(root, &args.cluster, "restore", &args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let restored = backup::restore(&cluster, &connector, &args.input, args.force, progress)?;
    let m = &restored.manifest;
    eprintln!(
        "restored cluster {} from {} ({} taken on {} of cluster {})",
        cluster.name,
        args.input.display(),
        m.kind,
        m.taken_on,
        m.cluster
    );
    if !restored.rejoin.is_empty() {
        let loaded = cluster.clone();
        let result = apply::add(
            store,
            &mut cluster,
            restored.rejoin,
            apply::MaxFailed::default(),
            None,
            &connector,
            progress,
        );
        if cluster != loaded {
            apply::save_cluster(root, &cluster)?;
        }
        let report = result?;
        eprintln!(
            "joined again as control planes: {}",
            report.hosts.join(", ")
        );
    }
    Ok(())
}
