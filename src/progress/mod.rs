//! One small interface for long work, so the same code drives a progress bar,
//! plain log lines, or nothing at all in tests.

mod board;
mod tally;
pub mod text;

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use board::Board;

use tally::Throttled;
pub use tally::{HostTally, Live};

/// Reports on long work. Implementations must be cheap to call per chunk.
pub trait Progress: Send + Sync {
    /// Starts a task; `total` is in bytes when known.
    fn begin(&self, label: &str, total: Option<u64>) -> Box<dyn Task>;
    /// A one-off message (a step finished, a cache hit).
    fn message(&self, text: &str);
    /// A step on a host that may take long (an install, a join): on a
    /// terminal a spinner with the time it has taken so far, which stays
    /// as a line when the task ends (past the lines the terminal holds, only
    /// failed ones do); elsewhere `label` once, as a message (a log reads it
    /// when the step starts).
    fn step(&self, label: &str) -> Box<dyn Task> {
        self.message(label);
        Box::new(SilentTask)
    }
    /// A line that changes as work goes on ("37 of 200 hosts done"): by
    /// default its changes are messages, at most one a second, and its last
    /// state always, so that a CI log stays readable.
    fn live(&self) -> Box<dyn Live + '_> {
        Box::new(Throttled::new(self))
    }
}

/// One running task of a [`Progress`].
pub trait Task: Send {
    fn advance(&self, bytes: u64);
    fn finish(&self, summary: &str);
    /// Where the work is now ("[7/15] start k3s.service"), shown beside the
    /// label while it runs where the display is redrawn; logs skip it.
    fn status(&self, _text: &str) {}
    /// A line `source` (a hook step, an image's command) wrote, as it comes
    /// ("h1: Release \"app\" installed"): shown above the spinner where the
    /// display is redrawn; logs skip it (the whole output is kept in a file).
    fn output(&self, _source: &str, _line: &str) {}
    /// The work failed: where the display is redrawn its line says so
    /// (logs get the error itself from the command).
    fn fail(&self) {}
}

/// Reports nothing: for tests and `--quiet`.
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _label: &str, _total: Option<u64>) -> Box<dyn Task> {
        Box::new(SilentTask)
    }
    fn message(&self, _text: &str) {}
}

struct SilentTask;
impl Task for SilentTask {
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, _summary: &str) {}
}

/// Records the messages, for tests to read.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Recorder(pub std::sync::Mutex<Vec<String>>);

#[cfg(test)]
impl Progress for Recorder {
    fn begin(&self, _label: &str, _total: Option<u64>) -> Box<dyn Task> {
        Box::new(SilentTask)
    }
    fn message(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
}

/// Plain lines on stderr: what a log file or CI should see.
pub struct Lines;

impl Progress for Lines {
    fn begin(&self, _label: &str, _total: Option<u64>) -> Box<dyn Task> {
        Box::new(LineTask)
    }
    fn message(&self, text: &str) {
        eprintln!("{text}");
    }
}

struct LineTask;
impl Task for LineTask {
    fn advance(&self, _bytes: u64) {}
    fn finish(&self, summary: &str) {
        if !summary.is_empty() {
            eprintln!("{summary}");
        }
    }
}

/// Progress bars on a terminal.
pub struct Bars {
    multi: indicatif::MultiProgress,
    lock: Mutex<()>,
    board: Arc<Board>,
}

impl Bars {
    pub fn new() -> Self {
        let multi = indicatif::MultiProgress::new();
        Bars {
            board: Board::new(multi.clone()),
            multi,
            lock: Mutex::new(()),
        }
    }
}

impl Default for Bars {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bars {
    fn begin(&self, label: &str, total: Option<u64>) -> Box<dyn Task> {
        let bar = match total {
            Some(n) => indicatif::ProgressBar::new(n).with_style(
                // Decimal units, as every message (`text::size`): kB and MB, not KiB.
                indicatif::ProgressStyle::with_template(
                    "{msg:40!} [{bar:30}] {decimal_bytes}/{decimal_total_bytes} {decimal_bytes_per_sec}",
                )
                .expect("static template")
                .progress_chars("=> "),
            ),
            None => indicatif::ProgressBar::new_spinner().with_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .expect("static template"),
            ),
        };
        let bar = bar.with_message(label.to_string());
        Box::new(BarTask {
            line: self.board.line(&bar, false),
            bar,
        })
    }
    fn message(&self, text: &str) {
        let _guard = self.lock.lock();
        let _ = self.multi.println(text);
    }
    fn step(&self, label: &str) -> Box<dyn Task> {
        self.board.step(label)
    }
    /// Redrawn in place, and left on screen when done.
    fn live(&self) -> Box<dyn Live + '_> {
        let bar = indicatif::ProgressBar::new_spinner().with_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("static template"),
        );
        self.board.counting();
        Box::new(LiveBar(self.multi.add(bar), Arc::clone(&self.board)))
    }
}

/// A count line; the host lines of its phase are one group on the [`Board`].
struct LiveBar(indicatif::ProgressBar, Arc<Board>);

impl Live for LiveBar {
    fn set(&self, text: &str, last: bool) {
        if last {
            self.0.finish_with_message(text.to_string());
        } else {
            self.show(text);
        }
    }
    /// Turns from the first text on, so that a long wait between changes
    /// does not look stuck.
    fn show(&self, text: &str) {
        let first = self.0.message().is_empty();
        self.0.set_message(text.to_string());
        if first {
            self.0.enable_steady_tick(board::TICK);
        }
    }
}

/// A line that never said anything (a phase of no hosts) leaves no blank
/// line behind.
impl Drop for LiveBar {
    fn drop(&mut self) {
        if self.0.message().is_empty() {
            self.0.finish_and_clear();
        }
        self.1.counted();
    }
}

struct BarTask {
    bar: indicatif::ProgressBar,
    line: board::Line,
}

impl Task for BarTask {
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn finish(&self, summary: &str) {
        if summary.is_empty() {
            self.bar.finish_and_clear();
        } else {
            self.bar.finish_with_message(summary.to_string());
        }
        self.line.done();
    }
}

/// Bars when stderr is a terminal, lines otherwise, nothing when quiet.
pub fn for_terminal(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(Silent)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bars::new())
    } else {
        Box::new(Lines)
    }
}
