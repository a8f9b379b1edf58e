//! Errors of the build module.
//!
//! Every variant carries what a person needs to fix the problem without a
//! debugger: the Kubefile location of the instruction (`Kubefile:3:1`), the path
//! involved, and a hint. Callers match on variants (tests do), so the data stays
//! in fields rather than being flattened into a string.

use std::io;
use std::path::PathBuf;

use crate::kubefile::Location;

/// Errors that a blob sink (the store) reports; boxed so that the store's own
/// error type passes through unchanged and `?` converts it.
pub type SinkError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Which instruction an error is about; a byte rather than a `&str` keeps
/// `BuildError` small enough to return by value everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    Copy,
    Add,
}

impl std::fmt::Display for Instruction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Instruction::Copy => "COPY",
            Instruction::Add => "ADD",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("build context {path} does not exist; pass an existing directory as CONTEXT")]
    ContextMissing { path: PathBuf },

    #[error(
        "build context {path} is not a directory; pass the directory that holds the files to copy"
    )]
    ContextNotDir { path: PathBuf },

    #[error("cannot read build context {path}: {source}")]
    ContextUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Ignore(#[from] crate::ignore::IgnoreError),

    #[error("{location}: {instruction} source {source_path:?}: bad pattern: {reason}")]
    SourcePattern {
        location: Location,
        instruction: Instruction,
        source_path: String,
        reason: String,
    },

    #[error("{location}: {instruction} from a URL ({url}) is not supported; download it into the context first")]
    UrlSource {
        location: Location,
        instruction: Instruction,
        url: String,
    },

    #[error("{location}: {instruction} source {source_path:?} not found in the build context {context}; paths are relative to the context directory")]
    SourceNotFound {
        location: Location,
        instruction: Instruction,
        source_path: String,
        context: PathBuf,
    },

    #[error("{location}: {instruction} source {source_path:?} is excluded by {ignore_file}; remove the matching pattern or add a `!` line to re-include it")]
    SourceExcluded {
        location: Location,
        instruction: Instruction,
        source_path: String,
        ignore_file: PathBuf,
    },

    #[error("{location}: {instruction} source {source_path:?} is outside the build context {context}; move the file into the context")]
    SourceOutsideContext {
        location: Location,
        instruction: Instruction,
        source_path: String,
        context: PathBuf,
    },

    #[error("{location}: {instruction} source {source_path:?} is a symlink that resolves to {resolved}, outside the build context {context}; copy the target into the context instead")]
    SymlinkOutsideContext {
        location: Location,
        instruction: Instruction,
        source_path: String,
        resolved: PathBuf,
        context: PathBuf,
    },

    #[error("{location}: {instruction} source {source_path:?}: symlink loop at {path}; fix or remove the link")]
    SymlinkLoop {
        location: Location,
        instruction: Instruction,
        source_path: String,
        path: PathBuf,
    },

    #[error("{location}: {instruction}: cannot read {path}: {source}; check its permissions")]
    Unreadable {
        location: Location,
        instruction: Instruction,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{location}: {instruction}: {path} is a {kind}; only regular files, directories and symlinks can go into an image, exclude it in .dockerignore")]
    SpecialFile {
        location: Location,
        instruction: Instruction,
        path: PathBuf,
        kind: &'static str,
    },

    #[error("{location}: {instruction} has {count} sources but the destination {dest:?} does not end with `/`; write {dest:?} as \"{dest}/\"")]
    DestNotDirectory {
        location: Location,
        instruction: Instruction,
        dest: String,
        count: usize,
    },

    #[error("{location}: {instruction}: /{path} would be both a directory and a file or symlink in the same layer; copy them with separate instructions or rename one")]
    DestinationConflict {
        location: Location,
        instruction: Instruction,
        path: String,
    },

    #[error("{location}: ADD {archive}: entry {entry:?} would be written outside the destination (absolute path or `..`); repack the archive with relative paths")]
    ArchiveEscape {
        location: Location,
        archive: PathBuf,
        entry: String,
    },

    #[error("{location}: ADD {archive}: entry {entry:?} is {kind}, which an image layer cannot carry; repack the archive without it")]
    ArchiveUnsupportedEntry {
        location: Location,
        archive: PathBuf,
        entry: String,
        kind: String,
    },

    #[error("{location}: ADD {archive}: cannot read the archive: {source}")]
    ArchiveRead {
        location: Location,
        archive: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{location}: {instruction}: {path} changed size while it was being copied; retry when nothing writes to the context")]
    FileChanged {
        location: Location,
        instruction: Instruction,
        path: PathBuf,
    },

    #[error("{location}: {instruction}: writing the layer failed: {source}")]
    LayerWrite {
        location: Location,
        instruction: Instruction,
        #[source]
        source: io::Error,
    },

    #[error("{location}: {instruction}: the store refused the layer: {source}")]
    Store {
        location: Location,
        instruction: Instruction,
        #[source]
        source: SinkError,
    },

    #[error("cannot write the layer cache {path}: {source}")]
    CacheWrite {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("no image name given; pass -t NAME:TAG")]
    NoTag,

    #[error("no Kubefile found; tried {}. Pass one with -f", display_paths(tried))]
    KubefileNotFound { tried: Vec<PathBuf> },

    #[error("cannot read the Kubefile {path}: {source}")]
    ReadKubefile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Kubefile(#[from] crate::kubefile::KubefileError),

    #[error("{location}: FROM {name}: {source}")]
    BaseName {
        name: String,
        location: String,
        #[source]
        source: crate::reference::ReferenceError,
    },

    #[error("{location}: the base image {name} is not in the local store and could not be pulled: {source}")]
    BaseNotFound {
        name: String,
        location: String,
        #[source]
        source: SinkError,
    },

    #[error(transparent)]
    StoreAccess(#[from] crate::store::StoreError),

    #[error("harvesting the images the rootfs names: {0}")]
    Harvest(#[from] crate::harvest::HarvestError),

    #[error("{image} does not hold the {layout} layout; {} to fix:\n{}\nfix them and build again, or pass --skip-validation to build it anyway", problem_count(problems), list_problems(problems))]
    Layout {
        image: String,
        layout: String,
        problems: Vec<crate::layout::Problem>,
    },

    #[error(
        "{image}: {}:\n{}\nfix them and build again, or pass --skip-validation to build it anyway",
        problem_count(problems),
        list_problems(problems)
    )]
    Labels {
        image: String,
        problems: Vec<crate::layout::Problem>,
    },

    #[error(transparent)]
    LayoutScan(#[from] crate::layout::ScanError),

    #[error("cannot assemble the image: {0}")]
    Assemble(String),

    #[error("the image is a rootfs for {target}, but this sealrs runs on {host}, so it cannot embed itself as the image's installer; pass --installer PATH, a sealrs built for {target} (cargo build --release --target {rust_target}; see \"Other architectures\" in the README), or --no-installer")]
    InstallerArch {
        target: String,
        host: String,
        rust_target: String,
    },

    #[error("cannot embed the installer {path}: {source}")]
    Installer {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("embedding the installer {path}: the store refused the layer: {source}")]
    InstallerStore {
        path: PathBuf,
        #[source]
        source: SinkError,
    },
}

impl BuildError {
    /// Wraps a failure to build or serialize OCI structures; these come from our
    /// own data, so they mean a bug rather than bad input, but still must not panic.
    pub(crate) fn oci(err: impl std::fmt::Display) -> BuildError {
        BuildError::Assemble(err.to_string())
    }
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn problem_count(problems: &[crate::layout::Problem]) -> String {
    crate::progress::text::count(problems.len(), "problem")
}

fn list_problems(problems: &[crate::layout::Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}
