//! The processor: which hosts, in what order; the runtime says what each needs.
//!
//! `sealrs run` is a list of phases, as in k0sctl: resolve the images, verify
//! the cluster with the runtime, connect to and check every host (stopping
//! before anything changes if one fails), send each host the layer blobs it
//! lacks, have the installer embedded in the image check each host (`installer
//! verify`: what only the host can see, every host before any changes), then
//! run the runtime's operations through that installer: install on the first
//! master, join the other masters one by one, the nodes in parallel (none of
//! it when every host's installer, asked in the host check, found that they
//! would change nothing: see `installer::probe`). The
//! installer makes each host's plan itself from a [`Request`] (the cluster
//! without its SSH settings, the host, the image, the join secrets) with the
//! same runtime code that `--dry-run` uses here. Per-host work runs on plain
//! threads; errors are collected per host. The cluster, with its status, is
//! saved afterwards so that a rerun picks up where a failed run stopped.
//!
//! Nothing here quotes a value into a shell string: commands are argv, and
//! requests (with env values and join tokens) travel to the installer on stdin.

mod app;
mod error;
mod hosts;
mod lifecycle;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use oci_spec::image::{Descriptor, MediaType};

pub use error::{ApplyError, HostFailure};
pub use hosts::{Connections, Connector, HostCheck};
pub use lifecycle::{add, delete, forget_cluster, load_cluster, reset, upgrade, LifecycleReport};

use crate::cluster::{Cluster, ClusterStatus, Host, HostStatus, InstalledImage, Phase};
use crate::installer::{Operation, Report, Request, VerifyReport, INSTALLER_PATH};
use crate::plan::Plan;
use crate::progress::Progress;
use crate::runtime::{self, HostContext, ImageInfo, JoinSecrets, Runtime};
use crate::store::Store;
use crate::transport::{direct, Output, Transport};

/// Where sealrs keeps its things on a host.
pub const HOST_DIR: &str = "/var/lib/sealrs";
/// Unpacked layers on a host, by their blob's digest: a layer is sent to a
/// host once.
pub const HOST_LAYERS: &str = "/var/lib/sealrs/layers/sha256";
/// Annotation that marks the layer holding the embedded installer.
pub const INSTALLER_ANNOTATION: &str = "sealrs.io/installer";

/// What `sealrs run` was asked to do, beyond the cluster itself.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Print every host's plan and touch nothing.
    pub dry_run: bool,
}

/// A cluster image resolved from the store.
#[derive(Debug, Clone)]
pub struct AppliedImage {
    pub name: String,
    pub digest: String,
    pub layers: Vec<Descriptor>,
    pub info: ImageInfo,
    pub arch: String,
    /// The layer that carries `opt/sealrs/sealrs` (a plain tar; gzip in
    /// images built before).
    pub installer: Option<Descriptor>,
}

impl AppliedImage {
    fn hex(&self) -> &str {
        self.digest.trim_start_matches("sha256:")
    }

    /// Where the installer unpacks this image's rootfs on a host.
    pub fn host_rootfs(&self) -> String {
        format!("{HOST_DIR}/rootfs/{}", self.hex())
    }

    fn host_installer(&self) -> Option<String> {
        self.installer
            .as_ref()
            .map(|layer| format!("{}/{INSTALLER_PATH}", host_layer(layer)))
    }
}

/// What a run did, for the summary line and for tests.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Blob bytes sent, per host.
    pub bytes_sent: BTreeMap<String, u64>,
    /// Hosts whose plan changed something.
    pub changed: Vec<String>,
    /// The plans' rendering, when `dry_run`.
    pub dry_run: String,
}

/// Looks up the images of the cluster in the store; the first must be a
/// rootfs image whose runtime sealrs knows.
pub fn resolve_images(store: &Store, names: &[String]) -> Result<Vec<AppliedImage>, ApplyError> {
    if names.is_empty() {
        return Err(ApplyError::NoImage);
    }
    let mut images = Vec::new();
    for name in names {
        let full = crate::reference::normalize(name).map_err(|source| ApplyError::ImageName {
            name: name.clone(),
            source,
        })?;
        let stored = store.image(&full).map_err(|source| ApplyError::Image {
            name: full.clone(),
            source: Box::new(source),
        })?;
        let config = stored.config.config().clone().unwrap_or_default();
        let labels: BTreeMap<String, String> = config
            .labels()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        let env = config.env().clone().unwrap_or_default();
        let layers = stored.manifest.layers().clone();
        let installer = layers
            .iter()
            .find(|l| {
                l.annotations()
                    .as_ref()
                    .is_some_and(|a| a.contains_key(INSTALLER_ANNOTATION))
            })
            .cloned();
        images.push(AppliedImage {
            name: full,
            digest: stored.descriptor.digest().to_string(),
            layers,
            info: ImageInfo::from_labels(&labels).with_config_env(&env),
            arch: stored.config.architecture().to_string(),
            installer,
        });
    }
    Ok(images)
}

/// Creates or converges the cluster: see the module docs for the phases.
pub fn run(
    store: &Store,
    cluster: &mut Cluster,
    connector: &dyn Connector,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<RunReport, ApplyError> {
    let images = resolve_images(store, &cluster.images)?;
    let rootfs = &images[0];
    let runtime =
        runtime::runtime_for(&rootfs.info.runtime).ok_or_else(|| ApplyError::NoRuntime {
            image: rootfs.name.clone(),
            runtime: rootfs.info.runtime.clone(),
        })?;
    runtime
        .verify(cluster, &rootfs.info)
        .map_err(|violations| ApplyError::Verify {
            cluster: cluster.name.clone(),
            violations,
        })?;

    if options.dry_run {
        return Ok(RunReport {
            dry_run: dry_run(cluster, runtime.as_ref(), rootfs)?,
            ..RunReport::default()
        });
    }
    if rootfs.installer.is_none() {
        return Err(ApplyError::NoInstaller {
            image: rootfs.name.clone(),
        });
    }

    progress.message(&format!(
        "connecting to {} hosts of cluster {}",
        cluster.hosts.len(),
        cluster.name
    ));
    let ports = |host: &Host| host.roles.iter().flat_map(|r| runtime.ports(*r)).collect();
    let (connections, checks) =
        hosts::connect_and_check(cluster, connector, rootfs, &ports, Some(cluster), true)?;

    let mut report = RunReport::default();
    progress.message("sending layers");
    distribute(
        store,
        &connections,
        rootfs,
        &checks,
        Some(cluster),
        progress,
        &mut report,
    )?;
    // Recorded only now: a run stopped by the checks above saves nothing.
    let probed = planned_status(&cluster.status);
    record_node_names(cluster, &checks);

    // The first master makes the cluster; the others join with its secrets,
    // unless every host's installer found that this would change nothing.
    // (The probes planned with the status as it was before the names were
    // recorded: theirs are the plans that would run only if no other part
    // of it differs.)
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    if planned_status(&cluster.status) == probed && hosts::converged(cluster, &checks) {
        progress.message(&format!(
            "{} hosts: their installers found nothing to change ({} install and join skipped)",
            cluster.hosts.len(),
            runtime.name()
        ));
        for host in cluster.hosts.clone() {
            record(cluster, &host, rootfs, &mut report, false);
        }
    } else {
        install_and_join(
            cluster,
            &connections,
            runtime.as_ref(),
            rootfs,
            &first,
            progress,
            &mut report,
        )?;
    }
    // Application images, on the first master, once the cluster is up.
    app::apply_apps(
        store,
        cluster,
        &connections,
        rootfs,
        &images[1..],
        progress,
        &mut report,
    )?;
    cluster.status.phase = Phase::Running;
    Ok(report)
}

/// Install on the first master, then join the other masters one by one and
/// the nodes in parallel, with the secrets the install captured.
fn install_and_join(
    cluster: &mut Cluster,
    connections: &Connections,
    runtime: &dyn Runtime,
    rootfs: &AppliedImage,
    first: &Host,
    progress: &dyn Progress,
    report: &mut RunReport,
) -> Result<(), ApplyError> {
    let snapshot = cluster.clone();
    let transport = connection_for(connections, first)?;
    progress.message(&format!("{}: {} install", first.key(), runtime.name()));
    let request = host_request(&snapshot, first, rootfs, &JoinSecrets::default());
    let outcome = run_installer(transport, rootfs, Operation::Install, &request)?;
    record(cluster, first, rootfs, report, outcome.changed);
    let secrets =
        JoinSecrets::from_captures(&outcome.captures).map_err(ApplyError::runtime(first))?;

    let others: Vec<Host> = snapshot
        .hosts
        .iter()
        .filter(|h| h.address != first.address)
        .cloned()
        .collect();
    let (masters, nodes): (Vec<Host>, Vec<Host>) = others.into_iter().partition(Host::is_master);
    for host in &masters {
        progress.message(&format!(
            "{}: {} join (control plane)",
            host.key(),
            runtime.name()
        ));
        let request = host_request(&snapshot, host, rootfs, &secrets);
        let outcome = run_installer(
            connection_for(connections, host)?,
            rootfs,
            Operation::Join,
            &request,
        )?;
        record(cluster, host, rootfs, report, outcome.changed);
    }
    let results: Vec<(Host, Result<bool, ApplyError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = nodes
            .iter()
            .map(|host| {
                let (snapshot, secrets) = (&snapshot, &secrets);
                scope.spawn(move || {
                    progress.message(&format!("{}: {} join (node)", host.key(), runtime.name()));
                    let request = host_request(snapshot, host, rootfs, secrets);
                    let result = connection_for(connections, host).and_then(|transport| {
                        run_installer(transport, rootfs, Operation::Join, &request)
                            .map(|o| o.changed)
                    });
                    (host.clone(), result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a host thread panicked"))
            .collect()
    });
    record_all(cluster, rootfs, report, results)
}

fn host_context<'a>(
    cluster: &'a Cluster,
    host: &'a Host,
    info: &'a ImageInfo,
    secrets: JoinSecrets,
    image: &AppliedImage,
) -> Result<HostContext<'a>, ApplyError> {
    let mut ctx =
        HostContext::new(cluster, host, info, secrets).map_err(ApplyError::runtime(host))?;
    ctx.rootfs = image.host_rootfs();
    Ok(ctx)
}

fn connection_for<'a>(
    connections: &'a [(Host, Box<dyn Transport>)],
    host: &Host,
) -> Result<&'a dyn Transport, ApplyError> {
    connections
        .iter()
        .find(|(h, _)| h.address == host.address)
        .map(|(_, t)| t.as_ref())
        .ok_or_else(|| ApplyError::Unsupported(format!("no connection to {}", host.key())))
}

fn record(
    cluster: &mut Cluster,
    host: &Host,
    image: &AppliedImage,
    report: &mut RunReport,
    changed: bool,
) {
    if changed {
        report.changed.push(host.key());
    }
    let status = cluster.status.hosts.entry(host.key()).or_default();
    *status = HostStatus {
        phase: Phase::Running,
        runtime: Some(image.info.runtime.clone()),
        version: image.info.version.as_ref().map(|v| v.to_string()),
        images: vec![InstalledImage {
            name: image.name.clone(),
            digest: image.digest.clone(),
        }],
        node_name: status.node_name.take(),
    };
}

/// The status as runtimes plan with it: without node names, which no plan
/// uses (`runtime::tests::plans_do_not_depend_on_recorded_node_names`), and
/// without the hosts that have nothing else recorded.
fn planned_status(status: &ClusterStatus) -> ClusterStatus {
    let mut status = status.clone();
    for host in status.hosts.values_mut() {
        host.node_name = None;
    }
    status
        .hosts
        .retain(|_, host| *host != HostStatus::default());
    status
}

/// Records each checked host's Kubernetes node name, the first time it is
/// seen: a node keeps the name it registered with.
fn record_node_names(cluster: &mut Cluster, checks: &[(String, HostCheck)]) {
    for (key, found) in checks {
        let status = cluster.status.hosts.entry(key.clone()).or_default();
        if status.node_name.is_none() {
            status.node_name = crate::cluster::node_name_from_hostname(&found.hostname);
        }
    }
}

/// Records each host's outcome in the cluster status; every failure in one error.
fn record_all(
    cluster: &mut Cluster,
    image: &AppliedImage,
    report: &mut RunReport,
    results: Vec<(Host, Result<bool, ApplyError>)>,
) -> Result<(), ApplyError> {
    let failures = settle(cluster, results, |cluster, host, changed| {
        record(cluster, host, image, report, changed)
    });
    ApplyError::all_hosts_ok(failures)
}

/// Hands each host that succeeded to `ok`; marks the others failed in the
/// status and returns them, for [`ApplyError::all_hosts_ok`].
fn settle<T>(
    cluster: &mut Cluster,
    results: Vec<(Host, Result<T, ApplyError>)>,
    mut ok: impl FnMut(&mut Cluster, &Host, T),
) -> Vec<HostFailure> {
    let mut failures = Vec::new();
    for (host, result) in results {
        match result {
            Ok(value) => ok(cluster, &host, value),
            Err(error) => {
                mark_failed(cluster, &host);
                failures.push(HostFailure {
                    host: host.key(),
                    error: Box::new(error),
                });
            }
        }
    }
    failures
}

fn mark_failed(cluster: &mut Cluster, host: &Host) {
    cluster.status.hosts.entry(host.key()).or_default().phase = Phase::Failed;
    cluster.status.phase = Phase::Failed;
}

/// Every host's plan, as the installer would run it, with placeholders for
/// the secrets that only the first master can produce.
fn dry_run(
    cluster: &Cluster,
    runtime: &dyn Runtime,
    image: &AppliedImage,
) -> Result<String, ApplyError> {
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    let placeholder = |what: &str| {
        Some(crate::cluster::Secret::new(format!(
            "<{what} from {}>",
            first.key()
        )))
    };
    let secrets = JoinSecrets {
        token: placeholder("token"),
        controller_token: placeholder("controller token"),
        ca_cert_hash: Some(format!("sha256:<CA hash from {}>", first.key())),
        certificate_key: placeholder("certificate key"),
    };
    let mut out = String::new();
    for host in &cluster.hosts {
        let first_one = host.address == first.address;
        let ctx = host_context(
            cluster,
            host,
            &image.info,
            if first_one {
                JoinSecrets::default()
            } else {
                secrets.clone()
            },
            image,
        )?;
        let plan = if first_one {
            runtime.install(&ctx)
        } else {
            runtime.join(&ctx)
        }
        .map_err(ApplyError::runtime(host))?;
        out.push_str(&format!(
            "# {} ({}): {}\n",
            host.key(),
            role_names(host),
            plan.action
        ));
        out.push_str(&plan.render_dry_run());
        out.push('\n');
    }
    Ok(out)
}

fn role_names(host: &Host) -> String {
    host.roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

/// Sends each host the layers it lacks, hosts in parallel, and has the host's
/// installer unpack the image as they arrive; a layer a host has is not sent
/// again, so an upgrade moves only the layers that changed. What a host has
/// is asked, unless its `checks` already told.
///
/// Given the cluster to `verify` the hosts as members of, each host's
/// installer then checks it (where the host check could not, the image not
/// being there yet) as soon as its own rootfs is in, while other hosts still
/// receive theirs. Either every host is fit or this fails before anything but
/// the image changed, naming each unfit host with all of its violations.
fn distribute(
    store: &Store,
    connections: &[(Host, Box<dyn Transport>)],
    image: &AppliedImage,
    checks: &[(String, HostCheck)],
    verify: Option<&Cluster>,
    progress: &dyn Progress,
    report: &mut RunReport,
) -> Result<(), ApplyError> {
    let installer = image
        .host_installer()
        .ok_or_else(|| ApplyError::NoInstaller {
            image: image.name.clone(),
        })?;
    let dest = image.host_rootfs();
    // A re-apply whose checks found every host complete needs no server (nor
    // its certificate, made anew each run).
    let complete = connections.iter().all(|(host, _)| {
        checks
            .iter()
            .any(|(key, check)| *key == host.key() && check.found.complete())
    });
    let server = if complete {
        None
    } else {
        direct_server(connections.iter().map(|(_, t)| t.as_ref()), progress)
    };
    type Delivered = (
        String,
        Result<u64, ApplyError>,
        Option<Result<(), ApplyError>>,
    );
    let results: Vec<Delivered> = std::thread::scope(|scope| {
        let handles: Vec<_> = connections
            .iter()
            .map(|(host, transport)| {
                let (installer, dest, server) = (&installer, &dest, server.as_ref());
                scope.spawn(move || {
                    let transport = transport.as_ref();
                    let known = checks.iter().find(|(key, _)| *key == host.key());
                    let verified = known.is_some_and(|(_, check)| check.verified);
                    let found = match known {
                        Some((_, check)) => Ok(check.found.clone()),
                        None => on_host(transport, image, dest),
                    };
                    let sent = found.and_then(|mut found| {
                        let mut server = server;
                        let boot = match found.installer_missing(image) {
                            Some(i) => {
                                let boot =
                                    bootstrap_installer(store, transport, image, server, progress)?;
                                found.layers[i] = true;
                                if boot.unreached {
                                    // Not tried again (and timed out again) for the layers.
                                    server = None;
                                }
                                boot.sent
                            }
                            None => 0,
                        };
                        let to = Unpack {
                            installer,
                            dest,
                            server,
                        };
                        Ok(boot + deliver(store, transport, image, to, found, progress)?)
                    });
                    let fit = match verify {
                        Some(cluster) if sent.is_ok() && !verified => {
                            let request =
                                host_request(cluster, host, image, &JoinSecrets::default());
                            Some(verify_host(transport, image, &request))
                        }
                        _ => None,
                    };
                    (host.key(), sent, fit)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a host thread panicked"))
            .collect()
    });
    let mut failures = Vec::new();
    let mut unfit = Vec::new();
    for (host, result, fit) in results {
        if let Some(Err(error)) = fit {
            unfit.push(HostFailure {
                host: host.clone(),
                error: Box::new(error),
            });
        }
        match result {
            Ok(bytes) => {
                report.bytes_sent.insert(host, bytes);
            }
            Err(err) => failures.push(HostFailure {
                host,
                error: Box::new(err),
            }),
        }
    }
    ApplyError::all_hosts_ok(failures)?;
    if !unfit.is_empty() {
        return Err(ApplyError::Unfit(unfit));
    }
    if verify.is_some() {
        progress.message(&format!(
            "the image's installer found nothing wrong on {} hosts",
            connections.len()
        ));
    }
    Ok(())
}

fn host_layer(layer: &Descriptor) -> String {
    format!("{HOST_LAYERS}/{}", layer.digest().digest())
}

/// What putting the installer on a host came to.
struct Bootstrap {
    /// Bytes sent.
    sent: u64,
    /// The host could not fetch from this machine (and was told why).
    unreached: bool,
}

/// Puts the image's installer on the host: its layer, fetched from `server`
/// where the host can reach it (else sent over SSH), is unpacked by the
/// host's tar (and gzip, for older images) into its layer directory only if
/// the host's `sha256sum` says it checks out. One command: on a fresh connection each
/// round trip counts.
fn bootstrap_installer(
    store: &Store,
    transport: &dyn Transport,
    image: &AppliedImage,
    server: Option<&direct::Server>,
    progress: &dyn Progress,
) -> Result<Bootstrap, ApplyError> {
    let Some(layer) = &image.installer else {
        return Ok(Bootstrap {
            sent: 0,
            unreached: false,
        });
    };
    let fail = ApplyError::transport(transport.address());
    let started = Instant::now();
    let gzip = if *layer.media_type() == MediaType::ImageLayerGzip {
        "1"
    } else {
        "0"
    };
    let argv: Vec<String> = [
        "sh",
        "-c",
        BOOTSTRAP_SCRIPT,
        "sealrs",
        layer.digest().digest(),
        &host_layer(layer),
        gzip,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let blob = store.blob_path(layer.digest());
    // Over SSH, a stream into a pipeline costs sshd and the host far more
    // than the same bytes over TCP; so the host fetches the layer from our
    // server where it can (see `direct`), and over SSH where it cannot.
    let mut fetched = None;
    let mut unreachable = false;
    if let (Some(server), Some(ip)) = (server, transport.data_address()) {
        let offer = server.offer_plain(vec![blob.clone()]);
        let fetch = server.ticket(&offer, ip).map(|ticket| {
            let mut fetch = argv.clone();
            fetch.push(ticket.address.ip().to_string());
            fetch.push(ticket.address.port().to_string());
            (fetch, format!("{}\n", ticket.token.expose()))
        });
        match fetch_with(transport, &offer, ip, fetch, &|_| {})? {
            Fetched::Done(output, serve_error) => fetched = Some((output, serve_error)),
            Fetched::Unreached(why) => {
                unreached(progress, transport, &why);
                unreachable = true;
            }
        }
    }
    let route = if fetched.is_some() {
        "directly"
    } else {
        "over SSH"
    };
    let (output, serve_error) = match fetched {
        Some(done) => done,
        None => (
            transport
                .run_with_files(&argv, &[blob], &|_| {})
                .map_err(&fail)?,
            None,
        ),
    };
    if !output.success() {
        return Err(ApplyError::command(
            transport.address(),
            format!("sh -c <the installer bootstrap> {}", host_layer(layer)),
            &output,
            10,
        )
        .served_by_us(serve_error));
    }
    progress.message(&format!(
        "{}: installer in place ({}, {route}) in {:.1}s",
        transport.address(),
        megabytes(layer.size()),
        started.elapsed().as_secs_f64()
    ));
    Ok(Bootstrap {
        sent: layer.size(),
        unreached: unreachable,
    })
}

/// Says that `transport`'s host cannot fetch from this machine, and why.
fn unreached(progress: &dyn Progress, transport: &dyn Transport, why: &str) {
    progress.message(&format!(
        "{}: cannot fetch layers from this machine directly ({why}); sending them over SSH (--layers-over-ssh skips the attempt)",
        transport.address()
    ));
}

/// `sh -c BOOTSTRAP_SCRIPT sealrs HEX DIR GZ [ADDRESS PORT]`: puts the
/// installer layer whose sha256 is HEX in DIR, unpacked into a temp directory
/// renamed to DIR only if the blob checks out, so that DIR exists only
/// complete and checked. GZ is `1` for a gzip layer (images built before the
/// layer was a plain tar), else `0`.
/// - With ADDRESS and PORT, the host fetches the blob from our server with
///   bash, showing the token it reads from stdin; a host without bash, or
///   that cannot connect within 3 s, exits 75 having claimed nothing.
/// - Without them, the blob comes on stdin and is unpacked as it arrives.
///   Whatever happens to the unpacking, the rest of stdin is read, so that
///   the hash, not a broken pipe, has the last word on a corrupt blob.
const BOOTSTRAP_SCRIPT: &str = r#"set -eu
hex=$1 dir=$2 gz=$3
shift 3
mkdir -p "${dir%/*}"
tmp=$dir.incoming-$$
trap 'rm -rf "$tmp" "$tmp.blob" "$tmp.failed"' EXIT
mkdir "$tmp"
untar() { if [ "$gz" = 1 ]; then gzip -dc | tar -xf - -C "$tmp"; else tar -xf - -C "$tmp"; fi; }
if [ $# -gt 0 ]; then
  read -r token
  command -v bash >/dev/null || { echo "no bash to fetch with" >&2; exit 75; }
  bash -c '(sleep 3; kill $$) </dev/null >/dev/null 2>&1 & w=$!
    exec 3<>"/dev/tcp/$1/$2" || exit 75
    kill $w
    printf "%s\n" "$3" >&3
    exec cat <&3' fetch "$1" "$2" "$token" >"$tmp.blob" || exit 75
  untar <"$tmp.blob" || echo failed >"$tmp.failed"
else
  tee "$tmp.blob" | {
    untar || echo failed >"$tmp.failed"
    cat >/dev/null
  }
fi
sum=$(sha256sum <"$tmp.blob")
if [ "${sum%% *}" != "$hex" ]; then
  echo "the installer layer's sha256 is ${sum%% *}, not $hex" >&2
  exit 1
fi
if [ -e "$tmp.failed" ]; then
  echo "cannot unpack the installer layer" >&2
  exit 1
fi
rm -rf "$dir"
mv "$tmp" "$dir""#;

/// Where and with what a host unpacks an image.
#[derive(Clone, Copy)]
struct Unpack<'a> {
    /// The installer binary on the host.
    installer: &'a str,
    /// The directory the image is unpacked in.
    dest: &'a str,
    /// Where the host may fetch the layers from, instead of SSH.
    server: Option<&'a direct::Server>,
}

/// What of an image a host has, learnt in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnHost {
    /// The assembled rootfs (its completion stamp).
    rootfs: bool,
    /// Each layer's directory, in image order.
    layers: Vec<bool>,
}

impl OnHost {
    /// The paths whose presence on a host tells what of `image` it has: the
    /// stamp of its unpacked copy in `dest`, then each layer's directory.
    fn paths(image: &AppliedImage, dest: &str) -> Vec<String> {
        let mut paths = vec![format!("{dest}/{}", crate::installer::STAMP)];
        paths.extend(image.layers.iter().map(host_layer));
        paths
    }

    /// What the host has, from its answer for each of [`OnHost::paths`].
    fn from_answers(present: &[bool]) -> OnHost {
        OnHost {
            rootfs: present[0],
            layers: present[1..].to_vec(),
        }
    }

    /// Whether the host has every layer and the rootfs made of them.
    fn complete(&self) -> bool {
        self.rootfs && self.layers.iter().all(|&p| p)
    }

    /// The index of the installer's layer when the host lacks it (the
    /// installer binary is in that layer's directory).
    fn installer_missing(&self, image: &AppliedImage) -> Option<usize> {
        let installer = image.installer.as_ref()?;
        let i = image
            .layers
            .iter()
            .position(|l| l.digest() == installer.digest())?;
        (!self.layers[i]).then_some(i)
    }
}

/// `dest`: where the image is unpacked on the host.
fn on_host(
    transport: &dyn Transport,
    image: &AppliedImage,
    dest: &str,
) -> Result<OnHost, ApplyError> {
    let found = transport
        .existing(&OnHost::paths(image, dest))
        .map_err(ApplyError::transport(transport.address()))?;
    Ok(OnHost::from_answers(&found))
}

/// The server hosts fetch layers from, when at least one connection allows
/// it (see [`direct`]); a server that cannot start leaves everything on SSH.
fn direct_server<'a>(
    transports: impl IntoIterator<Item = &'a dyn Transport>,
    progress: &dyn Progress,
) -> Option<direct::Server> {
    let addresses: Vec<std::net::IpAddr> = transports
        .into_iter()
        .filter_map(|t| t.data_address())
        .collect();
    if addresses.is_empty() {
        return None;
    }
    direct::Server::start(&addresses)
        .inspect_err(|e| progress.message(&format!("warning: {e}; layers go over SSH")))
        .ok()
}

/// Sends the layers of `image` the host lacks, in one stream, to the host's
/// `installer unpack`, which unpacks each into its layer directory as it
/// arrives and assembles `dest` from them: the bytes are written once.
/// The stream comes from `server` over TLS when the host can reach it, else
/// through the SSH connection. Returns the bytes sent.
fn deliver(
    store: &Store,
    transport: &dyn Transport,
    image: &AppliedImage,
    to: Unpack<'_>,
    found: OnHost,
    progress: &dyn Progress,
) -> Result<u64, ApplyError> {
    let Unpack {
        installer,
        dest,
        server,
    } = to;
    let fail = ApplyError::transport(transport.address());
    let host = transport.address().to_string();
    if found.complete() {
        progress.message(&format!(
            "{host}: all {} layers already there, unpacked in {dest}",
            image.layers.len()
        ));
        return Ok(0);
    }
    let dirs: Vec<String> = image.layers.iter().map(host_layer).collect();
    let mut argv: Vec<String> = [installer, "installer", "unpack", "--dest", dest]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(dirs.iter().cloned());
    let mut files = Vec::new();
    let mut total = 0;
    for ((layer, dir), present) in image.layers.iter().zip(&dirs).zip(found.layers) {
        if !present {
            argv.push("--incoming".to_string());
            argv.push(format!("{dir}={}", layer.size()));
            files.push(store.blob_path(layer.digest()));
            total += layer.size();
        }
    }
    let started = Instant::now();
    let task = progress.begin(&format!("{host}: {} layers", files.len()), Some(total));
    let seen = AtomicU64::new(0);
    let advance = |bytes: u64| {
        let before = seen.swap(bytes, Ordering::Relaxed);
        task.advance(bytes.saturating_sub(before));
    };
    let mut route = "over SSH";
    let mut output = None;
    if let (Some(server), Some(ip), false) = (server, transport.data_address(), files.is_empty()) {
        // `--fetch`, with the ticket on stdin: the host reads over TLS.
        let offer = server.offer(files.clone());
        let fetch = server.ticket(&offer, ip).map(|ticket| {
            let mut fetch = argv.clone();
            fetch.push("--fetch".to_string());
            (
                fetch,
                serde_json::to_string(&ticket).expect("a ticket serializes"),
            )
        });
        match fetch_with(transport, &offer, ip, fetch, &advance)? {
            Fetched::Done(out, serve_error) => {
                route = "directly";
                output = Some((out, serve_error));
            }
            Fetched::Unreached(why) => unreached(progress, transport, &why),
        }
    }
    let (output, serve_error) = match output {
        Some(done) => done,
        None => (
            transport
                .run_with_files(&argv, &files, &advance)
                .map_err(&fail)?,
            None,
        ),
    };
    task.finish("");
    if !output.success() {
        return Err(ApplyError::command(
            host,
            format!("{installer} installer unpack --dest {dest}"),
            &output,
            10,
        )
        .served_by_us(serve_error));
    }
    progress.message(&format!(
        "{host}: {} of {} layers sent {route} ({}), unpacked in {dest} in {:.1}s",
        files.len(),
        image.layers.len(),
        megabytes(total),
        started.elapsed().as_secs_f64()
    ));
    Ok(total)
}

/// What came of a host's fetch from this machine.
enum Fetched {
    /// The host's output, and why serving stopped early if it did.
    Done(Output, Option<String>),
    /// The host never reached us (NAT, a firewall), for this reason: it
    /// received nothing, so SSH can start from the beginning.
    Unreached(String),
}

/// Runs `fetch` (an argv and its stdin, made from `offer`'s ticket; `None`
/// when the server does not listen on `ip`) on the host, which reads the
/// offered files from our server while the command waits; progress comes
/// from the offer's counter. A host that failed without claiming the offer
/// never reached us.
fn fetch_with(
    transport: &dyn Transport,
    offer: &direct::Offer,
    ip: std::net::IpAddr,
    fetch: Option<(Vec<String>, String)>,
    advance: &dyn Fn(u64),
) -> Result<Fetched, ApplyError> {
    let Some((argv, stdin)) = fetch else {
        return Ok(Fetched::Unreached(format!(
            "this machine does not listen on {ip}"
        )));
    };
    let result = std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel();
        scope.spawn(move || done.send(transport.run(&argv, &[], Some(stdin.as_bytes()))));
        // Woken by the end of the command, not a poll's next tick.
        loop {
            match finished.recv_timeout(std::time::Duration::from_millis(50)) {
                Ok(result) => break result,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => advance(offer.sent()),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the command thread panicked")
                }
            }
        }
    });
    let output = result.map_err(ApplyError::transport(transport.address()))?;
    if !output.success() && !offer.claimed() {
        return Ok(Fetched::Unreached(output.tail(1)));
    }
    advance(offer.sent());
    Ok(Fetched::Done(output, offer.error()))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn run_checked(transport: &dyn Transport, argv: &[&str]) -> Result<(), ApplyError> {
    hosts::query(transport, argv).map(|_| ())
}

/// The installer's request for `host`: no SSH setting of the cluster goes into it.
fn host_request(
    cluster: &Cluster,
    host: &Host,
    image: &AppliedImage,
    secrets: &JoinSecrets,
) -> Request {
    Request::new(
        cluster,
        host,
        &image.info,
        secrets,
        &image.host_rootfs(),
        image.layers.iter().map(host_layer).collect(),
    )
}

/// `<installer> installer <subcommand>` on the host with `input` (JSON) on
/// stdin (env values and secrets never in an argv); the output as the host
/// gave it.
fn call_installer(
    transport: &dyn Transport,
    image: &AppliedImage,
    subcommand: &[&str],
    input: &str,
) -> Result<(String, crate::transport::Output), ApplyError> {
    let installer = image
        .host_installer()
        .ok_or_else(|| ApplyError::NoInstaller {
            image: image.name.clone(),
        })?;
    let mut argv = vec![installer.clone(), "installer".to_string()];
    argv.extend(subcommand.iter().map(|s| s.to_string()));
    let output = transport
        .run(&argv, &[], Some(input.as_bytes()))
        .map_err(ApplyError::transport(transport.address()))?;
    Ok((format!("{installer} installer {}", subcommand[0]), output))
}

/// Has the image's installer plan `operation` for the host and execute it.
fn run_installer(
    transport: &dyn Transport,
    image: &AppliedImage,
    operation: Operation,
    request: &Request,
) -> Result<Report, ApplyError> {
    let output = call_installer(transport, image, &[operation.as_str()], &request.to_json())?;
    installer_report(transport, &operation.to_string(), output)
}

/// Has the image's installer execute a plan made here (one that only the
/// operator can make, such as removing a node from Kubernetes).
fn apply_plan(
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
fn installer_report(
    transport: &dyn Transport,
    action: &str,
    (command, output): (String, crate::transport::Output),
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
                    .map(|s| format!("{} ({})", s.id, s.title))
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

fn verify_host(
    transport: &dyn Transport,
    image: &AppliedImage,
    request: &Request,
) -> Result<(), ApplyError> {
    let (command, output) = call_installer(transport, image, &["verify"], &request.to_json())?;
    verdict(transport.address(), command, &output, &output.stdout).map(|_| ())
}

/// What `installer verify` said: its `report` (its stdout, or the part of
/// it that is the report) and how `output` ended.
fn verdict(
    host: &str,
    command: String,
    output: &Output,
    report: &[u8],
) -> Result<VerifyReport, ApplyError> {
    match serde_json::from_slice::<VerifyReport>(report) {
        Ok(report) if report.holds() && output.success() => Ok(report),
        Ok(report) if !report.holds() => Err(ApplyError::Violations {
            host: host.to_string(),
            violations: report.violations.iter().map(|v| v.to_string()).collect(),
        }),
        _ => Err(ApplyError::command(host, command, output, 20)),
    }
}

/// `$SEALRS_ROOT/clusters/NAME/Clusterfile`.
pub fn cluster_file(root: &Path, name: &str) -> PathBuf {
    root.join("clusters").join(name).join("Clusterfile")
}

/// Saves the cluster with its status (temp + rename).
pub fn save_cluster(root: &Path, cluster: &Cluster) -> Result<PathBuf, ApplyError> {
    let path = cluster_file(root, &cluster.name);
    let io = |source| ApplyError::State {
        path: path.clone(),
        source,
    };
    let dir = path.parent().unwrap_or(root);
    std::fs::create_dir_all(dir).map_err(io)?;
    let yaml = cluster.to_yaml();
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut temp, yaml.as_bytes()).map_err(io)?;
    temp.persist(&path).map_err(|e| io(e.error))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::BOOTSTRAP_SCRIPT;
    use sha2::{Digest, Sha256};
    use std::io::Write;
    use std::path::Path;
    use std::process::{Command, Output, Stdio};

    /// A tar with `opt/sealrs/sealrs`, as the installer layer is (gzip, as
    /// images built before had it, with `gzip`).
    fn installer_layer(content: &[u8], gzip: bool) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        tar.append_data(&mut header, "opt/sealrs/sealrs", content)
            .unwrap();
        let plain = tar.into_inner().unwrap();
        if !gzip {
            return plain;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        gz.finish().unwrap()
    }

    /// Runs the bootstrap here, as a host's `sh` would, `blob` on stdin.
    fn bootstrap(blob: &[u8], hex: &str, dir: &Path, gzip: bool) -> Output {
        bootstrap_from(blob, hex, dir, gzip, &[])
    }

    /// The bootstrap with more arguments (where to fetch from).
    fn bootstrap_from(blob: &[u8], hex: &str, dir: &Path, gzip: bool, more: &[String]) -> Output {
        let mut child = Command::new("sh")
            .args(["-c", BOOTSTRAP_SCRIPT, "sealrs", hex])
            .arg(dir)
            .arg(if gzip { "1" } else { "0" })
            .args(more)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(blob).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The bootstrap succeeded and left the installer `binary` in `dir`.
    fn installed(out: &Output, dir: &Path, binary: &[u8]) {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(dir.join("opt/sealrs/sealrs")).unwrap(),
            binary
        );
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        format!("{:x}", Sha256::digest(bytes))
    }

    #[test]
    fn the_installer_bootstrap_keeps_only_a_layer_whose_sha256_matches() {
        // Plain tar as built now, and gzip as built before.
        for gzip in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let layers = tmp.path().join("layers");
            let binary: Vec<u8> = (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect();
            let blob = installer_layer(&binary, gzip);
            let hex = sha256_hex(&blob);

            let mut corrupt = blob.clone();
            corrupt[blob.len() / 2] ^= 0xff;
            let not_a_layer = b"neither a tar nor a gzip stream".to_vec();
            for (bad, expected_hex, says) in [
                (
                    &corrupt[..],
                    hex.as_str(),
                    "the installer layer's sha256 is",
                ),
                (
                    &blob[..blob.len() / 2],
                    &hex,
                    "the installer layer's sha256 is",
                ),
                (
                    &not_a_layer[..],
                    &sha256_hex(&not_a_layer),
                    "cannot unpack the installer layer",
                ),
            ] {
                let out = bootstrap(bad, expected_hex, &layers.join("bad"), gzip);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(!out.status.success(), "gzip {gzip}: {stderr}");
                assert!(stderr.contains(says), "gzip {gzip}: {stderr}");
                // Neither the directory nor anything of the attempt is left.
                assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 0);
            }

            let dir = layers.join(&hex);
            installed(&bootstrap(&blob, &hex, &dir, gzip), &dir, &binary);
            assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1);
        }
    }

    #[test]
    fn the_installer_bootstrap_fetches_from_our_server_or_says_it_cannot() {
        use crate::transport::direct::Server;
        let tmp = tempfile::tempdir().unwrap();
        let layers = tmp.path().join("layers");
        let binary = b"#!/bin/sh\necho installer\n".to_vec();
        let blob = installer_layer(&binary, false);
        let hex = sha256_hex(&blob);
        let file = tmp.path().join("blob");
        std::fs::write(&file, &blob).unwrap();
        let here = std::net::IpAddr::from([127, 0, 0, 1]);
        let server = Server::start(&[here]).unwrap();

        let offer = server.offer_plain(vec![file]);
        let ticket = server.ticket(&offer, here).unwrap();
        let at = [
            ticket.address.ip().to_string(),
            ticket.address.port().to_string(),
        ];
        let line = format!("{}\n", ticket.token.expose());
        let dir = layers.join(&hex);
        installed(
            &bootstrap_from(line.as_bytes(), &hex, &dir, false, &at),
            &dir,
            &binary,
        );
        assert!(offer.claimed());

        // The token is spent: the server closes on it, the hash says so.
        let again = bootstrap_from(line.as_bytes(), &hex, &layers.join("again"), false, &at);
        assert!(String::from_utf8_lossy(&again.stderr).contains("sha256 is"));
        // Nobody listening: exit 75, nothing left behind.
        drop(server);
        let out = bootstrap_from(line.as_bytes(), &hex, &layers.join("x"), false, &at);
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(&layers).unwrap().count(), 1);
    }
}
