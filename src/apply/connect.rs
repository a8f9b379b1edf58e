//! Phase "connect": one connection per host, opened in parallel and kept in
//! the [`RunContext`], which closes them when it is dropped.

use super::context::RunContext;
use super::parallel::{per_host, MaxParallel};
use super::{ApplyError, HostFailure};
use crate::cluster::{Cluster, Host, SshConfig};
use crate::transport::{Transport, TransportError};

/// Every host with its open connection.
pub type Connections = Vec<(Host, Box<dyn Transport>)>;

/// Opens a connection to one host; the CLI connects over SSH, tests may too.
pub trait Connector: Sync {
    fn connect(&self, host: &Host, ssh: &SshConfig) -> Result<Box<dyn Transport>, TransportError>;
    /// How many hosts are worked on at once (`--max-parallel`).
    fn max_parallel(&self) -> MaxParallel {
        MaxParallel::default()
    }
}

/// Connects to every host of `hosts`; fails naming every host that failed,
/// and then keeps no connection.
pub(super) fn all(ctx: &mut RunContext, hosts: &Cluster) -> Result<(), ApplyError> {
    let (connections, failures) = reach(ctx.connector, hosts);
    ApplyError::all_hosts_ok(failures)?;
    ctx.connections = connections;
    Ok(())
}

/// Connects to every host of `hosts` it can: the hosts that could not be
/// reached.
pub(super) fn each(ctx: &mut RunContext, hosts: &Cluster) -> Vec<HostFailure> {
    let (connections, failures) = reach(ctx.connector, hosts);
    ctx.connections = connections;
    failures
}

/// `failures` without those where the host refused us (a host key, a
/// login): those stop the command as they are, never reported as hosts
/// that cannot be reached, nor skipped by `--force`.
pub(super) fn unreachable_only(failures: Vec<HostFailure>) -> Result<Vec<HostFailure>, ApplyError> {
    let (refused, down): (Vec<HostFailure>, Vec<HostFailure>) = failures.into_iter().partition(
        |f| matches!(f.error.as_ref(), ApplyError::Transport { source, .. } if source.is_refusal()),
    );
    ApplyError::all_hosts_ok(refused)?;
    Ok(down)
}

fn reach(connector: &dyn Connector, hosts: &Cluster) -> (Connections, Vec<HostFailure>) {
    let asks: Vec<(&Host, SshConfig)> = hosts.hosts.iter().map(|h| (h, hosts.ssh_for(h))).collect();
    split(per_host(connector.max_parallel(), &asks, |(host, ssh)| {
        ((*host).clone(), connect(connector, host, ssh))
    }))
}

pub(super) fn connect(
    connector: &dyn Connector,
    host: &Host,
    ssh: &SshConfig,
) -> Result<Box<dyn Transport>, ApplyError> {
    connector
        .connect(host, ssh)
        .map_err(|source| ApplyError::Transport {
            host: host.key(),
            source: Box::new(source),
        })
}

/// Each host's outcome: those that went well, and the failures.
pub(super) fn split<T>(
    results: Vec<(Host, Result<T, ApplyError>)>,
) -> (Vec<(Host, T)>, Vec<HostFailure>) {
    let mut done = Vec::new();
    let mut failures = Vec::new();
    for (host, result) in results {
        match result {
            Ok(value) => done.push((host, value)),
            Err(error) => failures.push(HostFailure {
                host: host.key(),
                error: Box::new(error),
            }),
        }
    }
    (done, failures)
}
