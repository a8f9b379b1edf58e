//! Backup and restore plans: which commands take a consistent snapshot of a
//! cluster's datastore on one master, which file then travels to the
//! operator, and how a snapshot is put back. Plans are data, made by each
//! runtime ([`super::Runtime::backup`], [`super::Runtime::restore`]) and run by
//! `apply::backup` as argv on the host (no shell string is built from a
//! value), so `--dry-run` prints exactly what would run.

use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use super::RuntimeError;

/// Where snapshots are made, and restored from, on a host: removed after
/// each backup and restore, so no copy stays there.
pub const WORK_DIR: &str = crate::host_path!("/backup");

/// What a backup file's snapshot is, which decides how it is restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotKind {
    /// An etcd v3 snapshot (`etcdctl snapshot save`, `k3s etcd-snapshot save`).
    EtcdSnapshot,
    /// k3s's SQLite database file (`server/db/state.db`).
    Sqlite,
    /// The archive of `k0s backup` (etcd or kine data, certificates, config).
    K0sBackup,
}

impl fmt::Display for SnapshotKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SnapshotKind::EtcdSnapshot => "etcd snapshot",
            SnapshotKind::Sqlite => "SQLite database",
            SnapshotKind::K0sBackup => "k0s backup archive",
        })
    }
}

/// One command of a plan: an argv, run once, or until it succeeds for up to
/// `retry_secs` seconds (a service coming back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCommand {
    pub title: String,
    pub argv: Vec<String>,
    pub retry_secs: u64,
    /// Environment variables set from a secret file of the backup
    /// ([`BackupPlan::secrets`], by file name): values never in the plan,
    /// nor in any argv.
    pub secret_env: Vec<(String, String)>,
}

impl HostCommand {
    pub fn new(title: impl Into<String>, argv: &[&str]) -> HostCommand {
        HostCommand {
            title: title.into(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            retry_secs: 0,
            secret_env: Vec::new(),
        }
    }

    /// The same command with `var` set to the backup's secret file `name`.
    pub fn with_secret_env(mut self, var: &str, name: &str) -> HostCommand {
        self.secret_env.push((var.to_string(), name.to_string()));
        self
    }

    /// The same command, tried again each second until it succeeds.
    pub fn retried_for(mut self, secs: u64) -> HostCommand {
        self.retry_secs = secs;
        self
    }
}

/// The file a backup streams to the operator once its commands ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(String),
    /// The one file in this directory (tools that name their own files:
    /// `k3s etcd-snapshot save` adds the node and a timestamp, `k0s backup`
    /// a timestamp).
    OnlyFileIn(String),
}

/// How one master's datastore is backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPlan {
    pub runtime: String,
    pub host: String,
    pub kind: SnapshotKind,
    /// One line: how, and why this way.
    pub method: String,
    pub steps: Vec<HostCommand>,
    pub source: Source,
    /// Small files the cluster needs back with its data (k3s: the token its
    /// bootstrap data is encrypted with), kept in the backup by file name.
    pub secrets: Vec<String>,
    /// Run after the file was read, or after a failure (each tried): no
    /// copy stays on the host, a stopped service runs again.
    pub cleanup: Vec<HostCommand>,
}

/// How a snapshot, uploaded to `upload_to` on the first master, is put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    pub runtime: String,
    pub first: String,
    pub upload_to: String,
    pub method: String,
    /// On each other master first (their services stopped).
    pub stop_others: Vec<HostCommand>,
    /// On the first master.
    pub restore: Vec<HostCommand>,
    /// On each other master after the first one runs again (they rejoin).
    pub rejoin_others: Vec<HostCommand>,
    /// The other masters then join again through sealrs's join phase, as
    /// `sealrs add` joins them (kubeadm: `kubeadm join --control-plane`).
    pub rejoin_by_join: bool,
    pub others: Vec<String>,
    /// On the first master, whatever happened: the uploaded snapshot removed.
    pub cleanup: Vec<HostCommand>,
}

/// `RuntimeError::Unsupported` for `what` on `runtime`.
pub fn unsupported(runtime: &'static str, what: impl Into<String>) -> RuntimeError {
    RuntimeError::Unsupported {
        runtime,
        what: what.into(),
    }
}

fn render_commands(out: &mut String, heading: &str, commands: &[HostCommand]) {
    if commands.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {heading}:");
    for c in commands {
        let retry = if c.retry_secs > 0 {
            format!(" (retried for up to {}s)", c.retry_secs)
        } else {
            String::new()
        };
        let _ = writeln!(out, "    - {}{retry}", c.title);
        for (var, name) in &c.secret_env {
            let _ = writeln!(out, "      with {var} from the backup's {name} (not shown)");
        }
        let words: Vec<String> = c.argv.iter().map(|w| shown(w)).collect();
        let _ = writeln!(out, "      $ {}", words.join(" "));
    }
}

/// A word as a person would type it: bare when no shell would change it.
fn shown(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        crate::shell::sh_quote(word)
    }
}

impl BackupPlan {
    /// What `sealrs backup --dry-run` prints.
    pub fn render(&self, output: &str) -> String {
        let mut out = format!(
            "backup of {} ({}) on {}: {}\n  method: {}\n",
            self.runtime, self.kind, self.host, output, self.method
        );
        render_commands(&mut out, "on the host", &self.steps);
        let from = match &self.source {
            Source::File(path) => path.clone(),
            Source::OnlyFileIn(dir) => format!("the one file {dir} then holds"),
        };
        let _ = writeln!(
            out,
            "  streamed to this machine: {from} (SHA-256 computed on the way), with the saved cluster, into {output} (mode 0600, written whole or not at all)"
        );
        if !self.secrets.is_empty() {
            let _ = writeln!(out, "  kept beside it (0600): {}", self.secrets.join(", "));
        }
        render_commands(&mut out, "then, whatever happened", &self.cleanup);
        out
    }
}

impl RestorePlan {
    /// What `sealrs restore --dry-run` prints.
    pub fn render(&self, input: &str) -> String {
        let mut out = format!(
            "restore of {} from {} onto {}\n  method: {}\n  upload: the snapshot to {}:{}\n",
            self.runtime, input, self.first, self.method, self.first, self.upload_to
        );
        if !self.others.is_empty() {
            render_commands(
                &mut out,
                &format!("first, on {}", self.others.join(", ")),
                &self.stop_others,
            );
        }
        render_commands(&mut out, &format!("on {}", self.first), &self.restore);
        if !self.others.is_empty() {
            render_commands(
                &mut out,
                &format!("then on {} (they rejoin)", self.others.join(", ")),
                &self.rejoin_others,
            );
            if self.rejoin_by_join {
                let _ = writeln!(
                    out,
                    "  then {} join again as control planes, as sealrs add joins them",
                    self.others.join(", ")
                );
            }
        }
        render_commands(
            &mut out,
            &format!("then on {}, whatever happened", self.first),
            &self.cleanup,
        );
        out
    }
}

#[cfg(test)]
mod tests;
