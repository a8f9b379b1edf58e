//! One logical line to an [`Instruction`]: its keyword, its flags, and its
//! arguments in the shape that keyword's Docker parser gives them.

use super::lines::{is_blank, skip_blanks, Logical};
use super::words::{blank_words, pairs, quoted_words};
use super::{Args, Flag, Instruction, Keyword, KubefileError, Location, Word};

/// Parses one logical line; `first_from` catches a second FROM.
pub(super) fn instruction(
    logical: &Logical,
    file: &str,
    location: Location,
    first_from: &mut Option<Location>,
) -> Result<Instruction, KubefileError> {
    let text = logical.text.as_str();
    let keyword_end = text.find(is_blank).unwrap_or(text.len());
    let keyword_text = &text[..keyword_end];
    let upper = keyword_text.to_uppercase();
    let keyword = match Keyword::from_upper(&upper) {
        Some(k) => k,
        None => {
            return Err(match upper.as_str() {
                "RUN" => KubefileError::RunNotSupported { location },
                "HEALTHCHECK" | "SHELL" | "ONBUILD" => KubefileError::UnsupportedInstruction {
                    location,
                    keyword: upper,
                },
                _ => KubefileError::UnknownInstruction {
                    location,
                    keyword: keyword_text.to_string(),
                },
            })
        }
    };
    if keyword == Keyword::From {
        if let Some(first) = first_from {
            return Err(KubefileError::MultiStage {
                location,
                first: first.clone(),
            });
        }
        *first_from = Some(location.clone());
    }

    let (flags, pos) = flags(logical, file, keyword, keyword_end)?;
    let rest_start = skip_blanks(text, pos);
    let rest = text[rest_start..].trim_end();
    if rest.is_empty() {
        return Err(KubefileError::MissingArguments {
            location,
            keyword: keyword.name().to_string(),
            expected: expected_arguments(keyword),
        });
    }

    let text_word = Word {
        text: rest.to_string(),
        location: logical.location(file, rest_start),
    };
    let args = match keyword {
        Keyword::Cmd | Keyword::Entrypoint => match json_array(&text_word, keyword, &location)? {
            Some(words) => Args::Json(words),
            None => Args::Text(text_word),
        },
        Keyword::Workdir | Keyword::User | Keyword::StopSignal | Keyword::Maintainer => {
            Args::Text(text_word)
        }
        Keyword::From | Keyword::Expose => Args::Words(blank_words(logical, file, rest_start)),
        Keyword::Copy | Keyword::Add | Keyword::Volume => {
            match json_array(&text_word, keyword, &location)? {
                Some(words) => Args::Json(words),
                None => Args::Words(blank_words(logical, file, rest_start)),
            }
        }
        Keyword::Arg => Args::ArgWords(quoted_words(logical, file, rest_start)),
        Keyword::Env | Keyword::Label => Args::Pairs(pairs(logical, file, rest_start, keyword)?),
    };
    check_counts(keyword, &args, &location)?;
    Ok(Instruction {
        keyword,
        location,
        flags,
        args,
    })
}

/// The leading `--name=value` words, up to a bare `--` or the first other
/// word, and where the arguments after them start.
fn flags(
    logical: &Logical,
    file: &str,
    keyword: Keyword,
    from: usize,
) -> Result<(Vec<Flag>, usize), KubefileError> {
    let text = logical.text.as_str();
    let mut pos = from;
    let mut flags = Vec::new();
    loop {
        let start = skip_blanks(text, pos);
        let end = text[start..]
            .find(is_blank)
            .map_or(text.len(), |n| start + n);
        let word = &text[start..end];
        if !word.starts_with("--") {
            pos = start;
            break;
        }
        pos = end;
        if word == "--" {
            break;
        }
        let flag_location = logical.location(file, start);
        let (name, value) = word[2..].split_once('=').unwrap_or((&word[2..], ""));
        if (keyword == Keyword::Copy) && name == "from" {
            return Err(KubefileError::CopyFrom {
                location: flag_location,
            });
        }
        if !keyword.accepts_flag(name) {
            return Err(KubefileError::UnknownFlag {
                location: flag_location,
                keyword: keyword.name().to_string(),
                flag: word.to_string(),
                allowed: keyword.allowed_flags(),
            });
        }
        let value_start = end - value.len();
        flags.push(Flag {
            name: name.to_string(),
            value: Word {
                text: value.to_string(),
                location: logical.location(file, value_start),
            },
            location: flag_location,
        });
    }
    Ok((flags, pos))
}

fn expected_arguments(keyword: Keyword) -> &'static str {
    match keyword {
        Keyword::From => "FROM IMAGE [AS NAME]",
        Keyword::Arg => "ARG NAME[=DEFAULT]",
        Keyword::Env => "ENV NAME=VALUE ...",
        Keyword::Label => "LABEL KEY=VALUE ...",
        Keyword::Copy => "COPY SOURCE... DEST",
        Keyword::Add => "ADD SOURCE... DEST",
        Keyword::Cmd => "CMD [\"executable\", \"arg\"] or CMD command line",
        Keyword::Entrypoint => "ENTRYPOINT [\"executable\", \"arg\"] or ENTRYPOINT command line",
        Keyword::Workdir => "WORKDIR PATH",
        Keyword::User => "USER NAME[:GROUP]",
        Keyword::Expose => "EXPOSE PORT[/PROTOCOL] ...",
        Keyword::Volume => "VOLUME PATH ... or VOLUME [\"PATH\", ...]",
        Keyword::StopSignal => "STOPSIGNAL SIGNAL",
        Keyword::Maintainer => "MAINTAINER NAME",
    }
}

/// Counts that do not depend on expansion.
fn check_counts(keyword: Keyword, args: &Args, location: &Location) -> Result<(), KubefileError> {
    let wrong = |expected| {
        Err(KubefileError::WrongArguments {
            location: location.clone(),
            keyword: keyword.name().to_string(),
            expected,
        })
    };
    match (keyword, args) {
        (Keyword::From, Args::Words(words)) => match words.as_slice() {
            [_] => Ok(()),
            [_, as_word, _] if as_word.text.eq_ignore_ascii_case("as") => Ok(()),
            _ => wrong("FROM IMAGE or FROM IMAGE AS NAME"),
        },
        (Keyword::Copy | Keyword::Add, Args::Words(w)) if w.len() < 2 => {
            wrong("at least one source and a destination")
        }
        (Keyword::Copy | Keyword::Add, Args::Json(w)) if w.len() < 2 => {
            wrong("at least one source and a destination")
        }
        (Keyword::Volume, Args::Json(w)) if w.is_empty() => wrong("at least one path"),
        _ => Ok(()),
    }
}

/// `[...]` that parses as a JSON array of strings, each string a word located
/// where `rest` starts; `None` (shell form) when it is not JSON at all, an
/// error when it is JSON with non-string values.
fn json_array(
    rest: &Word,
    keyword: Keyword,
    location: &Location,
) -> Result<Option<Vec<Word>>, KubefileError> {
    if !rest.text.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(&rest.text) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(text) => Ok(Word {
                text,
                location: rest.location.clone(),
            }),
            _ => Err(KubefileError::JsonNotStrings {
                location: location.clone(),
                keyword: keyword.name().to_string(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
