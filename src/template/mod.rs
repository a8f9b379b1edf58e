//! `*.tmpl` files of sealos-style images, rendered as sealos renders them:
//! Go text/template with sprig's functions, over the env as a map of strings
//! (lifecycle/pkg/utils/strings `RenderTemplatesWithEnv` and
//! lifecycle/pkg/template in labring/sealos v5.1).
//!
//! Written here rather than taken from the `gtmpl` crate: gtmpl (0.7, marked
//! passively maintained, last released 2021) reports a line but no column,
//! has none of sprig's functions (`default`, `quote`, `contains`,
//! `semverCompare`, …, which every labring template uses) and cannot tell an
//! undefined key from an empty value, which the rule below needs.
//!
//! The one departure from sealos: sealos renders with `missingkey=default`,
//! so `{{ .NAMESPACE }}` without a NAMESPACE writes `<no value>` into the
//! manifest. Here printing an undefined value is an error naming the key and
//! where it is, before any host changes; an undefined value is still falsy in
//! `if`, empty for `default`, and unequal to any string in `eq`, as in Go.
//!
//! What is supported is what labring-actions/cluster-image and
//! labring-actions/runtime templates use, plus their near neighbours: fields,
//! variables, pipelines, parentheses, `if`/`else if`/`else`, `with`, `range`,
//! trim markers, comments, Go's builtins and the sprig functions in
//! [`funcs::names`]. Anything else (another function, `define`/`template`)
//! is an error at parse time naming line and column.

mod exec;
mod funcs;
mod lex;
mod parse;
mod semver;

use std::collections::BTreeMap;
use std::fmt;

/// The suffix sealos renders (`constants.TemplateSuffix`).
pub const SUFFIX: &str = ".tmpl";

/// The directories of an image whose `*.tmpl` files are rendered
/// (`etc`, `scripts` and `manifests` in sealos's `RenderTemplatesWithEnv`).
pub const DIRS: &[&str] = &["etc/", "scripts/", "manifests/"];

/// The env key of the Kubernetes version (the rootfs image's `version` label).
pub const KUBE_VERSION: &str = "SEALOS_SYS_KUBE_VERSION";
/// The env key of the sealos version templates may test.
pub const SEALOS_VERSION: &str = "SEALOS_SYS_SEALOS_VERSION";
/// The env key of the host's roles, comma-separated.
pub const RUN_MODE: &str = "SEALOS_SYS_RUN_MODE";
/// The sealos release whose template behaviour sealrs follows: what
/// `SEALOS_SYS_SEALOS_VERSION` says to a template that tests it.
pub const SEALOS_COMPAT_VERSION: &str = "v5.1.0";

/// Where in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// A template that cannot be parsed or rendered, at 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{col}: {message}")]
pub struct TemplateError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// A template file that failed: `path:line:col: message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}:{source}")]
pub struct FileError {
    pub path: String,
    pub source: TemplateError,
}

/// A value in a template: the env's strings and what functions make of them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// A key the env does not have (Go's "no value"), by name.
    Missing(String),
    Nil,
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Go's truth: false, 0, "", nil and empty collections are false.
    fn truth(&self) -> bool {
        match self {
            Value::Missing(_) | Value::Nil => false,
            Value::Str(s) => !s.is_empty(),
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            Value::Float(f) => *f != 0.0,
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Missing(_) => "an undefined value",
            Value::Nil => "nil",
            Value::Str(_) => "string",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }
}

impl fmt::Display for Value {
    /// As Go's `fmt.Sprint` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Missing(_) => f.write_str("<no value>"),
            Value::Nil => f.write_str("<nil>"),
            Value::Str(s) => f.write_str(s),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(map) => {
                f.write_str("map[")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

/// Renders `text` with `env` as the data (`.KEY`), byte for byte: a value is
/// written as it is and never read as template text.
pub fn render(text: &str, env: &BTreeMap<String, String>) -> Result<String, TemplateError> {
    let nodes = parse::parse(text)?;
    exec::execute(&nodes, env)
}

/// Whether `path` (relative to an image's root) is a template sealos renders.
pub fn is_template(path: &str) -> bool {
    path.ends_with(SUFFIX)
        && path.len() > SUFFIX.len()
        && DIRS.iter().any(|d| path.starts_with(d))
        && !path.ends_with(&format!("/{SUFFIX}"))
}

/// Renders each template of `files` (path relative to the image, text) into
/// the file without `.tmpl`; every failure at once, each naming its file.
pub fn render_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Vec<FileError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (path, text) in files {
        if !is_template(path) {
            continue;
        }
        match render(text, env) {
            Ok(rendered) => out.push((path[..path.len() - SUFFIX.len()].to_string(), rendered)),
            Err(source) => errors.push(FileError {
                path: path.to_string(),
                source,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The env a host's templates see, as sealos builds it: the image's `ENV`,
/// then the cluster env, then the host's own env (later wins), then the
/// `SEALOS_SYS_*` keys, which a user cannot set (sealos drops them from the
/// cluster and host env with a warning; so does this).
pub fn host_env(
    image_env: &[(String, String)],
    cluster_env: &BTreeMap<String, String>,
    host_env: &BTreeMap<String, String>,
    kube_version: Option<&str>,
    roles: &[String],
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = image_env.iter().cloned().collect();
    for (k, v) in cluster_env.iter().chain(host_env) {
        if !k.starts_with("SEALOS_SYS") {
            env.insert(k.clone(), v.clone());
        }
    }
    env.insert(KUBE_VERSION.into(), kube_version.unwrap_or_default().into());
    env.insert(SEALOS_VERSION.into(), SEALOS_COMPAT_VERSION.into());
    env.insert(RUN_MODE.into(), roles.join(","));
    env
}

#[cfg(test)]
mod tests;
