//! `--max-failed N|N%`: how many node joins may fail before the command
//! does. Pure: the CLI parses it, `join.rs` asks it.

use std::fmt;

/// How many of the nodes a command joins may fail while the cluster still
/// comes up with the others: a count, or a percentage of the nodes joined
/// (rounded down), as `--max-unavailable` is written. Control planes never
/// count: a failed one always fails the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaxFailed {
    /// None may fail (the default): any failed join fails the command.
    #[default]
    None,
    Count(usize),
    Percent(u8),
}

impl MaxFailed {
    /// How many failures are tolerated among `joined` nodes.
    pub fn of(&self, joined: usize) -> usize {
        match *self {
            MaxFailed::None => 0,
            MaxFailed::Count(n) => n,
            MaxFailed::Percent(p) => joined * usize::from(p) / 100,
        }
    }

    /// Whether `failed` of `joined` nodes is within the limit.
    pub fn tolerates(&self, failed: usize, joined: usize) -> bool {
        failed <= self.of(joined)
    }
}

impl fmt::Display for MaxFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaxFailed::None => write!(f, "0"),
            MaxFailed::Count(n) => write!(f, "{n}"),
            MaxFailed::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxFailed {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?} is not a number of nodes (0 or more) or a percentage of them (0% to 100%), e.g. 2 or 5%")
        };
        let (digits, percent) = match s.strip_suffix('%') {
            Some(p) => (p, true),
            None => (s, false),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        match (percent, digits.parse::<usize>()) {
            (_, Ok(0)) => Ok(MaxFailed::None),
            (false, Ok(n)) => Ok(MaxFailed::Count(n)),
            (true, Ok(p @ 1..=100)) => Ok(MaxFailed::Percent(p as u8)),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_failed_reads_a_count_or_a_percentage_and_refuses_anything_else() {
        let read = |s: &str| s.parse::<MaxFailed>();
        assert_eq!(read("0"), Ok(MaxFailed::None));
        assert_eq!(read("0%"), Ok(MaxFailed::None));
        assert_eq!(read("3"), Ok(MaxFailed::Count(3)));
        assert_eq!(read("25%"), Ok(MaxFailed::Percent(25)));
        assert_eq!(read("100%"), Ok(MaxFailed::Percent(100)));
        for bad in [
            "",
            "%",
            "-1",
            "+1",
            "101%",
            "1.5",
            "a",
            "5 %",
            " 5",
            "99999999999999999999999",
        ] {
            let error = read(bad).unwrap_err();
            assert!(error.contains("e.g. 2 or 5%"), "{bad}: {error}");
        }
        assert_eq!(MaxFailed::default().to_string(), "0");
        assert_eq!(read("25%").unwrap().to_string(), "25%");
    }

    #[test]
    fn failures_up_to_the_limit_are_tolerated_and_one_more_is_not() {
        assert!(MaxFailed::None.tolerates(0, 6));
        assert!(!MaxFailed::None.tolerates(1, 6));
        assert!(MaxFailed::Count(1).tolerates(1, 6));
        assert!(!MaxFailed::Count(1).tolerates(2, 6));
        // A percentage of the nodes joined, rounded down: 10% of 6 is none.
        assert!(!MaxFailed::Percent(10).tolerates(1, 6));
        assert!(MaxFailed::Percent(20).tolerates(1, 6));
        assert!(!MaxFailed::Percent(20).tolerates(2, 6));
        assert!(MaxFailed::Percent(100).tolerates(6, 6));
        assert_eq!(MaxFailed::Percent(5).of(200), 10);
    }
}
