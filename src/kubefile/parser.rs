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

use super::error::KubefileError;
use super::Location;

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

/// One instruction's text after continuations are joined, with a map back to
/// the physical lines so that any word can be located.
struct Logical {
    text: String,
    /// Inside a line the escape character also keeps a quote or a blank from
    /// splitting words (Docker's `parseWords`).
    escape: char,
    /// (byte offset in `text`, line, column of that byte), ascending.
    pieces: Vec<(usize, usize, usize)>,
}

impl Logical {
    fn location(&self, file: &str, offset: usize) -> Location {
        let (start, line, column) = self
            .pieces
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= offset)
            .copied()
            .unwrap_or((0, 1, 1));
        let between = self.text.get(start..offset).unwrap_or("");
        Location {
            file: file.to_string(),
            line,
            column: column + between.chars().count(),
        }
    }
}

/// Docker's `[\t\v\f\r ]`, which splits keywords and plain word lists.
fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{0b}' | '\u{0c}' | '\r')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Parses a Kubefile; `file` names it in error messages.
pub fn parse(text: &str, file: &str) -> Result<Kubefile, KubefileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let escape = directives(&lines, file)?;
    let loc = |line: usize, column: usize| Location {
        file: file.to_string(),
        line,
        column,
    };

    let mut instructions = Vec::new();
    let mut first_from: Option<Location> = None;
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let line_no = i + 1;
        i += 1;
        if is_comment(raw) {
            continue;
        }
        let trimmed = raw.trim_start();
        let column = raw.chars().count() - trimmed.chars().count() + 1;
        let mut logical = Logical {
            text: String::new(),
            escape,
            pieces: vec![(0, line_no, column)],
        };
        let (first, mut continued) = strip_continuation(trimmed, escape);
        logical.text.push_str(first);
        while continued && i < lines.len() {
            let raw = lines[i];
            i += 1;
            if is_comment(raw) || raw.trim_start().is_empty() {
                continue;
            }
            let (piece, more) = strip_continuation(raw, escape);
            logical.pieces.push((logical.text.len(), i, 1));
            logical.text.push_str(piece);
            continued = more;
        }
        if logical.text.trim().is_empty() {
            continue;
        }
        let start = loc(line_no, column);
        if let Some(instruction) = instruction(&logical, file, start, &mut first_from)? {
            instructions.push(instruction);
        }
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
                .unwrap_or_else(|| loc(1, 1));
            return Err(KubefileError::MissingFrom { location });
        }
    }
    Ok(Kubefile {
        escape,
        instructions,
    })
}

/// Reads the directives at the top: `escape` (honoured) and `syntax`
/// (ignored). Like BuildKit, and unlike buildah 1.28, `# syntax=` does not end
/// the directive block, so `# escape=` may follow it.
fn directives(lines: &[&str], file: &str) -> Result<char, KubefileError> {
    let mut escape = None;
    for (index, line) in lines.iter().enumerate() {
        let Some((key, value)) = directive(line) else {
            break;
        };
        let location = Location {
            file: file.to_string(),
            line: index + 1,
            column: 1,
        };
        match key.as_str() {
            "escape" => {
                if escape.is_some() {
                    return Err(KubefileError::DuplicateEscape { location });
                }
                escape = Some(match value {
                    "\\" => '\\',
                    "`" => '`',
                    other => {
                        return Err(KubefileError::InvalidEscape {
                            location,
                            value: other.to_string(),
                        })
                    }
                });
            }
            "syntax" => {}
            _ => break,
        }
    }
    Ok(escape.unwrap_or('\\'))
}

/// `# key = value`, with key lower-cased; `None` if the line is no directive.
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let (key, value) = rest.split_once('=')?;
    let key = key.trim_end();
    let mut chars = key.chars();
    let first_is_letter = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_is_letter || !chars.all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value))
}

/// Removes a trailing escape character (and blanks after it); tells whether
/// the instruction continues on the next line.
fn strip_continuation(line: &str, escape: char) -> (&str, bool) {
    let without_blanks = line.trim_end_matches([' ', '\t']);
    match without_blanks.strip_suffix(escape) {
        Some(rest) => (rest, true),
        None => (line, false),
    }
}

fn instruction(
    logical: &Logical,
    file: &str,
    location: Location,
    first_from: &mut Option<Location>,
) -> Result<Option<Instruction>, KubefileError> {
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

    // Flags: leading `--words`, up to a bare `--` or the first other word.
    let mut pos = keyword_end;
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
    let rest_start = skip_blanks(text, pos);
    let rest = text[rest_start..].trim_end();
    let missing = |expected| KubefileError::MissingArguments {
        location: location.clone(),
        keyword: keyword.name().to_string(),
        expected,
    };
    if rest.is_empty() {
        return Err(missing(expected_arguments(keyword)));
    }

    let text_word = || Word {
        text: rest.to_string(),
        location: logical.location(file, rest_start),
    };
    let args = match keyword {
        Keyword::Cmd | Keyword::Entrypoint => match json_array(rest, keyword, &location)? {
            Some(values) => Args::Json(
                values
                    .into_iter()
                    .map(|t| word_at(t, &text_word()))
                    .collect(),
            ),
            None => Args::Text(text_word()),
        },
        Keyword::Workdir | Keyword::User | Keyword::StopSignal | Keyword::Maintainer => {
            Args::Text(text_word())
        }
        Keyword::From | Keyword::Expose => Args::Words(blank_words(logical, file, rest_start)),
        Keyword::Copy | Keyword::Add | Keyword::Volume => {
            match json_array(rest, keyword, &location)? {
                Some(values) => Args::Json(
                    values
                        .into_iter()
                        .map(|t| word_at(t, &text_word()))
                        .collect(),
                ),
                None => Args::Words(blank_words(logical, file, rest_start)),
            }
        }
        Keyword::Arg => Args::ArgWords(quoted_words(logical, file, rest_start)),
        Keyword::Env | Keyword::Label => Args::Pairs(pairs(logical, file, rest_start, keyword)?),
    };
    check_counts(keyword, &args, &location)?;
    Ok(Some(Instruction {
        keyword,
        location,
        flags,
        args,
    }))
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

fn word_at(text: String, whole: &Word) -> Word {
    Word {
        text,
        location: whole.location.clone(),
    }
}

fn skip_blanks(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c| !is_blank(c))
        .map_or(text.len(), |n| from + n)
}

/// `[...]` that parses as a JSON array of strings; `None` (shell form) when it
/// is not JSON at all, an error when it is JSON with non-string values.
fn json_array(
    rest: &str,
    keyword: Keyword,
    location: &Location,
) -> Result<Option<Vec<String>>, KubefileError> {
    if !rest.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(KubefileError::JsonNotStrings {
                location: location.clone(),
                keyword: keyword.name().to_string(),
            }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Splits at blanks, ignoring quotes (Docker's `parseStringsWhitespaceDelimited`).
fn blank_words(logical: &Logical, file: &str, from: usize) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (offset, c) in logical.text[from..].char_indices() {
        let offset = from + offset;
        match (is_blank(c), start) {
            (true, Some(s)) => {
                words.push(Word {
                    text: logical.text[s..offset].to_string(),
                    location: logical.location(file, s),
                });
                start = None;
            }
            (false, None) => start = Some(offset),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(Word {
            text: logical.text[s..].to_string(),
            location: logical.location(file, s),
        });
    }
    words
}

/// Splits at whitespace outside quotes, keeping quotes and escapes in the
/// words (Docker's `parseWords`). The escape here is the file's escape
/// character: it protects a quote or a blank from splitting.
fn quoted_words(logical: &Logical, file: &str, from: usize) -> Vec<Word> {
    let escape = logical.escape;
    let text = &logical.text;
    let mut words = Vec::new();
    let mut current = String::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = text[from..]
        .char_indices()
        .map(|(o, c)| (from + o, c))
        .peekable();
    while let Some((offset, c)) = chars.next() {
        let Some(word_start) = start else {
            if !c.is_whitespace() {
                start = Some(offset);
                // Reprocess this character as part of a word.
                process_word_char(
                    c,
                    &mut chars,
                    &mut current,
                    &mut quote,
                    &mut blank_ok,
                    escape,
                );
            }
            continue;
        };
        if quote.is_none() && c.is_whitespace() {
            if blank_ok || !current.is_empty() {
                words.push(Word {
                    text: std::mem::take(&mut current),
                    location: logical.location(file, word_start),
                });
            }
            start = None;
            blank_ok = false;
            continue;
        }
        process_word_char(
            c,
            &mut chars,
            &mut current,
            &mut quote,
            &mut blank_ok,
            escape,
        );
    }
    if let Some(word_start) = start {
        if blank_ok || !current.is_empty() {
            words.push(Word {
                text: current,
                location: logical.location(file, word_start),
            });
        }
    }
    words
}

fn process_word_char(
    c: char,
    chars: &mut std::iter::Peekable<impl Iterator<Item = (usize, char)>>,
    current: &mut String,
    quote: &mut Option<char>,
    blank_ok: &mut bool,
    escape: char,
) {
    match *quote {
        None => {
            if c == '\'' || c == '"' {
                *quote = Some(c);
                *blank_ok = true;
            }
            if c == escape {
                match chars.next() {
                    // An escape at the very end is dropped.
                    None => return,
                    Some((_, next)) => {
                        current.push(c);
                        current.push(next);
                        return;
                    }
                }
            }
            current.push(c);
        }
        Some(q) => {
            if c == q {
                *quote = None;
            }
            if c == escape && q != '\'' {
                match chars.next() {
                    None => {
                        *quote = None;
                        return;
                    }
                    Some((_, next)) => {
                        current.push(c);
                        current.push(next);
                        return;
                    }
                }
            }
            current.push(c);
        }
    }
}

/// ENV and LABEL arguments: `NAME=VALUE ...`, or the legacy `NAME VALUE...`
/// whose value is the rest of the line, spaces and all.
fn pairs(
    logical: &Logical,
    file: &str,
    from: usize,
    keyword: Keyword,
) -> Result<Vec<Pair>, KubefileError> {
    let words = quoted_words(logical, file, from);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.text.contains('=') {
        let text = &logical.text;
        let name_end = text[from..].find(is_blank).map_or(text.len(), |n| from + n);
        let value_start = skip_blanks(text, name_end);
        let value = text[value_start..].trim_end();
        if value.is_empty() {
            return Err(KubefileError::WrongArguments {
                location: logical.location(file, from),
                keyword: keyword.name().to_string(),
                expected: "NAME=VALUE, or NAME followed by a value",
            });
        }
        return Ok(vec![Pair {
            name: Word {
                text: text[from..name_end].to_string(),
                location: logical.location(file, from),
            },
            value: Word {
                text: value.to_string(),
                location: logical.location(file, value_start),
            },
        }]);
    }
    words
        .into_iter()
        .map(|word| {
            let Some((name, value)) = word.text.split_once('=') else {
                return Err(KubefileError::MissingEquals {
                    location: word.location,
                    word: word.text,
                });
            };
            let value_location = Location {
                column: word.location.column + name.chars().count() + 1,
                ..word.location.clone()
            };
            Ok(Pair {
                name: Word {
                    text: name.to_string(),
                    location: word.location.clone(),
                },
                value: Word {
                    text: value.to_string(),
                    location: value_location,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubefile::SUPPORTED_INSTRUCTIONS;

    fn err(text: &str) -> String {
        parse(text, "K").unwrap_err().to_string()
    }

    fn only(text: &str) -> Instruction {
        let kf = parse(text, "K").unwrap();
        kf.instructions.into_iter().last().unwrap()
    }

    #[test]
    fn keywords_are_case_insensitive_and_located() {
        let kf = parse("\n  from scratch AS base\n\tLaBeL a=1\n", "K").unwrap();
        let got: Vec<_> = kf
            .instructions
            .iter()
            .map(|i| (i.keyword, i.location.line, i.location.column))
            .collect();
        assert_eq!(got, [(Keyword::From, 2, 3), (Keyword::Label, 3, 2)]);
    }

    #[test]
    fn continuation_joins_lines_skipping_comments_and_blank_lines() {
        let i = only("FROM scratch\nLABEL a=1 \\  \n# note\n\n   \n  b=2\n");
        let Args::Pairs(pairs) = i.args else { panic!() };
        let names: Vec<_> = pairs
            .iter()
            .map(|p| {
                (
                    p.name.text.as_str(),
                    p.value.location.line,
                    p.value.location.column,
                )
            })
            .collect();
        assert_eq!(names, [("a", 2, 9), ("b", 6, 5)]);
    }

    #[test]
    fn continuation_lines_keep_leading_whitespace() {
        let i = only("FROM scratch\nENV P one \\\n   two\n");
        let Args::Pairs(pairs) = i.args else { panic!() };
        assert_eq!(pairs[0].value.text, "one    two");
    }

    #[test]
    fn escape_directive_changes_continuation() {
        let kf = parse("# escape=`\nFROM scratch\nLABEL a=c:\\x `\n b=2\n", "K").unwrap();
        assert_eq!(kf.escape, '`');
        assert_eq!(kf.instructions.len(), 2);
    }

    #[test]
    fn syntax_directive_is_ignored_and_escape_may_follow_it() {
        let kf = parse(
            "# syntax=docker/dockerfile:1\n#  ESCAPE = `  \nFROM scratch\n",
            "K",
        )
        .unwrap();
        assert_eq!(kf.escape, '`');
    }

    #[test]
    fn directives_after_a_comment_are_comments() {
        let kf = parse("# hello\n# escape=`\nFROM scratch\n", "K").unwrap();
        assert_eq!(kf.escape, '\\');
    }

    #[test]
    fn crlf_and_bom_are_accepted() {
        let kf = parse("\u{feff}FROM scratch\r\nLABEL a=1 \\\r\n  b=2\r\n", "K").unwrap();
        assert_eq!(kf.instructions.len(), 2);
    }

    #[test]
    fn json_form_only_when_it_parses() {
        let i = only("FROM scratch\nCMD [\"kubectl apply -f $(VAR)\"]\n");
        assert!(matches!(i.args, Args::Json(ref w) if w[0].text == "kubectl apply -f $(VAR)"));
        let i = only("FROM scratch\nCMD ['a']\n");
        assert!(matches!(i.args, Args::Text(ref w) if w.text == "['a']"));
        let i = only("FROM scratch\nCMD [\"a\",\n");
        assert!(matches!(i.args, Args::Text(ref w) if w.text == "[\"a\","));
    }

    #[test]
    fn flags_are_split_off_with_locations() {
        let i = only("FROM scratch\nCOPY --chmod=0755 --chown=1:1 a b /d/\n");
        let flags: Vec<_> = i
            .flags
            .iter()
            .map(|f| (f.name.as_str(), f.value.text.as_str(), f.location.column))
            .collect();
        assert_eq!(flags, [("chmod", "0755", 6), ("chown", "1:1", 19)]);
        assert!(matches!(i.args, Args::Words(ref w) if w.len() == 3 && w[2].location.column == 35));
        let kf = parse("FROM --platform=linux/amd64 scratch AS b\n", "K").unwrap();
        assert_eq!(kf.instructions[0].flags[0].name, "platform");
    }

    #[test]
    fn words_split_by_parse_words_keep_quotes_and_escapes() {
        let i = only("FROM scratch\nLABEL \"a b\"=\"c d\" e=f\\ g\n");
        let Args::Pairs(pairs) = i.args else { panic!() };
        let got: Vec<_> = pairs
            .iter()
            .map(|p| (p.name.text.as_str(), p.value.text.as_str()))
            .collect();
        assert_eq!(got, [("\"a b\"", "\"c d\""), ("e", "f\\ g")]);
    }

    #[test]
    fn error_run_explains_why() {
        assert_eq!(
            err("FROM scratch\n  RUN make\n"),
            "K:2:3: RUN is not supported: cluster images are built FROM scratch, with no shell to run \
             commands in; put the commands in a script under scripts/ and run it at install time"
        );
    }

    #[test]
    fn error_unsupported_instructions() {
        for keyword in ["HEALTHCHECK", "SHELL", "ONBUILD"] {
            assert_eq!(
                err(&format!("FROM scratch\n{} x\n", keyword.to_lowercase())),
                format!("K:2:1: {keyword} is not supported in a Kubefile; remove it")
            );
        }
    }

    #[test]
    fn error_unknown_instruction_lists_supported_ones() {
        assert_eq!(
            err("FROM scratch\nLABEL a=1\nCOPPY a b\n"),
            format!("K:3:1: unknown instruction `COPPY`; expected one of {SUPPORTED_INSTRUCTIONS}")
        );
    }

    #[test]
    fn error_second_from() {
        assert_eq!(
            err("FROM scratch\nFROM other AS x\n"),
            "K:2:1: a second FROM (multi-stage build) is not supported; the first FROM is at K:1:1, \
             a Kubefile has exactly one"
        );
    }

    #[test]
    fn error_missing_from() {
        assert_eq!(
            err(""),
            "K:1:1: no FROM instruction; expected `FROM scratch` or `FROM IMAGE`, optionally after ARG lines"
        );
        assert_eq!(
            err("ARG A\n# c\nARG B\n"),
            "K:3:1: no FROM instruction; expected `FROM scratch` or `FROM IMAGE`, optionally after ARG lines"
        );
        assert_eq!(
            err("ARG A\nLABEL a=1\nFROM scratch\n"),
            "K:2:1: LABEL before FROM; only ARG may come before FROM"
        );
    }

    #[test]
    fn error_missing_and_wrong_arguments() {
        assert_eq!(
            err("FROM\n"),
            "K:1:1: FROM has no arguments; expected FROM IMAGE [AS NAME]"
        );
        assert_eq!(
            err("FROM scratch\nCMD\n"),
            "K:2:1: CMD has no arguments; expected CMD [\"executable\", \"arg\"] or CMD command line"
        );
        assert_eq!(
            err("FROM a b\n"),
            "K:1:1: FROM has the wrong number of arguments; expected FROM IMAGE or FROM IMAGE AS NAME"
        );
        assert_eq!(
            err("FROM scratch\nCOPY a\n"),
            "K:2:1: COPY has the wrong number of arguments; expected at least one source and a destination"
        );
        assert_eq!(
            err("FROM scratch\nVOLUME []\n"),
            "K:2:1: VOLUME has the wrong number of arguments; expected at least one path"
        );
        assert_eq!(
            err("FROM scratch\nENV A\n"),
            "K:2:5: ENV has the wrong number of arguments; expected NAME=VALUE, or NAME followed by a value"
        );
        assert_eq!(
            err("FROM scratch\nLABEL --x=1 a=b\n"),
            "K:2:7: unknown flag `--x=1` for LABEL; expected no flags"
        );
    }

    #[test]
    fn error_copy_from_and_bad_flags() {
        assert_eq!(
            err("FROM scratch\nCOPY --from=build /a /b\n"),
            "K:2:6: multi-stage COPY --from is not supported; copy from the build context instead"
        );
        assert_eq!(
            err("FROM scratch\nADD --from=x a b\n"),
            "K:2:5: unknown flag `--from=x` for ADD; expected --chmod= or --chown="
        );
    }

    #[test]
    fn error_missing_equals_points_at_word() {
        assert_eq!(
            err("FROM scratch\nLABEL a=1 \\\n   b\n"),
            "K:3:4: can't find = in `b`; expected NAME=VALUE"
        );
    }

    #[test]
    fn error_json_with_non_strings() {
        assert_eq!(
            err("FROM scratch\nCMD [\"a\", 1]\n"),
            "K:2:1: JSON array in CMD holds a value that is not a string; expected [\"word\", ...]"
        );
    }

    #[test]
    fn error_bad_and_duplicate_escape_directives() {
        assert_eq!(
            err("# escape=x\nFROM scratch\n"),
            "K:1:1: invalid escape directive `x`; expected ` or \\"
        );
        assert_eq!(
            err("# escape=`\n# escape=\\\nFROM scratch\n"),
            "K:2:1: a second escape directive; only one may be used"
        );
    }

    #[test]
    fn multibyte_text_never_splits_inside_a_character() {
        let kf = parse(
            "FROM scratch\nLABEL é=ü \\\n ß=日本\u{a0}x=y\nWORKDIR 日本/é\n",
            "K",
        )
        .unwrap();
        assert_eq!(kf.instructions.len(), 3);
    }
}
