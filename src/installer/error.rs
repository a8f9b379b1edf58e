//! The installer's errors: each names the file, layer or step it is about.

use std::io;
use std::path::PathBuf;

use crate::plan::{PlanError, TemplateError};

#[derive(Debug, thiserror::Error)]
pub enum InstallerError {
    #[error("the plan is not valid: {}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    InvalidPlan(Vec<PlanError>),
    #[error("installer gc: {0}")]
    Gc(String),
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {}: {source}", layer.display())]
    Layer {
        layer: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("layer {}: entry {entry:?} refused: {reason}", layer.display())]
    UnsafeEntry {
        layer: PathBuf,
        entry: String,
        reason: &'static str,
    },
    #[error("layer {}: its content has digest {found}, but its name says {expected}", layer.display())]
    DigestMismatch {
        layer: PathBuf,
        expected: String,
        found: String,
    },
    #[error("layer {}: the operator's copy of the blob has digest {found}, not {expected}: its store is damaged; check it with `sealrs fsck` and pull or build the image again", layer.display())]
    OperatorDigestMismatch {
        layer: PathBuf,
        expected: String,
        found: String,
    },
    #[error("layer {}: the operator sent the blob but not its digest (it stopped sending: its report says why)", layer.display())]
    NoDigestSent { layer: PathBuf },
    #[error("layer {}: the operator's sums of its files do not match what it holds: {detail}", layer.display())]
    SentSums { layer: PathBuf, detail: String },
    #[error("layer {}: the input ended after {got} of its {size} bytes (the sender stopped early)", layer.display())]
    ShortLayer { layer: PathBuf, got: u64, size: u64 },
    #[error("{}: a layer directory or received blob must be named by its sha256 digest", layer.display())]
    UnnamedBlob { layer: PathBuf },
    #[error("{path}: refused: {reason}")]
    UnsafePath { path: String, reason: String },
    #[error("rendering {path}: {source}")]
    Template {
        path: String,
        #[source]
        source: TemplateError,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    #[error("working directory {} is not a directory on this host (is it in the image?)", path.display())]
    NoWorkDir { path: PathBuf },
    #[error("{what} did not happen within {secs}s")]
    Timeout { what: String, secs: u64 },
    #[error("{program} exited with code {code}")]
    Exit { program: String, code: i32 },
    #[error("{program} was killed by a signal")]
    Signal { program: String },
    #[error("the plan is for runtime {runtime:?}, which has no layout in this installer (it has {known})")]
    NoLayout { runtime: String, known: String },
    #[error(transparent)]
    Request(#[from] super::request::RequestError),
}

impl InstallerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| InstallerError::Io { op, path, source }
    }
}
