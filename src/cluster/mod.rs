//! The cluster model: hosts and their roles, SSH settings, images, env, and
//! the status sealrs saves after each run.
//!
//! Three inputs build a [`Cluster`]: our Clusterfile (`apiVersion:
//! sealrs.io/v1`), sealos' `apps.sealos.io/v1beta1` Cluster, and CLI flags
//! ([`ClusterArgs`]). All three go through the same validation, which reports
//! every problem at once, each naming the field it is about.
//!
//! Saved state never holds an SSH password: a password is referred to
//! (`passwordFrom: {env: NAME}`, `{file: PATH}` or `stdin`). A password read
//! inline from a sealos file lives in memory only and is dropped on save.

mod args;
mod documents;
mod file;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

pub use crate::secret::Secret;
pub use args::{parse_env_file, parse_hosts, parse_targets, ClusterArgs};
pub use documents::{inside_image, ConfigDoc, Strategy};
pub use file::{API_VERSION, KIND, SEALOS_API_VERSION};

/// The default SSH port and user when neither the cluster nor the host says.
pub const DEFAULT_SSH_PORT: u16 = 22;
pub const DEFAULT_SSH_USER: &str = "root";

/// What a host is in the cluster. `control-plane`/`server` are read as
/// `master`, `worker`/`agent` as `node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Node,
}

impl Role {
    /// Parses a role name and its aliases; `None` for anything else.
    pub fn parse(s: &str) -> Option<Role> {
        match s.to_ascii_lowercase().as_str() {
            "master" | "control-plane" | "controlplane" | "controller" | "server" => {
                Some(Role::Master)
            }
            "node" | "worker" | "agent" => Some(Role::Node),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Node => "node",
        })
    }
}

/// sealos' role for the hosts that serve the in-cluster registry: kept in
/// [`Host::labels`], beside master or node.
pub const REGISTRY_ROLE: &str = "registry";

/// A host's address: an IP or a DNS name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Address {
    Ip(IpAddr),
    Hostname(String),
}

impl Address {
    /// Parses an IP (v4 or v6, without brackets) or an RFC 1123 host name.
    pub fn parse(s: &str) -> Result<Address, String> {
        if s.is_empty() {
            return Err("the address is empty".into());
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Address::Ip(ip));
        }
        if s.len() > 253 {
            return Err(format!("{s:?} is longer than 253 characters"));
        }
        // All-numeric dotted names are malformed IPs, not host names.
        if s.split('.').all(|l| l.chars().all(|c| c.is_ascii_digit())) {
            return Err(format!("{s:?} is not a valid IP address"));
        }
        for label in s.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "{s:?} is neither an IP address nor a host name (letters, digits, '-' and '.')"
                ));
            }
        }
        Ok(Address::Hostname(s.to_ascii_lowercase()))
    }

    /// Why this address cannot be a host to connect to, if it cannot.
    pub fn unreachable_reason(&self) -> Option<&'static str> {
        match self {
            Address::Ip(IpAddr::V4(ip)) => {
                if ip.is_unspecified() {
                    Some("0.0.0.0 means \"any address\", not a host")
                } else if ip.is_broadcast() {
                    Some("it is the broadcast address")
                } else if ip.is_multicast() {
                    Some("it is a multicast address")
                } else {
                    None
                }
            }
            Address::Ip(IpAddr::V6(ip)) => {
                if ip.is_unspecified() {
                    Some(":: means \"any address\", not a host")
                } else if ip.is_multicast() {
                    Some("it is a multicast address")
                } else {
                    None
                }
            }
            Address::Hostname(_) => None,
        }
    }

    /// The form that goes into URLs and `host:port`: IPv6 in brackets.
    pub fn url_host(&self) -> String {
        match self {
            Address::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Ip(ip) => write!(f, "{ip}"),
            Address::Hostname(h) => f.write_str(h),
        }
    }
}

impl Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Where an SSH password comes from. Only the reference is ever saved, as
/// `{env: NAME}`, `{file: PATH}` or `stdin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// An environment variable of the operator's process.
    Env(String),
    /// A file on the operator's machine.
    File(String),
    /// Read once from standard input (`--ssh-password-stdin`).
    Stdin,
    /// Given inline (sealos' `passwd:`); kept in memory, never serialized.
    Value(Secret),
}

#[derive(Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
enum PasswordRepr {
    Word(String),
    Env { env: String },
    File { file: String },
}

impl Serialize for PasswordSource {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            PasswordSource::Env(env) => PasswordRepr::Env { env: env.clone() }.serialize(s),
            PasswordSource::File(file) => PasswordRepr::File { file: file.clone() }.serialize(s),
            PasswordSource::Stdin => PasswordRepr::Word("stdin".into()).serialize(s),
            PasswordSource::Value(_) => Err(serde::ser::Error::custom(
                "an inline password is never serialized",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for PasswordSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bad = || {
            serde::de::Error::custom(
                "expected {env: NAME}, {file: PATH} or stdin (passwords themselves are never stored)",
            )
        };
        match PasswordRepr::deserialize(d).map_err(|_| bad())? {
            PasswordRepr::Word(w) if w == "stdin" => Ok(PasswordSource::Stdin),
            PasswordRepr::Word(_) => Err(bad()),
            PasswordRepr::Env { env } => Ok(PasswordSource::Env(env)),
            PasswordRepr::File { file } => Ok(PasswordSource::File(file)),
        }
    }
}

/// SSH settings: cluster-wide defaults, or one host's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SshConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Path of a private key on the operator's machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_from: Option<PasswordSource>,
    /// The known_hosts file on the operator's machine (`--known-hosts`),
    /// remembered so that later commands check host keys against it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts: Option<String>,
}

impl SshConfig {
    /// `self` where set, else `defaults`.
    pub fn or(&self, defaults: &SshConfig) -> SshConfig {
        SshConfig {
            user: self.user.clone().or_else(|| defaults.user.clone()),
            port: self.port.or(defaults.port),
            key: self.key.clone().or_else(|| defaults.key.clone()),
            password_from: self
                .password_from
                .clone()
                .or_else(|| defaults.password_from.clone()),
            known_hosts: self
                .known_hosts
                .clone()
                .or_else(|| defaults.known_hosts.clone()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &SshConfig::default()
    }

    fn without_inline_password(&self) -> SshConfig {
        let mut c = self.clone();
        if matches!(c.password_from, Some(PasswordSource::Value(_))) {
            c.password_from = None;
        }
        c
    }
}

/// One machine of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub address: Address,
    /// The SSH port of this host, when it differs from the cluster's.
    pub port: Option<u16>,
    /// Sorted, without duplicates; a host may be both master and node.
    pub roles: Vec<Role>,
    /// Overrides of the cluster's SSH settings (`port` here is ignored in
    /// favour of [`Host::port`]).
    pub ssh: SshConfig,
    /// Extra role names that are not master/node (sealos' `amd64`, …).
    pub labels: Vec<String>,
    /// This host's env (sealos' `hosts[].env`): wins over the cluster env on this host.
    pub env: BTreeMap<String, String>,
}

impl Host {
    pub fn new(address: Address, roles: &[Role]) -> Host {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        Host {
            address,
            port: None,
            roles,
            ssh: SshConfig::default(),
            labels: Vec::new(),
            env: BTreeMap::new(),
        }
    }

    pub fn is_master(&self) -> bool {
        self.roles.contains(&Role::Master)
    }

    pub fn is_node(&self) -> bool {
        self.roles.contains(&Role::Node)
    }

    /// Whether the Clusterfile gives this host sealos' `registry` role.
    pub fn is_registry(&self) -> bool {
        self.labels.iter().any(|l| l == REGISTRY_ROLE)
    }

    /// The host's roles as sealos names them (`master`, `node`, then the
    /// other names it was given): `SEALOS_SYS_RUN_MODE` of its templates.
    pub fn sealos_roles(&self) -> Vec<String> {
        self.roles
            .iter()
            .map(Role::to_string)
            .chain(self.labels.iter().cloned())
            .collect()
    }

    /// The host's key in status and reports: its address.
    pub fn key(&self) -> String {
        self.address.to_string()
    }
}

/// Where a cluster, or one host, stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    #[default]
    Pending,
    Installing,
    Running,
    Upgrading,
    Resetting,
    Failed,
}

/// An image applied to a host, by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledImage {
    pub name: String,
    pub digest: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostStatus {
    #[serde(default)]
    pub phase: Phase,
    /// The runtime installed on the host (`k3s`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The Kubernetes version installed on the host (`v1.30.2+k3s1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<InstalledImage>,
    /// The host's name in Kubernetes, from its hostname when sealrs first
    /// reached it: `delete` drains and deletes the node by it, even when the
    /// host is down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterStatus {
    #[serde(default)]
    pub phase: Phase,
    /// Keyed by [`Host::key`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, HostStatus>,
    /// The images the cluster runs, pinned by digest when `run` (or
    /// `upgrade`) applied them: `add` joins with these whatever the tag
    /// points to now, and `reset` and `delete` plan with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<InstalledImage>,
    /// The in-cluster registry's password (`runtime::hub`), made once for
    /// the cluster: hosts get it in their request, never in an argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_password: Option<Secret>,
}

/// A cluster: what `sealrs run` builds and what it saves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub name: String,
    pub hosts: Vec<Host>,
    pub images: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Defaults for every host.
    pub ssh: SshConfig,
    pub status: ClusterStatus,
    /// The Clusterfile's Config documents, applied to the images' files.
    pub configs: Vec<ConfigDoc>,
    /// The Clusterfile's kubeadm configuration documents (YAML, `---`
    /// between them), merged by the kubeadm runtime over what it generates.
    pub runtime_config: String,
}

/// One thing wrong with a cluster definition, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `spec.hosts[1].address`, `--masters`, `-e`…
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// The text is not YAML, or does not have the shape of its format.
    #[error("{source_name}: {reason}")]
    Syntax { source_name: String, reason: String },
    #[error("{source_name}: unknown Clusterfile format apiVersion {api_version:?} kind {kind:?} (expected apiVersion sealrs.io/v1 or apps.sealos.io/v1beta1, kind Cluster)")]
    UnknownFormat {
        source_name: String,
        api_version: String,
        kind: String,
    },
    #[error("{source_name}: invalid cluster, {} problem{}:\n  {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        source_name: String,
        problems: Vec<Problem>,
    },
}

impl ClusterError {
    /// The problems of an `Invalid` error (empty for the others).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ClusterError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`: what a process environment and templates accept.
pub fn is_valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The name Kubernetes gives a node by default: the hostname (`uname -n`),
/// trimmed and lowercased, as the kubelet does. `None` when that is not a
/// valid node name (an RFC 1123 subdomain).
pub fn node_name_from_hostname(hostname: &str) -> Option<String> {
    let name = hostname.trim().to_ascii_lowercase();
    is_valid_node_name(&name).then_some(name)
}

/// An RFC 1123 subdomain: what the API server accepts as a node name. It
/// never starts with `-`, so it is never read as a flag where it is an argument.
pub fn is_valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Cluster names become directory names: lowercase letters, digits, `-`.
pub fn is_valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Splits `KEY=VALUE` at the first `=`; the value is kept byte for byte.
pub fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if is_valid_env_key(k) => Ok((k.to_string(), v.to_string())),
        Some((k, _)) => Err(format!(
            "{k:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"
        )),
        None => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

impl Cluster {
    pub fn new(name: &str) -> Cluster {
        Cluster {
            name: name.to_string(),
            hosts: Vec::new(),
            images: Vec::new(),
            env: BTreeMap::new(),
            ssh: SshConfig::default(),
            status: ClusterStatus::default(),
            configs: Vec::new(),
            runtime_config: String::new(),
        }
    }

    pub fn masters(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| h.is_master())
    }

    /// Hosts that are workers only (a master that is also a node is a master).
    pub fn workers(&self) -> impl Iterator<Item = &Host> {
        self.hosts.iter().filter(|h| !h.is_master())
    }

    /// The same cluster with only the hosts at `addresses`, in cluster order:
    /// what a phase that concerns some hosts (those reachable, those added)
    /// works on.
    pub fn only(&self, addresses: &[Address]) -> Cluster {
        let mut sub = self.clone();
        sub.hosts.retain(|h| addresses.contains(&h.address));
        sub
    }

    /// The master that runs `install`: the first one listed.
    pub fn first_master(&self) -> Option<&Host> {
        self.masters().next()
    }

    /// Takes what `saved` (this cluster as sealrs last left it) records of
    /// each host that is still in this one: what runs there and its node
    /// name. A cluster made anew from flags knows none of it, and without it
    /// verify could not refuse a downgrade or a runtime change.
    pub fn keep_status_of(&mut self, saved: &Cluster) {
        self.status.images = saved.status.images.clone();
        self.status.hub_password = saved.status.hub_password.clone();
        for host in &self.hosts {
            if let Some(status) = saved.status.hosts.get(&host.key()) {
                self.status.hosts.insert(host.key(), status.clone());
            }
        }
    }

    /// The hosts of `saved` that this cluster does not name (a `run` that
    /// would forget them).
    pub fn missing_from<'s>(&self, saved: &'s Cluster) -> Vec<&'s Host> {
        saved
            .hosts
            .iter()
            .filter(|h| self.host(&h.address).is_none())
            .collect()
    }

    pub fn host(&self, address: &Address) -> Option<&Host> {
        self.hosts.iter().find(|h| &h.address == address)
    }

    /// The env as the ordered pairs plans carry.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The SSH settings in force for `host`: its overrides, then the
    /// cluster's, then port 22 and user root.
    pub fn ssh_for(&self, host: &Host) -> SshConfig {
        let mut c = host.ssh.or(&self.ssh);
        c.port = Some(host.port.or(c.port).unwrap_or(DEFAULT_SSH_PORT));
        if c.user.is_none() {
            c.user = Some(DEFAULT_SSH_USER.to_string());
        }
        c
    }

    /// Every problem of the model, each naming its field in our Clusterfile.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !is_valid_cluster_name(&self.name) {
            problems.push(Problem::new(
                "metadata.name",
                format!(
                    "{:?} is not a valid cluster name (lowercase letters, digits and '-', at most 63)",
                    self.name
                ),
            ));
        }
        if self.hosts.is_empty() {
            problems.push(Problem::new(
                "spec.hosts",
                "no hosts: give at least one master",
            ));
        } else if self.first_master().is_none() {
            problems.push(Problem::new(
                "spec.hosts",
                "no host has the master role: at least one is needed",
            ));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if host.roles.is_empty() {
                problems.push(Problem::new(
                    format!("spec.hosts[{i}].roles"),
                    format!("host {} has no role (master or node)", host.address),
                ));
            }
            if self.hosts[..i].iter().any(|h| h.address == host.address) {
                problems.push(Problem::new(
                    format!("spec.hosts[{i}].address"),
                    format!(
                        "duplicate address {}: it is listed more than once",
                        host.address
                    ),
                ));
            }
            if host.port == Some(0) || host.ssh.port == Some(0) {
                problems.push(Problem::new(
                    format!("spec.hosts[{i}].port"),
                    "port 0 is not a port",
                ));
            }
        }
        if self.ssh.port == Some(0) {
            problems.push(Problem::new("spec.ssh.port", "port 0 is not a port"));
        }
        let host_envs = self.hosts.iter().enumerate().flat_map(|(i, h)| {
            h.env
                .keys()
                .map(move |key| (format!("spec.hosts[{i}].env.{key}"), key))
        });
        let envs = self.env.keys().map(|key| (format!("spec.env.{key}"), key));
        for (field, key) in envs.chain(host_envs) {
            if !is_valid_env_key(key) {
                problems.push(Problem::new(
                    field,
                    format!("{key:?} is not a valid variable name (letters, digits and '_', not starting with a digit)"),
                ));
            }
        }
        for (i, image) in self.images.iter().enumerate() {
            if let Err(e) = crate::reference::Reference::parse(image) {
                problems.push(Problem::new(format!("spec.images[{i}]"), e.to_string()));
            }
        }
        problems
    }

    /// `Ok` when [`Cluster::problems`] finds none.
    pub fn validate(&self, source_name: &str) -> Result<(), ClusterError> {
        unless_problems((), source_name, self.problems())
    }
}

/// `value` when `problems` is empty, else every problem at once, named by
/// where they were read.
pub(crate) fn unless_problems<T>(
    value: T,
    source_name: &str,
    problems: Vec<Problem>,
) -> Result<T, ClusterError> {
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(ClusterError::Invalid {
            source_name: source_name.to_string(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests;
