//! `sealrs verify`: each host of a saved cluster has its installer re-hash
//! everything sealrs keeps there (every file of each kept layer against the
//! layer's record, every placed file against what was placed) and name each
//! damaged file. It changes nothing; the next `run` or `upgrade` repairs
//! what it names (a damaged layer is sent again, placed files restored). A
//! host that cannot be reached is an answer, as in `status`.

use serde::Serialize;

use super::connect::{self, Connector};
use super::image::resolve_pinned;
use super::parallel::per_host;
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::installer::Damage;
use crate::store::Store;

/// What one host's installer found.
#[derive(Debug, Clone, Serialize)]
pub struct HostIntegrity {
    pub host: String,
    /// Whether the host was reached and its installer answered.
    pub checked: bool,
    /// Why it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub damaged: Vec<Damage>,
}

/// What every host's installer found.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterIntegrity {
    pub cluster: String,
    pub hosts: Vec<HostIntegrity>,
    /// Every host was checked and nothing is damaged.
    pub clean: bool,
}

/// Has every host of `cluster` (in parallel) re-hash what sealrs keeps
/// there, with the installer of the image the cluster runs.
pub fn verify(
    store: &Store,
    cluster: &Cluster,
    connector: &dyn Connector,
    warn: &dyn Fn(&str),
) -> Result<ClusterIntegrity, ApplyError> {
    let images = resolve_pinned(store, cluster, warn)?;
    let installer = images
        .first()
        .ok_or(ApplyError::NoImage)?
        .installer_on_host()?;
    let hosts = per_host(connector.max_parallel(), &cluster.hosts, |host| {
        on_host(cluster, host, connector, &installer).unwrap_or_else(|error| HostIntegrity {
            host: host.key(),
            checked: false,
            error: Some(error),
            damaged: Vec::new(),
        })
    });
    let clean = hosts.iter().all(|h| h.checked && h.damaged.is_empty());
    Ok(ClusterIntegrity {
        cluster: cluster.name.clone(),
        hosts,
        clean,
    })
}

/// The installer's answer on `host`, or why there is none.
fn on_host(
    cluster: &Cluster,
    host: &Host,
    connector: &dyn Connector,
    installer: &str,
) -> Result<HostIntegrity, String> {
    let transport =
        connect::connect(connector, host, &cluster.ssh_for(host)).map_err(|e| match e {
            ApplyError::Transport { source, .. } => source.to_string(),
            other => other.to_string(),
        })?;
    let argv: Vec<String> = [installer, "installer", "integrity"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let output = transport.run(&argv, &[], None).map_err(|e| e.to_string())?;
    #[derive(serde::Deserialize)]
    struct Answer {
        damaged: Vec<Damage>,
    }
    let answer: Answer = serde_json::from_slice(&output.stdout)
        .map_err(|_| format!("{installer} installer integrity failed: {}", output.tail(5)))?;
    Ok(HostIntegrity {
        host: host.key(),
        checked: true,
        error: None,
        damaged: answer.damaged,
    })
}

/// For people: a line per host, then one per damaged file.
pub fn table(found: &ClusterIntegrity) -> String {
    let mut out = String::new();
    for host in &found.hosts {
        match (&host.error, host.damaged.len()) {
            (Some(error), _) => out.push_str(&format!("{}: not checked: {error}\n", host.host)),
            (None, 0) => out.push_str(&format!("{}: nothing damaged\n", host.host)),
            (None, n) => {
                out.push_str(&format!(
                    "{}: {n} damaged file{}\n",
                    host.host,
                    if n == 1 { "" } else { "s" }
                ));
                for d in &host.damaged {
                    out.push_str(&format!("  {d}\n"));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_damaged_file_with_what_was_expected_and_found() {
        let found = ClusterIntegrity {
            cluster: "c".into(),
            clean: false,
            hosts: vec![
                HostIntegrity {
                    host: "10.0.0.1".into(),
                    checked: true,
                    error: None,
                    damaged: vec![Damage {
                        path: "/usr/local/bin/k3s".into(),
                        layer: None,
                        expected: "4 bytes, sha256 aa".into(),
                        found: "3 bytes".into(),
                    }],
                },
                HostIntegrity {
                    host: "10.0.0.2".into(),
                    checked: true,
                    error: None,
                    damaged: Vec::new(),
                },
                HostIntegrity {
                    host: "10.0.0.3".into(),
                    checked: false,
                    error: Some("connection refused".into()),
                    damaged: Vec::new(),
                },
            ],
        };
        assert_eq!(
            table(&found),
            "10.0.0.1: 1 damaged file\n  /usr/local/bin/k3s: expected 4 bytes, sha256 aa, found 3 bytes\n\
             10.0.0.2: nothing damaged\n10.0.0.3: not checked: connection refused\n"
        );
    }
}
