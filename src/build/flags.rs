//! `sealrs build --label K=V --env K=V`, as buildah (v1.28, what Debian 12
//! ships, and what sealos build drives) applies them: once the Kubefile's
//! instructions are done, as if `LABEL`/`ENV` lines were appended to it
//! (buildah `imagebuildah/stage_executor.go`, and `Builder.SetLabel`,
//! `Builder.SetEnv` in `config.go`).
//!
//! - A label is taken as written (no expansion); `--label K` sets `K` to "".
//!   A later flag for the same key wins, and any flag wins over the Kubefile.
//! - An env entry replaces any entry of that name by one appended at the
//!   end (an `ENV` instruction replaces in place; buildah's flag does not).
//!   Its value is expanded as Go's `os.Expand` does, against the env without
//!   that name: `${A}` and `$A` are A's value, and a name without one stays
//!   as its bare name (`$HOME` gives `HOME`, `$$` gives `$`); buildah logs an
//!   error then, we leave a warning. `--env K` takes K's value from the
//!   environment of the command (the CLI resolves it).

use crate::kubefile::ConfigState;

/// The flags, each a (name, value) pair in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigFlags {
    pub labels: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
}

/// Applies `flags` to the config the Kubefile left; returns the warnings
/// (names an env value referred to that the image has no value for).
pub fn apply(config: &mut ConfigState, flags: &ConfigFlags) -> Vec<String> {
    for (k, v) in &flags.labels {
        config.labels.insert(k.clone(), v.clone());
    }
    let mut warnings = Vec::new();
    for (key, value) in &flags.env {
        config.env.retain(|(k, _)| k != key);
        let env = &config.env;
        let expanded = go_expand(value, |name| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| {
                    warnings.push(format!(
                        "--env {key}={value}: the image has no value for {name:?}; it stays as {name:?}, as buildah leaves it"
                    ));
                    name.to_string()
                })
        });
        config.env.push((key.clone(), expanded));
    }
    warnings
}

/// Go's `os.Expand(s, mapping)`.
fn go_expand(s: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let (mut i, mut j) = (0, 0);
    while j < b.len() {
        if b[j] == b'$' && j + 1 < b.len() {
            out.push_str(&s[i..j]);
            let (name, w) = shell_name(&s[j + 1..]);
            match (name.is_empty(), w) {
                // Bad syntax (`${}`, `${x`): the characters are eaten.
                (true, w) if w > 0 => {}
                // `$` not followed by a name stays.
                (true, _) => out.push('$'),
                _ => out.push_str(&mapping(name)),
            }
            j += w;
            i = j + 1;
        }
        j += 1;
    }
    out.push_str(&s[i.min(s.len())..]);
    out
}

/// Go's `getShellName`: the name after a `$`, and how many bytes it took.
fn shell_name(s: &str) -> (&str, usize) {
    let b = s.as_bytes();
    let special = |c: u8| b"*#$@!?-".contains(&c) || c.is_ascii_digit();
    if b[0] == b'{' {
        if b.len() > 2 && special(b[1]) && b[2] == b'}' {
            return (&s[1..2], 3);
        }
        return match b.iter().skip(1).position(|&c| c == b'}') {
            Some(0) => ("", 2),
            Some(n) => (&s[1..n + 1], n + 2),
            None => ("", 1),
        };
    }
    if special(b[0]) {
        return (&s[0..1], 1);
    }
    let n = b
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
        .count();
    (&s[..n], n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn go_expand_matches_os_expand() {
        let env = |name: &str| match name {
            "A" => "1".to_string(),
            other => format!("<{other}>"),
        };
        for (input, want) in [
            ("x${A}y", "x1y"),
            ("$A$A", "11"),
            ("a$$b", "a<$>b"),
            ("$", "$"),
            ("a$", "a$"),
            ("$ x", "$ x"),
            ("${}", ""),
            ("${A", "A"),
            ("${1}x", "<1>x"),
            ("$1x", "<1>x"),
            ("é$Aé", "é1é"),
            ("$A_b-c", "<A_b>-c"),
        ] {
            assert_eq!(go_expand(input, env), want, "{input}");
        }
    }

    /// What buildah 1.28 wrote for the same flags (checked by hand and in
    /// tests/buildah_diff.rs): labels literal, env moved to the end and
    /// expanded against the rest.
    #[test]
    fn flags_apply_after_the_kubefile_as_buildah_applies_them() {
        let mut config = ConfigState::scratch();
        config.env.extend(pairs(&[("A", "1"), ("B", "2")]));
        config.labels.insert("x".into(), "kube".into());
        let flags = ConfigFlags {
            labels: pairs(&[("x", "flag"), ("z", "$HOME"), ("w", "")]),
            env: pairs(&[("A", "over"), ("C", "x${B}y $HOME"), ("D", "a$$b")]),
        };
        let warnings = apply(&mut config, &flags);
        let keys: Vec<&str> = config.env.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["PATH", "B", "A", "C", "D"]);
        assert_eq!(config.env[2].1, "over");
        assert_eq!(config.env[3].1, "x2y HOME");
        assert_eq!(config.env[4].1, "a$b");
        assert_eq!(config.labels["x"], "flag");
        assert_eq!(config.labels["z"], "$HOME");
        assert_eq!(config.labels["w"], "");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("\"HOME\""), "{warnings:?}");
    }
}
