//! Waiting for a file or a port, polled until a deadline; a dry run only
//! looks once.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{checked, Outcome, StepRun};
use crate::installer::InstallerError;

/// How often a wait looks again: a file or a port check is cheap, and a
/// service that is ready should not cost the run a fifth of a second.
const POLL: Duration = Duration::from_millis(50);

impl StepRun<'_> {
    pub(super) fn wait_file(
        &self,
        path: &str,
        timeout_secs: u64,
    ) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, path)?;
        if self.ctx.dry_run {
            return Ok(would_wait(dest.symlink_metadata().is_ok()));
        }
        wait(timeout_secs, path, || dest.symlink_metadata().is_ok())?;
        Ok(Outcome::unchanged())
    }

    pub(super) fn wait_port(
        &self,
        host: &str,
        port: u16,
        timeout_secs: u64,
    ) -> Result<Outcome, InstallerError> {
        let listening = || {
            (host, port).to_socket_addrs().is_ok_and(|mut a| {
                a.any(|addr| TcpStream::connect_timeout(&addr, POLL * 5).is_ok())
            })
        };
        if self.ctx.dry_run {
            return Ok(would_wait(listening()));
        }
        wait(
            timeout_secs,
            &format!("a connection to {host}:{port}"),
            listening,
        )?;
        Ok(Outcome::unchanged())
    }
}

/// A dry run's wait: nothing to do when what it waits for is there now.
fn would_wait(ready: bool) -> Outcome {
    if ready {
        Outcome::unchanged()
    } else {
        Outcome::changed().with_note("dry run: would wait")
    }
}

fn wait(
    timeout_secs: u64,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> Result<(), InstallerError> {
    let deadline = Instant::now() + Duration::from_secs(timeout_secs);
    loop {
        if ready() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(InstallerError::Timeout {
                what: what.to_string(),
                secs: timeout_secs,
            });
        }
        std::thread::sleep(POLL);
    }
}
