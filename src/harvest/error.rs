//! Errors of harvesting. Every variant that comes from a file says which file
//! and line, and every pull failure names the image and where it was named,
//! because "pull failed" in the middle of a build of forty images tells no one
//! which line of which manifest to fix.

use std::fmt;
use std::path::PathBuf;

use crate::registry::RegistryError;
use crate::store::StoreError;

/// Where a reference was found: a context-relative file and a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Everything that can go wrong while collecting, pulling and writing images.
#[derive(Debug, thiserror::Error)]
pub enum HarvestError {
    /// A manifest or values file that is not YAML.
    #[error("{file}:{line}:{column}: not valid YAML: {reason}; fix the file (image references are read from it at build time)")]
    Yaml {
        file: String,
        line: usize,
        column: usize,
        reason: String,
    },

    /// A list, manifest or values file that is not UTF-8 text.
    #[error("{file}: not UTF-8 text; image lists, manifests and chart values must be text files")]
    NotText { file: String },

    /// A reference that does not parse.
    #[error("{origin}: image reference {text:?} is invalid: {reason}; write it as [REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST], or exclude it in {ignore_file}")]
    BadReference {
        origin: Origin,
        text: String,
        reason: String,
        ignore_file: &'static str,
    },

    /// A `{{ … }}` template where an image should be: only Helm knows its value.
    #[error("{origin}: image {text:?} is a template, which cannot be resolved at build time; list the image it renders to in an images/shim/ file (one reference a line) and add a line matching the template, e.g. {suggestion:?}, to {ignore_file}")]
    Templated {
        origin: Origin,
        text: String,
        suggestion: String,
        ignore_file: &'static str,
    },

    /// An image map (`repository:` …) whose tag is empty and cannot be inferred.
    #[error("{origin}: image {repository:?} has no tag and no digest, and no Chart.yaml appVersion next to the values file to default to; give it a tag")]
    MissingTag { origin: Origin, repository: String },

    /// A bad pattern in the exclude file or the lists glob.
    #[error("{file}:{line}: bad pattern {pattern:?}: {reason}")]
    BadPattern {
        file: String,
        line: usize,
        pattern: String,
        reason: String,
    },

    /// `archives_dir` is absolute or climbs out of the rootfs.
    #[error("archives directory {dir:?} is invalid: {reason}")]
    BadArchivesDir { dir: String, reason: String },

    /// The registry refused or failed one image.
    #[error("cannot pull {reference} (named at {origin}{}): {source}", more(.also))]
    Pull {
        reference: String,
        origin: Origin,
        /// How many other places name the same image.
        also: usize,
        #[source]
        source: Box<RegistryError>,
    },

    /// Two images would be written to the same archive file or registry tag.
    #[error("{first} and {second} would both be written to {target} (with different content); exclude one of them in {ignore_file}")]
    NameClash {
        first: String,
        second: String,
        target: String,
        ignore_file: &'static str,
    },

    /// The registry-format tree cannot carry this image under its name.
    #[error("{reference}: {reason}")]
    Unsupported { reference: String, reason: String },

    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Store(#[from] StoreError),

    /// A registry option that is wrong for every image (a bad `--platform`).
    #[error(transparent)]
    Registry(Box<RegistryError>),

    /// Reading the context's ignore file.
    #[error(transparent)]
    Ignore(#[from] crate::ignore::IgnoreError),

    #[error("cannot start the async runtime for pulling: {0}")]
    Runtime(#[source] std::io::Error),

    /// Several problems, all reported at once (one per line).
    #[error("{} with the images of this build:\n{}", crate::progress::text::count(.0.len(), "problem"), list(.0))]
    Many(Vec<HarvestError>),
}

impl From<RegistryError> for HarvestError {
    fn from(e: RegistryError) -> Self {
        HarvestError::Registry(Box::new(e))
    }
}

fn more(also: &usize) -> String {
    match also {
        0 => String::new(),
        1 => " and in 1 other place".to_string(),
        n => format!(" and in {n} other places"),
    }
}

fn list(errors: &[HarvestError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl HarvestError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| HarvestError::Io {
            action,
            path,
            source,
        }
    }

    /// One error as itself, several as [`HarvestError::Many`]; `None` if empty.
    pub(crate) fn combine(mut errors: Vec<HarvestError>) -> Option<HarvestError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(HarvestError::Many(errors)),
        }
    }

    /// (file, line) of a problem found in a file, for sorting.
    pub(crate) fn position(&self) -> (String, usize) {
        match self {
            HarvestError::Yaml { file, line, .. } => (file.clone(), *line),
            HarvestError::NotText { file } => (file.clone(), 0),
            HarvestError::BadReference { origin, .. }
            | HarvestError::Templated { origin, .. }
            | HarvestError::MissingTag { origin, .. }
            | HarvestError::Pull { origin, .. } => (origin.file.clone(), origin.line),
            _ => (String::new(), 0),
        }
    }

    /// The individual problems (one for anything but [`HarvestError::Many`]).
    pub fn problems(&self) -> Vec<&HarvestError> {
        match self {
            HarvestError::Many(v) => v.iter().collect(),
            other => vec![other],
        }
    }
}
