//! The actions on the host's files: the rootfs, files, directories, links.
//! Each compares before it writes, so an unchanged target is `skipped`.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::{checked, Outcome, StepRun};
use crate::cluster::Role;
use crate::installer::place::{self, write_atomic as write_file_atomic};
use crate::installer::unpack::remove_all;
use crate::installer::InstallerError;
use crate::plan::{
    merge_yaml, merge_yaml_keeping, render_template, render_yaml_template, Capture, FileContent,
};

impl StepRun<'_> {
    /// Places the image's rootfs for `role` as its layout says.
    pub(super) fn place_rootfs(&self, role: Role) -> Result<Outcome, InstallerError> {
        let o = place::place_rootfs(self.ctx, role, self.plan)?;
        Ok(if o.changed {
            Outcome::changed().with_note(o.note)
        } else {
            Outcome::skipped(o.note)
        })
    }

    /// Removes what `place_rootfs` placed for `role`.
    pub(super) fn remove_rootfs(&self, role: Role) -> Result<Outcome, InstallerError> {
        Ok(match place::remove_rootfs(self.ctx, role)? {
            Some(o) => Outcome::changed().with_note(o.note),
            None => Outcome::skipped("nothing was placed"),
        })
    }

    pub(super) fn write_file(
        &self,
        path: &str,
        content: &FileContent,
        mode: u32,
        only_if_changed: bool,
    ) -> Result<Outcome, InstallerError> {
        let bytes = self.render(path, content)?;
        let dest = checked(self.ctx, path)?;
        if only_if_changed && file_matches(&dest, &bytes, mode) {
            return Ok(Outcome::skipped("content and mode match"));
        }
        if !self.ctx.dry_run {
            write_file_atomic(&dest, &bytes, mode)?;
        }
        Ok(Outcome::changed())
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
                keep,
            } => {
                let base_text = match base {
                    Some(b) => self.yaml_base(b, *base_is_template)?,
                    None => None,
                };
                let merged = match keep {
                    Some(keys) => merge_yaml_keeping(base_text.as_deref(), overlay, keys),
                    None => merge_yaml(base_text.as_deref(), overlay),
                };
                Ok(merged.map_err(template_err)?.into_bytes())
            }
        }
    }

    /// A YAML merge's base file as text, rendered when it is a template;
    /// `None` when it is not there.
    fn yaml_base(&self, base: &str, is_template: bool) -> Result<Option<String>, InstallerError> {
        let file = checked(self.ctx, base)?;
        let bytes = match fs::read(&file) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            read => read.map_err(InstallerError::io("reading", &file))?,
        };
        let text = String::from_utf8(bytes).map_err(|_| {
            InstallerError::io("reading", &file)(io::Error::new(
                io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        if !is_template {
            return Ok(Some(text));
        }
        // Each env value one YAML scalar: a newline in it adds no key.
        render_yaml_template(&text, &self.plan.env)
            .map(Some)
            .map_err(|source| InstallerError::Template {
                path: base.to_string(),
                source,
            })
    }

    pub(super) fn ensure_dir(&self, path: &str, mode: u32) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, path)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.is_dir() && m.permissions().mode() & 0o7777 == mode => {
                return Ok(Outcome::skipped("the directory exists"))
            }
            Ok(m) if !m.is_dir() => {
                return Err(InstallerError::UnsafePath {
                    path: path.to_string(),
                    reason: "something other than a directory is there".into(),
                })
            }
            _ => {}
        }
        if !self.ctx.dry_run {
            fs::create_dir_all(&dest).map_err(InstallerError::io("creating", &dest))?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
                .map_err(InstallerError::io("setting the mode of", &dest))?;
        }
        Ok(Outcome::changed())
    }

    pub(super) fn symlink(&self, target: &str, link: &str) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, link)?;
        match fs::symlink_metadata(&dest) {
            Ok(m) if m.file_type().is_symlink() => {
                if fs::read_link(&dest).is_ok_and(|t| t == Path::new(target)) {
                    return Ok(Outcome::skipped("the link points there"));
                }
            }
            Ok(_) => {
                return Ok(
                    Outcome::unchanged().with_note(format!("{link} is not a symlink; left alone"))
                )
            }
            Err(_) => {}
        }
        if !self.ctx.dry_run {
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
            fs::rename(&tmp, &dest).map_err(InstallerError::io("renaming into place", &dest))?;
        }
        Ok(Outcome::changed())
    }

    pub(super) fn remove(&self, path: &str, recursive: bool) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, path)?;
        if path.trim_matches('/').is_empty() {
            return Err(InstallerError::UnsafePath {
                path: path.to_string(),
                reason: "refusing to remove the host's root".into(),
            });
        }
        let Ok(meta) = fs::symlink_metadata(&dest) else {
            return Ok(Outcome::skipped("already absent"));
        };
        if meta.is_dir() && !recursive {
            let empty = fs::read_dir(&dest)
                .map_err(InstallerError::io("reading", &dest))?
                .next()
                .is_none();
            if !empty {
                return Ok(Outcome::unchanged().with_note("not empty; left alone"));
            }
        }
        if !self.ctx.dry_run {
            remove_all(&dest).map_err(InstallerError::io("removing", &dest))?;
        }
        Ok(Outcome::changed())
    }

    pub(super) fn remove_link(&self, link: &str, target: &str) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, link)?;
        match fs::symlink_metadata(&dest) {
            Err(_) => Ok(Outcome::skipped("already absent")),
            Ok(m)
                if m.file_type().is_symlink()
                    && fs::read_link(&dest).is_ok_and(|t| t == Path::new(target)) =>
            {
                if !self.ctx.dry_run {
                    fs::remove_file(&dest).map_err(InstallerError::io("removing", &dest))?;
                }
                Ok(Outcome::changed())
            }
            Ok(_) => Ok(Outcome::skipped(format!(
                "{link} is not our link to {target}; left alone"
            ))),
        }
    }

    /// Reads a file back to the operator; a dry run reads what is there.
    pub(super) fn read_file(
        &mut self,
        path: &str,
        capture: &Capture,
    ) -> Result<Outcome, InstallerError> {
        let dest = checked(self.ctx, path)?;
        // Reading changes nothing, so a dry run reads what is there.
        let bytes = match fs::read(&dest) {
            Err(e) if self.ctx.dry_run && e.kind() == io::ErrorKind::NotFound => {
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

pub(super) fn file_matches(path: &Path, bytes: &[u8], mode: u32) -> bool {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return false;
    };
    meta.is_file()
        && meta.permissions().mode() & 0o7777 == mode
        && meta.len() == bytes.len() as u64
        && fs::read(path).is_ok_and(|b| b == bytes)
}
