//! Kubefiles: Dockerfile syntax, evaluated the way buildah evaluates it.
//!
//! Parsing (`parse`) keeps every instruction with its line and column and its
//! words unexpanded; evaluation (`evaluate_from`, then `evaluate`) applies ARG,
//! ENV and `--build-arg` values exactly as Dockerfile does, so the image config
//! we write equals the one buildah derives from the same file. Nothing here
//! touches the disk: the caller reads the file and resolves the base image.
//!
//! Submodules: `parser` (text to instructions), `expand` (variables and
//! quotes), `eval` (instructions to config), `error`.

use std::collections::BTreeMap;

mod error;
mod eval;
mod expand;
mod parser;

pub use error::{ExpandProblem, KubefileError, SUPPORTED_INSTRUCTIONS};
pub use eval::{evaluate, evaluate_from};
pub use parser::{parse, Args, Flag, Instruction, Keyword, Kubefile, Pair, Word};

/// Where in a Kubefile something is, for error messages (`file:line:column`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    /// 1-based.
    pub line: usize,
    /// 1-based.
    pub column: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The base image named by FROM, with variables already expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    Scratch,
    /// As written (after expansion); the caller normalizes and resolves it.
    Image {
        name: String,
        location: Location,
    },
}

/// The parts of an image config a Kubefile can change. The caller fills it
/// from the base image's config, `evaluate` applies the instructions to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigState {
    /// In order, `KEY=VALUE` semantics (a later ENV of the same key replaces in place).
    pub env: Vec<(String, String)>,
    pub labels: BTreeMap<String, String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    pub stop_signal: Option<String>,
    /// MAINTAINER, which buildah writes as the config's `author`.
    pub author: Option<String>,
}

/// One COPY or ADD, with every word expanded and the destination made absolute
/// against WORKDIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    pub location: Location,
    /// Source paths relative to the context, as written after expansion; may hold globs.
    pub sources: Vec<String>,
    /// Absolute path in the image; a trailing `/` (or several sources) means a directory.
    pub dest: String,
    /// From `--chmod=`.
    pub chmod: Option<u32>,
    /// ADD: local tar/tar.gz/tar.zst archives are extracted at `dest`.
    pub extract_archives: bool,
}

/// Values that come from outside the Kubefile.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// For the automatic platform ARGs (`TARGETOS`, `TARGETARCH`, ...), e.g. "linux".
    pub target_os: String,
    /// e.g. "amd64".
    pub target_arch: String,
}

/// The result of evaluating a Kubefile against its base config.
#[derive(Debug, Clone)]
pub struct Stage {
    pub config: ConfigState,
    /// In file order: each becomes one or more layers.
    pub copies: Vec<CopyStep>,
    /// `--build-arg` names that no ARG consumed (buildah warns about them).
    pub unused_build_args: Vec<String>,
    /// What deserves a warning but builds (a LABEL reading an undefined
    /// variable, as BuildKit's UndefinedVar check warns).
    pub warnings: Vec<String>,
}
