//! Go text/template's syntax (<https://pkg.go.dev/text/template>, Go 1.22):
//! the lexer's text and actions into a tree of nodes. Functions and
//! variables are checked here, as Go's parser does, so an unknown one fails
//! before anything is rendered.

use super::funcs;
use super::lex::{pieces, Lexed, Piece, Source, Tok};
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
