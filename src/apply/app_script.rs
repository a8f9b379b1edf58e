//! How an application or patch image's ENTRYPOINT and CMD become the bash
//! script a host runs, as sealos runs them.
//!
//! sealos (labring/sealos v5, `lifecycle/pkg/guest/guest.go`,
//! `formalizeImageCommands` and `Apply`; `lifecycle/pkg/guest/util.go`) takes
//! each ENTRYPOINT element, then each CMD element (CMD replaced by the
//! cluster's command, `--cmd`, for the first image), as one shell command,
//! prefixes each with `cd DIR && `, joins them with `; ` and runs the result
//! in a shell. Before that it replaces `$(NAME)` by the value of NAME as text,
//! so that `helm upgrade … $(HELM_OPTS)` with `HELM_OPTS=--set a=b --set c=d`
//! gives helm four more arguments. It also puts the env into the command as
//! `export K="V"`, which lets the shell evaluate `$`, backquotes and quotes in
//! the values: `pa$$w0rd` arrives as `pa<pid>w0rd`. We keep the first and not
//! the second:
//!
//! - The env is the process environment of bash (the transport sends it on
//!   stdin), never text of the script.
//! - `$(NAME)` for a NAME of the env is rewritten to a parameter expansion, so
//!   the shell reads the value as data, once. Outside quotes it becomes
//!   `"${__sealrs_words_NAME[@]}"`, an array the script fills first with the
//!   value split at blanks and newlines by `read -a` (no `$`, backquote or
//!   glob inside the value means anything: `*` stays `*`): the words sealos's
//!   text substitution gives, without `set -f` switching off the globs the
//!   image's author wrote. Inside double quotes it becomes `${NAME}` (one
//!   word, as sealos gives); inside single quotes `'"${NAME}"'` (the value
//!   itself, as sealos gives, and not the literal `$(NAME)`).
//! - `$(NAME)` for a name that is not in the env is left alone: it is a
//!   command substitution the image's author wrote (`--set hostname=$(hostname)`),
//!   as sealos leaves it. `$NAME` and `${NAME}` are expanded by bash from
//!   the environment.
//! - Each command sits in a `{ …␤}` group after its `cd`: a command that ends
//!   in a comment or a newline cannot swallow the ones joined after it.
//!   Nothing else changes: `; ` joins them, so, as in sealos, a failing
//!   command does not stop the next and the last one's status is the result.

use std::collections::{BTreeMap, BTreeSet};

use crate::shell::sh_quote;

/// The array an unquoted `$(NAME)` expands, filled by the script's prelude.
fn words_var(name: &str) -> String {
    format!("__sealrs_words_{name}")
}

/// ENTRYPOINT's elements, then CMD's (or `cmd`, when given, in its place),
/// blank ones left out: each is one shell command.
pub fn command_lines(
    entrypoint: &[String],
    image_cmd: &[String],
    cmd: Option<&[String]>,
) -> Vec<String> {
    entrypoint
        .iter()
        .chain(cmd.unwrap_or(image_cmd))
        .filter(|line| !line.trim().is_empty())
        .cloned()
        .collect()
}

/// The bash script that runs `lines` in `dir` with `env` as its environment
/// (see the module docs); `None` when there is nothing to run.
pub fn script(lines: &[String], dir: &str, env: &BTreeMap<String, String>) -> Option<String> {
    if lines.is_empty() {
        return None;
    }
    let mut split = BTreeSet::new();
    let body: Vec<String> = lines
        .iter()
        .map(|line| {
            format!(
                "cd -- {} && {{\n{}\n}}",
                sh_quote(dir),
                rewrite(line, env, &mut split)
            )
        })
        .collect();
    let mut out = String::new();
    for name in &split {
        out.push_str(&format!(
            "IFS=$' \\t\\n' read -r -d '' -a {} <<< \"${{{name}}}\" || :\n",
            words_var(name)
        ));
    }
    out.push_str(&body.join("; "));
    Some(out)
}

fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `$(NAME)` at `i` for a NAME in `env`: NAME and the reference's length.
fn reference_at<'a>(
    s: &'a str,
    i: usize,
    env: &BTreeMap<String, String>,
) -> Option<(&'a str, usize)> {
    let rest = s[i..].strip_prefix("$(")?;
    let end = rest.find(')')?;
    let name = &rest[..end];
    (is_name(name) && env.contains_key(name)).then_some((name, end + 3))
}

/// One command with each `$(NAME)` of `env` rewritten for the quoting it
/// stands in; the names that must be split go to `split`.
pub fn rewrite(line: &str, env: &BTreeMap<String, String>, split: &mut BTreeSet<String>) -> String {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut out = String::with_capacity(line.len() + 16);
    let mut i = 0;
    while i < line.len() {
        if let Some((name, len)) = reference_at(line, i, env) {
            match quote {
                Quote::None => {
                    out.push_str(&format!("\"${{{}[@]}}\"", words_var(name)));
                    split.insert(name.to_string());
                }
                Quote::Double => out.push_str(&format!("${{{name}}}")),
                Quote::Single => out.push_str(&format!("'\"${{{name}}}\"'")),
            }
            i += len;
            continue;
        }
        let c = line[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
        match (&quote, c) {
            // A backslash outside single quotes keeps the next character as is.
            (Quote::None | Quote::Double, '\\') => {
                if let Some(next) = line[i..].chars().next() {
                    out.push(next);
                    i += next.len_utf8();
                }
            }
            // `$$` is the shell's own (its pid), not the start of a reference.
            (Quote::None | Quote::Double, '$') if line[i..].starts_with('$') => {
                out.push('$');
                i += 1;
            }
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::Double, '"') => quote = Quote::None,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
