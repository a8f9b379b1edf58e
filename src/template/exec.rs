//! Executing a parsed template (Go text/template's `exec.go` semantics):
//! dot, variables with block scope, pipelines where the previous result is
//! the last argument, `and`/`or` that stop at their answer.

use std::collections::BTreeMap;

use super::funcs;
use super::parse::{Arg, Cmd, Node, Pipe};
use super::{Pos, TemplateError, Value};

pub(super) fn execute(
    nodes: &[Node],
    env: &BTreeMap<String, String>,
) -> Result<String, TemplateError> {
    let root = Value::Map(
        env.iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect(),
    );
    let mut state = State {
        vars: vec![("$".to_string(), root.clone())],
        out: String::new(),
    };
    state.list(nodes, &root)?;
    Ok(state.out)
}

struct State {
    vars: Vec<(String, Value)>,
    out: String,
}

fn err(pos: Pos, message: impl Into<String>) -> TemplateError {
    TemplateError {
        line: pos.line,
        col: pos.col,
        message: message.into(),
    }
}

impl State {
    fn list(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        for node in nodes {
            self.node(node, dot)?;
        }
        Ok(())
    }

    /// Runs `nodes` and drops the variables they declared.
    fn scoped(&mut self, nodes: &[Node], dot: &Value) -> Result<(), TemplateError> {
        let mark = self.vars.len();
        let result = self.list(nodes, dot);
        self.vars.truncate(mark);
        result
    }

    fn node(&mut self, node: &Node, dot: &Value) -> Result<(), TemplateError> {
        match node {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(pipe) => {
                let value = self.pipe(pipe, dot)?;
                if pipe.decl.is_empty() {
                    self.print(&value, pipe.pos)?;
                }
            }
            Node::If {
                with,
                branches,
                otherwise,
            } => {
                let mark = self.vars.len();
                for (cond, body) in branches {
                    let value = self.pipe(cond, dot)?;
                    if value.truth() {
                        let dot = if *with { &value } else { dot };
                        let result = self.list(body, dot);
                        self.vars.truncate(mark);
                        return result;
                    }
                }
                self.vars.truncate(mark);
                self.scoped(otherwise, dot)?;
            }
            Node::Range {
                pipe,
                body,
                otherwise,
            } => self.range(pipe, body, otherwise, dot)?,
        }
        Ok(())
    }

    fn print(&mut self, value: &Value, pos: Pos) -> Result<(), TemplateError> {
        if let Value::Missing(name) = value {
            return Err(err(
                pos,
                format!("{name} is not defined: set it (-e {name}=VALUE, spec.env or the host's env) or give a default ({{{{ default \"VALUE\" .{name} }}}})"),
            ));
        }
        self.out.push_str(&value.to_string());
        Ok(())
    }

    fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<(), TemplateError> {
        let mark = self.vars.len();
        let mut bare = pipe.clone();
        bare.decl.clear();
        let value = self.pipe(&bare, dot)?;
        let items: Vec<(Value, Value)> = match &value {
            Value::List(l) => l
                .iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                .collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                .collect(),
            Value::Int(n) => (0..*n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Missing(_) | Value::Nil => Vec::new(),
            other => {
                return Err(err(
                    pipe.pos,
                    format!("range can't iterate over {}", other.type_name()),
                ))
            }
        };
        if items.is_empty() {
            return self.scoped(otherwise, dot);
        }
        for (key, item) in items {
            match pipe.decl.as_slice() {
                [] => {}
                [v] => self.vars.push((v.clone(), item.clone())),
                [k, v, ..] => {
                    self.vars.push((k.clone(), key));
                    self.vars.push((v.clone(), item.clone()));
                }
            }
            let result = self.list(body, &item);
            self.vars.truncate(mark);
            result?;
        }
        Ok(())
    }

    fn pipe(&mut self, pipe: &Pipe, dot: &Value) -> Result<Value, TemplateError> {
        let mut value: Option<Value> = None;
        for cmd in &pipe.cmds {
            value = Some(self.cmd(cmd, dot, value)?);
        }
        let value = value.unwrap_or(Value::Nil);
        for name in &pipe.decl {
            if pipe.assign {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                    slot.1 = value.clone();
                }
            } else {
                self.vars.push((name.clone(), value.clone()));
            }
        }
        Ok(value)
    }

    fn cmd(
        &mut self,
        cmd: &Cmd,
        dot: &Value,
        piped: Option<Value>,
    ) -> Result<Value, TemplateError> {
        let Arg::Func(name) = &cmd.args[0] else {
            if cmd.args.len() > 1 || piped.is_some() {
                return Err(err(cmd.pos, "can't give an argument to a non-function"));
            }
            return self.arg(&cmd.args[0], dot, cmd.pos);
        };
        let rest = &cmd.args[1..];
        if name == "and" || name == "or" {
            let total = rest.len() + usize::from(piped.is_some());
            if total == 0 {
                return Err(err(
                    cmd.pos,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            let mut piped = piped;
            for arg in rest.iter().map(Some).chain(std::iter::once(None)) {
                last = match arg {
                    Some(a) => self.arg(a, dot, cmd.pos)?,
                    None => match piped.take() {
                        Some(v) => v,
                        None => break,
                    },
                };
                if last.truth() == (name == "or") {
                    return Ok(last);
                }
            }
            return Ok(last);
        }
        let mut args = Vec::with_capacity(rest.len() + 1);
        for a in rest {
            args.push(self.arg(a, dot, cmd.pos)?);
        }
        args.extend(piped);
        funcs::call(name, &args).map_err(|e| err(cmd.pos, format!("error calling {name}: {e}")))
    }

    fn arg(&mut self, arg: &Arg, dot: &Value, pos: Pos) -> Result<Value, TemplateError> {
        match arg {
            Arg::Dot(fields) => fields_of(dot.clone(), fields, pos),
            Arg::Var(name, fields) => {
                let value = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| err(pos, format!("undefined variable {name}")))?;
                fields_of(value, fields, pos)
            }
            Arg::Func(name) => {
                funcs::call(name, &[]).map_err(|e| err(pos, format!("error calling {name}: {e}")))
            }
            Arg::Str(s) => Ok(Value::Str(s.clone())),
            Arg::Int(n) => Ok(Value::Int(*n)),
            Arg::Float(x) => Ok(Value::Float(*x)),
            Arg::Bool(b) => Ok(Value::Bool(*b)),
            Arg::Nil => Err(err(pos, "nil is not a command")),
            Arg::Sub(pipe, fields) => {
                let value = self.pipe(pipe, dot)?;
                fields_of(value, fields, pos)
            }
        }
    }
}

/// `value.A.B`: a missing map key is [`Value::Missing`]; a field of
/// anything but a map is an error, as Go's is.
fn fields_of(mut value: Value, fields: &[String], pos: Pos) -> Result<Value, TemplateError> {
    for name in fields {
        value = match value {
            Value::Map(mut m) => m.remove(name).unwrap_or(Value::Missing(name.clone())),
            Value::Missing(parent) => {
                return Err(err(
                    pos,
                    format!("{parent} is not defined, so it has no field {name}"),
                ))
            }
            other => {
                return Err(err(
                    pos,
                    format!("can't evaluate field {name} in type {}", other.type_name()),
                ))
            }
        };
    }
    Ok(value)
}
