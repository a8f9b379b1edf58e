//! Kubernetes versions as distributions spell them: `v1.30.2`, `1.30.2`,
//! `v1.30.2+k3s1`, `v1.30.2-k3s1` (an image tag cannot hold `+`),
//! `v1.30.2+k0s.0`, `v1.31.0-rc.1`.

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// A real pre-release (`rc.1`): sorts before the release.
    pub pre: Option<String>,
    /// The distribution's build (`k3s1`, `k0s.0`): sorts after, in order.
    pub build: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a Kubernetes version (expected vMAJOR.MINOR.PATCH, e.g. v1.30.2+k3s1)")]
pub struct VersionError {
    pub input: String,
}

/// A `-suffix` that is a distribution build, not a pre-release.
fn is_distribution_build(s: &str) -> bool {
    ["k3s", "k0s", "rke2"].iter().any(|p| {
        s.strip_prefix(p).is_some_and(|rest| {
            rest.trim_start_matches('.')
                .starts_with(|c: char| c.is_ascii_digit())
        })
    })
}

impl Version {
    pub fn parse(input: &str) -> Result<Version, VersionError> {
        let err = || VersionError {
            input: input.to_string(),
        };
        let s = input.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let (s, mut build) = match s.split_once('+') {
            Some((a, b)) if !b.is_empty() => (a, Some(b.to_string())),
            Some(_) => return Err(err()),
            None => (s, None),
        };
        let (core, mut pre) = match s.split_once('-') {
            Some((a, p)) if !p.is_empty() => (a, Some(p.to_string())),
            Some(_) => return Err(err()),
            None => (s, None),
        };
        if build.is_none() && pre.as_deref().is_some_and(is_distribution_build) {
            build = pre.take();
        }
        let nums: Vec<&str> = core.split('.').collect();
        if nums.len() < 2 || nums.len() > 3 {
            return Err(err());
        }
        let num = |s: &str| -> Result<u64, VersionError> {
            if s.is_empty() || !s.chars().all(|c| c.is_ascii_digit()) {
                return Err(err());
            }
            s.parse().map_err(|_| err())
        };
        Ok(Version {
            major: num(nums[0])?,
            minor: num(nums[1])?,
            patch: if nums.len() == 3 { num(nums[2])? } else { 0 },
            pre,
            build,
        })
    }

    /// `vMAJOR.MINOR.PATCH[-pre]`: what `kubeadm --kubernetes-version` takes.
    pub fn kube(&self) -> String {
        match &self.pre {
            Some(p) => format!("v{}.{}.{}-{p}", self.major, self.minor, self.patch),
            None => format!("v{}.{}.{}", self.major, self.minor, self.patch),
        }
    }

    /// How many minor versions `to` is ahead of `self` (negative when behind);
    /// `None` across a major version.
    pub fn minors_to(&self, to: &Version) -> Option<i64> {
        (self.major == to.major).then(|| to.minor as i64 - self.minor as i64)
    }

    /// True when going from `self` to `to` skips a minor version (or changes
    /// the major one): upstream supports one minor at a time.
    pub fn skips_minor_to(&self, to: &Version) -> bool {
        match self.minors_to(to) {
            Some(d) => d > 1,
            None => true,
        }
    }
}

/// Compares dot-separated identifiers, numbers numerically (`k3s10 > k3s2`).
fn natural_cmp(a: &str, b: &str) -> Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => natural_cmp(a, b),
            })
            .then_with(|| match (&self.build, &other.build) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Less,
                (Some(_), None) => Ordering::Greater,
                (Some(a), Some(b)) => natural_cmp(a, b),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kube())?;
        if let Some(b) = &self.build {
            write!(f, "+{b}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Version {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Version::parse(s)
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Version::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_distribution_spellings() {
        let k3s = v("v1.30.2+k3s1");
        assert_eq!((k3s.major, k3s.minor, k3s.patch), (1, 30, 2));
        assert_eq!(k3s.build.as_deref(), Some("k3s1"));
        assert_eq!(k3s.pre, None);
        assert_eq!(v("v1.30.2-k3s1"), k3s, "tag spelling is the same version");
        assert_eq!(v("1.30.2"), v("v1.30.2"));
        assert_eq!(v("v1.30").patch, 0);
        assert_eq!(v("v1.30.2+k0s.0").build.as_deref(), Some("k0s.0"));
        let rc = v("v1.31.0-rc.1");
        assert_eq!(rc.pre.as_deref(), Some("rc.1"));
        assert_eq!(rc.kube(), "v1.31.0-rc.1");
        assert_eq!(k3s.to_string(), "v1.30.2+k3s1");
        assert_eq!(k3s.kube(), "v1.30.2");
        for bad in [
            "", "v", "1", "v1.x.2", "1.2.3.4", "v1.2.3+", "v1.2.3-", "v-1.2.3", "1..2",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn orders_releases_prereleases_and_builds() {
        assert!(v("v1.30.2") > v("v1.30.1"));
        assert!(v("v1.30.10") > v("v1.30.9"));
        assert!(v("v1.31.0") > v("v1.30.99"));
        assert!(v("v1.31.0-rc.1") < v("v1.31.0"));
        assert!(v("v1.31.0-rc.2") > v("v1.31.0-rc.1"));
        assert!(v("v1.30.2+k3s2") > v("v1.30.2+k3s1"));
        assert!(v("v1.30.2+k3s10") > v("v1.30.2+k3s2"));
        assert!(v("v1.30.2+k3s1") > v("v1.30.2"));
        assert!(v("v1.30.3+k3s1") > v("v1.30.2+k3s9"));
    }

    #[test]
    fn minor_skips() {
        assert!(!v("v1.29.5").skips_minor_to(&v("v1.30.0")));
        assert!(!v("v1.30.1").skips_minor_to(&v("v1.30.9")));
        assert!(v("v1.28.5").skips_minor_to(&v("v1.30.0")));
        assert!(v("v1.30.0").skips_minor_to(&v("v2.0.0")));
        assert_eq!(v("v1.30.0").minors_to(&v("v1.27.0")), Some(-3));
    }
}
