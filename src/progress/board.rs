//! The host lines of a terminal: each running step on a line of its own
//! while they fit; past that (a fleet), only the failed hosts and those
//! running the longest, so that the screen never holds 200 spinners.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{HumanDuration, MultiProgress, ProgressBar, ProgressStyle};

use super::Task;

/// How a step ended, or that it did not yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Running,
    Done,
    Failed,
}

/// Lines left to the count line, the messages above and the prompt.
const MARGIN: usize = 6;
/// Host lines when the terminal's size is unknown.
const FALLBACK: usize = 10;
/// Host lines at least, on however small a terminal.
const LEAST: usize = 3;

/// How many host lines the terminal holds.
fn limit() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .filter(|size| size.ws_row > 0)
        .map_or(FALLBACK, |size| {
            usize::from(size.ws_row).saturating_sub(MARGIN).max(LEAST)
        })
}

/// Which of the steps (in the order they began) get a line, `limit` at
/// most: all when they fit; otherwise the first failed ones (half of the
/// lines at most), then the running ones that began first, none of those
/// done (the count line counts them).
fn shown(outcomes: &[Outcome], limit: usize) -> Vec<bool> {
    if outcomes.len() <= limit {
        return vec![true; outcomes.len()];
    }
    let mut failed_left = limit.div_ceil(2);
    let mut show: Vec<bool> = outcomes
        .iter()
        .map(|o| {
            let take = *o == Outcome::Failed && failed_left > 0;
            failed_left -= usize::from(take);
            take
        })
        .collect();
    let mut left = limit - show.iter().filter(|s| **s).count();
    for (show, outcome) in show.iter_mut().zip(outcomes) {
        if *outcome == Outcome::Running && left > 0 {
            *show = true;
            left -= 1;
        }
    }
    show
}

/// One step's line, on the terminal or not.
struct Entry {
    id: u64,
    bar: ProgressBar,
    ticking: bool,
    outcome: Outcome,
    on_screen: bool,
}

/// The lines of one group, and which are on screen. A group ends when none
/// of its lines runs and no count line is up: the hosts of one phase are
/// one group even when they run one by one (`--max-parallel 1`).
#[derive(Default)]
struct Steps {
    entries: Vec<Entry>,
    next: u64,
    /// Count lines up ([`super::HostTally`]).
    counting: usize,
}

/// The lines of a [`super::Bars`]' steps and byte counts (one a host, in
/// phases that work on hosts in parallel).
pub(super) struct Board {
    multi: MultiProgress,
    steps: Mutex<Steps>,
}

/// How often a running step's spinner turns.
pub(super) const TICK: Duration = Duration::from_millis(120);

impl Board {
    pub(super) fn new(multi: MultiProgress) -> Arc<Self> {
        Arc::new(Board {
            multi,
            steps: Mutex::new(Steps::default()),
        })
    }

    /// A running step labelled `label`: a spinner with the time it took.
    pub(super) fn step(self: &Arc<Self>, label: &str) -> Box<dyn Task> {
        let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .expect("static template")
            .tick_chars("⠁⠂⠄⡀⢀⠠⠐⠈✓");
        let bar = ProgressBar::new_spinner()
            .with_style(style)
            .with_message(label.to_string());
        Box::new(StepTask {
            line: self.line(&bar, true),
            bar,
            label: label.to_string(),
        })
    }

    /// Gives `bar` a line while [`shown`] picks it, turning when `ticking`;
    /// the [`Line`] says when it ended.
    pub(super) fn line(self: &Arc<Self>, bar: &ProgressBar, ticking: bool) -> Line {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        let mut steps = self.lock();
        let id = steps.next;
        steps.next += 1;
        steps.entries.push(Entry {
            id,
            bar: bar.clone(),
            ticking,
            outcome: Outcome::Running,
            on_screen: false,
        });
        self.arrange(&mut steps);
        Line {
            board: Arc::clone(self),
            id,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Steps> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Step `id` ended with `outcome`.
    fn ended(&self, id: u64, outcome: Outcome) {
        let mut steps = self.lock();
        match steps.entries.iter_mut().find(|e| e.id == id) {
            Some(entry) if entry.outcome == Outcome::Running => entry.outcome = outcome,
            _ => return,
        }
        self.arrange(&mut steps);
        end_group(&mut steps);
    }

    /// A count line went up.
    pub(super) fn counting(&self) {
        self.lock().counting += 1;
    }

    /// A count line went down.
    pub(super) fn counted(&self) {
        let mut steps = self.lock();
        steps.counting = steps.counting.saturating_sub(1);
        end_group(&mut steps);
    }

    /// Puts on screen the steps [`shown`] picks, and takes off the others.
    fn arrange(&self, steps: &mut Steps) {
        let outcomes: Vec<Outcome> = steps.entries.iter().map(|e| e.outcome).collect();
        for (entry, show) in steps.entries.iter_mut().zip(shown(&outcomes, limit())) {
            if show && !entry.on_screen {
                self.multi.add(entry.bar.clone());
                if entry.outcome == Outcome::Running && entry.ticking {
                    entry.bar.enable_steady_tick(TICK);
                } else {
                    // One that does not turn draws only when it changes.
                    entry.bar.tick();
                }
            } else if !show && entry.on_screen {
                entry.bar.disable_steady_tick();
                self.multi.remove(&entry.bar);
            }
            entry.on_screen = show;
        }
    }
}

/// Ends the group when it is over: what is on screen stays there, and the
/// next lines are counted anew.
fn end_group(steps: &mut Steps) {
    if steps.counting == 0 && steps.entries.iter().all(|e| e.outcome != Outcome::Running) {
        steps.entries.clear();
    }
}

/// A line of the [`Board`]: it is told how the work ended, done when
/// dropped untold.
pub(super) struct Line {
    board: Arc<Board>,
    id: u64,
}

impl Line {
    pub(super) fn done(&self) {
        self.board.ended(self.id, Outcome::Done);
    }
    pub(super) fn failed(&self) {
        self.board.ended(self.id, Outcome::Failed);
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        self.done();
    }
}

/// A [`super::Progress::step`] on a terminal: ends as the line `✓ LABEL
/// 12s` when finished or dropped, as `✗ LABEL failed after 12s` when
/// [`Task::fail`]ed.
struct StepTask {
    line: Line,
    bar: ProgressBar,
    label: String,
}

impl Task for StepTask {
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, summary: &str) {
        if self.bar.is_finished() {
            return;
        }
        let summary = if summary.is_empty() {
            &self.label
        } else {
            summary
        };
        self.bar.disable_steady_tick();
        self.bar.set_message(summary.to_string());
        self.bar.finish();
        self.line.done();
    }
    fn status(&self, text: &str) {
        self.bar.set_message(format!("{} {text}", self.label));
    }
    /// Printed above the lines, whether or not this host's line is shown.
    fn output(&self, _source: &str, line: &str) {
        self.bar.println(line);
    }
    fn fail(&self) {
        if self.bar.is_finished() {
            return;
        }
        self.bar.disable_steady_tick();
        self.bar
            .set_style(ProgressStyle::with_template("✗ {msg}").expect("static template"));
        self.bar.set_message(format!(
            "{} failed after {:#}",
            self.label,
            HumanDuration(self.bar.elapsed())
        ));
        self.bar.finish();
        self.line.failed();
    }
}

impl Drop for StepTask {
    fn drop(&mut self) {
        self.finish("");
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome::{Done, Failed, Running};
    use super::*;

    #[test]
    fn steps_that_fit_all_keep_their_line_done_or_not() {
        assert_eq!(
            shown(&[Done, Failed, Running, Running], 4),
            [true, true, true, true]
        );
    }

    #[test]
    fn past_the_limit_failed_ones_then_the_longest_running_get_the_lines_and_done_ones_none() {
        let mut outcomes = vec![Done, Running, Failed, Running, Done, Running, Running];
        outcomes.extend([Running; 193]);
        let show = shown(&outcomes, 4);
        let on: Vec<usize> = (0..show.len()).filter(|i| show[*i]).collect();
        assert_eq!(on, [1, 2, 3, 5]);
    }

    #[test]
    fn many_failures_take_half_of_the_lines_at_most_so_running_hosts_stay_in_sight() {
        let mut outcomes = vec![Failed; 150];
        outcomes.extend([Running; 50]);
        let show = shown(&outcomes, 10);
        assert_eq!(show.iter().filter(|s| **s).count(), 10);
        assert_eq!(show[..150].iter().filter(|s| **s).count(), 5);
        assert!(show[150..155].iter().all(|s| *s));
        // With nothing running still half: the command's error names them all.
        let show = shown(&[Failed; 200], 10);
        assert_eq!(show.iter().filter(|s| **s).count(), 5);
    }
}
