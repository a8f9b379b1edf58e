//! `PlaceRootfs` and `RemoveRootfs`: the image's files where its layout says.
//!
//! The layout (`layouts/*.toml`) maps rootfs paths to host paths; this walks
//! the unpacked rootfs and copies each file that has a host path and concerns
//! the role. A file is placed (temp + rename, so a reader never sees half a
//! binary) only when its content or mode differs. Binaries and image
//! archives, which nothing on a host writes, are placed read-only (write
//! bits dropped: 0555, 0444) as hard links to the unpacked file where the
//! two share a filesystem (hundreds of megabytes of images need not be
//! written twice); their bytes are the layer's, checked with it
//! ([`super::integrity`]). Everything else (configs, manifests, units),
//! which an administrator or the runtime may write, is placed as a copy
//! (temp, made durable, rename: all of a placement's copies together, see
//! [`Staged`]), so that an edit never reaches the content-addressed layer,
//! and the next placement finds and restores it.
//! What was placed is recorded
//! in `/var/lib/sealrs-host/placed/<role>.json`, so that:
//!
//! - a file the image no longer carries is removed on the next placement;
//! - `RemoveRootfs` removes exactly what was placed, and the directories
//!   placement created when they are empty again;
//! - an unchanged file is recognized by its recorded size, mtime and inode
//!   (source and destination) without reading a byte of it; one whose stat
//!   moved is hashed against the size and SHA-256 recorded for it.
//!
//! Paths that a step of the same plan writes (a config the plan merges, a link
//! it makes) are the plan's: placement leaves them to it, or the two would
//! undo each other on every run.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tempfile::NamedTempFile;

use super::integrity::{self, Damage, Depth, Sum, Summing};
use super::unpack::{recorded_sums, remove_all, STAMP};
use super::{ExecContext, InstallerError};
use crate::atomic_file;
use crate::cluster::Role;
use crate::host_paths::PLACED_DIR;
use crate::layout::{Hosts, Kind};
use crate::plan::{Action, Plan};

/// One file that placement puts on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacedFile {
    /// Path in the rootfs.
    pub source: String,
    /// Absolute host path (as the plan names it, not resolved under the host root).
    pub host: String,
    pub mode: u32,
    /// The symlink's target when the rootfs holds a symlink.
    pub link: Option<String>,
    /// Placed as a hard link to the rootfs's file (read-only), not a copy.
    pub linked: bool,
}

/// Whether files of `kind` are placed as hard links into the layers:
/// binaries and image archives, which nothing on a host writes. The rest
/// an administrator or the runtime may write: copies.
fn linked_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Executable | Kind::ImageArchive)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stat {
    fn of(m: &fs::Metadata) -> Stat {
        Stat {
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    source: String,
    mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link: Option<String>,
    #[serde(default)]
    source_stat: Stat,
    #[serde(default)]
    host_stat: Stat,
    /// What the placed file holds (absent in records from before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sum: Option<Sum>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Manifest {
    /// Host path → what was placed there.
    files: BTreeMap<String, Record>,
    /// Directories placement created (host paths), removed again when empty.
    dirs: BTreeSet<String>,
}

fn manifest_path(ctx: &ExecContext, role: Role) -> PathBuf {
    ctx.host_path(&format!("{PLACED_DIR}/{role}.json"))
}

fn read_manifest(path: &Path) -> Result<Option<Manifest>, InstallerError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| InstallerError::Io {
                op: "reading",
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(InstallerError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

pub(super) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallerError> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(dir).map_err(InstallerError::io("creating", dir))?;
    atomic_file::write(path, bytes, Some(mode)).map_err(InstallerError::io("writing", path))
}

/// Host paths that steps of `plan` write themselves.
fn plan_owned(plan: &Plan) -> HashSet<String> {
    plan.steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::WriteFile { path, .. } => Some(path.clone()),
            Action::Symlink { link, .. } => Some(link.clone()),
            Action::InstallUnit { name, .. } => Some(format!("/etc/systemd/system/{name}")),
            _ => None,
        })
        .collect()
}

fn applies(on: Hosts, role: Role, workloads: bool) -> bool {
    match on {
        Hosts::All => true,
        Hosts::ControlPlane => role == Role::Master,
        Hosts::Workers => workloads,
    }
}

/// Whether the host runs workloads, as the plan's `PlaceRootfs` step says
/// (by default: when its role is node).
fn runs_workloads(plan: &Plan, role: Role) -> bool {
    plan.steps
        .iter()
        .find_map(|s| match s.action {
            Action::PlaceRootfs { workloads, .. } => workloads,
            _ => None,
        })
        .unwrap_or(role == Role::Node)
}

/// The files `PlaceRootfs` would put on this host for `role`, in path order;
/// paths that a step of `plan` writes are left out.
pub fn placements(
    ctx: &ExecContext,
    role: Role,
    plan: &Plan,
) -> Result<Vec<PlacedFile>, InstallerError> {
    let owned = plan_owned(plan);
    let workloads = runs_workloads(plan, role);
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(&ctx.rootfs)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| InstallerError::Io {
            op: "reading",
            path: e.path().unwrap_or(&ctx.rootfs).to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("loop")),
        })?;
        if entry.file_type().is_dir() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(&ctx.rootfs) else {
            continue;
        };
        let Some(rel) = rel.to_str() else { continue };
        if rel == STAMP {
            continue;
        }
        let Some(target) = ctx.layout.place(rel) else {
            continue;
        };
        if !applies(target.on, role, workloads) || owned.contains(&target.path) {
            continue;
        }
        if target.path.split('/').any(|c| c == "..") {
            return Err(InstallerError::UnsafePath {
                path: target.path,
                reason: "a placed path must not contain `..`".into(),
            });
        }
        let link = if entry.file_type().is_symlink() {
            let t = fs::read_link(entry.path())
                .map_err(InstallerError::io("reading the link", entry.path()))?;
            Some(t.to_string_lossy().into_owned())
        } else if entry.file_type().is_file() {
            None
        } else {
            continue;
        };
        let linked = linked_kind(target.kind);
        out.push(PlacedFile {
            source: rel.to_string(),
            host: target.path,
            mode: if linked {
                target.mode & !0o222
            } else {
                target.mode
            },
            link,
            linked,
        });
    }
    Ok(out)
}

/// Whether placement ever recorded files on this host (for any role): the
/// host then runs a sealrs rootfs.
pub(super) fn has_placed(ctx: &ExecContext) -> bool {
    fs::read_dir(ctx.host_path(PLACED_DIR)).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".json"))
    })
}

/// What placing or removing did: whether anything changed, and a note.
pub(super) struct PlaceOutcome {
    pub changed: bool,
    pub note: String,
}

/// Creates the missing directories above `dest` (0755), recording each.
fn make_parents(ctx: &ExecContext, host: &str, dirs: &mut BTreeSet<String>) -> io::Result<()> {
    let mut current = String::new();
    let parts: Vec<&str> = host.split('/').filter(|p| !p.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        current.push('/');
        current.push_str(part);
        let full = ctx.host_path(&current);
        match fs::symlink_metadata(&full) {
            Ok(_) => {}
            Err(_) => {
                fs::create_dir(&full)?;
                fs::set_permissions(&full, fs::Permissions::from_mode(0o755))?;
                dirs.insert(current.clone());
            }
        }
    }
    Ok(())
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let mut fa = io::BufReader::with_capacity(256 * 1024, File::open(a)?);
    let mut fb = io::BufReader::with_capacity(256 * 1024, File::open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = r.read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Copies `src` into a temp file beside `dest`; the temp and the sum of
/// what it wrote. Bytes that are not the `expected` ones (a damaged layer
/// file) are refused, and the temp removed.
fn copy_to_temp(
    src: &Path,
    dest: &Path,
    mode: u32,
    expected: Option<&Sum>,
) -> io::Result<(NamedTempFile, Sum)> {
    let tmp = atomic_file::temp_beside(dest)?;
    let mut input = File::open(src)?;
    let mut out = Summing::new(tmp.as_file());
    io::copy(&mut input, &mut out)?;
    let sum = out.sum();
    if let Some(expected) = expected.filter(|e| **e != sum) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is damaged (expected {}, found {}); run again: the next run sends its layer again",
                src.display(),
                expected.shown(),
                sum.shown()
            ),
        ));
    }
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))?;
    Ok((tmp, sum))
}

/// What one placement made beside its destination, to take its name in
/// [`Staged::commit`].
enum Made {
    /// A copy, not synced yet.
    Copy(NamedTempFile),
    /// A hard link to a layer's file (durable already) or a symlink: only
    /// the name is new.
    Name(PathBuf),
}

/// Placements made beside their destinations and not renamed yet. Each
/// copy must be durable before it takes its name (a power cut must not
/// leave a short config under it), and an fsync per file and per directory
/// waits for a journal commit each: for the 200 manifests of a k3s image,
/// 1.4 s of a master's install, measured. So every file is made first, then
/// made durable at once (one `syncfs` per filesystem), then renamed, then
/// each directory is synced once. Dropped uncommitted, it removes its temps.
#[derive(Default)]
struct Staged {
    made: Vec<(Made, PathBuf)>,
}

impl Staged {
    /// `src` for `dest`: a hard link where `linked` and the filesystem
    /// allows (its mode set to `mode`), else a copy, whose sum it returns.
    fn file(
        &mut self,
        src: &Path,
        dest: &Path,
        mode: u32,
        linked: bool,
        expected: Option<&Sum>,
    ) -> io::Result<Option<Sum>> {
        let tmp = self.name_beside(dest, "place");
        if linked && fs::hard_link(src, &tmp).is_ok() {
            self.made
                .push((Made::Name(tmp.clone()), dest.to_path_buf()));
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
            return Ok(None);
        }
        let (tmp, sum) = copy_to_temp(src, dest, mode, expected)?;
        self.made.push((Made::Copy(tmp), dest.to_path_buf()));
        Ok(Some(sum))
    }

    /// A symlink to `target` for `dest`.
    fn symlink(&mut self, target: &str, dest: &Path) -> io::Result<()> {
        let tmp = self.name_beside(dest, "link");
        std::os::unix::fs::symlink(target, &tmp)?;
        self.made.push((Made::Name(tmp), dest.to_path_buf()));
        Ok(())
    }

    /// A free temp name beside `dest`.
    fn name_beside(&self, dest: &Path, what: &str) -> PathBuf {
        let dir = dest.parent().unwrap_or(Path::new("/"));
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (pid, n) = (std::process::id(), self.made.len());
        let tmp = dir.join(format!(".{name}.sealrs-{what}-{pid}-{n}"));
        let _ = fs::remove_file(&tmp);
        tmp
    }

    /// Makes the copies durable, renames everything into place, and syncs
    /// each directory a name changed in.
    fn commit(mut self) -> io::Result<()> {
        let copies = self.made.iter().filter_map(|(made, _)| match made {
            Made::Copy(tmp) => Some(tmp.as_file()),
            Made::Name(_) => None,
        });
        sync_files(copies)?;
        let mut dirs = BTreeSet::new();
        // In order (a later placement of a path wins); on an error, what is
        // left is dropped with `self`.
        self.made.reverse();
        while let Some((made, dest)) = self.made.pop() {
            match made {
                Made::Copy(tmp) => {
                    tmp.persist(&dest).map_err(|e| e.error)?;
                }
                Made::Name(tmp) => {
                    let renamed = fs::rename(&tmp, &dest);
                    // rename does nothing when both names are links to one file.
                    let _ = fs::remove_file(&tmp);
                    renamed?;
                }
            }
            dirs.insert(dest.parent().unwrap_or(Path::new("/")).to_path_buf());
        }
        dirs.iter().try_for_each(|dir| atomic_file::sync_dir(dir))
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        for (made, _) in &self.made {
            if let Made::Name(tmp) = made {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// Makes `files` durable: one `syncfs` for each filesystem they are on,
/// or, where it is refused, an fsync of each.
fn sync_files<'a>(files: impl Iterator<Item = &'a File>) -> io::Result<()> {
    let mut by_fs: BTreeMap<u64, Vec<&File>> = BTreeMap::new();
    for file in files {
        by_fs.entry(file.metadata()?.dev()).or_default().push(file);
    }
    for files in by_fs.values() {
        if rustix::fs::syncfs(files[0]).is_err() {
            files.iter().try_for_each(|f| f.sync_all())?;
        }
    }
    Ok(())
}

/// Whether the copy at `dest` holds `src`'s bytes: by the sum the rootfs
/// recorded for them where it did, else by comparing the two.
fn holds(dest: &Path, src: &Path, expected: Option<&Sum>) -> io::Result<bool> {
    match expected {
        Some(sum) => Ok(integrity::check_file(dest, sum, |_| false, Depth::Full).is_none()),
        None => {
            Ok(fs::metadata(dest)?.len() == fs::metadata(src)?.len() && same_content(src, dest)?)
        }
    }
}

/// Places the rootfs for `role`; with `ctx.dry_run`, only tells whether it would change.
pub(super) fn place_rootfs(
    ctx: &ExecContext,
    role: Role,
    plan: &Plan,
) -> Result<PlaceOutcome, InstallerError> {
    let wanted = placements(ctx, role, plan)?;
    let manifest_file = manifest_path(ctx, role);
    let old = read_manifest(&manifest_file)?.unwrap_or_default();
    let mut new = Manifest {
        files: BTreeMap::new(),
        dirs: old.dirs.clone(),
    };
    let sums = recorded_sums(&ctx.rootfs);
    let mut staged = Staged::default();
    let mut placed = Vec::new();
    let mut restored = Vec::new();
    let (mut written, mut same, mut removed) = (0usize, 0usize, 0usize);
    for file in &wanted {
        let src = ctx.rootfs.join(&file.source);
        let dest = ctx.host_path(&file.host);
        let src_meta = fs::symlink_metadata(&src).map_err(InstallerError::io("reading", &src))?;
        let dest_meta = fs::symlink_metadata(&dest).ok();
        if dest_meta.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(InstallerError::UnsafePath {
                path: file.host.clone(),
                reason: format!(
                    "{} goes there, but it is a directory on this host",
                    file.source
                ),
            });
        }
        let expected = sums.get(&file.source);
        let before = old.files.get(&file.host);
        let up_to_date = match (&file.link, &dest_meta) {
            (Some(target), Some(m)) if m.file_type().is_symlink() => {
                fs::read_link(&dest).is_ok_and(|t| t.to_string_lossy() == target.as_str())
            }
            (Some(_), _) => false,
            (None, Some(m)) if m.is_file() => {
                let one_inode = m.dev() == src_meta.dev() && m.ino() == src_meta.ino();
                let recorded = before.is_some_and(|r| {
                    r.source == file.source
                        && r.mode == file.mode
                        && r.link.is_none()
                        && r.source_stat == Stat::of(&src_meta)
                        && r.host_stat == Stat::of(m)
                });
                let mode_ok = m.permissions().mode() & 0o7777 == file.mode;
                // A link where a copy belongs (placed before copies) is not;
                // a copy where a link belongs (another filesystem) is.
                (recorded && (file.linked || !one_inode))
                    || (mode_ok && one_inode && file.linked)
                    || (mode_ok
                        && !one_inode
                        && holds(&dest, &src, expected)
                            .map_err(InstallerError::io("reading", &dest))?)
            }
            (None, _) => false,
        };
        let mut sum = before
            .and_then(|r| r.sum.clone())
            .filter(|_| up_to_date)
            .or_else(|| expected.cloned());
        if up_to_date {
            same += 1;
        } else {
            written += 1;
            // Changed on this host since it was placed (the image's file
            // did not): an edit or damage, undone.
            let edited = before.is_some_and(|r| {
                r.source == file.source
                    && r.source_stat == Stat::of(&src_meta)
                    && dest_meta.as_ref().map(Stat::of) != Some(r.host_stat.clone())
            });
            if edited {
                restored.push(file.host.clone());
            }
            if !ctx.dry_run {
                make_parents(ctx, &file.host, &mut new.dirs)
                    .map_err(InstallerError::io("creating the directories of", &dest))?;
                let copied = match &file.link {
                    Some(target) => staged.symlink(target, &dest).map(|()| None),
                    None => staged.file(&src, &dest, file.mode, file.linked, expected),
                }
                .map_err(InstallerError::io("placing", &dest))?;
                sum = copied.or(sum);
                placed.push(file.host.clone());
            }
        }
        // What is there now; a file placed by this run is stat'ed once it is.
        let host_stat = fs::symlink_metadata(&dest)
            .map(|m| Stat::of(&m))
            .unwrap_or_default();
        new.files.insert(
            file.host.clone(),
            Record {
                source: file.source.clone(),
                mode: file.mode,
                link: file.link.clone(),
                source_stat: Stat::of(&src_meta),
                host_stat,
                sum: sum.filter(|_| file.link.is_none()),
            },
        );
    }
    staged
        .commit()
        .map_err(InstallerError::io("placing the files of", &ctx.rootfs))?;
    for host in &placed {
        let dest = ctx.host_path(host);
        if let (Some(record), Ok(m)) = (new.files.get_mut(host), fs::symlink_metadata(&dest)) {
            record.host_stat = Stat::of(&m);
        }
    }
    // What an earlier image placed and this one no longer carries.
    for host in old.files.keys() {
        if new.files.contains_key(host) {
            continue;
        }
        let dest = ctx.host_path(host);
        if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
            removed += 1;
            if !ctx.dry_run {
                fs::remove_file(&dest).map_err(InstallerError::io("removing", &dest))?;
            }
        }
    }
    if !ctx.dry_run && (new != old || !manifest_file.exists()) {
        let json = serde_json::to_vec_pretty(&new).expect("a manifest serializes");
        write_atomic(&manifest_file, &json, 0o644)?;
    }
    let mut note = format!("{written} placed, {same} already in place");
    if removed > 0 {
        note.push_str(&format!(", {removed} no longer in the image removed"));
    }
    if !restored.is_empty() {
        note.push_str(&format!(
            "; restored {} (changed on this host since placed)",
            restored.join(", ")
        ));
    }
    Ok(PlaceOutcome {
        changed: written + removed > 0,
        note,
    })
}

/// Removes what `place_rootfs` recorded for `role`; `None` when nothing was
/// recorded (nothing to do).
pub(super) fn remove_rootfs(
    ctx: &ExecContext,
    role: Role,
) -> Result<Option<PlaceOutcome>, InstallerError> {
    let manifest_file = manifest_path(ctx, role);
    let Some(manifest) = read_manifest(&manifest_file)? else {
        return Ok(None);
    };
    let mut removed = 0;
    for host in manifest.files.keys() {
        let dest = ctx.host_path(host);
        if fs::symlink_metadata(&dest).is_ok_and(|m| !m.is_dir()) {
            removed += 1;
            if !ctx.dry_run {
                fs::remove_file(&dest).map_err(InstallerError::io("removing", &dest))?;
            }
        }
    }
    if !ctx.dry_run {
        // Deepest first; a directory someone else filled stays.
        for dir in manifest.dirs.iter().rev() {
            let _ = fs::remove_dir(ctx.host_path(dir));
        }
        remove_all(&manifest_file).map_err(InstallerError::io("removing", &manifest_file))?;
        let placed = ctx.host_path(PLACED_DIR);
        let _ = fs::remove_dir(&placed);
    }
    Ok(Some(PlaceOutcome {
        changed: true,
        note: format!("{removed} placed files removed"),
    }))
}

/// The placed files (of every role recorded under `host_root`) whose bytes
/// are not those placed: by stat, re-hashing what moved, or every file with
/// [`Depth::Full`]. Files recorded without a sum are not checked.
pub(super) fn damaged_placed(host_root: &Path, depth: Depth) -> Vec<Damage> {
    let dir = host_root.join(PLACED_DIR.trim_start_matches('/'));
    let Ok(read) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = read
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let Ok(Some(manifest)) = read_manifest(&path) else {
            continue;
        };
        for (host, record) in &manifest.files {
            let Some(sum) = record.sum.as_ref().filter(|_| record.link.is_none()) else {
                continue;
            };
            let at = host_root.join(host.trim_start_matches('/'));
            let same = |m: &fs::Metadata| Stat::of(m) == record.host_stat;
            if let Some(found) = integrity::check_file(&at, sum, same, depth) {
                if !out.iter().any(|d: &Damage| d.path == *host) {
                    out.push(Damage {
                        path: host.clone(),
                        layer: None,
                        expected: sum.shown(),
                        found,
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_of_bytes_that_are_not_the_recorded_ones_is_refused_and_the_old_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        fs::write(&src, b"mirrors: {}\n").unwrap();
        fs::write(&dest, b"as placed before\n").unwrap();
        let good = integrity::sum_file(&src).unwrap();
        fs::write(&src, b"mirrors: {!\n").unwrap();
        let mut staged = Staged::default();
        let err = staged
            .file(&src, &dest, 0o600, false, Some(&good))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("is damaged (expected 12 bytes, sha256 "),
            "{err}"
        );
        drop(staged);
        assert_eq!(fs::read(&dest).unwrap(), b"as placed before\n");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no temp file left: {left:?}");
        // Without a record, or with the right one: copied.
        fs::write(&src, b"mirrors: {}\n").unwrap();
        let mut staged = Staged::default();
        let sum = staged.file(&src, &dest, 0o600, false, Some(&good));
        assert_eq!(sum.unwrap(), Some(good));
        staged.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"mirrors: {}\n");
    }

    /// Copies, hard links and symlinks are made beside their destinations
    /// and take their names only on commit; dropped before, nothing of them
    /// is left and the old files stay.
    #[test]
    fn staged_placements_take_their_names_together_on_commit_or_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        let (etc, bin) = (dir.path().join("etc"), dir.path().join("bin"));
        for d in [&layer, &etc, &bin] {
            fs::create_dir(d).unwrap();
        }
        fs::write(layer.join("k3s"), b"binary").unwrap();
        fs::write(layer.join("a.yaml"), b"a: 1\n").unwrap();
        fs::write(etc.join("a.yaml"), b"old\n").unwrap();
        let stage = || {
            let mut staged = Staged::default();
            let sum = staged.file(
                &layer.join("a.yaml"),
                &etc.join("a.yaml"),
                0o640,
                false,
                None,
            );
            assert_eq!(sum.unwrap().unwrap().size, 5);
            let linked = staged.file(&layer.join("k3s"), &bin.join("k3s"), 0o555, true, None);
            assert_eq!(linked.unwrap(), None);
            staged.symlink("k3s", &bin.join("kubectl")).unwrap();
            staged
        };
        let names = |d: &Path| -> Vec<String> {
            let mut n: Vec<String> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        drop(stage());
        assert_eq!(fs::read(etc.join("a.yaml")).unwrap(), b"old\n");
        assert_eq!(names(&etc), ["a.yaml"]);
        assert!(names(&bin).is_empty(), "{:?}", names(&bin));
        stage().commit().unwrap();
        assert_eq!(fs::read(etc.join("a.yaml")).unwrap(), b"a: 1\n");
        let mode = fs::metadata(etc.join("a.yaml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        assert_eq!(names(&etc), ["a.yaml"]);
        assert_eq!(names(&bin), ["k3s", "kubectl"]);
        let (placed, src) = (bin.join("k3s"), layer.join("k3s"));
        assert_eq!(
            fs::metadata(&placed).unwrap().ino(),
            fs::metadata(&src).unwrap().ino()
        );
        assert_eq!(
            fs::read_link(bin.join("kubectl")).unwrap(),
            Path::new("k3s")
        );
    }
}
