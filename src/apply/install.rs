//! Phase "install first master": the first master makes the cluster (or, for
//! `add`, runs its install again, which changes nothing, for the secrets it
//! captures); the other hosts join with those secrets. Its dry-run form
//! renders every host's plan without reaching any.

use super::context::RunContext;
use super::remote::{host_context, host_request, run_installer_shown};
use super::status::record;
use super::ApplyError;
use crate::cluster::{Cluster, Host, Secret};
use crate::installer::Operation;
use crate::progress::Task as _;
use crate::runtime::JoinSecrets;

/// What the first master's install is run for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Install {
    /// Making or converging the cluster (`run`): its status is recorded.
    Cluster,
    /// Only the join secrets it captures (`add`): the host already runs the
    /// cluster, and its status (with the application images it has) stays.
    Secrets,
}

/// Runs the runtime's install on `first` with its request made from
/// `snapshot`; the join secrets it captured.
pub(super) fn first_master(
    ctx: &mut RunContext,
    cluster: &mut Cluster,
    snapshot: &Cluster,
    first: &Host,
    purpose: Install,
) -> Result<JoinSecrets, ApplyError> {
    let why = match purpose {
        Install::Cluster => "",
        Install::Secrets => " (for the join secrets)",
    };
    let step = ctx.logs.step(
        ctx.progress,
        &snapshot.name,
        &first.key(),
        &format!("{}: {} install{why}", first.key(), ctx.runtime.name()),
    );
    let request = host_request(snapshot, first, &ctx.image, &JoinSecrets::default());
    let outcome = ctx
        .connection(first)
        .and_then(|transport| {
            run_installer_shown(
                transport,
                &ctx.image,
                Operation::Install,
                &request,
                step.as_ref(),
            )
        })
        .inspect_err(|_| step.fail())?;
    drop(step);
    match purpose {
        Install::Cluster => record(cluster, first, &ctx.image, &mut ctx.report, outcome.changed),
        Install::Secrets if outcome.changed => ctx.report.changed.push(first.key()),
        Install::Secrets => {}
    }
    ctx.runtime
        .join_secrets(&outcome.captures)
        .map_err(ApplyError::runtime(first))
}

/// The dry-run form of install and join: every host's plan, as the installer
/// would run it, with placeholders for the secrets that only the first
/// master can produce.
pub(super) fn dry_run(ctx: &RunContext, cluster: &Cluster) -> Result<String, ApplyError> {
    dry_run_of(ctx, cluster, &cluster.hosts)
}

/// [`dry_run`] for `hosts` of `cluster` only (`add --dry-run`: the new ones).
pub(super) fn dry_run_of(
    ctx: &RunContext,
    cluster: &Cluster,
    hosts: &[Host],
) -> Result<String, ApplyError> {
    let (runtime, image) = (ctx.runtime.as_ref(), &ctx.image);
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    let placeholder = |what: &str| Some(Secret::new(format!("<{what} from {}>", first.key())));
    let secrets = JoinSecrets {
        token: placeholder("token"),
        controller_token: placeholder("controller token"),
        ca_cert_hash: Some(format!("sha256:<CA hash from {}>", first.key())),
        certificate_key: placeholder("certificate key"),
    };
    let mut out = String::new();
    for host in hosts {
        let first_one = host.address == first.address;
        let plan = if first_one {
            runtime.install(&host_context(cluster, host, image, JoinSecrets::default())?)
        } else {
            runtime.join(&host_context(cluster, host, image, secrets.clone())?)
        }
        .map_err(ApplyError::runtime(host))?;
        out.push_str(&format!(
            "# {} ({}): {}\n",
            host.key(),
            role_names(host),
            plan.action
        ));
        out.push_str(&plan.render_dry_run());
        // Application images are applied on the first master only.
        let apps = ctx.apps.iter().filter(|_| first_one);
        out.push_str(&super::image_files::render_dry_run(
            std::iter::once(image).chain(apps),
            host,
        ));
        out.push('\n');
    }
    Ok(out)
}

pub(super) fn role_names(host: &Host) -> String {
    host.roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}
