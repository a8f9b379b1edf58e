//! systemd: unit files, services, and unit states, asked of systemd's own
//! socket on the real host and of systemctl elsewhere.

use std::io;

use super::files::file_matches;
use super::programs::failure;
use super::{Outcome, StepRun};
use crate::installer::place::write_atomic as write_file_atomic;
use crate::installer::systemd::{Systemd, PRIVATE_SOCKET as SYSTEMD_SOCKET};
use crate::installer::InstallerError;
use crate::plan::ServiceOp;

/// systemd's socket, asked for unit states on the real host until it fails;
/// systemctl answers in its place then, and wherever the host is not `/`.
pub(super) enum SystemdLink {
    Untried,
    Open(Systemd),
    Failed,
}

/// Says why systemctl answers from now on: the socket should have.
fn fallback(err: &io::Error) -> SystemdLink {
    eprintln!("warning: systemd's socket {SYSTEMD_SOCKET}: {err}; asking systemctl instead");
    SystemdLink::Failed
}

impl StepRun<'_> {
    /// `systemctl <verb> --quiet <unit>` succeeded (or would have: systemd is
    /// asked directly where it can be). Read-only, so it runs in dry runs too.
    pub(super) fn unit_query(&mut self, verb: &str, unit: &str) -> Result<bool, InstallerError> {
        if let Some(answer) = self.ask_systemd(verb, unit) {
            return Ok(answer);
        }
        let mut argv = self.ctx.systemctl.clone();
        argv.extend([verb.to_string(), "--quiet".to_string(), unit.to_string()]);
        let out = self.spawn(&argv, &[], None)?;
        Ok(out.status.success())
    }

    /// What systemd itself says to `is-enabled` or `is-active`, with the
    /// states for which systemctl succeeds; `None` where systemctl must be
    /// asked (a test's host root, a systemctl of the test's, no socket).
    fn ask_systemd(&mut self, verb: &str, unit: &str) -> Option<bool> {
        self.with_systemd(|systemd| match verb {
            "is-enabled" => systemd.unit_file_state(unit).map(|state| {
                matches!(
                    state.as_deref(),
                    Some(
                        "enabled"
                            | "enabled-runtime"
                            | "static"
                            | "alias"
                            | "indirect"
                            | "generated"
                    )
                )
            }),
            _ => systemd
                .active_state(unit)
                .map(|state| matches!(state.as_str(), "active" | "reloading" | "refreshing")),
        })
    }

    /// `ask`'s answer from systemd's socket; `None` where there is no
    /// socket to ask (a test's host root, a systemctl of the test's), or it
    /// failed (then systemctl answers from now on).
    pub(super) fn with_systemd<T>(
        &mut self,
        ask: impl FnOnce(&mut Systemd) -> io::Result<T>,
    ) -> Option<T> {
        if !self.ctx.is_real_root() || self.ctx.systemctl != ["systemctl"] {
            return None;
        }
        if let SystemdLink::Untried = self.systemd {
            *self.systemd = match Systemd::connect() {
                Ok(systemd) => SystemdLink::Open(systemd),
                Err(err) => fallback(&err),
            };
        }
        let SystemdLink::Open(systemd) = &mut *self.systemd else {
            return None;
        };
        match ask(systemd) {
            Ok(answer) => Some(answer),
            Err(err) => {
                *self.systemd = fallback(&err);
                None
            }
        }
    }

    /// Writes a unit file; systemd reloads only when it does not load the file itself.
    pub(super) fn install_unit(
        &mut self,
        name: &str,
        content: &str,
    ) -> Result<Outcome, InstallerError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(InstallerError::UnsafePath {
                path: name.to_string(),
                reason: "a unit name is a file name".into(),
            });
        }
        let dest = self.ctx.host_path(&format!("/etc/systemd/system/{name}"));
        if file_matches(&dest, content.as_bytes(), 0o644) {
            return Ok(Outcome::skipped("the unit file matches"));
        }
        if self.ctx.dry_run {
            return Ok(Outcome::changed());
        }
        write_file_atomic(&dest, content.as_bytes(), 0o644)?;
        // A daemon-reload reruns every generator: a tenth of a second
        // or more per host. Needless where systemd, asked about the
        // unit, loads the new file itself and runs it as it is now.
        if self.with_systemd(|s| s.loaded_current(name)) == Some(true) {
            return Ok(Outcome::changed().with_note("systemd loaded it without a reload"));
        }
        self.systemctl(&["daemon-reload"])?;
        Ok(Outcome::changed())
    }

    pub(super) fn daemon_reload(&mut self) -> Result<Outcome, InstallerError> {
        if !self.ctx.dry_run {
            self.systemctl(&["daemon-reload"])?;
        }
        Ok(Outcome::changed())
    }

    pub(super) fn service(&mut self, unit: &str, op: ServiceOp) -> Result<Outcome, InstallerError> {
        if !self.ctx.dry_run {
            let mut args = op.args().to_vec();
            args.push(unit);
            self.systemctl(&args)?;
        }
        Ok(Outcome::changed())
    }

    pub(super) fn systemctl(&mut self, args: &[&str]) -> Result<(), InstallerError> {
        let mut argv = self.ctx.systemctl.clone();
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self.spawn(&argv, &[], None)?;
        self.keep(&out.stdout);
        self.keep(&out.stderr);
        self.exit_code = out.status.code();
        if out.status.success() {
            Ok(())
        } else {
            Err(failure(argv.join(" "), out.status))
        }
    }
}
