//! Phase "uninstall" (`delete`, `reset`): drain a node and delete it from
//! Kubernetes on the first master, uninstall the runtime from a host and
//! remove what sealrs put there; workers in parallel, control planes one by
//! one in the order given.

use super::context::RunContext;
use super::parallel::per_host;
use super::remote::{
    apply_plan, host_context, host_request, query, run_checked, run_installer_shown,
};
use super::{ApplyError, HostFailure};
use crate::cluster::{Cluster, Host};
use crate::host_paths::HOST_DIR;
use crate::installer::Operation;
use crate::progress::{HostTally, Task};
use crate::runtime::{self, JoinSecrets};
use crate::transport::Transport;

/// Uninstalls `workers` in parallel, then `masters` one by one (stopping at
/// the first that fails when `stop_at_failed_master`); each host's outcome
/// (whether it changed), requests made from `snapshot`.
pub(super) fn uninstall(
    ctx: &RunContext,
    snapshot: &Cluster,
    workers: &[Host],
    masters: &[Host],
    stop_at_failed_master: bool,
) -> Vec<(Host, Result<bool, ApplyError>)> {
    let teardown_on = |host: &Host| {
        let label = format!("{}: {} uninstall", host.key(), ctx.runtime.name());
        let step = ctx
            .logs
            .step(ctx.progress, &snapshot.name, &host.key(), &label);
        let result = teardown(ctx, snapshot, host, step.as_ref());
        if result.is_err() {
            step.fail();
        }
        result
    };
    let label = format!("{} uninstall (workers)", ctx.runtime.name());
    let tally = HostTally::new(ctx.progress, &label, workers.len());
    let mut results = per_host(ctx.max_parallel(), workers, |host| {
        let result = teardown_on(host);
        tally.finished(result.is_ok());
        (host.clone(), result)
    });
    for host in masters {
        let result = teardown_on(host);
        let failed = result.is_err();
        results.push((host.clone(), result));
        if failed && stop_at_failed_master {
            break;
        }
    }
    results
}

/// What marks a sealrs image store (see `store`): a directory holding one is
/// never removed, whatever `--root` pointed at.
const STORE_MARKS: [&str; 3] = ["oci/oci-layout", "oci/index.json", "clusters"];

/// Refuses, before anything changes, when [`HOST_DIR`] on one of `hosts`
/// holds a sealrs image store (someone ran sealrs there with `--root
/// /var/lib/sealrs-host`): uninstalling removes that directory whole.
pub(super) fn refuse_stores(ctx: &RunContext, hosts: &[Host]) -> Result<(), ApplyError> {
    let marks: Vec<String> = STORE_MARKS
        .iter()
        .map(|m| format!("{HOST_DIR}/{m}"))
        .collect();
    let found = per_host(ctx.max_parallel(), hosts, |host| {
        let transport = ctx.connection(host)?;
        let there = transport
            .existing(&marks)
            .map_err(ApplyError::transport(host.key()))?;
        Ok::<_, ApplyError>(there.iter().any(|b| *b))
    });
    let mut holding = Vec::new();
    for (host, result) in hosts.iter().zip(found) {
        if result? {
            holding.push(host.key());
        }
    }
    if holding.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Refused {
        hosts: holding,
        reason: format!(
            "{HOST_DIR} holds a sealrs image store (oci/ or clusters/), and uninstalling removes {HOST_DIR} whole; nothing was changed: move that store (sealrs --root elsewhere) and run the same command again"
        ),
    })
}

/// Uninstalls the runtime from `host` and removes what sealrs put there,
/// the plan's step shown on `shown` while it runs.
fn teardown(
    ctx: &RunContext,
    cluster: &Cluster,
    host: &Host,
    shown: &dyn Task,
) -> Result<bool, ApplyError> {
    let transport = ctx.connection(host)?;
    let request = host_request(cluster, host, &ctx.image, &JoinSecrets::default());
    let operation = Operation::Uninstall;
    let report = run_installer_shown(transport, &ctx.image, operation, &request, shown)?;
    super::join::warn_failed_steps(ctx, host, &report);
    // Layer directories, unpacked rootfs, placed-file records, markers.
    run_checked(transport, &["rm", "-rf", "--one-file-system", HOST_DIR])?;
    Ok(report.changed)
}

/// The host's Kubernetes node name: the one recorded when sealrs first
/// reached it, else what the host says now (`None` when it is down).
pub(super) fn node_name(
    cluster: &Cluster,
    host: &Host,
    transport: Option<&dyn Transport>,
) -> Result<Option<String>, ApplyError> {
    let recorded = cluster
        .status
        .hosts
        .get(&host.key())
        .and_then(|s| s.node_name.clone());
    let name = match (recorded, transport) {
        (Some(name), _) => name,
        (None, Some(t)) => query(t, &["uname", "-n"])?,
        (None, None) => return Ok(None),
    };
    crate::cluster::node_name_from_hostname(&name)
        .map(Some)
        .ok_or_else(|| ApplyError::runtime(host)(runtime::RuntimeError::BadNodeName { node: name }))
}

/// What a connection failure says, without the host it is about.
pub(super) fn unreachable_reason(failure: &HostFailure) -> String {
    match failure.error.as_ref() {
        ApplyError::Transport { source, .. } => source.to_string(),
        other => other.to_string(),
    }
}

/// Which steps of the runtime's remove-node plan to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Removal {
    /// Drain, then delete the node.
    All,
    /// The steps before [`runtime::DELETE_NODE_STEP`]: drain.
    Drain,
    /// [`runtime::DELETE_NODE_STEP`] and after: delete the node.
    Delete,
}

/// Drains the node and deletes it from Kubernetes, on the first master (or
/// the `part` of that asked); a drain that did not finish is reported, and
/// the node deleted all the same.
pub(super) fn remove_from_kubernetes(
    ctx: &RunContext,
    cluster: &Cluster,
    first: &Host,
    node: &str,
    part: Removal,
) -> Result<(), ApplyError> {
    let image = &ctx.image;
    let host = host_context(cluster, first, image, JoinSecrets::default())?;
    let mut plan = ctx
        .runtime
        .remove_node(&host, node)
        .map_err(ApplyError::runtime(first))?;
    let split = plan
        .steps
        .iter()
        .position(|s| s.id == runtime::DELETE_NODE_STEP)
        .unwrap_or(plan.steps.len());
    match part {
        Removal::All => {}
        Removal::Drain => plan.steps.truncate(split),
        Removal::Delete => {
            plan.steps.drain(..split);
        }
    }
    let report = apply_plan(ctx.connection(first)?, image, &plan)?;
    for step in &report.steps {
        if let Some(code) = step.exit_code.filter(|c| *c != 0) {
            ctx.progress.message(&format!(
                "warning: {}: {} ended with exit code {code}; going on:\n{}",
                first.key(),
                step.title,
                step.output.join("\n")
            ));
        }
    }
    Ok(())
}
