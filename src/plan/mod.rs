//! Plans: what one host must look like, as data.
//!
//! A runtime never touches a host. It returns a [`Plan`]: an ordered list of
//! [`Step`]s (write a file, run an argv, enable a unit…) that the on-host
//! installer executes, `--dry-run` prints, and tests assert on. A plan is
//! serializable so that it can travel to the host as JSON.
//!
//! Three rules hold for every step:
//!
//! - **No shell.** A command is an argv (`Vec<String>`) with an env
//!   (`Vec<(String, String)>`); values users pass stay data, byte for byte.
//! - **Declared idempotency.** Every step carries a [`Check`] that tells the
//!   installer how to know the step has nothing to do, so that a second run
//!   changes nothing and can say so.
//! - **Outputs are explicit.** A step that reads something back for the
//!   operator (a join token, a join command) names a [`Capture`] key; the
//!   installer returns a map `key → value`, and the processor turns it into the
//!   join secrets of the next hosts (see `runtime::Runtime::join_secrets`).

mod render;
mod step;
mod template;

use serde::{Deserialize, Serialize};

pub use render::{quote, quote_env};
pub use template::{
    merge_mappings, merge_yaml, merge_yaml_keeping, render_template, render_yaml_template,
    TemplateError,
};

use crate::cluster::Role;

/// Everything one host must execute for one action of one runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The runtime that made the plan (`k3s`, `kubeadm`, `k0s`).
    pub runtime: String,
    /// `install`, `join`, `upgrade`, `uninstall` or `remove-node`.
    pub action: String,
    /// The host the plan is for, as the cluster names it.
    pub host: String,
    /// The cluster's env: the installer renders [`FileContent::Template`] and
    /// templated YAML bases with it. It is *not* added to [`Action::Run`]
    /// steps; a step that needs it lists it in its own `env`.
    pub env: Vec<(String, String)>,
    pub steps: Vec<Step>,
}

/// One thing to do on a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// Stable within a plan (`config`, `unit`, `start`); [`Check::IfChanged`]
    /// refers to steps by id.
    pub id: String,
    /// What a person reads in logs and dry-runs.
    pub title: String,
    pub action: Action,
    /// How the installer knows the step has nothing to do.
    pub check: Check,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Action {
    /// Place the image's rootfs on the host as the layout of its runtime says
    /// for this role. Reports "changed" when any placed file changed.
    PlaceRootfs {
        role: Role,
        /// Whether the host runs workloads, for the layout's rules `on =
        /// "workers"`; `None`: when its role is node.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        workloads: Option<bool>,
    },
    /// Remove everything [`Action::PlaceRootfs`] placed for this role.
    RemoveRootfs {
        role: Role,
    },
    /// Write a file atomically (temp + rename), creating parent directories.
    WriteFile {
        path: String,
        content: FileContent,
        mode: u32,
        /// Do not rewrite (nor report a change) when content and mode match.
        only_if_changed: bool,
        /// The content is a secret: dry-runs and logs show its size only.
        sensitive: bool,
    },
    EnsureDir {
        path: String,
        mode: u32,
    },
    /// Run a program. Never through a shell: `argv[0]` is the program.
    Run {
        argv: Vec<String>,
        /// Added to a minimal environment (`PATH`), nothing else is inherited.
        env: Vec<(String, String)>,
        cwd: Option<String>,
        /// Keep the trimmed stdout under this key.
        capture: Option<Capture>,
        /// Indices of argv elements that are secrets (shown as `<redacted>`).
        redact: Vec<usize>,
        /// A non-zero exit is reported but does not stop the plan (like
        /// systemd's `ExecStartPre=-`): for best-effort host tuning.
        allow_failure: bool,
    },
    /// `link` becomes a symlink pointing at `target`. An existing regular file
    /// at `link` is left alone (as the k3s install script does for kubectl).
    Symlink {
        target: String,
        link: String,
    },
    /// Remove a path; a missing path is not an error. Without `recursive`, a
    /// directory is removed only when empty (and left alone otherwise).
    Remove {
        path: String,
        recursive: bool,
    },
    /// Remove `link` only when it is a symlink pointing at `target`: what
    /// [`Action::Symlink`] made, never a file someone else put there.
    RemoveLink {
        link: String,
        target: String,
    },
    /// Write `/etc/systemd/system/<name>` and run `systemctl daemon-reload`
    /// when it changed.
    InstallUnit {
        name: String,
        content: String,
    },
    /// `systemctl daemon-reload`.
    DaemonReload,
    /// `systemctl <op> <unit>`.
    Service {
        unit: String,
        op: ServiceOp,
    },
    /// Poll until the path exists.
    WaitFile {
        path: String,
        timeout_secs: u64,
    },
    /// Poll until a TCP connection to host:port succeeds.
    WaitPort {
        host: String,
        port: u16,
        timeout_secs: u64,
    },
    /// Read a file back to the operator under `capture.key`.
    ReadFile {
        path: String,
        capture: Capture,
    },
    /// Kill (SIGKILL) every process whose program is a file whose name
    /// starts with `name_prefix`, in a directory below `under`, together with
    /// all its descendants, and wait until they are gone: what a unit with
    /// `KillMode=process` leaves running (k3s' containerd shims and their
    /// containers). Nothing running is nothing to do.
    KillProcessTrees {
        under: String,
        name_prefix: String,
    },
    /// Unmount every mount whose mount point starts with `prefix` (as a
    /// string: `/run/netns/cni-` matches `/run/netns/cni-1f2e`), deepest
    /// first, then remove each mount point without crossing into another
    /// mount. No such mount is nothing to do.
    UnmountUnder {
        prefix: String,
    },
    /// Delete these network interfaces of the host (`ip link delete`), each
    /// after the interfaces enslaved to it; absent ones are nothing to do.
    DeleteLinks {
        names: Vec<String>,
    },
    /// For each of `tools` (`iptables`, `ip6tables`): drop from its
    /// `TOOL-save` dump every line that contains one of `contains`, or one
    /// of `contains_ignore_case` in any case, and `TOOL-restore` the rest.
    /// A tool that is missing or whose dump has no such line is left alone.
    StripIptables {
        tools: Vec<String>,
        contains: Vec<String>,
        contains_ignore_case: Vec<String>,
    },
}

/// The content of a written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FileContent {
    /// Exactly these bytes.
    Bytes { bytes: Vec<u8> },
    /// A text rendered on the host with the plan's env by [`render_template`].
    Template { template: String },
    /// A YAML mapping: `base` (a file on the host, typically from the image's
    /// rootfs; a missing file counts as empty, and it is rendered as a template
    /// first when `base_is_template`) with `overlay` merged over it by
    /// [`merge_yaml`]. The overlay wins.
    /// With `keep`, only those top-level keys of the base are kept
    /// ([`merge_yaml_keeping`]): what one role of a runtime knows of a config
    /// written for all of them.
    YamlMerge {
        base: Option<String>,
        base_is_template: bool,
        overlay: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keep: Option<Vec<String>>,
    },
}

impl FileContent {
    pub fn text(text: impl Into<String>) -> FileContent {
        FileContent::Bytes {
            bytes: text.into().into_bytes(),
        }
    }
}

/// A value that the installer hands back to the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    pub key: String,
    /// A secret: logs and reports must not print it.
    pub sensitive: bool,
}

impl Capture {
    pub fn secret(key: &str) -> Capture {
        Capture {
            key: key.to_string(),
            sensitive: true,
        }
    }
    pub fn public(key: &str) -> Capture {
        Capture {
            key: key.to_string(),
            sensitive: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceOp {
    Enable,
    Disable,
    Start,
    Stop,
    Restart,
}

impl ServiceOp {
    pub fn verb(self) -> &'static str {
        match self {
            ServiceOp::Enable => "enable",
            ServiceOp::Disable => "disable",
            ServiceOp::Start => "start",
            ServiceOp::Stop => "stop",
            ServiceOp::Restart => "restart",
        }
    }

    /// `systemctl`'s arguments before the unit. `enable` skips its own reload
    /// of systemd: the unit step reloads whenever a unit file changes, and
    /// each reload costs a host a sizeable fraction of a second.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            ServiceOp::Enable => &["enable", "--no-reload"],
            ServiceOp::Disable => &["disable"],
            ServiceOp::Start => &["start"],
            ServiceOp::Stop => &["stop"],
            ServiceOp::Restart => &["restart"],
        }
    }
}

/// How the installer decides that a step has nothing to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Check {
    /// A written file already has the rendered content and mode.
    FileMatches,
    /// The directory exists with the mode.
    DirExists,
    /// The symlink exists and points at the target.
    LinkMatches,
    /// The path does not exist.
    Absent,
    /// Skip when this path exists (the step creates it: `creates` in Ansible).
    Creates {
        path: String,
    },
    /// Run only when this path exists (the step removes what it made).
    IfExists {
        path: String,
    },
    /// Skip when this file exists and contains this text.
    FileContains {
        path: String,
        text: String,
    },
    UnitEnabled {
        unit: String,
    },
    UnitDisabled {
        unit: String,
    },
    UnitActive {
        unit: String,
    },
    /// The unit is not active (or does not exist).
    UnitInactive {
        unit: String,
    },
    /// Run only when one of these steps changed something in this run
    /// (and, with `unit_active`, only when that unit is active: a unit that is
    /// not running yet needs a start, not a restart).
    IfChanged {
        steps: Vec<String>,
        unit_active: Option<String>,
    },
    /// Run only when this read-only command exits 0 and prints something
    /// (`kubectl get node N --ignore-not-found -o name` for a node that
    /// exists); a query that fails fails the step.
    IfOutput {
        argv: Vec<String>,
    },
    /// Run only when `path` exists, `unless_exists` (a marker the finished
    /// step leaves) does not, and this read-only command fails: what a
    /// half-done step left (`admin.conf` written, the API not answering) is
    /// undone before the step is redone, and a finished one never is.
    IfExistsAndFails {
        path: String,
        unless_exists: Option<String>,
        argv: Vec<String>,
    },
    /// The step only observes (waits, reads back, prints): it always runs
    /// and never counts as a change.
    ReadOnly,
}

/// A plan whose steps are invalid as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("step ids must be unique within a plan; {id:?} appears twice")]
    DuplicateId { id: String },
    #[error("step {step:?} refers to step {missing:?}, which does not come before it")]
    UnknownStep { step: String, missing: String },
    #[error("step {step:?} runs (or queries with) an empty argv")]
    EmptyArgv { step: String },
    #[error("capture key {key:?} is produced by two steps")]
    DuplicateCapture { key: String },
}

impl Plan {
    pub fn new(runtime: &str, action: &str, host: &str, env: Vec<(String, String)>) -> Plan {
        Plan {
            runtime: runtime.to_string(),
            action: action.to_string(),
            host: host.to_string(),
            env,
            steps: Vec::new(),
        }
    }

    pub fn push(&mut self, step: Step) -> &mut Plan {
        self.steps.push(step);
        self
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The capture keys this plan produces, in order.
    pub fn captures(&self) -> Vec<&Capture> {
        self.steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::ReadFile { capture, .. } => Some(capture),
                Action::Run {
                    capture: Some(c), ..
                } => Some(c),
                _ => None,
            })
            .collect()
    }

    /// Checks what an installer relies on: unique ids, `IfChanged` naming
    /// earlier steps, non-empty argvs, one producer per capture key.
    /// Returns every problem.
    pub fn validate(&self) -> Result<(), Vec<PlanError>> {
        let mut problems = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut keys: Vec<&str> = Vec::new();
        for step in &self.steps {
            if seen.contains(&step.id.as_str()) {
                problems.push(PlanError::DuplicateId {
                    id: step.id.clone(),
                });
            }
            if let Check::IfChanged { steps, .. } = &step.check {
                for s in steps {
                    if !seen.contains(&s.as_str()) {
                        problems.push(PlanError::UnknownStep {
                            step: step.id.clone(),
                            missing: s.clone(),
                        });
                    }
                }
            }
            let query = match &step.check {
                Check::IfOutput { argv } | Check::IfExistsAndFails { argv, .. } => Some(argv),
                _ => None,
            };
            let run = match &step.action {
                Action::Run { argv, .. } => Some(argv),
                _ => None,
            };
            if [run, query]
                .into_iter()
                .flatten()
                .any(|argv| argv.first().is_none_or(String::is_empty))
            {
                problems.push(PlanError::EmptyArgv {
                    step: step.id.clone(),
                });
            }
            seen.push(&step.id);
            let key = match &step.action {
                Action::ReadFile { capture, .. } => Some(capture.key.as_str()),
                Action::Run {
                    capture: Some(c), ..
                } => Some(c.key.as_str()),
                _ => None,
            };
            if let Some(key) = key {
                if keys.contains(&key) {
                    problems.push(PlanError::DuplicateCapture {
                        key: key.to_string(),
                    });
                }
                keys.push(key);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan always serializes")
    }

    pub fn from_json(text: &str) -> Result<Plan, serde_json::Error> {
        serde_json::from_str(text)
    }
}

#[cfg(test)]
mod tests;
