//! Executing a plan: each step's check, then its action, recorded in a report.
//!
//! Checks come in two sorts. Those about the step's own target
//! (`FileMatches`, `DirExists`, `LinkMatches`, `Absent`) are answered by the
//! action itself, which compares before it writes; the others (`Creates`,
//! `IfExists`, `FileContains`, the unit states, `IfChanged`, `IfOutput`) gate
//! the action before it starts; their queries run in dry runs too. A step whose check says there is nothing to do is
//! `skipped`; a `ReadOnly` step always runs and never counts as a change.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::place::{self, write_atomic as write_file_atomic};
use super::systemd::{Systemd, PRIVATE_SOCKET as SYSTEMD_SOCKET};
use super::unpack::remove_all;
use super::{
    ExecContext, InstallerError, Report, StepReport, StepStatus, DEFAULT_PATH, OUTPUT_TAIL,
};
use crate::plan::{merge_yaml, render_template, Action, Check, FileContent, Plan, Step};

/// How often a wait looks again: a file or a port check is cheap, and a
/// service that is ready should not cost the run a fifth of a second.
const POLL: Duration = Duration::from_millis(50);

/// Executes `plan` on the host `ctx` describes; see the module docs.
///
/// A step that fails stops the plan: the report names it, with its exit code
/// and the last lines of its output, and `Ok` is still returned (the report
/// is the answer). `Err` means the plan could not be started at all.
pub fn execute(plan: &Plan, ctx: &ExecContext) -> Result<Report, InstallerError> {
    plan.validate().map_err(InstallerError::InvalidPlan)?;
    let mut report = Report {
        runtime: plan.runtime.clone(),
        action: plan.action.clone(),
        host: plan.host.clone(),
        dry_run: ctx.dry_run,
        steps: Vec::new(),
        captures: Default::default(),
        sensitive: plan
            .captures()
            .into_iter()
            .filter(|c| c.sensitive)
            .map(|c| c.key.clone())
            .collect(),
        changed: false,
        failed: None,
    };
    let mut changed_steps: HashSet<String> = HashSet::new();
    let mut systemd = SystemdLink::Untried;
    for step in &plan.steps {
        let mut run = StepRun {
            ctx,
            plan,
            step,
            changed_steps: &changed_steps,
            systemd: &mut systemd,
            exit_code: None,
            output: Vec::new(),
            capture: None,
        };
        let result = run.go();
        let mut step_report = StepReport {
            id: step.id.clone(),
            title: step.title.clone(),
            status: StepStatus::Failed,
            exit_code: run.exit_code,
            output: tail(run.output),
            note: None,
        };
        match result {
            Ok(outcome) => {
                step_report.status = outcome.status;
                step_report.note = outcome.note;
                if let Some((key, value)) = run.capture {
                    report.captures.insert(key, value);
                }
            }
            Err(err) => {
                step_report.output.push(format!("error: {err}"));
                step_report.output = tail(std::mem::take(&mut step_report.output));
                if let InstallerError::Exit { code, .. } = err {
                    step_report.exit_code = Some(code);
                }
            }
        }
        if step_report.status == StepStatus::Changed {
            report.changed = true;
            changed_steps.insert(step.id.clone());
        }
        let failed = step_report.status == StepStatus::Failed;
        if let Some(log) = ctx.on_step {
            log(&step_report);
        }
        report.steps.push(step_report);
        if failed {
            report.failed = Some(step.id.clone());
            break;
        }
    }
    Ok(report)
}

/// systemd's socket, asked for unit states on the real host until it fails;
/// systemctl answers in its place then, and wherever the host is not `/`.
enum SystemdLink {
    Untried,
    Open(Systemd),
    Failed,
}

/// Says why systemctl answers from now on: the socket should have.
fn fallback(err: &io::Error) -> SystemdLink {
    eprintln!("warning: systemd's socket {SYSTEMD_SOCKET}: {err}; asking systemctl instead");
    SystemdLink::Failed
}

fn tail(mut lines: Vec<String>) -> Vec<String> {
    if lines.len() > OUTPUT_TAIL {
        lines.drain(..lines.len() - OUTPUT_TAIL);
    }
    lines
}

struct Outcome {
    status: StepStatus,
    note: Option<String>,
}

impl Outcome {
    fn changed() -> Outcome {
        Outcome {
            status: StepStatus::Changed,
            note: None,
        }
    }
    fn unchanged() -> Outcome {
        Outcome {
            status: StepStatus::Unchanged,
            note: None,
        }
    }
    fn skipped(note: impl Into<String>) -> Outcome {
        Outcome {
            status: StepStatus::Skipped,
            note: Some(note.into()),
        }
    }
    fn with_note(mut self, note: impl Into<String>) -> Outcome {
        self.note = Some(note.into());
        self
    }
}

struct StepRun<'a> {
    ctx: &'a ExecContext<'a>,
    plan: &'a Plan,
    step: &'a Step,
    changed_steps: &'a HashSet<String>,
    systemd: &'a mut SystemdLink,
    exit_code: Option<i32>,
    output: Vec<String>,
    capture: Option<(String, String)>,
}

/// A plan path resolved under the host root; `..` is refused everywhere.
fn checked(ctx: &ExecContext, path: &str) -> Result<PathBuf, InstallerError> {
    if path.split('/').any(|c| c == "..") {
        return Err(InstallerError::UnsafePath {
            path: path.to_string(),
            reason: "plan paths must not contain `..`".into(),
        });
    }
    Ok(ctx.host_path(path))
}

impl StepRun<'_> {
    fn go(&mut self) -> Result<Outcome, InstallerError> {
        if let Some(skip) = self.gate()? {
            return Ok(Outcome::skipped(skip));
        }
        let outcome = self.act()?;
        // In a dry run, `changed` means "has work to do": a program that would
        // run, or a wait that would wait, counts even when it only observes.
        if self.step.check == Check::ReadOnly
            && outcome.status == StepStatus::Changed
            && !self.ctx.dry_run
        {
            return Ok(Outcome {
                status: StepStatus::Unchanged,
                note: outcome.note,
            });
        }
        Ok(outcome)
    }

    /// The checks that decide before the action starts; `Some(reason)` to skip.
    fn gate(&mut self) -> Result<Option<String>, InstallerError> {
        let ctx = self.ctx;
        Ok(match &self.step.check {
            Check::Creates { path } => checked(ctx, path)?
                .symlink_metadata()
                .is_ok()
                .then(|| format!("{path} exists")),
            Check::IfExists { path } => checked(ctx, path)?
                .symlink_metadata()
                .is_err()
                .then(|| format!("{path} does not exist")),
            Check::FileContains { path, text } => fs::read(checked(ctx, path)?)
                .ok()
                .filter(|bytes| contains(bytes, text.as_bytes()))
                .map(|_| format!("{path} already contains the text")),
            Check::UnitEnabled { unit } => self
                .unit_query("is-enabled", unit)?
                .then(|| format!("{unit} is enabled")),
            Check::UnitDisabled { unit } => {
                (!self.unit_query("is-enabled", unit)?).then(|| format!("{unit} is not enabled"))
            }
            Check::UnitActive { unit } => self
                .unit_query("is-active", unit)?
                .then(|| format!("{unit} is active")),
            Check::UnitInactive { unit } => {
                (!self.unit_query("is-active", unit)?).then(|| format!("{unit} is not active"))
            }
            Check::IfChanged { steps, unit_active } => {
                if !steps.iter().any(|s| self.changed_steps.contains(s)) {
                    Some(format!("none of {} changed", steps.join(", ")))
                } else if let Some(unit) = unit_active {
                    (!self.unit_query("is-active", unit)?)
                        .then(|| format!("{unit} is not running yet"))
                } else {
                    None
                }
            }
            Check::IfOutput { argv } => {
                let mut argv = argv.clone();
                argv[0] = self.program(&argv[0]);
                let out = self.spawn(&argv, &[], None)?;
                if !out.status.success() {
                    self.output.extend(
                        String::from_utf8_lossy(&out.stderr)
                            .lines()
                            .map(str::to_string),
                    );
                    return Err(match out.status.code() {
                        Some(code) => InstallerError::Exit {
                            program: argv[0].clone(),
                            code,
                        },
                        None => InstallerError::Signal {
                            program: argv[0].clone(),
                        },
                    });
                }
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .is_empty()
                    .then(|| format!("{} printed nothing", argv.join(" ")))
            }
            Check::FileMatches
            | Check::DirExists
            | Check::LinkMatches
            | Check::Absent
            | Check::ReadOnly => None,
        })
    }

    /// `systemctl <verb> --quiet <unit>` succeeded (or would have: systemd is
    /// asked directly where it can be). Read-only, so it runs in dry runs too.
    fn unit_query(&mut self, verb: &str, unit: &str) -> Result<bool, InstallerError> {
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
    fn with_systemd<T>(&mut self, ask: impl FnOnce(&mut Systemd) -> io::Result<T>) -> Option<T> {
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

    fn act(&mut self) -> Result<Outcome, InstallerError> {
        let ctx = self.ctx;
        let dry = ctx.dry_run;
        match &self.step.action {
            Action::PlaceRootfs { role } => {
                let o = place::place_rootfs(ctx, *role, self.plan)?;
                Ok(if o.changed {
                    Outcome::changed().with_note(o.note)
                } else {
                    Outcome::skipped(o.note)
                })
            }
            Action::RemoveRootfs { role } => Ok(match place::remove_rootfs(ctx, *role)? {
                Some(o) => Outcome::changed().with_note(o.note),
                None => Outcome::skipped("nothing was placed"),
            }),
            Action::WriteFile {
                path,
                content,
                mode,
                only_if_changed,
                ..
            } => {
                let bytes = self.render(path, content)?;
                let dest = checked(ctx, path)?;
                if *only_if_changed && file_matches(&dest, &bytes, *mode) {
                    return Ok(Outcome::skipped("content and mode match"));
                }
                if !dry {
                    write_file_atomic(&dest, &bytes, *mode)?;
                }
                Ok(Outcome::changed())
            }
            Action::EnsureDir { path, mode } => {
                let dest = checked(ctx, path)?;
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.is_dir() && m.permissions().mode() & 0o7777 == *mode => {
                        return Ok(Outcome::skipped("the directory exists"))
                    }
                    Ok(m) if !m.is_dir() => {
                        return Err(InstallerError::UnsafePath {
                            path: path.clone(),
                            reason: "something other than a directory is there".into(),
                        })
                    }
                    _ => {}
                }
                if !dry {
                    fs::create_dir_all(&dest).map_err(InstallerError::io("creating", &dest))?;
                    fs::set_permissions(&dest, fs::Permissions::from_mode(*mode))
                        .map_err(InstallerError::io("setting the mode of", &dest))?;
                }
                Ok(Outcome::changed())
            }
            Action::Run {
                argv,
                env,
                cwd,
                capture,
                allow_failure,
                ..
            } => {
                if dry {
                    return Ok(Outcome::changed().with_note("dry run: not run"));
                }
                let mut argv = argv.clone();
                argv[0] = self.program(&argv[0]);
                let cwd = cwd.as_deref().map(|c| checked(ctx, c)).transpose()?;
                if let Some(dir) = cwd.as_ref().filter(|d| !d.is_dir()) {
                    return Err(InstallerError::NoWorkDir { path: dir.clone() });
                }
                let result = self.spawn(&argv, env, cwd.as_deref());
                let out = match result {
                    Ok(out) => out,
                    Err(err) if *allow_failure => {
                        return Ok(Outcome::unchanged()
                            .with_note(format!("{err}; a failure is allowed here")))
                    }
                    Err(err) => return Err(err),
                };
                let secret = capture.as_ref().is_some_and(|c| c.sensitive);
                let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
                if !secret {
                    self.output.extend(stdout.lines().map(str::to_string));
                }
                self.output.extend(
                    String::from_utf8_lossy(&out.stderr)
                        .lines()
                        .map(str::to_string),
                );
                self.exit_code = out.status.code();
                let program = argv[0].clone();
                match out.status.code() {
                    Some(0) => {
                        if let Some(c) = capture {
                            self.capture = Some((c.key.clone(), stdout.trim().to_string()));
                        }
                        Ok(Outcome::changed())
                    }
                    Some(code) if *allow_failure => Ok(Outcome::unchanged().with_note(format!(
                        "exited with code {code}; a failure is allowed here"
                    ))),
                    Some(code) => Err(InstallerError::Exit { program, code }),
                    None if *allow_failure => Ok(Outcome::unchanged()
                        .with_note("killed by a signal; a failure is allowed here")),
                    None => Err(InstallerError::Signal { program }),
                }
            }
            Action::Symlink { target, link } => {
                let dest = checked(ctx, link)?;
                match fs::symlink_metadata(&dest) {
                    Ok(m) if m.file_type().is_symlink() => {
                        if fs::read_link(&dest).is_ok_and(|t| t == Path::new(target)) {
                            return Ok(Outcome::skipped("the link points there"));
                        }
                    }
                    Ok(_) => {
                        return Ok(Outcome::unchanged()
                            .with_note(format!("{link} is not a symlink; left alone")))
                    }
                    Err(_) => {}
                }
                if !dry {
                    if let Some(dir) = dest.parent() {
                        fs::create_dir_all(dir).map_err(InstallerError::io("creating", dir))?;
                    }
                    let tmp = dest.with_file_name(format!(
                        ".{}.sealrs-link-{}",
                        dest.file_name().unwrap_or_default().to_string_lossy(),
                        std::process::id()
                    ));
                    let _ = fs::remove_file(&tmp);
                    std::os::unix::fs::symlink(target, &tmp)
                        .map_err(InstallerError::io("creating the link", &tmp))?;
                    fs::rename(&tmp, &dest)
                        .map_err(InstallerError::io("renaming into place", &dest))?;
                }
                Ok(Outcome::changed())
            }
            Action::Remove { path, recursive } => {
                let dest = checked(ctx, path)?;
                if path.trim_matches('/').is_empty() {
                    return Err(InstallerError::UnsafePath {
                        path: path.clone(),
                        reason: "refusing to remove the host's root".into(),
                    });
                }
                let Ok(meta) = fs::symlink_metadata(&dest) else {
                    return Ok(Outcome::skipped("already absent"));
                };
                if meta.is_dir() && !*recursive {
                    let empty = fs::read_dir(&dest)
                        .map_err(InstallerError::io("reading", &dest))?
                        .next()
                        .is_none();
                    if !empty {
                        return Ok(Outcome::unchanged().with_note("not empty; left alone"));
                    }
                }
                if !dry {
                    remove_all(&dest).map_err(InstallerError::io("removing", &dest))?;
                }
                Ok(Outcome::changed())
            }
            Action::RemoveLink { link, target } => {
                let dest = checked(ctx, link)?;
                match fs::symlink_metadata(&dest) {
                    Err(_) => Ok(Outcome::skipped("already absent")),
                    Ok(m)
                        if m.file_type().is_symlink()
                            && fs::read_link(&dest).is_ok_and(|t| t == Path::new(target)) =>
                    {
                        if !dry {
                            fs::remove_file(&dest)
                                .map_err(InstallerError::io("removing", &dest))?;
                        }
                        Ok(Outcome::changed())
                    }
                    Ok(_) => Ok(Outcome::skipped(format!(
                        "{link} is not our link to {target}; left alone"
                    ))),
                }
            }
            Action::InstallUnit { name, content } => {
                if name.is_empty() || name.contains('/') || name.starts_with('.') {
                    return Err(InstallerError::UnsafePath {
                        path: name.clone(),
                        reason: "a unit name is a file name".into(),
                    });
                }
                let dest = ctx.host_path(&format!("/etc/systemd/system/{name}"));
                if file_matches(&dest, content.as_bytes(), 0o644) {
                    return Ok(Outcome::skipped("the unit file matches"));
                }
                if dry {
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
            Action::DaemonReload => {
                if !dry {
                    self.systemctl(&["daemon-reload"])?;
                }
                Ok(Outcome::changed())
            }
            Action::Service { unit, op } => {
                if !dry {
                    let mut args = op.args().to_vec();
                    args.push(unit);
                    self.systemctl(&args)?;
                }
                Ok(Outcome::changed())
            }
            Action::WaitFile { path, timeout_secs } => {
                let dest = checked(ctx, path)?;
                if dry {
                    return Ok(would_wait(dest.symlink_metadata().is_ok()));
                }
                wait(*timeout_secs, path, || dest.symlink_metadata().is_ok())?;
                Ok(Outcome::unchanged())
            }
            Action::WaitPort {
                host,
                port,
                timeout_secs,
            } => {
                let listening = || {
                    (host.as_str(), *port).to_socket_addrs().is_ok_and(|mut a| {
                        a.any(|addr| TcpStream::connect_timeout(&addr, POLL * 5).is_ok())
                    })
                };
                if dry {
                    return Ok(would_wait(listening()));
                }
                wait(
                    *timeout_secs,
                    &format!("a connection to {host}:{port}"),
                    listening,
                )?;
                Ok(Outcome::unchanged())
            }
            Action::ReadFile { path, capture } => {
                let dest = checked(ctx, path)?;
                // Reading changes nothing, so a dry run reads what is there.
                let bytes = match fs::read(&dest) {
                    Err(e) if dry && e.kind() == io::ErrorKind::NotFound => {
                        return Ok(Outcome::changed().with_note("dry run: not there yet"))
                    }
                    read => read.map_err(InstallerError::io("reading", &dest))?,
                };
                self.capture = Some((
                    capture.key.clone(),
                    String::from_utf8_lossy(&bytes).into_owned(),
                ));
                Ok(Outcome::unchanged())
            }
        }
    }

    /// The bytes a `WriteFile` step writes.
    fn render(&self, path: &str, content: &FileContent) -> Result<Vec<u8>, InstallerError> {
        let template_err = |source| InstallerError::Template {
            path: path.to_string(),
            source,
        };
        match content {
            FileContent::Bytes { bytes } => Ok(bytes.clone()),
            FileContent::Template { template } => Ok(render_template(template, &self.plan.env)
                .map_err(template_err)?
                .into_bytes()),
            FileContent::YamlMerge {
                base,
                base_is_template,
                overlay,
            } => {
                let base_text = match base {
                    Some(b) => {
                        let file = checked(self.ctx, b)?;
                        match fs::read(&file) {
                            Ok(bytes) => {
                                let text =
                                    String::from_utf8(bytes).map_err(|_| InstallerError::Io {
                                        op: "reading",
                                        path: file.clone(),
                                        source: io::Error::new(
                                            io::ErrorKind::InvalidData,
                                            "not UTF-8 text",
                                        ),
                                    })?;
                                Some(if *base_is_template {
                                    render_template(&text, &self.plan.env).map_err(|source| {
                                        InstallerError::Template {
                                            path: b.clone(),
                                            source,
                                        }
                                    })?
                                } else {
                                    text
                                })
                            }
                            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                            Err(source) => {
                                return Err(InstallerError::Io {
                                    op: "reading",
                                    path: file,
                                    source,
                                })
                            }
                        }
                    }
                    None => None,
                };
                Ok(merge_yaml(base_text.as_deref(), overlay)
                    .map_err(template_err)?
                    .into_bytes())
            }
        }
    }

    /// An absolute program path is looked up under the host root first (the
    /// host's own program), then as given.
    fn program(&self, argv0: &str) -> String {
        if argv0.starts_with('/') && !self.ctx.is_real_root() {
            let under = self.ctx.host_path(argv0);
            if under.exists() {
                return under.to_string_lossy().into_owned();
            }
        }
        argv0.to_string()
    }

    fn systemctl(&mut self, args: &[&str]) -> Result<(), InstallerError> {
        let mut argv = self.ctx.systemctl.clone();
        argv.extend(args.iter().map(|a| a.to_string()));
        let out = self.spawn(&argv, &[], None)?;
        self.output.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .chain(String::from_utf8_lossy(&out.stderr).lines())
                .map(str::to_string),
        );
        self.exit_code = out.status.code();
        match out.status.code() {
            Some(0) => Ok(()),
            Some(code) => Err(InstallerError::Exit {
                program: argv.join(" "),
                code,
            }),
            None => Err(InstallerError::Signal {
                program: argv.join(" "),
            }),
        }
    }

    /// Runs an argv with a minimal env plus `env`: no shell, nothing inherited.
    fn spawn(
        &self,
        argv: &[String],
        env: &[(String, String)],
        cwd: Option<&Path>,
    ) -> Result<std::process::Output, InstallerError> {
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
        cmd.output().map_err(|source| InstallerError::Spawn {
            program: program.clone(),
            source,
        })
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
}

/// A dry run's wait: nothing to do when what it waits for is there now.
fn would_wait(ready: bool) -> Outcome {
    if ready {
        Outcome::unchanged()
    } else {
        Outcome::changed().with_note("dry run: would wait")
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn file_matches(path: &Path, bytes: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == bytes.len() as u64
        && fs::read(path).is_ok_and(|b| b == bytes)
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
