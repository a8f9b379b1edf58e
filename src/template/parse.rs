//! Go text/template's syntax (<https://pkg.go.dev/text/template>, Go 1.22):
//! text and `{{ actions }}` with the `{{-`/`-}}` trim markers and `{{/* */}}`
//! comments, into a tree. Functions are checked here, as Go's parser does, so
//! an unknown one fails before anything is rendered.

use super::funcs;
use super::{Pos, TemplateError};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    /// `if`, `else if`…, `else`; `with` has the same shape (Go 1.23 `else with`).
    If {
        with: bool,
        branches: Vec<(Pipe, Vec<Node>)>,
        otherwise: Vec<Node>,
    },
    Range {
        pipe: Pipe,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// `$a, $b := cmd | cmd`.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pipe {
    pub pos: Pos,
    pub decl: Vec<String>,
    /// `=` (assign to an existing variable) rather than `:=`.
    pub assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Cmd {
    pub pos: Pos,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Arg {
    /// `.` then fields: `.A.B` is `Dot` with `["A", "B"]`.
    Dot(Vec<String>),
    /// `$x.A`: the variable and its fields (`$` alone is the root).
    Var(String, Vec<String>),
    Func(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Nil,
    /// `(pipeline).A`.
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
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
struct Lexed {
    tok: Tok,
    pos: Pos,
    joined: bool,
}

struct Source<'a> {
    text: &'a str,
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
enum Piece {
    Text(String),
    Action { pos: Pos, toks: Vec<Lexed> },
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Splits `text` into text and actions, applying the trim markers.
fn pieces(src: &Source) -> Result<Vec<Piece>, TemplateError> {
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

/// Parses a template into its nodes.
pub(super) fn parse(text: &str) -> Result<Vec<Node>, TemplateError> {
    let src = Source { text };
    let mut parser = Parser {
        pieces: pieces(&src)?.into_iter().peekable(),
        vars: vec!["$".to_string()],
    };
    let (nodes, stop) = parser.list()?;
    match stop {
        None => Ok(nodes),
        Some((word, pos, _)) => Err(at(pos, format!("unexpected {{{{{word}}}}}"))),
    }
}

fn at(pos: Pos, message: impl Into<String>) -> TemplateError {
    TemplateError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

struct Parser {
    pieces: std::iter::Peekable<std::vec::IntoIter<Piece>>,
    /// Variables in scope, innermost last.
    vars: Vec<String>,
}

/// What ended a list: `end` or `else` (with the tokens after `else`).
type Stop = Option<(&'static str, Pos, Vec<Lexed>)>;

impl Parser {
    /// Nodes up to `{{end}}`, `{{else …}}` or the end of the text.
    fn list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut nodes = Vec::new();
        while let Some(piece) = self.pieces.next() {
            let (pos, toks) = match piece {
                Piece::Text(t) => {
                    if !t.is_empty() {
                        nodes.push(Node::Text(t));
                    }
                    continue;
                }
                Piece::Action { pos, toks } => (pos, toks),
            };
            let keyword = match &toks[0].tok {
                Tok::Ident(w) => w.as_str(),
                _ => "",
            };
            match keyword {
                "end" => {
                    if toks.len() > 1 {
                        return Err(at(toks[1].pos, "unexpected words after end"));
                    }
                    return Ok((nodes, Some(("end", pos, Vec::new()))));
                }
                "else" => return Ok((nodes, Some(("else", pos, toks[1..].to_vec())))),
                "if" | "with" => nodes.push(self.branches(keyword == "with", pos, &toks[1..])?),
                "range" => nodes.push(self.range(pos, &toks[1..])?),
                "define" | "template" | "block" | "break" | "continue" => {
                    return Err(at(
                        pos,
                        format!("{{{{{keyword}}}}} is not supported by sealrs's templates (no labring image uses it)"),
                    ))
                }
                _ => {
                    let pipe = self.pipe(pos, &toks, false)?;
                    nodes.push(Node::Action(pipe));
                }
            }
        }
        Ok((nodes, None))
    }

    /// `if`/`with` and their `else if`/`else with`/`else` chains up to `end`.
    fn branches(&mut self, with: bool, pos: Pos, toks: &[Lexed]) -> Result<Node, TemplateError> {
        let word = if with { "with" } else { "if" };
        let mut branches = Vec::new();
        let mut cond = toks.to_vec();
        let mut cond_pos = pos;
        loop {
            let mark = self.vars.len();
            let pipe = self.pipe(cond_pos, &cond, false)?;
            let (body, stop) = self.list()?;
            self.vars.truncate(mark);
            branches.push((pipe, body));
            match stop {
                None => {
                    return Err(at(
                        pos,
                        format!("{{{{{word}}}}} has no matching {{{{end}}}}"),
                    ))
                }
                Some(("end", ..)) => {
                    return Ok(Node::If {
                        with,
                        branches,
                        otherwise: Vec::new(),
                    })
                }
                Some((_, else_pos, rest)) => {
                    match rest.first().map(|t| &t.tok) {
                        None => {
                            let mark = self.vars.len();
                            let (otherwise, stop) = self.list()?;
                            self.vars.truncate(mark);
                            if !matches!(stop, Some(("end", ..))) {
                                return Err(at(else_pos, format!("{{{{else}}}} of {{{{{word}}}}} has no matching {{{{end}}}}")));
                            }
                            return Ok(Node::If {
                                with,
                                branches,
                                otherwise,
                            });
                        }
                        Some(Tok::Ident(w)) if w == word => {
                            cond = rest[1..].to_vec();
                            cond_pos = else_pos;
                        }
                        _ => {
                            return Err(at(
                                else_pos,
                                format!("expected {{{{else}}}} or {{{{else {word} …}}}}"),
                            ))
                        }
                    }
                }
            }
        }
    }

    fn range(&mut self, pos: Pos, toks: &[Lexed]) -> Result<Node, TemplateError> {
        let mark = self.vars.len();
        let pipe = self.pipe(pos, toks, true)?;
        let (body, stop) = self.list()?;
        self.vars.truncate(mark);
        let otherwise = match stop {
            Some(("end", ..)) => Vec::new(),
            Some((_, else_pos, rest)) if rest.is_empty() => {
                let (otherwise, stop) = self.list()?;
                self.vars.truncate(mark);
                if !matches!(stop, Some(("end", ..))) {
                    return Err(at(
                        else_pos,
                        "{{else}} of {{range}} has no matching {{end}}",
                    ));
                }
                otherwise
            }
            Some((_, else_pos, _)) => return Err(at(else_pos, "{{range}} takes a plain {{else}}")),
            None => return Err(at(pos, "{{range}} has no matching {{end}}")),
        };
        Ok(Node::Range {
            pipe,
            body,
            otherwise,
        })
    }

    /// A pipeline with its optional declaration.
    fn pipe(&mut self, pos: Pos, toks: &[Lexed], range: bool) -> Result<Pipe, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut rest = toks;
        let is_decl = |t: &[Lexed]| match t {
            [Lexed {
                tok: Tok::Var(_), ..
            }, Lexed {
                tok: Tok::Declare | Tok::Assign,
                ..
            }, ..] => true,
            [Lexed {
                tok: Tok::Var(_), ..
            }, Lexed {
                tok: Tok::Comma, ..
            }, Lexed {
                tok: Tok::Var(_), ..
            }, Lexed {
                tok: Tok::Declare | Tok::Assign,
                ..
            }, ..] => range,
            _ => false,
        };
        if is_decl(rest) {
            while let Some(Lexed {
                tok: Tok::Var(name),
                pos: vpos,
                ..
            }) = rest.first()
            {
                decl.push((name.clone(), *vpos));
                match rest.get(1).map(|t| &t.tok) {
                    Some(Tok::Comma) => rest = &rest[2..],
                    Some(Tok::Assign) => {
                        assign = true;
                        rest = &rest[2..];
                        break;
                    }
                    _ => {
                        rest = &rest[2..];
                        break;
                    }
                }
            }
        }
        let mut cmds = Vec::new();
        let mut i = 0;
        if rest.is_empty() {
            return Err(at(pos, "missing value for the action"));
        }
        loop {
            let (cmd, used) = self.cmd(rest, i, pos)?;
            cmds.push(cmd);
            i = used;
            match rest.get(i).map(|t| &t.tok) {
                None => break,
                Some(Tok::Bar) => i += 1,
                Some(_) => return Err(at(rest[i].pos, "unexpected token in the pipeline")),
            }
        }
        for (name, vpos) in &decl {
            if assign {
                if !self.vars.contains(name) {
                    return Err(at(*vpos, format!("undefined variable {name}")));
                }
            } else {
                self.vars.push(name.clone());
            }
        }
        Ok(Pipe {
            pos,
            decl: decl.into_iter().map(|(n, _)| n).collect(),
            assign,
            cmds,
        })
    }

    /// One command from `toks[i..]`: operands up to `|`, `)` or the end.
    fn cmd(
        &mut self,
        toks: &[Lexed],
        mut i: usize,
        pos: Pos,
    ) -> Result<(Cmd, usize), TemplateError> {
        let cmd_pos = toks.get(i).map_or(pos, |t| t.pos);
        let mut args = Vec::new();
        while let Some(t) = toks.get(i) {
            if matches!(t.tok, Tok::Bar | Tok::RParen) {
                break;
            }
            let (arg, used) = self.operand(toks, i)?;
            args.push(arg);
            i = used;
        }
        if args.is_empty() {
            return Err(at(cmd_pos, "missing command in the pipeline"));
        }
        Ok((Cmd { pos: cmd_pos, args }, i))
    }

    fn operand(&mut self, toks: &[Lexed], i: usize) -> Result<(Arg, usize), TemplateError> {
        let t = &toks[i];
        let mut next = i + 1;
        let fields = |next: &mut usize| {
            let mut names = Vec::new();
            while let Some(Lexed {
                tok: Tok::Field(f),
                joined: true,
                ..
            }) = toks.get(*next)
            {
                names.push(f.clone());
                *next += 1;
            }
            names
        };
        let arg = match &t.tok {
            Tok::Field(f) => {
                let mut names = if f.is_empty() {
                    Vec::new()
                } else {
                    vec![f.clone()]
                };
                names.extend(fields(&mut next));
                Arg::Dot(names)
            }
            Tok::Var(name) => {
                if !self.vars.contains(name) {
                    return Err(at(t.pos, format!("undefined variable {name}")));
                }
                Arg::Var(name.clone(), fields(&mut next))
            }
            Tok::Str(s) => Arg::Str(s.clone()),
            Tok::Num(n) => number(n).ok_or_else(|| at(t.pos, format!("bad number syntax: {n}")))?,
            Tok::Ident(w) => match w.as_str() {
                "true" => Arg::Bool(true),
                "false" => Arg::Bool(false),
                "nil" => Arg::Nil,
                name if funcs::exists(name) => Arg::Func(name.to_string()),
                name => {
                    return Err(at(
                        t.pos,
                        format!(
                            "function {name:?} not defined (sealrs's templates have {})",
                            funcs::names().join(", ")
                        ),
                    ))
                }
            },
            Tok::LParen => {
                let mut depth = 0;
                let mut close = None;
                for (j, tok) in toks.iter().enumerate().skip(i) {
                    match tok.tok {
                        Tok::LParen => depth += 1,
                        Tok::RParen => {
                            depth -= 1;
                            if depth == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let close = close.ok_or_else(|| at(t.pos, "unclosed left paren"))?;
                let inner = self.pipe(t.pos, &toks[i + 1..close], false)?;
                next = close + 1;
                Arg::Sub(Box::new(inner), fields(&mut next))
            }
            _ => return Err(at(t.pos, "unexpected token in the command")),
        };
        Ok((arg, next))
    }
}

fn number(text: &str) -> Option<Arg> {
    if let Ok(n) = text.parse::<i64>() {
        return Some(Arg::Int(n));
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Arg::Int);
    }
    text.parse::<f64>().ok().map(Arg::Float)
}
