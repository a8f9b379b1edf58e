//! Flags, parsed without any I/O; validation that needs the disk happens later.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sealrs",
    version,
    about = about(),
    propagate_version = true
)]
pub struct Cli {
    /// Where all local state lives; the image store is ROOT/oci, a plain OCI image layout.
    /// [default: /var/lib/sealrs as root, else $XDG_DATA_HOME/sealrs]
    #[arg(long, global = true, env = "SEALRS_ROOT", value_name = "ROOT")]
    pub root: Option<PathBuf>,

    /// Print only results: no progress, no step lines.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The one-line description, naming the runtimes this sealrs knows.
fn about() -> String {
    format!(
        "Build, store and ship Kubernetes cluster images ({}) as OCI images",
        crate::runtime::names().join(", ")
    )
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Kubefile and a context directory.
    Build(BuildArgs),
    /// List images in the local store; with -q only their IMAGE IDs, one a line.
    Images(ImagesArgs),
    /// Show images' manifest and config (several: a JSON array).
    Inspect(InspectArgs),
    /// Give an image more names.
    Tag(TagArgs),
    /// Remove image names and the blobs nothing else uses.
    Rmi(RmiArgs),
    /// Remove blobs that no image in the store refers to, and stale temporary files.
    Prune,
    /// Re-hash every blob that an image refers to and report corruption.
    Fsck,
    /// Write images to an oci-archive tarball (to standard output without -o).
    Save(SaveArgs),
    /// Read images from an oci-archive or docker-archive tarball (from standard input without -i).
    Load(LoadArgs),
    /// Log in to a registry: prompts on a terminal, or reads the password with --password-stdin.
    Login(LoginArgs),
    /// Forget the credentials of a registry.
    Logout(LogoutArgs),
    /// Upload an image from the local store to a registry.
    Push(PushArgs),
    /// Download an image from a registry into the local store.
    Pull(PullArgs),
    /// Create a cluster on hosts over SSH from a cluster image, or converge one.
    Run(RunArgs),
    /// Add hosts to a saved cluster and join them.
    Add(AddArgs),
    /// Uninstall hosts and remove them from a saved cluster.
    Delete(DeleteArgs),
    /// Upgrade a saved cluster to another cluster image, host by host.
    Upgrade(UpgradeArgs),
    /// Uninstall the cluster from every host, remove what sealrs put there, forget the cluster.
    Reset(ResetArgs),
    /// List the saved clusters: name, runtime, version, hosts, state.
    Clusters(ClustersArgs),
    /// Each host of a saved cluster now: reachable, what sealrs installed, its
    /// services, its Node's Ready condition; exits non-zero when one is not healthy.
    Status(StatusArgs),
    /// Re-hash, on every host of a saved cluster, what sealrs keeps there (each
    /// layer's files, each placed file) and name each damaged file with what
    /// was expected and found; exits non-zero when one is (the next run repairs it).
    Verify(VerifyArgs),
    /// Write a saved cluster's admin kubeconfig, read from its first master (0600).
    Kubeconfig(KubeconfigArgs),
    /// Print a Clusterfile for `run -f` from `run`'s flags, to edit or keep (as sealos gen).
    Gen(GenArgs),
    /// Certificates of a saved cluster's control planes: check their expiry, renew them.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Take an etcd (or SQLite, or k0s) backup on one healthy master, with the saved cluster, into one file (0600).
    Backup(BackupArgs),
    /// Put a backup back onto a cluster of the same runtime, version and masters.
    Restore(RestoreArgs),
    /// Print a shell completion script, e.g. `sealrs completion bash > /etc/bash_completion.d/sealrs`.
    Completion(CompletionArgs),
    /// Runs on a host, from inside an applied image: unpack layers, verify, execute a plan.
    #[command(hide = true)]
    Installer(InstallerArgs),
}

#[derive(Debug, clap::Args)]
#[command(after_long_help = crate::runtime::env_keys_help())]
pub struct RunArgs {
    /// Cluster image(s) in the local store (names, IMAGE IDs or digests) or a
    /// registry (REGISTRY/REPO:TAG); the first is the rootfs image.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// A Clusterfile (sealrs.io/v1 or sealos apps.sealos.io/v1beta1 Cluster).
    #[arg(short = 'f', long = "file", value_name = "CLUSTERFILE")]
    pub clusterfile: Option<PathBuf>,
    /// Control-plane hosts, IP[:PORT][,IP...] or a range 10.0.0.11-10.0.0.13 (a host name
    /// without a dot must resolve here); the first one creates the cluster.
    #[arg(long, value_name = "IPS")]
    pub masters: Vec<String>,
    /// Worker hosts, IP[:PORT][,IP...] or a range.
    #[arg(long, value_name = "IPS")]
    pub nodes: Vec<String>,
    /// Cluster env, KEY=VALUE, passed to hosts byte for byte (the keys each
    /// runtime reads are listed at the end of --help).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Cluster env from a file, read as `docker run --env-file` reads one:
    /// KEY=VALUE lines (value byte for byte, no quotes removed), `#`
    /// comments, blank lines, KEY alone taken from this environment; -e wins.
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Name under which the cluster is saved [default: default]. Without
    /// hosts (--masters, -f), the saved cluster the images (applications,
    /// patches) are applied to, on its hosts and with its rootfs image.
    #[arg(long)]
    pub cluster: Option<String>,
    /// SSH user on every host [default: root].
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Private key [default: ~/.ssh/id_ed25519, then id_rsa].
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Read the SSH password from standard input.
    #[arg(long)]
    pub ssh_password_stdin: bool,
    /// SSH port of hosts that do not give their own.
    #[arg(long)]
    pub port: Option<u16>,
    /// known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record the keys of hosts seen for the first time (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Keep layers inside the SSH connection. By default a host fetches them
    /// from this machine over TLS (a certificate made for the run, pinned, and
    /// a one-time token; every blob checked against its digest), and falls
    /// back to SSH when it cannot reach this machine.
    #[arg(long)]
    pub layers_over_ssh: bool,
    /// How many hosts are worked on at once (connected, checked, sent
    /// layers, joined, upgraded, uninstalled): 1 or more.
    #[arg(long, value_name = "N", default_value_t = crate::apply::MaxParallel::DEFAULT)]
    pub max_parallel: crate::apply::MaxParallel,
    /// Seconds to reach each host over SSH (TCP connection, handshake and
    /// login together) before giving up on it: 1 or more.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ssh_timeout: u64,
    /// How many node joins may fail, a number or a percentage of the nodes
    /// joined (rounded down): the cluster comes up with the nodes that
    /// joined, the failed ones are listed (host, step, error), saved as
    /// Failed, and the command exits 0 with a warning; one more failure
    /// exits non-zero. Running the same command again (or `sealrs add`)
    /// joins them. A control plane's failure always fails the command.
    #[arg(long, value_name = "N|N%", default_value = "0")]
    pub max_failed: crate::apply::MaxFailed,
    #[command(flatten)]
    pub preview: DryRunFlags,
    /// Replaces CMD of the first application image: one shell command each
    /// time it is given (no splitting at commas, unlike sealos).
    #[arg(long, value_name = "COMMAND")]
    pub cmd: Vec<String>,
    #[command(flatten)]
    pub result: ResultFlags,
    /// How to reach the registry of an image that is not in the local store.
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub pull: HostPullFlags,
}

/// Whether hosts pull the image's layers from its registry, and with what.
#[derive(Debug, Clone, clap::Args)]
pub struct HostPullFlags {
    /// Hosts pull the cluster image's layers from the registry its name
    /// names, with this machine's CAs for it (the default for an image that
    /// was only there); a host that cannot gets them from this machine.
    #[arg(long, conflicts_with = "layers_over_ssh")]
    pub layers_from_registry: bool,
    /// Hand hosts this machine's basic-auth credentials for the registry
    /// (on standard input, never in argv), for them to pull the layers.
    #[arg(long)]
    pub registry_credentials_to_hosts: bool,
}

/// `sealrs gen`: the cluster flags of `run`, written as a Clusterfile.
#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Cluster image(s) for spec.images; the first is the rootfs image.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Control-plane hosts, IP[:PORT][,IP...] or a range 10.0.0.11-10.0.0.13; the first one creates the cluster.
    #[arg(long, value_name = "IPS", required = true)]
    pub masters: Vec<String>,
    /// Worker hosts, IP[:PORT][,IP...] or a range.
    #[arg(long, value_name = "IPS")]
    pub nodes: Vec<String>,
    /// Cluster env, KEY=VALUE (see `sealrs run --help` for the keys each runtime reads).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// metadata.name: the name under which `run` saves the cluster [default: default].
    #[arg(long)]
    pub cluster: Option<String>,
    /// spec.ssh.user [default: root].
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// spec.ssh.key: the private key's path.
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// spec.ssh.port: the SSH port of hosts that do not give their own.
    #[arg(long)]
    pub port: Option<u16>,
}

/// How lifecycle commands reach the hosts of a saved cluster (user, port and
/// key are saved with the cluster; these add to or override them).
#[derive(Debug, Clone, clap::Args)]
pub struct SshFlags {
    /// Private key [default: the one saved with the cluster].
    #[arg(long, value_name = "FILE")]
    pub ssh_key: Option<PathBuf>,
    /// Read the SSH password from standard input.
    #[arg(long)]
    pub ssh_password_stdin: bool,
    /// known_hosts file [default: ~/.ssh/known_hosts].
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Record the keys of hosts seen for the first time (a changed key is always refused).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Keep layers inside the SSH connection. By default a host fetches them
    /// from this machine over TLS (a certificate made for the run, pinned, and
    /// a one-time token; every blob checked against its digest), and falls
    /// back to SSH when it cannot reach this machine.
    #[arg(long)]
    pub layers_over_ssh: bool,
    /// How many hosts are worked on at once (connected, checked, sent
    /// layers, joined, upgraded, uninstalled): 1 or more.
    #[arg(long, value_name = "N", default_value_t = crate::apply::MaxParallel::DEFAULT)]
    pub max_parallel: crate::apply::MaxParallel,
    /// Seconds to reach each host over SSH (TCP connection, handshake and
    /// login together) before giving up on it: 1 or more.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub ssh_timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Worker hosts to add, IP[:PORT][,IP...] or a range.
    #[arg(long, value_name = "IPS")]
    pub nodes: Vec<String>,
    /// Control-plane hosts to add, IP[:PORT][,IP...] or a range.
    #[arg(long, value_name = "IPS")]
    pub masters: Vec<String>,
    /// How many node joins may fail, a number or a percentage of the nodes
    /// added (rounded down): the others join, the failed ones are listed
    /// (host, step, error), saved as Failed, and the command exits 0 with a
    /// warning; one more failure exits non-zero. The same command again
    /// joins them. A control plane's failure always fails the command.
    #[arg(long, value_name = "N|N%", default_value = "0")]
    pub max_failed: crate::apply::MaxFailed,
    #[command(flatten)]
    pub preview: DryRunFlags,
    #[command(flatten)]
    pub ssh: SshFlags,
    #[command(flatten)]
    pub result: ResultFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub pull: HostPullFlags,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Hosts to delete, IP[:PORT][,IP...] (masters or workers; never the first master).
    #[arg(long, value_name = "IPS", required = true)]
    pub nodes: Vec<String>,
    /// Forget a host that cannot be reached once its Node (and a control
    /// plane's etcd member) is removed through the first master; what sealrs
    /// put on it stays there.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub preview: DryRunFlags,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    #[command(flatten)]
    pub ssh: SshFlags,
    #[command(flatten)]
    pub result: ResultFlags,
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// The cluster image to upgrade to, in the local store or a registry.
    #[arg(value_name = "IMAGE", required_unless_present = "rollback")]
    pub image: Option<String>,
    /// Return every host of an upgrade that did not complete to the image
    /// it ran before (that image's upgrade plans, from the rootfs kept on
    /// each host).
    #[arg(long, conflicts_with = "image")]
    pub rollback: bool,
    /// How many workers upgrade at once: a number, or a percentage of the
    /// workers (rounded down, at least 1). Control planes go one at a time.
    #[arg(long, value_name = "N|N%", default_value = "10%")]
    pub max_unavailable: crate::runtime::MaxUnavailable,
    /// Cordon each node but do not drain it before its upgrade (its pods
    /// keep running through the restart).
    #[arg(long)]
    pub no_drain: bool,
    /// Seconds each node has to report Ready with the new version before
    /// the upgrade stops.
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub ready_timeout: u64,
    #[command(flatten)]
    pub preview: DryRunFlags,
    #[command(flatten)]
    pub ssh: SshFlags,
    #[command(flatten)]
    pub result: ResultFlags,
    /// How to reach the registry of an image that is not in the local store.
    #[command(flatten)]
    pub registry: RegistryFlags,
    #[command(flatten)]
    pub pull: HostPullFlags,
}

#[derive(Debug, clap::Args)]
pub struct ResetArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Go on when hosts cannot be reached (what sealrs put on them stays there).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub preview: DryRunFlags,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    #[command(flatten)]
    pub ssh: SshFlags,
    #[command(flatten)]
    pub result: ResultFlags,
}

/// How a command that changes hosts reports its result.
#[derive(Debug, Clone, clap::Args)]
pub struct ResultFlags {
    /// `json`: a result object on stdout (per host: changed, failed with
    /// step and message, bytes sent); progress stays on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ResultFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResultFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ClustersArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct KubeconfigArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Write it to FILE (mode 0600) [default: standard output].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// The backup file (mode 0600) [default: ./CLUSTER-backup-UNIXTIME.tar].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Say on which master and how, and take nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The backup file `sealrs backup` wrote.
    #[arg(short, long, value_name = "FILE")]
    pub input: PathBuf,
    /// The saved cluster to restore onto.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Restore onto a running cluster: its services are stopped and its data replaced.
    #[arg(long)]
    pub force: bool,
    /// Check the file and print each host's plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct InstallerArgs {
    #[command(subcommand)]
    pub command: InstallerCommand,
}

#[derive(Debug, Subcommand)]
pub enum InstallerCommand {
    /// Install the first control-plane: the request (JSON) on standard input;
    /// prints the report (JSON).
    Install(InstallerRequestArgs),
    /// Join this host to the cluster, as the request on standard input says.
    Join(InstallerRequestArgs),
    /// Upgrade this host to the request's target version.
    Upgrade(InstallerRequestArgs),
    /// Uninstall the runtime from this host.
    Uninstall(InstallerRequestArgs),
    /// Check, changing nothing, that this host can take the request on standard
    /// input; prints every violation (JSON) and fails if there is one.
    Verify(InstallerVerifyArgs),
    /// Execute the plan read from standard input (JSON); prints the report (JSON).
    Apply(InstallerApplyArgs),
    /// Unpack layer blobs, in order, into a rootfs directory.
    Unpack(InstallerUnpackArgs),
    /// Read the certificates in the directories the JSON list on standard
    /// input names (the runtime's cert sources); prints them (JSON).
    Certs(InstallerCertsArgs),
    /// Renew this control plane's certificates as its runtime does, the
    /// request (JSON) on standard input; prints the report (JSON).
    RenewCerts(InstallerRenewCertsArgs),
    /// Remove the rootfs and layer directories that no kept image
    /// references (after an upgrade); prints what went and the bytes freed (JSON).
    Gc(InstallerGcArgs),
    /// Re-hash every file of the layer directories kept on this host and
    /// every placed file against their records; prints the damaged ones
    /// (JSON) and fails if there is one.
    Integrity(InstallerIntegrityArgs),
    /// Read the image's templates and the files its Configs change from the
    /// layer directories the JSON on standard input names; prints them (JSON).
    Originals(InstallerOriginalsArgs),
}

#[derive(Debug, clap::Args)]
pub struct InstallerOriginalsArgs {
    /// Where the host's / is (the layer directories are found under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InstallerIntegrityArgs {
    /// Where the host's / is (the layers and placed files are found under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InstallerGcArgs {
    /// An image whose rootfs stays (its digest), and with it the layers its
    /// stamp names: the one the host runs and the one before it.
    #[arg(long = "keep-image", value_name = "DIGEST", required = true)]
    pub keep_images: Vec<String>,
    /// A layer that stays (its blob's digest).
    #[arg(long = "keep-layer", value_name = "DIGEST")]
    pub keep_layers: Vec<String>,
    /// Where the layer directories are.
    #[arg(long, value_name = "DIR", default_value = crate::host_paths::HOST_LAYERS)]
    pub layers: PathBuf,
    /// Where the images' rootfs directories are.
    #[arg(long, value_name = "DIR", default_value = crate::host_paths::DEFAULT_ROOTFS_DIR)]
    pub rootfs_dir: PathBuf,
    /// A directory of other rootfs (application images) whose stamps' layers stay.
    #[arg(long, value_name = "DIR")]
    pub pinned_by: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct InstallerApplyArgs {
    /// The image's unpacked rootfs (unpacked there first when --layers is given).
    #[arg(long, value_name = "DIR")]
    pub rootfs: PathBuf,
    /// Layer blobs to unpack into --rootfs first, in image order.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    pub layers: Vec<PathBuf>,
    /// Where the host's / is (every path of the plan is resolved under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// The host's role [default: the role the plan's rootfs step names, else master].
    #[arg(long, value_name = "ROLE")]
    pub role: Option<String>,
    /// The program that runs systemctl.
    #[arg(long, value_name = "PROGRAM", default_value = "systemctl")]
    pub systemctl: String,
    /// Print the plan and the files it would place; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct InstallerRequestArgs {
    /// Where the host's / is (every path of the request and the plan is resolved under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// The program that runs systemctl.
    #[arg(long, value_name = "PROGRAM", default_value = "systemctl")]
    pub systemctl: String,
}

#[derive(Debug, clap::Args)]
pub struct InstallerVerifyArgs {
    /// Where the host's / is (every path of the request is resolved under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
    /// Also tell whether this operation would change the host (a dry run of
    /// its plan). The operator sets it through the environment, which an
    /// installer from before this flag ignores rather than failing on.
    #[arg(long, value_name = "OPERATION", env = "SEALRS_PROBE")]
    pub probe: Option<ProbeOperation>,
    /// The program that runs systemctl (for --probe).
    #[arg(long, value_name = "PROGRAM", default_value = "systemctl")]
    pub systemctl: String,
}

/// What `installer verify --probe` asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeOperation {
    Install,
    Join,
}

#[derive(Debug, clap::Args)]
pub struct InstallerUnpackArgs {
    /// The rootfs directory to create or replace.
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// The layers, in image order: layer directories kept by earlier unpacks
    /// (named by their blob's digest), or blob files (zstd, gzip or plain tar).
    #[arg(value_name = "LAYER", required = true)]
    pub layers: Vec<PathBuf>,
    /// A layer that is not there yet: its blob's SIZE bytes come next on
    /// standard input and are unpacked into DIR (named by the blob's digest),
    /// which is kept once they check out.
    #[arg(long, value_name = "DIR=SIZE")]
    pub incoming: Vec<String>,
    /// The incoming layers come from the operator over TLS instead of stdin:
    /// standard input holds the ticket (JSON) that says where and how. Each
    /// blob is followed by its SHA-256 as the operator found it, which is
    /// checked instead of hashing the blob again here.
    #[arg(long)]
    pub fetch: bool,
    /// The incoming layers come from the image's registry: standard input
    /// holds where and how (JSON: registry, repository, CAs, credentials if
    /// allowed). Each blob is hashed here and kept only if it has its digest.
    #[arg(long, conflicts_with = "fetch")]
    pub from_registry: bool,
    /// A layer directory that the installer bootstrap just unpacked (its blob
    /// checked by the host's sha256sum): record its files' sizes and SHA-256
    /// now, if it has no record. The operator sets it through the
    /// environment, which an installer from before this flag ignores.
    #[arg(long, value_name = "DIR", env = "SEALRS_RECORD")]
    pub record: Option<PathBuf>,
}

/// How to reach registries: shared by every command that talks to one.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryFlags {
    /// Verify TLS certificates. `--tls-verify=false` also allows plain HTTP to any
    /// registry [default: verify; plain HTTP only for localhost and 127.0.0.0/8].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub tls_verify: Option<bool>,

    /// Extra CA certificates (`*.crt`) and client keys, like /etc/containers/certs.d/HOST:PORT.
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// The auth file to read and write [default: $REGISTRY_AUTH_FILE, else
    /// $XDG_RUNTIME_DIR/containers/auth.json; ~/.docker/config.json is read too].
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,

    /// containers-registries.conf(5) naming mirrors to pull through (tried
    /// in order, then the registry) and registries that are `insecure` (plain
    /// HTTP, unverified TLS) [default: $CONTAINERS_REGISTRIES_CONF,
    /// else /etc/containers/registries.conf; drop-ins of registries.conf.d too].
    #[arg(long, value_name = "FILE")]
    pub registries_conf: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// Registry host, with a port if it has one (e.g. 127.0.0.1:5000).
    pub registry: String,
    /// User name [default: asked for on a terminal].
    #[arg(short, long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password from standard input, for scripts (never in argv;
    /// without it, a terminal is asked with echo off).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// Registry host whose credentials go, with a port if it has one.
    pub registry: String,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
}

#[derive(Debug, clap::Args)]
#[command(after_help = IMAGE_NAMES)]
pub struct PushArgs {
    /// Image in the local store: a name, an IMAGE ID or a digest.
    pub image: String,
    /// Where to push [default: the image's own name; required for an ID or digest].
    pub destination: Option<String>,
    /// Blobs uploaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Image to pull, e.g. registry.k8s.io/pause:3.9 or nginx (docker.io/library/nginx:latest).
    pub image: String,
    /// OS/ARCH[/VARIANT] to choose from a multi-platform image [default: this machine's].
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The Kubefile [default: CONTEXT/Kubefile, Sealfile, Containerfile or Dockerfile, the first that exists].
    #[arg(short = 'f', long = "file", value_name = "KUBEFILE")]
    pub file: Option<PathBuf>,

    /// Name of the image, NAME[:TAG]; repeat for more names.
    #[arg(short = 't', long = "tag", value_name = "NAME:TAG", required = true)]
    pub tags: Vec<String>,

    /// Value for an ARG of the Kubefile, KEY=VALUE (or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,

    /// A label set as if LABEL KEY=VALUE ended the Kubefile, taken as written (KEY alone: empty), as buildah does.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// An env entry set as if it ended the Kubefile, as buildah does: moved to the end, $VAR expanded against the image's env (KEY alone: from the environment).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Layer compression. zstd is the default: several times faster than gzip at a similar size.
    #[arg(long, value_enum, default_value_t = CompressionArg::Zstd)]
    pub compression: CompressionArg,

    /// Files at least this big get a layer of their own, shared between images that carry them (bytes, or with K/M/G suffix).
    #[arg(long, value_name = "SIZE", default_value = "32M", value_parser = parse_size)]
    pub split_threshold: u64,

    /// Target platform OS/ARCH written into the image config [default: this machine's].
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// Rebuild every layer, ignoring the layer cache.
    #[arg(long)]
    pub no_cache: bool,

    /// For a FROM image missing from the local store, which is pulled.
    #[command(flatten)]
    pub registry_flags: RegistryFlags,
    /// Do not pull the container images that image lists, manifests and chart values
    /// name into the rootfs (the image then needs a registry when it is applied).
    #[arg(long)]
    pub no_images: bool,

    /// Tag the image without checking its rootfs against its layout (layouts/*.toml). For experts.
    #[arg(long)]
    pub skip_validation: bool,

    /// The sealrs binary that rootfs images carry as their installer (opt/sealrs/sealrs)
    /// [default: this sealrs, when the image is for this machine's architecture].
    #[arg(long, value_name = "PATH", conflicts_with = "no_installer")]
    pub installer: Option<PathBuf>,

    /// Do not embed the installer into rootfs images (they must then be applied by other means).
    #[arg(long)]
    pub no_installer: bool,

    /// The build context: files that COPY and ADD can read.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    Zstd,
    Gzip,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Columns for people.
    Table,
    /// JSON for scripts.
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// Only the images of this repository, REPO or REPO:TAG (e.g. k3s or docker.io/library/k3s:v1.30).
    #[arg(value_name = "REPO")]
    pub repository: Option<String>,
    /// `table` for people, `json` for scripts (-q prints IDs only, whatever the format).
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// How images are named for a local command, shown in its --help.
const IMAGE_NAMES: &str = "Images are named by NAME[:TAG], NAME@DIGEST, the IMAGE ID that `sealrs images` prints \
(or its first digits, if no other image starts alike) or a manifest or config digest (sha256:...). \
docker://NAME is NAME. oci:DIR:REF and other tools' transports are refused: \
bring such an image in with `skopeo copy oci:DIR:REF oci-archive:image.tar` and `sealrs load -i image.tar`.";

#[derive(Debug, clap::Args)]
#[command(after_help = IMAGE_NAMES)]
pub struct InspectArgs {
    /// Images: names, IMAGE IDs or digests.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// `json` prints manifest and config for scripts; `table` a summary for people.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
#[command(after_help = IMAGE_NAMES)]
pub struct TagArgs {
    /// Existing image: a name, an IMAGE ID or a digest.
    pub source: String,
    /// New names (a name that is on another image moves to this one).
    #[arg(required = true)]
    pub targets: Vec<String>,
}

#[derive(Debug, clap::Args)]
#[command(after_help = IMAGE_NAMES)]
pub struct RmiArgs {
    /// Images to remove: a name removes that name; an IMAGE ID or digest removes the image.
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
    /// Remove an image given by IMAGE ID or digest even if several names point to it (all of them go).
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = IMAGE_NAMES)]
pub struct SaveArgs {
    /// Output file (oci-archive) [default: standard output, unless it is a terminal].
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Images to save, with their names (an image given by ID keeps all its names).
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Input file: an oci-archive or a docker-archive, plain, gzip or zstd
    /// [default: standard input, unless it is a terminal].
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell to write the completion script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `123`, `64K`, `32M`, `1G` (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("{s:?} is not a size; use bytes or a number with K, M or G"))
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Every certificate the runtime keeps on each master: subject, expiry,
    /// days left; exits non-zero when one expires within --warn-days or a
    /// master cannot be read.
    Check(CertCheckArgs),
    /// Renew the certificates with the runtime's own procedure, one master
    /// at a time, each answering again before the next; then refresh the
    /// saved admin kubeconfig.
    Renew(CertRenewArgs),
}

#[derive(Debug, clap::Args)]
pub struct CertCheckArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// A certificate that expires within this many days fails the check.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub warn_days: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ListFormat,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct CertRenewArgs {
    /// The saved cluster.
    #[arg(long, default_value = "default")]
    pub cluster: String,
    /// Names the API server's certificate gets besides its own, DNS names
    /// or IP addresses, comma-separated (kubeadm: apiServer.certSANs;
    /// k3s: tls-san; they replace those an earlier --alt-names gave).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub alt_names: Vec<String>,
    /// kubeadm: seconds to wait after a static pod's manifest leaves and
    /// again after it is back (the kubelet's fileCheckFrequency).
    #[arg(long, value_name = "SECS", default_value_t = crate::runtime::certs::DEFAULT_POD_RESTART_WAIT_SECS)]
    pub pod_restart_wait: u64,
    /// Print each master's plan; reach no host and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub ssh: SshFlags,
}

#[derive(Debug, clap::Args)]
pub struct InstallerCertsArgs {
    /// Where the host's / is (the directories are read under it).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub host_root: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct InstallerRenewCertsArgs {
    #[command(flatten)]
    pub request: InstallerRequestArgs,
    /// A name the API server's certificate gets (checked by the operator).
    #[arg(long = "alt-name", value_name = "NAME")]
    pub alt_names: Vec<String>,
    /// Seconds a restarted static pod is given.
    #[arg(long, value_name = "SECS", default_value_t = crate::runtime::certs::DEFAULT_POD_RESTART_WAIT_SECS)]
    pub pod_restart_wait: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_suffixes_and_refuse_junk() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("32M"), Ok(32 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("M").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn every_command_and_argument_says_what_it_is_for() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            // The installer runs on hosts, from inside an image: not for people.
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut cmd = Cli::command();
        cmd.build();
        let mut missing = Vec::new();
        walk(&cmd, "sealrs", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

/// `--dry-run` of the commands that change hosts, and what it may show.
#[derive(Debug, Clone, clap::Args)]
pub struct DryRunFlags {
    /// Print what would happen on each host, and around it (order, batches,
    /// drain); reach no host and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Show the values of -e keys that look like secrets (*PASSWORD*,
    /// *TOKEN*, *SECRET*, *KEY*) in the dry run instead of masking them.
    #[arg(long, requires = "dry_run")]
    pub show_secrets: bool,
}
