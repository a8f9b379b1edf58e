//! Quoting for a POSIX shell: the one home of the single-quote form, for the
//! command string SSH carries (`transport`) and for dry runs (`plan`).
//!
//! A word inside single quotes is taken literally by every POSIX shell (sh,
//! dash, bash, zsh, ksh): no `$`, backtick, backslash or glob is special there,
//! and a newline is just a byte. The only character that cannot appear inside is
//! the single quote itself, so each `'` becomes `'\''` (close, escaped quote,
//! reopen). Nothing else is needed and nothing else is done, which is what makes
//! the function easy to trust. The NUL byte cannot be passed at all (argv and
//! environment strings end at NUL), so it is refused.

use std::fmt::Write as _;

/// Quotes one word for a POSIX shell. Panics never; see [`sh_command`] for NUL.
pub fn sh_quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    out.push('\'');
    for c in word.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The command string that makes a shell run exactly `argv`.
pub fn sh_command(argv: &[String]) -> Result<String, String> {
    if argv.is_empty() {
        return Err("empty command".to_string());
    }
    let mut out = String::new();
    for (i, word) in argv.iter().enumerate() {
        if word.contains('\0') {
            return Err(format!("argument {i} contains a NUL byte"));
        }
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&sh_quote(word));
    }
    Ok(out)
}

/// `export NAME='value'` lines for `env`, evaluated on the host by the wrapper
/// that [`crate::transport::Ssh`] puts around a command. Names must be shell names.
pub fn env_script(env: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (name, value) in env {
        let valid = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "environment name {name:?} is not a valid name (letters, digits, _)"
            ));
        }
        if value.contains('\0') {
            return Err(format!("environment value of {name} contains a NUL byte"));
        }
        let _ = writeln!(out, "export {name}={}", sh_quote(value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_single_quotes_and_nothing_else() {
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(x) `y` \"z\" *"), "'$(x) `y` \"z\" *'");
    }

    #[test]
    fn local_sh_gives_back_every_word() {
        let words: Vec<String> = [
            "plain",
            "",
            "with space",
            "it's",
            "''",
            "$HOME",
            "$(id)",
            "`id`",
            "\"dq\"",
            "*",
            "a\nb",
            "back\\slash",
            "tab\there",
            "pa$$w0rd\"`x",
            "ünï",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut argv = vec!["printf".to_string(), "%s\\0".to_string()];
        argv.extend(words.iter().cloned());
        let cmd = sh_command(&argv).unwrap();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .output()
            .unwrap();
        assert!(out.status.success());
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        assert_eq!(&got[..words.len()], &words[..]);
    }

    #[test]
    fn refuses_nul_and_bad_names() {
        assert!(sh_command(&[]).is_err());
        assert!(sh_command(&["a\0b".to_string()]).is_err());
        assert!(env_script(&[("A-B".into(), "x".into())]).is_err());
        assert!(env_script(&[("1A".into(), "x".into())]).is_err());
        assert!(env_script(&[("".into(), "x".into())]).is_err());
        assert!(env_script(&[("A".into(), "x\0".into())]).is_err());
        assert_eq!(
            env_script(&[("_A1".into(), "it's".into())]).unwrap(),
            "export _A1='it'\\''s'\n"
        );
    }
}
