//! Phases "join masters" and "join nodes": the other control planes join one
//! by one (each joins a cluster that has the ones before it), then the nodes
//! in parallel, all with the secrets the first master's install captured.

use super::context::RunContext;
use super::parallel::per_host;
use super::remote::{apply_plan, host_context, host_request, run_installer_shown};
use super::status::{mark_failed, record, settle};
use super::{ApplyError, HostFailure};
use crate::cluster::{Cluster, Host};
use crate::installer::{Operation, Report};
use crate::progress::{HostTally, Task};
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
/// requests made from `snapshot`; records each outcome in `cluster`. Failed
/// node joins within `--max-failed` stay Failed in the status and are kept
/// in the report's `tolerated`; one more, or an interrupted one, fails it.
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
        let step = ctx.logs.step(
            ctx.progress,
            &snapshot.name,
            &host.key(),
            &format!(
                "{}: {} join (control plane)",
                host.key(),
                ctx.runtime.name()
            ),
        );
        let joined = join_one(ctx, snapshot, host, secrets, step.as_ref());
        if joined.is_err() {
            step.fail();
        }
        drop(step);
        match (joined, on_failure) {
            (Ok(changed), _) => record(cluster, host, &ctx.image, &mut ctx.report, changed),
            (Err(error), MasterFailure::Propagate) => return Err(error),
            (Err(error), MasterFailure::MarkFailed) => {
                if !error.is_interrupted() {
                    mark_failed(cluster, host);
                }
                return Err(ApplyError::Hosts(vec![HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                }]));
            }
        }
    }
    let shared: &RunContext = ctx;
    let label = format!("{} join (nodes)", ctx.runtime.name());
    let tally = HostTally::new(ctx.progress, &label, nodes.len());
    let results = per_host(ctx.max_parallel(), &nodes, |host| {
        let step = shared.logs.step(
            shared.progress,
            &snapshot.name,
            &host.key(),
            &format!("{}: {} join (node)", host.key(), shared.runtime.name()),
        );
        let joined = join_one(shared, snapshot, host, secrets, step.as_ref());
        if joined.is_err() {
            step.fail();
        }
        tally.finished(joined.is_ok());
        (host.clone(), joined)
    });
    let (image, report) = (&ctx.image, &mut ctx.report);
    let failures = settle(cluster, results, |cluster, host, changed| {
        record(cluster, host, image, report, changed)
    });
    let allowed = ctx.options.max_failed;
    let interrupted = failures.iter().any(|f| f.error.is_interrupted());
    if failures.is_empty() || interrupted || !allowed.tolerates(failures.len(), nodes.len()) {
        return ApplyError::all_hosts_ok(failures);
    }
    ctx.progress.message(&format!(
        "warning: {} of {} nodes failed to join, within --max-failed {allowed}: going on without {}",
        failures.len(),
        nodes.len(),
        failures
            .iter()
            .map(|f| f.host.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ctx.report.tolerated = Some(ApplyError::Hosts(failures));
    Ok(())
}

/// Whether the host's join changed it.
fn join_one(
    ctx: &RunContext,
    snapshot: &Cluster,
    host: &Host,
    secrets: &JoinSecrets,
    shown: &dyn Task,
) -> Result<bool, ApplyError> {
    let request = host_request(snapshot, host, &ctx.image, secrets);
    let transport = ctx.connection(host)?;
    run_installer_shown(transport, &ctx.image, Operation::Join, &request, shown).map(|o| o.changed)
}

/// Phase "after joins": the runtime's plan for the first master once the
/// others joined or one failed (k0s invalidates its join tokens there, as
/// k0sctl does after its install phases). A runtime with nothing to do
/// returns no steps and the host is not reached; a step that failed but was
/// allowed to is reported as a warning.
pub(super) fn after_joins(
    ctx: &RunContext,
    snapshot: &Cluster,
    first: &Host,
    secrets: &JoinSecrets,
) -> Result<(), ApplyError> {
    let host = host_context(snapshot, first, &ctx.image, secrets.clone())?;
    let plan = ctx
        .runtime
        .after_joins(&host)
        .map_err(ApplyError::runtime(first))?;
    if plan.steps.is_empty() {
        return Ok(());
    }
    let report = apply_plan(ctx.connection(first)?, &ctx.image, &plan)?;
    warn_failed_steps(ctx, first, &report);
    Ok(())
}

/// A warning for each step of `report` that failed and was allowed to.
pub(super) fn warn_failed_steps(ctx: &RunContext, host: &Host, report: &Report) {
    for step in &report.steps {
        if let Some(code) = step.exit_code.filter(|c| *c != 0) {
            ctx.progress.message(&format!(
                "warning: {}: {} ended with exit code {code}; going on:\n{}",
                host.key(),
                step.title,
                step.output.join("\n")
            ));
        }
    }
}
