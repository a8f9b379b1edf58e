//! Phases "join masters" and "join nodes": the other control planes join one
//! by one (each joins a cluster that has the ones before it), then the nodes
//! in parallel, all with the secrets the first master's install captured.

use super::context::RunContext;
use super::parallel::per_host;
use super::remote::{host_request, run_installer};
use super::status::{mark_failed, record, record_all};
use super::{ApplyError, HostFailure};
use crate::cluster::{Cluster, Host};
use crate::installer::Operation;
use crate::runtime::JoinSecrets;

/// What a control plane's failed join does to the command; either way the
/// next control plane is not joined (it would join a cluster missing this
/// one) and no node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MasterFailure {
    /// The join's own error is the command's (`run`).
    Propagate,
    /// The host is marked failed in the status, and named in a per-host
    /// error (`add`: the saved cluster then says which host to rerun).
    MarkFailed,
}

/// Joins `hosts` (none of them the first master) with `secrets`, their
/// requests made from `snapshot`; records each outcome in `cluster`.
pub(super) fn join(
    ctx: &mut RunContext,
    cluster: &mut Cluster,
    snapshot: &Cluster,
    hosts: Vec<Host>,
    secrets: &JoinSecrets,
    on_failure: MasterFailure,
) -> Result<(), ApplyError> {
    let (masters, nodes): (Vec<Host>, Vec<Host>) = hosts.into_iter().partition(Host::is_master);
    for host in &masters {
        ctx.progress.message(&format!(
            "{}: {} join (control plane)",
            host.key(),
            ctx.runtime.name()
        ));
        match (join_one(ctx, snapshot, host, secrets), on_failure) {
            (Ok(changed), _) => record(cluster, host, &ctx.image, &mut ctx.report, changed),
            (Err(error), MasterFailure::Propagate) => return Err(error),
            (Err(error), MasterFailure::MarkFailed) => {
                mark_failed(cluster, host);
                return Err(ApplyError::Hosts(vec![HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                }]));
            }
        }
    }
    let shared: &RunContext = ctx;
    let results = per_host(&nodes, |host| {
        shared.progress.message(&format!(
            "{}: {} join (node)",
            host.key(),
            shared.runtime.name()
        ));
        (host.clone(), join_one(shared, snapshot, host, secrets))
    });
    record_all(cluster, &ctx.image, &mut ctx.report, results)
}

/// Whether the host's join changed it.
fn join_one(
    ctx: &RunContext,
    snapshot: &Cluster,
    host: &Host,
    secrets: &JoinSecrets,
) -> Result<bool, ApplyError> {
    let request = host_request(snapshot, host, &ctx.image, secrets);
    run_installer(ctx.connection(host)?, &ctx.image, Operation::Join, &request).map(|o| o.changed)
}
