//! Would `install` or `join` change anything on this host? The operator asks
//! in the round trip that already runs `installer verify`; where every host
//! of a re-apply answers no, it skips the install and join round trips.
//!
//! The answer is the operation's own plan executed as a dry run (see
//! [`ExecContext::dry_run`]): the host is *converged* only when no step would
//! act, run a program or wait, and every value the plan captures could be
//! read. A plan that runs a program on every apply (a `check` hook, kubeadm's
//! `token create`) is therefore never converged, and keeps its round trips.
//!
//! A join's plan holds the join secrets, which the operator learns from the
//! first master only in this same round trip. So a host keeps the secrets it
//! last joined with ([`JOINED`], 0600, under the directory reset removes),
//! probes its join with those, and answers with their digest: the operator
//! takes the answer only when the first master's secrets have that digest.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::request::{Operation, Request, SecretsSpec};
use super::{execute, ExecContext, InstallerError, StepStatus};
use crate::host_paths::JOINED;

/// What [`probe`] found, in the verify report.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `install` or `join`.
    pub operation: String,
    /// Running the operation now would change nothing.
    pub converged: bool,
    /// Why not, for people: the first step with work to do, or what stopped
    /// the probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// What the plan captured (the first master's join secrets): for the
    /// operator only, never logged.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub captures: BTreeMap<String, String>,
    /// A join's: [`SecretsSpec::digest`] of the secrets it was probed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<String>,
}

impl fmt::Debug for Probe {
    /// Captured values are secrets: only their keys are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("operation", &self.operation)
            .field("converged", &self.converged)
            .field("pending", &self.pending)
            .field("captures", &self.captures.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl Probe {
    fn pending(operation: Operation, why: impl Into<String>) -> Probe {
        Probe {
            operation: operation.to_string(),
            converged: false,
            pending: Some(why.into()),
            captures: BTreeMap::new(),
            secrets: None,
        }
    }
}

/// Would `operation` (install or join) of `request` change this host? Never
/// fails: what stops the probe is its answer's `pending`.
pub fn probe(request: &Request, operation: Operation, host_root: &Path, systemctl: &str) -> Probe {
    let mut request = request.clone();
    let mut secrets = None;
    if operation == Operation::Join {
        match read_joined(host_root) {
            Ok(Some(kept)) => {
                secrets = Some(kept.digest());
                request.secrets = kept;
            }
            Ok(None) => return Probe::pending(operation, "this host has not joined yet"),
            Err(e) => return Probe::pending(operation, e.to_string()),
        }
    }
    if let Some(path) = super::pending_file(&request, host_root) {
        return Probe::pending(operation, format!("the image's {path} is to be written"));
    }
    let dry = request
        .plan_in(operation, host_root)
        .map_err(InstallerError::from)
        .and_then(|plan| {
            let mut ctx = ExecContext::for_request(&request, &plan, host_root, systemctl)?;
            ctx.dry_run = true;
            Ok((execute(&plan, &ctx)?, plan))
        });
    let (report, plan) = match dry {
        Ok(done) => done,
        Err(e) => return Probe::pending(operation, e.to_string()),
    };
    let has_work =
        |s: &&super::StepReport| matches!(s.status, StepStatus::Changed | StepStatus::Failed);
    let pending = match report.steps.iter().find(has_work) {
        Some(step) => Some(format!(
            "step {} ({}) has work to do{}",
            step.id,
            step.title,
            step.note
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        )),
        None => plan
            .captures()
            .into_iter()
            .find(|c| !report.captures.contains_key(&c.key))
            .map(|c| format!("{} could not be read", c.key)),
    };
    Probe {
        operation: operation.to_string(),
        converged: pending.is_none(),
        pending,
        captures: report.captures,
        secrets,
    }
}

/// [`JOINED`] under `host_root`.
fn joined(host_root: &Path) -> PathBuf {
    host_root.join(JOINED.trim_start_matches('/'))
}

/// Keeps the secrets of a join that succeeded, for the next [`probe`].
pub fn remember_join(request: &Request, host_root: &Path) -> Result<(), InstallerError> {
    let path = joined(host_root);
    let json = serde_json::to_vec(&request.secrets).expect("secrets serialize");
    super::place::write_atomic(&path, &json, 0o600)
}

/// Forgets them, once this host is uninstalled.
pub fn forget_join(host_root: &Path) -> Result<(), InstallerError> {
    let path = joined(host_root);
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(InstallerError::io("removing", path)(e))
        }
        _ => Ok(()),
    }
}

fn read_joined(host_root: &Path) -> Result<Option<SecretsSpec>, InstallerError> {
    let path = joined(host_root);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InstallerError::io("reading", path)(e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        InstallerError::io("reading", path)(io::Error::new(io::ErrorKind::InvalidData, e))
    })
}
