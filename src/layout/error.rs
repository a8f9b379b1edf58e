//! Errors of the layout module: a broken layout file, a layer that cannot be
//! read, and the problems a rootfs has against its layout.

use std::io;

use serde::Serialize;

/// A layout file that does not parse or contradicts itself.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },

    #[error("{file}: rule {pattern:?}: {message}")]
    Rule {
        file: String,
        pattern: String,
        message: String,
    },

    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// A layer blob that cannot be read while walking the rootfs.
#[derive(Debug, thiserror::Error)]
#[error("reading layer {layer} to check the rootfs: {source}; `sealrs fsck` tells whether the store is damaged")]
pub struct ScanError {
    pub layer: String,
    #[source]
    pub source: io::Error,
}

/// One thing wrong with a rootfs. Validation collects all of them, so a user
/// fixes everything in one go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "kebab-case")]
pub enum Problem {
    #[error("{pattern}: missing; expected {about}")]
    Missing { pattern: String, about: String },

    #[error("{path}: not executable (mode {mode:04o}); `chmod +x` it in the build context")]
    NotExecutable { path: String, mode: u32 },

    #[error("{path}: not a program: expected an ELF binary or a `#!` script, found {found}")]
    NotAProgram { path: String, found: String },

    #[error("{path}: an ELF binary for {found}, but the image is for {expected}; fetch the {expected} build or pass --platform")]
    WrongArchitecture {
        path: String,
        found: String,
        expected: String,
    },

    #[error("{path}: not a script: the first line must be a `#!` interpreter line")]
    NotAScript { path: String },

    #[error("{path}{}: not valid YAML: {message}", position(*line, *column))]
    NotYaml {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    #[error("{path}:{line}: apiVersion/kind {found} is not one this file may hold ({allowed})")]
    UnknownYamlKind {
        path: String,
        line: usize,
        found: String,
        allowed: String,
    },

    #[error("{path}: not valid TOML: {message}")]
    NotToml { path: String, message: String },

    #[error("{path}: not an image archive: {reason}")]
    NotImageArchive { path: String, reason: String },

    #[error("{path}:{line}: {text:?} is not an image reference: {reason}")]
    BadImageList {
        path: String,
        line: usize,
        text: String,
        reason: String,
    },

    #[error("{path}: not allowed here: {reason}")]
    Forbidden { path: String, reason: String },

    #[error("{path}: a symlink to {target}, which is not in the image")]
    DanglingLink { path: String, target: String },

    #[error("{path}: a {found}, but {about} must be a regular file")]
    NotAFile {
        path: String,
        found: String,
        about: String,
    },

    #[error("label {label} is missing (also read as {aliases}); add LABEL {label}=...")]
    MissingLabel { label: String, aliases: String },

    #[error("label {key}={value:?}: {expected}")]
    BadLabel {
        key: String,
        value: String,
        expected: String,
    },

    #[error("cannot tell the runtime of this rootfs: no sealrs.io/runtime label and none of {markers} in the image; add LABEL sealrs.io/runtime=... or the runtime's binary")]
    NoRuntime { markers: String },

    #[error("cannot tell the runtime of this rootfs: it holds {found}; add LABEL sealrs.io/runtime=... to say which one")]
    AmbiguousRuntime { found: String },
}

fn position(line: usize, column: usize) -> String {
    if line == 0 {
        "".to_string()
    } else {
        format!(":{line}:{column}")
    }
}
