//! Errors of the processor: each names the host, the step and what to do.

use std::fmt;
use std::path::PathBuf;

use crate::cluster::Host;
use crate::runtime::{RuntimeError, Violation};
use crate::transport::{Output, TransportError};

/// One host's failure, in a run that collects them all.
#[derive(Debug)]
pub struct HostFailure {
    pub host: String,
    pub error: Box<ApplyError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("no image to apply; name a cluster image (sealrs run IMAGE --masters ...)")]
    NoImage,

    #[error("{name:?}: {source}")]
    ImageName {
        name: String,
        #[source]
        source: crate::reference::ReferenceError,
    },

    #[error("image {name}: {source}; build, load or pull it first")]
    Image {
        name: String,
        #[source]
        source: Box<crate::store::StoreError>,
    },

    #[error("image {image} names runtime {runtime:?}, which sealrs does not know; label it sealrs.io/runtime={}", crate::runtime::names().join("|"))]
    NoRuntime { image: String, runtime: String },

    #[error("image {image} carries no installer layer ({}); rebuild it with this sealrs (without --no-installer)", crate::host_paths::INSTALLER_PATH)]
    NoInstaller { image: String },

    #[error("image {name} ({digest}), which the cluster runs, is in neither the store nor the copy kept beside the saved cluster ({detail}); pull or load it again")]
    PinnedImageGone {
        name: String,
        digest: String,
        detail: String,
    },

    #[error("the cluster has no master; give one with --masters")]
    NoMaster,

    #[error("image {image}: its files cannot be prepared for the hosts, so no host was changed:\n{}", problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    ImageFiles {
        image: String,
        problems: Vec<String>,
    },

    #[error("cluster {cluster} cannot be built as asked:\n{}", list(violations))]
    Verify {
        cluster: String,
        violations: Vec<Violation>,
    },

    #[error("{host}: {source}")]
    Transport {
        host: String,
        #[source]
        source: Box<TransportError>,
    },

    #[error("{host} cannot take this cluster: {problem}")]
    HostUnfit { host: String, problem: String },

    #[error("{host}: {} violation{}:\n{}", violations.len(), if violations.len() == 1 { "" } else { "s" }, violations.iter().map(|v| format!("    - {v}")).collect::<Vec<_>>().join("\n"))]
    Violations {
        host: String,
        violations: Vec<String>,
    },

    #[error("{host}: `{argv}` failed ({status}):\n{tail}")]
    Command {
        host: String,
        argv: String,
        status: String,
        tail: String,
    },

    #[error("{host}: {action} failed at step {step}{}:\n{tail}\nFix the cause and run the same command again: it picks up where it stopped.", exit_code.map(|c| format!(", exit code {c}")).unwrap_or_default())]
    Step {
        host: String,
        action: String,
        step: String,
        exit_code: Option<i32>,
        tail: String,
    },

    #[error("{host}: {source}")]
    Runtime {
        host: String,
        #[source]
        source: RuntimeError,
    },

    #[error("failed on {} host{}:\n{}", .0.len(), if .0.len() == 1 { "" } else { "s" }, failures(.0))]
    Hosts(Vec<HostFailure>),

    #[error("cannot save the cluster state in {}: {source}", path.display())]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "application image {image} failed on {host}: `{command}` ended with {status}:\n{tail}"
    )]
    App {
        image: String,
        host: String,
        command: String,
        status: String,
        tail: String,
    },

    #[error("{0}")]
    Unsupported(String),

    #[error("{host} cannot be reached ({reason}) and its Kubernetes node name was never recorded (the cluster was saved by an older sealrs), so it cannot be drained; nothing was changed: bring it back and run the same command again")]
    NodeNameUnknown { host: String, reason: String },

    #[error("{host}: drained and deleted from Kubernetes as node {node}, but it cannot be reached ({reason}), so nothing on it was uninstalled; it stays in the saved cluster: bring it back and run the same delete again")]
    NotUninstalled {
        host: String,
        node: String,
        reason: String,
    },

    #[error("node {node} ({host}) did not report Ready with {version} within {secs}s (last answer of kubectl get node: {last}); it stays cordoned; give nodes longer with --ready-timeout SECONDS")]
    NodeNotReady {
        node: String,
        host: String,
        version: String,
        secs: u64,
        last: String,
    },

    #[error("{failed}\nthe upgrade stopped there, the cluster as it was: upgraded {upgraded}; not upgraded yet: {pending}.\nOnce the failed hosts are fixed, resume (hosts already upgraded are skipped) with:\n  {resume}")]
    UpgradeStopped {
        failed: Box<ApplyError>,
        upgraded: String,
        pending: String,
        resume: String,
    },

    /// A host whose upgrade failed, returned to the image it ran before.
    #[error("{error}\n{host} was returned to {image} ({version}) and runs it again")]
    RolledBack {
        host: String,
        image: String,
        version: String,
        error: Box<ApplyError>,
    },

    /// A host whose upgrade failed and that could not be returned.
    #[error("{error}\n{host} was not returned to {image}: {reason}")]
    NotRolledBack {
        host: String,
        image: String,
        reason: String,
        error: Box<ApplyError>,
    },

    /// A command that would downgrade hosts an unfinished upgrade may have
    /// reached (one killed before it could save them).
    #[error("cluster {cluster}: its upgrade to {to} ({to_version}) did not complete ({reached}), so {image} would downgrade the hosts it reached; nothing was changed. Finish the upgrade with\n  sealrs upgrade --cluster {cluster} {to}\nor return every host to the image before it with\n  sealrs upgrade --rollback --cluster {cluster}")]
    UnfinishedUpgrade {
        cluster: String,
        to: String,
        to_version: String,
        /// `NAME (VERSION)` of the image the command would apply.
        image: String,
        /// Which hosts it reached, in words.
        reached: String,
    },

    #[error("cluster {cluster} has no unfinished upgrade to roll back: {reason}")]
    NothingToRollBack { cluster: String, reason: String },

    #[error("no saved cluster {name} ({}); create it with sealrs run --cluster {name}", path.display())]
    NoCluster { name: String, path: PathBuf },

    #[error("the saved cluster {}: {source}", path.display())]
    SavedCluster {
        path: PathBuf,
        #[source]
        source: Box<crate::cluster::ClusterError>,
    },

    #[error("cluster {cluster} is busy: {holder} is working on it ({}); wait for it to end, then run this command again", path.display())]
    Busy {
        cluster: String,
        holder: String,
        path: PathBuf,
    },

    #[error("{}: {reason}", hosts.join(", "))]
    Refused { hosts: Vec<String>, reason: String },

    #[error("the image's installer found problems on {} host{}; nothing was changed:\n{}\nFix them and run the same command again", .0.len(), if .0.len() == 1 { "" } else { "s" }, failures(.0))]
    Unfit(Vec<HostFailure>),

    #[error("{host}: not started, interrupted (Ctrl-C)")]
    Interrupted { host: String },

    #[error("cannot reach {} host{}:\n{}\nNothing was changed; bring them back, or pass --force to go on without them", .0.len(), if .0.len() == 1 { "" } else { "s" }, failures(.0))]
    Unreachable(Vec<HostFailure>),

    #[error("reading layers of {repository} from its registry: {source}")]
    RegistryLayers {
        repository: String,
        #[source]
        source: Box<crate::registry::RegistryError>,
    },
}

impl ApplyError {
    /// Whether Ctrl-C stopped this command (here or on one of its hosts).
    pub fn is_interrupted(&self) -> bool {
        match self {
            ApplyError::Interrupted { .. } => true,
            ApplyError::Hosts(f) | ApplyError::Unfit(f) | ApplyError::Unreachable(f) => {
                f.iter().any(|f| f.error.is_interrupted())
            }
            _ => false,
        }
    }

    /// Each host this error blames: (host, the step that failed when one
    /// did, the message), for a result that says so per host (`--format
    /// json`). Empty for an error about the whole cluster.
    pub fn host_failures(&self) -> Vec<(String, Option<String>, String)> {
        use ApplyError as E;
        match self {
            E::Hosts(f) | E::Unfit(f) | E::Unreachable(f) => f
                .iter()
                .flat_map(|f| {
                    let inner = f.error.host_failures();
                    if inner.len() == 1 {
                        let (_, step, message) = inner.into_iter().next().unwrap_or_default();
                        vec![(f.host.clone(), step, message)]
                    } else if inner.is_empty() {
                        vec![(f.host.clone(), None, f.error.to_string())]
                    } else {
                        inner
                    }
                })
                .collect(),
            E::Step { host, step, .. } => {
                vec![(host.clone(), Some(step.clone()), self.to_string())]
            }
            E::Command { host, argv, .. } => {
                vec![(host.clone(), Some(argv.clone()), self.to_string())]
            }
            E::Transport { host, .. }
            | E::HostUnfit { host, .. }
            | E::Violations { host, .. }
            | E::Runtime { host, .. }
            | E::App { host, .. }
            | E::NodeNameUnknown { host, .. }
            | E::NotUninstalled { host, .. }
            | E::Interrupted { host } => vec![(host.clone(), None, self.to_string())],
            E::Refused { hosts, reason } => hosts
                .iter()
                .map(|h| (h.clone(), None, reason.clone()))
                .collect(),
            E::UpgradeStopped { failed, .. } => failed.host_failures(),
            E::RolledBack { host, error, .. } | E::NotRolledBack { host, error, .. } => {
                let step = error.host_failures().into_iter().next().and_then(|f| f.1);
                vec![(host.clone(), step, self.to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// `Ok` when no host failed, else every failure in one error.
    pub(crate) fn all_hosts_ok(failures: Vec<HostFailure>) -> Result<(), ApplyError> {
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::Hosts(failures))
        }
    }

    /// Adds this machine's side of a failed fetch (why serving the files
    /// stopped, if it did) to a [`ApplyError::Command`]'s output.
    pub(crate) fn served_by_us(mut self, serve_error: Option<String>) -> ApplyError {
        if let (ApplyError::Command { tail, .. }, Some(e)) = (&mut self, serve_error) {
            tail.push_str(&format!("\n(this machine, serving the files: {e})"));
        }
        self
    }

    /// A command on `host` that did not succeed: its status and the last
    /// `lines` of its output.
    pub(crate) fn command(
        host: impl Into<String>,
        argv: impl Into<String>,
        output: &Output,
        lines: usize,
    ) -> ApplyError {
        ApplyError::Command {
            host: host.into(),
            argv: argv.into(),
            status: output.status_text(),
            tail: output.tail(lines),
        }
    }

    /// For `map_err`: a transport error on the host `host` names.
    pub(crate) fn transport(host: impl Into<String>) -> impl Fn(TransportError) -> ApplyError {
        let host = host.into();
        move |source| ApplyError::Transport {
            host: host.clone(),
            source: Box::new(source),
        }
    }

    /// For `map_err`: a runtime error on `host`.
    pub(crate) fn runtime(host: &Host) -> impl FnOnce(RuntimeError) -> ApplyError + '_ {
        move |source| ApplyError::Runtime {
            host: host.key(),
            source,
        }
    }
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(|v| format!("  - {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn failures(failures: &[HostFailure]) -> String {
    failures
        .iter()
        .map(|f| format!("  {f}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl fmt::Display for HostFailure {
    /// Most errors already start with their host; it is not said twice.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let error = self.error.to_string();
        if error.starts_with(&format!("{}: ", self.host))
            || error.starts_with(&format!("{} ", self.host))
        {
            f.write_str(&error)
        } else {
            write!(f, "{}: {error}", self.host)
        }
    }
}
