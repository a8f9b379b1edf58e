//! `sealrs run`: flags or a Clusterfile in, the processor over SSH, state saved.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};

use super::args::{ResultFormat, RunArgs};
use super::result::{CommandResult, Done};
use crate::apply::{self, Connector, RunOptions};
use crate::cluster::{Address, Cluster, ClusterArgs, Host, PasswordSource, SshConfig};
use crate::progress::text::{count, size};
use crate::progress::Progress;
use crate::store::Store;
use crate::transport::{ConnectOptions, Secret, Ssh, Transport, TransportError};

/// Connects over SSH with the cluster's settings, host keys checked; shared by
/// `run` and the lifecycle commands.
pub(super) struct SshConnector {
    known_hosts: Option<PathBuf>,
    accept_new_host_keys: bool,
    /// Read once from stdin (`--ssh-password-stdin`), used for hosts that say `stdin`.
    stdin_password: Option<Secret>,
    /// `false` with `--layers-over-ssh`.
    direct_data: bool,
    /// `--max-parallel`.
    max_parallel: apply::MaxParallel,
    /// `--ssh-timeout`.
    connect_timeout: Duration,
}

impl SshConnector {
    /// Reads the password from stdin first when `password_stdin`.
    pub(super) fn new(
        known_hosts: Option<PathBuf>,
        accept_new_host_keys: bool,
        password_stdin: bool,
    ) -> Result<SshConnector> {
        let stdin_password = if password_stdin {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the SSH password from standard input")?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Some(Secret::new(text.strip_suffix('\r').unwrap_or(text)))
        } else {
            None
        };
        Ok(SshConnector {
            known_hosts,
            accept_new_host_keys,
            stdin_password,
            direct_data: true,
            max_parallel: apply::MaxParallel::default(),
            connect_timeout: ConnectOptions::default().connect_timeout,
        })
    }

    /// The connector `run`'s flags ask for (`run` and `run APP --cluster`).
    pub(super) fn for_run(args: &RunArgs) -> Result<SshConnector> {
        Ok(SshConnector::new(
            args.known_hosts.clone(),
            args.accept_new_host_keys,
            args.ssh_password_stdin,
        )?
        .direct_data(!args.layers_over_ssh)
        .max_parallel(args.max_parallel)
        .connect_timeout(args.ssh_timeout))
    }

    /// Whether hosts may fetch layers from this machine directly (see
    /// [`crate::transport::direct`]).
    pub(super) fn direct_data(mut self, allowed: bool) -> SshConnector {
        self.direct_data = allowed;
        self
    }

    /// How many hosts are worked on at once.
    pub(super) fn max_parallel(mut self, cap: apply::MaxParallel) -> SshConnector {
        self.max_parallel = cap;
        self
    }

    /// How long reaching one host may take (`--ssh-timeout`).
    pub(super) fn connect_timeout(mut self, seconds: u64) -> SshConnector {
        self.connect_timeout = Duration::from_secs(seconds);
        self
    }

    fn password(&self, source: &PasswordSource) -> Result<Secret, TransportError> {
        let missing = |detail: String| TransportError::Connect {
            host: String::new(),
            detail,
        };
        match source {
            PasswordSource::Stdin => self.stdin_password.clone().ok_or_else(|| {
                missing("the password should come from stdin, but none was read".into())
            }),
            PasswordSource::Env(name) => std::env::var(name)
                .map(Secret::new)
                .map_err(|_| missing(format!("the password variable {name} is not set"))),
            PasswordSource::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
                .map_err(|e| missing(format!("cannot read the password file {path}: {e}"))),
            PasswordSource::Value(secret) => Ok(secret.clone()),
        }
    }
}

impl Connector for SshConnector {
    fn connect(&self, host: &Host, ssh: &SshConfig) -> Result<Box<dyn Transport>, TransportError> {
        let password = ssh
            .password_from
            .as_ref()
            .map(|s| self.password(s))
            .transpose()?;
        let options = ConnectOptions {
            user: ssh
                .user
                .clone()
                .unwrap_or_else(|| crate::cluster::DEFAULT_SSH_USER.to_string()),
            port: host
                .port
                .or(ssh.port)
                .unwrap_or(crate::cluster::DEFAULT_SSH_PORT),
            key: ssh.key.as_ref().map(PathBuf::from),
            password,
            // The cluster's (saved with it, or given now) before this
            // invocation's default.
            known_hosts: ssh
                .known_hosts
                .as_ref()
                .map(PathBuf::from)
                .or_else(|| self.known_hosts.clone()),
            accept_new_host_keys: self.accept_new_host_keys,
            connect_timeout: self.connect_timeout,
            direct_data: self.direct_data,
        };
        Ok(Box::new(Ssh::connect(&host.address.to_string(), &options)?))
    }

    fn max_parallel(&self) -> apply::MaxParallel {
        self.max_parallel
    }
}

/// The `KEY=VALUE` words of every `--env-file`, in order, then of `-e`: a
/// later value of a key wins, so `-e` wins over the files.
fn env_words(args: &RunArgs) -> Result<Vec<String>> {
    let mut words = Vec::new();
    for path in &args.env_file {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading the env file {}", path.display()))?;
        let lookup = |key: &str| std::env::var(key).ok();
        let pairs = crate::cluster::parse_env_file(&bytes, &path.display().to_string(), &lookup)?;
        words.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    words.extend(args.env.iter().cloned());
    Ok(words)
}

fn load_cluster(args: &RunArgs) -> Result<Cluster> {
    let env = env_words(args)?;
    if let Some(path) = &args.clusterfile {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the Clusterfile {}", path.display()))?;
        let mut cluster = Cluster::from_yaml(&text, &path.display().to_string())?;
        if !args.images.is_empty() {
            cluster.images = args.images.clone();
        }
        if let Some(name) = &args.cluster {
            cluster.name = name.clone();
        }
        // -e and --env-file over the Clusterfile's env.
        for word in &env {
            let (key, value) =
                crate::cluster::parse_env_pair(word).map_err(|e| anyhow::anyhow!("-e: {e}"))?;
            cluster.env.insert(key, value);
        }
        return Ok(cluster);
    }
    if args.masters.is_empty() {
        bail!("say where the cluster goes: --masters IP[,IP...] (and --nodes), or -f Clusterfile");
    }
    Ok(Cluster::from_args(&ClusterArgs {
        name: args.cluster.clone().unwrap_or_default(),
        masters: args.masters.clone(),
        nodes: args.nodes.clone(),
        images: args.images.clone(),
        env,
        user: args.ssh_user.clone(),
        port: args.port,
        key: args.ssh_key.as_ref().map(|p| p.display().to_string()),
        password: args.ssh_password_stdin.then_some(PasswordSource::Stdin),
        known_hosts: args.known_hosts.as_ref().map(|p| p.display().to_string()),
    })?)
}

/// A host name without a dot (`foo`) is more often a typo than a host:
/// it must resolve here (`/etc/hosts`, the DNS search domains) before
/// anything else happens. Names with a dot are left to the SSH connection.
pub(super) fn refuse_unresolved_bare_names<'h>(
    hosts: impl IntoIterator<Item = &'h Host>,
) -> Result<()> {
    use std::net::ToSocketAddrs as _;
    let unresolved: Vec<&str> = hosts
        .into_iter()
        .filter_map(|h| match &h.address {
            Address::Hostname(name) if !name.contains('.') => Some(name.as_str()),
            _ => None,
        })
        .filter(|name| {
            (*name, crate::cluster::DEFAULT_SSH_PORT)
                .to_socket_addrs()
                .is_err()
        })
        .collect();
    if !unresolved.is_empty() {
        bail!(
            "{}: not an IP address, and not a name this machine resolves (/etc/hosts, DNS); give the host's IP address (a range: 10.0.0.11-10.0.0.13) or a name that resolves",
            unresolved.join(", ")
        );
    }
    Ok(())
}

pub fn run(store: &Store, root: &Path, args: &RunArgs, progress: &dyn Progress) -> Result<()> {
    if let (None, true, true, Some(name)) = (
        &args.clusterfile,
        args.masters.is_empty(),
        args.nodes.is_empty(),
        &args.cluster,
    ) {
        return super::app_run_cmd::run(store, root, name, args, progress);
    }
    let mut cluster = load_cluster(args)?;
    refuse_unresolved_bare_names(&cluster.hosts)?;
    for image in &mut cluster.images {
        *image = super::resolve::name_for(store, image)?;
    }
    let route = super::registry_image::Route {
        dry_run: args.preview.dry_run,
        over_ssh: args.layers_over_ssh,
        pull: &args.pull,
    };
    let layers_from = super::registry_image::fetch_missing(
        store,
        &cluster.images,
        &cluster,
        &args.registry,
        route,
        progress,
    )?;
    // One command per cluster at a time (a dry run changes nothing).
    let _lock = if args.preview.dry_run {
        None
    } else {
        Some(apply::ClusterLock::acquire(
            root,
            &cluster.name,
            &format!("run --cluster {}", cluster.name),
        )?)
    };
    // A run onto a cluster sealrs already made knows what its hosts run.
    match apply::load_cluster(root, &cluster.name) {
        Ok(saved) => {
            // `run` never removes hosts: one it does not name would keep
            // running the cluster, forgotten by sealrs.
            let missing = cluster.missing_from(&saved);
            if !missing.is_empty() {
                let hosts: Vec<String> = missing
                    .iter()
                    .map(|h| {
                        let roles: Vec<String> = h.roles.iter().map(ToString::to_string).collect();
                        format!("{} ({})", h.key(), roles.join(","))
                    })
                    .collect();
                let keys: Vec<String> = missing.iter().map(|h| h.key()).collect();
                bail!(
                    "cluster {} has {} host{} that this run does not name: {}; run does not remove hosts, so nothing was changed: name them too, or remove them first with sealrs delete --cluster {} --nodes {}",
                    cluster.name,
                    missing.len(),
                    if missing.len() == 1 { "" } else { "s" },
                    hosts.join(", "),
                    cluster.name,
                    keys.join(",")
                );
            }
            cluster.keep_status_of(&saved)
        }
        Err(apply::ApplyError::NoCluster { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    // After an upgrade that did not complete, an older image would
    // downgrade the hosts it reached, saved or not.
    let unfinished = apply::load_upgrade_intent(root, &cluster.name)?;
    if let (Some(intent), Some(first)) = (&unfinished, cluster.images.first()) {
        let image = apply::resolve_with(store, std::slice::from_ref(first), layers_from.as_ref())?
            .remove(0);
        apply::refuse_unfinished_upgrade(intent, &cluster, &image)?;
    }
    let connector = SshConnector::for_run(args)?;
    let options = RunOptions {
        dry_run: args.preview.dry_run,
        state_root: (!args.preview.dry_run).then(|| root.to_path_buf()),
        cmd: (!args.cmd.is_empty()).then(|| args.cmd.clone()),
        max_failed: args.max_failed,
        layers_from,
    };
    if !args.preview.dry_run {
        apply::interrupt::handle_ctrl_c();
    }
    let (report, result) =
        apply::run_reporting(store, &mut cluster, &connector, &options, progress);
    if args.preview.dry_run {
        result?;
        return super::mask::print_plans(&report.dry_run, &cluster.env, args.preview.show_secrets);
    }
    // Saved before any host changed and again now, even if the run then
    // failed: a rerun picks up from the hosts' status. A run that stopped
    // before touching a host saves nothing.
    if !cluster.status.hosts.is_empty() {
        apply::save_cluster(root, &cluster)?;
    }
    if args.result.format == ResultFormat::Json {
        let hosts: Vec<String> = cluster.hosts.iter().map(|h| h.key()).collect();
        let done = Done {
            changed: &report.changed,
            bytes_sent: &report.bytes_sent,
            repaired: &report.repaired,
        };
        CommandResult::new("run", &cluster.name, &hosts, done, result.as_ref().err())
            .tolerating(report.tolerated.as_ref())
            .print()?;
    }
    super::interrupted_next(root, &cluster.name, result)?;
    // Every host runs what that upgrade went to: it completed this way.
    let pinned = |digest: &str| cluster.status.images.iter().any(|i| i.digest == digest);
    if unfinished.is_some_and(|intent| pinned(&intent.to.digest)) {
        apply::clear_upgrade_intent(root, &cluster.name)?;
    }
    let saved = apply::cluster_file(root, &cluster.name);
    let sent: u64 = report.bytes_sent.values().sum();
    let failed = report
        .tolerated
        .as_ref()
        .map_or(0, |e| e.host_failures().len());
    if let Some(tolerated) = &report.tolerated {
        eprintln!(
            "warning: the cluster runs without the nodes below (--max-failed {}), saved as Failed; running the same command again joins them:\n{tolerated}",
            args.max_failed
        );
    }
    eprintln!(
        "cluster {} is running on {} ({} changed, {} of layers sent); state in {}",
        cluster.name,
        count(cluster.hosts.len() - failed, "host"),
        report.changed.len(),
        size(sent),
        saved.display()
    );
    save_kubeconfig(root, &cluster, &connector, !report.changed.is_empty());
    Ok(())
}

/// Keeps the admin kubeconfig beside the saved cluster (0600) and says
/// where; a cluster that is running is not failed for it, the user is told
/// how to fetch it later. A run that changed no host keeps the one saved
/// before: fetching it again costs a new SSH connection to the first master
/// on every unchanged re-apply (`sealrs kubeconfig` fetches a fresh one).
pub(super) fn save_kubeconfig(
    root: &Path,
    cluster: &Cluster,
    connector: &dyn Connector,
    changed: bool,
) {
    let path = apply::cluster_file(root, &cluster.name).with_file_name("kubeconfig");
    if !changed && path.exists() {
        eprintln!("admin kubeconfig in {}", path.display());
        return;
    }
    let written = apply::kubeconfig::admin_kubeconfig(cluster, connector)
        .map_err(anyhow::Error::from)
        .and_then(|text| {
            crate::atomic_file::write(&path, text.as_bytes(), Some(0o600))
                .with_context(|| format!("writing {}", path.display()))
        });
    match written {
        Ok(()) => eprintln!("admin kubeconfig in {}", path.display()),
        Err(e) => eprintln!(
            "warning: the admin kubeconfig was not saved ({e:#}); fetch it with sealrs kubeconfig --cluster {}",
            cluster.name
        ),
    }
}
