//! `sealrs status`: how each host of a saved cluster is doing now, asked of
//! the hosts themselves. A host that cannot be reached is an answer
//! (`reachable: false` with the reason), never an error that stops the
//! command; the Nodes' Ready condition and version come from the first
//! master (`kubectl get node NAME -o json`, the runtime's kubectl with its
//! admin kubeconfig), as k0sctl and kubectl users read them.
//!
//! What sealrs installed is what the saved cluster records for the host
//! (image, digest, version), checked against the host's own state: the
//! image's unpacked rootfs ([`HOST_DIR`]`/rootfs/<digest>`) and the
//! installer's record of what it placed ([`PLACED_DIR`]`/<role>.json`).

use serde::Serialize;

use super::connect::{self, Connector};
use super::parallel::per_host;
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::host_paths::{HOST_DIR, PLACED_DIR};
use crate::installer::Request;
use crate::runtime::{self, Runtime};
use crate::transport::Transport;

/// One systemd unit and what `systemctl is-active` says of it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Service {
    pub unit: String,
    /// `active`, `inactive`, `failed`, … (`unknown` when it could not be asked).
    pub state: String,
}

/// The Node of a host, as the first master's API server has it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeState {
    pub name: String,
    /// The API server has no such Node.
    pub present: bool,
    /// The status of its `Ready` condition (`True`, `False`, `Unknown`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// `status.nodeInfo.kubeletVersion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One host's status.
#[derive(Debug, Clone, Serialize)]
pub struct HostHealth {
    pub host: String,
    pub roles: Vec<String>,
    pub reachable: bool,
    /// Why the host could not be reached, or what could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The image sealrs installed there, by the saved cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The host has that image's rootfs and the installer's placed-files
    /// record (`None` when it could not be asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed: Option<bool>,
    pub services: Vec<Service>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeState>,
    pub healthy: bool,
}

/// The status of every host of a cluster.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterHealth {
    pub cluster: String,
    pub runtime: String,
    pub hosts: Vec<HostHealth>,
    /// Every host is healthy.
    pub healthy: bool,
}

/// Asks every host of `cluster` (in parallel) and the first master how they
/// are; fails only when the cluster runs no runtime sealrs knows.
pub fn status(cluster: &Cluster, connector: &dyn Connector) -> Result<ClusterHealth, ApplyError> {
    let name = super::kubeconfig::runtime_name(cluster)?;
    let rt = runtime::runtime_for(&name).ok_or_else(|| ApplyError::NoRuntime {
        image: cluster.images.first().cloned().unwrap_or_default(),
        runtime: name.clone(),
    })?;
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    let cap = connector.max_parallel();
    let asked = per_host(cap, &cluster.hosts, |host| {
        match connect::connect(connector, host, &cluster.ssh_for(host)) {
            Ok(transport) => {
                let health = on_host(cluster, rt.as_ref(), host, transport.as_ref());
                (health, Some(transport))
            }
            Err(e) => (unreachable(cluster, host, e), None),
        }
    });
    let mut hosts = Vec::new();
    let mut first_transport = None;
    for (host, (health, transport)) in cluster.hosts.iter().zip(asked) {
        if host.address == first.address {
            first_transport = transport;
        }
        hosts.push(health);
    }
    for health in &mut hosts {
        let Some(name) = health.node.as_ref().map(|n| n.name.clone()) else {
            continue;
        };
        let Some(transport) = first_transport.as_deref() else {
            health.node = None;
            note(
                health,
                &format!(
                    "the first master {} is unreachable: no Node status",
                    first.key()
                ),
            );
            continue;
        };
        match node_state(rt.as_ref(), transport, &name) {
            Ok(node) => health.node = Some(node),
            Err(e) => {
                health.node = None;
                note(
                    health,
                    &format!("kubectl get node {name} on {}: {e}", first.key()),
                );
            }
        }
    }
    for health in &mut hosts {
        health.healthy = is_healthy(health);
    }
    let healthy = hosts.iter().all(|h| h.healthy);
    Ok(ClusterHealth {
        cluster: cluster.name.clone(),
        runtime: name,
        hosts,
        healthy,
    })
}

fn note(health: &mut HostHealth, message: &str) {
    health.error = Some(match health.error.take() {
        Some(before) => format!("{before}; {message}"),
        None => message.to_string(),
    });
}

fn is_healthy(h: &HostHealth) -> bool {
    h.reachable
        && h.installed == Some(true)
        && !h.services.is_empty()
        && h.services.iter().all(|s| s.state == "active")
        && h.node
            .as_ref()
            .is_some_and(|n| n.present && n.ready.as_deref() == Some("True"))
}

/// What the saved cluster says the host runs.
fn recorded(cluster: &Cluster, host: &Host) -> HostHealth {
    let status = cluster.status.hosts.get(&host.key());
    let image = status.and_then(|s| s.images.first());
    HostHealth {
        host: host.key(),
        roles: host.roles.iter().map(|r| r.to_string()).collect(),
        reachable: false,
        error: None,
        image: image.map(|i| i.name.clone()),
        digest: image.map(|i| i.digest.clone()),
        version: status.and_then(|s| s.version.clone()),
        installed: None,
        services: Vec::new(),
        node: None,
        healthy: false,
    }
}

fn unreachable(cluster: &Cluster, host: &Host, error: ApplyError) -> HostHealth {
    let mut health = recorded(cluster, host);
    health.error = Some(match error {
        ApplyError::Transport { source, .. } => source.to_string(),
        other => other.to_string(),
    });
    health
}

fn on_host(
    cluster: &Cluster,
    rt: &dyn Runtime,
    host: &Host,
    transport: &dyn Transport,
) -> HostHealth {
    let mut health = recorded(cluster, host);
    health.reachable = true;
    let role = Request::role(host);
    if let Some(digest) = &health.digest {
        let hex = digest.rsplit(':').next().unwrap_or(digest);
        let marks = [
            format!("{HOST_DIR}/rootfs/{hex}"),
            format!("{PLACED_DIR}/{role}.json"),
        ];
        match transport.existing(&marks) {
            Ok(found) => health.installed = Some(found.iter().all(|b| *b)),
            Err(e) => note(&mut health, &e.to_string()),
        }
    } else {
        health.installed = Some(false);
    }
    for unit in rt.service_units(role) {
        let argv = ["systemctl", "is-active", unit].map(String::from);
        let state = match transport.run(&argv, &[], None) {
            Ok(out) => {
                let said = out.stdout_text().trim().to_string();
                if said.is_empty() {
                    "unknown".to_string()
                } else {
                    said
                }
            }
            Err(e) => {
                note(&mut health, &e.to_string());
                "unknown".to_string()
            }
        };
        health.services.push(Service {
            unit: unit.to_string(),
            state,
        });
    }
    let recorded_name = cluster
        .status
        .hosts
        .get(&host.key())
        .and_then(|s| s.node_name.clone());
    let name = recorded_name.or_else(|| {
        super::remote::query(transport, &["uname", "-n"])
            .ok()
            .and_then(|n| crate::cluster::node_name_from_hostname(&n))
    });
    health.node = name.map(|name| NodeState {
        name,
        present: false,
        ready: None,
        version: None,
    });
    health
}

/// `kubectl get node NAME --ignore-not-found -o json` on the first master.
fn node_state(
    rt: &dyn Runtime,
    transport: &dyn Transport,
    name: &str,
) -> Result<NodeState, ApplyError> {
    let mut argv = rt.kubectl().to_vec();
    argv.extend(["get", "node", name, "--ignore-not-found", "-o", "json"]);
    let out = super::remote::query(transport, &argv)?;
    parse_node(name, &out).map_err(|e| {
        ApplyError::Unsupported(format!(
            "kubectl get node {name} -o json printed no Node: {e}"
        ))
    })
}

/// A Node object (or nothing: no such Node) as `kubectl -o json` prints it.
fn parse_node(name: &str, json: &str) -> Result<NodeState, String> {
    let mut node = NodeState {
        name: name.to_string(),
        present: false,
        ready: None,
        version: None,
    };
    if json.trim().is_empty() {
        return Ok(node);
    }
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    if value.get("kind").and_then(|k| k.as_str()) != Some("Node") {
        return Err("its kind is not Node".into());
    }
    node.present = true;
    let status = &value["status"];
    node.ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str())
        .map(String::from);
    node.version = status["nodeInfo"]["kubeletVersion"]
        .as_str()
        .map(String::from);
    Ok(node)
}

/// The table people read.
pub fn table(health: &ClusterHealth) -> String {
    let mut out = format!(
        "{:<22} {:<12} {:<9} {:<14} {:<20} {:<18} {:<7} {}\n",
        "HOST", "ROLES", "REACHABLE", "VERSION", "IMAGE", "SERVICES", "READY", "NODE VERSION"
    );
    for h in &health.hosts {
        let digest = h.digest.as_deref().map(|d| {
            d.rsplit(':')
                .next()
                .unwrap_or(d)
                .chars()
                .take(12)
                .collect::<String>()
        });
        let image = match (h.installed, digest) {
            (Some(false), _) => "missing".to_string(),
            (_, Some(d)) => d,
            (_, None) => "-".to_string(),
        };
        let services = if h.services.is_empty() {
            "-".to_string()
        } else {
            h.services
                .iter()
                .map(|s| s.state.as_str())
                .collect::<Vec<_>>()
                .join(",")
        };
        let (ready, node_version) = match &h.node {
            Some(n) if n.present => (
                n.ready.clone().unwrap_or_else(|| "?".into()),
                n.version.clone().unwrap_or_else(|| "-".into()),
            ),
            Some(_) => ("absent".to_string(), "-".to_string()),
            None => ("-".to_string(), "-".to_string()),
        };
        out.push_str(&format!(
            "{:<22} {:<12} {:<9} {:<14} {:<20} {:<18} {:<7} {}\n",
            h.host,
            h.roles.join(","),
            if h.reachable { "yes" } else { "no" },
            h.version.as_deref().unwrap_or("-"),
            image,
            services,
            ready,
            node_version
        ));
        if let Some(e) = &h.error {
            out.push_str(&format!("  {}: {e}\n", h.host));
        }
    }
    out.push_str(&format!(
        "cluster {}: {}\n",
        health.cluster,
        if health.healthy {
            "every host healthy".to_string()
        } else {
            let bad: Vec<&str> = health
                .hosts
                .iter()
                .filter(|h| !h.healthy)
                .map(|h| h.host.as_str())
                .collect();
            format!("not healthy: {}", bad.join(", "))
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_reads_its_ready_condition_and_kubelet_version_and_nothing_is_absent() {
        let json = r#"{"kind":"Node","metadata":{"name":"n1"},"status":{"conditions":[
            {"type":"MemoryPressure","status":"False"},{"type":"Ready","status":"True"}],
            "nodeInfo":{"kubeletVersion":"v1.30.2+k3s1"}}}"#;
        let node = parse_node("n1", json).unwrap();
        assert!(node.present);
        assert_eq!(node.ready.as_deref(), Some("True"));
        assert_eq!(node.version.as_deref(), Some("v1.30.2+k3s1"));
        let absent = parse_node("n1", "\n").unwrap();
        assert!(!absent.present && absent.ready.is_none());
        assert!(parse_node("n1", r#"{"kind":"List","items":[]}"#).is_err());
        assert!(parse_node("n1", "NAME STATUS").is_err());
    }
}
