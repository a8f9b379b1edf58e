//! `.dockerignore` / `.kubefileignore`, with Docker's exact semantics, and the
//! glob matcher that COPY sources and harvest's image sources share with it.
//!
//! Users move Dockerfiles and ignore files between tools, so "close to Docker"
//! is not enough: the same file must exclude the same paths. The rules follow
//! moby's `patternmatcher` and `ignorefile` packages: comments only when `#` is
//! the first byte, lines trimmed, paths cleaned like Go's `filepath.Clean`, a
//! leading `/` dropped, `!` re-includes, the last matching pattern wins, and a
//! pattern that matches a parent directory matches everything below it.
//!
//! We match with our own small glob engine instead of `globset` because Docker's
//! `**` and `[...]` rules differ from gitignore's in corner cases (`**` inside a
//! segment, `[^...]` negation, backslash escapes).

use std::path::{Path, PathBuf};

/// A context's ignore file that cannot be read or holds a bad pattern.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    #[error("cannot read ignore file {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}:{line}: bad pattern {pattern:?}: {reason}")]
    Pattern {
        path: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
    },
}

/// One compiled glob: Go `filepath.Match` syntax, plus `**` when enabled.
#[derive(Debug, Clone)]
pub(crate) struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    /// `*`: any run of characters except `/`.
    Star,
    /// `?`: one character except `/`.
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `**/` or `**` inside a pattern: zero or more whole directories (`(.*/)?`).
    Dirs,
    /// `**` at the end: anything at all.
    Rest,
}

impl Glob {
    /// Compiles `pattern`; `double_star` turns on Docker's `**` (ignore files),
    /// off for COPY sources where `**` is just two `*`.
    pub(crate) fn new(pattern: &str, double_star: bool) -> Result<Glob, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if double_star && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    tokens.push(if i == chars.len() {
                        Token::Rest
                    } else {
                        Token::Dirs
                    });
                }
                '*' => tokens.push(Token::Star),
                '?' => tokens.push(Token::Any),
                '\\' => match chars.get(i) {
                    Some(&next) => {
                        tokens.push(Token::Literal(next));
                        i += 1;
                    }
                    None => tokens.push(Token::Literal('\\')),
                },
                '[' => {
                    let (token, next) = parse_class(&chars, i)?;
                    tokens.push(token);
                    i = next;
                }
                other => tokens.push(Token::Literal(other)),
            }
        }
        Ok(Glob { tokens })
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        let text: Vec<char> = path.chars().collect();
        // memo[t][p]: does tokens[t..] match text[p..]? Patterns and paths are
        // short, and the table keeps `*a*a*a` from going exponential.
        let mut memo = vec![vec![None; text.len() + 1]; self.tokens.len() + 1];
        self.match_at(0, 0, &text, &mut memo)
    }

    fn match_at(&self, t: usize, p: usize, text: &[char], memo: &mut [Vec<Option<bool>>]) -> bool {
        if let Some(known) = memo[t][p] {
            return known;
        }
        let result = match self.tokens.get(t) {
            None => p == text.len(),
            Some(Token::Literal(c)) => {
                text.get(p) == Some(c) && self.match_at(t + 1, p + 1, text, memo)
            }
            Some(Token::Any) => {
                matches!(text.get(p), Some(c) if *c != '/')
                    && self.match_at(t + 1, p + 1, text, memo)
            }
            Some(Token::Class { negated, ranges }) => match text.get(p) {
                Some(&c) => {
                    let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    inside != *negated && self.match_at(t + 1, p + 1, text, memo)
                }
                None => false,
            },
            Some(Token::Star) => {
                let mut q = p;
                loop {
                    if self.match_at(t + 1, q, text, memo) {
                        break true;
                    }
                    if q == text.len() || text[q] == '/' {
                        break false;
                    }
                    q += 1;
                }
            }
            Some(Token::Dirs) => {
                self.match_at(t + 1, p, text, memo)
                    || (p..text.len())
                        .any(|q| text[q] == '/' && self.match_at(t + 1, q + 1, text, memo))
            }
            Some(Token::Rest) => true,
        };
        memo[t][p] = Some(result);
        result
    }
}

fn parse_class(chars: &[char], mut i: usize) -> Result<(Token, usize), String> {
    let negated = chars.get(i) == Some(&'^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let read = |i: &mut usize| -> Result<char, String> {
        match chars.get(*i) {
            Some('\\') => {
                *i += 2;
                chars
                    .get(*i - 1)
                    .copied()
                    .ok_or_else(|| "unfinished escape in `[...]`".to_string())
            }
            Some(&c) => {
                *i += 1;
                Ok(c)
            }
            None => Err("unclosed `[`".to_string()),
        }
    };
    loop {
        match chars.get(i) {
            None => return Err("unclosed `[`".to_string()),
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, i + 1))
            }
            Some(']') => return Err("empty `[]`".to_string()),
            _ => {}
        }
        let lo = read(&mut i)?;
        let hi = if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            i += 1;
            read(&mut i)?
        } else {
            lo
        };
        if hi < lo {
            return Err(format!("bad range {lo}-{hi} in `[...]`"));
        }
        ranges.push((lo, hi));
    }
}

/// Go's `filepath.Clean` for `/`-separated paths: lexical, no disk access.
pub(crate) fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[derive(Debug, Clone)]
struct Rule {
    glob: Glob,
    /// A `!` line: re-includes what earlier lines excluded.
    include: bool,
}

/// The compiled ignore file of a context; empty when there is none.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    rules: Vec<Rule>,
    file: Option<PathBuf>,
}

impl Ignore {
    /// Reads `.kubefileignore`, else `.dockerignore`, in `root`.
    pub fn load(root: &Path) -> Result<Ignore, IgnoreError> {
        for name in [".kubefileignore", ".dockerignore"] {
            let path = root.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => return Ignore::parse(&String::from_utf8_lossy(&bytes), &path),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(IgnoreError::Unreadable { path, source }),
            }
        }
        Ok(Ignore::default())
    }

    /// Parses ignore-file text; `path` is only for error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Ignore, IgnoreError> {
        let mut rules = Vec::new();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (index, raw) in text.lines().enumerate() {
            // Docker checks for `#` before trimming: " #x" is a pattern.
            if raw.starts_with('#') {
                continue;
            }
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            let (include, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let bad = |reason: &str| IgnoreError::Pattern {
                path: path.to_path_buf(),
                line: index + 1,
                pattern: line.to_string(),
                reason: reason.to_string(),
            };
            if pattern.is_empty() {
                return Err(bad("`!` needs a pattern after it"));
            }
            let mut cleaned = clean(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let glob = Glob::new(&cleaned, true).map_err(|reason| bad(&reason))?;
            rules.push(Rule { glob, include });
        }
        Ok(Ignore {
            rules,
            file: Some(path.to_path_buf()),
        })
    }

    /// The file the rules came from, for messages.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// True when some `!` rule may re-include paths under an excluded
    /// directory, so the walk cannot prune excluded directories.
    pub(crate) fn has_reincludes(&self) -> bool {
        self.rules.iter().any(|r| r.include)
    }

    /// Is `rel` (context-relative, `/`-separated, cleaned) excluded?
    pub fn is_excluded(&self, rel: &str) -> bool {
        let mut excluded = false;
        let parents: Vec<&str> = rel.match_indices('/').map(|(i, _)| &rel[..i]).collect();
        for rule in &self.rules {
            // An exclusion only matters while not excluded, a `!` only while excluded.
            if rule.include != excluded {
                continue;
            }
            let hit = rule.glob.matches(rel) || parents.iter().any(|p| rule.glob.matches(p));
            if hit {
                excluded = !rule.include;
            }
        }
        excluded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, Path::new(".dockerignore")).unwrap()
    }

    #[test]
    fn dockerignore_table() {
        // (ignore file, path, excluded?)
        let table: &[(&str, &str, bool)] = &[
            ("foo", "foo", true),
            ("foo", "foo/bar", true),
            ("foo", "a/foo", false),
            ("/foo", "foo/x", true),
            ("./foo", "foo", true),
            ("foo/../bar", "bar", true),
            ("*.md", "README.md", true),
            ("*.md", "docs/README.md", false),
            ("*/*.md", "docs/README.md", true),
            ("**/*.md", "docs/a/README.md", true),
            ("**/*.md", "README.md", true),
            ("docs/**", "docs/a/b", true),
            ("docs/**", "docs", false),
            ("a/**/b", "a/b", true),
            ("a/**/b", "a/x/y/b", true),
            ("a/**/b", "a/x/y/c", false),
            ("?.txt", "a.txt", true),
            ("?.txt", "ab.txt", false),
            ("[a-c].txt", "b.txt", true),
            ("[^a-c].txt", "b.txt", false),
            ("[^a-c].txt", "d.txt", true),
            ("\\*.txt", "*.txt", true),
            ("\\*.txt", "a.txt", false),
            ("# comment\nfoo", "# comment", false),
            (" #notcomment", "#notcomment", true),
            ("*\n!keep", "keep", false),
            ("*\n!keep", "other", true),
            ("docs\n!docs/keep.md", "docs/keep.md", false),
            ("docs\n!docs/keep.md", "docs/other.md", true),
            ("*.md\n!README.md\nREADME.md", "README.md", true),
            ("**\n!bin/**", "bin/k3s", false),
            ("**\n!bin/**", "etc/x", true),
            ("  spaced  \n", "spaced", true),
            ("", "anything", false),
        ];
        for (text, path, want) in table {
            assert_eq!(
                ignore(text).is_excluded(path),
                *want,
                "pattern {text:?} on {path:?}"
            );
        }
    }

    #[test]
    fn lone_bang_and_unclosed_class_are_errors_with_line_numbers() {
        let err = Ignore::parse("ok\n!\n", Path::new("/c/.dockerignore")).unwrap_err();
        assert!(matches!(err, IgnoreError::Pattern { line: 2, .. }), "{err}");
        let err = Ignore::parse("[ab", Path::new("/c/.dockerignore")).unwrap_err();
        assert!(err.to_string().contains("/c/.dockerignore:1"), "{err}");
    }

    #[test]
    fn copy_globs_do_not_cross_directories() {
        let g = Glob::new("*.yaml", false).unwrap();
        assert!(g.matches("a.yaml"));
        assert!(!g.matches("dir/a.yaml"));
        let g = Glob::new("**", false).unwrap();
        assert!(!g.matches("a/b"));
    }

    #[test]
    fn clean_matches_go() {
        for (input, want) in [
            ("a/./b", "a/b"),
            ("a/../..", ".."),
            ("/../a", "/a"),
            ("", "."),
            ("a//b/", "a/b"),
            ("../x", "../x"),
        ] {
            assert_eq!(clean(input), want, "{input}");
        }
    }
}
