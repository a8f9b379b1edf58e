//! From text to instructions, following Docker's Dockerfile parser.
//!
//! Parsing does no expansion: words keep their quotes, escapes and `$`, so
//! that evaluation can expand them with the variables in force at that point.
//! It does reject what a Kubefile can never do (RUN, multi-stage, unknown
//! instructions), so that a bad file fails before any file is read.
//!
//! Docker's rules kept here: directives only in the leading comment block; an
//! escape character at the end of a line (trailing blanks allowed) continues
//! it; comment lines and blank lines inside a continuation are dropped; the
//! continuation lines keep their leading whitespace.
//!
//! Submodules: `lines` (physical lines to logical ones, directives),
//! `instruction` (a keyword, its flags and its arguments' shape), `words`
//! (splitting arguments into words and pairs).

mod instruction;
mod lines;
mod words;

use super::error::KubefileError;
use super::Location;
use instruction::instruction;
use lines::{directives, logical_lines};

/// A parsed Kubefile: every instruction, FROM and the ARGs before it included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kubefile {
    /// From the `# escape=` directive; `\` by default.
    pub escape: char,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    From,
    Arg,
    Env,
    Label,
    Copy,
    Add,
    Cmd,
    Entrypoint,
    Workdir,
    User,
    Expose,
    Volume,
    StopSignal,
    Maintainer,
}

impl Keyword {
    pub fn name(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Arg => "ARG",
            Keyword::Env => "ENV",
            Keyword::Label => "LABEL",
            Keyword::Copy => "COPY",
            Keyword::Add => "ADD",
            Keyword::Cmd => "CMD",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Workdir => "WORKDIR",
            Keyword::User => "USER",
            Keyword::Expose => "EXPOSE",
            Keyword::Volume => "VOLUME",
            Keyword::StopSignal => "STOPSIGNAL",
            Keyword::Maintainer => "MAINTAINER",
        }
    }

    fn from_upper(word: &str) -> Option<Keyword> {
        Some(match word {
            "FROM" => Keyword::From,
            "ARG" => Keyword::Arg,
            "ENV" => Keyword::Env,
            "LABEL" => Keyword::Label,
            "COPY" => Keyword::Copy,
            "ADD" => Keyword::Add,
            "CMD" => Keyword::Cmd,
            "ENTRYPOINT" => Keyword::Entrypoint,
            "WORKDIR" => Keyword::Workdir,
            "USER" => Keyword::User,
            "EXPOSE" => Keyword::Expose,
            "VOLUME" => Keyword::Volume,
            "STOPSIGNAL" => Keyword::StopSignal,
            "MAINTAINER" => Keyword::Maintainer,
            _ => return None,
        })
    }

    /// The flags each instruction accepts; COPY's `--from` is recognised only
    /// to explain that it is not supported.
    fn allowed_flags(self) -> &'static str {
        match self {
            Keyword::From => "--platform=",
            Keyword::Copy | Keyword::Add => "--chmod= or --chown=",
            _ => "no flags",
        }
    }

    fn accepts_flag(self, name: &str) -> bool {
        match self {
            Keyword::From => name == "platform",
            Keyword::Copy | Keyword::Add => name == "chmod" || name == "chown",
            _ => false,
        }
    }
}

/// Text from the Kubefile, unexpanded, with where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub location: Location,
}

/// `--name=value` before the arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub name: String,
    /// Unexpanded; empty for a flag written without `=`.
    pub value: Word,
    pub location: Location,
}

/// ENV or LABEL `name=value`, split where Docker splits it: at the first `=`
/// of the raw word, before quotes are removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub name: Word,
    pub value: Word,
}

/// The arguments in the shape each instruction's Docker parser gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// `["a", "b"]`: JSON strings, already unescaped by JSON.
    Json(Vec<Word>),
    /// The whole rest of the line as one word (CMD/ENTRYPOINT shell form,
    /// WORKDIR, USER, STOPSIGNAL, MAINTAINER).
    Text(Word),
    /// Split at whitespace with no regard to quotes (FROM, COPY, ADD, EXPOSE, VOLUME).
    Words(Vec<Word>),
    /// ENV and LABEL.
    Pairs(Vec<Pair>),
    /// ARG: each word is `NAME` or `NAME=default`, split after expansion.
    ArgWords(Vec<Word>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub keyword: Keyword,
    /// Where the keyword starts.
    pub location: Location,
    pub flags: Vec<Flag>,
    pub args: Args,
}

/// Parses a Kubefile; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Kubefile, KubefileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let escape = directives(&lines, file)?;
    let mut instructions = Vec::new();
    let mut first_from: Option<Location> = None;
    for logical in logical_lines(&lines, escape) {
        let start = logical.location(file, 0);
        instructions.push(instruction(&logical, file, start, &mut first_from)?);
    }

    match instructions.iter().find(|i| i.keyword != Keyword::Arg) {
        Some(first) if first.keyword == Keyword::From => {}
        Some(first) => {
            return Err(KubefileError::BeforeFrom {
                location: first.location.clone(),
                keyword: first.keyword.name().to_string(),
            })
        }
        None => {
            let location = instructions
                .last()
                .map(|i| i.location.clone())
                .unwrap_or_else(|| Location {
                    file: file.to_string(),
                    line: 1,
                    column: 1,
                });
            return Err(KubefileError::MissingFrom { location });
        }
    }
    Ok(Kubefile {
        escape,
        instructions,
    })
}

#[cfg(test)]
mod tests;
