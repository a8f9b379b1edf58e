//! Ctrl-C during a command that changes hosts. The first SIGINT sets one
//! process-wide flag (a signal handler can only reach a static) and says on
//! stderr that the command waits; every host step checks the flag before it
//! starts (the installer calls in `remote.rs`, each host's layers in
//! `distribute.rs`, each item of `parallel.rs`), so no new host work starts,
//! the running steps finish (an installer half way through a plan would
//! leave a host no rerun can reason about), the command ends with
//! [`ApplyError::Interrupted`], and the CLI saves each host's state and says
//! what to run next. A second SIGINT exits at once with status 130, as a
//! shell does for a process killed by SIGINT.
//!
//! A SIGKILL cannot be caught: `run` saves the cluster, its hosts Pending,
//! before it changes any host (`RunOptions::state_root`), so the same
//! command run again converges and `reset` knows the hosts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::Duration;

use super::ApplyError;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SAID: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Installs the Ctrl-C handling above (once per process). Commands that do
/// not change hosts, and the questions asked before one does, keep the
/// default: Ctrl-C ends them at once.
pub fn handle_ctrl_c() {
    HANDLER.call_once(|| {
        use signal_hook::consts::SIGINT;
        use signal_hook::flag;
        // The exit is registered first: on the first SIGINT the flag is
        // still false when it runs, on the second one it is true.
        let registered = flag::register_conditional_shutdown(SIGINT, 130, &INTERRUPTED)
            .and_then(|_| flag::register(SIGINT, &INTERRUPTED));
        if let Err(e) = registered {
            eprintln!("warning: Ctrl-C cannot be handled ({e}); it ends sealrs at once");
            return;
        }
        // Printing from a signal handler is not safe: a thread says it (or
        // the first step that does not start, whichever comes first).
        std::thread::spawn(|| {
            while !interrupted() {
                std::thread::sleep(Duration::from_millis(100));
            }
            say_waiting();
        });
    });
}

/// Says once that the command waits for the running host steps.
fn say_waiting() {
    if !SAID.swap(true, Ordering::SeqCst) {
        eprintln!(
            "interrupted: no new host step starts; waiting for the running ones to finish, then saving each host's state (Ctrl-C again exits at once)"
        );
    }
}

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails with [`ApplyError::Interrupted`] once Ctrl-C was pressed: called
/// before each host step starts.
pub(super) fn check(host: &str) -> Result<(), ApplyError> {
    if interrupted() {
        say_waiting();
        return Err(ApplyError::Interrupted {
            host: host.to_string(),
        });
    }
    Ok(())
}
