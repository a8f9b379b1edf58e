//! sprig's `semverCompare CONSTRAINT VERSION`, as Masterminds/semver v3
//! reads them (constraints.go): `||` between alternatives, `,` or spaces
//! between conditions that must all hold, `A - B` ranges, the operators
//! `= != > < >= <= ~ ~> ^`, `x`/`X`/`*` wildcards and missing parts as
//! wildcards. A version with a pre-release (`v1.27.3-k3s1`) meets only
//! conditions that name a pre-release, as in Masterminds.

use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Version {
    parts: [u64; 3],
    pre: String,
}

impl Version {
    /// `v1.2.3-pre+meta`, with minor and patch optional.
    fn parse(text: &str) -> Option<Version> {
        let (v, _) = parse_loose(text)?;
        Some(v)
    }

    fn cmp(&self, other: &Version) -> Ordering {
        self.parts.cmp(&other.parts).then_with(|| {
            match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => cmp_pre(&self.pre, &other.pre),
            }
        })
    }
}

/// Semver §11: dot-separated identifiers, numeric ones numerically and
/// before alphanumeric ones.
fn cmp_pre(a: &str, b: &str) -> Ordering {
    let mut x = a.split('.');
    let mut y = b.split('.');
    loop {
        match (x.next(), y.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) => {
                let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                    (Ok(m), Ok(n)) => m.cmp(&n),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    _ => p.cmp(q),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
        }
    }
}

/// A version whose parts may be wildcards or missing: the version with
/// zeros there, and how many leading parts were given.
fn parse_loose(text: &str) -> Option<(Version, usize)> {
    let text = text.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    let text = text.split_once('+').map_or(text, |(v, _)| v);
    let (core, pre) = match text.split_once('-') {
        Some((c, p)) if !p.is_empty() => (c, p.to_string()),
        Some(_) => return None,
        None => (text, String::new()),
    };
    let mut parts = [0u64; 3];
    let mut given = 0;
    for (i, part) in core.split('.').enumerate() {
        if i > 2 {
            return None;
        }
        if matches!(part, "x" | "X" | "*") {
            break;
        }
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        parts[i] = part.parse().ok()?;
        given = i + 1;
    }
    if given == 0 && !matches!(core, "x" | "X" | "*") {
        return None;
    }
    Some((Version { parts, pre }, given))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Tilde,
    Caret,
}

struct Condition {
    op: Op,
    version: Version,
    /// Parts given (3 unless a wildcard or a missing part).
    given: usize,
}

impl Condition {
    fn parse(text: &str) -> Result<Condition, String> {
        let ops: [(&str, Op); 11] = [
            (">=", Op::Ge),
            ("=>", Op::Ge),
            ("<=", Op::Le),
            ("=<", Op::Le),
            ("!=", Op::Ne),
            ("~>", Op::Tilde),
            (">", Op::Gt),
            ("<", Op::Lt),
            ("=", Op::Eq),
            ("~", Op::Tilde),
            ("^", Op::Caret),
        ];
        let (op, rest) = ops
            .iter()
            .find_map(|(p, op)| text.strip_prefix(p).map(|r| (*op, r)))
            .unwrap_or((Op::Eq, text));
        let (version, given) =
            parse_loose(rest).ok_or_else(|| format!("improper constraint: {text}"))?;
        Ok(Condition { op, version, given })
    }

    fn holds(&self, v: &Version) -> bool {
        if !v.pre.is_empty() && self.version.pre.is_empty() {
            return false;
        }
        let c = &self.version;
        let [major, minor, _] = v.parts;
        let same_given = |n: usize| v.parts[..n] == c.parts[..n];
        match self.op {
            Op::Eq => same_given(self.given) && (self.given < 3 || v.cmp(c) == Ordering::Equal),
            Op::Ne => !(same_given(self.given) && (self.given < 3 || v.cmp(c) == Ordering::Equal)),
            Op::Gt => match self.given {
                0 => false,
                1 => major > c.parts[0],
                2 => v.parts[..2] > c.parts[..2],
                _ => v.cmp(c) == Ordering::Greater,
            },
            Op::Lt => v.cmp(c) == Ordering::Less,
            Op::Ge => v.cmp(c) != Ordering::Less,
            Op::Le => match self.given {
                0 => true,
                1 => major <= c.parts[0],
                2 => v.parts[..2] <= c.parts[..2],
                _ => v.cmp(c) != Ordering::Greater,
            },
            Op::Tilde => {
                v.cmp(c) != Ordering::Less
                    && major == c.parts[0]
                    && (self.given < 2 || minor == c.parts[1])
            }
            Op::Caret => {
                if v.cmp(c) == Ordering::Less {
                    return false;
                }
                if c.parts[0] > 0 || self.given < 2 {
                    major == c.parts[0]
                } else if c.parts[1] > 0 || self.given < 3 {
                    major == 0 && minor == c.parts[1]
                } else {
                    v.parts == c.parts
                }
            }
        }
    }
}

/// Whether `version` meets `constraint`; an error for either that does not
/// parse (Masterminds' "improper constraint" / "Invalid Semantic Version").
pub(super) fn compare(constraint: &str, version: &str) -> Result<bool, String> {
    let v =
        Version::parse(version).ok_or_else(|| format!("Invalid Semantic Version: {version:?}"))?;
    let mut any = false;
    for alternative in constraint.split("||") {
        let mut all = true;
        for condition in conditions(alternative)? {
            all &= condition.holds(&v);
        }
        any |= all;
    }
    Ok(any)
}

/// The conditions of one alternative: `A - B` becomes `>=A <=B`.
fn conditions(text: &str) -> Result<Vec<Condition>, String> {
    let words: Vec<&str> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Err(format!("improper constraint: {text:?}"));
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words.get(i + 1) == Some(&"-") && i + 2 < words.len() {
            out.push(Condition::parse(&format!(">={}", words[i]))?);
            out.push(Condition::parse(&format!("<={}", words[i + 2]))?);
            i += 3;
            continue;
        }
        // `>= 1.2`: an operator apart from its version.
        if words[i].bytes().all(|b| b"<>=!~^".contains(&b)) && i + 1 < words.len() {
            out.push(Condition::parse(&format!("{}{}", words[i], words[i + 1]))?);
            i += 2;
            continue;
        }
        out.push(Condition::parse(words[i])?);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::compare;

    #[test]
    fn constraints_read_as_masterminds_reads_them() {
        let cases = [
            ("^1.27.0", "v1.27.3", true),
            ("^1.27.0", "v1.26.9", false),
            ("^1.27.0", "v2.0.0", false),
            ("^1.26.0", "1.30.2", true),
            ("^0.2.3", "0.2.9", true),
            ("^0.2.3", "0.3.0", false),
            ("~1.2.3", "1.2.9", true),
            ("~1.2.3", "1.3.0", false),
            ("~1", "1.9.0", true),
            (">=1.26.0", "v1.26.0", true),
            (">= 1.26, < 1.30", "1.29.1", true),
            (">=1.26 <1.30", "1.30.0", false),
            ("<1.25 || >=1.28", "1.28.1", true),
            ("<1.25 || >=1.28", "1.26.1", false),
            ("1.2.x", "1.2.7", true),
            ("1.2.x", "1.3.0", false),
            (">1.2", "1.2.9", false),
            (">1.2", "1.3.0", true),
            ("<=1.2", "1.2.9", true),
            ("1.2 - 1.4", "1.4.0", true),
            ("1.2 - 1.4.0", "1.4.1", false),
            ("!=1.2.3", "1.2.3", false),
            ("*", "3.1.4", true),
            // A pre-release meets only conditions that name one.
            ("^1.27.0", "v1.27.3-k3s1", false),
            (">=1.27.0-0", "v1.27.3-k3s1", true),
            // Build metadata is ignored.
            ("^1.27.0", "v1.27.3+k3s1", true),
        ];
        for (c, v, want) in cases {
            assert_eq!(compare(c, v), Ok(want), "{c} {v}");
        }
    }

    #[test]
    fn bad_versions_and_constraints_are_errors() {
        assert!(compare("^1.27.0", "")
            .unwrap_err()
            .contains("Invalid Semantic Version"));
        assert!(compare("^1.27.0", "latest").is_err());
        assert!(compare("^a.b", "1.0.0")
            .unwrap_err()
            .contains("improper constraint"));
        assert!(compare("", "1.0.0").is_err());
    }
}
