//! The lexer of Go's template syntax: the source split into text and
//! actions (`{{ }}`, with the `{{-`/`-}}` trim markers and `{{/* */}}`
//! comments), each action into tokens that know their line and column.

use super::{Pos, TemplateError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Ident(String),
    /// `.Name`; `.` alone is an empty name.
    Field(String),
    Var(String),
    Str(String),
    Num(String),
    LParen,
    RParen,
    Bar,
    Declare,
    Assign,
    Comma,
}

/// A token, where it starts, and whether it touches the one before (so
/// `.A.B` and `$x.A` chain, and `.A .B` are two arguments).
#[derive(Debug, Clone)]
pub(super) struct Lexed {
    pub tok: Tok,
    pub pos: Pos,
    pub joined: bool,
}

pub(super) struct Source<'a> {
    pub text: &'a str,
}

impl Source<'_> {
    fn pos(&self, offset: usize) -> Pos {
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        Pos { line, col }
    }

    fn err(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        let pos = self.pos(offset);
        TemplateError {
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

/// One piece of the source: text, or an action's tokens.
pub(super) enum Piece {
    Text(String),
    Action { pos: Pos, toks: Vec<Lexed> },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits `text` into text and actions, applying the trim markers.
pub(super) fn pieces(src: &Source) -> Result<Vec<Piece>, TemplateError> {
    let text = src.text;
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    let mut trim_next = false;
    while at <= text.len() {
        let open = text[at..].find("{{").map(|i| at + i);
        let end = open.unwrap_or(text.len());
        let mut chunk = &text[at..end];
        if trim_next {
            chunk = chunk.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
        }
        let Some(open) = open else {
            out.push(Piece::Text(chunk.to_string()));
            break;
        };
        let mut i = open + 2;
        if bytes.get(i) == Some(&b'-') && bytes.get(i + 1).is_some_and(|&c| is_space(c)) {
            chunk = chunk.trim_end_matches(|c: char| c.is_ascii() && is_space(c as u8));
            i += 2;
        }
        out.push(Piece::Text(chunk.to_string()));
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let comment = text[i..].starts_with("/*");
        let (toks, close) = if comment {
            let Some(stop) = text[i..].find("*/") else {
                return Err(src.err(open, "unclosed comment"));
            };
            (Vec::new(), i + stop + 2)
        } else {
            lex_action(src, i)?
        };
        if toks.is_empty() && !comment {
            return Err(src.err(open, "missing value for the action"));
        }
        // `close` is at ` -}}`, `-}}` after a space, or `}}`.
        let mut j = close;
        while j < bytes.len() && is_space(bytes[j]) {
            j += 1;
        }
        trim_next = false;
        if text[j..].starts_with("-}}") && j > close {
            trim_next = true;
            j += 1;
        }
        if !text[j..].starts_with("}}") {
            return Err(src.err(open, "unclosed action (no matching }})"));
        }
        if !toks.is_empty() {
            out.push(Piece::Action {
                pos: src.pos(open),
                toks,
            });
        }
        at = j + 2;
    }
    Ok(out)
}

/// The tokens of the action starting at `start`, and where its closing
/// delimiter (with any trim marker and spaces before it) starts.
fn lex_action(src: &Source, start: usize) -> Result<(Vec<Lexed>, usize), TemplateError> {
    let text = src.text;
    let bytes = text.as_bytes();
    let mut toks = Vec::new();
    let mut i = start;
    let mut joined = false;
    loop {
        let ws = i;
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        if i > ws {
            joined = false;
        }
        if i >= bytes.len() {
            return Err(src.err(start, "unclosed action (no matching }})"));
        }
        let rest = &text[i..];
        if rest.starts_with("}}") || (rest.starts_with("-}}") && i > ws) {
            return Ok((toks, ws));
        }
        let c = bytes[i];
        let begin = i;
        let tok = match c {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b'|' => {
                i += 1;
                Tok::Bar
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b':' if rest.starts_with(":=") => {
                i += 2;
                Tok::Declare
            }
            b'=' => {
                i += 1;
                Tok::Assign
            }
            b'"' => {
                let (s, len) = lex_string(rest).ok_or_else(|| src.err(i, "unterminated string"))?;
                i += len;
                Tok::Str(s)
            }
            b'`' => {
                let Some(close) = rest[1..].find('`') else {
                    return Err(src.err(i, "unterminated raw string"));
                };
                i += close + 2;
                Tok::Str(rest[1..=close].to_string())
            }
            b'.' if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1 + ident_len(&rest[1..]);
                Tok::Field(text[begin + 1..i].to_string())
            }
            b'$' => {
                i += 1 + ident_len(&rest[1..]);
                Tok::Var(text[begin..i].to_string())
            }
            b'-' | b'+' | b'.' | b'0'..=b'9' => {
                i += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || b"._+-".contains(&bytes[i]))
                {
                    if b"+-".contains(&bytes[i]) && !matches!(bytes[i - 1], b'e' | b'E') {
                        break;
                    }
                    i += 1;
                }
                Tok::Num(text[begin..i].to_string())
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                i += ident_len(rest);
                Tok::Ident(text[begin..i].to_string())
            }
            _ => {
                let ch = rest.chars().next().unwrap_or('?');
                return Err(src.err(i, format!("unexpected {ch:?} in action")));
            }
        };
        toks.push(Lexed {
            tok,
            pos: src.pos(begin),
            joined,
        });
        joined = true;
    }
}

fn ident_len(s: &str) -> usize {
    s.bytes()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == b'_')
        .count()
}

/// A Go interpreted string literal at the start of `s`: its value and length.
fn lex_string(s: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\n' => return None,
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    '\'' => out.push('\''),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = (0..n)
                            .filter_map(|_| chars.next().map(|(_, c)| c))
                            .collect();
                        let code = u32::from_str_radix(&hex, 16).ok()?;
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            c => out.push(c),
        }
    }
    None
}
