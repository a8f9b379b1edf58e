//! `sealrs cert check` and `sealrs cert renew`: the certificates of a saved
//! cluster's control planes.
//!
//! check asks each master's installer to read the certificates where the
//! runtime keeps them ([`crate::runtime::Runtime::cert_sources`]); a master that cannot be
//! reached is an answer, as in `sealrs status`. renew runs the runtime's
//! own renewal ([`crate::runtime::Runtime::renew_certs`]), planned on each master by its
//! installer, one master at a time: each plan ends when that master's API
//! server answers again, and the next master starts only then.

use serde::Serialize;

use super::connect::{self, Connector};
use super::context::RunContext;
use super::lifecycle::open;
use super::parallel::per_host;
use super::remote::{call_installer, host_context, host_request, installer_report};
use super::ApplyError;
use crate::cluster::{Cluster, Host};
use crate::installer::{CertProblem, HostCerts};
use crate::progress::Progress;
use crate::runtime::{CertRenewal, JoinSecrets, RenewOptions};
use crate::store::Store;

const DAY: i64 = 86_400;

/// One certificate of one master, as a person reads it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertRow {
    pub file: String,
    pub subject: String,
    pub issuer: String,
    /// RFC 3339, UTC.
    pub expires: String,
    pub not_after: i64,
    /// Whole days from now to its expiry (negative once expired).
    pub days_left: i64,
    pub sans: Vec<String>,
    pub is_ca: bool,
    /// It expires within the warning window.
    pub expiring: bool,
}

/// One master's certificates, or why they could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct HostCertReport {
    pub host: String,
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub certs: Vec<CertRow>,
    pub problems: Vec<CertProblem>,
}

/// What `sealrs cert check` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CertCheck {
    pub cluster: String,
    pub runtime: String,
    pub warn_days: u32,
    pub hosts: Vec<HostCertReport>,
    /// Certificates that expire within `warn_days`.
    pub expiring: usize,
    /// Every master was read, no certificate expires within `warn_days` and
    /// none could not be parsed.
    pub ok: bool,
}

/// The distinct masters, in the cluster's order (the first master first).
fn masters(cluster: &Cluster) -> Vec<Host> {
    let mut out: Vec<Host> = Vec::new();
    for host in cluster.masters() {
        if !out.iter().any(|h| h.address == host.address) {
            out.push(host.clone());
        }
    }
    out
}

/// Reads the certificates of every master of `cluster` (in parallel),
/// against the time `now` (seconds since the epoch).
pub fn check(
    store: &Store,
    cluster: &Cluster,
    connector: &dyn Connector,
    progress: &dyn Progress,
    warn_days: u32,
    now: i64,
) -> Result<CertCheck, ApplyError> {
    let ctx = open(store, connector, progress, cluster)?;
    let sources = serde_json::to_string(&ctx.runtime.cert_sources())
        .map_err(|e| ApplyError::Unsupported(e.to_string()))?;
    let masters = masters(cluster);
    let hosts = per_host(ctx.max_parallel(), &masters, |host| {
        let mut report = HostCertReport {
            host: host.key(),
            reachable: false,
            error: None,
            certs: Vec::new(),
            problems: Vec::new(),
        };
        let read = connect::connect(connector, host, &cluster.ssh_for(host)).and_then(|t| {
            report.reachable = true;
            let (command, output) = call_installer(t.as_ref(), &ctx.image, &["certs"], &sources)?;
            if !output.success() {
                return Err(ApplyError::command(host.key(), command, &output, 10));
            }
            serde_json::from_slice::<HostCerts>(&output.stdout).map_err(|e| {
                ApplyError::Unsupported(format!(
                    "{}: {command} answered no certificate list: {e}",
                    host.key()
                ))
            })
        });
        match read {
            Ok(found) => {
                report.certs = found
                    .certs
                    .into_iter()
                    .map(|c| row(c, warn_days, now))
                    .collect();
                report.problems = found.problems;
            }
            Err(ApplyError::Transport { source, .. }) => report.error = Some(source.to_string()),
            Err(e) => report.error = Some(e.to_string()),
        }
        report
    });
    let expiring = hosts
        .iter()
        .flat_map(|h| &h.certs)
        .filter(|c| c.expiring)
        .count();
    let ok = expiring == 0
        && hosts
            .iter()
            .all(|h| h.error.is_none() && h.problems.is_empty());
    Ok(CertCheck {
        cluster: cluster.name.clone(),
        runtime: ctx.runtime.name().to_string(),
        warn_days,
        hosts,
        expiring,
        ok,
    })
}

fn row(c: crate::installer::CertInfo, warn_days: u32, now: i64) -> CertRow {
    let left = c.not_after - now;
    CertRow {
        expires: rfc3339(c.not_after),
        days_left: left.div_euclid(DAY),
        expiring: left < i64::from(warn_days) * DAY,
        file: c.file,
        subject: c.subject,
        issuer: c.issuer,
        not_after: c.not_after,
        sans: c.sans,
        is_ca: c.is_ca,
    }
}

fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("@{secs}"))
}

/// The check as a table: host, file, subject, expiry, days left; hosts that
/// could not be read and files that hold no certificate after it.
pub fn table(check: &CertCheck) -> String {
    let mut rows = vec![[
        "HOST".to_string(),
        "FILE".to_string(),
        "SUBJECT".to_string(),
        "EXPIRES".to_string(),
        "DAYS LEFT".to_string(),
    ]];
    let mut notes = Vec::new();
    for host in &check.hosts {
        for c in &host.certs {
            let mark = if c.expiring { " !" } else { "" };
            rows.push([
                host.host.clone(),
                c.file.clone(),
                c.subject.clone(),
                c.expires.clone(),
                format!("{}{mark}", c.days_left),
            ]);
        }
        if let Some(e) = &host.error {
            let what = if host.reachable {
                "not read"
            } else {
                "unreachable"
            };
            notes.push(format!("{}: {what}: {e}", host.host));
        }
        for p in &host.problems {
            notes.push(format!("{}: {}: {}", host.host, p.file, p.error));
        }
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// Each master's renewal, as the runtime plans it on this machine (the
/// image's files are read only on the hosts, so a plan that uses them shows
/// the image's defaults here): `--dry-run`.
pub fn renewals(
    store: &Store,
    cluster: &Cluster,
    connector: &dyn Connector,
    progress: &dyn Progress,
    options: &RenewOptions,
) -> Result<Vec<(String, CertRenewal)>, ApplyError> {
    plans(
        &open(store, connector, progress, cluster)?,
        cluster,
        options,
    )
}

fn plans(
    ctx: &RunContext,
    cluster: &Cluster,
    options: &RenewOptions,
) -> Result<Vec<(String, CertRenewal)>, ApplyError> {
    masters(cluster)
        .iter()
        .map(|host| {
            let hctx = host_context(cluster, host, &ctx.image, JoinSecrets::default())?;
            let renewal = ctx
                .runtime
                .renew_certs(&hctx, options)
                .map_err(ApplyError::runtime(host))?;
            Ok((host.key(), renewal))
        })
        .collect()
}

/// What `sealrs cert renew` did on each master.
#[derive(Debug, Default)]
pub struct RenewReport {
    /// Masters whose renewal ran, in order.
    pub renewed: Vec<String>,
    /// What the runtime does itself instead (k0s), one line per master.
    pub by_runtime: Vec<String>,
}

/// Renews the certificates of every master, one at a time; every master is
/// reached before the first changes, and a failure stops before the next.
pub fn renew(
    store: &Store,
    cluster: &Cluster,
    connector: &dyn Connector,
    progress: &dyn Progress,
    options: &RenewOptions,
) -> Result<RenewReport, ApplyError> {
    let mut report = RenewReport::default();
    let mut ctx = open(store, connector, progress, cluster)?;
    let planned = plans(&ctx, cluster, options)?;
    if planned
        .iter()
        .all(|(_, r)| matches!(r, CertRenewal::ByRuntime(_)))
    {
        for (_, r) in planned {
            if let CertRenewal::ByRuntime(why) = r {
                report.by_runtime.push(why);
            }
        }
        return Ok(report);
    }
    let masters = masters(cluster);
    let addresses: Vec<_> = masters.iter().map(|h| h.address.clone()).collect();
    progress.message(&format!("connecting to {} masters", masters.len()));
    connect::all(&mut ctx, &cluster.only(&addresses))?;
    let mut args = vec!["renew-certs".to_string()];
    for name in &options.alt_names {
        args.extend(["--alt-name".to_string(), name.clone()]);
    }
    args.extend([
        "--pod-restart-wait".to_string(),
        options.pod_restart_wait_secs.to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for host in &masters {
        progress.message(&format!("{}: renewing its certificates", host.key()));
        let transport = ctx.connection(host)?;
        let request = host_request(cluster, host, &ctx.image, &JoinSecrets::default());
        let output = call_installer(transport, &ctx.image, &args, &request.to_json())?;
        installer_report(transport, "renew-certs", output)?;
        services_active(ctx.runtime.as_ref(), transport, host)?;
        progress.message(&format!(
            "{}: certificates renewed, its API server answers and its services run",
            host.key()
        ));
        report.renewed.push(host.key());
    }
    Ok(report)
}

/// A renewed master is healthy once its API server answers (its plan's last
/// step) and the runtime's services are active, as `sealrs status` expects
/// them; otherwise the masters after it are left alone.
fn services_active(
    rt: &dyn crate::runtime::Runtime,
    transport: &dyn crate::transport::Transport,
    host: &Host,
) -> Result<(), ApplyError> {
    let down: Vec<String> = rt
        .service_units(crate::cluster::Role::Master)
        .into_iter()
        .filter_map(|unit| {
            let argv = ["systemctl", "is-active", unit].map(String::from);
            let state = match transport.run(&argv, &[], None) {
                Ok(out) => out.stdout_text().trim().to_string(),
                Err(e) => e.to_string(),
            };
            (state != "active").then(|| format!("{unit} is {state}"))
        })
        .collect();
    if down.is_empty() {
        return Ok(());
    }
    Err(ApplyError::Refused {
        hosts: vec![host.key()],
        reason: format!(
            "not healthy after its certificates were renewed ({}); the masters after it were left alone",
            down.join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::installer::CertInfo;

    const NOW: i64 = 1_800_000_000;

    fn info(file: &str, not_after: i64) -> CertInfo {
        CertInfo {
            file: file.into(),
            subject: "CN=kube-apiserver".into(),
            issuer: "CN=kubernetes".into(),
            not_after,
            sans: Vec::new(),
            is_ca: false,
        }
    }

    #[test]
    fn days_left_count_whole_days_and_the_window_marks_what_expires_within_it() {
        let soon = row(info("/a.crt", NOW + 10 * DAY - 1), 30, NOW);
        assert_eq!((soon.days_left, soon.expiring), (9, true));
        assert_eq!(soon.expires, "2027-01-25T07:59:59Z");
        assert!(!row(info("/a.crt", NOW + 10 * DAY - 1), 5, NOW).expiring);
        let gone = row(info("/a.crt", NOW - 1), 30, NOW);
        assert_eq!((gone.days_left, gone.expiring), (-1, true));
        assert!(!row(info("/a.crt", NOW + 30 * DAY), 30, NOW).expiring);
    }

    #[test]
    fn the_table_marks_expiring_certificates_and_names_hosts_it_could_not_read() {
        let check = CertCheck {
            cluster: "c".into(),
            runtime: "kubeadm".into(),
            warn_days: 30,
            hosts: vec![
                HostCertReport {
                    host: "10.0.0.1:22".into(),
                    reachable: true,
                    error: None,
                    certs: vec![
                        row(
                            info("/etc/kubernetes/pki/apiserver.crt", NOW + 10 * DAY),
                            30,
                            NOW,
                        ),
                        row(
                            info("/etc/kubernetes/pki/ca.crt", NOW + 3000 * DAY),
                            30,
                            NOW,
                        ),
                    ],
                    problems: vec![CertProblem {
                        file: "/etc/kubernetes/pki/x.crt".into(),
                        error: "no PEM certificate in it".into(),
                    }],
                },
                HostCertReport {
                    host: "10.0.0.2:22".into(),
                    reachable: false,
                    error: Some("connection refused".into()),
                    certs: Vec::new(),
                    problems: Vec::new(),
                },
            ],
            expiring: 1,
            ok: false,
        };
        let text = table(&check);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("HOST") && lines[0].ends_with("DAYS LEFT"),
            "{text}"
        );
        assert!(
            lines[1].contains("apiserver.crt") && lines[1].ends_with("10 !"),
            "{text}"
        );
        assert!(lines[2].ends_with("3000"), "{text}");
        assert_eq!(
            lines[3],
            "10.0.0.1:22: /etc/kubernetes/pki/x.crt: no PEM certificate in it"
        );
        assert_eq!(lines[4], "10.0.0.2:22: unreachable: connection refused");
    }
}
