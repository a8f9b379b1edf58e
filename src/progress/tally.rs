//! "37 of 200 hosts done, 2 failed": a count of hosts as they finish, on a
//! line that a terminal redraws and a log gets at most once a second.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Progress;

/// A line whose text changes; `last` is its final state.
pub trait Live: Send + Sync {
    fn set(&self, text: &str, last: bool);
    /// The state before the first change, where the display is redrawn
    /// (a log reads the first change instead).
    fn show(&self, _text: &str) {}
}

/// How often a log gets a changed line.
const EVERY: Duration = Duration::from_secs(1);

/// Changes as messages of a [`Progress`], throttled to [`EVERY`].
pub(super) struct Throttled<'a, P: Progress + ?Sized> {
    progress: &'a P,
    printed: Mutex<Option<Instant>>,
}

impl<'a, P: Progress + ?Sized> Throttled<'a, P> {
    pub(super) fn new(progress: &'a P) -> Self {
        Throttled {
            progress,
            printed: Mutex::new(None),
        }
    }
}

impl<P: Progress + ?Sized> Live for Throttled<'_, P> {
    fn set(&self, text: &str, last: bool) {
        let mut printed = self.printed.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if due(*printed, now, last) {
            *printed = Some(now);
            self.progress.message(text);
        }
    }
}

/// Whether a change at `now` is printed, the last one printed at `printed`:
/// the first and the last always, the others once [`EVERY`] went by.
fn due(printed: Option<Instant>, now: Instant, last: bool) -> bool {
    last || printed.is_none_or(|t| now.duration_since(t) >= EVERY)
}

/// Counts hosts of one phase as they finish, and says so on a live line.
pub struct HostTally<'a> {
    live: Box<dyn Live + 'a>,
    label: String,
    total: usize,
    /// Done (failed or not), and failed.
    counts: Mutex<(usize, usize)>,
}

impl<'a> HostTally<'a> {
    /// A tally of `total` hosts for `label` ("joining nodes").
    pub fn new(progress: &'a dyn Progress, label: &str, total: usize) -> Self {
        let live = progress.live();
        if total > 0 {
            live.show(&line(label, 0, 0, total));
        }
        HostTally {
            live,
            label: label.to_string(),
            total,
            counts: Mutex::new((0, 0)),
        }
    }

    /// One more host finished, `ok` or failed.
    pub fn finished(&self, ok: bool) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.0 += 1;
        counts.1 += usize::from(!ok);
        let (done, failed) = *counts;
        let text = line(&self.label, done, failed, self.total);
        self.live.set(&text, done >= self.total);
    }
}

/// "joining nodes: 37 of 200 hosts done, 2 failed".
fn line(label: &str, done: usize, failed: usize, total: usize) -> String {
    let mut text = format!("{label}: {done} of {total} hosts done");
    if failed > 0 {
        text.push_str(&format!(", {failed} failed"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_counts_hosts_done_and_says_failures_only_when_there_are_some() {
        assert_eq!(
            line("joining nodes", 37, 2, 200),
            "joining nodes: 37 of 200 hosts done, 2 failed"
        );
        assert_eq!(line("checking", 1, 0, 4), "checking: 1 of 4 hosts done");
    }

    #[test]
    fn a_log_gets_the_first_change_then_one_a_second_and_always_the_last() {
        let t = Instant::now();
        assert!(due(None, t, false));
        assert!(!due(Some(t), t + Duration::from_millis(300), false));
        assert!(due(Some(t), t + Duration::from_millis(300), true));
        assert!(due(Some(t), t + EVERY, false));
    }

    #[test]
    fn two_hundred_hosts_finishing_at_once_print_two_lines_not_two_hundred() {
        let log = crate::progress::Recorder::default();
        let tally = HostTally::new(&log, "joining nodes", 200);
        for i in 0..200 {
            tally.finished(i % 100 != 0);
        }
        assert_eq!(
            *log.0.lock().unwrap(),
            [
                "joining nodes: 1 of 200 hosts done, 1 failed",
                "joining nodes: 200 of 200 hosts done, 2 failed"
            ]
        );
    }
}
