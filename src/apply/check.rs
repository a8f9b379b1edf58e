//! Phase "check hosts": before anything changes, each host says in one round
//! trip what it is (OS, architecture, free disk, ports in use, hostname),
//! what of the image it has, and (where the image is there already) what its
//! installer thinks of it; every problem of every host at once.

use super::connect::{connect, split, Connections};
use super::context::RunContext;
use super::distribute::OnHost;
use super::image::AppliedImage;
use super::parallel::per_host;
use super::remote::host_request;
use super::verify::verdict;
use super::{ApplyError, HostFailure};
use crate::cluster::{Address, Cluster, Host, SshConfig};
use crate::host_paths::HOST_DIR;
use crate::installer::{Damage, Operation, Probe, SecretsSpec};
use crate::progress::HostTally;
use crate::runtime::{JoinSecrets, Port, Runtime};
use crate::transport::{Transport, TransportError};

/// What the check phase asks each host.
#[derive(Clone, Copy)]
pub(super) struct Checks<'c> {
    /// The cluster whose runtime's ports must be free on the hosts (none
    /// when they run the cluster already: our own services hold them).
    pub ports: Option<&'c Cluster>,
    /// The cluster to have the installer verify the hosts as members of.
    pub verify: Option<&'c Cluster>,
    /// Whether the installer also tells if the first master's install, or
    /// another host's join, would change anything ([`converged`]).
    pub probe: bool,
}

/// What a host told us about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCheck {
    pub arch: String,
    pub os: String,
    pub free_bytes: u64,
    /// Of the ports asked about, those something listens on (or, for UDP,
    /// has bound).
    pub ports_in_use: Vec<Port>,
    /// `uname -n`: what Kubernetes names the node after.
    pub hostname: String,
    /// Whom SSH logged in as: the user name and uid (sealrs needs uid 0).
    pub login: Option<(String, u32)>,
    /// What of the image the host has.
    pub(super) found: OnHost,
    /// The image's installer checked the host in the same round trip, which
    /// it does where the whole image is unpacked already.
    pub(super) verified: bool,
    /// Whether the host's install or join would change it, when the
    /// installer checked it and was asked.
    pub(super) probe: Option<Probe>,
    /// Damaged files the installer found (their layers count as missing).
    pub(super) damaged: Vec<Damage>,
}

/// Checks the connected hosts at `addresses` (the others run the cluster
/// already): OS, architecture, free disk and, with `checks.ports`, the
/// ports the runtime needs; every problem at once. Ports are checked only on
/// hosts where the installer never ran: on the others, our own services hold
/// them. The same round trip learns what of the image each host has and,
/// given the cluster to verify, has the image's installer check the hosts
/// that have all of it (a re-run pays no extra round trip for that). The
/// checked hosts' connections come first in the context afterwards.
pub(super) fn hosts(
    ctx: &mut RunContext,
    addresses: &[Address],
    checks: Checks,
) -> Result<(), ApplyError> {
    let (checked, known): (Connections, Connections) = std::mem::take(&mut ctx.connections)
        .into_iter()
        .partition(|(h, _)| addresses.contains(&h.address));
    ctx.connections = checked;
    let image = &ctx.image;
    let asks: Vec<_> = ctx
        .connections
        .iter()
        .map(|(host, transport)| (transport, ask(ctx, host, checks)))
        .collect();
    let cap = ctx.max_parallel();
    let found_all = per_host(cap, &asks, |(transport, (ports, request))| {
        check(transport.as_ref(), image, ports, request.as_ref())
    });
    let found = judge(
        ctx.connections.iter().map(|(host, _)| host),
        found_all,
        image,
    );
    ctx.connections.extend(known);
    ctx.checks = found?;
    Ok(())
}

/// Phases "connect" and "check hosts" together for every host of `hosts`,
/// each host checked as soon as it is connected rather than when the last
/// one is. The checks read and never write: nothing changes anywhere until
/// every host is connected and every check passed, as if the phases ran one
/// after the other.
pub(super) fn connect_and_check(
    ctx: &mut RunContext,
    hosts: &Cluster,
    checks: Checks,
) -> Result<(), ApplyError> {
    type Checking = Result<(Box<dyn Transport>, Result<Checked, ApplyError>), ApplyError>;
    let (connector, image, hub_host) = (ctx.connector, &ctx.image, ctx.hub_host.as_ref());
    let asks: Vec<(&Host, SshConfig, _)> = hosts
        .hosts
        .iter()
        .map(|host| (host, hosts.ssh_for(host), ask(ctx, host, checks)))
        .collect();
    let cap = connector.max_parallel();
    let tally = HostTally::new(ctx.progress, "connecting and checking", asks.len());
    let results: Vec<(Host, Checking)> = per_host(cap, &asks, |(host, ssh, (ports, request))| {
        let checked = connect(connector, host, ssh).map(|transport| {
            let image = super::hub::for_host(image, hub_host, host);
            let found = check(transport.as_ref(), &image, ports, request.as_ref());
            (transport, found)
        });
        tally.finished(matches!(checked, Ok((_, Ok(_)))));
        ((*host).clone(), checked)
    });
    let (reached, unreached) = split(results);
    ApplyError::all_hosts_ok(unreached)?;
    let (connections, found_all): (Connections, Vec<_>) = reached
        .into_iter()
        .map(|(host, (transport, found))| ((host, transport), found))
        .unzip();
    let found = judge(connections.iter().map(|(host, _)| host), found_all, image);
    ctx.connections = connections;
    ctx.checks = found?;
    Ok(())
}

/// What to ask `host`: the ports to check, and the installer's request.
fn ask(
    ctx: &RunContext,
    host: &Host,
    checks: Checks,
) -> (Vec<Port>, Option<(String, Option<Operation>)>) {
    let ports = checks
        .ports
        .map(|cluster| ctx.runtime.ports(cluster, host))
        .unwrap_or_default();
    (
        ports,
        check_request(host, &ctx.image, checks.verify, checks.probe),
    )
}

/// The installer's verify request for `host` (with the operation to probe),
/// when the hosts are to be verified as members of `verify`.
fn check_request(
    host: &Host,
    image: &AppliedImage,
    verify: Option<&Cluster>,
    probe: bool,
) -> Option<(String, Option<Operation>)> {
    // An image whose files are not made yet (registry mode, until a host
    // holds its layers) is verified in distribute, with them.
    let verify = verify.filter(|_| image.deferred_files.is_none());
    verify.map(|cluster| {
        let first = cluster.first_master().map(Host::key);
        let operation = probe.then(|| {
            if first == Some(host.key()) {
                Operation::Install
            } else {
                Operation::Join
            }
        });
        let request = host_request(cluster, host, image, &JoinSecrets::default());
        (request.to_json(), operation)
    })
}

/// What the hosts' answers come to: every problem of every host at once.
fn judge<'a>(
    hosts: impl Iterator<Item = &'a Host>,
    found_all: Vec<Result<Checked, ApplyError>>,
    image: &AppliedImage,
) -> Result<Vec<(String, HostCheck)>, ApplyError> {
    // The layers unpacked (compressed ones grow); the rootfs and the placed
    // files are hard links to them.
    let needed: u64 = image.layers.iter().map(|l| l.size()).sum::<u64>() * 3;
    let mut failures = Vec::new();
    let mut unfit = Vec::new();
    let mut checks = Vec::new();
    for (host, found) in hosts.zip(found_all) {
        let problem = match &found {
            Ok((found, _)) if found.login.as_ref().is_some_and(|(_, uid)| *uid != 0) => {
                let (user, uid) = found.login.clone().unwrap_or_default();
                Some(format!(
                    "logged in as {user} (uid {uid}); sealrs needs root on hosts: log in as root (--ssh-user root, the default)"
                ))
            }
            Ok((found, _)) if found.os != "Linux" => {
                Some(format!("it runs {}, not Linux", found.os))
            }
            Ok((found, _)) if found.arch != image.arch => Some(format!(
                "it is {} but image {} is for {}",
                found.arch, image.name, image.arch
            )),
            Ok((found, _)) if !found.ports_in_use.is_empty() => Some(format!(
                "port{} {} already in use; stop what listens there, or pick another host",
                if found.ports_in_use.len() == 1 {
                    ""
                } else {
                    "s"
                },
                found
                    .ports_in_use
                    .iter()
                    .map(Port::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Ok((found, _)) if found.free_bytes < needed => Some(format!(
                "{HOST_DIR} has {} free, the image needs about {} (its layers, unpacked)",
                crate::progress::text::size(found.free_bytes),
                crate::progress::text::size(needed)
            )),
            Ok(_) => None,
            Err(err) => Some(err.to_string()),
        };
        if let Ok((found, verdict)) = found {
            if let Some(Err(error)) = verdict {
                unfit.push(HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                });
            }
            checks.push((host.key(), found));
        }
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
    if failures.is_empty() && !unfit.is_empty() {
        return Err(ApplyError::Unfit(unfit));
    }
    failures.extend(unfit);
    ApplyError::all_hosts_ok(failures)?;
    Ok(checks)
}

/// What [`check`] asks a host, in one round trip: `sh -c CHECK_SCRIPT
/// sealrs DIR PORTS INSTALLER PROBE PATH...`, with PORTS `1` when listening
/// ports matter, PATH the image's rootfs stamp then its layer directories.
/// One `key=value` per line (`ss=` lines are those of `ss -Htuln`, one `have=`
/// per PATH); then, when INSTALLER is given and the image is unpacked,
/// `verify:` and the installer's verify report, its request on stdin, with
/// PROBE (an operation, or empty) in `SEALRS_PROBE`. Every program started
/// costs a host milliseconds: the rest is shell builtins. It writes nothing
/// (the installer's verify neither), which is what lets a host be checked
/// while another is still being connected to.
const CHECK_SCRIPT: &str = r#"set -e
dir=$1 ports=$2 installer=$3 probe=$4
shift 4
echo "uname=$(uname -snm)"
echo "login=$(id -u) ${USER:-$(id -un)}"
# The free space where $dir will be: the check writes nothing.
at=$dir
while [ ! -d "$at" ]; do at=${at%/*}; at=${at:-/}; done
df -Pk "$at" | { read -r _; read -r _ _ _ free _; echo "free_kib=$free"; }
if [ -e "$dir/rootfs" ]; then
  echo touched=1
elif [ "$ports" = 1 ]; then
  command -v ss >/dev/null || { echo "ss (iproute2) is needed to check the ports in use" >&2; exit 1; }
  ss -Htuln | while read -r line; do echo "ss=$line"; done
fi
for f; do if [ -e "$f" ]; then echo have=1; else echo have=0; fi; done
if [ -n "$installer" ] && [ -x "$installer" ] && [ -e "$1" ]; then
  echo verify:
  [ -z "$probe" ] || export SEALRS_PROBE="$probe"
  exec "$installer" installer verify
fi"#;

/// A host's answers, and the installer's verdict when it checked the host.
type Checked = (HostCheck, Option<Result<(), ApplyError>>);

/// `request`: the installer's verify request, to check the host with when
/// it has the whole image, and the operation to probe with it.
fn check(
    transport: &dyn Transport,
    image: &AppliedImage,
    ports: &[Port],
    request: Option<&(String, Option<Operation>)>,
) -> Result<Checked, ApplyError> {
    let host = transport.address().to_string();
    let installer = request.and(image.host_installer()).unwrap_or_default();
    let probe = request.and_then(|(_, op)| *op);
    let mut argv: Vec<String> = ["sh", "-c", CHECK_SCRIPT, "sealrs", HOST_DIR]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.push(if ports.is_empty() { "0" } else { "1" }.to_string());
    argv.push(installer.clone());
    argv.push(probe.map(|op| op.to_string()).unwrap_or_default());
    let paths = OnHost::paths(image, &image.host_rootfs());
    let asked = paths.len();
    argv.extend(paths);
    let stdin = request.map(|(json, _)| json.as_bytes());
    let out = transport
        .run(&argv, &[], stdin)
        .map_err(ApplyError::transport(&host))?;
    let text = out.stdout_text();
    let (facts, report) = split_report(&text);
    let verdict = report.map(|report| {
        verdict(
            &host,
            format!("{installer} installer verify"),
            &out,
            report.as_bytes(),
        )
    });
    if verdict.is_none() && !out.success() {
        return Err(ApplyError::command(
            host,
            "sh -c <the host check>",
            &out,
            10,
        ));
    }
    let mut found = read_facts(facts, ports, asked).map_err(|detail| {
        ApplyError::transport(&host)(TransportError::InvalidArgument {
            host: host.clone(),
            detail,
        })
    })?;
    let verdict = match verdict {
        Some(Ok(report)) => {
            found.verified = true;
            found.probe = report.probe;
            found.found.lose_damaged(&report.damaged, image);
            found.damaged = report.damaged;
            Some(Ok(()))
        }
        Some(Err(error)) => Some(Err(error)),
        None => None,
    };
    Ok((found, verdict))
}

/// Whether running install on the first master and join on every other
/// host of `cluster` would change nothing: each host's probe in `checks` says
/// so, and each join was probed with the very secrets the first master holds
/// now.
pub(super) fn converged(
    cluster: &Cluster,
    checks: &[(String, HostCheck)],
    runtime: &dyn Runtime,
) -> bool {
    let probe = |key: &str, operation: Operation| {
        checks
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, c)| c.probe.as_ref())
            .filter(|p| p.converged && p.operation == operation.as_str())
    };
    let Some(first) = cluster.first_master().map(Host::key) else {
        return false;
    };
    let Some(install) = probe(&first, Operation::Install) else {
        return false;
    };
    let Ok(secrets) = runtime.join_secrets(&install.captures) else {
        return false;
    };
    let digest = SecretsSpec::from(&secrets).digest();
    cluster
        .hosts
        .iter()
        .map(Host::key)
        .filter(|key| *key != first)
        .all(|key| {
            probe(&key, Operation::Join).is_some_and(|p| p.secrets.as_deref() == Some(&*digest))
        })
}

/// The host check's output: its `key=value` lines, and the installer's
/// report when the installer ran (what follows the `verify:` line).
fn split_report(text: &str) -> (&str, Option<&str>) {
    match text.split_once("\nverify:\n") {
        Some((facts, report)) => (facts, Some(report)),
        None => (text, None),
    }
}

/// What the host check's `key=value` lines tell, for the `ports` asked about
/// and `paths` paths asked after.
fn read_facts(facts: &str, ports: &[Port], paths: usize) -> Result<HostCheck, String> {
    let value = |key: &str| {
        facts
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_default()
    };
    let mut uname = value("uname").split_whitespace();
    let (os, hostname, machine) = (uname.next(), uname.next(), uname.next());
    let ss: Vec<&str> = facts
        .lines()
        .filter_map(|l| l.strip_prefix("ss="))
        .collect();
    let listening = listening_ports(&ss.join("\n"));
    let have: Vec<bool> = facts
        .lines()
        .filter_map(|l| l.strip_prefix("have="))
        .map(|v| v == "1")
        .collect();
    if have.len() != paths {
        return Err(format!(
            "the host check answered for {} of {paths} paths",
            have.len()
        ));
    }
    Ok(HostCheck {
        arch: crate::arch::normalize(machine.unwrap_or_default()).to_string(),
        os: os.unwrap_or_default().to_string(),
        free_bytes: value("free_kib").parse::<u64>().unwrap_or(0) * 1024,
        ports_in_use: ports
            .iter()
            .copied()
            .filter(|p| listening.contains(p))
            .collect(),
        hostname: hostname.unwrap_or_default().to_string(),
        login: value("login")
            .split_once(' ')
            .and_then(|(uid, user)| uid.parse().ok().map(|uid| (user.to_string(), uid))),
        found: OnHost::from_answers(&have),
        verified: false,
        probe: None,
        damaged: Vec::new(),
    })
}

/// Ports in `ss -Htuln` output: TCP listeners and bound UDP sockets. The
/// first column is the protocol, the fifth the local address (`0.0.0.0:6443`,
/// `[::]:6443`, `*:6443`, `127.0.0.1%lo:53`).
fn listening_ports(ss: &str) -> Vec<Port> {
    ss.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (_, port) = fields.get(4)?.rsplit_once(':')?;
            let port = port.parse().ok()?;
            match *fields.first()? {
                "tcp" => Some(Port::Tcp(port)),
                "udp" => Some(Port::Udp(port)),
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::K3s;

    #[test]
    fn listening_ports_are_read_from_ss() {
        let ss = "tcp LISTEN 0 4096 0.0.0.0:6443 0.0.0.0:*\ntcp LISTEN 0 128 [::]:22 [::]:*\n\
                  tcp LISTEN 0 5 *:10250 *:*\nudp UNCONN 0 0 0.0.0.0:8472 0.0.0.0:*\n\
                  udp UNCONN 0 0 127.0.0.1%lo:53 0.0.0.0:*\n";
        assert_eq!(
            listening_ports(ss),
            [
                Port::Tcp(6443),
                Port::Tcp(22),
                Port::Tcp(10250),
                Port::Udp(8472),
                Port::Udp(53)
            ]
        );
        assert!(listening_ports("").is_empty());
    }

    #[test]
    fn the_host_checks_answers_are_read_line_by_line() {
        let out = "uname=Linux node-1 aarch64\nlogin=1000 ops\nfree_kib=2048\nss=tcp LISTEN 0 4096 *:6443 *:*\nss=udp UNCONN 0 0 *:6443 *:*\n\
                   have=1\nhave=0\nhave=1\nverify:\n{\"violations\": []}\n";
        let (facts, report) = split_report(out);
        assert_eq!(report, Some("{\"violations\": []}\n"));
        let found = read_facts(
            facts,
            &[Port::Tcp(6443), Port::Tcp(10250), Port::Udp(8472)],
            3,
        )
        .unwrap();
        assert_eq!(
            (
                found.os.as_str(),
                found.hostname.as_str(),
                found.arch.as_str()
            ),
            ("Linux", "node-1", "arm64")
        );
        assert_eq!(found.free_bytes, 2048 * 1024);
        assert_eq!(found.login, Some(("ops".to_string(), 1000)));
        assert_eq!(found.ports_in_use, [Port::Tcp(6443)]);
        assert_eq!(
            found.found,
            OnHost {
                rootfs: true,
                layers: vec![false, true],
                bootstrapped: None,
            }
        );
        assert!(!found.verified);
        // Without the installer's part, and with paths unanswered.
        assert_eq!(
            split_report("uname=Linux a x86_64\n"),
            ("uname=Linux a x86_64\n", None)
        );
        assert_eq!(
            read_facts("uname=Linux a x86_64\nhave=1\n", &[], 3).unwrap_err(),
            "the host check answered for 1 of 3 paths"
        );
    }

    fn probed(
        operation: &str,
        converged: bool,
        captures: &[(&str, &str)],
        secrets: Option<String>,
    ) -> HostCheck {
        HostCheck {
            arch: "amd64".into(),
            os: "Linux".into(),
            free_bytes: 0,
            ports_in_use: Vec::new(),
            hostname: "h".into(),
            login: None,
            found: OnHost::from_answers(&[true]),
            damaged: Vec::new(),
            verified: true,
            probe: Some(Probe {
                operation: operation.into(),
                converged,
                pending: None,
                captures: captures
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                secrets,
            }),
        }
    }

    #[test]
    fn a_cluster_is_converged_only_when_every_host_is_and_the_joins_used_the_first_masters_secrets()
    {
        let token = [(crate::runtime::k3s::TOKEN_CAPTURE, "K10tok")];
        let digest = |t: &str| {
            let secrets = JoinSecrets {
                token: Some(crate::cluster::Secret::new(t)),
                ..JoinSecrets::default()
            };
            Some(SecretsSpec::from(&secrets).digest())
        };
        let cluster = |first: &str, other: &str| {
            Cluster::from_args(&crate::cluster::ClusterArgs {
                masters: vec![first.into()],
                nodes: vec![other.into()],
                ..Default::default()
            })
            .unwrap()
        };
        let ab = cluster("10.0.0.1", "10.0.0.2");
        let checks = |first: HostCheck, other: HostCheck| {
            vec![
                ("10.0.0.1".to_string(), first),
                ("10.0.0.2".to_string(), other),
            ]
        };
        let yes = checks(
            probed("install", true, &token, None),
            probed("join", true, &[], digest("K10tok")),
        );
        assert!(converged(&ab, &yes, &K3s));
        // Which host is first matters: .2's probe was of a join.
        assert!(!converged(&cluster("10.0.0.2", "10.0.0.1"), &yes, &K3s));
        // Every host of the cluster must have answered.
        assert!(!converged(&cluster("10.0.0.1", "10.0.0.3"), &yes, &K3s));
        for no in [
            // the node joined with a token the first master no longer has
            checks(
                probed("install", true, &token, None),
                probed("join", true, &[], digest("K10old")),
            ),
            // the node would change
            checks(
                probed("install", true, &token, None),
                probed("join", false, &[], digest("K10tok")),
            ),
            // the first master would change
            checks(
                probed("install", false, &token, None),
                probed("join", true, &[], digest("K10tok")),
            ),
            // the first master's secrets could not be read
            checks(
                probed("install", true, &[], None),
                probed("join", true, &[], digest("K10tok")),
            ),
        ] {
            assert!(!converged(&ab, &no, &K3s));
        }
        // A host the installer did not probe (an older installer) is not.
        let mut unprobed = yes.clone();
        unprobed[1].1.probe = None;
        assert!(!converged(&ab, &unprobed, &K3s));
    }
}
