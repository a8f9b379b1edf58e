//! Writing values into systemd files without any shell or systemd expansion.

/// One `ExecStart=` argument: plain when safe, otherwise double-quoted with
/// `\` and `"` escaped, `$` written `$$` (no env expansion) and `%` written
/// `%%` (no specifier), per systemd.service(5) "Command lines".
pub fn exec_arg(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,[]".contains(c));
    if plain {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("$$"),
            '%' => out.push_str("%%"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An `EnvironmentFile=` body. Each value is double-quoted with `\`, `"`,
/// `` ` `` and `$` backslash-escaped: systemd's parser (and a POSIX shell
/// sourcing the file) read back exactly the value.
pub fn env_file(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            if matches!(c, '\\' | '"' | '`' | '$') {
                out.push('\\');
            }
            out.push(c);
        }
        out.push_str("\"\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_args_are_quoted_for_systemd() {
        assert_eq!(exec_arg("https://10.0.0.1:6443"), "https://10.0.0.1:6443");
        assert_eq!(exec_arg("https://[fd00::1]:6443"), "https://[fd00::1]:6443");
        assert_eq!(exec_arg("a b"), "\"a b\"");
        assert_eq!(exec_arg("p$x%h\"\\"), "\"p$$x%%h\\\"\\\\\"");
        assert_eq!(exec_arg(""), "\"\"");
    }

    #[test]
    fn env_file_escapes_exactly_what_systemd_unescapes() {
        assert_eq!(
            env_file(&[
                ("K3S_TOKEN", "pa$$w0rd\"`x\\"),
                ("K3S_URL", "https://h:6443")
            ]),
            "K3S_TOKEN=\"pa\\$\\$w0rd\\\"\\`x\\\\\"\nK3S_URL=\"https://h:6443\"\n"
        );
    }
}
