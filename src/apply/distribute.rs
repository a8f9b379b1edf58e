//! Phase "distribute": each host gets the layer blobs it lacks, hosts in
//! parallel, and its installer unpacks the image as they arrive; a layer a
//! host has is never sent again, so an upgrade moves only the layers that
//! changed. Hosts fetch the blobs from this machine over TLS where they can
//! reach it (see [`direct`]), else they come through the SSH connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use super::bootstrap::bootstrap_installer;
use super::context::RunContext;
use super::image::{host_layer, AppliedImage};
use super::image_files;
use super::interrupt;
use super::parallel::per_host;
use super::remote::host_request;
use super::verify::verify_host;
use super::{ApplyError, HostFailure};
use crate::cluster::Cluster;
use crate::installer::Operation;
use crate::progress::text::{count, shorten_digests, size};
use crate::progress::{HostTally, Progress};
use crate::runtime::JoinSecrets;
use crate::store::Store;
use crate::transport::{direct, Output, Transport};

/// Each host's image files, by host key.
type HostFiles = BTreeMap<String, Vec<crate::installer::ImageFile>>;

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
pub(super) fn distribute(ctx: &mut RunContext, verify: Option<&Cluster>) -> Result<(), ApplyError> {
    let RunContext {
        store,
        progress,
        ref image,
        ref connections,
        ref checks,
        ref hub_host,
        ..
    } = *ctx;
    let installer = image.installer_on_host()?;
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
    let (installer, dest, server) = (&installer, &dest, server.as_ref());
    let cap = ctx.max_parallel();
    // Registry mode: the image's files, made from the first host that holds
    // the layers, for every host (the layers that only the registry tree's
    // hosts get hold no template).
    let made: OnceLock<Result<HostFiles, ApplyError>> = OnceLock::new();
    let tally = HostTally::new(progress, "sending layers", connections.len());
    let results = per_host(cap, connections, |(host, transport)| {
        let transport = transport.as_ref();
        let image = &*super::hub::for_host(image, hub_host.as_ref(), host);
        let known = checks.iter().find(|(key, _)| *key == host.key());
        let verified = known.is_some_and(|(_, check)| check.verified);
        if let Some((_, check)) = known.filter(|(_, c)| !c.damaged.is_empty()) {
            progress.message(&format!(
                "{}: {} damaged, repaired by this run (damaged layers sent again, placed files restored):\n  {}",
                host.key(),
                count(check.damaged.len(), "file"),
                check.damaged.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n  ")
            ));
        }
        let found = interrupt::check(&host.key()).and_then(|()| match known {
            Some((_, check)) => Ok(check.found.clone()),
            None => on_host(transport, image, dest),
        });
        let sent = found.and_then(|mut found| {
            let mut server = server;
            let boot = match found.installer_missing(image) {
                Some(i) => {
                    // The only layer sent in registry mode: from the store,
                    // where the first host that needs it brings it.
                    if let (Some(remote), Some(layer)) = (&image.pull_from, &image.installer) {
                        remote.pull_into(store, std::slice::from_ref(layer), progress)?;
                    }
                    let boot = bootstrap_installer(store, transport, image, server, progress)?;
                    found.layers[i] = true;
                    found.bootstrapped = Some(i);
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
        let files = match (&image.deferred_files, &sent) {
            (Some(deferred), Ok(_)) => Some(made.get_or_init(|| {
                image_files::from_host(store, transport, image, deferred, progress)
            })),
            _ => None,
        };
        let fit = match (verify, files) {
            // Not made: said once, below.
            (_, Some(Err(_))) => None,
            (Some(cluster), files) if sent.is_ok() && !verified => {
                let mut request = host_request(cluster, host, image, &JoinSecrets::default());
                // The check phase could not probe a host that had the image
                // with files not made yet: asked here instead, so a re-run
                // still finds nothing to do.
                let had_image = known.is_some_and(|(_, check)| check.found.complete());
                let probe = files
                    .filter(|_| had_image)
                    .map(|_| match cluster.first_master() {
                        Some(first) if first.key() == host.key() => Operation::Install,
                        _ => Operation::Join,
                    });
                if let Some(Ok(files)) = files {
                    request.files = files.get(&host.key()).cloned().unwrap_or_default();
                }
                Some(verify_host(transport, image, &request, probe))
            }
            _ => None,
        };
        tally.finished(sent.is_ok() && !matches!(fit, Some(Err(_))));
        (host.key(), sent, fit)
    });
    let hosts = connections.len();
    if let Some(files) = made.into_inner() {
        ctx.image.host_files = files?;
        ctx.image.deferred_files = None;
    }
    let mut failures = Vec::new();
    let mut unfit = Vec::new();
    let mut verified = Vec::new();
    for (host, result, fit) in results {
        match fit {
            Some(Err(error)) => unfit.push(HostFailure {
                host: host.clone(),
                error: Box::new(error),
            }),
            Some(Ok(report)) => verified.push((host.clone(), report.probe)),
            None => {}
        }
        match result {
            Ok(bytes) => {
                let damaged = checks
                    .iter()
                    .find(|(key, c)| *key == host && !c.damaged.is_empty());
                if let Some((_, check)) = damaged {
                    let paths = check.damaged.iter().map(|d| d.path.clone());
                    ctx.report.repaired.insert(host.clone(), paths.collect());
                }
                ctx.report.bytes_sent.insert(host, bytes);
            }
            Err(err) => failures.push(HostFailure {
                host,
                error: Box::new(err),
            }),
        }
    }
    for (host, probe) in verified {
        if let Some((_, check)) = ctx.checks.iter_mut().find(|(key, _)| *key == host) {
            check.verified = true;
            check.probe = probe;
        }
    }
    ApplyError::all_hosts_ok(failures)?;
    if !unfit.is_empty() {
        return Err(ApplyError::Unfit(unfit));
    }
    if verify.is_some() {
        progress.message(&format!(
            "the image's installer found nothing wrong on {}",
            count(hosts, "host")
        ));
    }
    Ok(())
}

/// Says that `transport`'s host cannot fetch from this machine, and why.
pub(super) fn unreached(progress: &dyn Progress, transport: &dyn Transport, why: &str) {
    progress.message(&format!(
        "{}: cannot fetch layers from this machine directly ({why}); sending them over SSH (--layers-over-ssh skips the attempt)",
        transport.address()
    ));
}

/// Where and with what a host unpacks an image.
#[derive(Clone, Copy)]
pub(super) struct Unpack<'a> {
    /// The installer binary on the host.
    pub(super) installer: &'a str,
    /// The directory the image is unpacked in.
    pub(super) dest: &'a str,
    /// Where the host may fetch the layers from, instead of SSH.
    pub(super) server: Option<&'a direct::Server>,
}

/// What of an image a host has, learnt in one round trip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OnHost {
    /// The assembled rootfs (its completion stamp).
    pub(super) rootfs: bool,
    /// Each layer's directory, in image order.
    pub(super) layers: Vec<bool>,
    /// The layer the installer bootstrap just put there, which the
    /// installer then records ([`crate::installer::record_kept`]).
    pub(super) bootstrapped: Option<usize>,
}

impl OnHost {
    /// The paths whose presence on a host tells what of `image` it has: the
    /// stamp of its unpacked copy in `dest`, then each layer's directory.
    pub(super) fn paths(image: &AppliedImage, dest: &str) -> Vec<String> {
        let mut paths = vec![format!("{dest}/{}", crate::installer::STAMP)];
        paths.extend(image.layers.iter().map(host_layer));
        paths
    }

    /// What the host has, from its answer for each of [`OnHost::paths`].
    pub(super) fn from_answers(present: &[bool]) -> OnHost {
        OnHost {
            rootfs: present[0],
            layers: present[1..].to_vec(),
            bootstrapped: None,
        }
    }

    /// Counts the layers holding a `damaged` file as missing (they are sent
    /// again), and with them the rootfs assembled from them.
    pub(super) fn lose_damaged(
        &mut self,
        damaged: &[crate::installer::Damage],
        image: &AppliedImage,
    ) {
        for (layer, present) in image.layers.iter().zip(self.layers.iter_mut()) {
            let dir = host_layer(layer);
            if damaged
                .iter()
                .any(|d| d.layer.as_deref() == Some(dir.as_str()))
            {
                *present = false;
                self.rootfs = false;
            }
        }
    }

    /// Whether the host has every layer and the rootfs made of them.
    pub(super) fn complete(&self) -> bool {
        self.rootfs && self.layers.iter().all(|&p| p)
    }

    /// The index of the installer's layer when the host lacks it (the
    /// installer binary is in that layer's directory).
    pub(super) fn installer_missing(&self, image: &AppliedImage) -> Option<usize> {
        let installer = image.installer.as_ref()?;
        let i = image
            .layers
            .iter()
            .position(|l| l.digest() == installer.digest())?;
        (!self.layers[i]).then_some(i)
    }
}

/// `dest`: where the image is unpacked on the host.
pub(super) fn on_host(
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
pub(super) fn direct_server<'a>(
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
    // Each layer's file sums go with it: made here once, not on every host.
    direct::Server::start(&addresses)
        .map(|server| server.with_trailer(crate::installer::blob_sums))
        .inspect_err(|e| progress.message(&format!("warning: {e}; layers go over SSH")))
        .ok()
}

/// Sends the layers of `image` the host lacks, in one stream, to the host's
/// `installer unpack`, which unpacks each into its layer directory as it
/// arrives and assembles `dest` from them: the bytes are written once.
/// The stream comes from `server` over TLS when the host can reach it, else
/// through the SSH connection. Returns the bytes sent.
pub(super) fn deliver(
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
            "{host}: all {} already there, unpacked in {}",
            count(image.layers.len(), "layer"),
            shorten_digests(dest)
        ));
        return Ok(0);
    }
    let dirs: Vec<String> = image.layers.iter().map(host_layer).collect();
    // Through the environment: an older installer ignores it.
    let record = found
        .bootstrapped
        .map(|i| format!("SEALRS_RECORD={}", dirs[i]));
    let mut argv: Vec<String> = record
        .iter()
        .map(|r| ["env", r.as_str()])
        .flat_map(|pair| pair.map(String::from))
        .chain(
            [installer, "installer", "unpack", "--dest", dest]
                .iter()
                .map(|s| s.to_string()),
        )
        .collect();
    argv.extend(dirs.iter().cloned());
    let mut files = Vec::new();
    let mut incoming = Vec::new();
    let mut total = 0;
    for ((layer, dir), present) in image.layers.iter().zip(&dirs).zip(found.layers) {
        if !present {
            argv.push("--incoming".to_string());
            argv.push(format!("{dir}={}", layer.size()));
            files.push(store.blob_path(layer.digest()));
            incoming.push(layer.clone());
            total += layer.size();
        }
    }
    let started = Instant::now();
    let task = progress.begin(
        &format!("{host}: {}", count(files.len(), "layer")),
        Some(total),
    );
    let seen = AtomicU64::new(0);
    let advance = |bytes: u64| {
        let before = seen.swap(bytes, Ordering::Relaxed);
        task.advance(bytes.saturating_sub(before));
    };
    let mut route = "sent over SSH";
    let mut output = None;
    let mut sent = total;
    let ticket = image.pull_from.as_ref().and_then(|r| r.hosts.as_ref());
    if let (Some(ticket), false) = (ticket, files.is_empty()) {
        match super::pull::from_registry(transport, ticket, &argv)? {
            Ok(out) => {
                route = "pulled from the registry";
                sent = 0;
                output = Some((out, None));
            }
            Err(why) => progress.message(&format!(
                "{host}: cannot pull its layers from registry {} ({why}); the operator sends them",
                ticket.registry
            )),
        }
    }
    // This host gets the layers from this machine: from the store, which
    // holds them from then on.
    if let (Some(remote), None) = (&image.pull_from, &output) {
        remote.pull_into(store, &incoming, progress)?;
    }
    let direct = (
        server,
        transport.data_address(),
        files.is_empty(),
        output.is_none(),
    );
    if let (Some(server), Some(ip), false, true) = direct {
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
                route = "sent directly";
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
        "{host}: {} of {} {route} ({}), unpacked in {} in {:.1}s",
        files.len(),
        count(image.layers.len(), "layer"),
        size(total),
        shorten_digests(dest),
        started.elapsed().as_secs_f64()
    ));
    Ok(sent)
}

/// What came of a host's fetch from this machine.
pub(super) enum Fetched {
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
pub(super) fn fetch_with(
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
