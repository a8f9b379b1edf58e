//! Physical lines to logical ones: the directives at the top, comments,
//! continuation lines joined, and a map back to where each byte was.

use super::{KubefileError, Location};

/// One instruction's text after continuations are joined, with a map back to
/// the physical lines so that any word can be located.
pub(super) struct Logical {
    pub(super) text: String,
    /// Inside a line the escape character also keeps a quote or a blank from
    /// splitting words (Docker's `parseWords`).
    pub(super) escape: char,
    /// (byte offset in `text`, line, column of that byte), ascending.
    pieces: Vec<(usize, usize, usize)>,
}

impl Logical {
    pub(super) fn location(&self, file: &str, offset: usize) -> Location {
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
pub(super) fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{0b}' | '\u{0c}' | '\r')
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Joins continued lines into one logical line per instruction, dropping
/// comment lines and blank lines (inside a continuation too).
pub(super) fn logical_lines(lines: &[&str], escape: char) -> Vec<Logical> {
    let mut joined = Vec::new();
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
        if !logical.text.trim().is_empty() {
            joined.push(logical);
        }
    }
    joined
}

/// Reads the directives at the top: `escape` (honoured) and `syntax`
/// (ignored). Like BuildKit, and unlike buildah 1.28, `# syntax=` does not end
/// the directive block, so `# escape=` may follow it.
pub(super) fn directives(lines: &[&str], file: &str) -> Result<char, KubefileError> {
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

pub(super) fn skip_blanks(text: &str, from: usize) -> usize {
    text[from..]
        .find(|c| !is_blank(c))
        .map_or(text.len(), |n| from + n)
}
