//! `sealrs run APP... --cluster NAME` (no hosts named): application and patch
//! images applied to a saved cluster, its hosts and rootfs image as saved.

use std::path::Path;

use anyhow::Result;

use super::args::{ResultFormat, RunArgs};
use super::result::{CommandResult, Done};
use super::run_cmd::SshConnector;
use crate::apply::{self, RunOptions};
use crate::cluster::{parse_env_pair, PasswordSource};
use crate::progress::Progress;
use crate::store::Store;

pub(super) fn run(
    store: &Store,
    root: &Path,
    name: &str,
    args: &RunArgs,
    progress: &dyn Progress,
) -> Result<()> {
    let images = args
        .images
        .iter()
        .map(|image| super::resolve::name_for(store, image))
        .collect::<Result<Vec<_>>>()?;
    if images.is_empty() {
        anyhow::bail!(
            "name the application images to run on cluster {name} (sealrs run APP... --cluster {name}), or its hosts (--masters) to make or change the cluster"
        );
    }
    let _lock = if args.preview.dry_run {
        None
    } else {
        Some(apply::ClusterLock::acquire(
            root,
            name,
            &format!("run --cluster {name}"),
        )?)
    };
    let mut cluster = match apply::load_cluster(root, name) {
        Err(apply::ApplyError::NoCluster { .. }) => anyhow::bail!(
            "there is no saved cluster {name}: run APP... --cluster {name} without hosts applies images to a cluster sealrs made; to make it, name its hosts: sealrs run ROOTFS [APP...] --cluster {name} --masters IPS"
        ),
        other => other?,
    };
    for pair in &args.env {
        let (k, v) = parse_env_pair(pair).map_err(|e| anyhow::anyhow!("-e {pair:?}: {e}"))?;
        cluster.env.insert(k, v);
    }
    if let Some(key) = &args.ssh_key {
        cluster.ssh.key = Some(key.display().to_string());
    }
    if let Some(user) = &args.ssh_user {
        cluster.ssh.user = Some(user.clone());
    }
    if args.ssh_password_stdin {
        cluster.ssh.password_from = Some(PasswordSource::Stdin);
    }
    let connector = SshConnector::for_run(args)?;
    let options = RunOptions {
        dry_run: args.preview.dry_run,
        state_root: None,
        cmd: (!args.cmd.is_empty()).then(|| args.cmd.clone()),
        max_failed: Default::default(),
        layers_from: None,
    };
    if !args.preview.dry_run {
        apply::interrupt::handle_ctrl_c();
    }
    let (report, result) =
        apply::run_apps(store, &mut cluster, &images, &connector, &options, progress);
    if args.preview.dry_run {
        result?;
        std::io::Write::write_all(&mut std::io::stdout().lock(), report.dry_run.as_bytes())?;
        return Ok(());
    }
    apply::save_cluster(root, &cluster)?;
    if args.result.format == ResultFormat::Json {
        let hosts: Vec<String> = cluster.hosts.iter().map(|h| h.key()).collect();
        let done = Done {
            changed: &report.changed,
            bytes_sent: &report.bytes_sent,
            repaired: &report.repaired,
        };
        CommandResult::new("run", &cluster.name, &hosts, done, result.as_ref().err()).print()?;
    }
    super::interrupted_next(root, &cluster.name, result)?;
    let sent: u64 = report.bytes_sent.values().sum();
    eprintln!(
        "cluster {} runs {} ({} of layers sent); state in {}",
        cluster.name,
        images.join(", "),
        crate::progress::text::size(sent),
        apply::cluster_file(root, &cluster.name).display()
    );
    Ok(())
}
