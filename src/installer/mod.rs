//! The installer: what runs *on a host*, from inside the applied image.
//!
//! The operator's processor sends the image's layer blobs to a host, then
//! runs `sealrs installer install|join|upgrade|uninstall` there with a
//! [`Request`] on stdin: the cluster (without its SSH settings), which host
//! this is, the image and the join secrets. The installer makes the host's
//! [`Plan`] with the runtime code it carries ([`Request::plan`]), the same code
//! the operator's `--dry-run` shows. `sealrs installer verify` checks, before
//! anything changes, what only the host can see ([`verify`]); `sealrs
//! installer apply` executes a plan made elsewhere. This module does the
//! host's side:
//!
//! - [`unpack`] turns layer blobs into the image's rootfs directory, applying
//!   whiteouts, refusing entries that would land outside it, and skipping the
//!   work when the same layers were already unpacked there;
//! - [`execute`] runs a plan idempotently: every step's [`Check`] decides
//!   whether it has anything to do, so a second run of the same plan changes
//!   nothing and its [`Report`] says so;
//! - its build-time half is [`crate::build::installer`]: `sealrs build` puts
//!   the sealrs binary itself into rootfs images, so that every image carries
//!   the code that applies it.
//!
//! Every absolute host path of a plan is resolved under
//! [`ExecContext::host_root`] (`/` in production), which is what lets the
//! unit tests run whole plans inside a temp directory.
//!
//! Programs run with an argv and an env, never through a shell, so values
//! reach them byte for byte. Captured values come back in
//! [`Report::captures`] (the processor needs them) but are never logged.

mod certs;
mod error;
mod execute;
mod gc;
mod hub;
mod image_files;
mod integrity;
mod mounts;
mod originals;
mod place;
mod probe;
mod request;
mod systemd;
mod unpack;
mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::Role;
use crate::layout::Layout;
#[cfg(doc)]
use crate::plan::{Check, Plan};

pub use certs::{read_certs, renew_plan, CertInfo, CertProblem, HostCerts};
pub use error::InstallerError;
pub use execute::execute;
pub use gc::{gc, GcOutcome};
pub use image_files::{pending_file, write_files, write_request_files, ImageFile};
pub use integrity::{blob_sums, check_host, kept_layers, record_kept, Damage, Depth};
pub use originals::{
    check_request as check_originals_request, read_originals, wanted, Original, Originals,
    OriginalsRequest, MAX_FILE,
};
pub use place::{placements, PlacedFile};
pub use probe::{forget_join, probe, remember_join, Probe};
pub use request::{
    ClusterSpec, HostSpec, ImageSpec, Operation, Request, RequestError, SecretsSpec,
    REQUEST_VERSION,
};
pub use unpack::{receive, remove_garbage, unpack, BlobCheck, LayerSource, UnpackOutcome, STAMP};
pub use verify::{verify, CheckKind, VerifyReport, Violation};

/// The `PATH` that [`crate::plan::Action::Run`] programs get (plus the step's env).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How many trailing output lines a step report keeps.
pub const OUTPUT_TAIL: usize = 20;

/// Everything [`execute`] needs besides the plan.
#[derive(Debug, Clone)]
pub struct ExecContext<'a> {
    /// Where the host's `/` is: `/` in production, a temp directory in tests.
    /// Every absolute path of the plan is resolved under it.
    pub host_root: PathBuf,
    /// The unpacked image (a path on this machine, not resolved under
    /// `host_root`).
    pub rootfs: PathBuf,
    /// The layout of the image's runtime: where rootfs files land.
    pub layout: &'a Layout,
    /// The role this host plays (which placements apply to it).
    pub role: Role,
    /// Evaluate checks, change nothing: a step that has work to do reports
    /// `changed` (it would act, run a program, or wait for something not
    /// there yet); programs are not run, waits do not wait, files are read.
    pub dry_run: bool,
    /// The argv prefix that runs systemctl (`["systemctl"]`).
    pub systemctl: Vec<String>,
    /// Called after each step, for live log lines (the report has it all).
    pub on_step: Option<fn(&StepReport)>,
    /// Called as each step starts, with its number, the plan's length and
    /// its title: the operator's spinner shows it ("[7/15] start k3s.service").
    pub on_start: Option<fn(usize, usize, &str)>,
    /// Called with a hook step's id and each line its program writes, as it
    /// comes: the operator shows it live and keeps it whole in a log.
    pub on_output: Option<fn(&str, &str)>,
}

impl<'a> ExecContext<'a> {
    /// A context for the real host (`/`), with the real systemctl.
    pub fn new(rootfs: impl Into<PathBuf>, layout: &'a Layout, role: Role) -> ExecContext<'a> {
        ExecContext {
            host_root: PathBuf::from("/"),
            rootfs: rootfs.into(),
            layout,
            role,
            dry_run: false,
            systemctl: vec!["systemctl".to_string()],
            on_step: None,
            on_start: None,
            on_output: None,
        }
    }

    /// The context in which `plan` runs on this host for `request`: its
    /// layout, its role, its rootfs, every path under `host_root`.
    pub fn for_request(
        request: &Request,
        plan: &crate::plan::Plan,
        host_root: &Path,
        systemctl: &str,
    ) -> Result<ExecContext<'static>, InstallerError> {
        let cluster = request.cluster();
        let role = Request::role(request.this_host(&cluster)?);
        let mut ctx = ExecContext::new(PathBuf::new(), layout_for(plan)?, role);
        ctx.host_root = host_root.to_path_buf();
        ctx.rootfs = ctx.host_path(&request.rootfs);
        ctx.systemctl = vec![systemctl.to_string()];
        Ok(ctx)
    }

    /// An absolute host path, resolved under [`ExecContext::host_root`].
    /// Relative paths are taken as relative to the host's `/` too.
    pub fn host_path(&self, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            self.host_root.clone()
        } else {
            self.host_root.join(rel)
        }
    }

    fn is_real_root(&self) -> bool {
        self.host_root == Path::new("/")
    }
}

/// The layout of the plan's runtime, as this installer carries it.
pub fn layout_for(plan: &crate::plan::Plan) -> Result<&'static Layout, InstallerError> {
    let layouts = crate::layout::Layouts::embedded();
    layouts
        .rootfs(&plan.runtime)
        .ok_or_else(|| InstallerError::NoLayout {
            runtime: plan.runtime.clone(),
            known: layouts.runtimes().join(", "),
        })
}

/// What happened to one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// The step changed the host.
    Changed,
    /// The step ran but changed nothing (it only observes, or found nothing
    /// it may touch).
    Unchanged,
    /// Its check said there was nothing to do.
    Skipped,
    /// It failed; the plan stopped here.
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Changed => "changed",
            StepStatus::Unchanged => "unchanged",
            StepStatus::Skipped => "skipped",
            StepStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub id: String,
    pub title: String,
    pub status: StepStatus,
    /// The exit code of the program the step ran, if it ran one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last [`OUTPUT_TAIL`] lines of its output (stdout and stderr; the
    /// stdout of a step capturing a secret is left out), or the error.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output: Vec<String>,
    /// Why the step did what it did, when that is not obvious.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// What [`execute`] did, for the operator: serialized as JSON on stdout.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub runtime: String,
    pub action: String,
    pub host: String,
    pub dry_run: bool,
    /// The steps that ran, in order; after a failure, the remaining steps are
    /// not listed.
    pub steps: Vec<StepReport>,
    /// Capture key → value. Secret values are here too (the processor needs
    /// them) but never in logs: `Debug` redacts them.
    pub captures: BTreeMap<String, String>,
    /// Keys of `captures` that are secrets.
    #[serde(default)]
    pub sensitive: BTreeSet<String>,
    /// Whether any step changed the host.
    pub changed: bool,
    /// The id of the step that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// How many steps the plan had (`steps` stops at a failure): "step 7 of 15".
    #[serde(default)]
    pub planned: usize,
}

impl Report {
    pub fn succeeded(&self) -> bool {
        self.failed.is_none()
    }

    /// The failed step's report.
    pub fn failed_step(&self) -> Option<&StepReport> {
        let id = self.failed.as_ref()?;
        self.steps.iter().find(|s| &s.id == id)
    }

    /// Where the failed step stood in the plan: "7 of 15" (its number alone
    /// from an installer that did not say how many steps it planned).
    pub fn failed_position(&self) -> Option<String> {
        let id = self.failed.as_ref()?;
        let number = self.steps.iter().position(|s| &s.id == id)? + 1;
        Some(match self.planned {
            0 => number.to_string(),
            planned => format!("{number} of {planned}"),
        })
    }

    /// One line a person reads at the end of a run.
    pub fn summary(&self) -> String {
        let count = |s: StepStatus| self.steps.iter().filter(|r| r.status == s).count();
        if let Some(step) = self.failed_step() {
            let code = step
                .exit_code
                .map(|c| format!(" (exit code {c})"))
                .unwrap_or_default();
            return format!(
                "{} {} on {}: step {} ({}) failed{code}",
                self.runtime, self.action, self.host, step.id, step.title
            );
        }
        if !self.changed {
            return format!(
                "{} {} on {}: nothing to do ({} checked)",
                self.runtime,
                self.action,
                self.host,
                crate::progress::text::count(self.steps.len(), "step")
            );
        }
        format!(
            "{} {} on {}: {} changed, {} unchanged, {} skipped{}",
            self.runtime,
            self.action,
            self.host,
            count(StepStatus::Changed),
            count(StepStatus::Unchanged),
            count(StepStatus::Skipped),
            if self.dry_run { " (dry run)" } else { "" }
        )
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let captures: BTreeMap<&str, &str> = self
            .captures
            .iter()
            .map(|(k, v)| {
                let shown = if self.sensitive.contains(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k.as_str(), shown)
            })
            .collect();
        f.debug_struct("Report")
            .field("runtime", &self.runtime)
            .field("action", &self.action)
            .field("host", &self.host)
            .field("dry_run", &self.dry_run)
            .field("steps", &self.steps)
            .field("captures", &captures)
            .field("changed", &self.changed)
            .field("failed", &self.failed)
            .finish()
    }
}

#[cfg(test)]
mod tests;
