//! The build context and how COPY/ADD sources resolve in it.
//!
//! Resolution only calls `stat`, `readlink` and `readdir`: it never opens file
//! content. That is what lets the layer cache decide hit or miss without reading
//! a byte of a multi-gigabyte context, and why archives are only sniffed later,
//! after a miss.
//!
//! Semantics follow Docker (buildkit) COPY: sources are relative to the context
//! root (a leading `/` means the root too), globs use Go `filepath.Match`,
//! a directory source copies its contents, top-level symlinks are followed
//! (within the context), symlinks found inside copied directories are kept.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use super::error::{BuildError, Instruction};
use crate::ignore::{clean, Glob, Ignore};
use crate::kubefile::CopyStep;

/// A directory whose files COPY and ADD may read.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
}

impl Context {
    /// Opens `dir` and reads its ignore file (`.kubefileignore`, else `.dockerignore`).
    pub fn open(dir: &Path) -> Result<Context, BuildError> {
        let meta = std::fs::metadata(dir).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => BuildError::ContextMissing {
                path: dir.to_path_buf(),
            },
            _ => BuildError::ContextUnreadable {
                path: dir.to_path_buf(),
                source,
            },
        })?;
        if !meta.is_dir() {
            return Err(BuildError::ContextNotDir {
                path: dir.to_path_buf(),
            });
        }
        let unreadable = |source| BuildError::ContextUnreadable {
            path: dir.to_path_buf(),
            source,
        };
        // Canonical, so that "does this symlink stay inside?" is a prefix test.
        let root = std::fs::canonicalize(dir).map_err(unreadable)?;
        std::fs::read_dir(&root).map_err(unreadable)?;
        let ignore = Ignore::load(&root)?;
        Ok(Context { root, ignore })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn ignore(&self) -> &Ignore {
        &self.ignore
    }
}

/// What one input is on disk.
#[derive(Debug, Clone)]
pub(crate) enum InputKind {
    Dir,
    File,
    Symlink(PathBuf),
}

/// One thing to put into the layer, as found by resolution (stat only).
#[derive(Debug, Clone)]
pub(crate) struct Input {
    /// Path in the image, relative to `/`; empty for `/` itself.
    pub target: PathBuf,
    /// Absolute path on disk.
    pub path: PathBuf,
    /// Context-relative path, for the cache key and messages.
    pub rel: PathBuf,
    pub kind: InputKind,
    pub meta: Metadata,
    /// A top-level regular file of an ADD: extracted at `dest` if it is an archive.
    pub maybe_archive: bool,
}

/// The instruction being resolved, for error messages.
pub(crate) fn instruction_name(step: &CopyStep) -> Instruction {
    if step.extract_archives {
        Instruction::Add
    } else {
        Instruction::Copy
    }
}

fn is_url(source: &str) -> bool {
    ["http://", "https://", "git@", "git://"]
        .iter()
        .any(|prefix| source.starts_with(prefix))
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '\\'])
}

/// The destination path relative to `/`, cleaned.
pub(crate) fn dest_rel(step: &CopyStep) -> PathBuf {
    PathBuf::from(clean(&format!("/{}", step.dest)).trim_start_matches('/'))
}

/// Lists every input of `step` in instruction order (later inputs overwrite
/// earlier ones at the same target, as in Docker).
pub(crate) fn resolve(ctx: &Context, step: &CopyStep) -> Result<Vec<Input>, BuildError> {
    let r = Resolver {
        ctx,
        step,
        instr: instruction_name(step),
    };
    for source in &step.sources {
        if is_url(source) {
            return Err(BuildError::UrlSource {
                location: step.location.clone(),
                instruction: r.instr,
                url: source.clone(),
            });
        }
    }
    let mut matches = Vec::new();
    for source in &step.sources {
        matches.extend(
            r.expand(source)?
                .into_iter()
                .map(|rel| (source.as_str(), rel)),
        );
    }
    let dest_is_dir = step.dest.ends_with('/') || dest_rel(step).as_os_str().is_empty();
    if matches.len() > 1 && !dest_is_dir {
        return Err(BuildError::DestNotDirectory {
            location: step.location.clone(),
            instruction: r.instr,
            dest: step.dest.clone(),
            count: matches.len(),
        });
    }
    let dest = dest_rel(step);
    let mut inputs = Vec::new();
    for (source, rel) in matches {
        r.add_source(source, &rel, &dest, dest_is_dir, &mut inputs)?;
    }
    Ok(inputs)
}

struct Resolver<'a> {
    ctx: &'a Context,
    step: &'a CopyStep,
    instr: Instruction,
}

impl Resolver<'_> {
    fn not_found(&self, source: &str) -> BuildError {
        BuildError::SourceNotFound {
            location: self.step.location.clone(),
            instruction: self.instr,
            source_path: source.to_string(),
            context: self.ctx.root.clone(),
        }
    }

    fn unreadable(&self, path: &Path, source: io::Error) -> BuildError {
        BuildError::Unreadable {
            location: self.step.location.clone(),
            instruction: self.instr,
            path: path.to_path_buf(),
            source,
        }
    }

    fn excluded(&self, rel: &Path) -> bool {
        !rel.as_os_str().is_empty() && self.ctx.ignore.is_excluded(&rel.to_string_lossy())
    }

    fn excluded_error(&self, source: &str) -> BuildError {
        BuildError::SourceExcluded {
            location: self.step.location.clone(),
            instruction: self.instr,
            source_path: source.to_string(),
            ignore_file: self
                .ctx
                .ignore
                .file()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
        }
    }

    /// Turns one written source into context-relative paths: itself, or its
    /// glob matches (sorted, never excluded ones).
    fn expand(&self, source: &str) -> Result<Vec<PathBuf>, BuildError> {
        let cleaned = clean(&format!("./{source}"));
        let cleaned = cleaned.trim_start_matches('/');
        if cleaned == ".." || cleaned.starts_with("../") {
            return Err(BuildError::SourceOutsideContext {
                location: self.step.location.clone(),
                instruction: self.instr,
                source_path: source.to_string(),
                context: self.ctx.root.clone(),
            });
        }
        let rel = if cleaned == "." { "" } else { cleaned };
        if !has_glob_meta(rel) {
            let rel = PathBuf::from(rel);
            if self.excluded(&rel) {
                return Err(self.excluded_error(source));
            }
            return Ok(vec![rel]);
        }
        let glob = Glob::new(rel, false).map_err(|reason| BuildError::SourcePattern {
            location: self.step.location.clone(),
            instruction: self.instr,
            source_path: source.to_string(),
            reason,
        })?;
        // Walk only below the literal prefix, and only as deep as the pattern.
        let segments: Vec<&str> = rel.split('/').collect();
        let literal = segments.iter().take_while(|s| !has_glob_meta(s)).count();
        let base_rel: PathBuf = segments[..literal].iter().collect();
        let base = self.ctx.root.join(&base_rel);
        let mut found = Vec::new();
        if base.is_dir() {
            let depth = segments.len() - literal;
            let prune = !self.ctx.ignore.has_reincludes();
            let mut it = walkdir::WalkDir::new(&base)
                .min_depth(1)
                .max_depth(depth)
                .sort_by_file_name()
                .into_iter();
            while let Some(entry) = it.next() {
                let entry = entry.map_err(|e| self.walk_error(e))?;
                let rel = base_rel.join(entry.path().strip_prefix(&base).unwrap_or(entry.path()));
                if self.excluded(&rel) {
                    if prune && entry.file_type().is_dir() {
                        it.skip_current_dir();
                    }
                    continue;
                }
                if entry.depth() == depth && glob.matches(&rel.to_string_lossy()) {
                    found.push(rel);
                }
            }
        }
        if found.is_empty() {
            return Err(self.not_found(source));
        }
        found.sort_by(|a, b| {
            a.as_os_str()
                .as_encoded_bytes()
                .cmp(b.as_os_str().as_encoded_bytes())
        });
        Ok(found)
    }

    fn walk_error(&self, e: walkdir::Error) -> BuildError {
        let path = e.path().map(Path::to_path_buf).unwrap_or_default();
        let source = e
            .into_io_error()
            .unwrap_or_else(|| io::Error::other("filesystem loop"));
        self.unreadable(&path, source)
    }

    /// Follows a top-level source to what it names, staying inside the context.
    fn follow(&self, source: &str, rel: &Path) -> Result<(PathBuf, PathBuf), BuildError> {
        let written = self.ctx.root.join(rel);
        let real = match std::fs::canonicalize(&written) {
            Ok(real) => real,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.not_found(source)),
            // ELOOP has no stable ErrorKind; a link that points to itself is the usual cause.
            Err(e) if e.raw_os_error() == Some(40) => {
                return Err(BuildError::SymlinkLoop {
                    location: self.step.location.clone(),
                    instruction: self.instr,
                    source_path: source.to_string(),
                    path: written,
                })
            }
            Err(e) => return Err(self.unreadable(&written, e)),
        };
        let Ok(real_rel) = real.strip_prefix(&self.ctx.root).map(Path::to_path_buf) else {
            return Err(BuildError::SymlinkOutsideContext {
                location: self.step.location.clone(),
                instruction: self.instr,
                source_path: source.to_string(),
                resolved: real,
                context: self.ctx.root.clone(),
            });
        };
        if real_rel != rel && self.excluded(&real_rel) {
            return Err(self.excluded_error(source));
        }
        Ok((real, real_rel))
    }

    fn add_source(
        &self,
        source: &str,
        rel: &Path,
        dest: &Path,
        dest_is_dir: bool,
        inputs: &mut Vec<Input>,
    ) -> Result<(), BuildError> {
        let (real, real_rel) = self.follow(source, rel)?;
        let meta = std::fs::metadata(&real).map_err(|e| self.unreadable(&real, e))?;
        if meta.is_dir() {
            if !dest.as_os_str().is_empty() {
                inputs.push(Input {
                    target: dest.to_path_buf(),
                    path: real.clone(),
                    rel: real_rel.clone(),
                    kind: InputKind::Dir,
                    meta,
                    maybe_archive: false,
                });
            }
            return self.walk_dir(&real, &real_rel, dest, inputs);
        }
        self.check_regular(&real, &meta)?;
        let target = if dest_is_dir {
            dest.join(rel.file_name().unwrap_or(real.as_os_str()))
        } else {
            dest.to_path_buf()
        };
        inputs.push(Input {
            target,
            path: real,
            rel: real_rel,
            kind: InputKind::File,
            meta,
            maybe_archive: self.step.extract_archives,
        });
        Ok(())
    }

    fn check_regular(&self, path: &Path, meta: &Metadata) -> Result<(), BuildError> {
        let ft = meta.file_type();
        let kind = if ft.is_fifo() {
            "FIFO (named pipe)"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_block_device() {
            "block device"
        } else if ft.is_char_device() {
            "character device"
        } else {
            return Ok(());
        };
        Err(BuildError::SpecialFile {
            location: self.step.location.clone(),
            instruction: self.instr,
            path: path.to_path_buf(),
            kind,
        })
    }

    /// Adds everything below directory `real`, without following symlinks.
    fn walk_dir(
        &self,
        real: &Path,
        real_rel: &Path,
        dest: &Path,
        inputs: &mut Vec<Input>,
    ) -> Result<(), BuildError> {
        let prune = !self.ctx.ignore.has_reincludes();
        let mut it = walkdir::WalkDir::new(real)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        while let Some(entry) = it.next() {
            let entry = entry.map_err(|e| self.walk_error(e))?;
            let below = entry.path().strip_prefix(real).unwrap_or(entry.path());
            debug_assert!(below
                .components()
                .all(|c| matches!(c, Component::Normal(_))));
            let rel = real_rel.join(below);
            let is_dir = entry.file_type().is_dir();
            if self.excluded(&rel) {
                // With `!` rules something below may come back, so look inside;
                // the directory itself then only appears as an implicit parent.
                if is_dir && prune {
                    it.skip_current_dir();
                }
                continue;
            }
            let meta = entry.metadata().map_err(|e| self.walk_error(e))?;
            let kind = if is_dir {
                InputKind::Dir
            } else if entry.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path())
                    .map_err(|e| self.unreadable(entry.path(), e))?;
                InputKind::Symlink(target)
            } else {
                self.check_regular(entry.path(), &meta)?;
                InputKind::File
            };
            inputs.push(Input {
                target: dest.join(below),
                path: entry.path().to_path_buf(),
                rel,
                kind,
                meta,
                maybe_archive: false,
            });
        }
        Ok(())
    }
}

/// Reads whether `meta` may share content with another path (a hard link).
pub(crate) fn inode_key(meta: &Metadata) -> Option<(u64, u64)> {
    (meta.is_file() && meta.nlink() > 1).then(|| (meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::layer::tests::{step, write};
    use crate::ignore::IgnoreError;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn ctx_with(files: &[&str]) -> (tempfile::TempDir, Context) {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            write(dir.path(), f, b"x");
        }
        let ctx = Context::open(dir.path()).unwrap();
        (dir, ctx)
    }

    fn err(ctx: &Context, sources: &[&str], dest: &str) -> BuildError {
        resolve(ctx, &step(sources, dest)).unwrap_err()
    }

    #[test]
    fn context_open_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = Context::open(&missing).unwrap_err();
        assert!(matches!(e, BuildError::ContextMissing { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"));
        let file = write(dir.path(), "f", b"");
        assert!(matches!(
            Context::open(&file).unwrap_err(),
            BuildError::ContextNotDir { .. }
        ));
        write(dir.path(), "bad/.dockerignore", b"!\n");
        let e = Context::open(&dir.path().join("bad")).unwrap_err();
        assert!(
            matches!(e, BuildError::Ignore(IgnoreError::Pattern { line: 1, .. })),
            "{e}"
        );
    }

    #[test]
    fn missing_source_names_the_instruction_and_path() {
        let (_d, ctx) = ctx_with(&["a"]);
        let e = err(&ctx, &["nothere"], "/x");
        assert!(matches!(e, BuildError::SourceNotFound { .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("Kubefile:3:1: COPY source \"nothere\" not found"),
            "{e}"
        );
        let e = err(&ctx, &["*.none"], "/x/");
        assert!(matches!(e, BuildError::SourceNotFound { .. }), "{e}");
    }

    #[test]
    fn excluded_source_says_which_ignore_file() {
        let (d, _) = ctx_with(&["secret/key", "a"]);
        write(d.path(), ".dockerignore", b"secret\n");
        let ctx = Context::open(d.path()).unwrap();
        let e = err(&ctx, &["secret/key"], "/k");
        assert!(matches!(e, BuildError::SourceExcluded { .. }), "{e}");
        assert!(e.to_string().contains(".dockerignore"), "{e}");
    }

    #[test]
    fn sources_outside_the_context_are_refused() {
        let (_d, ctx) = ctx_with(&["a"]);
        for source in ["../outside", "a/../../x", "./.."] {
            let e = err(&ctx, &[source], "/x");
            assert!(
                matches!(e, BuildError::SourceOutsideContext { .. }),
                "{source}: {e}"
            );
        }
        // A leading `/` means the context root, as in Docker.
        assert_eq!(
            resolve(&ctx, &step(&["/a"], "/x")).unwrap()[0].rel,
            Path::new("a")
        );
    }

    #[test]
    fn top_level_symlinks_are_followed_inside_and_refused_outside() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "passwd", b"root");
        let (d, ctx) = ctx_with(&["real/file"]);
        symlink(outside.path().join("passwd"), d.path().join("leak")).unwrap();
        symlink(outside.path(), d.path().join("leakdir")).unwrap();
        symlink("real", d.path().join("inside")).unwrap();
        let e = err(&ctx, &["leak"], "/x");
        assert!(matches!(e, BuildError::SymlinkOutsideContext { .. }), "{e}");
        assert!(e.to_string().contains("outside the build context"), "{e}");
        let e = err(&ctx, &["leakdir/passwd"], "/x");
        assert!(matches!(e, BuildError::SymlinkOutsideContext { .. }), "{e}");
        let inputs = resolve(&ctx, &step(&["inside"], "/x")).unwrap();
        assert_eq!(
            inputs.iter().map(|i| i.target.clone()).collect::<Vec<_>>(),
            [Path::new("x"), Path::new("x/file")]
        );
    }

    #[test]
    fn symlink_loop_is_reported() {
        let (d, ctx) = ctx_with(&[]);
        symlink("b", d.path().join("a")).unwrap();
        symlink("a", d.path().join("b")).unwrap();
        let e = err(&ctx, &["a"], "/x");
        assert!(matches!(e, BuildError::SymlinkLoop { .. }), "{e}");
        assert!(e.to_string().contains("symlink loop"), "{e}");
    }

    #[test]
    fn dangling_top_level_symlink_is_not_found() {
        let (d, ctx) = ctx_with(&[]);
        symlink("gone", d.path().join("dangling")).unwrap();
        assert!(matches!(
            err(&ctx, &["dangling"], "/x"),
            BuildError::SourceNotFound { .. }
        ));
    }

    #[test]
    fn sockets_and_fifos_are_refused() {
        let (d, ctx) = ctx_with(&["dir/ok"]);
        let _listener = std::os::unix::net::UnixListener::bind(d.path().join("dir/sock")).unwrap();
        let e = err(&ctx, &["dir"], "/x");
        assert!(
            matches!(e, BuildError::SpecialFile { kind: "socket", .. }),
            "{e}"
        );
        assert!(e.to_string().contains("dir/sock is a socket"), "{e}");
        std::fs::remove_file(d.path().join("dir/sock")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(d.path().join("fifo"))
            .status();
        if made.is_ok_and(|s| s.success()) {
            let e = err(&ctx, &["fifo"], "/x");
            assert!(
                matches!(
                    e,
                    BuildError::SpecialFile {
                        kind: "FIFO (named pipe)",
                        ..
                    }
                ),
                "{e}"
            );
        }
    }

    /// Root reads mode-000 files anyway, so this only asserts when we are not
    /// root (CI usually is not); the read path's error mapping is also covered
    /// by `shrinking_file_is_reported_not_written` in layer/tests.rs.
    #[test]
    fn unreadable_directory_is_reported() {
        let (d, ctx) = ctx_with(&["locked/inner"]);
        let locked = d.path().join("locked");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let can_read_anyway = std::fs::read_dir(&locked).is_ok();
        let result = resolve(&ctx, &step(&["locked"], "/x"));
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        if can_read_anyway {
            eprintln!("running as root: permission checks do not apply, skipping");
            return;
        }
        let e = result.unwrap_err();
        assert!(matches!(e, BuildError::Unreadable { .. }), "{e}");
    }

    #[test]
    fn excluded_directories_are_pruned_unless_something_is_reincluded() {
        let (d, _) = ctx_with(&["vendor/a", "vendor/keep/b", "src/c"]);
        write(d.path(), ".dockerignore", b"vendor\n!vendor/keep\n");
        let ctx = Context::open(d.path()).unwrap();
        let targets: Vec<_> = resolve(&ctx, &step(&["."], "/"))
            .unwrap()
            .into_iter()
            .map(|i| i.target.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            targets,
            [
                ".dockerignore",
                "src",
                "src/c",
                "vendor/keep",
                "vendor/keep/b"
            ]
        );
    }
}
