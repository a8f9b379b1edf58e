//! Remote installer calls: the image's installer, run on a host with its
//! request on stdin, and what it reports; the few plain commands sealrs runs
//! itself.

use super::image::{host_layer, AppliedImage};
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::installer::{Operation, Report, Request};
use crate::plan::Plan;
use crate::progress::text::{is_step_line, parse_output_line};
use crate::progress::Task;
use crate::runtime::{HostContext, JoinSecrets};
use crate::transport::{Output, Transport};

/// What the runtime plans a host with, the rootfs being where the installer
/// unpacked `image`.
pub(super) fn host_context<'a>(
    cluster: &'a Cluster,
    host: &'a Host,
    image: &'a AppliedImage,
    secrets: JoinSecrets,
) -> Result<HostContext<'a>, ApplyError> {
    let mut ctx =
        HostContext::new(cluster, host, &image.info, secrets).map_err(ApplyError::runtime(host))?;
    ctx.rootfs = image.host_rootfs();
    Ok(ctx)
}

/// A command that must succeed on the host; its output is not needed.
pub(super) fn run_checked(transport: &dyn Transport, argv: &[&str]) -> Result<(), ApplyError> {
    query(transport, argv).map(|_| ())
}

/// The installer's request for `host`: no SSH setting of the cluster goes into it.
pub(super) fn host_request(
    cluster: &Cluster,
    host: &Host,
    image: &AppliedImage,
    secrets: &JoinSecrets,
) -> Request {
    let serving = super::hub::serving(cluster);
    let layers = super::hub::for_host(image, serving.as_ref(), host);
    let mut request = Request::new(
        cluster,
        host,
        &image.info,
        secrets,
        &image.host_rootfs(),
        layers.layers.iter().map(host_layer).collect(),
    );
    request.hub_elsewhere = layers.layers.len() < image.layers.len() || image.app_trees;
    request.files = image
        .host_files
        .get(&host.key())
        .cloned()
        .unwrap_or_default();
    request
}

/// `<installer> installer <subcommand>` on the host with `input` (JSON) on
/// stdin (env values and secrets never in an argv); the output as the host
/// gave it.
pub(super) fn call_installer(
    transport: &dyn Transport,
    image: &AppliedImage,
    subcommand: &[&str],
    input: &str,
) -> Result<(String, Output), ApplyError> {
    call_installer_watching(transport, image, subcommand, input, &[], &|_| {})
}

/// [`call_installer`] with extra environment `env` (what an installer that
/// does not know a variable ignores, where it would refuse a flag).
pub(super) fn call_installer_env(
    transport: &dyn Transport,
    image: &AppliedImage,
    subcommand: &[&str],
    input: &str,
    env: &[(String, String)],
) -> Result<(String, Output), ApplyError> {
    call_installer_watching(transport, image, subcommand, input, env, &|_| {})
}

/// [`call_installer`], calling `on_line` with the installer's stderr lines
/// as they come.
fn call_installer_watching(
    transport: &dyn Transport,
    image: &AppliedImage,
    subcommand: &[&str],
    input: &str,
    env: &[(String, String)],
    on_line: &dyn Fn(&str),
) -> Result<(String, Output), ApplyError> {
    super::interrupt::check(transport.address())?;
    let installer = image.installer_on_host()?;
    let mut argv = vec![installer.clone(), "installer".to_string()];
    argv.extend(subcommand.iter().map(|s| s.to_string()));
    let output = transport
        .run_watching(&argv, env, Some(input.as_bytes()), on_line)
        .map_err(ApplyError::transport(transport.address()))?;
    Ok((format!("{installer} installer {}", subcommand[0]), output))
}

/// Has the image's installer plan `operation` for the host and execute it,
/// with the step the plan is at shown on `shown` ("[7/15] start
/// k3s.service") while it runs, and the lines its hook steps' programs
/// write given to it as they come.
pub(super) fn run_installer_shown(
    transport: &dyn Transport,
    image: &AppliedImage,
    operation: Operation,
    request: &Request,
    shown: &dyn Task,
) -> Result<Report, ApplyError> {
    let show = |line: &str| {
        if is_step_line(line) {
            shown.status(line);
        } else if let Some((step, text)) = parse_output_line(line) {
            shown.output(step, text);
        }
    };
    let output = call_installer_watching(
        transport,
        image,
        &[operation.as_str()],
        &request.to_json(),
        &[],
        &show,
    )?;
    installer_report(transport, &operation.to_string(), output)
}

/// Has the image's installer execute a plan made here (one that only the
/// operator can make, such as removing a node from Kubernetes).
pub(super) fn apply_plan(
    transport: &dyn Transport,
    image: &AppliedImage,
    plan: &Plan,
) -> Result<Report, ApplyError> {
    let rootfs = image.host_rootfs();
    let output = call_installer(
        transport,
        image,
        &["apply", "--rootfs", &rootfs],
        &plan.to_json(),
    )?;
    installer_report(transport, &plan.action, output)
}

/// The installer's report, or an error naming the step that failed.
pub(super) fn installer_report(
    transport: &dyn Transport,
    action: &str,
    (command, output): (String, Output),
) -> Result<Report, ApplyError> {
    let host = transport.address().to_string();
    let report: Option<Report> = serde_json::from_slice(&output.stdout).ok();
    match report {
        Some(report) if output.success() && report.succeeded() => Ok(report),
        Some(report) => {
            let failed = report.failed_step();
            Err(ApplyError::Step {
                host,
                action: action.to_string(),
                step: failed
                    .map(|s| {
                        let at = report.failed_position().unwrap_or_default();
                        format!("{} ({}; step {at})", s.id, s.title)
                    })
                    .unwrap_or_else(|| "?".into()),
                exit_code: failed.and_then(|s| s.exit_code),
                tail: failed
                    .map(|s| s.output.join("\n"))
                    .unwrap_or_else(|| output.tail(20)),
            })
        }
        None => Err(ApplyError::command(host, command, &output, 20)),
    }
}

/// The trimmed stdout of a command that must succeed on the host.
pub(super) fn query(transport: &dyn Transport, argv: &[&str]) -> Result<String, ApplyError> {
    let host = transport.address().to_string();
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let out = transport
        .run(&argv, &[], None)
        .map_err(ApplyError::transport(&host))?;
    if !out.success() {
        return Err(ApplyError::command(host, argv.join(" "), &out, 10));
    }
    Ok(out.stdout_text().trim().to_string())
}
