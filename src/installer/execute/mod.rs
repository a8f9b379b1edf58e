//! Executing a plan: each step's check, then its action, recorded in a report.
//!
//! Checks come in two sorts. Those about the step's own target
//! (`FileMatches`, `DirExists`, `LinkMatches`, `Absent`) are answered by the
//! action itself, which compares before it writes; the others (`Creates`,
//! `IfExists`, `FileContains`, the unit states, `IfChanged`, `IfOutput`) gate
//! the action before it starts; their queries run in dry runs too. A step whose check says there is nothing to do is
//! `skipped`; a `ReadOnly` step always runs and never counts as a change.
//!
//! Each action is a method of [`StepRun`] named for it, in a file per concern:
//! `files` (rootfs, files, directories, links), `programs` (running argv),
//! `units` (systemd: unit files, services, unit states), `waits` (files and
//! ports), `cleanup` (processes, mounts, interfaces and iptables rules a
//! runtime leaves behind), and `checks` for the gates before an action.

mod checks;
mod cleanup;
mod files;
mod programs;
mod units;
mod waits;

use std::collections::HashSet;
use std::path::PathBuf;

use super::{ExecContext, InstallerError, Report, StepReport, StepStatus, OUTPUT_TAIL};
use crate::plan::{Action, Check, Plan, Step};
use units::SystemdLink;

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
        planned: plan.steps.len(),
    };
    let mut changed_steps: HashSet<String> = HashSet::new();
    let mut systemd = SystemdLink::Untried;
    for (number, step) in (1..).zip(&plan.steps) {
        if let Some(announce) = ctx.on_start {
            announce(number, plan.steps.len(), &step.title);
        }
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

    /// Does the step's action, by the method named for it.
    fn act(&mut self) -> Result<Outcome, InstallerError> {
        let step = self.step;
        match &step.action {
            Action::PlaceRootfs { role, .. } => self.place_rootfs(*role),
            Action::RemoveRootfs { role } => self.remove_rootfs(*role),
            Action::WriteFile {
                path,
                content,
                mode,
                only_if_changed,
                ..
            } => self.write_file(path, content, *mode, *only_if_changed),
            Action::EnsureDir { path, mode } => self.ensure_dir(path, *mode),
            Action::Run {
                argv,
                env,
                cwd,
                capture,
                allow_failure,
                ..
            } => self.run(argv, env, cwd.as_deref(), capture.as_ref(), *allow_failure),
            Action::Symlink { target, link } => self.symlink(target, link),
            Action::Remove { path, recursive } => self.remove(path, *recursive),
            Action::RemoveLink { link, target } => self.remove_link(link, target),
            Action::InstallUnit { name, content } => self.install_unit(name, content),
            Action::DaemonReload => self.daemon_reload(),
            Action::Service { unit, op } => self.service(unit, *op),
            Action::WaitFile { path, timeout_secs } => self.wait_file(path, *timeout_secs),
            Action::WaitPort {
                host,
                port,
                timeout_secs,
            } => self.wait_port(host, *port, *timeout_secs),
            Action::ReadFile { path, capture } => self.read_file(path, capture),
            Action::KillProcessTrees { under, name_prefix } => {
                self.kill_process_trees(under, name_prefix)
            }
            Action::UnmountUnder { prefix } => self.unmount_under(prefix),
            Action::DeleteLinks { names } => self.delete_links(names),
            Action::StripIptables {
                tools,
                contains,
                contains_ignore_case,
            } => self.strip_iptables(tools, contains, contains_ignore_case),
        }
    }
}
