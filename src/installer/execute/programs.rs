//! Running a plan's programs: never through a shell, with a minimal
//! environment, the host root's programs first.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

use super::{checked, Outcome, StepRun};
use crate::installer::{InstallerError, DEFAULT_PATH};
use crate::plan::Capture;

impl StepRun<'_> {
    /// Runs a program; its output goes to the report, its stdout to a capture.
    pub(super) fn run(
        &mut self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&str>,
        capture: Option<&Capture>,
        allow_failure: bool,
    ) -> Result<Outcome, InstallerError> {
        if self.ctx.dry_run {
            return Ok(Outcome::changed().with_note("dry run: not run"));
        }
        let mut argv = argv.to_vec();
        argv[0] = self.program(&argv[0]);
        let cwd = cwd.map(|c| checked(self.ctx, c)).transpose()?;
        if let Some(dir) = cwd.as_ref().filter(|d| !d.is_dir()) {
            return Err(InstallerError::NoWorkDir { path: dir.clone() });
        }
        let result = match (self.shown(), capture) {
            (Some(show), None) => self.spawn_shown(&argv, env, cwd.as_deref(), show),
            _ => self.spawn(&argv, env, cwd.as_deref()),
        };
        let out = match result {
            Ok(out) => out,
            Err(err) if allow_failure => {
                return Ok(
                    Outcome::unchanged().with_note(format!("{err}; a failure is allowed here"))
                )
            }
            Err(err) => return Err(err),
        };
        let secret = capture.is_some_and(|c| c.sensitive);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !secret {
            self.keep(&out.stdout);
        }
        self.keep(&out.stderr);
        self.exit_code = out.status.code();
        match out.status.code() {
            Some(0) => {
                if let Some(c) = capture {
                    self.capture = Some((c.key.clone(), stdout.trim().to_string()));
                }
                Ok(Outcome::changed())
            }
            Some(code) if allow_failure => Ok(Outcome::unchanged().with_note(format!(
                "exited with code {code}; a failure is allowed here"
            ))),
            None if allow_failure => {
                Ok(Outcome::unchanged().with_note("killed by a signal; a failure is allowed here"))
            }
            _ => Err(failure(argv[0].clone(), out.status)),
        }
    }

    /// An absolute program path is looked up under the host root first (the
    /// host's own program), then as given.
    pub(super) fn program(&self, argv0: &str) -> String {
        if argv0.starts_with('/') && !self.ctx.is_real_root() {
            let under = self.ctx.host_path(argv0);
            if under.exists() {
                return under.to_string_lossy().into_owned();
            }
        }
        argv0.to_string()
    }

    /// Runs an argv with a minimal env plus `env`: no shell, nothing inherited.
    pub(super) fn spawn(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<std::process::Output, InstallerError> {
        self.command(argv, env, cwd)
            .output()
            .map_err(|source| InstallerError::Spawn {
                program: argv[0].clone(),
                source,
            })
    }

    /// Where this step's output goes as it comes: a hook's (the scripts an
    /// image's author wrote, `runtime::hooks`' `hook-*` steps), when the
    /// installer was asked to show output. Other programs keep theirs in the
    /// report only (`kubeadm init` prints a join token).
    fn shown(&self) -> Option<fn(&str, &str)> {
        self.ctx
            .on_output
            .filter(|_| self.step.id.starts_with("hook-"))
    }

    /// [`Self::spawn`], passing each line of its output to `show` as it
    /// comes: stdout and stderr share one pipe (as `2>&1`), so the lines keep
    /// the order they were written in; the returned stdout holds them all.
    fn spawn_shown(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
        show: fn(&str, &str),
    ) -> Result<std::process::Output, InstallerError> {
        let spawn_error = |source| InstallerError::Spawn {
            program: argv[0].clone(),
            source,
        };
        let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
        let mut cmd = self.command(argv, env, cwd);
        cmd.stdout(writer.try_clone().map_err(spawn_error)?)
            .stderr(writer);
        let mut child = cmd.spawn().map_err(spawn_error)?;
        // This end's copies of the writer: the reader ends when the program's do.
        drop(cmd);
        let mut lines = Vec::new();
        for line in BufReader::new(reader).split(b'\n').map_while(Result::ok) {
            let line = String::from_utf8_lossy(&line).into_owned();
            show(&self.step.id, &line);
            lines.push(line);
        }
        let status = child.wait().map_err(spawn_error)?;
        Ok(std::process::Output {
            status,
            stdout: lines.join("\n").into_bytes(),
            stderr: Vec::new(),
        })
    }

    /// The command for an argv: a minimal env plus `env`, no stdin.
    fn command(&self, argv: &[String], env: &[(String, String)], cwd: Option<&Path>) -> Command {
        let (program, args) = argv
            .split_first()
            .expect("plans are validated: argv is not empty");
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .env("PATH", self.path_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// `PATH` for programs: the host root's directories first when it is not `/`.
    fn path_env(&self) -> String {
        if self.ctx.is_real_root() {
            return DEFAULT_PATH.to_string();
        }
        let under: Vec<String> = DEFAULT_PATH
            .split(':')
            .map(|d| self.ctx.host_path(d).to_string_lossy().into_owned())
            .collect();
        format!("{}:{DEFAULT_PATH}", under.join(":"))
    }

    /// Keeps a program's output lines for the report.
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        self.output
            .extend(String::from_utf8_lossy(bytes).lines().map(str::to_string));
    }
}

/// The error for a program that did not exit 0: its code, or the signal
/// that killed it.
pub(super) fn failure(program: String, status: ExitStatus) -> InstallerError {
    match status.code() {
        Some(code) => InstallerError::Exit { program, code },
        None => InstallerError::Signal { program },
    }
}
