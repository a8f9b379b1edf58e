//! `sealrs installer …`: the host side, driven by the operator's processor.
//!
//! The request (or, for `apply`, the plan) arrives on stdin, never in argv, so
//! env values and tokens do not show in `ps`. The report goes to stdout as
//! JSON (the processor parses it); step lines go to stderr for people.
//! Captured secrets are in the report and nowhere else.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};

use super::args::{InstallerArgs, InstallerCommand, InstallerRequestArgs, ProbeOperation};
use crate::cluster::Role;
use crate::installer::{self, BlobCheck, ExecContext, LayerSource, Operation, Request, StepReport};
use crate::plan::{Action, Plan};
use crate::progress::text::count;
use crate::registry;
use crate::transport::direct;

pub fn run(args: InstallerArgs, quiet: bool) -> Result<()> {
    match args.command {
        InstallerCommand::Install(a) => run_request(Operation::Install, &a, quiet),
        InstallerCommand::Join(a) => run_request(Operation::Join, &a, quiet),
        InstallerCommand::Upgrade(a) => run_request(Operation::Upgrade, &a, quiet),
        InstallerCommand::Uninstall(a) => run_request(Operation::Uninstall, &a, quiet),
        InstallerCommand::Verify(a) => {
            let request = read_request()?;
            // The one change a check makes: what interrupted runs left
            // (their processes gone) beside the layers and the rootfs. A
            // re-run that has every layer unpacks nothing, so it is here
            // that a host powered off mid-transfer loses its leftovers.
            let under_root = |p: &str| a.host_root.join(p.trim_start_matches('/'));
            let mut dirs: Vec<PathBuf> = request
                .layers
                .iter()
                .chain([&request.rootfs])
                .filter_map(|p| under_root(p).parent().map(|d| d.to_path_buf()))
                .collect();
            dirs.sort();
            dirs.dedup();
            for dir in dirs {
                for path in installer::remove_garbage(&dir)? {
                    eprintln!("removed {} (left by an interrupted run)", path.display());
                }
            }
            let mut report = installer::verify(&request, &a.host_root)?;
            if let (Some(operation), true) = (a.probe, report.holds()) {
                let operation = match operation {
                    ProbeOperation::Install => Operation::Install,
                    ProbeOperation::Join => Operation::Join,
                };
                let mut probe = installer::probe(&request, operation, &a.host_root, &a.systemctl);
                if let Some(first) = report.damaged.first() {
                    // Repaired by the run: its install or join must run.
                    probe.converged = false;
                    probe.pending = Some(format!("damaged: {first}"));
                }
                report.probe = Some(probe);
            }
            outln!("{}", report.to_json())?;
            if !report.holds() {
                bail!("{}", report.summary());
            }
            if !quiet {
                eprintln!("{}", report.summary());
            }
            Ok(())
        }
        InstallerCommand::Originals(a) => {
            let mut request: installer::OriginalsRequest = stdin_json("request", 16 << 20)?;
            installer::check_originals_request(
                &request,
                Path::new(crate::host_paths::HOST_LAYERS),
            )?;
            for layer in &mut request.layers {
                *layer = a.host_root.join(layer.strip_prefix("/").unwrap_or(layer));
            }
            let originals = installer::read_originals(&request)?;
            outln!("{}", serde_json::json!({ "files": originals.files }))?;
            Ok(())
        }
        InstallerCommand::Integrity(a) => {
            let layers = installer::kept_layers(&a.host_root);
            let damaged = installer::check_host(&a.host_root, &layers, installer::Depth::Full);
            outln!("{}", serde_json::json!({ "damaged": damaged }))?;
            if !damaged.is_empty() {
                bail!(
                    "{} damaged files: {}",
                    damaged.len(),
                    damaged
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            if !quiet {
                eprintln!(
                    "{} layers and the placed files checked: nothing damaged",
                    layers.len()
                );
            }
            Ok(())
        }
        InstallerCommand::Certs(a) => {
            let sources: Vec<crate::runtime::CertSource> =
                stdin_json("certificate sources", 64 << 10)?;
            let certs = installer::read_certs(&sources, &a.host_root);
            outln!("{}", serde_json::to_string(&certs)?)?;
            Ok(())
        }
        InstallerCommand::RenewCerts(a) => {
            let request = read_request()?;
            let options = crate::runtime::RenewOptions::new(&a.alt_names, a.pod_restart_wait)?;
            let host_root = &a.request.host_root;
            match installer::renew_plan(&request, &options, host_root)? {
                crate::runtime::CertRenewal::Plan(plan) => {
                    let ctx =
                        ExecContext::for_request(&request, &plan, host_root, &a.request.systemctl)?;
                    execute(&plan, ctx, &[], quiet)
                }
                crate::runtime::CertRenewal::ByRuntime(why) => bail!("nothing to run: {why}"),
            }
        }
        InstallerCommand::Gc(a) => {
            let outcome = installer::gc(
                &a.layers,
                &a.rootfs_dir,
                &a.keep_images,
                &a.keep_layers,
                &a.pinned_by,
            )?;
            outln!("{}", serde_json::to_string(&outcome)?)?;
            Ok(())
        }
        InstallerCommand::Unpack(a) => {
            let sources = layer_sources(&a.layers, &a.incoming)?;
            if let Some(dir) = &a.record {
                installer::record_kept(dir)?;
            }
            let outcome = if a.fetch {
                let ticket: direct::Ticket = stdin_json("ticket", 64 << 10)?;
                let mut input = direct::fetch(&ticket)?;
                let check = match ticket.trailers {
                    true => BlobCheck::SentWithSums,
                    false => BlobCheck::Sent,
                };
                installer::receive(&sources, &mut input, &a.dest, check)?
            } else if a.from_registry {
                let mut input = registry_blobs(&sources)?;
                match installer::receive(&sources, &mut input, &a.dest, BlobCheck::Verified) {
                    Ok(outcome) => outcome,
                    // Only a stream that ended early has a reason to add.
                    Err(e @ installer::InstallerError::ShortLayer { .. }) => {
                        match input.failure() {
                            Some(why @ registry::RegistryError::BlobRefused { .. }) => {
                                bail!("{why}; nothing of it was kept")
                            }
                            Some(why) => bail!("{e}: {why}"),
                            None => return Err(e.into()),
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                let mut input = std::io::stdin().lock();
                installer::receive(&sources, &mut input, &a.dest, BlobCheck::Hash)?
            };
            if !quiet {
                for path in &outcome.removed_garbage {
                    eprintln!("removed {} (left by an interrupted run)", path.display());
                }
                for path in &outcome.repaired {
                    eprintln!(
                        "repaired {} (it was damaged: received again)",
                        path.display()
                    );
                }
                if outcome.unpacked {
                    eprintln!(
                        "unpacked {} into {}",
                        count(outcome.digests.len(), "layer"),
                        a.dest.display()
                    );
                } else {
                    eprintln!(
                        "{} already holds {}: nothing to do",
                        a.dest.display(),
                        count(outcome.digests.len(), "layer")
                    );
                }
            }
            Ok(())
        }
        InstallerCommand::Apply(a) => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the plan from standard input")?;
            let plan = Plan::from_json(&text)
                .context("the plan on standard input is not a valid plan (JSON)")?;
            let role = match &a.role {
                Some(r) => {
                    Role::parse(r).with_context(|| format!("--role {r:?}: use master or node"))?
                }
                None => plan_role(&plan).unwrap_or(Role::Master),
            };
            let layout = installer::layout_for(&plan)?;
            let mut ctx = ExecContext::new(&a.rootfs, layout, role);
            ctx.host_root = a.host_root.clone();
            ctx.systemctl = vec![a.systemctl.clone()];
            ctx.dry_run = a.dry_run;
            if a.dry_run {
                out!("{}", plan.render_dry_run())?;
                if a.rootfs.is_dir() {
                    let files = installer::placements(&ctx, role, &plan)?;
                    outln!("placements for a {role} ({}):", count(files.len(), "file"))?;
                    for f in files {
                        match &f.link {
                            Some(t) => outln!("  {} -> {} (symlink to {t})", f.source, f.host)?,
                            None => outln!("  {} -> {} mode {:04o}", f.source, f.host, f.mode)?,
                        }
                    }
                } else {
                    outln!(
                        "placements: {} is not unpacked yet; they follow {}",
                        a.rootfs.display(),
                        layout.file
                    )?;
                }
                return Ok(());
            }
            execute(&plan, ctx, &a.layers, quiet)
        }
    }
}

/// The `what` (JSON) on standard input, at most `limit` bytes of it.
fn stdin_json<T: serde::de::DeserializeOwned>(what: &str, limit: u64) -> Result<T> {
    let mut text = String::new();
    std::io::stdin()
        .take(limit)
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from standard input"))?;
    serde_json::from_str(&text)
        .with_context(|| format!("the {what} on standard input is not valid (JSON)"))
}

fn read_request() -> Result<Request> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("reading the request from standard input")?;
    Ok(Request::from_json(&text)?)
}

/// Plans `operation` for this host from the request on stdin, then executes
/// the plan as `apply` does. A join that succeeded leaves its secrets for the
/// next run's probe (`installer::probe`); an uninstall takes them away.
fn run_request(operation: Operation, args: &InstallerRequestArgs, quiet: bool) -> Result<()> {
    let request = read_request()?;
    // The rendered templates and Config'd files, in the rootfs before the
    // plan reads it.
    installer::write_request_files(&request, &args.host_root)?;
    let plan = request.plan_in(operation, &args.host_root)?;
    let ctx = ExecContext::for_request(&request, &plan, &args.host_root, &args.systemctl)?;
    let layers: Vec<PathBuf> = request.layers.iter().map(|l| ctx.host_path(l)).collect();
    execute(&plan, ctx, &layers, quiet)?;
    let kept = match operation {
        Operation::Join => installer::remember_join(&request, &args.host_root),
        Operation::Uninstall => installer::forget_join(&args.host_root),
        _ => Ok(()),
    };
    if let Err(e) = kept {
        // The host is as planned; only the next run's shortcut is lost.
        eprintln!("warning: {e}; the next run checks this host by joining it again");
    }
    Ok(())
}

/// Unpacks `layers` into the rootfs (when given), runs the plan, prints the
/// report as JSON and fails when a step failed.
fn execute(plan: &Plan, mut ctx: ExecContext, layers: &[PathBuf], quiet: bool) -> Result<()> {
    if !layers.is_empty() {
        let outcome = installer::unpack(layers, &ctx.rootfs)?;
        if !quiet {
            eprintln!(
                "{} {} in {}",
                if outcome.unpacked {
                    "unpacked"
                } else {
                    "already unpacked:"
                },
                count(outcome.digests.len(), "layer"),
                ctx.rootfs.display()
            );
        }
    }
    if !quiet {
        ctx.on_step = Some(log_step);
        ctx.on_start = Some(|number, planned, title| {
            eprintln!(
                "{}",
                crate::progress::text::step_line(number, planned, title)
            )
        });
        ctx.on_output =
            Some(|step, line| eprintln!("{}", crate::progress::text::output_line(step, line)));
    }
    let report = installer::execute(plan, &ctx)?;
    outln!("{}", report.to_json())?;
    if !report.succeeded() {
        bail!("{}", report.summary());
    }
    if !quiet {
        eprintln!("{}", report.summary());
    }
    Ok(())
}

/// The role named by the plan's rootfs step.
fn plan_role(plan: &Plan) -> Option<Role> {
    plan.steps.iter().find_map(|s| match s.action {
        Action::PlaceRootfs { role, .. } | Action::RemoveRootfs { role } => Some(role),
        _ => None,
    })
}

fn log_step(step: &StepReport) {
    let note = step
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    eprintln!(
        "{:<9} [{}] {}{note}",
        step.status.as_str(),
        step.id,
        step.title
    );
    if step.status == installer::StepStatus::Failed {
        if let Some(code) = step.exit_code {
            eprintln!("          exit code {code}");
        }
        for line in &step.output {
            eprintln!("          | {line}");
        }
    }
}

/// The layers in order, the `--incoming DIR=SIZE` ones read from the input.
/// The incoming layers' blobs from the registry the ticket on standard
/// input names. A registry this host cannot use fails with
/// [`registry::hosts::UNREACHED`] before any layer changes, for the operator
/// to send the layers itself.
fn registry_blobs(sources: &[LayerSource]) -> Result<registry::hosts::BlobStream> {
    let ticket: registry::hosts::PullTicket = stdin_json("registry ticket", 1 << 20)?;
    let mut wanted = Vec::new();
    for source in sources {
        if let LayerSource::Incoming { dir, size } = source {
            let hex = dir
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            let digest = format!("sha256:{hex}")
                .parse()
                .with_context(|| format!("{} is not named by a sha256 digest", dir.display()))?;
            wanted.push((digest, *size));
        }
    }
    registry::hosts::blob_stream(&ticket, wanted)
        .map_err(|e| anyhow::anyhow!("{}: {e}", registry::hosts::UNREACHED))
}

fn layer_sources(layers: &[PathBuf], incoming: &[String]) -> Result<Vec<LayerSource>> {
    let mut sizes = BTreeMap::new();
    for spec in incoming {
        let (file, size) = spec
            .rsplit_once('=')
            .with_context(|| format!("--incoming {spec:?}: expected DIR=SIZE"))?;
        let size: u64 = size
            .parse()
            .with_context(|| format!("--incoming {spec:?}: SIZE is not a number of bytes"))?;
        if !layers.iter().any(|l| l.as_os_str() == file) {
            bail!("--incoming {spec:?}: {file} is not one of the layers to unpack");
        }
        sizes.insert(PathBuf::from(file), size);
    }
    Ok(layers
        .iter()
        .map(|path| match sizes.get(path) {
            Some(&size) => LayerSource::Incoming {
                dir: path.clone(),
                size,
            },
            None => LayerSource::File(path.clone()),
        })
        .collect())
}
