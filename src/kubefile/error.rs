//! Every way a Kubefile can be wrong, each with the place it went wrong.
//!
//! Messages follow `FILE:LINE:COL: what was wrong; what was expected` so that
//! editors can jump to the spot and people know what to write instead.

use super::Location;

/// Instructions a Kubefile may use, listed in messages about unknown ones.
pub const SUPPORTED_INSTRUCTIONS: &str = "FROM, ARG, ENV, LABEL, COPY, ADD, CMD, ENTRYPOINT, \
                                          WORKDIR, USER, EXPOSE, VOLUME, STOPSIGNAL, MAINTAINER";

/// ` (did you mean COPY?)` for a keyword close to a supported instruction.
fn did_you_mean(keyword: &str) -> String {
    let supported: Vec<&str> = SUPPORTED_INSTRUCTIONS.split(", ").collect();
    crate::progress::text::closest(keyword, &supported)
        .map(|k| format!(" (did you mean {k}?)"))
        .unwrap_or_default()
}

/// Why a word could not be expanded; wrapped in [`KubefileError::Expansion`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandProblem {
    #[error("unterminated single quote; close it with '")]
    UnterminatedSingleQuote,
    #[error("unterminated double quote; close it with \"")]
    UnterminatedDoubleQuote,
    /// buildah 1.28 knows only `${V}`, `${V:-word}` and `${V:+word}`; `${V-w}`,
    /// `${V%w}` and an unclosed `${V` all fail there, so they fail here too.
    #[error(
        "unsupported substitution `${{{name}`; expected ${{{name}}}, ${{{name}:-default}} or ${{{name}:+alternative}}"
    )]
    UnsupportedSubstitution { name: String },
    #[error("unsupported modifier `:{modifier}` in ${{{name}:...}}; expected :- or :+")]
    UnsupportedModifier { name: String, modifier: String },
    #[error("substitutions nested more than {limit} deep; expected fewer nested ${{...}}")]
    TooDeep { limit: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubefileError {
    #[error(
        "{location}: RUN is not supported: cluster images are built FROM scratch, with no shell \
         to run commands in; put the commands in a script under scripts/ and run it at install time"
    )]
    RunNotSupported { location: Location },

    #[error("{location}: {keyword} is not supported in a Kubefile; remove it")]
    UnsupportedInstruction { location: Location, keyword: String },

    #[error(
        "{location}: unknown instruction `{keyword}`{}; expected one of {}",
        did_you_mean(keyword),
        SUPPORTED_INSTRUCTIONS
    )]
    UnknownInstruction { location: Location, keyword: String },

    #[error(
        "{location}: a second FROM (multi-stage build) is not supported; the first FROM is at {first}, \
         a Kubefile has exactly one"
    )]
    MultiStage { location: Location, first: Location },

    #[error("{location}: no FROM instruction; expected `FROM scratch` or `FROM IMAGE`, optionally after ARG lines")]
    MissingFrom { location: Location },

    #[error("{location}: {keyword} before FROM; only ARG may come before FROM")]
    BeforeFrom { location: Location, keyword: String },

    #[error("{location}: {keyword} has no arguments; expected {expected}")]
    MissingArguments {
        location: Location,
        keyword: String,
        expected: &'static str,
    },

    #[error("{location}: {keyword} has the wrong number of arguments; expected {expected}")]
    WrongArguments {
        location: Location,
        keyword: String,
        expected: &'static str,
    },

    #[error(
        "{location}: multi-stage COPY --from is not supported; copy from the build context instead"
    )]
    CopyFrom { location: Location },

    #[error("{location}: unknown flag `{flag}` for {keyword}; expected {allowed}")]
    UnknownFlag {
        location: Location,
        keyword: String,
        flag: String,
        allowed: &'static str,
    },

    #[error(
        "{location}: invalid --chmod value `{value}`; expected octal permissions such as 0644"
    )]
    InvalidChmod { location: Location, value: String },

    #[error("{location}: JSON array in {keyword} holds a value that is not a string; expected [\"word\", ...]")]
    JsonNotStrings { location: Location, keyword: String },

    #[error("{location}: can't find = in `{word}`; expected NAME=VALUE")]
    MissingEquals { location: Location, word: String },

    #[error("{location}: empty name in `{word}`; expected NAME=VALUE")]
    EmptyName { location: Location, word: String },

    #[error("{location}: cannot expand `{word}`: {problem}")]
    Expansion {
        location: Location,
        word: String,
        problem: ExpandProblem,
    },

    #[error("{location}: VOLUME path is empty; expected a path such as /data")]
    EmptyVolume { location: Location },

    #[error("{location}: invalid STOPSIGNAL `{value}`; expected a signal name (SIGTERM, KILL) or a number")]
    InvalidSignal { location: Location, value: String },

    #[error("{location}: invalid escape directive `{value}`; expected ` or \\")]
    InvalidEscape { location: Location, value: String },

    #[error("{location}: a second escape directive; only one may be used")]
    DuplicateEscape { location: Location },
}

impl KubefileError {
    /// Where the problem is, for callers that point at it themselves.
    pub fn location(&self) -> &Location {
        match self {
            Self::RunNotSupported { location }
            | Self::UnsupportedInstruction { location, .. }
            | Self::UnknownInstruction { location, .. }
            | Self::MultiStage { location, .. }
            | Self::MissingFrom { location }
            | Self::BeforeFrom { location, .. }
            | Self::MissingArguments { location, .. }
            | Self::WrongArguments { location, .. }
            | Self::CopyFrom { location }
            | Self::UnknownFlag { location, .. }
            | Self::InvalidChmod { location, .. }
            | Self::JsonNotStrings { location, .. }
            | Self::MissingEquals { location, .. }
            | Self::EmptyName { location, .. }
            | Self::Expansion { location, .. }
            | Self::EmptyVolume { location }
            | Self::InvalidSignal { location, .. }
            | Self::InvalidEscape { location, .. }
            | Self::DuplicateEscape { location } => location,
        }
    }
}
