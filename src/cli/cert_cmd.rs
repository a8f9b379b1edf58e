//! `sealrs cert check` and `sealrs cert renew`: the certificates of a saved
//! cluster's masters.

use std::path::Path;

use anyhow::{bail, Result};

use super::args::{CertCheckArgs, CertCommand, CertRenewArgs, ListFormat};
use super::lifecycle_cmd::{connector, locked, print, unlocked, with_ssh};
use crate::apply::{self, certs};
use crate::progress::Progress;
use crate::runtime::{CertRenewal, RenewOptions};
use crate::store::Store;

pub fn run(
    store: &Store,
    root: &Path,
    command: &CertCommand,
    progress: &dyn Progress,
) -> Result<()> {
    match command {
        CertCommand::Check(args) => check(store, root, args, progress),
        CertCommand::Renew(args) => renew(store, root, args, progress),
    }
}

fn check(store: &Store, root: &Path, args: &CertCheckArgs, progress: &dyn Progress) -> Result<()> {
    let cluster = with_ssh(root, &args.cluster, &args.ssh)?;
    let connector = connector(&args.ssh)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let found = certs::check(store, &cluster, &connector, progress, args.warn_days, now)?;
    let out = match args.format {
        ListFormat::Json => format!("{}\n", serde_json::to_string_pretty(&found)?),
        ListFormat::Table => certs::table(&found),
    };
    print(&out)?;
    let unread: Vec<&str> = found
        .hosts
        .iter()
        .filter(|h| h.error.is_some())
        .map(|h| h.host.as_str())
        .collect();
    let mut why = Vec::new();
    if found.expiring > 0 {
        why.push(format!(
            "{} certificate(s) expire within {} days (marked !); renew them with sealrs cert renew --cluster {}",
            found.expiring, args.warn_days, cluster.name
        ));
    }
    if !unread.is_empty() {
        why.push(format!(
            "could not read the certificates of {}",
            unread.join(", ")
        ));
    }
    let unparsed: usize = found.hosts.iter().map(|h| h.problems.len()).sum();
    if unparsed > 0 {
        why.push(format!(
            "{unparsed} file(s) hold no certificate that could be read"
        ));
    }
    if why.is_empty() {
        return Ok(());
    }
    bail!("cluster {}: {}", cluster.name, why.join("; "))
}

fn renew(store: &Store, root: &Path, args: &CertRenewArgs, progress: &dyn Progress) -> Result<()> {
    let options = RenewOptions::new(&args.alt_names, args.pod_restart_wait)?;
    let connector = connector(&args.ssh)?;
    if args.dry_run {
        let cluster = unlocked(root, &args.cluster)?;
        let mut out = String::new();
        for (host, renewal) in certs::renewals(store, &cluster, &connector, progress, &options)? {
            match renewal {
                CertRenewal::Plan(plan) => {
                    out.push_str(&format!("# {host}: renew-certs, then the next master\n"));
                    out.push_str(&plan.render_dry_run());
                }
                CertRenewal::ByRuntime(why) => out.push_str(&format!("# {why}\n")),
            }
        }
        return print(&out);
    }
    let (cluster, _lock) = locked(root, &args.cluster, "cert renew", &args.ssh)?;
    apply::interrupt::handle_ctrl_c();
    let report = certs::renew(store, &cluster, &connector, progress, &options);
    let report = super::interrupted_next(root, &cluster.name, report)?;
    for line in &report.by_runtime {
        eprintln!("{line}");
    }
    if !report.renewed.is_empty() {
        eprintln!(
            "renewed the certificates of {} in cluster {}",
            report.renewed.join(", "),
            cluster.name
        );
        super::run_cmd::save_kubeconfig(root, &cluster, &connector, true);
    }
    Ok(())
}
