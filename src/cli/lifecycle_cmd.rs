//! `sealrs add`, `delete`, `upgrade` and `reset`: a saved cluster in, the
//! processor over SSH, the state saved again (or forgotten after a reset).

use std::path::Path;

use anyhow::Result;

use super::args::{AddArgs, DeleteArgs, ResetArgs, SshFlags, UpgradeArgs};
use super::run_cmd::SshConnector;
use crate::apply::{self, LifecycleReport};
use crate::cluster::{Cluster, PasswordSource};
use crate::progress::Progress;
use crate::store::Store;

/// The saved cluster with this invocation's SSH flags applied, a copy of it
/// (to tell whether the command changed anything), and the connector.
fn open(root: &Path, name: &str, ssh: &SshFlags) -> Result<(Cluster, Cluster, SshConnector)> {
    let mut cluster = apply::load_cluster(root, name)?;
    if let Some(key) = &ssh.ssh_key {
        cluster.ssh.key = Some(key.display().to_string());
    }
    if ssh.ssh_password_stdin {
        cluster.ssh.password_from = Some(PasswordSource::Stdin);
    }
    let loaded = cluster.clone();
    let connector = SshConnector::new(
        ssh.known_hosts.clone(),
        ssh.accept_new_host_keys,
        ssh.ssh_password_stdin,
    )?
    .direct_data(!ssh.layers_over_ssh);
    Ok((cluster, loaded, connector))
}

/// Saves the cluster when the command changed it, even when it then failed:
/// the next command starts from what the hosts really are.
fn save_if_changed(root: &Path, cluster: &Cluster, loaded: &Cluster) -> Result<()> {
    if cluster != loaded {
        apply::save_cluster(root, cluster)?;
    }
    Ok(())
}

fn bytes_lines(report: &LifecycleReport) -> String {
    report
        .bytes_sent
        .iter()
        .map(|(host, bytes)| format!("  {host}: {bytes} bytes sent\n"))
        .collect()
}

pub fn add(store: &Store, root: &Path, args: &AddArgs, progress: &dyn Progress) -> Result<()> {
    let (mut cluster, loaded, connector) = open(root, &args.cluster, &args.ssh)?;
    if args.nodes.is_empty() && args.masters.is_empty() {
        anyhow::bail!("say which hosts to add: --nodes IP[,IP...] and/or --masters IP[,IP...]");
    }
    let new_hosts = crate::cluster::parse_hosts(&cluster, &args.masters, &args.nodes)?;
    let result = apply::add(store, &mut cluster, new_hosts, &connector, progress);
    save_if_changed(root, &cluster, &loaded)?;
    let report = result?;
    let sent: u64 = report.bytes_sent.values().sum();
    eprint!(
        "added {} to cluster {} ({} changed, {} bytes of layers sent); state in {}\n{}",
        report.hosts.join(", "),
        cluster.name,
        report.changed.len(),
        sent,
        apply::cluster_file(root, &cluster.name).display(),
        bytes_lines(&report)
    );
    Ok(())
}

pub fn delete(
    store: &Store,
    root: &Path,
    args: &DeleteArgs,
    progress: &dyn Progress,
) -> Result<()> {
    let (mut cluster, loaded, connector) = open(root, &args.cluster, &args.ssh)?;
    let addresses = crate::cluster::parse_targets(&cluster, &args.nodes)?;
    let result = apply::delete(store, &mut cluster, &addresses, &connector, progress);
    save_if_changed(root, &cluster, &loaded)?;
    let report = result?;
    eprintln!(
        "deleted {} from cluster {} ({} hosts left); state in {}",
        report.hosts.join(", "),
        cluster.name,
        cluster.hosts.len(),
        apply::cluster_file(root, &cluster.name).display()
    );
    Ok(())
}

pub fn upgrade(
    store: &Store,
    root: &Path,
    args: &UpgradeArgs,
    progress: &dyn Progress,
) -> Result<()> {
    let (mut cluster, loaded, connector) = open(root, &args.cluster, &args.ssh)?;
    let image = super::resolve::name_for(store, &args.image)?;
    let result = apply::upgrade(store, &mut cluster, &image, &connector, progress);
    save_if_changed(root, &cluster, &loaded)?;
    let report = result?;
    let sent: u64 = report.bytes_sent.values().sum();
    eprint!(
        "cluster {} upgraded to {} on {} hosts ({} changed, {} bytes of layers sent); state in {}\n{}",
        cluster.name,
        cluster.images.first().map(String::as_str).unwrap_or("?"),
        report.hosts.len(),
        report.changed.len(),
        sent,
        apply::cluster_file(root, &cluster.name).display(),
        bytes_lines(&report)
    );
    Ok(())
}

pub fn reset(store: &Store, root: &Path, args: &ResetArgs, progress: &dyn Progress) -> Result<()> {
    let (mut cluster, loaded, connector) = open(root, &args.cluster, &args.ssh)?;
    let result = apply::reset(store, &mut cluster, args.force, &connector, progress);
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            save_if_changed(root, &cluster, &loaded)?;
            return Err(err.into());
        }
    };
    apply::forget_cluster(root, &cluster.name)?;
    for failure in &report.unreachable {
        eprintln!(
            "warning: {} was not reset (unreachable); what sealrs put there stays: {}",
            failure.host, failure.error
        );
    }
    eprintln!(
        "cluster {} reset on {} hosts ({} changed); removed its saved state",
        cluster.name,
        report.hosts.len(),
        report.changed.len()
    );
    Ok(())
}
