//! The checks that gate an action before it starts: about other paths, unit
//! states, earlier steps, or a program's output. Their queries are read-only,
//! so they run in dry runs too.

use std::fs;

use super::programs::failure;
use super::{checked, StepRun};
use crate::installer::InstallerError;
use crate::plan::Check;

impl StepRun<'_> {
    /// The checks that decide before the action starts; `Some(reason)` to skip.
    pub(super) fn gate(&mut self) -> Result<Option<String>, InstallerError> {
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
                    self.keep(&out.stderr);
                    return Err(failure(argv[0].clone(), out.status));
                }
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .is_empty()
                    .then(|| format!("{} printed nothing", argv.join(" ")))
            }
            Check::IfExistsAndFails {
                path,
                unless_exists,
                argv,
            } => {
                if checked(ctx, path)?.symlink_metadata().is_err() {
                    return Ok(Some(format!("{path} does not exist")));
                }
                if let Some(done) = unless_exists {
                    if checked(ctx, done)?.symlink_metadata().is_ok() {
                        return Ok(Some(format!("{done} exists")));
                    }
                }
                let mut argv = argv.clone();
                argv[0] = self.program(&argv[0]);
                let out = self.spawn(&argv, &[], None)?;
                out.status
                    .success()
                    .then(|| format!("{} succeeded", argv.join(" ")))
            }
            Check::FileMatches
            | Check::DirExists
            | Check::LinkMatches
            | Check::Absent
            | Check::ReadOnly => None,
        })
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
