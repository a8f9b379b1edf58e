//! Clusterfiles: ours (`sealrs.io/v1`, read and written) and sealos'
//! (`apps.sealos.io/v1beta1`, read).
//!
//! ```yaml
//! apiVersion: sealrs.io/v1
//! kind: Cluster
//! metadata:
//!   name: demo
//! spec:
//!   images: [registry.local/k3s:v1.30.2-k3s1]
//!   env:
//!     POD_CIDR: 10.42.0.0/16
//!   ssh:
//!     user: root
//!     port: 22
//!     key: /root/.ssh/id_ed25519
//!     passwordFrom: {env: SSH_PASSWORD}   # or {file: PATH} or stdin
//!   hosts:
//!     - address: 10.0.0.1
//!       roles: [master]
//!     - address: node-1.example.com
//!       port: 2222
//!       roles: [node]
//!       ssh: {user: admin}
//! status:            # written by sealrs
//!   phase: Running
//!   hosts:
//!     10.0.0.1: {phase: Running, runtime: k3s, version: v1.30.2+k3s1,
//!                images: [{name: …, digest: sha256:…}]}
//! ```
//!
//! The sealos format is read as its documentation describes it
//! (<https://sealos.io/docs/k8s/operations/run-cluster/gen-apply-cluster>):
//! `spec.hosts[].ips` with optional `:port`, `roles` (master/node, other
//! names such as `amd64` are kept as labels), `spec.ssh` (`user`, `passwd`,
//! `pk`, `port`), `spec.image` and `spec.env` as `KEY=VALUE`. Its `status`
//! is ignored; unknown fields are ignored too, as sealos does.
//!
//! Either Cluster may be followed by more documents (`---` between them):
//! Config documents and kubeadm configuration documents
//! ([`super::documents`]); the role `registry` is kept beside master/node.
//! Saving writes them back after the Cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_yaml_ng::Value;

use super::documents::{self, ConfigDoc, Document};
use super::{
    parse_env_pair, unless_problems, Address, Cluster, ClusterError, ClusterStatus, Host,
    PasswordSource, Problem, Role, Secret, SshConfig, REGISTRY_ROLE,
};

pub const API_VERSION: &str = "sealrs.io/v1";
pub const SEALOS_API_VERSION: &str = "apps.sealos.io/v1beta1";
pub const KIND: &str = "Cluster";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OurFile {
    api_version: String,
    kind: String,
    metadata: Metadata,
    spec: OurSpec,
    #[serde(default, skip_serializing_if = "is_default_status")]
    status: ClusterStatus,
}

fn is_default_status(s: &ClusterStatus) -> bool {
    s == &ClusterStatus::default()
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    name: String,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OurSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    /// Scalars are read as their text (`PORT: 80` is "80").
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "SshConfig::is_empty")]
    ssh: SshConfig,
    hosts: Vec<OurHost>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OurHost {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    roles: Vec<String>,
    #[serde(default, skip_serializing_if = "SshConfig::is_empty")]
    ssh: SshConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealosFile {
    #[serde(default)]
    metadata: SealosMeta,
    spec: SealosSpec,
}

#[derive(Deserialize, Default)]
struct SealosMeta {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealosSpec {
    #[serde(default)]
    hosts: Vec<SealosHost>,
    #[serde(default)]
    image: Vec<String>,
    #[serde(default)]
    ssh: SealosSsh,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SealosHost {
    #[serde(default)]
    ips: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    ssh: SealosSsh,
    /// `KEY=VALUE` entries, as `spec.env`.
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SealosSsh {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    passwd: Option<String>,
    #[serde(default)]
    pk: Option<String>,
    /// A number or a string (`"2222"`), as sealos and sealer files have both.
    #[serde(default)]
    port: Option<Value>,
}

fn syntax(source_name: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Syntax {
        source_name: source_name.to_string(),
        reason: e.to_string(),
    }
}

/// The text of a scalar env value; `None` for lists and mappings.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

fn parse_roles(
    names: &[String],
    field: &str,
    strict: bool,
    problems: &mut Vec<Problem>,
) -> (Vec<Role>, Vec<String>) {
    let mut roles = Vec::new();
    let mut labels = Vec::new();
    for (j, name) in names.iter().enumerate() {
        match Role::parse(name) {
            Some(r) => roles.push(r),
            // sealos' role for the hosts that serve the in-cluster registry.
            None if name == REGISTRY_ROLE => labels.push(name.clone()),
            None if strict => problems.push(Problem::new(
                format!("{field}[{j}]"),
                format!("unknown role {name:?} (master, control-plane, node, worker or registry)"),
            )),
            None => labels.push(name.clone()),
        }
    }
    (roles, labels)
}

/// `ADDR`, `ADDR:PORT`, `[V6]` or `[V6]:PORT`; a bare IPv6 has no port.
pub(crate) fn parse_address_port(s: &str) -> Result<(Address, Option<u16>), String> {
    let s = s.trim();
    let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err(format!("{s:?} has an unclosed '['"));
        };
        match after.strip_prefix(':') {
            Some(p) => (addr, Some(p)),
            None if after.is_empty() => (addr, None),
            None => return Err(format!("{s:?}: unexpected text after ']'")),
        }
    } else if s.matches(':').count() == 1 {
        let (a, p) = s.split_once(':').expect("one colon");
        (a, Some(p))
    } else {
        (s, None)
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("{s:?}: {p:?} is not a port (1-65535)")),
            Ok(n) => Some(n),
        },
        None => None,
    };
    Ok((Address::parse(addr)?, port))
}

impl Cluster {
    /// Reads a Clusterfile in either format, with the documents that may
    /// follow its Cluster ([`super::documents`]). `source_name` (a path,
    /// `-`) prefixes errors. Every problem is reported at once.
    pub fn from_yaml(text: &str, source_name: &str) -> Result<Cluster, ClusterError> {
        let docs = documents::split(text);
        let mut problems = Vec::new();
        let mut found: Option<(&Document, bool)> = None;
        let mut configs = Vec::new();
        let mut runtime_config = Vec::new();
        for doc in &docs {
            let at = format!("{source_name}:{}", doc.line);
            let header: Header =
                serde_yaml_ng::from_str(&doc.text).map_err(|e| syntax(source_name, e))?;
            match (header.api_version.as_str(), header.kind.as_str()) {
                (API_VERSION | SEALOS_API_VERSION, KIND) if found.is_some() => problems.push(
                    Problem::new(at, "a second Cluster document: a Clusterfile describes one cluster"),
                ),
                (API_VERSION, KIND) => found = Some((doc, true)),
                (SEALOS_API_VERSION, KIND) => found = Some((doc, false)),
                (API_VERSION | SEALOS_API_VERSION, documents::CONFIG_KIND) => {
                    let file: documents::ConfigFile = serde_yaml_ng::from_str(&doc.text)
                        .map_err(|e| syntax(source_name, e))?;
                    configs.extend(ConfigDoc::from_file(file, &at, &mut problems));
                }
                (v, _) if documents::is_runtime_config(v) => {
                    runtime_config.push(doc.raw.trim_end().to_string())
                }
                _ if docs.len() == 1 => {
                    return Err(ClusterError::UnknownFormat {
                        source_name: source_name.to_string(),
                        api_version: header.api_version,
                        kind: header.kind,
                    })
                }
                (v, k) => problems.push(Problem::new(
                    at,
                    format!(
                        "unknown document apiVersion {v:?} kind {k:?}: a Clusterfile holds one Cluster ({API_VERSION} or {SEALOS_API_VERSION}), Config documents ({SEALOS_API_VERSION}) and kubeadm configuration documents ({})",
                        documents::RUNTIME_CONFIG_GROUPS.join(", ")
                    ),
                )),
            }
        }
        let Some((doc, ours)) = found else {
            return Err(ClusterError::UnknownFormat {
                source_name: source_name.to_string(),
                api_version: String::new(),
                kind: String::new(),
            });
        };
        let parsed = if ours {
            Cluster::from_ours(&doc.text, source_name)
        } else {
            Cluster::from_sealos(&doc.text, source_name)
        };
        let mut cluster = match parsed {
            Ok(c) => c,
            Err(ClusterError::Invalid {
                problems: mut more, ..
            }) => {
                more.extend(problems);
                return Err(ClusterError::Invalid {
                    source_name: source_name.to_string(),
                    problems: more,
                });
            }
            Err(e) => return Err(e),
        };
        cluster.configs = configs;
        cluster.runtime_config = runtime_config.join("\n---\n");
        if !cluster.runtime_config.is_empty() {
            cluster.runtime_config.push('\n');
        }
        unless_problems(cluster, source_name, problems)
    }

    fn from_ours(text: &str, source_name: &str) -> Result<Cluster, ClusterError> {
        let file: OurFile = serde_yaml_ng::from_str(text).map_err(|e| syntax(source_name, e))?;
        let mut problems = Vec::new();
        let mut cluster = Cluster::new(&file.metadata.name);
        cluster.images = file.spec.images;
        cluster.ssh = file.spec.ssh;
        cluster.status = file.status;
        for (k, v) in &file.spec.env {
            match scalar_text(v) {
                Some(s) => {
                    cluster.env.insert(k.clone(), s);
                }
                None => problems.push(Problem::new(
                    format!("spec.env.{k}"),
                    "must be a string, number or boolean, not a list or mapping",
                )),
            }
        }
        let mut index_map = Vec::new();
        for (i, h) in file.spec.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            let (roles, mut labels) =
                parse_roles(&h.roles, &format!("{field}.roles"), true, &mut problems);
            labels.extend(h.labels.iter().cloned());
            match Address::parse(&h.address) {
                Ok(address) => {
                    let mut host = Host::new(address, &roles);
                    host.port = h.port;
                    host.ssh = h.ssh.clone();
                    host.labels = labels;
                    host.env = h.env.clone();
                    cluster.hosts.push(host);
                    index_map.push(i);
                }
                Err(e) => problems.push(Problem::new(format!("{field}.address"), e)),
            }
        }
        finish(cluster, problems, source_name, Some(&index_map))
    }

    fn from_sealos(text: &str, source_name: &str) -> Result<Cluster, ClusterError> {
        let file: SealosFile = serde_yaml_ng::from_str(text).map_err(|e| syntax(source_name, e))?;
        let mut problems = Vec::new();
        let name = file.metadata.name.unwrap_or_else(|| "default".to_string());
        let mut cluster = Cluster::new(&name);
        cluster.images = file.spec.image;
        cluster.ssh = sealos_ssh(&file.spec.ssh, "spec.ssh", &mut problems);
        for (i, pair) in file.spec.env.iter().enumerate() {
            match parse_env_pair(pair) {
                Ok((k, v)) => {
                    cluster.env.insert(k, v);
                }
                Err(e) => problems.push(Problem::new(format!("spec.env[{i}]"), e)),
            }
        }
        for (i, group) in file.spec.hosts.iter().enumerate() {
            let field = format!("spec.hosts[{i}]");
            let (roles, labels) = parse_roles(
                &group.roles,
                &format!("{field}.roles"),
                false,
                &mut problems,
            );
            if roles.is_empty() {
                problems.push(Problem::new(
                    format!("{field}.roles"),
                    "needs master or node",
                ));
            }
            if group.ips.is_empty() {
                problems.push(Problem::new(format!("{field}.ips"), "lists no address"));
            }
            let ssh = sealos_ssh(&group.ssh, &format!("{field}.ssh"), &mut problems);
            let mut env = BTreeMap::new();
            for (j, pair) in group.env.iter().enumerate() {
                match parse_env_pair(pair) {
                    Ok((k, v)) => {
                        env.insert(k, v);
                    }
                    Err(e) => problems.push(Problem::new(format!("{field}.env[{j}]"), e)),
                }
            }
            for (j, ip) in group.ips.iter().enumerate() {
                match parse_address_port(ip) {
                    Ok((address, port)) => {
                        let mut host = Host::new(address, &roles);
                        host.port = port;
                        host.ssh = ssh.clone();
                        host.labels = labels.clone();
                        host.env = env.clone();
                        cluster.hosts.push(host);
                    }
                    Err(e) => problems.push(Problem::new(format!("{field}.ips[{j}]"), e)),
                }
            }
        }
        // Re-number problems found by the model in our field names: the
        // sealos file groups hosts, so name the address instead.
        let mut model = cluster.problems();
        for p in &mut model {
            if p.field.starts_with("spec.hosts[") {
                p.field = "spec.hosts".to_string();
            } else if p.field.starts_with("spec.env.") {
                p.field = "spec.env".to_string();
            } else if p.field.starts_with("spec.images") {
                p.field = p.field.replace("spec.images", "spec.image");
            }
        }
        problems.extend(model);
        unless_problems(cluster, source_name, problems)
    }

    /// Our Clusterfile with status, for `$SEALRS_ROOT/clusters/NAME/`.
    /// Inline passwords are dropped; references stay.
    pub fn to_yaml(&self) -> String {
        let file = OurFile {
            api_version: API_VERSION.to_string(),
            kind: KIND.to_string(),
            metadata: Metadata {
                name: self.name.clone(),
            },
            spec: OurSpec {
                images: self.images.clone(),
                env: self
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
                ssh: self.ssh.without_inline_password(),
                hosts: self
                    .hosts
                    .iter()
                    .map(|h| OurHost {
                        address: h.address.to_string(),
                        port: h.port,
                        roles: h.roles.iter().map(|r| r.to_string()).collect(),
                        ssh: h.ssh.without_inline_password(),
                        labels: h.labels.clone(),
                        env: h.env.clone(),
                    })
                    .collect(),
            },
            status: self.status.clone(),
        };
        let mut text = serde_yaml_ng::to_string(&file).expect("a cluster always serializes");
        for config in &self.configs {
            text.push_str("---\n");
            text.push_str(
                &serde_yaml_ng::to_string(&config.to_file()).expect("a Config always serializes"),
            );
        }
        if !self.runtime_config.is_empty() {
            text.push_str("---\n");
            text.push_str(&self.runtime_config);
        }
        text
    }
}

fn sealos_ssh(raw: &SealosSsh, field: &str, problems: &mut Vec<Problem>) -> SshConfig {
    let port = match &raw.port {
        None | Some(Value::Null) => None,
        Some(v) => match scalar_text(v).and_then(|s| s.parse::<u16>().ok()) {
            Some(p) if p > 0 => Some(p),
            _ => {
                problems.push(Problem::new(
                    format!("{field}.port"),
                    "must be a port number (1-65535)",
                ));
                None
            }
        },
    };
    SshConfig {
        user: raw.user.clone().filter(|u| !u.is_empty()),
        port,
        key: raw.pk.clone().filter(|k| !k.is_empty()),
        password_from: raw
            .passwd
            .clone()
            .filter(|p| !p.is_empty())
            .map(|p| PasswordSource::Value(Secret::new(p))),
        known_hosts: None,
    }
}

/// Adds the model's problems to the parse problems. `index_map[n]` is the
/// position in the file of the model's host `n`, so that fields name the file.
pub(super) fn finish(
    cluster: Cluster,
    mut problems: Vec<Problem>,
    source_name: &str,
    index_map: Option<&[usize]>,
) -> Result<Cluster, ClusterError> {
    for mut p in cluster.problems() {
        if let (Some(map), Some(rest)) = (index_map, p.field.strip_prefix("spec.hosts[")) {
            if let Some((n, tail)) = rest.split_once(']') {
                if let Some(i) = n.parse::<usize>().ok().and_then(|n| map.get(n)) {
                    p.field = format!("spec.hosts[{i}]{tail}");
                }
            }
        }
        problems.push(p);
    }
    unless_problems(cluster, source_name, problems)
}
