//! Splitting arguments into words the way Docker does for each instruction:
//! at blanks, at whitespace outside quotes, or into ENV/LABEL pairs.

use super::lines::{is_blank, skip_blanks, Logical};
use super::{Keyword, KubefileError, Location, Pair, Word};

/// Splits at blanks, ignoring quotes (Docker's `parseStringsWhitespaceDelimited`).
pub(super) fn blank_words(logical: &Logical, file: &str, from: usize) -> Vec<Word> {
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
pub(super) fn quoted_words(logical: &Logical, file: &str, from: usize) -> Vec<Word> {
    let escape = logical.escape;
    let text = &logical.text;
    let mut words = Vec::new();
    let mut current = String::new();
    let mut start: Option<usize> = None;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = text[from..].char_indices().map(|(o, c)| (from + o, c));
    while let Some((offset, c)) = chars.next() {
        match start {
            None if c.is_whitespace() => continue,
            None => start = Some(offset),
            Some(word_start) if quote.is_none() && c.is_whitespace() => {
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
            Some(_) => {}
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
    chars: &mut impl Iterator<Item = (usize, char)>,
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
                // An escape at the very end is dropped.
                push_escaped(c, chars, current);
                return;
            }
            current.push(c);
        }
        Some(q) => {
            if c == q {
                *quote = None;
            }
            if c == escape && q != '\'' {
                if !push_escaped(c, chars, current) {
                    *quote = None;
                }
                return;
            }
            current.push(c);
        }
    }
}

/// Keeps the escape `c` and the character after it in the word; `false` when
/// nothing follows.
fn push_escaped(
    c: char,
    chars: &mut impl Iterator<Item = (usize, char)>,
    current: &mut String,
) -> bool {
    match chars.next() {
        None => false,
        Some((_, next)) => {
            current.push(c);
            current.push(next);
            true
        }
    }
}

/// ENV and LABEL arguments: `NAME=VALUE ...`, or the legacy `NAME VALUE...`
/// whose value is the rest of the line, spaces and all.
pub(super) fn pairs(
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
