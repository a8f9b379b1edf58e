//! `sealrs backup` and `sealrs restore`: the runtime's own snapshot of the
//! datastore, taken on one healthy master and streamed here into one file
//! with the saved cluster (`file.rs`), and put back on a cluster of the same
//! runtime, version and masters. The runtime says how
//! ([`crate::runtime::backup`]); this runs its plans as argv on the hosts.
//! Every refusal of a restore (a file cut short or altered, another runtime,
//! version or set of masters, a running cluster without `--force`) comes
//! before any host changes.

pub mod file;
mod stream;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::connect::{self, Connector};
use super::interrupt;
use super::ApplyError;
use crate::cluster::{Cluster, Host, Role};
use crate::progress::Progress;
use crate::runtime::backup::{BackupPlan, HostCommand, RestorePlan};
use crate::runtime::{self, HostContext, ImageInfo, JoinSecrets, Runtime};
use crate::transport::Transport;
use file::{Loaded, Manifest, FORMAT};

/// At most this much of a secret file is read (a token).
const MAX_SECRET: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Boxed: an `ApplyError` is large, and this error travels up every
    /// call of a backup.
    #[error(transparent)]
    Apply(Box<ApplyError>),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is truncated or not a sealrs backup file: {detail}; nothing was changed on any host")]
    Unreadable { path: PathBuf, detail: String },
    #[error("{path}: the snapshot's checksum does not match its manifest: expected {expected}, found {found}; the file was altered or damaged, nothing was changed on any host")]
    Checksum {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("{path} cannot be restored onto cluster {cluster}: {reason}; nothing was changed on any host")]
    Mismatch {
        path: PathBuf,
        cluster: String,
        reason: String,
    },
    #[error("cluster {cluster} is running ({running}); a restore replaces its data: pass --force to stop it and restore, or --dry-run to see the plan; nothing was changed")]
    Running { cluster: String, running: String },
    #[error("no master of cluster {cluster} can take the backup: {reasons}")]
    NoHealthyMaster { cluster: String, reasons: String },
    #[error("{host}: {title}: {detail}")]
    Step {
        host: String,
        title: String,
        detail: String,
    },
}

impl From<ApplyError> for BackupError {
    fn from(e: ApplyError) -> BackupError {
        BackupError::Apply(Box::new(e))
    }
}

/// What a backup wrote.
#[derive(Debug)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub output: PathBuf,
}

/// The runtime, its version and the masters of a saved cluster.
struct Facts {
    runtime: Box<dyn Runtime>,
    version: String,
    masters: Vec<Host>,
}

fn facts(cluster: &Cluster) -> Result<Facts, BackupError> {
    let name = super::kubeconfig::runtime_name(cluster)?;
    let runtime = runtime::runtime_for(&name).ok_or_else(|| ApplyError::NoRuntime {
        image: cluster.images.first().cloned().unwrap_or_default(),
        runtime: name.clone(),
    })?;
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?;
    let version = cluster
        .status
        .hosts
        .get(&first.key())
        .and_then(|s| s.version.clone())
        .unwrap_or_default();
    let mut masters: Vec<Host> = Vec::new();
    for h in cluster.masters() {
        if !masters.iter().any(|m| m.address == h.address) {
            masters.push(h.clone());
        }
    }
    Ok(Facts {
        runtime,
        version,
        masters,
    })
}

fn keys(hosts: &[Host]) -> Vec<String> {
    let mut keys: Vec<String> = hosts.iter().map(Host::key).collect();
    keys.sort();
    keys
}

/// The image facts a plan needs, from the saved status (no image store).
fn image_info(facts: &Facts) -> ImageInfo {
    ImageInfo::new(facts.runtime.name(), &facts.version).unwrap_or_else(|_| ImageInfo {
        runtime: facts.runtime.name().to_string(),
        ..ImageInfo::default()
    })
}

/// The context a plan for `host` is made in, its rootfs where the installer
/// unpacked the cluster's runtime image (by the digest saved with it).
fn context<'a>(
    cluster: &'a Cluster,
    host: &'a Host,
    info: &'a ImageInfo,
) -> Result<HostContext<'a>, BackupError> {
    let mut ctx = HostContext::new(cluster, host, info, JoinSecrets::default())
        .map_err(ApplyError::runtime(host))?;
    if let Some(image) = cluster.status.images.first() {
        ctx.rootfs = format!(
            "{}/{}",
            runtime::DEFAULT_ROOTFS_DIR,
            image.digest.trim_start_matches("sha256:")
        );
    }
    Ok(ctx)
}

/// Which of the runtime's datastore and tool probes exist on the host.
fn probe(
    rt: &dyn Runtime,
    ctx: &HostContext,
    transport: &dyn Transport,
) -> Result<BTreeSet<String>, BackupError> {
    let mut paths: Vec<String> = rt
        .datastore_probes()
        .iter()
        .map(|s| s.to_string())
        .collect();
    paths.extend(rt.tool_probes(ctx));
    let found = transport
        .existing(&paths)
        .map_err(ApplyError::transport(transport.address()))?;
    Ok(paths
        .into_iter()
        .zip(found)
        .filter_map(|(p, there)| there.then_some(p))
        .collect())
}

/// Whether the runtime's master units are all active on the host.
fn running(rt: &dyn Runtime, transport: &dyn Transport) -> bool {
    let mut argv = vec![
        "systemctl".to_string(),
        "is-active".into(),
        "--quiet".into(),
    ];
    argv.extend(rt.service_units(Role::Master).iter().map(|s| s.to_string()));
    transport
        .run(&argv, &[], None)
        .map(|o| o.success())
        .unwrap_or(false)
}

/// Runs `command` on the host, retried each second for its `retry_secs`.
fn run(
    transport: &dyn Transport,
    command: &HostCommand,
    secrets: &[(String, crate::secret::Secret)],
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let host = transport.address().to_string();
    let step = |detail: String| BackupError::Step {
        host: host.clone(),
        title: command.title.clone(),
        detail,
    };
    let mut env = Vec::new();
    for (var, name) in &command.secret_env {
        let value = secrets
            .iter()
            .find(|(n, _)| n == name)
            .ok_or_else(|| step(format!("the backup holds no {name} for {var}")))?;
        env.push((var.clone(), value.1.expose().to_string()));
    }
    progress.message(&format!("{host}: {}", command.title));
    let deadline = std::time::Instant::now() + Duration::from_secs(command.retry_secs);
    loop {
        let out = transport
            .run(&command.argv, &env, None)
            .map_err(|e| step(e.to_string()))?;
        if out.success() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(step(format!(
                "{} failed ({}): {}",
                command.argv.join(" "),
                out.status_text(),
                out.tail(10)
            )));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Runs every command of `cleanup`, reporting (not failing on) each failure.
fn run_cleanup(transport: &dyn Transport, cleanup: &[HostCommand], progress: &dyn Progress) {
    for command in cleanup {
        if let Err(e) = run(transport, command, &[], progress) {
            progress.message(&format!("warning: {e}"));
        }
    }
}

/// The first master that runs, with its connection and backup plan.
fn pick_master(
    cluster: &Cluster,
    facts: &Facts,
    connector: &dyn Connector,
) -> Result<(Box<dyn Transport>, BackupPlan), BackupError> {
    let info = image_info(facts);
    let mut reasons = Vec::new();
    for host in &facts.masters {
        let transport = match connect::connect(connector, host, &cluster.ssh_for(host)) {
            Ok(t) => t,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        if !running(facts.runtime.as_ref(), transport.as_ref()) {
            reasons.push(format!(
                "{}: {} is not active",
                host.key(),
                facts.runtime.service_units(Role::Master).join(", ")
            ));
            continue;
        }
        let ctx = context(cluster, host, &info)?;
        let found = probe(facts.runtime.as_ref(), &ctx, transport.as_ref())?;
        let plan = facts
            .runtime
            .backup(&ctx, &|p| found.contains(p))
            .map_err(ApplyError::runtime(host))?;
        return Ok((transport, plan));
    }
    Err(BackupError::NoHealthyMaster {
        cluster: cluster.name.clone(),
        reasons: reasons.join("; "),
    })
}

/// `sealrs backup --dry-run`: where and how, touching nothing (the masters
/// are asked only whether they run and which datastore they have).
pub fn backup_dry_run(
    cluster: &Cluster,
    connector: &dyn Connector,
    output: &Path,
) -> Result<String, BackupError> {
    let facts = facts(cluster)?;
    let (_, plan) = pick_master(cluster, &facts, connector)?;
    Ok(plan.render(&output.display().to_string()))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Takes the snapshot on one running master and writes it, the secrets and
/// the saved cluster (`state_dir`) to `output` (0600, whole or not at all).
pub fn backup(
    cluster: &Cluster,
    state_dir: &Path,
    connector: &dyn Connector,
    output: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    let facts = facts(cluster)?;
    let (transport, plan) = pick_master(cluster, &facts, connector)?;
    let transport = transport.as_ref();
    progress.message(&format!("{}: {}", plan.host, plan.method));
    let result = take(
        cluster, &facts, transport, &plan, state_dir, output, progress,
    );
    run_cleanup(transport, &plan.cleanup, progress);
    result
}

fn take(
    cluster: &Cluster,
    facts: &Facts,
    transport: &dyn Transport,
    plan: &BackupPlan,
    state_dir: &Path,
    output: &Path,
    progress: &dyn Progress,
) -> Result<BackupReport, BackupError> {
    for command in &plan.steps {
        interrupt::check(&plan.host)?;
        run(transport, command, &[], progress)?;
    }
    let (path, size) =
        stream::resolve(transport, &plan.source).map_err(|detail| BackupError::Step {
            host: plan.host.clone(),
            title: "find the snapshot".into(),
            detail,
        })?;
    let task = progress.begin(&format!("{}:{path}", plan.host), Some(size));
    let advance = |n: u64| task.advance(n);
    let mut writer = file::Writer::create(output)?;
    let (sha256, got) = writer.snapshot(
        size,
        stream::RemoteFile::new(transport, &path, size, &advance),
    )?;
    task.finish(&format!("{got} bytes, {sha256}"));
    for secret in &plan.secrets {
        let bytes = transport
            .download_small(secret, MAX_SECRET)
            .map_err(ApplyError::transport(&plan.host))?;
        let name = secret.rsplit('/').next().unwrap_or(secret);
        writer.secret(name, &bytes)?;
    }
    if state_dir.is_dir() {
        writer.state(state_dir)?;
    }
    let manifest = Manifest {
        format: FORMAT,
        cluster: cluster.name.clone(),
        runtime: facts.runtime.name().to_string(),
        version: facts.version.clone(),
        masters: keys(&facts.masters),
        taken_on: plan.host.clone(),
        kind: plan.kind,
        snapshot_size: got,
        snapshot_sha256: sha256,
        created: now(),
    };
    writer.finish(&manifest)?;
    Ok(BackupReport {
        manifest,
        output: output.to_path_buf(),
    })
}

/// Refuses a backup of another runtime, version or set of masters.
fn check_fits(
    loaded: &Loaded,
    input: &Path,
    cluster: &Cluster,
    facts: &Facts,
) -> Result<(), BackupError> {
    let m = &loaded.manifest;
    let mismatch = |reason: String| BackupError::Mismatch {
        path: input.to_path_buf(),
        cluster: cluster.name.clone(),
        reason,
    };
    if m.runtime != facts.runtime.name() {
        return Err(mismatch(format!(
            "it is a backup of a {} cluster, and {} runs {}",
            m.runtime,
            cluster.name,
            facts.runtime.name()
        )));
    }
    if m.version != facts.version {
        return Err(mismatch(format!(
            "it was taken at version {}, and {} runs {} (restore onto the same version, then upgrade)",
            m.version, cluster.name, facts.version
        )));
    }
    let masters = keys(&facts.masters);
    if m.masters != masters {
        return Err(mismatch(format!(
            "it was taken with masters {}, and {} has {}",
            m.masters.join(","),
            cluster.name,
            masters.join(",")
        )));
    }
    Ok(())
}

/// A restore ready to go: the file checked, the plan, the masters connected
/// (the first first).
struct Prepared {
    loaded: Loaded,
    facts: Facts,
    plan: RestorePlan,
    transports: Vec<Box<dyn Transport>>,
}

/// The file read and checked, and the restore plan for the cluster.
fn prepare(
    cluster: &Cluster,
    connector: &dyn Connector,
    input: &Path,
) -> Result<Prepared, BackupError> {
    let loaded = file::load(input)?;
    let facts = facts(cluster)?;
    check_fits(&loaded, input, cluster, &facts)?;
    let mut transports = Vec::new();
    for host in &facts.masters {
        transports.push(connect::connect(connector, host, &cluster.ssh_for(host))?);
    }
    let first = &facts.masters[0];
    let info = image_info(&facts);
    let ctx = context(cluster, first, &info)?;
    let found = probe(facts.runtime.as_ref(), &ctx, transports[0].as_ref())?;
    let others: Vec<&Host> = facts.masters[1..].iter().collect();
    let plan = facts
        .runtime
        .restore(
            &ctx,
            &others,
            loaded.manifest.kind,
            &now().to_string(),
            &|p| found.contains(p),
        )
        .map_err(ApplyError::runtime(first))?;
    Ok(Prepared {
        loaded,
        facts,
        plan,
        transports,
    })
}

/// `sealrs restore --dry-run`: the file checked and the plan, nothing changed.
pub fn restore_dry_run(
    cluster: &Cluster,
    connector: &dyn Connector,
    input: &Path,
) -> Result<String, BackupError> {
    let prepared = prepare(cluster, connector, input)?;
    Ok(prepared.plan.render(&input.display().to_string()))
}

/// What a restore did, and which masters must now join again through the
/// join phase ([`crate::apply::add`]).
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub rejoin: Vec<Host>,
}

/// Puts the backup `input` back on `cluster`: refused on a running cluster
/// unless `force`.
pub fn restore(
    cluster: &Cluster,
    connector: &dyn Connector,
    input: &Path,
    force: bool,
    progress: &dyn Progress,
) -> Result<Restored, BackupError> {
    let Prepared {
        loaded,
        facts,
        plan,
        transports,
    } = prepare(cluster, connector, input)?;
    let active: Vec<String> = facts
        .masters
        .iter()
        .zip(&transports)
        .filter(|(_, t)| running(facts.runtime.as_ref(), t.as_ref()))
        .map(|(h, _)| h.key())
        .collect();
    if !active.is_empty() && !force {
        return Err(BackupError::Running {
            cluster: cluster.name.clone(),
            running: format!("{} active on {}", facts.runtime.name(), active.join(", ")),
        });
    }
    let first = transports[0].as_ref();
    progress.message(&format!("{}: {}", plan.first, plan.method));
    first
        .upload(&loaded.snapshot, &plan.upload_to, 0o600, &|_| {})
        .map_err(ApplyError::transport(&plan.first))?;
    let result = put_back(&plan, &transports, &loaded, progress);
    run_cleanup(first, &plan.cleanup, progress);
    let rejoin = if plan.rejoin_by_join {
        facts.masters[1..].to_vec()
    } else {
        Vec::new()
    };
    result.map(|()| Restored {
        manifest: loaded.manifest,
        rejoin,
    })
}

fn put_back(
    plan: &RestorePlan,
    transports: &[Box<dyn Transport>],
    loaded: &Loaded,
    progress: &dyn Progress,
) -> Result<(), BackupError> {
    let secrets = &loaded.secrets;
    for other in &transports[1..] {
        for command in &plan.stop_others {
            interrupt::check(other.address())?;
            run(other.as_ref(), command, secrets, progress)?;
        }
    }
    for command in &plan.restore {
        interrupt::check(&plan.first)?;
        run(transports[0].as_ref(), command, secrets, progress)?;
    }
    for other in &transports[1..] {
        for command in &plan.rejoin_others {
            interrupt::check(other.address())?;
            run(other.as_ref(), command, secrets, progress)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
