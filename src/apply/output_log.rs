//! The whole output of the commands an image brings (its hook labels, an
//! application's CMD), kept on the operator while a terminal shows it live:
//! a host step's spinner shows the lines as they come, and when the step
//! ends one line names the file that holds them all ("h1: output of the
//! init hook (57 lines) in …/logs/c1/…-h1-hook-init.log"); a
//! failure still shows the last lines.
//!
//! A file per host and step, `$SEALRS_ROOT/logs/NAME/<UTC start of the
//! run>-<host>-<step>.log`, the directory 0700 and the file 0600 (the
//! output may show the values a user passed). Not in the saved cluster's
//! directory: a reset forgets that, and its clean hook's log must outlive it. Only these commands' output is
//! kept: the runtime's own programs stay in the installer's report, since
//! `kubeadm init` prints a join token. The logs of a cluster's last
//! [`KEEP_RUNS`] runs are kept; a run removes older ones as it writes its
//! first.

use std::collections::BTreeSet;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::progress::text::count;
use crate::progress::{Progress, Task};

/// How many runs' logs a cluster keeps.
pub const KEEP_RUNS: usize = 20;

/// Where one command's logs go: its start is in every file name.
pub(super) struct OutputLogs {
    root: PathBuf,
    stamp: String,
}

impl OutputLogs {
    /// Logs under the store `root`, stamped with the time now.
    pub fn new(root: &Path) -> OutputLogs {
        let now = time::OffsetDateTime::now_utc();
        OutputLogs {
            root: root.to_path_buf(),
            stamp: format!(
                "{:04}{:02}{:02}T{:02}{:02}{:02}.{:03}Z",
                now.year(),
                u8::from(now.month()),
                now.day(),
                now.hour(),
                now.minute(),
                now.second(),
                now.millisecond()
            ),
        }
    }

    /// A host's step, shown as [`Progress::step`] shows `label`, that keeps
    /// the output lines it is given in `cluster`'s logs.
    pub fn step<'a>(
        &'a self,
        progress: &'a dyn Progress,
        cluster: &str,
        host: &str,
        label: &str,
    ) -> Box<LoggedStep<'a>> {
        Box::new(LoggedStep {
            shown: progress.step(label),
            progress,
            logs: self,
            dir: self.root.join("logs").join(cluster),
            host: host.to_string(),
            open: Mutex::new(None),
        })
    }
}

/// A host step whose commands' output goes to log files (see the module docs).
pub(super) struct LoggedStep<'a> {
    shown: Box<dyn Task>,
    progress: &'a dyn Progress,
    logs: &'a OutputLogs,
    dir: PathBuf,
    host: String,
    open: Mutex<Option<OpenLog>>,
}

/// The log being written: whose output, where, how much so far.
struct OpenLog {
    source: String,
    what: String,
    path: PathBuf,
    file: Option<BufWriter<File>>,
    lines: usize,
}

impl LoggedStep<'_> {
    /// A line of `source`'s output (`what` names it for people): shown live,
    /// and kept in `source`'s log, opened at its first line.
    pub fn output_of(&self, source: &str, what: &str, line: &str) {
        self.shown.output(source, &format!("{}: {line}", self.host));
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        if open.as_ref().is_some_and(|o| o.source != source) {
            self.close(open.take());
        }
        let log = open.get_or_insert_with(|| self.create(source, what));
        log.lines += 1;
        if let Some(file) = log.file.as_mut() {
            if let Err(e) = writeln!(file, "{line}") {
                self.warn(&log.path, &e);
                log.file = None;
            }
        }
    }

    /// A new log file for `source`; one that cannot be made is warned about
    /// once, and its lines only shown.
    fn create(&self, source: &str, what: &str) -> OpenLog {
        let name = format!(
            "{}-{}-{}.log",
            self.logs.stamp,
            file_part(&self.host),
            file_part(source)
        );
        let path = self.dir.join(name);
        let file = self.open_file(&path);
        if let Err(e) = &file {
            self.warn(&path, e);
        }
        OpenLog {
            source: source.to_string(),
            what: what.to_string(),
            path,
            file: file.ok().map(BufWriter::new),
            lines: 0,
        }
    }

    fn open_file(&self, path: &Path) -> std::io::Result<File> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))?;
        prune(&self.dir, &self.logs.stamp)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
    }

    fn warn(&self, path: &Path, error: &std::io::Error) {
        self.progress.message(&format!(
            "warning: {}: cannot keep the output in {}: {error}",
            self.host,
            path.display()
        ));
    }

    /// Flushes the log and names it, with how many lines it holds.
    fn close(&self, log: Option<OpenLog>) {
        let Some(mut log) = log else { return };
        if let Some(mut file) = log.file.take() {
            if let Err(e) = file.flush() {
                return self.warn(&log.path, &e);
            }
            self.progress.message(&format!(
                "{}: output of {} ({}) in {}",
                self.host,
                log.what,
                count(log.lines, "line"),
                log.path.display()
            ));
        }
    }
}

impl Task for LoggedStep<'_> {
    fn advance(&self, bytes: u64) {
        self.shown.advance(bytes);
    }
    fn finish(&self, summary: &str) {
        if let Ok(mut open) = self.open.lock() {
            self.close(open.take());
        }
        self.shown.finish(summary);
    }
    fn status(&self, text: &str) {
        self.shown.status(text);
    }
    fn fail(&self) {
        self.shown.fail();
    }
    /// A line of a hook step's program (`source` is the step's id).
    fn output(&self, source: &str, line: &str) {
        let what = match source.strip_prefix("hook-") {
            Some(kind) => format!("the {kind} hook"),
            None => format!("`{source}`"),
        };
        self.output_of(source, &what, line);
    }
}

impl Drop for LoggedStep<'_> {
    fn drop(&mut self) {
        if let Ok(open) = self.open.get_mut() {
            let log = open.take();
            self.close(log);
        }
    }
}

/// `text` as a piece of a file name: what is not `[A-Za-z0-9._-]` becomes
/// `_`, cut to 40 characters.
fn file_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect()
}

/// Removes the logs of all but the newest runs in `dir`, keeping `current`'s.
fn prune(dir: &Path, current: &str) -> std::io::Result<()> {
    let names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    for name in stale(&names, current) {
        match std::fs::remove_file(dir.join(name)) {
            // Another host's step of this run removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// The log names of runs older than the [`KEEP_RUNS`]` - 1` newest runs
/// besides `current` (a name starts with its run's stamp, which sorts by
/// time); other names are not logs and stay.
fn stale<'n>(names: &'n [String], current: &str) -> Vec<&'n String> {
    let stamp = |name: &str| -> Option<String> {
        let (stamp, _) = name.split_once('-')?;
        let log = name.ends_with(".log") && stamp.len() == 20 && stamp.ends_with('Z');
        log.then(|| stamp.to_string())
    };
    let mut runs: BTreeSet<String> = names.iter().filter_map(|n| stamp(n)).collect();
    runs.remove(current);
    let keep: BTreeSet<&String> = runs.iter().rev().take(KEEP_RUNS - 1).collect();
    names
        .iter()
        .filter(|n| stamp(n).is_some_and(|s| s != current && !keep.contains(&s)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{file_part, stale, OutputLogs, KEEP_RUNS};

    fn run(i: usize) -> String {
        format!("20261205T2030{:02}.{i:03}Z", i % 60)
    }

    #[test]
    fn logs_of_the_newest_runs_and_other_files_stay_and_older_runs_go() {
        let mut names: Vec<String> = (0..25)
            .flat_map(|i| {
                [
                    format!("{}-h1-hook-init.log", run(i)),
                    format!("{}-h2-hook-init.log", run(i)),
                ]
            })
            .collect();
        names.push("notes.txt".into());
        let current = run(30);
        let gone = stale(&names, &current);
        // 19 earlier runs stay beside the current one: 6 runs of 2 files go.
        assert_eq!(gone.len(), 2 * (25 - (KEEP_RUNS - 1)));
        assert!(gone.iter().all(|n| n.as_str() < run(6).as_str()));
        assert!(!gone.iter().any(|n| n.as_str() == "notes.txt"));
    }

    #[test]
    fn a_stamp_sorts_by_time_and_names_are_safe_file_parts() {
        let stamp = OutputLogs::new(std::path::Path::new("/")).stamp;
        assert_eq!(stamp.len(), 20, "{stamp}");
        assert!(stamp.ends_with('Z') && !stamp.contains('-'), "{stamp}");
        assert_eq!(file_part("10.0.0.1:22"), "10.0.0.1_22");
        assert_eq!(file_part("docker.io/x/helm:v3"), "docker.io_x_helm_v3");
    }
}
