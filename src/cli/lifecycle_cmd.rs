//! `sealrs add`, `delete`, `upgrade` and `reset`: a saved cluster in, the
//! processor over SSH, the state saved again (or forgotten after a reset).

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::Path;

use anyhow::{bail, Result};

use super::args::{
    AddArgs, ClustersArgs, DeleteArgs, KubeconfigArgs, ListFormat, ResetArgs, SshFlags, StatusArgs,
    UpgradeArgs,
};
use super::args::{ResultFlags, ResultFormat};
use super::mask::print_plans;
use super::result::{CommandResult, Done, HostError};
use super::run_cmd::SshConnector;
use crate::apply::{self, ClusterLock, LifecycleReport};
use crate::cluster::{Cluster, PasswordSource};
use crate::progress::text::{count, size};
use crate::progress::Progress;
use crate::store::Store;

/// The saved cluster, locked for `command` (one command per cluster at a
/// time; the lock is taken before the cluster is read), with this
/// invocation's SSH flags applied.
pub(super) fn locked(
    root: &Path,
    name: &str,
    command: &str,
    ssh: &SshFlags,
) -> Result<(Cluster, ClusterLock)> {
    let lock = ClusterLock::acquire(root, name, &format!("{command} --cluster {name}"))?;
    Ok((with_ssh(root, name, ssh)?, lock))
}

/// The saved cluster, with the SSH flags given now over what it saved.
pub(super) fn with_ssh(root: &Path, name: &str, ssh: &SshFlags) -> Result<Cluster> {
    let mut cluster = apply::load_cluster(root, name)?;
    if let Some(key) = &ssh.ssh_key {
        cluster.ssh.key = Some(key.display().to_string());
    }
    if ssh.ssh_password_stdin {
        cluster.ssh.password_from = Some(PasswordSource::Stdin);
    }
    if let Some(file) = &ssh.known_hosts {
        cluster.ssh.known_hosts = Some(file.display().to_string());
    }
    Ok(cluster)
}

/// The saved cluster as it is, for a dry run (no lock: nothing changes).
pub(super) fn unlocked(root: &Path, name: &str) -> Result<Cluster> {
    Ok(apply::load_cluster(root, name)?)
}

/// A dry run's rendering, on stdout.
pub(super) fn print(text: &str) -> Result<()> {
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(())
}

/// The connector for this invocation's SSH flags (reads the password from
/// stdin when asked to).
pub(super) fn connector(ssh: &SshFlags) -> Result<SshConnector> {
    Ok(SshConnector::new(
        ssh.known_hosts.clone(),
        ssh.accept_new_host_keys,
        ssh.ssh_password_stdin,
    )?
    .direct_data(!ssh.layers_over_ssh)
    .max_parallel(ssh.max_parallel)
    .connect_timeout(ssh.ssh_timeout))
}

/// Says what `what` will remove and asks on a terminal: `--yes` skips the
/// question; without a terminal (and without `--yes`) the command is refused
/// before anything happens.
fn confirm(what: &str, removes: &[String], yes: bool) -> Result<()> {
    let mut text = format!("sealrs {what} will:\n");
    for line in removes {
        text.push_str(&format!("  - {line}\n"));
    }
    if yes {
        eprint!("{text}");
        return Ok(());
    }
    if !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        bail!("{text}sealrs {what} asks before it removes anything, and there is no terminal to ask on; nothing was changed: pass --yes to go on, or --dry-run to see each host's plan");
    }
    eprint!("{text}Go on? [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        bail!("sealrs {what} cancelled; nothing was changed");
    }
    Ok(())
}

/// What uninstalling removes from each of `hosts`, one line each.
fn removal_lines(cluster: &Cluster, hosts: &[&crate::cluster::Host]) -> Vec<String> {
    hosts
        .iter()
        .map(|h| {
            let roles: Vec<String> = h.roles.iter().map(ToString::to_string).collect();
            let runtime = cluster
                .status
                .hosts
                .get(&h.key())
                .and_then(|s| s.runtime.clone())
                .unwrap_or_else(|| "the runtime".into());
            format!(
                "{} ({}): uninstall {runtime} and remove {}",
                h.key(),
                roles.join(","),
                crate::host_paths::HOST_DIR
            )
        })
        .collect()
}

/// Saves the cluster when the command changed it, even when it then failed:
/// the next command starts from what the hosts really are.
fn save_if_changed(root: &Path, cluster: &Cluster, loaded: &Cluster) -> Result<()> {
    if cluster != loaded {
        apply::save_cluster(root, cluster)?;
    }
    Ok(())
}

/// `--format json`: the command's result on stdout (see `result.rs`), for
/// `hosts` (the ones it was about) and any other its report or error names.
fn json_result(
    flags: &ResultFlags,
    command: &str,
    cluster: &str,
    hosts: &[String],
    result: &std::result::Result<LifecycleReport, apply::ApplyError>,
) -> Result<()> {
    if flags.format != ResultFormat::Json {
        return Ok(());
    }
    let none = LifecycleReport::default();
    let report = result.as_ref().unwrap_or(&none);
    let mut keys = hosts.to_vec();
    keys.extend(report.hosts.iter().filter(|h| !hosts.contains(h)).cloned());
    let done = Done {
        changed: &report.changed,
        bytes_sent: &report.bytes_sent,
        repaired: &report.repaired,
    };
    let mut out = CommandResult::new(command, cluster, &keys, done, result.as_ref().err())
        .tolerating(report.tolerated.as_ref());
    // Hosts that `reset --force` went on without: not reset.
    for skipped in &report.unreachable {
        if let Some(host) = out.hosts.iter_mut().find(|h| h.host == skipped.host) {
            host.failed = Some(HostError {
                step: None,
                message: format!("not reset (unreachable): {skipped}"),
            });
        }
    }
    out.print()
}

fn bytes_lines(report: &LifecycleReport) -> String {
    report
        .bytes_sent
        .iter()
        .map(|(host, bytes)| format!("  {host}: {} sent\n", size(*bytes)))
        .collect()
}

pub fn add(store: &Store, root: &Path, args: &AddArgs, progress: &dyn Progress) -> Result<()> {
    if args.preview.dry_run {
        let cluster = unlocked(root, &args.cluster)?;
        let new_hosts = crate::cluster::parse_hosts(&cluster, &args.masters, &args.nodes)?;
        super::run_cmd::refuse_unresolved_bare_names(&new_hosts)?;
        let route = super::registry_image::Route {
            dry_run: true,
            over_ssh: args.ssh.layers_over_ssh,
            pull: &args.pull,
        };
        let layers_from =
            super::registry_image::saved_image_layers(store, &cluster, &args.registry, route)?;
        let plans = apply::dry_run::add(store, &cluster, &new_hosts, layers_from, progress)?;
        return print_plans(&plans, &cluster.env, args.preview.show_secrets);
    }
    let (mut cluster, _lock) = locked(root, &args.cluster, "add", &args.ssh)?;
    let loaded = cluster.clone();
    if args.nodes.is_empty() && args.masters.is_empty() {
        anyhow::bail!("say which hosts to add: --nodes IP[,IP...] and/or --masters IP[,IP...]");
    }
    let new_hosts = crate::cluster::parse_hosts(&cluster, &args.masters, &args.nodes)?;
    super::run_cmd::refuse_unresolved_bare_names(&new_hosts)?;
    let about: Vec<String> = new_hosts.iter().map(|h| h.key()).collect();
    let route = super::registry_image::Route {
        dry_run: false,
        over_ssh: args.ssh.layers_over_ssh,
        pull: &args.pull,
    };
    let layers_from =
        super::registry_image::saved_image_layers(store, &cluster, &args.registry, route)?;
    let connector = connector(&args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let result = apply::add(
        store,
        &mut cluster,
        new_hosts,
        args.max_failed,
        layers_from,
        &connector,
        progress,
    );
    save_if_changed(root, &cluster, &loaded)?;
    json_result(&args.result, "add", &cluster.name, &about, &result)?;
    let report = super::interrupted_next(root, &cluster.name, result)?;
    if let Some(tolerated) = &report.tolerated {
        eprintln!(
            "warning: these nodes did not join (--max-failed {}), saved as Failed; running the same command again joins them:\n{tolerated}",
            args.max_failed
        );
    }
    let sent: u64 = report.bytes_sent.values().sum();
    eprint!(
        "added {} to cluster {} ({} changed, {} of layers sent); state in {}\n{}",
        report.hosts.join(", "),
        cluster.name,
        report.changed.len(),
        size(sent),
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
    if args.preview.dry_run {
        let cluster = unlocked(root, &args.cluster)?;
        let addresses = crate::cluster::parse_targets(&cluster, &args.nodes)?;
        let plans = apply::dry_run::delete(store, &cluster, &addresses, progress)?;
        return print_plans(&plans, &cluster.env, args.preview.show_secrets);
    }
    let (mut cluster, _lock) = locked(root, &args.cluster, "delete", &args.ssh)?;
    let loaded = cluster.clone();
    let addresses = crate::cluster::parse_targets(&cluster, &args.nodes)?;
    let leaving: Vec<_> = cluster
        .hosts
        .iter()
        .filter(|h| addresses.contains(&h.address))
        .collect();
    let mut removes = vec![format!(
        "drain {} and delete {} from Kubernetes, on the first master",
        if leaving.len() == 1 {
            "this host"
        } else {
            "these hosts"
        },
        if leaving.len() == 1 {
            "its node"
        } else {
            "their nodes"
        },
    )];
    removes.extend(removal_lines(&cluster, &leaving));
    let about: Vec<String> = leaving.iter().map(|h| h.key()).collect();
    confirm("delete", &removes, args.yes)?;
    let connector = connector(&args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let result = apply::delete_with(
        store,
        &mut cluster,
        &addresses,
        args.force,
        &connector,
        progress,
    );
    save_if_changed(root, &cluster, &loaded)?;
    json_result(&args.result, "delete", &cluster.name, &about, &result)?;
    let report = super::interrupted_next(root, &cluster.name, result)?;
    eprintln!(
        "deleted {} from cluster {} ({} left); state in {}",
        report.hosts.join(", "),
        cluster.name,
        count(cluster.hosts.len(), "host"),
        apply::cluster_file(root, &cluster.name).display()
    );
    Ok(())
}

/// The options of `args`; the intent of the upgrade is saved in `root`.
fn upgrade_options(args: &UpgradeArgs, root: Option<&Path>) -> apply::UpgradeOptions {
    apply::UpgradeOptions {
        max_unavailable: args.max_unavailable,
        drain: !args.no_drain,
        ready_timeout: std::time::Duration::from_secs(args.ready_timeout),
        state_root: root.map(Path::to_path_buf),
        layers_from: None,
    }
}

pub fn upgrade(
    store: &Store,
    root: &Path,
    args: &UpgradeArgs,
    progress: &dyn Progress,
) -> Result<()> {
    if args.preview.dry_run {
        let Some(image) = &args.image else {
            bail!("--rollback has no --dry-run: sealrs upgrade --dry-run --cluster {} IMAGE shows the upgrade plans of the image it returns to", args.cluster);
        };
        let cluster = unlocked(root, &args.cluster)?;
        let image = super::resolve::name_for(store, image)?;
        let images = std::slice::from_ref(&image);
        let route = super::registry_image::Route {
            dry_run: true,
            over_ssh: args.ssh.layers_over_ssh,
            pull: &args.pull,
        };
        let layers_from = super::registry_image::fetch_missing(
            store,
            images,
            &cluster,
            &args.registry,
            route,
            progress,
        )?;
        let options = apply::UpgradeOptions {
            layers_from,
            ..upgrade_options(args, None)
        };
        let plans = apply::dry_run::upgrade(store, &cluster, &image, &options, progress)?;
        return print_plans(&plans, &cluster.env, args.preview.show_secrets);
    }
    let (mut cluster, _lock) = locked(root, &args.cluster, "upgrade", &args.ssh)?;
    let loaded = cluster.clone();
    let image = match &args.image {
        Some(image) => Some(super::resolve::name_for(store, image)?),
        None => None,
    };
    let route = super::registry_image::Route {
        dry_run: false,
        over_ssh: args.ssh.layers_over_ssh,
        pull: &args.pull,
    };
    let layers_from = match &image {
        Some(image) => super::registry_image::fetch_missing(
            store,
            std::slice::from_ref(image),
            &cluster,
            &args.registry,
            route,
            progress,
        )?,
        None => None,
    };
    let connector = connector(&args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let options = apply::UpgradeOptions {
        layers_from,
        ..upgrade_options(args, Some(root))
    };
    let result = match &image {
        Some(image) => apply::upgrade(store, &mut cluster, image, &options, &connector, progress),
        None => apply::rollback(store, &mut cluster, &options, &connector, progress),
    };
    save_if_changed(root, &cluster, &loaded)?;
    let about: Vec<String> = loaded.hosts.iter().map(|h| h.key()).collect();
    json_result(&args.result, "upgrade", &cluster.name, &about, &result)?;
    let report = super::interrupted_next(root, &cluster.name, result)?;
    let sent: u64 = report.bytes_sent.values().sum();
    eprint!(
        "cluster {} {} {} on {} ({} changed, {} of layers sent); state in {}\n{}",
        cluster.name,
        if image.is_some() {
            "upgraded to"
        } else {
            "returned to"
        },
        cluster.images.first().map(String::as_str).unwrap_or("?"),
        count(report.hosts.len(), "host"),
        report.changed.len(),
        size(sent),
        apply::cluster_file(root, &cluster.name).display(),
        bytes_lines(&report)
    );
    Ok(())
}

pub fn reset(store: &Store, root: &Path, args: &ResetArgs, progress: &dyn Progress) -> Result<()> {
    if args.preview.dry_run {
        let cluster = unlocked(root, &args.cluster)?;
        let plans = apply::dry_run::reset(store, &cluster, progress)?;
        return print_plans(&plans, &cluster.env, args.preview.show_secrets);
    }
    let (mut cluster, _lock) = locked(root, &args.cluster, "reset", &args.ssh)?;
    let loaded = cluster.clone();
    let all: Vec<_> = cluster.hosts.iter().collect();
    let mut removes = removal_lines(&cluster, &all);
    removes.push(format!(
        "forget the saved cluster {} ({})",
        cluster.name,
        apply::cluster_file(root, &cluster.name).display()
    ));
    confirm("reset", &removes, args.yes)?;
    let connector = connector(&args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let result = apply::reset(store, &mut cluster, args.force, &connector, progress);
    let about: Vec<String> = loaded.hosts.iter().map(|h| h.key()).collect();
    json_result(&args.result, "reset", &cluster.name, &about, &result)?;
    let report = match result {
        Ok(report) => report,
        Err(err) => {
            save_if_changed(root, &cluster, &loaded)?;
            return super::interrupted_next(root, &cluster.name, Err(err));
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
        "cluster {} reset on {} ({} changed); removed its saved state",
        cluster.name,
        count(report.hosts.len(), "host"),
        report.changed.len()
    );
    Ok(())
}

/// `sealrs clusters`: the saved clusters, a table or JSON.
pub fn clusters(root: &Path, args: &ClustersArgs) -> Result<()> {
    let list = apply::kubeconfig::saved_clusters(root)?;
    let mut out = String::new();
    match args.format {
        ListFormat::Json => {
            out = serde_json::to_string_pretty(&list)?;
            out.push('\n');
        }
        ListFormat::Table => {
            out.push_str(&format!(
                "{:<20} {:<8} {:<16} {:>5}  {}\n",
                "NAME", "RUNTIME", "VERSION", "HOSTS", "STATE"
            ));
            for c in &list {
                out.push_str(&format!(
                    "{:<20} {:<8} {:<16} {:>5}  {:?}\n",
                    c.name,
                    c.runtime.as_deref().unwrap_or("-"),
                    c.version.as_deref().unwrap_or("-"),
                    c.hosts,
                    c.state
                ));
            }
        }
    }
    print(&out)
}

/// `sealrs status`: each host of a saved cluster, a table or JSON; an error
/// (exit code non-zero) when a host is not healthy.
pub fn status(root: &Path, args: &StatusArgs) -> Result<()> {
    let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
    let connector = connector(&args.ssh)?;
    let health = apply::health::status(&cluster, &connector)?;
    let out = match args.format {
        ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&health)?),
        ListFormat::Table => apply::health::table(&health),
    };
    print(&out)?;
    if health.healthy {
        return Ok(());
    }
    let bad: Vec<&str> = health
        .hosts
        .iter()
        .filter(|h| !h.healthy)
        .map(|h| h.host.as_str())
        .collect();
    anyhow::bail!(
        "cluster {}: {} not healthy: {}",
        cluster.name,
        if bad.len() == 1 {
            "1 host is"
        } else {
            "hosts are"
        },
        bad.join(", ")
    )
}

/// `sealrs kubeconfig`: the admin kubeconfig of a saved cluster, from its
/// first master, to stdout or to a 0600 file.
pub fn kubeconfig(root: &Path, args: &KubeconfigArgs) -> Result<()> {
    let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
    let connector = connector(&args.ssh)?;
    let text = apply::kubeconfig::admin_kubeconfig(&cluster, &connector)?;
    match &args.output {
        None => print(&text),
        Some(path) => {
            crate::atomic_file::write(path, text.as_bytes(), Some(0o600))
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            eprintln!(
                "wrote the admin kubeconfig of cluster {} to {} (server {})",
                cluster.name,
                path.display(),
                apply::kubeconfig::server(&cluster)?
            );
            Ok(())
        }
    }
}
