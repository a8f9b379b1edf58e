//! Connecting to the hosts and checking them before anything changes.

use super::{AppliedImage, ApplyError, HostFailure, HOST_DIR};
use crate::cluster::{Cluster, Host, SshConfig};
use crate::transport::{Transport, TransportError};

/// Every host with its open connection.
pub type Connections = Vec<(Host, Box<dyn Transport>)>;

/// Opens a connection to one host; the CLI connects over SSH, tests may too.
pub trait Connector: Sync {
    fn connect(&self, host: &Host, ssh: &SshConfig) -> Result<Box<dyn Transport>, TransportError>;
}

/// What a host told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    pub arch: String,
    pub os: String,
    pub free_bytes: u64,
}

/// Connects to every host in parallel; fails naming every host that failed.
pub fn connect_all(
    cluster: &Cluster,
    connector: &dyn Connector,
) -> Result<Connections, ApplyError> {
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = cluster
            .hosts
            .iter()
            .map(|host| {
                let ssh = cluster.ssh_for(host);
                scope.spawn(move || (host.clone(), connector.connect(host, &ssh)))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a connect thread panicked"))
            .collect()
    });
    let mut connections = Vec::new();
    let mut failures = Vec::new();
    for (host, result) in results {
        match result {
            Ok(transport) => connections.push((host, transport)),
            Err(source) => failures.push(HostFailure {
                host: host.key(),
                error: Box::new(ApplyError::Transport {
                    host: host.key(),
                    source: Box::new(source),
                }),
            }),
        }
    }
    ApplyError::all_hosts_ok(failures)?;
    Ok(connections)
}

/// Checks OS, architecture and free disk on every host; every problem at once.
pub fn check_all(
    connections: &[(Host, Box<dyn Transport>)],
    image: &AppliedImage,
) -> Result<(), ApplyError> {
    let needed: u64 = image.layers.iter().map(|l| l.size()).sum::<u64>() * 3;
    let mut failures = Vec::new();
    for (host, transport) in connections {
        let problem = match check(transport.as_ref()) {
            Ok(found) if found.os != "Linux" => Some(format!("it runs {}, not Linux", found.os)),
            Ok(found) if found.arch != image.arch => Some(format!(
                "it is {} but image {} is for {}",
                found.arch, image.name, image.arch
            )),
            Ok(found) if found.free_bytes < needed => Some(format!(
                "{HOST_DIR} has {} MB free, the image needs about {} MB (layers, rootfs and placed files)",
                found.free_bytes >> 20,
                needed >> 20
            )),
            Ok(_) => None,
            Err(err) => Some(err.to_string()),
        };
        if let Some(problem) = problem {
            failures.push(HostFailure {
                host: host.key(),
                error: Box::new(ApplyError::HostUnfit {
                    host: host.key(),
                    problem,
                }),
            });
        }
    }
    ApplyError::all_hosts_ok(failures)?;
    Ok(())
}

fn check(transport: &dyn Transport) -> Result<HostCheck, ApplyError> {
    let host = transport.address().to_string();
    let run = |argv: &[&str]| -> Result<String, ApplyError> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let out = transport
            .run(&argv, &[], None)
            .map_err(|source| ApplyError::Transport {
                host: host.clone(),
                source: Box::new(source),
            })?;
        if !out.success() {
            return Err(ApplyError::Command {
                host: host.clone(),
                argv: argv.join(" "),
                status: out.status_text(),
                tail: out.tail(5),
            });
        }
        Ok(out.stdout_text().trim().to_string())
    };
    let os = run(&["uname", "-s"])?;
    let arch = oci_arch(&run(&["uname", "-m"])?).to_string();
    run(&["mkdir", "-p", HOST_DIR])?;
    // POSIX df: the fourth column of the second line is the space available, in KiB.
    let df = run(&["df", "-Pk", HOST_DIR])?;
    let free_kib = df
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    Ok(HostCheck {
        arch,
        os,
        free_bytes: free_kib * 1024,
    })
}

/// `uname -m` to the OCI architecture name.
pub fn oci_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" => "arm",
        "ppc64le" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_map_to_oci_architectures() {
        assert_eq!(oci_arch("x86_64"), "amd64");
        assert_eq!(oci_arch("aarch64"), "arm64");
        assert_eq!(oci_arch("armv7l"), "arm");
        assert_eq!(oci_arch("mips"), "mips");
    }
}
