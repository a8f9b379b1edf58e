//! Variable expansion and quote removal, as buildah 1.28 does it.
//!
//! buildah evaluates Kubefiles with openshift/imagebuilder, whose shell lexer
//! is an older copy of Docker's. Its rules differ from today's BuildKit in
//! ways a differential test notices, so we follow it and not BuildKit:
//!
//! - only `$V`, `${V}`, `${V:-word}` and `${V:+word}`; `${V-w}`, `${V+w}`,
//!   `${V?w}`, `${V%w}` and an unclosed `${V` are errors;
//! - `$` followed by a digit names a one-digit variable (`$1b` is `$1` then `b`),
//!   any other non-name character leaves the `$` literal;
//! - the escape character is always `\`, even under `# escape=``: the parser
//!   honours the directive for line continuations, the lexer does not;
//! - an unterminated `${V:-word` simply ends at the end of the word.

use std::collections::BTreeMap;

use super::error::ExpandProblem;

/// The escape character of the lexer, whatever the file's escape directive says.
const ESCAPE: char = '\\';

/// `${...}` may nest, and each level recurses; fuzzed input must not be able to
/// exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The variables visible to one instruction: ENV values win over ARG values.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    pub env: &'a [(String, String)],
    pub args: &'a BTreeMap<String, String>,
}

impl<'a> Vars<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }
}

/// Expands one word into one string: quotes removed, spaces kept.
pub fn expand_word(word: &str, vars: Vars<'_>) -> Result<String, ExpandProblem> {
    let mut lexer = Lexer::new(word, vars);
    lexer.run(None, 0).map(|(text, _)| text)
}

/// Expands one word and splits the result into fields at unquoted whitespace,
/// including whitespace that came from a variable's value (EXPOSE uses this).
pub fn expand_fields(word: &str, vars: Vars<'_>) -> Result<Vec<String>, ExpandProblem> {
    let mut lexer = Lexer::new(word, vars);
    lexer.run(None, 0).map(|(_, fields)| fields.finish())
}

/// The names `word` reads without a default (`$V`, `${V}`) that `vars` does
/// not define, each once, as BuildKit's UndefinedVar check finds them
/// (`${V:-w}` and `${V:+w}` say what happens without one).
pub fn undefined_names(word: &str, vars: Vars<'_>) -> Vec<String> {
    let mut lexer = Lexer::new(word, vars);
    let _ = lexer.run(None, 0);
    lexer.undefined
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: Vars<'a>,
    /// Names read as `$V` or `${V}` that `vars` does not define.
    undefined: Vec<String>,
}

/// Fields being built while scanning; quoted and escaped text never splits.
#[derive(Default)]
struct Fields {
    done: Vec<String>,
    current: String,
    in_field: bool,
}

impl Fields {
    fn push_splitting(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_field && !self.current.is_empty() {
                self.done.push(std::mem::take(&mut self.current));
                self.in_field = false;
            }
        } else {
            self.push_raw(ch);
        }
    }

    fn push_str_splitting(&mut self, s: &str) {
        s.chars().for_each(|c| self.push_splitting(c));
    }

    fn push_raw(&mut self, ch: char) {
        self.current.push(ch);
        self.in_field = true;
    }

    fn push_str_raw(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_field = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

impl<'a> Lexer<'a> {
    fn new(word: &str, vars: Vars<'a>) -> Self {
        Lexer {
            chars: word.chars().collect(),
            pos: 0,
            vars,
            undefined: Vec::new(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Scans until `stop` (consumed) or the end of the word.
    fn run(&mut self, stop: Option<char>, depth: usize) -> Result<(String, Fields), ExpandProblem> {
        let mut out = String::new();
        let mut fields = Fields::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                break;
            }
            match ch {
                '\'' => {
                    let quoted = self.single_quoted()?;
                    out.push_str(&quoted);
                    fields.push_str_raw(&quoted);
                }
                '"' => {
                    let quoted = self.double_quoted(depth)?;
                    out.push_str(&quoted);
                    fields.push_str_raw(&quoted);
                }
                '$' => {
                    let value = self.dollar(depth)?;
                    out.push_str(&value);
                    fields.push_str_splitting(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch == ESCAPE {
                        // An escape at the very end of the word vanishes.
                        let Some(escaped) = self.next() else { break };
                        out.push(escaped);
                        fields.push_raw(escaped);
                    } else {
                        out.push(ch);
                        fields.push_splitting(ch);
                    }
                }
            }
        }
        Ok((out, fields))
    }

    fn single_quoted(&mut self) -> Result<String, ExpandProblem> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(ExpandProblem::UnterminatedSingleQuote),
                Some('\'') => return Ok(out),
                Some(ch) => out.push(ch),
            }
        }
    }

    fn double_quoted(&mut self, depth: usize) -> Result<String, ExpandProblem> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(ExpandProblem::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar(depth)?),
                Some(ch) => {
                    self.pos += 1;
                    if ch == ESCAPE {
                        match self.peek() {
                            None => continue,
                            Some(next @ ('"' | '$' | ESCAPE)) => {
                                self.pos += 1;
                                out.push(next);
                                continue;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    fn dollar(&mut self, depth: usize) -> Result<String, ExpandProblem> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.lookup_noting(name));
        }
        self.pos += 1;
        let name = self.name();
        match self.peek() {
            Some('}') => {
                self.pos += 1;
                Ok(self.lookup_noting(name))
            }
            Some(':') => {
                self.pos += 1;
                let modifier = self.next();
                if depth >= MAX_DEPTH {
                    return Err(ExpandProblem::TooDeep { limit: MAX_DEPTH });
                }
                let (word, _) = self.run(Some('}'), depth + 1)?;
                let value = self.lookup(&name);
                match modifier {
                    Some('-') if value.is_empty() => Ok(word),
                    Some('-') => Ok(value),
                    Some('+') if value.is_empty() => Ok(value),
                    Some('+') => Ok(word),
                    other => Err(ExpandProblem::UnsupportedModifier {
                        name,
                        modifier: other.map(String::from).unwrap_or_default(),
                    }),
                }
            }
            _ => Err(ExpandProblem::UnsupportedSubstitution { name }),
        }
    }

    /// A variable name: letters, digits and `_`, or a single leading digit.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                self.pos += 1;
                name.push(ch);
                return name;
            }
            if !(ch.is_alphanumeric() || ch == '_') {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }

    fn lookup(&self, name: &str) -> String {
        self.vars.get(name).unwrap_or_default().to_string()
    }

    /// A lookup without a default: an undefined name is noted.
    fn lookup_noting(&mut self, name: String) -> String {
        if self.vars.get(&name).is_none() && !self.undefined.contains(&name) {
            self.undefined.push(name.clone());
        }
        self.lookup(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [("X", "ex"), ("E", ""), ("SP", "a b"), ("PATH", "/bin")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expand(word: &str) -> Result<String, ExpandProblem> {
        let env = env();
        let args = BTreeMap::from([
            ("A".to_string(), "arg".to_string()),
            ("X".to_string(), "argx".to_string()),
        ]);
        expand_word(
            word,
            Vars {
                env: &env,
                args: &args,
            },
        )
    }

    #[test]
    fn undefined_names_are_the_plain_reads_of_names_nothing_defines() {
        let env = env();
        let args = BTreeMap::from([("A".to_string(), "arg".to_string())]);
        let vars = Vars {
            env: &env,
            args: &args,
        };
        assert_eq!(
            undefined_names("$U ${V} $A $X ${W:-d} ${Y:+a} '$Q' $U", vars),
            vec!["U".to_string(), "V".to_string()]
        );
        assert!(undefined_names("${E}${SP}", vars).is_empty());
    }

    #[test]
    fn expansion_table_matches_buildah() {
        // Expected values observed from buildah 1.28 where the case was run there.
        let table = [
            ("$X", "ex"),
            ("${X}y", "exy"),
            ("x${U}x", "xx"),
            ("${U:-def}", "def"),
            ("${E:-def}", "def"),
            ("${X:-def}", "ex"),
            ("${X:+alt}", "alt"),
            ("${E:+alt}", ""),
            ("${U:+alt}", ""),
            ("${U:-\"two words\"}", "two words"),
            ("${U:-${X}}", "ex"),
            ("\\$X", "$X"),
            ("'$X'", "$X"),
            ("\"$X\"", "ex"),
            ("a\"b $X\"d", "ab exd"),
            ("\"q\\\"q\"", "q\"q"),
            ("\"a\\\\b\"", "a\\b"),
            ("\"a\\b\"", "a\\b"),
            ("a\\b", "ab"),
            ("trailing\\", "trailing"),
            ("$", "$"),
            ("${X}$", "ex$"),
            ("$1b", "b"),
            ("$@x", "$@x"),
            ("$-x", "$-x"),
            ("${}", ""),
            ("$A", "arg"),
            ("$PATH:/x", "/bin:/x"),
            ("${U:-a}b}", "ab}"),
            ("${U:-abc", "abc"),
            // Letters beyond ASCII belong to the name, as in Go's unicode.IsLetter.
            ("é$Xé", "é"),
            ("é${X}é", "éexé"),
        ];
        for (input, want) in table {
            assert_eq!(expand(input).as_deref(), Ok(want), "expanding {input:?}");
        }
    }

    #[test]
    fn env_wins_over_arg_of_same_name() {
        assert_eq!(expand("$X").unwrap(), "ex");
    }

    #[test]
    fn unsupported_forms_are_errors_like_buildah() {
        for input in ["${U-d}", "${U+a}", "${U?m}", "${X%.*}", "${V"] {
            assert!(
                matches!(
                    expand(input),
                    Err(ExpandProblem::UnsupportedSubstitution { .. })
                ),
                "{input:?}"
            );
        }
        assert_eq!(
            expand("${U:?m}"),
            Err(ExpandProblem::UnsupportedModifier {
                name: "U".into(),
                modifier: "?".into()
            })
        );
        assert_eq!(
            expand("${U:"),
            Err(ExpandProblem::UnsupportedModifier {
                name: "U".into(),
                modifier: String::new()
            })
        );
    }

    #[test]
    fn unterminated_quotes_are_errors() {
        assert_eq!(expand("'abc"), Err(ExpandProblem::UnterminatedSingleQuote));
        assert_eq!(expand("\"abc"), Err(ExpandProblem::UnterminatedDoubleQuote));
        assert_eq!(
            expand("\"abc\\"),
            Err(ExpandProblem::UnterminatedDoubleQuote)
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let word = "${U:-".repeat(10_000);
        assert_eq!(
            expand(&word),
            Err(ExpandProblem::TooDeep { limit: MAX_DEPTH })
        );
    }

    #[test]
    fn fields_split_on_unquoted_and_expanded_whitespace() {
        let env = env();
        let args = BTreeMap::new();
        let vars = Vars {
            env: &env,
            args: &args,
        };
        assert_eq!(expand_fields("$SP c", vars).unwrap(), ["a", "b", "c"]);
        assert_eq!(expand_fields("\"$SP\" c", vars).unwrap(), ["a b", "c"]);
        assert_eq!(expand_fields("a\\ b", vars).unwrap(), ["a b"]);
        assert!(expand_fields("$U", vars).unwrap().is_empty());
    }
}
