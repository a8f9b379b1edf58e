//! `.imageignore`: images a build must not harvest.
//!
//! The file sits at the root of the build context, next to `.kubefileignore`,
//! and follows the same habits: one pattern a line, `#` at the start of a line
//! for comments, `!` to re-include, the last matching line wins. Patterns are
//! matched against image *references*, not paths, so the glob is simpler than
//! Docker's: `*` is any run of characters (including `/` and `:`), `?` is one
//! character, `\` escapes the next one. A pattern matches a reference if it
//! matches it as written in the file (`nginx:1.25`) or in its normalized form
//! (`docker.io/library/nginx:1.25`); a pattern without wildcards that is itself
//! a reference also matches every spelling of that reference.
//!
//! ```text
//! # pulled by the nodes at run time, not shipped
//! registry.k8s.io/*
//! !registry.k8s.io/pause:*
//! # a template only Helm can render (listed in images/shim/ instead)
//! {{ .Values.global.registry }}/app:*
//! ```
//!
//! References that do not parse and templated images can be excluded by their
//! written text too, which is how a user silences a chart's `{{ … }}` image.

use super::error::HarvestError;
use crate::reference::Reference;

/// The exclude file's name at the context root.
pub const IGNORE_FILE: &str = ".imageignore";

#[derive(Debug, Clone)]
struct Rule {
    tokens: Vec<Token>,
    /// Set when the pattern is a plain reference: compared normalized.
    normalized: Option<String>,
    include: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    Star,
    Any,
}

/// Compiled exclude patterns; empty excludes nothing.
#[derive(Debug, Clone, Default)]
pub struct ExcludeList {
    rules: Vec<Rule>,
}

impl ExcludeList {
    /// Parses exclude-file text; `file` is only for messages.
    pub fn parse(text: &str, file: &str) -> Result<ExcludeList, HarvestError> {
        let mut list = ExcludeList::default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            if raw.trim_start().starts_with('#') {
                continue;
            }
            list.push(raw, file, index + 1)?;
        }
        Ok(list)
    }

    /// Patterns given directly (flags), each as its own line.
    pub fn from_patterns<S: AsRef<str>>(patterns: &[S]) -> Result<ExcludeList, HarvestError> {
        let mut list = ExcludeList::default();
        for (i, p) in patterns.iter().enumerate() {
            list.push(p.as_ref(), "<exclude patterns>", i + 1)?;
        }
        Ok(list)
    }

    /// Adds the rules of `other` after these (they win over them).
    pub fn extend(&mut self, other: ExcludeList) {
        self.rules.extend(other.rules);
    }

    fn push(&mut self, raw: &str, file: &str, line: usize) -> Result<(), HarvestError> {
        let line_text = raw.trim();
        if line_text.is_empty() {
            return Ok(());
        }
        let (include, pattern) = match line_text.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line_text),
        };
        if pattern.is_empty() {
            return Err(HarvestError::BadPattern {
                file: file.to_string(),
                line,
                pattern: line_text.to_string(),
                reason: "`!` needs a pattern after it".to_string(),
            });
        }
        let mut tokens = Vec::new();
        let mut chars = pattern.chars();
        let mut wild = false;
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' => {
                    wild = true;
                    Token::Star
                }
                '?' => {
                    wild = true;
                    Token::Any
                }
                '\\' => Token::Literal(chars.next().unwrap_or('\\')),
                other => Token::Literal(other),
            });
        }
        let normalized = if wild {
            None
        } else {
            Reference::parse(pattern).ok().map(|r| r.to_string())
        };
        self.rules.push(Rule {
            tokens,
            normalized,
            include,
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Is an image written as `written` (normalized: `normalized`, if it
    /// parses) excluded?
    pub fn is_excluded(&self, written: &str, normalized: Option<&str>) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if rule.include != excluded {
                continue;
            }
            let hit = glob_match(&rule.tokens, written)
                || normalized.is_some_and(|n| {
                    glob_match(&rule.tokens, n) || rule.normalized.as_deref() == Some(n)
                });
            if hit {
                excluded = !rule.include;
            }
        }
        excluded
    }
}

/// `*` and `?` over characters; iterative with one backtrack point, so linear
/// enough for references.
fn glob_match(tokens: &[Token], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while p < text.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, p));
                t += 1;
            }
            Some(Token::Any) => {
                t += 1;
                p += 1;
            }
            Some(Token::Literal(c)) if *c == text[p] => {
                t += 1;
                p += 1;
            }
            _ => match star {
                Some((st, sp)) => {
                    t = st + 1;
                    p = sp + 1;
                    star = Some((st, sp + 1));
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| *tok == Token::Star)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> ExcludeList {
        ExcludeList::parse(text, IGNORE_FILE).unwrap()
    }

    fn excluded(l: &ExcludeList, written: &str) -> bool {
        let norm = Reference::parse(written).ok().map(|r| r.to_string());
        l.is_excluded(written, norm.as_deref())
    }

    #[test]
    fn globs_match_written_or_normalized_forms() {
        let l = list(
            "# comment\n\nregistry.k8s.io/*\n!registry.k8s.io/pause:*\ndocker.io/library/busy*\n",
        );
        assert!(excluded(&l, "registry.k8s.io/coredns/coredns:v1.11.1"));
        assert!(!excluded(&l, "registry.k8s.io/pause:3.9"));
        assert!(excluded(&l, "busybox"), "normalized form matches");
        assert!(!excluded(&l, "nginx:1.25"));
    }

    #[test]
    fn a_plain_reference_matches_every_spelling() {
        let l = list("nginx\n");
        assert!(excluded(&l, "nginx"));
        assert!(excluded(&l, "docker.io/library/nginx:latest"));
        assert!(excluded(&l, "library/nginx"));
        assert!(!excluded(&l, "nginx:1.25"));
    }

    #[test]
    fn templates_and_bad_text_are_matched_as_written() {
        let l = list("{{ .Values.registry }}/app:*\nNOT A REF\n");
        assert!(l.is_excluded("{{ .Values.registry }}/app:{{ .Values.tag }}", None));
        assert!(l.is_excluded("NOT A REF", None));
    }

    #[test]
    fn question_mark_and_escapes() {
        let l = list("app:1.?\nweird\\*name\n");
        assert!(excluded(&l, "app:1.5"));
        assert!(!excluded(&l, "app:1.50"));
        assert!(l.is_excluded("weird*name", None));
        assert!(!l.is_excluded("weirdXname", None));
    }

    #[test]
    fn lone_bang_is_an_error_with_its_line() {
        let err = ExcludeList::parse("a\n!\n", ".imageignore").unwrap_err();
        assert!(err.to_string().starts_with(".imageignore:2:"), "{err}");
    }

    #[test]
    fn star_backtracking() {
        let toks = |p: &str| {
            let mut l = ExcludeList::default();
            l.push(p, "x", 1).unwrap();
            l.rules[0].tokens.clone()
        };
        assert!(glob_match(&toks("*a*b*c"), "xxaxxbxxc"));
        assert!(!glob_match(&toks("*a*b*c"), "xxaxxcxxb"));
        assert!(glob_match(&toks("**"), ""));
        assert!(glob_match(&toks("a*"), "a"));
    }
}
