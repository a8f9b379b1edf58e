//! `sealrs kubeconfig`: the cluster's admin kubeconfig, read from the first
//! master where its runtime keeps it, its server set to the control-plane
//! endpoint (`CONTROL_PLANE_ENDPOINT`) or the first master's address, as
//! k3sup and k0sctl write theirs. Saved clusters are listed here too.

use std::path::Path;

use super::connect::{self, Connector};
use super::ApplyError;
use crate::cluster::{Cluster, Phase};
use crate::runtime;

/// The API server port of every runtime sealrs knows.
const API_PORT: u16 = 6443;

/// At most this much is read: an admin kubeconfig is a few kilobytes.
const MAX_KUBECONFIG: u64 = 1 << 20;

/// The runtime the cluster's first master runs, as its status records it.
pub(super) fn runtime_name(cluster: &Cluster) -> Result<String, ApplyError> {
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    cluster
        .status
        .hosts
        .get(&first.key())
        .and_then(|s| s.runtime.clone())
        .ok_or_else(|| {
            ApplyError::Unsupported(format!(
                "cluster {}: its first master {} runs no runtime yet; run sealrs run first",
                cluster.name,
                first.key()
            ))
        })
}

/// `https://HOST:PORT` that users reach the API at.
pub fn server(cluster: &Cluster) -> Result<String, ApplyError> {
    if let Some(endpoint) = cluster.env.get("CONTROL_PLANE_ENDPOINT") {
        let endpoint = endpoint.trim_start_matches("https://");
        let has_port = endpoint
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.ends_with(':') && port.parse::<u16>().is_ok())
            && !endpoint.ends_with(']');
        return Ok(if has_port {
            format!("https://{endpoint}")
        } else {
            format!("https://{endpoint}:{API_PORT}")
        });
    }
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    Ok(format!("https://{}:{API_PORT}", first.address.url_host()))
}

/// The admin kubeconfig with every cluster's `server` set to `server`.
pub fn with_server(text: &str, server: &str, from: &str) -> Result<String, ApplyError> {
    let bad = |detail: String| ApplyError::Unsupported(format!("{from}: {detail}"));
    let mut doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not a kubeconfig: {e}")))?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(|c| c.as_sequence_mut())
        .ok_or_else(|| bad("not a kubeconfig: it has no clusters".into()))?;
    for entry in clusters {
        if let Some(cluster) = entry.get_mut("cluster").and_then(|c| c.as_mapping_mut()) {
            cluster.insert("server".into(), server.into());
        }
    }
    serde_yaml_ng::to_string(&doc).map_err(|e| bad(e.to_string()))
}

/// Reads the admin kubeconfig from the first master of `cluster`, its server
/// set to [`server`].
pub fn admin_kubeconfig(
    cluster: &Cluster,
    connector: &dyn Connector,
) -> Result<String, ApplyError> {
    let name = runtime_name(cluster)?;
    let rt = runtime::runtime_for(&name).ok_or_else(|| ApplyError::NoRuntime {
        image: cluster.images.first().cloned().unwrap_or_default(),
        runtime: name.clone(),
    })?;
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    let transport = connect::connect(connector, first, &cluster.ssh_for(first))?;
    let path = rt.admin_kubeconfig();
    let bytes = transport
        .download_small(path, MAX_KUBECONFIG)
        .map_err(ApplyError::transport(first.key()))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        ApplyError::Unsupported(format!("{}:{path} is not UTF-8 text", first.key()))
    })?;
    with_server(&text, &server(cluster)?, &format!("{}:{path}", first.key()))
}

/// A saved cluster, as `sealrs clusters` lists it.
#[derive(Debug, serde::Serialize)]
pub struct SavedCluster {
    pub name: String,
    pub runtime: Option<String>,
    pub version: Option<String>,
    pub hosts: usize,
    pub state: Phase,
}

/// Every cluster saved under `root`, by name.
pub fn saved_clusters(root: &Path) -> Result<Vec<SavedCluster>, ApplyError> {
    let dir = root.join("clusters");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ApplyError::State { path: dir, source }),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let cluster = match super::load_cluster(root, &name) {
            Ok(cluster) => cluster,
            // A directory with only a lock (a command that saved nothing).
            Err(ApplyError::NoCluster { .. }) => continue,
            Err(e) => return Err(e),
        };
        let first = cluster
            .first_master()
            .and_then(|h| cluster.status.hosts.get(&h.key()));
        out.push(SavedCluster {
            runtime: first.and_then(|s| s.runtime.clone()),
            version: first.and_then(|s| s.version.clone()),
            hosts: cluster.hosts.len(),
            state: cluster.status.phase,
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_the_endpoint_with_the_api_port_else_the_first_master() {
        let mut c = Cluster::from_args(&crate::cluster::ClusterArgs {
            name: "c".into(),
            masters: vec!["10.0.0.1,10.0.0.2".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(server(&c).unwrap(), "https://10.0.0.1:6443");
        c.env
            .insert("CONTROL_PLANE_ENDPOINT".into(), "lb.example:8443".into());
        assert_eq!(server(&c).unwrap(), "https://lb.example:8443");
        c.env
            .insert("CONTROL_PLANE_ENDPOINT".into(), "lb.example".into());
        assert_eq!(server(&c).unwrap(), "https://lb.example:6443");
        let text = "apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: QUJD\n  name: default\nusers: []\n";
        let out = with_server(text, "https://lb.example:6443", "h").unwrap();
        assert!(out.contains("server: https://lb.example:6443"), "{out}");
        assert!(out.contains("certificate-authority-data: QUJD"), "{out}");
        assert!(with_server("a: 1", "s", "h1:/x")
            .unwrap_err()
            .to_string()
            .contains("h1:/x: not a kubeconfig"));
    }
}
