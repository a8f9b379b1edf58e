//! The runtime seam: what a Kubernetes distribution needs on one host.
//!
//! A [`Runtime`] turns a request (install the first control-plane, join,
//! upgrade, uninstall) for one host into a [`Plan`]; it never opens a
//! connection. The processor decides *which hosts, in what order*
//! ([`upgrade_order`] helps it) and carries values from one host to the next:
//! the install plan of the first master captures join secrets under keys the
//! runtime names, and [`Runtime::join_secrets`] turns them into what the join
//! plans of the other hosts need.
//!
//! The image's lifecycle hooks (labels `check`, `init`, `clean`, …, as sealos
//! has them) come into every runtime's plans through one helper, [`hooks`].
//!
//! Adding a distribution means one file implementing [`Runtime`] (its
//! plans, capture keys and join-secret parsing), its `mod` line and one
//! entry in [`REGISTRY`], and its layout in `layouts/`, whose
//! `runtime_aliases` are the only other names it answers to.

pub mod backup;
pub mod certs;
pub mod hooks;
pub mod hub;
pub mod k0s;
pub mod k3s;
pub mod kubeadm;
mod unit;

use std::collections::BTreeMap;
use std::fmt;

use crate::cluster::{is_valid_node_name, Address, Cluster, Host, Role, Secret};
use crate::layout::labels::{read_labels, RUNTIME_KEYS};
use crate::layout::Layouts;
use crate::plan::{Check, Plan, Step};

pub use crate::layout::{Version, VersionError};
pub use certs::{CertFiles, CertRenewal, CertSource, RenewOptions};
pub use hooks::{hook_env, init_marker, Hook, HookKind, Hooks, HOOK_MARKER_DIR};
pub use k0s::K0s;
pub use k3s::K3s;
pub use kubeadm::Kubeadm;
pub use unit::{env_file, exec_arg};

pub use crate::host_paths::{DEFAULT_ROOTFS_DIR, MARKER_DIR};
/// How many workers upgrade at once by default: 10% of them (at least
/// one), as k0sctl's `--concurrency.workerDisruptionPercent` default
/// (<https://github.com/k0sproject/k0sctl/blob/main/phase/upgrade_workers.go>).
pub const DEFAULT_MAX_UNAVAILABLE: MaxUnavailable = MaxUnavailable::Percent(10);
/// How long a drain waits for a node's pods to leave (k0sctl's default).
pub const DRAIN_TIMEOUT: &str = "--timeout=300s";

/// The key under which every runtime's install plan captures the admin
/// kubeconfig of the first control-plane.
pub const KUBECONFIG_CAPTURE: &str = "kubeconfig";

/// The facts a cluster image carries in its labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageInfo {
    /// A name in [`REGISTRY`] (empty when the image says nothing).
    pub runtime: String,
    pub version: Option<Version>,
    pub labels: BTreeMap<String, String>,
    /// The image config's `Env` (without `PATH`): defaults for the hooks'
    /// environment, which the cluster env overrides (as sealos does).
    pub env: Vec<(String, String)>,
}

impl ImageInfo {
    pub fn new(runtime: &str, version: &str) -> Result<ImageInfo, VersionError> {
        Ok(ImageInfo {
            runtime: runtime.to_string(),
            version: Some(Version::parse(version)?),
            labels: BTreeMap::new(),
            env: Vec::new(),
        })
    }

    /// The runtime and version as [`read_labels`] reads them for build and
    /// inspect. A runtime label that names no runtime is kept as written
    /// (the error names it); a version that does not parse is left `None`
    /// (and `verify` reports it).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> ImageInfo {
        let info = read_labels(labels, Layouts::embedded()).info;
        let runtime = info.runtime.map(|r| r.value).or_else(|| {
            RUNTIME_KEYS
                .iter()
                .find_map(|k| labels.get(*k))
                .map(|r| r.trim().to_string())
        });
        ImageInfo {
            runtime: runtime.unwrap_or_default(),
            version: info.version.map(|v| v.value),
            labels: labels.clone(),
            env: Vec::new(),
        }
    }

    /// Sets [`ImageInfo::env`] from the config's `KEY=value` entries; `PATH`
    /// and entries without a name are left out (the host's `PATH` stays).
    pub fn with_config_env(mut self, entries: &[String]) -> ImageInfo {
        self.env = entries
            .iter()
            .filter_map(|e| e.split_once('='))
            .filter(|(k, _)| !k.is_empty() && *k != "PATH")
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// The lifecycle hooks its labels declare.
    pub fn hooks(&self) -> Hooks {
        Hooks::from_labels(&self.labels)
    }
}

/// Join secrets: what the first control-plane produced and the others need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinSecrets {
    /// k3s server token, kubeadm bootstrap token, k0s worker join token.
    pub token: Option<Secret>,
    /// k0s controller join token.
    pub controller_token: Option<Secret>,
    /// kubeadm `sha256:<hex>` of the cluster CA public key.
    pub ca_cert_hash: Option<String>,
    /// kubeadm key that decrypts the uploaded control-plane certificates.
    pub certificate_key: Option<Secret>,
}

/// A captured value that cannot be used.
fn bad_capture(key: &str, reason: &str) -> RuntimeError {
    RuntimeError::BadCapture {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// The trimmed token captured under `key`, if any; `empty` says why an empty
/// one cannot be used.
fn captured_token(
    captured: &BTreeMap<String, String>,
    key: &str,
    empty: &str,
) -> Result<Option<Secret>, RuntimeError> {
    match captured.get(key).map(|t| t.trim()) {
        None => Ok(None),
        Some("") => Err(bad_capture(key, empty)),
        Some(t) => Ok(Some(Secret::new(t))),
    }
}

/// Everything a runtime knows about the host it plans for.
#[derive(Debug, Clone)]
pub struct HostContext<'a> {
    pub cluster: &'a Cluster,
    pub host: &'a Host,
    /// `Master` for any control-plane (the host may also be a node).
    pub role: Role,
    /// The first master: where the others join.
    pub first_master: &'a Address,
    /// The image being applied.
    pub image: &'a ImageInfo,
    pub secrets: JoinSecrets,
    /// The cluster env with the host's own (`hosts[].env`) over it:
    /// rendered into templates, byte for byte.
    pub env: Vec<(String, String)>,
    /// Where the installer unpacked the image's rootfs on the host.
    pub rootfs: String,
    /// The files of the unpacked rootfs (paths relative to it, sorted), as
    /// the installer found them when it planned on the host; empty where
    /// the rootfs is not at hand (the operator's `--dry-run`).
    pub rootfs_files: Vec<String>,
    /// The text of the rootfs files the runtime reads to plan
    /// ([`Runtime::plan_reads`]), by relative path; a file the rootfs lacks
    /// is absent.
    pub rootfs_texts: BTreeMap<String, String>,
    /// The image names the image archives under the rootfs's `images/`
    /// give (read by the installer for a runtime with
    /// [`Runtime::expected_images`]); `None` where they were not read.
    pub rootfs_images: Option<Vec<String>>,
    /// The cluster serves a registry tree that is not in this host's
    /// rootfs: withheld because another host serves it, or an application
    /// image's ([`hub`]).
    pub hub_elsewhere: bool,
}

/// The cluster env with `host`'s own (`hosts[].env`) over it, as sealos merges them.
fn host_env(cluster: &Cluster, host: &Host) -> Vec<(String, String)> {
    let mut env = cluster.env.clone();
    env.extend(host.env.clone());
    env.into_iter().collect()
}

impl<'a> HostContext<'a> {
    pub fn new(
        cluster: &'a Cluster,
        host: &'a Host,
        image: &'a ImageInfo,
        secrets: JoinSecrets,
    ) -> Result<HostContext<'a>, RuntimeError> {
        let first = cluster.first_master().ok_or(RuntimeError::NoMaster)?;
        Ok(HostContext {
            cluster,
            host,
            role: if host.is_master() {
                Role::Master
            } else {
                Role::Node
            },
            first_master: &first.address,
            image,
            secrets,
            env: host_env(cluster, host),
            rootfs: DEFAULT_ROOTFS_DIR.to_string(),
            rootfs_files: Vec::new(),
            rootfs_texts: BTreeMap::new(),
            rootfs_images: None,
            hub_elsewhere: false,
        })
    }

    pub fn is_first_master(&self) -> bool {
        &self.host.address == self.first_master
    }

    pub fn host_key(&self) -> String {
        self.host.key()
    }

    /// The version the host runs now, from the saved status.
    pub fn installed_version(&self) -> Option<Version> {
        self.cluster
            .status
            .hosts
            .get(&self.host.key())
            .and_then(|s| s.version.as_deref())
            .and_then(|v| Version::parse(v).ok())
    }

    fn plan(&self, runtime: &str, action: &str) -> Plan {
        Plan::new(runtime, action, &self.host.key(), self.env.clone())
    }

    fn secret(&self, runtime: &'static str, which: &'static str) -> Result<&str, RuntimeError> {
        let value = match which {
            "token" => self.secrets.token.as_ref(),
            "controller token" => self.secrets.controller_token.as_ref(),
            "certificate key" => self.secrets.certificate_key.as_ref(),
            _ => None,
        };
        value
            .map(Secret::expose)
            .ok_or(RuntimeError::MissingSecret {
                runtime,
                host: self.host.key(),
                secret: which,
            })
    }

    fn require_first_master(&self, runtime: &'static str) -> Result<(), RuntimeError> {
        if self.is_first_master() {
            Ok(())
        } else {
            Err(RuntimeError::WrongHost {
                runtime,
                host: self.host.key(),
                reason: format!(
                    "install runs on the first master ({}); use join for the others",
                    self.first_master
                ),
            })
        }
    }

    fn require_not_first_master(&self, runtime: &'static str) -> Result<(), RuntimeError> {
        if self.is_first_master() {
            Err(RuntimeError::WrongHost {
                runtime,
                host: self.host.key(),
                reason: "this is the first master: it installs, it does not join".into(),
            })
        } else {
            Ok(())
        }
    }

    /// Rejects an upgrade from the installed version to `to` that is a
    /// downgrade or skips a minor version.
    fn check_upgrade(&self, to: &Version) -> Result<(), RuntimeError> {
        let mut v = Vec::new();
        if let Some(from) = self.installed_version() {
            upgrade_violations(&self.host.key(), &from, to, &mut v);
        }
        if v.is_empty() {
            Ok(())
        } else {
            Err(RuntimeError::Rejected(v))
        }
    }
}

/// Something a runtime cannot build; `verify` returns all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the image is for runtime {found:?}, not {expected}")]
    WrongRuntime { expected: String, found: String },
    #[error("host {host} runs {installed}; switching it to {expected} is not an upgrade (reset it first)")]
    RuntimeChange {
        host: String,
        installed: String,
        expected: String,
    },
    #[error("the image has no Kubernetes version (label sealrs.io/version)")]
    MissingVersion,
    #[error("no host has the master role")]
    NoMaster,
    #[error("{count} {runtime} servers with embedded etcd: etcd needs an odd number to keep quorum (use 1, 3 or 5)")]
    EvenServers { runtime: String, count: usize },
    #[error("duplicate address {address}")]
    DuplicateAddress { address: String },
    #[error("host {address} does not look reachable: {reason}")]
    UnreachableAddress { address: String, reason: String },
    #[error("host {host}: {from} -> {to} is a downgrade")]
    Downgrade {
        host: String,
        from: String,
        to: String,
    },
    #[error("host {host}: {from} -> {to} skips a minor version; upgrade one minor at a time")]
    MinorSkip {
        host: String,
        from: String,
        to: String,
    },
    #[error("host {host}: version skew: {rule}")]
    Skew { host: String, rule: String },
    #[error("-e {key}={value:?}: {reason}")]
    BadEnv {
        key: String,
        value: String,
        reason: String,
    },
    #[error("the image's {path}: {reason}")]
    ImageConfig { path: String, reason: String },
    /// The Clusterfile's kubeadm documents cannot be used.
    #[error("{reason}")]
    ClusterfileConfig { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("the cluster has no master")]
    NoMaster,
    #[error("{runtime}: {host} needs the {secret} captured by install on the first master; run install there first")]
    MissingSecret {
        runtime: &'static str,
        host: String,
        secret: &'static str,
    },
    #[error("{runtime}: wrong host {host}: {reason}")]
    WrongHost {
        runtime: &'static str,
        host: String,
        reason: String,
    },
    #[error("{node:?} is not a Kubernetes node name (lowercase letters, digits, '-' and '.'); it comes from the host's hostname, or from nodeName in the saved cluster's status")]
    BadNodeName { node: String },
    #[error("captured {key} cannot be used: {reason}")]
    BadCapture { key: String, reason: String },
    #[error("{}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<Violation>),
    /// What this runtime cannot do (a backup or restore it has no procedure for).
    #[error("{runtime}: {what}")]
    Unsupported { runtime: &'static str, what: String },
    /// A config file of the image that the runtime cannot use as it is.
    #[error("{runtime}: {file}: {reason}")]
    BadConfig {
        runtime: &'static str,
        file: String,
        reason: String,
    },
}

/// Something a host must have before a runtime's plan may run on it; the
/// installer's verify checks them on the host, before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prerequisite {
    /// A program on the installer's `PATH`, or placed there by the image.
    Program { name: String, why: String },
    /// No active swap (`/proc/swaps` lists none).
    SwapOff { why: String },
}

/// A cluster env key (`-e KEY=VALUE`) a runtime's plans read, for `run --help`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvKey {
    /// The key, or a prefix ending in `*` (`CONTAINERD_*`).
    pub key: &'static str,
    /// A `KEY=VALUE` the runtime takes, as help shows it.
    pub example: &'static str,
    /// What it sets, in one line.
    pub meaning: &'static str,
}

/// A Kubernetes distribution.
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    /// The cluster env keys its plans read (every key also reaches the
    /// image's hooks); `run --help` lists them.
    fn env_keys(&self) -> &'static [EnvKey] {
        &[]
    }
    /// The join secrets in what this runtime's install plan captured (the
    /// installer's `key → value` map); other keys are ignored.
    fn join_secrets(
        &self,
        captured: &BTreeMap<String, String>,
    ) -> Result<JoinSecrets, RuntimeError>;
    /// Reject a cluster this runtime cannot build: every problem, not the first.
    fn verify(&self, cluster: &Cluster, image: &ImageInfo) -> Result<(), Vec<Violation>>;
    /// The first control-plane.
    fn install(&self, host: &HostContext) -> Result<Plan, RuntimeError>;
    /// Other control-planes and workers.
    fn join(&self, host: &HostContext) -> Result<Plan, RuntimeError>;
    fn upgrade(&self, host: &HostContext, to: &Version) -> Result<Plan, RuntimeError>;
    fn uninstall(&self, host: &HostContext) -> Result<Plan, RuntimeError>;
    /// Runs on the first master before a node is uninstalled: drain the node
    /// named `node` and delete it from Kubernetes; a node already gone is
    /// nothing to do.
    fn remove_node(&self, first_master: &HostContext, node: &str) -> Result<Plan, RuntimeError>;
    /// The ports `host` of `cluster` must have free before its first
    /// install, for every role it has (sorted, each once).
    fn ports(&self, cluster: &Cluster, host: &Host) -> Vec<Port>;
    /// Runs on the first master once the other hosts joined (or one failed):
    /// what the runtime does there after its joins (k0s invalidates the join
    /// tokens its install made). Empty by default; the processor runs a
    /// plan only when it has steps.
    fn after_joins(&self, first_master: &HostContext) -> Result<Plan, RuntimeError> {
        Ok(first_master.plan(self.name(), "after-joins"))
    }
    /// What the installer can check only in the unpacked image: `read` gives
    /// a file of its rootfs by relative path (`None` when absent). The
    /// installer's verify calls it on each host before anything changes.
    fn verify_image_files(
        &self,
        _cluster: &Cluster,
        _read: &dyn Fn(&str) -> Option<String>,
    ) -> Vec<Violation> {
        Vec::new()
    }
    /// Runs on the first master when `delete --force` forgets `host`, which
    /// cannot be reached, after its Node `node` was deleted: removes what the
    /// cluster still keeps of it there (its etcd member, for a control
    /// plane). Empty by default; the processor runs a plan only when it has
    /// steps.
    fn forget_member(
        &self,
        first_master: &HostContext,
        _host: &Host,
        _node: &str,
    ) -> Result<Plan, RuntimeError> {
        Ok(first_master.plan(self.name(), "forget-member"))
    }
    /// What `cluster` may be built as, but not without a word (an even
    /// number of etcd members while a master is replaced); the processor
    /// prints each after [`Runtime::verify`] passed.
    fn warnings(&self, _cluster: &Cluster) -> Vec<String> {
        Vec::new()
    }
    /// Whether a deleted host of this role keeps its Node until its
    /// uninstall ran: the processor then drains it, uninstalls it, and only
    /// then runs the [`DELETE_NODE_STEP`] of [`Runtime::remove_node`]'s plan
    /// (kubeadm: `kubeadm reset` removes a control-plane's etcd member only
    /// while the cluster still knows the node). Otherwise (the default) the
    /// node is drained and deleted first, as the Kubernetes docs remove one.
    fn deletes_node_after_uninstall(&self, _role: Role) -> bool {
        false
    }
    /// Images an image of this runtime at `version` must carry for its
    /// cluster to come up without pulls (kubeadm: the pause image of that
    /// version). Build warns when the image's image lists name images but
    /// none of these. Empty by default.
    fn expected_images(&self, _version: &Version) -> Vec<String> {
        Vec::new()
    }
    /// Rootfs files (relative paths) whose text the plans read, given to
    /// them in [`HostContext::rootfs_texts`].
    fn plan_reads(&self) -> &'static [&'static str] {
        &[]
    }
    /// What the host must have before this runtime's plan for it may run
    /// (programs, swap off); an error is a config of the image that cannot
    /// be used. Checked by the installer's verify.
    fn prerequisites(&self, _host: &HostContext) -> Result<Vec<Prerequisite>, RuntimeError> {
        Ok(Vec::new())
    }
    /// Where the cluster's admin kubeconfig is on a control plane
    /// (`sealrs kubeconfig` reads it from the first master).
    fn admin_kubeconfig(&self) -> &'static str;
    /// The distribution's kubectl with its admin kubeconfig, as it runs on
    /// the first master (the argv before kubectl's command).
    fn kubectl(&self) -> &'static [&'static str];
    /// Runs on the first master around a node's upgrade: cordon, drain or
    /// uncordon the node named `node` (see [`NodeStep`]).
    fn upgrade_node_step(
        &self,
        first_master: &HostContext,
        node: &str,
        step: NodeStep,
    ) -> Result<Plan, RuntimeError> {
        node_step_plan(first_master, self.name(), self.kubectl(), node, step)
    }
    /// Why a host of `role` whose upgrade from `from` to `to` failed cannot
    /// be returned to `from` by the previous image's upgrade plan (`None`:
    /// it can). By default [`rollback_across_minor`].
    fn rollback_refused(&self, _role: Role, from: &Version, to: &Version) -> Option<String> {
        rollback_across_minor(from, to)
    }
    /// The read-only command, run on the first master, that prints the
    /// Node's Ready condition and kubelet version (`True v1.30.3+k3s1`);
    /// [`node_ready_with`] reads its answer.
    fn node_state_query(&self, node: &str) -> Vec<String> {
        let mut argv: Vec<String> = self.kubectl().iter().map(|s| s.to_string()).collect();
        argv.extend(
            ["get", "node", node, "-o", NODE_STATE_JSONPATH]
                .iter()
                .map(|s| s.to_string()),
        );
        argv
    }
    /// The systemd units that run the runtime on a host of `role` (`Master`
    /// for any control-plane), which `sealrs status` expects active.
    fn service_units(&self, role: Role) -> Vec<&'static str>;
    /// Where a control plane of this runtime keeps its certificates
    /// (`sealrs cert check` reads them); none by default.
    fn cert_sources(&self) -> Vec<CertSource> {
        Vec::new()
    }
    /// How the certificates of the control plane `host` are renewed, with
    /// `options.alt_names` added to the API server's; the processor runs
    /// it master by master, each healthy before the next.
    fn renew_certs(
        &self,
        host: &HostContext,
        options: &RenewOptions,
    ) -> Result<CertRenewal, RuntimeError>;
    /// Paths on a master whose existence [`Runtime::backup`] and
    /// [`Runtime::restore`] plan by (k3s: which datastore it runs).
    fn datastore_probes(&self) -> &'static [&'static str] {
        &[]
    }
    /// More paths `exists` answers for, where `ctx`'s host may hold the
    /// tools the plans call (kubeadm: etcdctl in the image's rootfs).
    fn tool_probes(&self, _ctx: &HostContext) -> Vec<String> {
        Vec::new()
    }
    /// How `ctx`'s host takes a consistent snapshot of the datastore;
    /// `exists` answers for [`Runtime::datastore_probes`].
    fn backup(
        &self,
        _ctx: &HostContext,
        _exists: &dyn Fn(&str) -> bool,
    ) -> Result<backup::BackupPlan, RuntimeError> {
        Err(backup::unsupported(self.name(), "no backup procedure"))
    }
    /// How a snapshot of `kind` is put back on the first master `first`,
    /// the other masters `others` rejoining it; `stamp` names what the
    /// restore makes (a new data directory).
    fn restore(
        &self,
        _first: &HostContext,
        _others: &[&Host],
        _kind: backup::SnapshotKind,
        _stamp: &str,
        _exists: &dyn Fn(&str) -> bool,
    ) -> Result<backup::RestorePlan, RuntimeError> {
        Err(backup::unsupported(self.name(), "no restore procedure"))
    }
}

/// What [`Runtime::node_state_query`] asks kubectl for: the Ready
/// condition's status, a space, the kubelet's version.
pub const NODE_STATE_JSONPATH: &str =
    "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.status.nodeInfo.kubeletVersion}";

/// Whether the answer of [`Runtime::node_state_query`] says Ready with
/// version `to` (its major.minor.patch: kubelets report `v1.30.3`, k3s and
/// k0s add their build, `v1.30.3+k3s1`, `v1.30.3+k0s`).
pub fn node_ready_with(answer: &str, to: &Version) -> bool {
    let mut words = answer.split_whitespace();
    let (Some(ready), Some(version)) = (words.next(), words.next()) else {
        return false;
    };
    let core = version
        .trim_start_matches('v')
        .split(['+', '-'])
        .next()
        .unwrap_or("");
    ready == "True" && core == format!("{}.{}.{}", to.major, to.minor, to.patch)
}

/// One step around a node's upgrade, run with kubectl on the first master,
/// in the order k0sctl upgrades a worker (cordon, drain, upgrade, wait for
/// Ready, uncordon: <https://github.com/k0sproject/k0sctl/blob/main/phase/upgrade_workers.go>)
/// and kubeadm's upgrade guide a node (drain before the kubelet upgrade,
/// uncordon after: <https://kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade/#drain-the-node>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeStep {
    /// `kubectl cordon`: no new pods there.
    Cordon,
    /// `kubectl drain`: its pods evicted (daemonsets stay, as upstream's
    /// guide drains with `--ignore-daemonsets`).
    Drain,
    /// `kubectl uncordon`: schedulable again, once Ready with the new version.
    Uncordon,
}

impl fmt::Display for NodeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NodeStep::Cordon => "cordon",
            NodeStep::Drain => "drain",
            NodeStep::Uncordon => "uncordon",
        })
    }
}

/// How many workers may be down for their upgrade at once: a count or a
/// percentage of the workers (rounded down, at least one), as Kubernetes'
/// `maxUnavailable` is written (`2`, `10%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxUnavailable {
    Count(usize),
    Percent(u8),
}

impl MaxUnavailable {
    /// The batch size for `workers` workers.
    pub fn of(&self, workers: usize) -> usize {
        match *self {
            MaxUnavailable::Count(n) => n,
            MaxUnavailable::Percent(p) => workers * usize::from(p) / 100,
        }
        .max(1)
    }
}

impl Default for MaxUnavailable {
    fn default() -> Self {
        DEFAULT_MAX_UNAVAILABLE
    }
}

impl fmt::Display for MaxUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxUnavailable::Count(n) => write!(f, "{n}"),
            MaxUnavailable::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxUnavailable {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a number of workers (1 or more) or a percentage of them (1% to 100%), e.g. 2 or 25%")
        };
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(n @ 1..=100) if p.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(MaxUnavailable::Percent(n))
                }
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n >= 1 && s.bytes().all(|b| b.is_ascii_digit()) => {
                    Ok(MaxUnavailable::Count(n))
                }
                _ => Err(bad()),
            },
        }
    }
}

/// A port a runtime's services bind on a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Port {
    Tcp(u16),
    /// A bound UDP socket, as flannel's VXLAN (8472) has on every k3s node.
    Udp(u16),
}

/// TCP ports go without a suffix, as people write them; UDP ones say so.
impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Port::Tcp(n) => write!(f, "{n}"),
            Port::Udp(n) => write!(f, "{n}/udp"),
        }
    }
}

/// The ports of each of `host`'s roles, sorted and each once.
fn ports_of_roles(host: &Host, ports: impl Fn(Role) -> Vec<Port>) -> Vec<Port> {
    let mut all: Vec<Port> = host.roles.iter().flat_map(|r| ports(*r)).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The Kubernetes API server's port, for every runtime.
pub const API_PORT: u16 = 6443;
/// The kubelet's port, on every node of every runtime.
pub const KUBELET_PORT: u16 = 10250;

impl fmt::Debug for dyn Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Runtime({})", self.name())
    }
}

/// Every runtime, by constructor: the one list of the runtimes sealrs knows
/// (messages, `--help` and tests read it). Adding a distribution adds a line
/// here; a unit test checks that each has a layout and each layout a runtime.
pub const REGISTRY: &[fn() -> Box<dyn Runtime>] =
    &[|| Box::new(K0s), || Box::new(K3s), || Box::new(Kubeadm)];

/// Every runtime's [`Runtime::env_keys`], for `sealrs run --help`.
pub fn env_keys_help() -> String {
    let mut out = String::from(
        "Cluster env keys (-e KEY=VALUE) the runtimes read (every key reaches the image's hooks):\n",
    );
    for runtime in REGISTRY.iter().map(|make| make()) {
        out.push_str(&format!("  {}:\n", runtime.name()));
        for k in runtime.env_keys() {
            out.push_str(&format!("    {}\n        {}\n", k.example, k.meaning));
        }
    }
    out
}

/// The names of the runtimes in [`REGISTRY`], in its order.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|make| make().name()).collect()
}

/// The runtime with this name or an alias its layout gives it
/// (case-insensitive; sealos calls kubeadm images `kubernetes`).
pub fn runtime_for(name: &str) -> Option<Box<dyn Runtime>> {
    let name = Layouts::embedded().resolve_runtime(name)?;
    REGISTRY
        .iter()
        .map(|make| make())
        .find(|r| r.name() == name)
}

/// A host goes back to its previous binary only within a minor version:
/// across one, the datastore must be restored from a snapshot taken on the
/// older minor (k3s: <https://docs.k3s.io/upgrades/roll-back>, "If you
/// cannot restore the database, you cannot roll back to a previous minor
/// version"), which sealrs does not do.
pub fn rollback_across_minor(from: &Version, to: &Version) -> Option<String> {
    (from.major != to.major || from.minor != to.minor).then(|| {
        format!(
            "going back from {to} to {from} crosses a minor version, which needs the datastore restored from a snapshot taken on v{}.{} (https://docs.k3s.io/upgrades/roll-back); sealrs restores no datastore",
            from.major, from.minor
        )
    })
}

/// One step of a rolling upgrade: these hosts upgrade together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub role: Role,
    pub hosts: Vec<Address>,
}

/// Servers one at a time (the first master first), then workers in batches
/// of `max` of them (k0sctl upgrades controllers one by one, then workers
/// 10% at a time: <https://github.com/k0sproject/k0sctl/blob/main/phase/upgrade_workers.go>).
pub fn upgrade_order(cluster: &Cluster, max: MaxUnavailable) -> Vec<Batch> {
    upgrade_order_in_batches(cluster, max.of(cluster.workers().count()))
}

pub fn upgrade_order_in_batches(cluster: &Cluster, batch: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = cluster
        .masters()
        .map(|h| Batch {
            role: Role::Master,
            hosts: vec![h.address.clone()],
        })
        .collect();
    let workers: Vec<Address> = cluster.workers().map(|h| h.address.clone()).collect();
    for chunk in workers.chunks(batch.max(1)) {
        out.push(Batch {
            role: Role::Node,
            hosts: chunk.to_vec(),
        });
    }
    out
}

fn upgrade_violations(host: &str, from: &Version, to: &Version, out: &mut Vec<Violation>) {
    if to < from {
        out.push(Violation::Downgrade {
            host: host.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        });
    } else if from.skips_minor_to(to) {
        out.push(Violation::MinorSkip {
            host: host.to_string(),
            from: from.to_string(),
            to: to.to_string(),
        });
    }
}

/// What every runtime checks: the image, the hosts, and each host's
/// installed version against the image's.
fn verify_common(runtime: &str, cluster: &Cluster, image: &ImageInfo) -> Vec<Violation> {
    let mut v = Vec::new();
    if image.runtime != runtime {
        v.push(Violation::WrongRuntime {
            expected: runtime.to_string(),
            found: image.runtime.clone(),
        });
    }
    if image.version.is_none() {
        v.push(Violation::MissingVersion);
    }
    if cluster.first_master().is_none() {
        v.push(Violation::NoMaster);
    }
    if runtime != "kubeadm" && !cluster.runtime_config.is_empty() {
        v.push(Violation::ClusterfileConfig {
            reason: format!("the Clusterfile has kubeadm configuration documents, but the image's runtime is {runtime}, which does not read them: remove them"),
        });
    }
    for (i, host) in cluster.hosts.iter().enumerate() {
        if cluster.hosts[..i].iter().any(|h| h.address == host.address) {
            v.push(Violation::DuplicateAddress {
                address: host.key(),
            });
            continue;
        }
        if let Some(reason) = host.address.unreachable_reason() {
            v.push(Violation::UnreachableAddress {
                address: host.key(),
                reason: reason.to_string(),
            });
        }
        let Some(status) = cluster.status.hosts.get(&host.key()) else {
            continue;
        };
        if let Some(installed) = status.runtime.as_deref() {
            if installed != runtime {
                v.push(Violation::RuntimeChange {
                    host: host.key(),
                    installed: installed.to_string(),
                    expected: runtime.to_string(),
                });
            }
        }
        if let (Some(from), Some(to)) = (
            status
                .version
                .as_deref()
                .and_then(|s| Version::parse(s).ok()),
            image.version.as_ref(),
        ) {
            upgrade_violations(&host.key(), &from, to, &mut v);
        }
    }
    v
}

/// The distinct servers of `cluster`, and how many of them run already
/// (their saved status is Running).
fn servers(cluster: &Cluster) -> (usize, usize) {
    let mut servers: Vec<&Host> = cluster.masters().collect();
    servers.sort_by(|a, b| a.address.cmp(&b.address));
    servers.dedup_by(|a, b| a.address == b.address);
    let running = servers
        .iter()
        .filter(|h| {
            cluster
                .status
                .hosts
                .get(&h.key())
                .is_some_and(|s| s.phase == crate::cluster::Phase::Running)
        })
        .count();
    (servers.len(), running)
}

/// An even number of servers that is one step of replacing a master: the
/// servers that run already, and at most one joining (3→2 by `delete`,
/// 1→2 or 3→4 by `add`). A cluster that runs no server yet (a first `run`)
/// is never one.
fn even_servers_transition(cluster: &Cluster) -> Option<usize> {
    let (count, running) = servers(cluster);
    (count > 1 && count.is_multiple_of(2) && running > 0 && count - running <= 1).then_some(count)
}

/// k3s and k0s servers with embedded etcd: 1 or an odd number, except while
/// a master is replaced ([`odd_servers_warning`] says so then).
fn verify_odd_servers(runtime: &str, cluster: &Cluster, v: &mut Vec<Violation>) {
    let (count, _) = servers(cluster);
    if count > 1 && count.is_multiple_of(2) && even_servers_transition(cluster).is_none() {
        v.push(Violation::EvenServers {
            runtime: runtime.to_string(),
            count,
        });
    }
}

/// The warning for an even number of servers that [`verify_odd_servers`]
/// lets through as a step of replacing a master: etcd's quorum of `n/2 + 1`
/// (<https://etcd.io/docs/v3.5/faq/#what-is-failure-tolerance>) tolerates no
/// more failures with 2 servers than with 1, and no more with 4 than with 3.
fn odd_servers_warning(runtime: &str, cluster: &Cluster) -> Vec<String> {
    match even_servers_transition(cluster) {
        Some(count) => vec![format!(
            "{count} {runtime} servers with embedded etcd: quorum needs {} of them, so this tolerates no more failures than {} servers; a step while a master is replaced: add or delete one master to get back to an odd number",
            count / 2 + 1,
            count - 1
        )],
        None => Vec::new(),
    }
}

/// The id of the step of [`Runtime::remove_node`]'s plan that deletes the
/// Node; the steps before it drain.
pub const DELETE_NODE_STEP: &str = "delete-node";

/// Drain, then delete the node, as the Kubernetes docs remove one
/// (<https://kubernetes.io/docs/setup/production-environment/tools/kubeadm/create-cluster-kubeadm/#remove-the-node>);
/// `kubectl` is the distribution's own, with its admin kubeconfig. Both
/// steps run only while `kubectl get node` finds the node. A drain that does
/// not finish (a pod disruption budget, a node that is down) is reported and
/// the node deleted anyway, as k0sctl does.
fn remove_node_plan(
    ctx: &HostContext,
    runtime: &'static str,
    kubectl: &[&str],
    node: &str,
) -> Result<Plan, RuntimeError> {
    kubectl_on_first_master(ctx, runtime, node, "drained and deleted")?;
    fn with<'a>(kubectl: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
        kubectl.iter().chain(args).copied().collect()
    }
    let query = with(
        kubectl,
        &["get", "node", node, "--ignore-not-found", "-o", "name"],
    );
    let present = Check::IfOutput {
        argv: query.iter().map(|s| s.to_string()).collect(),
    };
    let drain = with(
        kubectl,
        &[
            "drain",
            node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--force",
            DRAIN_TIMEOUT,
        ],
    );
    let delete = with(kubectl, &["delete", "node", node, "--ignore-not-found"]);
    let mut plan = ctx.plan(runtime, "remove-node");
    plan.push(
        Step::run(
            "drain",
            format!("drain node {node} (evict its pods)"),
            &drain,
            present.clone(),
        )
        .allowing_failure(),
    );
    plan.push(Step::run(
        DELETE_NODE_STEP,
        format!("delete node {node} from the cluster"),
        &delete,
        present,
    ));
    Ok(plan)
}

/// Node plans run kubectl on the first master, which has the admin
/// kubeconfig, and name a node Kubernetes would accept.
fn kubectl_on_first_master(
    ctx: &HostContext,
    runtime: &'static str,
    node: &str,
    done: &str,
) -> Result<(), RuntimeError> {
    if !ctx.is_first_master() {
        return Err(RuntimeError::WrongHost {
            runtime,
            host: ctx.host_key(),
            reason: format!(
                "nodes are {done} from the first master ({}), which has the admin kubeconfig",
                ctx.first_master
            ),
        });
    }
    if !is_valid_node_name(node) {
        return Err(RuntimeError::BadNodeName {
            node: node.to_string(),
        });
    }
    Ok(())
}

/// A [`NodeStep`] on node `node`, run on the first master with `kubectl`
/// while `kubectl get node` finds the node.
fn node_step_plan(
    ctx: &HostContext,
    runtime: &'static str,
    kubectl: &[&str],
    node: &str,
    step: NodeStep,
) -> Result<Plan, RuntimeError> {
    kubectl_on_first_master(ctx, runtime, node, "cordoned and drained")?;
    let with = |args: &[&str]| -> Vec<String> {
        kubectl.iter().chain(args).map(|s| s.to_string()).collect()
    };
    let present = Check::IfOutput {
        argv: with(&["get", "node", node, "--ignore-not-found", "-o", "name"]),
    };
    let (argv, title) = match step {
        NodeStep::Cordon => (
            with(&["cordon", node]),
            format!("cordon node {node} (no new pods)"),
        ),
        NodeStep::Drain => (
            with(&[
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                DRAIN_TIMEOUT,
            ]),
            format!("drain node {node} (evict its pods)"),
        ),
        NodeStep::Uncordon => (
            with(&["uncordon", node]),
            format!("uncordon node {node} (schedulable again)"),
        ),
    };
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let mut plan = ctx.plan(runtime, &format!("{step}-node"));
    plan.push(Step::run(&step.to_string(), title, &argv, present));
    Ok(plan)
}

fn finish_verify(v: Vec<Violation>) -> Result<(), Vec<Violation>> {
    if v.is_empty() {
        Ok(())
    } else {
        Err(v)
    }
}

#[cfg(test)]
pub(crate) mod tests;
