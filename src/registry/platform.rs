//! Choosing one image from an image index (a multi-arch "manifest list").
//!
//! We store single-platform images: the installer on a host needs one
//! rootfs, and the host's platform is known when we pull. Matching follows
//! containerd's rules in the small: OS and architecture must be equal, and a
//! variant is compared only when one is asked for (arm64's `v8` equals none).

use std::fmt;

use super::error::RegistryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/arch[/variant]` (`linux/arm64`, `linux/arm/v7`); the
    /// architecture aliases Go and Rust use (`x86_64`, `aarch64`) are accepted.
    pub fn parse(input: &str) -> Result<Platform, RegistryError> {
        let bad = |reason: &str| RegistryError::InvalidPlatform {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = input.trim().split('/').collect();
        if parts.len() < 2 || parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
            return Err(bad("it needs two or three parts separated by '/'"));
        }
        if parts.iter().any(|p| {
            !p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }) {
            return Err(bad(
                "only letters, digits, '_' and '-' are allowed in each part",
            ));
        }
        let (architecture, default_variant) = normalize_arch(&parts[1].to_ascii_lowercase());
        let variant = parts
            .get(2)
            .map(|v| v.to_ascii_lowercase())
            .or(default_variant.map(str::to_string));
        Ok(Platform {
            os: parts[0].to_ascii_lowercase(),
            architecture,
            variant: normalize_variant(&parts[1].to_ascii_lowercase(), variant),
        })
    }

    /// The platform of this machine.
    pub fn host() -> Platform {
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: crate::arch::host().to_string(),
            variant: None,
        }
    }

    /// Whether an index entry's platform (`os`, `architecture`, `variant`) fits.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        let (arch, _) = normalize_arch(&architecture.to_ascii_lowercase());
        if !os.eq_ignore_ascii_case(&self.os) || arch != self.architecture {
            return false;
        }
        let theirs = normalize_variant(&arch, variant.map(str::to_ascii_lowercase));
        match &self.variant {
            None => true,
            Some(mine) => theirs.as_deref().is_none_or(|t| t == mine),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// OCI names for an architecture, and the variant implied by an alias.
fn normalize_arch(arch: &str) -> (String, Option<&'static str>) {
    let variant = match arch {
        "armhf" => Some("v7"),
        "armel" => Some("v6"),
        _ => None,
    };
    (crate::arch::normalize(arch).to_string(), variant)
}

/// arm64's only variant, `v8`, is the same as none.
fn normalize_variant(arch: &str, variant: Option<String>) -> Option<String> {
    match (arch, variant) {
        ("arm64" | "aarch64", Some(v)) if v == "v8" => None,
        (_, v) => v,
    }
}

/// One entry of an index, as far as selection cares.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IndexEntry {
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<EntryPlatform>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct EntryPlatform {
    pub os: String,
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl EntryPlatform {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) => format!("{}/{}/{v}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// Picks the entry for `wanted`: an exact variant match first, then any entry
/// of the right OS and architecture. `Err` lists what the index offers.
pub fn select<'a>(
    entries: &'a [IndexEntry],
    wanted: &Platform,
) -> Result<&'a IndexEntry, Vec<String>> {
    let fits = |e: &&IndexEntry| {
        e.platform
            .as_ref()
            .is_some_and(|p| wanted.matches(&p.os, &p.architecture, p.variant.as_deref()))
    };
    let exact = entries.iter().filter(fits).find(|e| {
        let p = e.platform.as_ref().expect("filtered");
        normalize_variant(&wanted.architecture, p.variant.clone()) == wanted.variant
    });
    exact.or_else(|| entries.iter().find(fits)).ok_or_else(|| {
        entries
            .iter()
            .filter_map(|e| e.platform.as_ref().map(EntryPlatform::label))
            .filter(|l| l != "unknown/unknown")
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>, n: u8) -> IndexEntry {
        IndexEntry {
            media_type: None,
            digest: format!("sha256:{}", format!("{n:x}").repeat(64).get(..64).unwrap()),
            size: 1,
            platform: Some(EntryPlatform {
                os: os.into(),
                architecture: arch.into(),
                variant: variant.map(str::to_string),
            }),
        }
    }

    #[test]
    fn parse_accepts_aliases_and_refuses_junk() {
        let p = Platform::parse("linux/x86_64").unwrap();
        assert_eq!(p.to_string(), "linux/amd64");
        assert_eq!(
            Platform::parse("linux/arm64/v8").unwrap().to_string(),
            "linux/arm64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v7").unwrap().to_string(),
            "linux/arm/v7"
        );
        assert_eq!(
            Platform::parse("linux/armhf").unwrap().to_string(),
            "linux/arm/v7"
        );
        for bad in ["linux", "linux/", "/amd64", "a/b/c/d", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let host = Platform::host();
        assert_eq!(host.os, std::env::consts::OS);
    }

    #[test]
    fn select_matches_os_arch_and_variant() {
        let entries = vec![
            entry("linux", "amd64", None, 1),
            entry("linux", "arm", Some("v6"), 2),
            entry("linux", "arm", Some("v7"), 3),
            entry("linux", "arm64", Some("v8"), 4),
            entry("unknown", "unknown", None, 5),
        ];
        let pick =
            |p: &str| select(&entries, &Platform::parse(p).unwrap()).map(|e| e.digest.clone());
        assert_eq!(pick("linux/amd64").unwrap(), entries[0].digest);
        assert_eq!(pick("linux/arm/v7").unwrap(), entries[2].digest);
        assert_eq!(pick("linux/arm").unwrap(), entries[1].digest);
        assert_eq!(pick("linux/arm64").unwrap(), entries[3].digest);
        assert_eq!(pick("linux/aarch64").unwrap(), entries[3].digest);
        let avail = pick("windows/amd64").unwrap_err();
        assert_eq!(
            avail,
            vec![
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7",
                "linux/arm64/v8"
            ]
        );
        assert!(pick("linux/arm/v5").is_err());
    }
}
