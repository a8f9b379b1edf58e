//! The functions a template can call: Go's builtins (text/template
//! `funcs.go`) and the sprig functions (Masterminds/sprig v3, which sealos
//! registers with `sprig.TxtFuncMap()`) that sealos-style images use.
//! `and` and `or` are in the executor, since they stop at their answer.

use std::cmp::Ordering;

use base64::Engine as _;

use super::semver;
use super::Value;

type Func = fn(&[Value]) -> Result<Value, String>;

const FUNCS: &[(&str, Func)] = &[
    ("and", |_| unreachable_logic()),
    ("b64dec", b64dec),
    ("b64enc", |a| {
        Ok(Value::Str(
            base64::engine::general_purpose::STANDARD.encode(one_str(a)?),
        ))
    }),
    ("coalesce", |a| {
        Ok(a.iter().find(|v| !empty(v)).cloned().unwrap_or(Value::Nil))
    }),
    ("contains", |a| {
        let [sub, s] = two_str(a)?;
        Ok(Value::Bool(s.contains(&sub)))
    }),
    ("default", dfault),
    ("empty", |a| Ok(Value::Bool(empty(one(a)?)))),
    ("eq", eq),
    ("ge", |a| {
        compare(a).map(|o| Value::Bool(o != Ordering::Less))
    }),
    ("gt", |a| {
        compare(a).map(|o| Value::Bool(o == Ordering::Greater))
    }),
    ("hasPrefix", |a| {
        let [p, s] = two_str(a)?;
        Ok(Value::Bool(s.starts_with(&p)))
    }),
    ("hasSuffix", |a| {
        let [p, s] = two_str(a)?;
        Ok(Value::Bool(s.ends_with(&p)))
    }),
    ("indent", |a| {
        let (n, s) = int_str(a)?;
        Ok(Value::Str(indent(n, &s)))
    }),
    ("index", index),
    ("join", join),
    ("le", |a| {
        compare(a).map(|o| Value::Bool(o != Ordering::Greater))
    }),
    ("len", |a| match one(a)? {
        Value::Str(s) => Ok(Value::Int(s.len() as i64)),
        Value::List(l) => Ok(Value::Int(l.len() as i64)),
        Value::Map(m) => Ok(Value::Int(m.len() as i64)),
        other => Err(format!("len of {}", other.type_name())),
    }),
    ("list", |a| Ok(Value::List(a.to_vec()))),
    ("lower", |a| Ok(Value::Str(one_str(a)?.to_lowercase()))),
    ("lt", |a| {
        compare(a).map(|o| Value::Bool(o == Ordering::Less))
    }),
    ("ne", |a| eq(a).map(|v| Value::Bool(!v.truth()))),
    ("nindent", |a| {
        let (n, s) = int_str(a)?;
        Ok(Value::Str(format!("\n{}", indent(n, &s))))
    }),
    ("not", |a| Ok(Value::Bool(!one(a)?.truth()))),
    ("or", |_| unreachable_logic()),
    ("print", |a| Ok(Value::Str(sprint(a)))),
    ("printf", printf),
    ("println", |a| {
        let words: Vec<String> = a.iter().map(Value::to_string).collect();
        Ok(Value::Str(format!("{}\n", words.join(" "))))
    }),
    ("quote", |a| Ok(Value::Str(quoted(a, go_quote)))),
    ("replace", |a| {
        let [old, new, s] = strs::<3>(a)?;
        Ok(Value::Str(s.replace(&old, &new)))
    }),
    ("semverCompare", |a| {
        let [constraint, version] = two_str(a)?;
        semver::compare(&constraint, &version).map(Value::Bool)
    }),
    ("split", |a| {
        let [sep, s] = two_str(a)?;
        Ok(Value::Map(
            s.split(sep.as_str())
                .enumerate()
                .map(|(i, p)| (format!("_{i}"), Value::Str(p.to_string())))
                .collect(),
        ))
    }),
    ("splitList", |a| {
        let [sep, s] = two_str(a)?;
        Ok(Value::List(
            s.split(sep.as_str())
                .map(|p| Value::Str(p.to_string()))
                .collect(),
        ))
    }),
    ("squote", |a| {
        Ok(Value::Str(quoted(a, |s| format!("'{s}'"))))
    }),
    ("ternary", |a| match a {
        [t, f, cond] => Ok(if cond.truth() { t.clone() } else { f.clone() }),
        _ => Err(arity(3, a.len())),
    }),
    ("title", |a| Ok(Value::Str(title(&one_str(a)?)))),
    ("toString", |a| Ok(Value::Str(strval(one(a)?)))),
    ("trim", |a| Ok(Value::Str(one_str(a)?.trim().to_string()))),
    ("trimAll", |a| {
        let [cut, s] = two_str(a)?;
        Ok(Value::Str(s.trim_matches(|c| cut.contains(c)).to_string()))
    }),
    ("trimPrefix", |a| {
        let [p, s] = two_str(a)?;
        Ok(Value::Str(
            s.strip_prefix(p.as_str()).unwrap_or(&s).to_string(),
        ))
    }),
    ("trimSuffix", |a| {
        let [p, s] = two_str(a)?;
        Ok(Value::Str(
            s.strip_suffix(p.as_str()).unwrap_or(&s).to_string(),
        ))
    }),
    ("upper", |a| Ok(Value::Str(one_str(a)?.to_uppercase()))),
];

fn unreachable_logic() -> Result<Value, String> {
    Err("and/or are evaluated by the executor".into())
}

/// Whether `name` is a function templates may call.
pub(super) fn exists(name: &str) -> bool {
    FUNCS.iter().any(|(n, _)| *n == name)
}

/// Every function name, for messages.
pub(super) fn names() -> Vec<&'static str> {
    FUNCS.iter().map(|(n, _)| *n).collect()
}

pub(super) fn call(name: &str, args: &[Value]) -> Result<Value, String> {
    let (_, f) = FUNCS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| format!("function {name:?} not defined"))?;
    f(args)
}

fn arity(want: usize, got: usize) -> String {
    format!("wrong number of args: want {want} got {got}")
}

fn one(args: &[Value]) -> Result<&Value, String> {
    match args {
        [v] => Ok(v),
        _ => Err(arity(1, args.len())),
    }
}

/// A string argument, as Go's call passes one: an undefined value or a
/// non-string is refused ("invalid value; expected string").
fn string(v: &Value) -> Result<String, String> {
    match v {
        Value::Str(s) => Ok(s.clone()),
        Value::Missing(name) => Err(format!("{name} is not defined (a string is expected)")),
        other => Err(format!("expected a string, got {}", other.type_name())),
    }
}

fn one_str(args: &[Value]) -> Result<String, String> {
    string(one(args)?)
}

fn strs<const N: usize>(args: &[Value]) -> Result<[String; N], String> {
    if args.len() != N {
        return Err(arity(N, args.len()));
    }
    let mut out: [String; N] = std::array::from_fn(|_| String::new());
    for (slot, v) in out.iter_mut().zip(args) {
        *slot = string(v)?;
    }
    Ok(out)
}

fn two_str(args: &[Value]) -> Result<[String; 2], String> {
    strs::<2>(args)
}

fn int_str(args: &[Value]) -> Result<(i64, String), String> {
    match args {
        [Value::Int(n), s] => Ok((*n, string(s)?)),
        [other, _] => Err(format!("expected an int, got {}", other.type_name())),
        _ => Err(arity(2, args.len())),
    }
}

/// sprig's `empty`: Go's zero values are empty.
fn empty(v: &Value) -> bool {
    !v.truth()
}

/// sprig's `default DEFAULT GIVEN`: GIVEN unless it is empty.
fn dfault(args: &[Value]) -> Result<Value, String> {
    match args {
        [d] => Ok(d.clone()),
        [d, given, ..] if empty(given) => Ok(d.clone()),
        [_, given, ..] => Ok(given.clone()),
        [] => Err(arity(2, 0)),
    }
}

/// sprig's `strval`: a string as it is, anything else as Go prints it.
fn strval(v: &Value) -> String {
    v.to_string()
}

/// Go's `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(args: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in args.iter().enumerate() {
        let is_str = |v: &Value| matches!(v, Value::Str(_));
        if i > 0 && !is_str(v) && !is_str(&args[i - 1]) {
            out.push(' ');
        }
        out.push_str(&v.to_string());
    }
    out
}

/// sprig's `quote`/`squote`: each non-nil argument quoted, joined by spaces.
fn quoted(args: &[Value], q: fn(&str) -> String) -> String {
    args.iter()
        .filter(|v| !matches!(v, Value::Nil | Value::Missing(_)))
        .map(|v| q(&strval(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Go's `%q` of a string (strconv.Quote).
pub(super) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `eq arg1 arg2...`: true when arg1 equals any of the others. Two
/// values of different kinds are an error, except that an undefined or nil
/// value is unequal to anything but another one.
fn eq(args: &[Value]) -> Result<Value, String> {
    let Some((first, others)) = args.split_first() else {
        return Err("missing argument for comparison".into());
    };
    if others.is_empty() {
        return Err("missing argument for comparison".into());
    }
    let nil = |v: &Value| matches!(v, Value::Missing(_) | Value::Nil);
    for other in others {
        let same = match (first, other) {
            (a, b) if nil(a) || nil(b) => nil(a) && nil(b),
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::Float(a), Value::Float(b)) => a == b,
            (Value::Int(a), Value::Float(b)) | (Value::Float(b), Value::Int(a)) => {
                (*a as f64) == *b
            }
            (a, b) if a.type_name() == b.type_name() => {
                return Err(format!("non-comparable type {}", a.type_name()))
            }
            _ => return Err("incompatible types for comparison".into()),
        };
        if same {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

/// Go's `lt`/`le`/`gt`/`ge`: strings with strings, numbers with numbers.
fn compare(args: &[Value]) -> Result<Ordering, String> {
    let [a, b] = args else {
        return Err(arity(2, args.len()));
    };
    match (a, b) {
        (Value::Str(a), Value::Str(b)) => Ok(a.cmp(b)),
        (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
        (Value::Float(_) | Value::Int(_), Value::Float(_) | Value::Int(_)) => {
            let f = |v: &Value| match v {
                Value::Int(n) => *n as f64,
                Value::Float(x) => *x,
                _ => 0.0,
            };
            f(a).partial_cmp(&f(b))
                .ok_or_else(|| "NaN is not ordered".to_string())
        }
        (Value::Missing(n), _) | (_, Value::Missing(n)) => {
            Err(format!("{n} is not defined, so it cannot be compared"))
        }
        _ => Err("incompatible types for comparison".into()),
    }
}

fn index(args: &[Value]) -> Result<Value, String> {
    let Some((mut value, keys)) = args.split_first().map(|(v, k)| (v.clone(), k)) else {
        return Err(arity(2, 0));
    };
    for key in keys {
        value = match (&value, key) {
            (Value::Map(m), Value::Str(k)) => {
                m.get(k).cloned().unwrap_or(Value::Missing(k.clone()))
            }
            (Value::List(l), Value::Int(i)) => l
                .get(usize::try_from(*i).map_err(|_| format!("index {i} out of range"))?)
                .cloned()
                .ok_or_else(|| format!("index {i} out of range"))?,
            (Value::Missing(_) | Value::Nil, _) => return Err("index of untyped nil".into()),
            (v, k) => {
                return Err(format!(
                    "cannot index {} with {}",
                    v.type_name(),
                    k.type_name()
                ))
            }
        };
    }
    Ok(value)
}

fn join(args: &[Value]) -> Result<Value, String> {
    let [sep, list] = args else {
        return Err(arity(2, args.len()));
    };
    let sep = string(sep)?;
    let words: Vec<String> = match list {
        Value::List(l) => l.iter().map(strval).collect(),
        other => vec![strval(other)],
    };
    Ok(Value::Str(words.join(&sep)))
}

fn b64dec(args: &[Value]) -> Result<Value, String> {
    let s = one_str(args)?;
    // sprig returns the error's text as the value.
    Ok(Value::Str(
        match base64::engine::general_purpose::STANDARD.decode(s.as_bytes()) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => e.to_string(),
        },
    ))
}

fn indent(n: i64, s: &str) -> String {
    let pad = " ".repeat(usize::try_from(n).unwrap_or(0));
    format!("{pad}{}", s.replace('\n', &format!("\n{pad}")))
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = c.is_whitespace();
    }
    out
}

/// Go's `printf` for the verbs templates use: `%s`, `%v`, `%d`, `%q`, `%%`.
fn printf(args: &[Value]) -> Result<Value, String> {
    let Some((Value::Str(format), rest)) = args.split_first() else {
        return Err("printf needs a format string".into());
    };
    let mut out = String::new();
    let mut rest = rest.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("printf: the format ends in %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("printf: %{verb} has no argument"))?;
        if let Value::Missing(name) = value {
            return Err(format!("{name} is not defined"));
        }
        match verb {
            's' | 'v' | 'd' => out.push_str(&value.to_string()),
            'q' => out.push_str(&go_quote(&value.to_string())),
            other => {
                return Err(format!(
                    "printf: %{other} is not supported (use %s, %v, %d or %q)"
                ))
            }
        }
    }
    Ok(Value::Str(out))
}
